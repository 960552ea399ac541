/**
 * Live retry metrics: the Prometheus endpoint (metrics_port, 127.0.0.1 only) and StatsD over UDP
 * (statsd=host:port), fed by the AWS SDK for JavaScript retrying a throttled S3 through sluice;
 * the `retries.summary` command; the real CLI serving /metrics; bad option values.
 */
import { test, describe, before, after } from "node:test";
import assert from "node:assert/strict";
import { startOrigin } from "./support/origins.js";
import dgram from "node:dgram";
import http from "node:http";
import { ListBucketsCommand, PutObjectCommand } from "@aws-sdk/client-s3";
import { Retries } from "../src/addons/retries.js";
import { Metrics } from "../src/addons/metrics.js";
import { startSluice, testConfdir, type TestSluice } from "./support/sluice.js";
import { SLUICE_BIN, spawnSluice, freePort } from "./support/cli.js";
import { run } from "./support/run.js";
import { mapS3To, s3ClientThrough, startThrottlingS3, type ThrottlingS3 } from "./support/throttling-s3.js";
import { needs } from "./support/needs.js";

/** A UDP socket on 127.0.0.1 that keeps every datagram it receives. */
async function statsdServer(): Promise<{ port: number; datagrams: string[]; close(): void }> {
  const socket = dgram.createSocket("udp4");
  const datagrams: string[] = [];
  socket.on("message", (m) => datagrams.push(m.toString("utf8")));
  await new Promise<void>((r) => socket.bind(0, "127.0.0.1", r));
  return { port: socket.address().port, datagrams, close: () => socket.close() };
}

/** Sum of StatsD counter increments and the list of timings, by metric name (tags stripped). */
function parseStatsd(datagrams: string[]): { counters: Map<string, number>; timings: Map<string, number[]>; lines: string[] } {
  const counters = new Map<string, number>();
  const timings = new Map<string, number[]>();
  const lines = datagrams.flatMap((d) => d.split("\n"));
  for (const line of lines) {
    const m = /^([^:]+):([0-9.]+)\|(c|ms)(\|#.*)?$/.exec(line);
    assert.ok(m, `a StatsD line: ${JSON.stringify(line)}`);
    const key = m[1]! + (m[4] ?? "");
    if (m[3] === "c") counters.set(key, (counters.get(key) ?? 0) + Number(m[2]));
    else timings.set(key, [...(timings.get(key) ?? []), Number(m[2])]);
  }
  return { counters, timings, lines };
}

async function until(check: () => boolean, what: string, timeoutMs = 8000): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

function get(url: string, method = "GET"): Promise<{ status: number; type: string; body: string }> {
  return new Promise((resolve, reject) => {
    http.request(url, { method }, (res) => {
      let body = "";
      res.on("data", (c: Buffer) => (body += c.toString()));
      res.on("end", () => resolve({ status: res.statusCode ?? 0, type: String(res.headers["content-type"]), body }));
    }).on("error", reject).end();
  });
}

/** `name{labels} value` lines of a Prometheus text page, as a map. */
function samples(text: string): Map<string, number> {
  const out = new Map<string, number>();
  for (const line of text.split("\n")) {
    const m = /^(sluice_\w+\{[^}]*\}) ([0-9.e+-]+)$/.exec(line);
    if (m) out.set(m[1]!, Number(m[2]));
  }
  return out;
}

describe("metrics from a throttled JavaScript SDK client", () => {
  let origin: ThrottlingS3;
  let sluice: TestSluice;
  let statsd: Awaited<ReturnType<typeof statsdServer>>;
  let metricsPort: number;

  before(async () => {
    origin = await startThrottlingS3((op) => op === "ListBuckets");
    statsd = await statsdServer();
    metricsPort = await freePort();
    sluice = await startSluice({
      set: { map_remote: mapS3To(origin.url), metrics_port: String(metricsPort), statsd: `127.0.0.1:${statsd.port}` },
      addons: [new Retries(), new Metrics()],
    });
    const client = await s3ClientThrough(sluice);
    try {
      await assert.rejects(client.send(new ListBucketsCommand({})), { name: "SlowDown" });
      await client.send(new PutObjectCommand({ Bucket: "logs", Key: "k", Body: "x" }));
    } finally {
      client.destroy();
    }
  });
  after(async () => {
    await sluice?.close();
    statsd?.close();
    await origin?.close();
  });

  test("GET /metrics on 127.0.0.1 answers the counters in Prometheus text format", async () => {
    const metrics = sluice.master.addons.get("metrics") as Metrics;
    assert.equal(metrics.port, metricsPort);
    const r = await get(`http://127.0.0.1:${metricsPort}/metrics`);
    assert.equal(r.status, 200);
    assert.match(r.type, /^text\/plain; version=0\.0\.4/);
    const s = samples(r.body);
    const op = (name: string) => `service="s3",operation="${name}"`;
    assert.equal(s.get(`sluice_requests_total{${op("ListBuckets")},status="503"}`), 3);
    assert.equal(s.get(`sluice_requests_total{${op("PutObject")},status="200"}`), 1);
    assert.equal(s.get(`sluice_throttles_total{${op("ListBuckets")}}`), 3);
    assert.equal(s.get(`sluice_throttles_total{${op("PutObject")}}`), undefined);
    assert.equal(s.get(`sluice_retries_total{${op("ListBuckets")}}`), 2);
    assert.equal(s.get(`sluice_giveups_total{${op("ListBuckets")}}`), 1);
    assert.equal(s.get(`sluice_invocations_total{${op("PutObject")},outcome="ok"}`), 1);
    assert.ok((s.get(`sluice_backoff_seconds_total{${op("ListBuckets")}}`) ?? -1) >= 0);
    assert.match(r.body, /^# HELP sluice_retries_total /m);
    assert.match(r.body, /^# TYPE sluice_retries_total counter$/m);
    assert.equal((await get(`http://127.0.0.1:${metricsPort}/`)).status, 404);
    assert.equal((await get(`http://127.0.0.1:${metricsPort}/metrics`, "POST")).status, 405);
  });

  test("StatsD: the same counters as |c lines, durations and back-off as |ms, several lines per datagram", async () => {
    const want = "sluice.requests.s3.ListBuckets.503";
    await until(() => parseStatsd(statsd.datagrams).counters.get(want) === 3 && parseStatsd(statsd.datagrams).counters.has("sluice.giveups.s3.ListBuckets"), "the StatsD counters");
    const { counters, timings } = parseStatsd(statsd.datagrams);
    assert.equal(counters.get("sluice.requests.s3.PutObject.200"), 1);
    assert.equal(counters.get("sluice.throttles.s3.ListBuckets"), 3);
    assert.equal(counters.get("sluice.retries.s3.ListBuckets"), 2);
    assert.equal(counters.get("sluice.giveups.s3.ListBuckets"), 1);
    assert.equal(counters.get("sluice.invocations.s3.ListBuckets.gave-up"), 1);
    assert.equal(timings.get("sluice.request_duration.s3.ListBuckets")?.length, 3);
    assert.equal(timings.get("sluice.backoff.s3.ListBuckets")?.length, 2);
    assert.ok(statsd.datagrams.every((d) => Buffer.byteLength(d) <= 1400));
    assert.ok(statsd.datagrams.some((d) => d.includes("\n")), "lines are batched into datagrams");
  });

  test("statsd_tags switches to DogStatsD tags; retries.summary prints the table", async () => {
    sluice.master.options.set("statsd_tags", "true");
    const before = statsd.datagrams.length;
    await new Promise<void>((resolve, reject) => {
      // One more throttled request, plain HTTP through the proxy.
      http.get({ host: "127.0.0.1", port: sluice.port, path: `${origin.url}/`, headers: { host: `127.0.0.1:${origin.port}` } }, (res) => {
        res.resume();
        res.on("end", resolve);
      }).on("error", reject);
    });
    await until(() => statsd.datagrams.slice(before).some((d) => d.includes("|#")), "tagged StatsD lines");
    const { lines } = parseStatsd(statsd.datagrams.slice(before));
    assert.ok(lines.some((l) => /^sluice\.requests:\d+\|c\|#service:127\.0\.0\.1,operation:GET,status:503$/.test(l)), lines.join("\n"));
    const table = String(await sluice.master.commands.execute("retries.summary"));
    assert.match(table, /^service\s+operation\s+requests\s+retries\s+throttled\s+gave up\s+back-off/);
    assert.match(table, /^s3\s+ListBuckets\s+3\s+2\s+3 \(100%\)\s+1\s/m);
    assert.match(table, /^s3\s+PutObject\s+1\s+0\s+0\s+0\s/m);
  });
});

describe("metrics options from the command line", () => {
  const sluiceCli = (args: string[]) => run(process.execPath, [SLUICE_BIN, ...args]);

  test("sluice dump --set metrics_port serves the counters of the traffic it proxies", { skip: needs("curl", "curl") }, async () => {
    const origin = await startOrigin({ handler: (_req, res) => void (res as http.ServerResponse).writeHead(429, { "retry-after": "1" }).end("slow down\n") });
    const port = origin.port;
    // metrics_port=0 picks a free port and logs where.
    const proxy = await spawnSluice(["dump", "-p", "0", "--confdir", testConfdir(), "--set", "metrics_port=0"]);
    try {
      const logged = /Prometheus metrics at http:\/\/127\.0\.0\.1:(\d+)\/metrics/.exec(proxy.stderr());
      assert.ok(logged, proxy.stderr());
      const metricsPort = Number(logged[1]);
      assert.ok(metricsPort > 0);
      const c = await run("curl", ["-sS", "-o", "/dev/null", "-w", "%{http_code}", "-x", `http://127.0.0.1:${proxy.port}`, `http://127.0.0.1:${port}/api`]);
      assert.equal(c.stdout, "429", c.stderr);
      const s = samples((await get(`http://127.0.0.1:${metricsPort}/metrics`)).body);
      assert.equal(s.get(`sluice_requests_total{service="127.0.0.1",operation="GET",status="429"}`), 1);
      assert.equal(s.get(`sluice_throttles_total{service="127.0.0.1",operation="GET"}`), 1);
    } finally {
      await proxy.stop();
      await origin.close();
    }
  });

  test("bad metrics options are one-line errors", async () => {
    for (const [set, pattern] of [
      ["statsd=nohostport", /option statsd expects HOST:PORT \(e\.g\. 127\.0\.0\.1:8125\), got "nohostport"/],
      ["statsd=127.0.0.1:99999", /option statsd expects HOST:PORT/],
      ["metrics_port=70000", /metrics_port must be a port from 0 to 65535 \(0 picks a free one\) or -1 for off/],
      ["metrics_port=-2", /metrics_port must be a port from 0 to 65535/],
      ["metrics_port=abc", /metrics_port expects a whole number/],
    ] as const) {
      const r = await sluiceCli(["dump", "-p", "0", "--confdir", testConfdir(), "--set", set]);
      assert.notEqual(r.code, 0, set);
      assert.match(r.stderr, pattern);
      assert.equal(r.stderr.trim().split("\n").length, 1, r.stderr);
    }
  });
});
