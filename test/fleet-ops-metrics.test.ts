/**
 * The `instance` label: with `--set instance=NAME` (or in a fleet) every sluice series carries it,
 * on the Prometheus page and in StatsD (a name part, or a DogStatsD tag); a process on its own
 * without the option keeps its series as they were (Prometheus adds its own target label).
 */
import { test, describe, before, after } from "node:test";
import assert from "node:assert/strict";
import dgram from "node:dgram";
import http from "node:http";
import { Retries } from "../src/addons/retries.js";
import { Metrics } from "../src/addons/metrics.js";
import { Faults } from "../src/addons/faults.js";
import { startSluice, type TestSluice } from "./support/sluice.js";
import { freePort } from "./support/cli.js";
import { startOrigin, type Origin } from "./support/origins.js";

async function statsdServer(): Promise<{ port: number; lines: () => string[]; close(): void }> {
  const socket = dgram.createSocket("udp4");
  const datagrams: string[] = [];
  socket.on("message", (m) => datagrams.push(m.toString("utf8")));
  await new Promise<void>((r) => socket.bind(0, "127.0.0.1", r));
  return { port: socket.address().port, lines: () => datagrams.flatMap((d) => d.split("\n")), close: () => socket.close() };
}

async function until(check: () => boolean, what: string, timeoutMs = 8000): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

function get(url: string, proxyPort?: number): Promise<{ status: number; body: string }> {
  const target = new URL(url);
  const opts = proxyPort ? { host: "127.0.0.1", port: proxyPort, path: url, headers: { host: target.host } } : url;
  return new Promise((resolve, reject) => {
    http.get(opts, (res) => {
      let body = "";
      res.on("data", (c: Buffer) => (body += c.toString()));
      res.on("end", () => resolve({ status: res.statusCode ?? 0, body }));
    }).on("error", reject);
  });
}

/** Every `sluice_*` sample line of a Prometheus page. */
function sampleLines(page: string): string[] {
  return page.split("\n").filter((l) => l.startsWith("sluice_"));
}

describe("metrics carry the instance label", () => {
  let origin: Origin;
  let named: TestSluice;
  let plain: TestSluice;
  let statsd: Awaited<ReturnType<typeof statsdServer>>;
  let namedMetrics: number;
  let plainMetrics: number;

  before(async () => {
    origin = await startOrigin();
    statsd = await statsdServer();
    namedMetrics = await freePort();
    plainMetrics = await freePort();
    const rule = "~u /throttled => throttle";
    named = await startSluice({
      set: { instance: "sidecar-1", metrics_port: String(namedMetrics), statsd: `127.0.0.1:${statsd.port}` },
      values: { fault_rules: [rule] },
      addons: [new Faults(), new Retries(), new Metrics()],
    });
    plain = await startSluice({ set: { metrics_port: String(plainMetrics) }, values: { fault_rules: [rule] }, addons: [new Faults(), new Retries(), new Metrics()] });
    for (const s of [named, plain]) {
      assert.equal((await get(`${origin.url}/ok`, s.port)).status, 200);
      assert.equal((await get(`${origin.url}/throttled`, s.port)).status, 429);
    }
  });
  after(async () => {
    await named?.close();
    await plain?.close();
    statsd?.close();
    await origin?.close();
  });

  test("Prometheus: every sluice series of the named process has instance=\"sidecar-1\"", async () => {
    const lines = sampleLines((await get(`http://127.0.0.1:${namedMetrics}/metrics`)).body);
    assert.ok(lines.some((l) => l.startsWith("sluice_requests_total{")), lines.join("\n"));
    assert.ok(lines.some((l) => l.startsWith("sluice_faults_injected_total{")), lines.join("\n"));
    for (const l of lines) assert.match(l, /[{,]instance="sidecar-1"[,}]/, l);
  });

  test("a process on its own without the option has no instance label", async () => {
    const lines = sampleLines((await get(`http://127.0.0.1:${plainMetrics}/metrics`)).body);
    assert.ok(lines.some((l) => l.startsWith("sluice_requests_total{")), lines.join("\n"));
    for (const l of lines) assert.doesNotMatch(l, /instance=/, l);
  });

  test("StatsD: the instance is a name part, and a tag with statsd_tags", async () => {
    await until(() => statsd.lines().some((l) => /^sluice\.requests\.127_0_0_1\.GET\.429\.sidecar-1:1\|c$/.test(l)), `the counter with the instance: ${statsd.lines().join(" ")}`);
    assert.ok(statsd.lines().some((l) => /^sluice\.request_duration\.127_0_0_1\.GET\.sidecar-1:\d+\|ms$/.test(l)), statsd.lines().join("\n"));
    await named.master.options.set("statsd_tags", "true");
    assert.equal((await get(`${origin.url}/throttled`, named.port)).status, 429);
    await until(() => statsd.lines().some((l) => /^sluice\.requests:\d+\|c\|#service:127\.0\.0\.1,operation:GET,status:429,instance:sidecar-1$/.test(l)), `the tagged counter: ${statsd.lines().join(" ")}`);
    assert.ok(statsd.lines().some((l) => /^sluice\.request_duration:\d+\|ms\|#service:127\.0\.0\.1,operation:GET,instance:sidecar-1$/.test(l)), statsd.lines().join("\n"));
  });
});
