/**
 * `sluice report` over the captures of a fleet: two real sluice processes (reverse mode, one
 * writing SQLite, one a mitmproxy flow file) behind a round-robin TCP balancer, the JavaScript
 * SDK's S3 client opening a new connection per attempt, so the attempts of one SDK call are split
 * between the two captures. Reported together they are one call with all its attempts in order.
 */
import { test, describe, before, after } from "node:test";
import assert from "node:assert/strict";
import http from "node:http";
import net from "node:net";
import { copyFileSync, mkdirSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ListBucketsCommand, S3Client } from "@aws-sdk/client-s3";
import { NodeHttpHandler } from "@smithy/node-http-handler";
import { ConfiguredRetryStrategy } from "@smithy/core/retry";
import { run } from "./support/run.js";
import { SLUICE_BIN, spawnSluice, assertOneLineError, type RunningSluice } from "./support/cli.js";
import { testConfdir } from "./support/sluice.js";
import { startThrottlingS3, type ThrottlingS3 } from "./support/throttling-s3.js";
import type { TrackerSnapshot } from "../src/aws/invocations.js";

const sluice = (args: string[], cwd?: string) => run(process.execPath, [SLUICE_BIN, ...args], { timeoutMs: 60_000, cwd });

type ReportJson = TrackerSnapshot & { file: string; files: string[] };

async function reportJson(args: string[], cwd?: string): Promise<ReportJson> {
  const r = await sluice(["report", ...args, "--json"], cwd);
  assert.equal(r.code, 0, r.stderr);
  return JSON.parse(r.stdout) as ReportJson;
}

/** A layer-4 load balancer: each new connection goes to the next port in turn. */
async function roundRobin(ports: number[]): Promise<{ port: number; close(): Promise<void> }> {
  let next = 0;
  const sockets = new Set<net.Socket>();
  const server = net.createServer((client) => {
    const upstream = net.connect(ports[next++ % ports.length]!, "127.0.0.1");
    for (const s of [client, upstream]) {
      sockets.add(s);
      s.on("close", () => sockets.delete(s));
      s.on("error", () => undefined);
    }
    client.pipe(upstream).pipe(client);
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  return {
    port: (server.address() as net.AddressInfo).port,
    close: () => {
      for (const s of sockets) s.destroy();
      return new Promise((r) => server.close(() => r()));
    },
  };
}

describe("sluice report joins an SDK call whose attempts went through two sluice processes", () => {
  const dir = mkdtempSync(join(tmpdir(), "sluice-fleet-report-"));
  const sqliteCapture = join(dir, "a.sqlite");
  const mitmCapture = join(dir, "b.mitm");
  let origin: ThrottlingS3;
  let sdkError: unknown = null;
  let answered = "";

  before(async () => {
    // The first two ListBuckets are throttled, the third succeeds: one call, three attempts.
    let calls = 0;
    origin = await startThrottlingS3((op) => op === "ListBuckets" && ++calls <= 2);
    const proxies: RunningSluice[] = [];
    let balancer: Awaited<ReturnType<typeof roundRobin>> | null = null;
    try {
      for (const capture of [sqliteCapture, mitmCapture]) {
        proxies.push(await spawnSluice(["dump", "-p", "0", "--confdir", testConfdir(), "--mode", `reverse:${origin.url}`, "-w", capture]));
      }
      balancer = await roundRobin(proxies.map((p) => p.port));
      const client = new S3Client({
        region: "eu-west-1",
        endpoint: `http://127.0.0.1:${balancer.port}`,
        forcePathStyle: true,
        credentials: { accessKeyId: "AKIDEXAMPLE", secretAccessKey: "secret" },
        // A new connection per attempt, so the balancer alternates the processes.
        requestHandler: new NodeHttpHandler({ httpAgent: new http.Agent({ keepAlive: false }) }),
        retryStrategy: new ConfiguredRetryStrategy(3, 20),
      });
      try {
        const out = await client.send(new ListBucketsCommand({}));
        answered = out.Buckets?.[0]?.Name ?? "";
      } catch (err) {
        sdkError = err;
      }
      client.destroy();
    } finally {
      await balancer?.close();
      for (const p of proxies) await p.stop();
    }
  });
  after(async () => {
    await origin?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  test("the SDK made three attempts and succeeded on the third", () => {
    assert.equal(sdkError, null);
    assert.equal(answered, "logs");
    assert.equal(origin.answered.ListBuckets, 3);
  });

  test("each capture alone holds only part of the call", async () => {
    const a = await reportJson([sqliteCapture]);
    const b = await reportJson([mitmCapture]);
    assert.equal(a.flows + b.flows, 3);
    assert.ok(a.flows >= 1 && b.flows >= 1, `attempts split: ${a.flows} + ${b.flows}`);
  });

  test("reported together: one SDK call, three attempts in time order, ok after retries", async () => {
    const data = await reportJson([sqliteCapture, mitmCapture]);
    assert.deepEqual(data.files, [sqliteCapture, mitmCapture]);
    assert.equal(data.flows, 3);
    assert.equal(data.totals.invocations, 1);
    assert.equal(data.totals.requests, 3);
    assert.equal(data.totals.retries, 2);
    assert.equal(data.totals.throttles, 2);
    assert.deepEqual(data.totals.outcomes, { ok: 0, retried: 1, "gave-up": 0, failed: 0 });
    assert.deepEqual(data.attemptsHistogram, [[3, 1]]);
    const call = data.worstInvocations[0]!;
    assert.deepEqual(call.attempts.map((x) => x.attempt), [1, 2, 3]);
    assert.deepEqual(call.attempts.map((x) => x.status), [503, 503, 200]);
    for (let i = 1; i < 3; i++) assert.ok(call.attempts[i]!.start >= call.attempts[i - 1]!.end, "in time order");
  });

  test("the order of the arguments does not matter, a quoted glob expands, and a copy is counted once", async () => {
    const reversed = await reportJson([mitmCapture, sqliteCapture]);
    assert.equal(reversed.totals.invocations, 1);
    assert.deepEqual(reversed.attemptsHistogram, [[3, 1]]);
    const sub = join(dir, "fleet");
    mkdirSync(sub);
    copyFileSync(sqliteCapture, join(sub, "host1.sqlite"));
    copyFileSync(mitmCapture, join(sub, "host2.mitm"));
    copyFileSync(mitmCapture, join(sub, "host2-copy.mitm"));
    const r = await sluice(["report", "fleet/*", "--json"], dir);
    assert.equal(r.code, 0, r.stderr);
    const globbed = JSON.parse(r.stdout) as ReportJson;
    assert.deepEqual(globbed.files, ["fleet/host1.sqlite", "fleet/host2-copy.mitm", "fleet/host2.mitm"]);
    assert.equal(globbed.flows, 3);
    assert.deepEqual(globbed.attemptsHistogram, [[3, 1]]);
    assert.match(r.stderr, /flows? found in more than one capture .* counted once/);
  });

  test("the text report names the captures, and a filter after them still applies", async () => {
    const r = await sluice(["report", sqliteCapture, mitmCapture, "~svc", "s3"]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /^2 captures \(.*a\.sqlite, .*b\.mitm\) \(~svc s3\): 3 flows/);
    assert.match(r.stdout, /SDK calls\s+1: 0 ok first try, 1 ok after retries/);
  });

  test("a missing capture or a glob matching nothing is a one-line error", async () => {
    assertOneLineError(await sluice(["report", sqliteCapture, join(dir, "missing.mitm")]), /cannot read .*missing\.mitm: no such file/, "missing second capture");
    assertOneLineError(await sluice(["report", sqliteCapture, join(dir, "nothing-*.sqlite")]), /no capture matches .*nothing-\*\.sqlite/, "empty glob");
    assertOneLineError(await sluice(["report", dir]), /is a directory; give capture files or a glob/, "a directory");
  });
});
