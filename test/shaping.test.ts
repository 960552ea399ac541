/**
 * Request shaping end to end: real origins on 127.0.0.1 timestamp what arrives, undici (and the
 * real `sluice` executable for reverse mode and CLI errors) sends through the proxy.
 * Tolerances are wide on purpose: these run on a loaded 2-core machine.
 */
import { test, describe, after } from "node:test";
import assert from "node:assert/strict";
import http2 from "node:http2";
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ProxyAgent, Agent, request } from "undici";
import { startOrigin, type Origin } from "./support/origins.js";
import { startSluice, testConfdir, type TestSluice } from "./support/sluice.js";
import { spawnSluice, SLUICE_BIN, assertOneLineError } from "./support/cli.js";
import { run } from "./support/run.js";
import { Shaping } from "../src/addons/shaping.js";
import { Faults } from "../src/addons/faults.js";
import { TokenBucket } from "../src/core/token-bucket.js";
import { AdaptiveRate } from "../src/core/adaptive-rate.js";
import { readFileSync } from "node:fs";

const cleanup: (() => Promise<unknown>)[] = [];
after(async () => {
  for (const c of cleanup.reverse()) await c().catch(() => {});
});

/** An origin that records when each request arrived (ms, monotonic). */
async function timedOrigin(handler?: (arrivedAt: number) => { status: number; body: string; headers?: Record<string, string> }): Promise<Origin & { arrivals: number[] }> {
  const arrivals: number[] = [];
  const origin = await startOrigin({
    handler: (_req, res, _body) => {
      const t = performance.now();
      arrivals.push(t);
      const answer = handler?.(t) ?? { status: 200, body: "ok" };
      (res as import("node:http").ServerResponse).writeHead(answer.status, { "content-type": "text/plain", ...answer.headers });
      res.end(answer.body);
    },
  });
  cleanup.push(() => origin.close());
  return Object.assign(origin, { arrivals });
}

async function shapedSluice(rules: string[], extra: Record<string, string> = {}): Promise<TestSluice> {
  const sluice = await startSluice({ set: { shape_rules: JSON.stringify(rules), ...extra }, addons: [new Shaping()] });
  cleanup.push(() => sluice.close());
  return sluice;
}

interface Answer {
  status: number;
  body: string;
  headers: Record<string, string | string[] | undefined>;
  doneAt: number;
}

async function get(dispatcher: ProxyAgent | Agent, url: string, opts: { signal?: AbortSignal; headers?: Record<string, string> } = {}): Promise<Answer> {
  const r = await request(url, { dispatcher, signal: opts.signal, headers: opts.headers });
  const body = await r.body.text();
  return { status: r.statusCode, body, headers: r.headers, doneAt: performance.now() };
}

function proxyAgent(sluice: TestSluice): ProxyAgent {
  const agent = new ProxyAgent({ uri: sluice.url, connections: 500 });
  cleanup.push(() => agent.close());
  return agent;
}

/** Most arrivals in any window of `ms`. */
function peakInWindow(times: number[], ms: number): number {
  const t = [...times].sort((a, b) => a - b);
  let best = 0;
  for (let i = 0, j = 0; i < t.length; i++) {
    while (t[i]! - t[j]! > ms) j++;
    best = Math.max(best, i - j + 1);
  }
  return best;
}

describe("shaping at a fixed rate", () => {
  test("a burst of 10R requests leaves at R/s (regular mode), with metrics and shaping.status", async (t) => {
    const R = 20;
    const origin = await timedOrigin();
    const sluice = await shapedSluice([`~d 127.0.0.1 => ${R}/s`]);
    const agent = proxyAgent(sluice);
    const started = performance.now();
    const all = Promise.all(Array.from({ length: 10 * R }, (_, i) => get(agent, `${origin.url}/item/${i}`)));
    // Mid-run the queue is visible to the metrics endpoint's registry and the status command.
    await new Promise((r) => setTimeout(r, 3000));
    const metrics = await sluice.master.context.metrics.metrics();
    const depth = Number(/sluice_shaping_queue_depth\{rule="1",key="all"\} (\d+)/.exec(metrics)?.[1] ?? NaN);
    assert.ok(depth > 50, `queue depth mid-run should be large, metrics said:\n${metrics.slice(0, 1500)}`);
    assert.match(metrics, /sluice_shaping_rate\{rule="1",key="all"\} 20/);
    const status = String(await sluice.master.commands.execute("shaping.status"));
    assert.match(status, /rule 1: ~d 127\.0\.0\.1 => 20\/s/);
    assert.match(status, /all: rate 20\.0\/s, queued \d+, longest wait [\d.]+s/);
    const answers = await all;
    assert.ok(answers.every((a) => a.status === 200), "every shaped request succeeds");
    assert.equal(origin.arrivals.length, 10 * R);
    const span = (Math.max(...origin.arrivals) - Math.min(...origin.arrivals)) / 1000;
    const expected = (10 * R - 1) / R;
    t.diagnostic(`${10 * R} requests reached the origin over ${span.toFixed(2)}s (ideal ${expected.toFixed(2)}s), peak ${peakInWindow(origin.arrivals, 1000)} in any second`);
    // The lower bound is the feature (never faster than R/s); the upper one only says the queue
    // keeps draining: a loaded machine delays releases, so it is a liveness bound, not a timing.
    assert.ok(span > expected * 0.9 && span < expected * 2, `200 requests at ${R}/s should take ~${expected.toFixed(1)}s at the origin, took ${span.toFixed(2)}s`);
    // Never faster than the rate: at most R + 1 (the burst) leave in any second; +2 for arrival jitter.
    const peak = peakInWindow(origin.arrivals, 1000);
    assert.ok(peak <= R + 3, `at most ${R + 3} arrivals in any second, saw ${peak}`);
    const total = (performance.now() - started) / 1000;
    assert.ok(total < expected * 2.5, `took ${total.toFixed(1)}s`);
    // Every flow records its wait.
    await sluice.waitForFlows(10 * R);
    const waits = sluice.flows.map((f) => (f.metadata.shaping as { waitMs: number; rule: string; key: string }));
    assert.ok(waits.every((w) => w && w.rule === "1" && w.key === "all"));
    assert.ok(Math.max(...waits.map((w) => w.waitMs)) > expected * 1000 * 0.8, "the last request waited about the whole run");
    const after = await sluice.master.context.metrics.metrics();
    assert.match(after, /sluice_shaping_wait_seconds_count\{rule="1"\} 200/);
  });

  test("max-wait: requests that would wait too long get a 429 that says which rule, the limit and what to do", async () => {
    const origin = await timedOrigin();
    const sluice = await shapedSluice(["~d 127.0.0.1 => 2/s max-wait=1s"]);
    const agent = proxyAgent(sluice);
    const answers = await Promise.all(Array.from({ length: 8 }, (_, i) => get(agent, `${origin.url}/w/${i}`)));
    const ok = answers.filter((a) => a.status === 200);
    const rejected = answers.filter((a) => a.status !== 200);
    // 1 at once, then one per 500 ms up to 1 s of waiting: 3 (a slow start of the client may let a 4th in).
    assert.ok(ok.length >= 2 && ok.length <= 4, `2–4 admitted, got ${ok.length}`);
    assert.equal(rejected.length, 8 - ok.length);
    for (const r of rejected) {
      assert.equal(r.status, 429);
      assert.equal(r.headers["x-sluice-shaping"], "rejected");
      assert.equal(r.headers["x-sluice-shaping-reason"], "max-wait");
      assert.ok(Number(r.headers["retry-after"]) >= 1);
      assert.match(r.body, /rule 1 \(~d 127\.0\.0\.1 => 2\/s max-wait=1s\) limits it to 2\.00\/s/);
      assert.match(r.body, /max-wait=1\.0s/);
      assert.match(r.body, /What to do: .*overflow=pass/);
    }
    assert.equal(origin.arrivals.length, ok.length, "rejected requests never reach the origin");
    const metrics = await sluice.master.context.metrics.metrics();
    assert.match(metrics, new RegExp(`sluice_shaping_rejected_total\\{rule="1",reason="max-wait",outcome="answered"\\} ${rejected.length}`));
  });

  test("max-queue: a full queue answers 503 when told to, and overflow=pass lets the excess through unshaped", async () => {
    const origin = await timedOrigin();
    const sluice = await shapedSluice(["~u /full/ => 1/s max-queue=2 status=503", "~u /pass/ => 1/s max-queue=0 overflow=pass"]);
    const agent = proxyAgent(sluice);
    const full = await Promise.all(Array.from({ length: 6 }, (_, i) => get(agent, `${origin.url}/full/${i}`)));
    assert.equal(full.filter((a) => a.status === 200).length, 3, "1 at once + 2 queued");
    const rejected = full.filter((a) => a.status === 503);
    assert.equal(rejected.length, 3);
    for (const r of rejected) {
      assert.equal(r.headers["x-sluice-shaping"], "rejected");
      assert.equal(r.headers["x-sluice-shaping-reason"], "queue-full");
      assert.match(r.body, /already holds 2 requests \(max-queue=2\)/);
    }
    const t0 = performance.now();
    const passed = await Promise.all(Array.from({ length: 4 }, (_, i) => get(agent, `${origin.url}/pass/${i}`)));
    assert.ok(passed.every((a) => a.status === 200), "overflow=pass never rejects");
    assert.ok(performance.now() - t0 < 900, "the excess is not queued");
    await sluice.waitForFlows(10);
    const passedFlows = sluice.flows.filter((f) => f.request.path.startsWith("/pass/"));
    assert.equal(passedFlows.filter((f) => (f.metadata.shaping as { overflow?: string }).overflow === "passed").length, 3);
  });

  test("fair across keys: a cold host is served between the hot host's queued requests", async () => {
    const hot = await timedOrigin();
    const cold = await timedOrigin();
    const sluice = await shapedSluice(["~d 127.0.0.1 => 10/s fair=host"]);
    const agent = proxyAgent(sluice);
    const hotAll = Promise.all(Array.from({ length: 30 }, (_, i) => get(agent, `${hot.url}/h/${i}`)));
    await new Promise((r) => setTimeout(r, 300));
    const coldStart = performance.now();
    const coldAnswers = await Promise.all(Array.from({ length: 3 }, (_, i) => get(agent, `${cold.url}/c/${i}`)));
    const coldTook = Math.max(...coldAnswers.map((a) => a.doneAt)) - coldStart;
    const hotAnswers = await hotAll;
    assert.ok(coldAnswers.every((a) => a.status === 200) && hotAnswers.every((a) => a.status === 200));
    // FIFO would make the cold host wait behind ~27 hot requests (2.7 s); round-robin serves it every other turn.
    assert.ok(coldTook < 1500, `cold host waited ${coldTook.toFixed(0)} ms`);
    const lastHot = Math.max(...hot.arrivals);
    assert.ok(Math.max(...cold.arrivals) < lastHot - 1000, "the cold requests were not left for last");
  });

  test("HTTPS through the regular proxy (TLS interception) is shaped the same way", async () => {
    const R = 10;
    const origin = await startOrigin({ tls: true });
    cleanup.push(() => origin.close());
    const sluice = await shapedSluice([`~d 127.0.0.1 => ${R}/s`]);
    const agent = new ProxyAgent({ uri: sluice.url, connections: 100, requestTls: { ca: readFileSync(sluice.caCert, "utf8") } });
    cleanup.push(() => agent.close());
    const t0 = performance.now();
    const answers = await Promise.all(Array.from({ length: 3 * R }, (_, i) => get(agent, `${origin.url}/tls/${i}`)));
    const took = (performance.now() - t0) / 1000;
    assert.ok(answers.every((a) => a.status === 200));
    const expected = (3 * R - 1) / R;
    assert.ok(took > expected * 0.9 && took < expected * 1.5, `${3 * R} HTTPS requests at ${R}/s took ${took.toFixed(2)}s, expected ~${expected.toFixed(1)}s`);
  });

  test("a client that gives up leaves the queue: its request never reaches the origin", async () => {
    const origin = await timedOrigin();
    const sluice = await shapedSluice(["~d 127.0.0.1 => 1/s"]);
    const agents = [0, 1, 2].map(() => proxyAgent(sluice));
    const first = get(agents[0]!, `${origin.url}/a`);
    const second = get(agents[1]!, `${origin.url}/b`);
    const abort = new AbortController();
    const third = get(agents[2]!, `${origin.url}/c`, { signal: abort.signal }).catch((e: Error) => e);
    await new Promise((r) => setTimeout(r, 300));
    abort.abort();
    await agents[2]!.close();
    assert.ok((await third) instanceof Error);
    assert.equal((await first).status, 200);
    assert.equal((await second).status, 200);
    await new Promise((r) => setTimeout(r, 1500));
    assert.deepEqual(origin.requests.map((r) => r.url).sort(), ["/a", "/b"]);
    const cancelled = sluice.master.view.all.find((f) => f.request.path === "/c");
    assert.ok(cancelled, "the abandoned flow finished with an error");
    assert.match(cancelled!.error?.msg ?? "", /client disconnected while its request waited in a shaping queue/);
  });
});

describe("shaping over HTTP/2", () => {
  test("a cancelled stream leaves the queue; the connection's other streams are still served", async () => {
    const origin = await timedOrigin();
    const sluice = await shapedSluice(["~u /q/ => 1/s burst=1"], { mode: `reverse:${origin.url}` });
    // Prior-knowledge HTTP/2 (h2c) to the reverse proxy: all three requests share one connection.
    const session = http2.connect(sluice.url);
    cleanup.push(async () => void session.destroy());
    const get = (path: string) => {
      const stream = session.request({ ":path": path });
      const status = new Promise<number | Error>((resolve) => {
        stream.on("response", (h) => resolve(Number(h[":status"])));
        stream.on("error", (e) => resolve(e));
        stream.on("close", () => resolve(new Error("stream closed")));
      });
      stream.resume();
      return { stream, status };
    };
    const a = get("/q/a");
    const b = get("/q/b");
    const c = get("/q/c");
    await new Promise((r) => setTimeout(r, 300));
    c.stream.close(http2.constants.NGHTTP2_CANCEL);
    assert.equal(await a.status, 200);
    assert.equal(await b.status, 200);
    assert.ok((await c.status) instanceof Error);
    await new Promise((r) => setTimeout(r, 1500));
    assert.deepEqual(origin.requests.map((r) => r.url).sort(), ["/q/a", "/q/b"]);
    const cancelled = sluice.master.view.all.find((f) => f.request.path === "/q/c");
    assert.match(cancelled?.error?.msg ?? "", /client disconnected while its request waited in a shaping queue/);
  });
});

describe("adaptive shaping", () => {
  test("the controller alone: cut ×0.7 on a throttle, cubic growth back, floor, one cut per burst of throttles", () => {
    const c = new AdaptiveRate({ start: 50 }, 0);
    for (let t = 0; t < 2000; t += 10) c.recordSend(t);
    assert.ok(c.onThrottle(2000, 1990));
    assert.ok(Math.abs(c.rate - 35) < 1.5, `cut to ~0.7 × 50, got ${c.rate}`);
    assert.equal(c.onThrottle(2010, 1995), false, "a request sent before the cut does not cut again");
    c.onSuccess(2100);
    assert.ok(c.rate > 35 && c.rate < 40, `grows slowly right after the cut: ${c.rate}`);
    const k = Math.cbrt((50 * 0.3) / 0.4);
    for (let t = 2000; t < 2000 + k * 1000; t += 10) c.recordSend(t);
    c.onSuccess(2000 + k * 1000);
    assert.ok(Math.abs(c.rate - 50) < 1, `back at the old plateau after K=${k.toFixed(2)}s: ${c.rate}`);
    const floor = new AdaptiveRate({ start: 1 }, 0);
    for (let i = 0; i < 10; i++) floor.onThrottle(i * 1000);
    assert.equal(floor.rate, 0.5, "never below 0.5/s");
    // Against a token-bucket server of 100/s, the learned rate oscillates close to 100.
    const server = new TokenBucket(100, 100, 0);
    const learner = new AdaptiveRate({ start: 10 }, 0);
    let sent = 0;
    for (let t = 0; t < 60_000; t += 1000 / learner.rate) {
      learner.recordSend(t);
      if (t > 30_000) sent++;
      if (server.tryTake(t + 2)) learner.onSuccess(t + 3);
      else learner.onThrottle(t + 3, t);
    }
    assert.ok(sent / 30 > 80 && sent / 30 < 120, `learned ${(sent / 30).toFixed(1)}/s against 100/s`);
  });

  test("learns an unknown budget set by a fault rule: converges to within 20% of it", async (t) => {
    // The unknown budget: a fault rule that throttles EC2 above R/s (503 RequestLimitExceeded).
    const R = 20;
    const origin = await timedOrigin(() => ({ status: 200, body: "<DescribeSnapshotsResponse/>" }));
    const sluice = await startSluice({
      set: { shape_rules: JSON.stringify(["~svc ec2 => adaptive start=5/s per=service"]), fault_rules: JSON.stringify([`~svc ec2 => throttle rate=${R}/s`]) },
      addons: [new Shaping(), new Faults()],
    });
    cleanup.push(() => sluice.close());
    const agent = proxyAgent(sluice);
    const headers = {
      authorization: "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20260101/us-east-1/ec2/aws4_request, SignedHeaders=host;x-amz-date, Signature=0",
      "content-type": "application/x-www-form-urlencoded",
    };
    const t0 = performance.now();
    const RUN_MS = 16_000;
    const sent: number[] = [];
    const throttledAt: number[] = [];
    // More demand than the budget: 16 workers sending back to back; a throttle is simply retried.
    await Promise.all(
      Array.from({ length: 16 }, async () => {
        while (performance.now() - t0 < RUN_MS) {
          const a = await get(agent, `${origin.url}/?Action=DescribeSnapshots&Version=2016-11-15`, { headers });
          sent.push(a.doneAt);
          if (a.status === 503) {
            assert.match(a.body, /RequestLimitExceeded/);
            throttledAt.push(a.doneAt);
          } else assert.equal(a.status, 200, a.body);
        }
      }),
    );
    // After learning (the second half), what is sent and what gets through are close to the budget.
    const from = t0 + RUN_MS / 2;
    const to = t0 + RUN_MS;
    const inWindow = (ts: number[]) => ts.filter((t) => t >= from && t < to).length / ((to - from) / 1000);
    const okRate = inWindow(origin.arrivals);
    const sentRate = inWindow(sent);
    t.diagnostic(`second half: sent ${sentRate.toFixed(1)}/s, admitted ${okRate.toFixed(1)}/s, throttled ${inWindow(throttledAt).toFixed(1)}/s; budget ${R}/s`);
    assert.ok(okRate > R * 0.8 && okRate < R * 1.2, `admitted ${okRate.toFixed(1)}/s against a budget of ${R}/s`);
    assert.ok(sentRate > R * 0.8 && sentRate < R * 1.2, `sent ${sentRate.toFixed(1)}/s against a budget of ${R}/s`);
    assert.ok(throttledAt.length > 0, "the budget was found by being throttled");
    // Throttles are a small share once learned (16 unshaped workers would be throttled most of the time).
    const lateThrottles = inWindow(throttledAt);
    assert.ok(lateThrottles < sentRate * 0.25, `${lateThrottles.toFixed(1)}/s of ${sentRate.toFixed(1)}/s throttled after learning`);
    const status = String(await sluice.master.commands.execute("shaping.status"));
    assert.match(status, /ec2: rate [\d.]+\/s, .* \d+ cuts? on \d+ throttles?/);
    const throttledFlow = sluice.flows.find((f) => f.response?.statusCode === 503);
    assert.deepEqual((throttledFlow?.metadata.fault as { action?: string })?.action, "throttle", "the throttle came from the fault rule");
  });
});

async function waitFor(cond: () => boolean, what: string, ms = 5000): Promise<void> {
  const until = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > until) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

describe("shaping through the real CLI", () => {
  test("reverse mode: --shape paces requests, and dump prints a status line while a queue is non-empty", async () => {
    const R = 5;
    const origin = await timedOrigin();
    const dir = mkdtempSync(join(tmpdir(), "sluice-shapes-"));
    const file = join(dir, "shapes.yaml");
    writeFileSync(file, `- {filter: "~u /slow/", rate: ${R}/s, max_wait: 30s}\n`);
    const sluice = await spawnSluice(["dump", "-p", "0", "--confdir", testConfdir(), "--mode", `reverse:${origin.url}`, "--shapes", file]);
    cleanup.push(() => sluice.stop());
    const agent = new Agent({ connections: 100 });
    cleanup.push(() => agent.close());
    const answers = await Promise.all(Array.from({ length: 6 * R }, (_, i) => get(agent, `http://127.0.0.1:${sluice.port}/slow/${i}`)));
    assert.ok(answers.every((a) => a.status === 200));
    const span = (Math.max(...origin.arrivals) - Math.min(...origin.arrivals)) / 1000;
    const expected = (6 * R - 1) / R;
    assert.ok(span > expected * 0.9 && span < expected * 1.25, `${6 * R} requests at ${R}/s took ${span.toFixed(2)}s, expected ~${expected}s`);
    assert.ok(peakInWindow(origin.arrivals, 1000) <= R + 3);
    assert.match(sluice.stderr(), /shaping: rule 1 all: \d+ queued at 5\.00\/s, longest wait [\d.]+s/);
    // Flow lines say how long each request waited; the last of the burst waited seconds.
    await waitFor(() => (sluice.stdout().match(/\/slow\/\d+ /g) ?? []).length === 6 * R, "every flow line");
    assert.match(sluice.stdout(), /\/slow\/\d+ → 200 .*\[shaped [1-9][.\d]*s\]/);
  });

  test("bad rules: one clear line naming the rule, exit code 2, no stack trace", async () => {
    const notAList = join(mkdtempSync(join(tmpdir(), "sluice-shapes-")), "not-a-list.yaml");
    const cases: [string[], RegExp][] = [
      [["--shape", "~svc ec2 => 20/x"], /^sluice: shaping rule "~svc ec2 => 20\/x": rate: bad rate "20\/x": expected N\/s/],
      [["--shape", "~svc ec2 => 20/s max-queue=lots"], /^sluice: shaping rule "~svc ec2 => 20\/s max-queue=lots": max-queue= expects a whole number/],
      [["--shape", "~svc ec2 => 20/s colour=blue"], /^sluice: shaping rule .*: unknown option colour=; options are burst=/],
      [["--shape", "~svc ec2"], /^sluice: shaping rule "~svc ec2" has no "=>"/],
      [["--shapes", "/nonexistent/shapes.yaml"], /^sluice: --shapes \/nonexistent\/shapes\.yaml: cannot read it \(ENOENT, no such file\)/],
      [["--shapes", notAList], /^sluice: --shapes .*not-a-list\.yaml: expected a YAML list of rules, e\.g\. - "~svc ec2 => 20\/s"/],
    ];
    writeFileSync(notAList, "rules: 20/s\n");
    for (const [args, expected] of cases) {
      const r = await run(process.execPath, [SLUICE_BIN, "dump", "-p", "0", "--confdir", testConfdir(), ...args], { timeoutMs: 20_000 });
      assertOneLineError(r, expected, args.join(" "), 2);
    }
  });
});
