/**
 * `npm run bench -- web`: the web UI with a 100,000-flow capture in its view, measured in
 * Debian's chromium (playwright-core): time until the list is interactive, time to apply a
 * filter, frame times while scrolling, and sluice's memory; then the proxy's requests/s with
 * the UI open on the live flow list against no UI at all (target: ≥ 90%).
 */
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import type { ChildProcess } from "node:child_process";
import { chromium, type Browser } from "playwright-core";
import { FlowWriter } from "../src/store/index.js";
import { sampleFlow } from "./flowfile-bench.js";
import { start, wrk } from "./proxy-bench.js";
import { progress } from "./progress.js";

const here = dirname(fileURLToPath(import.meta.url));
const SLUICE = join(here, "..", "..", "bin", "sluice.js");
const FLOWS = Number(process.env.SLUICE_BENCH_FLOWS ?? 100_000);
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 2);
const CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync"];

/** A capture of `count` DynamoDB-like flows: one in ten a 503, paths and times varied. */
async function writeCapture(path: string, count: number): Promise<void> {
  const body = Buffer.from(JSON.stringify({ Item: { id: { S: "order-123456" }, total: { N: "42" } } }));
  const writer = await FlowWriter.open(path);
  const flow = sampleFlow(body);
  for (let i = 0; i < count; i++) {
    flow.id = `00000000-0000-4000-8000-${String(i).padStart(12, "0")}`;
    flow.request.path = `/orders/${i}`;
    flow.request.timestampStart = flow.timestampCreated = 1_700_000_000 + i / 100;
    flow.response!.statusCode = i % 10 === 9 ? 503 : 200;
    flow.response!.reason = i % 10 === 9 ? "Service Unavailable" : "OK";
    writer.write(flow);
  }
  await writer.close();
}

function rssOf(pid: number): number {
  const status = readFileSync(`/proc/${pid}/status`, "utf8");
  return Number(/VmRSS:\s+(\d+) kB/.exec(status)?.[1] ?? NaN) * 1024;
}

const ms = (v: number) => `${v.toFixed(0)} ms`;

export async function benchWeb(): Promise<string> {
  const dir = mkdtempSync(join(tmpdir(), "sluice-bench-web-"));
  const children: ChildProcess[] = [];
  let browser: Browser | null = null;
  const out: string[] = [];
  try {
    progress(`writing a ${FLOWS.toLocaleString()}-flow capture`);
    const capture = join(dir, "capture.mitm");
    await writeCapture(capture, FLOWS);
    const confdir = join(dir, "conf");
    progress("starting sluice web -r capture");
    const loaded = await start(process.execPath, [SLUICE, "web", "-r", capture, "-p", "0", "--set", "web_port=0", "--confdir", confdir, "--set", `view_max_flows=${FLOWS * 2}`], /web UI at (\S+)/, "stderr", 600_000);
    children.push(loaded.child);
    const url = loaded.match[1]!;
    const rssLoaded = rssOf(loaded.child.pid!);
    browser = await chromium.launch({ executablePath: "/usr/bin/chromium", headless: true, args: CHROMIUM_ARGS });
    const page = await browser.newPage({ viewport: { width: 1280, height: 720 } });
    const shown = (n: number) => page.locator(".status", { hasText: new RegExp(`^${n.toLocaleString("en-US")} shown of`) });

    progress("opening the UI");
    const t0 = performance.now();
    await page.goto(url);
    await shown(FLOWS).waitFor({ timeout: 120_000 });
    await page.locator(".flow-scroll .flow-row").first().waitFor();
    const interactive = performance.now() - t0;

    progress("applying a filter over the whole view");
    const box = page.locator("[data-filter=filter] input");
    const filters: [string, number][] = [["~c 503", FLOWS / 10], ["~u /orders/1234", 0], ["", FLOWS]];
    const filterTimes: string[] = [];
    for (const [expr, expect] of filters) {
      const t = performance.now();
      await box.fill(expr);
      await box.press("Enter");
      if (expr === "~u /orders/1234") await page.locator(".status", { hasText: / shown of / }).filter({ hasNotText: /^(10,000|100,000) / }).waitFor({ timeout: 120_000 });
      else await shown(expect).waitFor({ timeout: 120_000 });
      filterTimes.push(`\`${expr || "(cleared)"}\` ${ms(performance.now() - t)}`);
    }
    await page.locator(".flow-scroll").click({ position: { x: 400, y: 10 } });

    progress("scrolling the list");
    // A string: this project's TypeScript has no DOM types; the function runs in the page.
    const frames = await page.evaluate<number[]>(`(async () => {
      const el = document.querySelector(".flow-scroll");
      const times = [];
      let last = performance.now();
      for (let i = 0; i < 240; i++) {
        await new Promise((r) => requestAnimationFrame(r));
        const now = performance.now();
        times.push(now - last);
        last = now;
        // A fling: ~25 rows per frame, down the list and back up.
        el.scrollTop += (i < 120 ? 1 : -1) * 600;
      }
      return times.slice(1).sort((a, b) => a - b);
    })()`);
    const p = (q: number) => frames[Math.min(frames.length - 1, Math.floor(q * frames.length))]!;
    const rssAfter = rssOf(loaded.child.pid!);
    await page.close();
    loaded.child.kill("SIGKILL");

    out.push(`${FLOWS.toLocaleString()} flows loaded with -r into the view (headless chromium, 1280×720):`);
    out.push(`  list interactive after ${ms(interactive)} (page load, WebSocket, first rows)`);
    out.push(`  filters: ${filterTimes.join(", ")} (typed, Enter, until the count shows)`);
    out.push(`  scroll frame time: median ${p(0.5).toFixed(1)} ms, p95 ${p(0.95).toFixed(1)} ms, worst ${frames.at(-1)!.toFixed(1)} ms (240 frames, 25 rows per frame)`);
    out.push(`  sluice RSS: ${(rssLoaded / 1e6).toFixed(0)} MB with the flows loaded, ${(rssAfter / 1e6).toFixed(0)} MB after the browsing`);

    progress("proxy throughput with and without the UI open");
    const originConf = mkdtempSync(join(tmpdir(), "sluice-bench-origin-"));
    const origin = await start(process.execPath, [join(here, "origin-server.js"), originConf], /(\{.*\})\n/, "stdout");
    children.push(origin.child);
    const ports = JSON.parse(origin.match[1]!) as { http: number };
    const target = `http://127.0.0.1:${ports.http}/`;
    const live = await start(process.execPath, [SLUICE, "web", "-p", "0", "--set", "web_port=0", "--confdir", confdir], /listening at [^\s]+:(\d+)[\s\S]*web UI at (\S+)/);
    children.push(live.child);
    const proxyPort = Number(live.match[1]);
    const best = { without: 0, with: 0 };
    const watcher = await browser.newPage({ viewport: { width: 1280, height: 720 } });
    for (let round = 0; round < ROUNDS; round++) {
      progress(`round ${round + 1} of ${ROUNDS}: no UI`);
      await watcher.goto("about:blank");
      best.without = Math.max(best.without, (await wrk(target, proxyPort)).rps);
      progress(`round ${round + 1} of ${ROUNDS}: UI open on the live list`);
      await watcher.goto(live.match[2]!);
      await watcher.locator(".status", { hasText: "shown of" }).waitFor();
      best.with = Math.max(best.with, (await wrk(target, proxyPort)).rps);
    }
    out.push(`proxy, 1 KiB GET over HTTP (wrk, 10 connections, best of ${ROUNDS} interleaved rounds): ${best.without.toFixed(0)} req/s without the UI, ${best.with.toFixed(0)} req/s with it open on the live list: ${((best.with / best.without) * 100).toFixed(0)}% (target ≥ 90%)`);
  } finally {
    await browser?.close();
    for (const c of children) c.kill("SIGKILL");
    rmSync(dir, { recursive: true, force: true });
  }
  return out.join("\n");
}
