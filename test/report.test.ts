/**
 * `sluice report` and the dump output's retry marks, on captures made by the real `sluice dump -w`
 * with real clients: boto3 under 100% throttling (legacy retries, real back-off sleeps), curl
 * --retry for inferred retries; the same capture as SQLite; the HTML page in headless Chromium.
 */
import { test, describe, before, after } from "node:test";
import assert from "node:assert/strict";
import { startOrigin } from "./support/origins.js";
import http from "node:http";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { inChromium } from "./support/report-page.js";
import { run } from "./support/run.js";
import { SLUICE_BIN, spawnSluice, assertOneLineError } from "./support/cli.js";
import { testConfdir } from "./support/sluice.js";
import { mapS3To, runBoto3, startThrottlingS3, type BotoRun, type ThrottlingS3 } from "./support/throttling-s3.js";
import { FlowWriter } from "../src/store/index.js";
import { HTTPFlow, Request, Response, newClientConnection, newServerConnection } from "../src/core/flow.js";
import { Headers } from "../src/core/headers.js";
import type { TrackerSnapshot } from "../src/aws/invocations.js";
import { needs, needsPython } from "./support/needs.js";

const sluice = (args: string[]) => run(process.execPath, [SLUICE_BIN, ...args], { timeoutMs: 120_000 });

/** What the page functions use of a DOM element (the DOM types are not in this project's lib). */
type Attributes = { getAttribute(name: string): string | null };

async function reportJson(args: string[]): Promise<TrackerSnapshot> {
  const r = await sluice(["report", ...args, "--json"]);
  assert.equal(r.code, 0, r.stderr);
  return JSON.parse(r.stdout) as TrackerSnapshot;
}

describe("boto3 list_buckets under 100% throttling, captured by sluice dump -w", { skip: needsPython("boto3", "python3-boto3") }, () => {
  const dir = mkdtempSync(join(tmpdir(), "sluice-report-"));
  const capture = join(dir, "throttled.mitm");
  let origin: ThrottlingS3;
  let boto: BotoRun;
  let dumpOutput = "";

  before(async () => {
    origin = await startThrottlingS3(() => true);
    const proxy = await spawnSluice(["dump", "-p", "0", "--confdir", testConfdir(), "-w", capture, "--set", `map_remote=${mapS3To(origin.url)}`]);
    try {
      // Real sleeps, so the gaps on the wire are boto3's back-off; the seed keeps them short.
      boto = await runBoto3({ proxyUrl: `http://127.0.0.1:${proxy.port}`, caCert: join(testConfdir(), "sluice-ca-cert.pem"), operations: ["list_buckets"], threads: 1, callsPerThread: 1, mode: "legacy", realSleeps: true, seed: 4 });
    } finally {
      await proxy.stop();
      dumpOutput = proxy.stdout();
    }
  });
  after(async () => {
    await origin?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  test("boto3 itself made 5 attempts: 4 retries with legacy back-off, then raised", () => {
    assert.deepEqual(boto.retries, { ListBuckets: 4 });
    assert.deepEqual(boto.failures, { ListBuckets: 1 });
    assert.equal(boto.sleeps.length, 4);
    // Legacy mode: rand() * 2^(attempt-1) seconds after attempt 1, 2, 3, 4.
    boto.sleeps.forEach((s, i) => assert.ok(s >= 0 && s < 2 ** i, `sleep ${i + 1} = ${s}`));
    assert.equal(origin.answered.ListBuckets, 5);
  });

  test("sluice dump marks the retry attempts", () => {
    const lines = dumpOutput.split("\n").filter((l) => l.includes(" GET "));
    assert.equal(lines.length, 5, dumpOutput);
    assert.doesNotMatch(lines[0]!, /\[attempt/, "boto3's first attempt carries no max, and is no retry");
    for (let n = 2; n <= 5; n++) assert.match(lines[n - 1]!, new RegExp(`503 Service Unavailable .*\\[attempt ${n}/5\\]`));
  });

  test("the report shows 1 invocation, 5 attempts, 4 retries, gave up, back-off gaps matching boto3's sleeps", async () => {
    const data = await reportJson([capture]);
    assert.equal(data.flows, 5);
    assert.equal(data.totals.invocations, 1);
    assert.equal(data.totals.requests, 5);
    assert.equal(data.totals.retries, 4);
    assert.equal(data.totals.throttles, 5);
    assert.deepEqual(data.totals.outcomes, { ok: 0, retried: 0, "gave-up": 1, failed: 0 });
    assert.deepEqual(data.attemptsHistogram, [[5, 1]]);
    const [call] = data.worstInvocations;
    assert.equal(call!.service, "s3");
    assert.equal(call!.operation, "ListBuckets");
    assert.equal(call!.outcome, "gave-up");
    assert.deepEqual(call!.attempts.map((a) => [a.attempt, a.status, a.throttle]), [1, 2, 3, 4, 5].map((n) => [n, 503, "SlowDown"]));
    assert.equal(call!.attempts[0]!.backoff, null);
    for (let n = 2; n <= 5; n++) {
      const gap = call!.attempts[n - 1]!.backoff!;
      const slept = boto.sleeps[n - 2]!;
      // The gap on the wire is the sleep plus the client's and proxy's own work: never less, a little more.
      assert.ok(gap >= slept - 0.005 && gap <= slept + 1.0, `gap before attempt ${n}: ${gap.toFixed(3)} s on the wire, boto3 slept ${slept.toFixed(3)} s`);
      assert.ok(gap < 2 ** (n - 2) + 1.0, `gap before attempt ${n} within legacy's bound rand()*2^${n - 2}`);
    }
    const sum = boto.sleeps.reduce((a, b) => a + b, 0);
    assert.ok(Math.abs(data.totals.backoffSeconds - sum) < 1.5, `back-off ${data.totals.backoffSeconds} s vs slept ${sum} s`);
  });

  test("the terminal summary says the same in words", async () => {
    const r = await sluice(["report", capture]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /SDK calls\s+1: 0 ok first try, 0 ok after retries, 1 gave up, 0 failed/);
    assert.match(r.stdout, /requests\s+5: 4 retries \(80%\)/);
    assert.match(r.stdout, /throttled\s+5 \(100% of requests\)/);
    assert.match(r.stdout, /^s3\s+ListBuckets\s+5\s+4\s+5 \(100%\)\s+1\s+\d+\.\d\ds/m);
    assert.match(r.stdout, /gave up after 5 attempts/);
    assert.match(r.stdout, /#1\/5 503 SlowDown · wait \d\.\d{3} s · #2\/5 503 SlowDown/);
  });

  test("the same capture as an SQLite store, with a filter", async () => {
    const db = join(dir, "throttled.sqlite");
    const c = await sluice(["convert", capture, db]);
    assert.equal(c.code, 0, c.stderr);
    const data = await reportJson([db, "~svc s3 & ~op ListBuckets"]);
    assert.equal(data.totals.invocations, 1);
    assert.equal(data.totals.retries, 4);
    assert.equal(data.totals.outcomes["gave-up"], 1);
    const none = await sluice(["report", db, "~op PutObject"]);
    assert.equal(none.code, 0, none.stderr);
    assert.match(none.stdout, /no flows match ~op PutObject/);
  });

  test("--html: a self-contained page that renders in headless Chromium, plots with data, no console errors", { skip: needs("/usr/bin/chromium", "chromium") }, async () => {
    const html = join(dir, "report.html");
    const r = await sluice(["report", capture, "--html", html]);
    assert.equal(r.code, 0, r.stderr);
    await inChromium(html, async (page) => {
      const traffic = await page.locator("#chart-traffic path.series").evaluateAll((paths) => paths.map((p) => [(p as unknown as Attributes).getAttribute("data-series"), ((p as unknown as Attributes).getAttribute("d") ?? "").split(/[MHV]/).length]));
      assert.deepEqual(traffic.map((t) => t[0]), ["requests", "throttles", "retries"]);
      assert.ok(traffic.every((t) => (t[1] as number) > 4), JSON.stringify(traffic));
      const box = await page.locator("#chart-traffic").boundingBox();
      assert.ok(box && box.width > 300 && box.height > 60, "the plot is laid out");
      assert.equal(await page.locator("#chart-backoff path.series").count(), 1);
      const bars = await page.locator("#chart-attempts rect.bar").evaluateAll((rects) => rects.map((r) => Number((r as unknown as Attributes).getAttribute("height"))));
      assert.equal(bars.length, 5, "attempts 1 to 5");
      assert.ok(bars[4]! > 0 && bars.slice(0, 4).every((h) => h === 0), `only 5-attempt calls: ${bars}`);
      assert.match(await page.locator("#worst").innerText(), /gave up after 5 attempts/);
      assert.match(await page.locator("#operations").innerText(), /ListBuckets/);
    });
  });
});

describe("inferred retries: curl --retry, no SDK headers", { skip: needs("curl", "curl") }, () => {
  test("3 attempts of one request, about a second apart, marked inferred", async () => {
    const origin = await startOrigin({ handler: (_req, res) => void (res as http.ServerResponse).writeHead(503, { "content-type": "text/plain" }).end("busy\n") });
    const port = origin.port;
    const dir = mkdtempSync(join(tmpdir(), "sluice-report-"));
    const capture = join(dir, "curl.mitm");
    const proxy = await spawnSluice(["dump", "-p", "0", "--confdir", testConfdir(), "-w", capture]);
    let dumped = "";
    try {
      const c = await run("curl", ["-sS", "-o", join(dir, "body.txt"), "-w", "%{http_code}", "--retry", "2", "--retry-delay", "1", "-x", `http://127.0.0.1:${proxy.port}`, "-X", "POST", "--data", "job=1", `http://127.0.0.1:${port}/jobs`]);
      assert.equal(c.stdout, "503", c.stderr);
    } finally {
      await proxy.stop();
      dumped = proxy.stdout();
      await origin.close();
    }
    const lines = dumped.split("\n").filter((l) => l.includes("/jobs"));
    assert.equal(lines.length, 3, dumped);
    assert.doesNotMatch(lines[0]!, /\[attempt/);
    assert.match(lines[1]!, /\[attempt 2, inferred\]/);
    assert.match(lines[2]!, /\[attempt 3, inferred\]/);
    const data = await reportJson([capture]);
    assert.equal(data.totals.requests, 3);
    assert.equal(data.totals.retries, 2);
    assert.equal(data.totals.inferredRetries, 2);
    assert.equal(data.totals.invocations, 1);
    assert.equal(data.totals.outcomes["gave-up"], 1);
    const [call] = data.worstInvocations;
    assert.equal(call!.inferred, true);
    assert.equal(call!.operation, "POST");
    for (const a of call!.attempts.slice(1)) {
      assert.equal(a.inferred, true);
      assert.ok(a.backoff! >= 0.95 && a.backoff! < 2.5, `curl waits --retry-delay 1 s, gap ${a.backoff}`);
    }
    const text = await sluice(["report", capture]);
    assert.match(text.stdout, /2 retries \(67%\), 2 of them inferred/);
  });
});

describe("sluice report on bad input and large files", () => {
  test("usage errors are one line each, no stack trace; --help describes the command", async () => {
    const dir = mkdtempSync(join(tmpdir(), "sluice-report-"));
    const notFlows = join(dir, "notes.txt");
    writeFileSync(notFlows, "hello, these are not flows\n");
    for (const [args, pattern] of [
      [["report"], /report needs a capture file/],
      [["report", join(dir, "missing.mitm")], /cannot read .*missing\.mitm: no such file/],
      [["report", notFlows], /notes\.txt/],
      [["report", notFlows, "~c ("], /~c expects an integer/],
      [["report", notFlows, "--top", "many"], /--top expects a whole number/],
      [["report", notFlows, "--frobnicate"], /unknown option --frobnicate/],
      [["report", notFlows, "--html", join(dir, "no-such-dir", "r.html")], /cannot write the HTML report to .*r\.html: the directory .*no-such-dir does not exist/],
    ] as const) {
      const r = await sluice([...args]);
      assertOneLineError(r, pattern, args.join(" "));
    }
    const help = await sluice(["report", "--help"]);
    assert.equal(help.code, 0);
    for (const flag of ["--html", "--json", "--top", "--infer-window", "--idle-window", "FILTER"]) assert.ok(help.stdout.includes(flag), flag);
    const main = await sluice(["--help"]);
    assert.match(main.stdout, /^ {2}report /m);
  });

  test("a large capture streams through with bounded memory and progress on stderr", async () => {
    const dir = mkdtempSync(join(tmpdir(), "sluice-report-"));
    const file = join(dir, "big.mitm");
    const writer = await FlowWriter.open(file);
    const n = 60_000;
    const base = 1_790_000_000;
    for (let i = 0; i < n; i++) {
      // 20,000 calls of 3 attempts each: throttled, throttled, ok; each call 0.05 s after the previous.
      const call = Math.floor(i / 3);
      const attempt = (i % 3) + 1;
      const start = base + call * 0.05 + attempt * 0.01;
      const headers = new Headers({ host: "dynamodb.eu-west-1.amazonaws.com", "x-amz-target": "DynamoDB_20120810.PutItem", authorization: "AWS4-HMAC-SHA256 Credential=AKID/20261125/eu-west-1/dynamodb/aws4_request, SignedHeaders=host, Signature=0", "amz-sdk-invocation-id": `call-${call}`, "amz-sdk-request": `attempt=${attempt}; max=3` });
      const req = new Request({ method: "POST", scheme: "https", host: "dynamodb.eu-west-1.amazonaws.com", port: 443, path: "/", headers, content: Buffer.from('{"TableName":"t"}'), timestampStart: start });
      req.timestampEnd = start;
      const f = new HTTPFlow(newClientConnection(), newServerConnection(), req);
      f.clientConn.peername = ["10.1.2.3", 40000 + (call % 1000)];
      const throttled = attempt < 3;
      const resp = new Response({ statusCode: throttled ? 400 : 200, headers: new Headers({ "content-type": "application/x-amz-json-1.0" }), content: Buffer.from(throttled ? '{"__type":"com.amazonaws.dynamodb.v20120810#ThrottlingException","message":"Rate exceeded"}' : "{}"), timestampStart: start + 0.002 });
      resp.timestampEnd = start + 0.002;
      f.response = resp;
      writer.write(f);
    }
    await writer.close();
    // A heap far smaller than the decoded capture (about 150 MB): the report must stream.
    const r = await run(process.execPath, ["--max-old-space-size=48", SLUICE_BIN, "report", file, "--json"], { timeoutMs: 120_000 }).finally(() => rmSync(dir, { recursive: true, force: true }));
    assert.equal(r.code, 0, r.stderr);
    const data = JSON.parse(r.stdout) as TrackerSnapshot;
    assert.equal(data.flows, n);
    assert.equal(data.totals.invocations, n / 3);
    assert.equal(data.totals.retries, (2 * n) / 3);
    assert.equal(data.totals.throttles, (2 * n) / 3);
    assert.equal(data.totals.outcomes.retried, n / 3);
    assert.deepEqual(data.attemptsHistogram, [[3, n / 3]]);
    assert.ok(data.series.buckets.length <= 3600);
    assert.match(r.stderr, new RegExp(`read ${n} flows from .*big\\.mitm in \\d+\\.\\d s`));
  });
});
