/**
 * Proxy throughput, side by side in one process tree: direct to a local origin, through sluice
 * (reverse and regular modes), and through mitmdump (Debian's mitmproxy) where installed.
 * Plain HTTP load comes from wrk; HTTPS through CONNECT from an undici loader process. Two ceilings
 * (ceiling-proxies.ts) show what the cheapest Node.js relays reach on the same machine.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import net from "node:net";
import { progress } from "./progress.js";
import { SLUICE_COMMAND } from "./sluice-child.js";

const here = dirname(fileURLToPath(import.meta.url));
const SECONDS = Number(process.env.BENCH_SECONDS ?? 5);
const CONNECTIONS = 10;
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 3);
/** The long latency run (issue 20: "over 1 minute"). */
const LATENCY_SECONDS = Number(process.env.BENCH_LATENCY_SECONDS ?? 60);
/** Clients at once for the accept-queue row. */
const WIDE = 1000;
/** Seconds of each c=1000 run (the first second of connecting included). */
const WIDE_SECONDS = Number(process.env.BENCH_WIDE_SECONDS ?? 10);
/**
 * Offered rates (requests/s over c=10) at which the added latency is measured below saturation:
 * with wrk's closed loop at saturation, latency is connections / throughput (Little's law), so the
 * saturated figure says more about requests/s than about what a sidecar adds to each request.
 */
const PACED_RATES = (process.env.BENCH_RATES ?? "1000,3000").split(",").map(Number);
/** The offered rate of the steady c=1000 row: each client sends one request every 1000/rate s. */
const WIDE_RATE = Number(process.env.BENCH_WIDE_RATE ?? 2000);
/** The sustained-load memory row: seconds of load, and how often RSS is read. */
const MEMORY_SECONDS = Number(process.env.BENCH_MEMORY_SECONDS ?? 60);

interface Row {
  name: string;
  rps: number;
  p50: number;
  p99: number;
  p90?: number;
  note?: string;
  requests?: number;
  /** CPU time the process under test spent per request (µs), from /proc/PID/stat. */
  cpuUs?: number;
  /** Over the interleaved rounds: lowest and highest requests/s, lowest and highest CPU per request. */
  spread?: { rps: [number, number]; cpuUs: [number, number] };
}

const TICK_US = 1e6 / 100; // USER_HZ is 100 on Linux

/** User + system CPU time of `pid` so far, in µs (0 where /proc is unreadable). */
function cpuUsOf(pid: number | undefined): number {
  if (!pid) return 0;
  try {
    // The command name (field 2) may hold spaces: count fields after its closing parenthesis.
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    return (Number(fields[11]) + Number(fields[12])) * TICK_US;
  } catch {
    return 0;
  }
}

function rssMbOf(pid: number | undefined): number {
  try {
    const kb = /VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, "utf8"))?.[1];
    return kb ? Number(kb) / 1024 : NaN;
  } catch {
    return NaN;
  }
}

/** Connections the kernel dropped because a listen queue was full, machine-wide (TcpExt ListenOverflows). */
function listenOverflows(): number {
  try {
    const lines = readFileSync("/proc/net/netstat", "utf8").split("\n");
    const names = lines.find((l) => l.startsWith("TcpExt:"))!.split(" ");
    const values = lines.filter((l) => l.startsWith("TcpExt:"))[1]!.split(" ");
    return Number(values[names.indexOf("ListenOverflows")]);
  } catch {
    return NaN;
  }
}

/** Requests per client connection the bench origin counted since the last call (ascending); it starts afresh. */
async function perConnectionCounts(originPort: number): Promise<number[]> {
  const res = await fetch(`http://127.0.0.1:${originPort}/__connections`);
  return (await res.json()) as number[];
}

function countsSummary(counts: number[]): string {
  if (!counts.length) return "none";
  const at = (q: number) => counts[Math.min(counts.length - 1, Math.floor(q * counts.length))]!;
  return `${counts.length} connections, fewest ${counts[0]}, 1st percentile ${at(0.01)}, median ${at(0.5)}, most ${counts.at(-1)}`;
}

function which(cmd: string): boolean {
  return (process.env.PATH ?? "").split(":").some((d) => existsSync(join(d, cmd)));
}

export function start(cmd: string, args: string[], readyPattern: RegExp, stream: "stdout" | "stderr" = "stderr", timeoutMs = 30_000): Promise<{ child: ChildProcess; match: RegExpExecArray }> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { stdio: ["ignore", "pipe", "pipe"] });
    let text = "";
    const timer = setTimeout(() => {
      child.kill("SIGKILL");
      reject(new Error(`${cmd} did not start within ${timeoutMs / 1000} s: ${text}`));
    }, timeoutMs);
    child[stream]!.on("data", (c: Buffer) => {
      text += c.toString();
      const m = readyPattern.exec(text);
      if (m) {
        clearTimeout(timer);
        resolve({ child, match: m });
      }
    });
    child.stdout!.resume();
    child.stderr!.resume();
    child.once("exit", (code) => reject(new Error(`${cmd} exited with ${code}: ${text}`)));
  });
}

function runToEnd(cmd: string, args: string[]): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { stdio: ["ignore", "pipe", "pipe"] });
    let out = "";
    let err = "";
    child.stdout.on("data", (c: Buffer) => (out += c.toString()));
    child.stderr.on("data", (c: Buffer) => (err += c.toString()));
    child.once("exit", (code) => (code === 0 ? resolve(out) : reject(new Error(`${cmd} ${args.join(" ")} failed (${code}): ${err}`))));
  });
}

async function freePort(): Promise<number> {
  const s = net.createServer();
  await new Promise<void>((r) => s.listen(0, "127.0.0.1", r));
  const port = (s.address() as net.AddressInfo).port;
  await new Promise<void>((r) => s.close(() => r()));
  return port;
}

function waitForPort(port: number, timeoutMs = 30_000): Promise<void> {
  const until = Date.now() + timeoutMs;
  return new Promise((resolve, reject) => {
    const attempt = () => {
      const s = net.connect(port, "127.0.0.1");
      s.once("connect", () => {
        s.destroy();
        resolve();
      });
      s.once("error", () => {
        if (Date.now() > until) reject(new Error(`port ${port} never opened`));
        else setTimeout(attempt, 100);
      });
    };
    attempt();
  });
}

/**
 * wrk's Lua for a fixed offered rate: every request (on any of the thread's connections) takes the
 * next slot of a schedule `1/rps` apart, read from the monotonic clock through LuaJIT's FFI, so the
 * rate holds whatever each request's latency (up to the connections in flight). Behind schedule
 * (a stall), the missed slots are sent at once, as an open-loop load generator would.
 */
function pacedLua(rps: number): string {
  return `local ffi = require("ffi")
ffi.cdef[[
typedef struct { long tv_sec; long tv_nsec; } sluice_timespec;
int clock_gettime(int clk, sluice_timespec *ts);
]]
local ts = ffi.new("sluice_timespec")
local function now_ms()
  ffi.C.clock_gettime(1, ts)
  return tonumber(ts.tv_sec) * 1000 + tonumber(ts.tv_nsec) / 1e6
end
local interval = ${1000 / rps}
local next_at = nil
function delay()
  local t = now_ms()
  if next_at == nil then next_at = t end
  next_at = next_at + interval
  local d = next_at - t
  if d < 0 then return 0 end
  return math.floor(d + 0.5)
end
`;
}

/**
 * wrk against `url`; with `proxyPort`, requests go to the proxy in absolute form. A one-second
 * warm-up first, unmeasured, so every row is measured after its JIT and connection pools settle.
 * With `pid`, also the CPU that process spent per request during the measured part; with `paceRps`,
 * requests are paced at that offered rate instead of as fast as answers come.
 */
export async function wrk(url: string, proxyPort?: number, warmUp = true, connections = CONNECTIONS, seconds = SECONDS, pid?: number, paceRps?: number): Promise<Omit<Row, "name">> {
  if (warmUp) await wrk(url, proxyPort, false, connections, 1, undefined, paceRps).catch(() => undefined);
  const args = ["-t1", `-c${connections}`, `-d${seconds}s`, "--latency", ...(connections > 100 ? ["--timeout", "10s"] : [])];
  let target = url;
  const lua = [proxyPort ? `wrk.path = ${JSON.stringify(url)}\n` : "", paceRps ? pacedLua(paceRps) : ""].join("");
  if (lua) {
    const script = join(mkdtempSync(join(tmpdir(), "sluice-wrk-")), "load.lua");
    writeFileSync(script, lua);
    args.push("-s", script);
  }
  if (proxyPort) target = `http://127.0.0.1:${proxyPort}`;
  const cpuBefore = cpuUsOf(pid);
  const out = await runToEnd("wrk", [...args, target]);
  const cpu = cpuUsOf(pid) - cpuBefore;
  const rps = Number(/Requests\/sec:\s+([\d.]+)/.exec(out)?.[1]);
  const unit = (v: string, u: string) => Number(v) * (u === "us" ? 0.001 : u === "s" ? 1000 : 1);
  const p50 = /\s50%\s+([\d.]+)(us|ms|s)/.exec(out);
  const p90 = /\s90%\s+([\d.]+)(us|ms|s)/.exec(out);
  const p99 = /\s99%\s+([\d.]+)(us|ms|s)/.exec(out);
  const errors = /Non-2xx or 3xx responses: (\d+)/.exec(out)?.[1];
  const socketErrors = /Socket errors: (.*)/.exec(out)?.[1];
  const requests = Number(/(\d+) requests in/.exec(out)?.[1]);
  const notes = [errors ? `${errors} non-2xx` : "", socketErrors ? `socket errors: ${socketErrors}` : ""].filter(Boolean);
  return {
    rps,
    requests,
    cpuUs: pid && requests > 0 ? cpu / requests : undefined,
    p50: p50 ? unit(p50[1]!, p50[2]!) : NaN,
    p90: p90 ? unit(p90[1]!, p90[2]!) : NaN,
    p99: p99 ? unit(p99[1]!, p99[2]!) : NaN,
    note: notes.join("; ") || undefined,
  };
}

async function httpsLoad(proxyPort: number, ca: string, target: string, mode: "keepalive" | "new", pid?: number, seconds = SECONDS): Promise<Omit<Row, "name">> {
  // The loader takes plain http:// targets too (through the same CONNECT tunnel): one loader for both.
  const cpuBefore = cpuUsOf(pid);
  const out = await runToEnd(process.execPath, [join(here, "https-load.js"), `http://127.0.0.1:${proxyPort}`, ca, target, String(CONNECTIONS), String(seconds), mode]);
  const cpu = cpuUsOf(pid) - cpuBefore;
  const r = JSON.parse(out.trim()) as { requests: number; rps: number; p50: number; p99: number; errors: number };
  return { rps: r.rps, p50: r.p50, p99: r.p99, requests: r.requests, cpuUs: pid && r.requests > 0 ? cpu / r.requests : undefined, note: r.errors ? `${r.errors} errors` : undefined };
}

async function curlSpeed(url: string, proxyPort?: number): Promise<number> {
  const args = ["-sS", "-o", "/dev/null", "-w", "%{speed_download}", "--noproxy", ""];
  if (proxyPort) args.push("-x", `http://127.0.0.1:${proxyPort}`);
  return Number(await runToEnd("curl", [...args, url]));
}

/** One row from interleaved rounds: the best round's figures, the spread over all of them. */
function summarize(rounds: Row[]): Row {
  const best = rounds.reduce((a, b) => (b.rps > a.rps ? b : a));
  const rps = rounds.map((r) => r.rps);
  const cpus = rounds.map((r) => r.cpuUs).filter((c): c is number => c !== undefined && c > 0);
  return {
    ...best,
    cpuUs: cpus.length ? Math.min(...cpus) : undefined,
    spread: { rps: [Math.min(...rps), Math.max(...rps)], cpuUs: cpus.length ? [Math.min(...cpus), Math.max(...cpus)] : [NaN, NaN] },
  };
}

function table(title: string, rows: Row[], baseline: string): string {
  const base = rows.find((r) => r.name === baseline);
  const withCpu = rows.some((r) => r.cpuUs !== undefined);
  const head = `${"".padEnd(34)}${"req/s".padStart(10)}${withCpu ? "  (spread)    " : ""}${"p50 ms".padStart(9)}${"p99 ms".padStart(9)}${withCpu ? "  CPU µs/req (spread)" : ""}   ratio`;
  const lines = [title, head];
  for (const r of rows) {
    const ratio = base && r !== base ? ` ${(r.rps / base.rps).toFixed(2)}× ${baseline}` : "";
    const spread = withCpu ? (r.spread ? `  ${`${r.spread.rps[0].toFixed(0)}–${r.spread.rps[1].toFixed(0)}`.padEnd(12)}` : "".padEnd(14)) : "";
    const cpu = withCpu ? (r.cpuUs ? `  ${r.cpuUs.toFixed(0).padStart(5)} (${r.spread ? `${r.spread.cpuUs[0].toFixed(0)}–${r.spread.cpuUs[1].toFixed(0)}` : "-"})`.padEnd(20) : "".padEnd(20)) : "";
    lines.push(`${r.name.padEnd(34)}${r.rps.toFixed(0).padStart(10)}${spread}${r.p50.toFixed(2).padStart(9)}${r.p99.toFixed(2).padStart(9)}${cpu}  ${ratio}${r.note ? `  (${r.note})` : ""}`);
  }
  return lines.join("\n");
}

export async function benchProxy(): Promise<string> {
  const children: ChildProcess[] = [];
  const out: string[] = [];
  try {
    const originConf = mkdtempSync(join(tmpdir(), "sluice-bench-origin-"));
    const origin = await start(process.execPath, [join(here, "origin-server.js"), originConf], /(\{.*\})\n/, "stdout");
    children.push(origin.child);
    const ports = JSON.parse(origin.match[1]!) as { http: number; https: number; ca: string };
    const confdir = mkdtempSync(join(tmpdir(), "sluice-bench-"));
    const common = ["--confdir", confdir, "--flow-detail", "0", "--set", `ssl_verify_upstream_trusted_ca=${ports.ca}`, "-p", "0"];
    const reverse = await start(process.execPath, [...SLUICE_COMMAND, "dump", ...common, "--mode", `reverse:http://127.0.0.1:${ports.http}`], /listening at [^\s]+:(\d+)/);
    const regular = await start(process.execPath, [...SLUICE_COMMAND, "dump", ...common], /listening at [^\s]+:(\d+)/);
    children.push(reverse.child, regular.child);
    const reversePort = Number(reverse.match[1]);
    const regularPort = Number(regular.match[1]);
    const sluiceCa = join(confdir, "sluice-ca-cert.pem");
    await new Promise((r) => setTimeout(r, 2000));
    const idleRss = rssMbOf(regular.child.pid);
    const ceilings = await start(process.execPath, [join(here, "ceiling-proxies.js"), String(ports.http)], /(\{.*\})\n/, "stdout");
    children.push(ceilings.child);
    const ceilingPorts = JSON.parse(ceilings.match[1]!) as { minimal: number; relay: number };

    let mitmPort: number | null = null;
    let mitmCa: string | null = null;
    let mitmPid: number | undefined;
    if (existsSync("/usr/bin/mitmdump")) {
      const mitmConf = mkdtempSync(join(tmpdir(), "sluice-bench-mitm-"));
      mitmPort = await freePort();
      const mitm = spawn("/usr/bin/mitmdump", ["-q", "--listen-host", "127.0.0.1", "-p", String(mitmPort), "--set", `confdir=${mitmConf}`, "--set", "ssl_insecure=true"], { stdio: "ignore" });
      children.push(mitm);
      mitmPid = mitm.pid;
      await waitForPort(mitmPort);
      mitmCa = join(mitmConf, "mitmproxy-ca-cert.pem");
    }

    const target = `http://127.0.0.1:${ports.http}/`;
    if (which("wrk")) {
      // Each row names the process whose CPU it costs: the proxy under test (the origin for "direct").
      type Run = [name: string, run: () => Promise<Omit<Row, "name">>];
      const runs: Run[] = [
        ["direct", () => wrk(target, undefined, true, CONNECTIONS, SECONDS, origin.child.pid)],
        ["sluice reverse", () => wrk(`http://127.0.0.1:${reversePort}/`, undefined, true, CONNECTIONS, SECONDS, reverse.child.pid)],
        ["sluice regular", () => wrk(target, regularPort, true, CONNECTIONS, SECONDS, regular.child.pid)],
        ...(mitmPort ? [["mitmdump regular", () => wrk(target, mitmPort, true, CONNECTIONS, SECONDS, mitmPid)] satisfies Run] : []),
        ["floor: minimal Node proxy", () => wrk(target, ceilingPorts.minimal, true, CONNECTIONS, SECONDS, ceilings.child.pid)],
      ];
      // This machine's load swings between runs: rounds are interleaved; each row reports its best
      // round (highest req/s, lowest CPU per request) and the spread over all rounds.
      const all: Row[][] = runs.map(() => []);
      for (let round = 0; round < ROUNDS; round++) {
        for (const [i, [name, run]] of runs.entries()) {
          progress(`${name}, round ${round + 1} of ${ROUNDS} (${SECONDS + 1} s)`);
          all[i]!.push({ name, ...(await run()) });
        }
      }
      const rows: Row[] = all.map((rounds) => summarize(rounds));
      out.push(table(`1 KiB GET over HTTP, keep-alive, ${CONNECTIONS} connections, ${SECONDS}s after a 1 s warm-up, best of ${ROUNDS} interleaved rounds (wrk); CPU per request of the proxy process from /proc`, rows, "direct"));
      const direct = rows[0]!;
      const floor = rows.at(-1)!;
      const added = rows.slice(1, 3).map((r) => `${r.name} +${(r.p50 - direct.p50).toFixed(2)} ms`).join(", ");
      out.push(`added p50 latency: ${added}`);
      for (const r of rows.slice(1, 3)) {
        if (r.cpuUs && floor.cpuUs) out.push(`CPU per request, ${r.name} / floor: ${r.cpuUs.toFixed(0)} / ${floor.cpuUs.toFixed(0)} µs = ${(r.cpuUs / floor.cpuUs).toFixed(2)}× (target ≤ 1.3×)`);
      }
      const mitm = rows.find((r) => r.name === "mitmdump regular");
      if (mitm) out.push(`sluice regular / mitmdump regular: ${(rows[2]!.rps / mitm.rps).toFixed(1)}× requests/s`);
      out.push(`floor (node:http + undici Pool, no flows or hooks) / mitmdump: ${mitm ? `${(floor.rps / mitm.rps).toFixed(1)}×` : "n/a"}; sluice regular reaches ${((rows[2]!.rps / floor.rps) * 100).toFixed(0)}% of the floor's requests/s`);

      // Tail latency over a longer run: saturated (closed loop, as fast as answers come) and at
      // fixed offered rates below saturation, direct, through the floor and through sluice.
      const paths: [name: string, run: (seconds: number, paceRps?: number, connections?: number) => Promise<Omit<Row, "name">>][] = [
        // No warm-up of their own for the c=1000 runs (everything is warm by then): its thousand
        // connections would still be in the origin's counts.
        ["direct", (t, r, c = CONNECTIONS) => wrk(target, undefined, c === CONNECTIONS, c, t, undefined, r)],
        ["floor", (t, r, c = CONNECTIONS) => wrk(target, ceilingPorts.minimal, c === CONNECTIONS, c, t, undefined, r)],
        ["sluice regular", (t, r, c = CONNECTIONS) => wrk(target, regularPort, c === CONNECTIONS, c, t, undefined, r)],
      ];
      const latencyLines = [`\nlatency over ${LATENCY_SECONDS} s at c=${CONNECTIONS} (wrk; added = the path's minus direct's, target added p50 < 0.8 ms and p99 < 5 ms):`];
      for (const rate of [undefined, ...PACED_RATES]) {
        const label = rate ? `offered ${rate.toLocaleString("en")} req/s` : "saturated";
        const got: Omit<Row, "name">[] = [];
        for (const [name, run] of paths) {
          progress(`latency over ${LATENCY_SECONDS} s at c=${CONNECTIONS}, ${label}: ${name}`);
          got.push(await run(LATENCY_SECONDS, rate));
        }
        const direct = got[0]!;
        for (const [i, r] of got.entries()) {
          const added = i === 0 ? "" : `   added p50 ${(r.p50 - direct.p50).toFixed(2)} / p99 ${(r.p99 - direct.p99).toFixed(2)} ms`;
          latencyLines.push(`  ${label.padEnd(24)} ${paths[i]![0].padEnd(16)} ${r.rps.toFixed(0).padStart(6)} req/s   p50 ${r.p50.toFixed(2).padStart(6)} / p99 ${r.p99.toFixed(2).padStart(7)} ms${added}${r.note ? `  (${r.note})` : ""}`);
        }
      }
      out.push(latencyLines.join("\n"));

      // A thousand clients at once: saturated, then at a steady offered rate. Each run opens its
      // thousand connections afresh (its first second included). The origin counts requests per
      // client connection (through sluice each client has its own upstream connection), so a
      // client that starves shows as a connection with few requests.
      const wideLines = [`\nc=${WIDE} (wrk, one thread; ${WIDE_SECONDS} s per run; target p99 < 200 ms in steady state; requests per client connection as the origin counted them, through the floor its pool's connections instead):`];
      for (const rate of [undefined, WIDE_RATE]) {
        const label = rate ? `offered ${rate.toLocaleString("en")} req/s` : "saturated";
        for (const [name, run] of paths) {
          progress(`c=${WIDE} for ${WIDE_SECONDS} s, ${label}: ${name}`);
          // Requests the previous run left queued at the origin are answered first, not counted here.
          await new Promise((r) => setTimeout(r, 2000));
          await perConnectionCounts(ports.http);
          const overflowsBefore = listenOverflows();
          const r = await run(WIDE_SECONDS, rate, WIDE);
          const overflows = listenOverflows() - overflowsBefore;
          const counts = await perConnectionCounts(ports.http);
          wideLines.push(
            `  ${label.padEnd(24)} ${name.padEnd(16)} ${r.rps.toFixed(0).padStart(6)} req/s   p50 ${r.p50.toFixed(1)} / p90 ${r.p90?.toFixed(1)} / p99 ${r.p99.toFixed(1)} ms   ` +
              `listen-queue overflows ${Number.isNaN(overflows) ? "unknown" : overflows}   per connection: ${countsSummary(counts)}${r.note ? `  (${r.note})` : ""}`,
          );
        }
      }
      out.push(wideLines.join("\n"));
    } else {
      out.push("wrk is not installed (apt-get install -y wrk): plain-HTTP rows skipped");
    }

    const httpsTarget = `https://127.0.0.1:${ports.https}/`;
    for (const mode of ["keepalive", "new"] as const) {
      progress(`HTTPS through CONNECT, ${mode === "new" ? "a new TLS connection per request" : "keep-alive"}`);
      type Run = [name: string, run: (seconds?: number) => Promise<Omit<Row, "name">>];
      const runs: Run[] = [["sluice regular (CONNECT, TLS)", (t) => httpsLoad(regularPort, sluiceCa, httpsTarget, mode, regular.child.pid, t)]];
      // The same loader over plain HTTP: the ratio the HTTPS target is stated in.
      if (mode === "keepalive") runs.push(["sluice regular, plain HTTP", (t) => httpsLoad(regularPort, sluiceCa, target, mode, regular.child.pid, t)]);
      if (mitmPort && mitmCa) runs.push(["mitmdump regular (CONNECT, TLS)", (t) => httpsLoad(mitmPort!, mitmCa!, httpsTarget, mode, mitmPid, t)]);
      // A warm-up of each first (JIT, leaf certificate, pools), then interleaved rounds: measured
      // cold and in a fixed order, the first row once paid for all of that (HTTPS read 18% of plain).
      for (const [, run] of runs) await run(1).catch(() => undefined);
      const all: Row[][] = runs.map(() => []);
      for (let round = 0; round < ROUNDS; round++) for (const [i, [name, run]] of runs.entries()) all[i]!.push({ name, ...(await run()) });
      const rows = all.map((rounds) => summarize(rounds));
      if (mode === "keepalive") {
        const plain = rows[1]!;
        out.push(`\nHTTPS intercepted / plain HTTP through sluice, keep-alive, same loader, best of ${ROUNDS} interleaved rounds after a warm-up: ${((rows[0]!.rps / plain.rps) * 100).toFixed(0)}% (target ≥ 70%)`);
      }
      out.push(table(`\n1 KiB GET over HTTPS intercepted, ${mode === "new" ? "new TLS connection per request" : "keep-alive"}, ${CONNECTIONS} connections (undici loader)`, rows, "mitmdump regular (CONNECT, TLS)"));
    }

    if (which("wrk")) {
      // Memory under sustained load: sluice dump as it ships (its small view) and with the view the
      // console and web UI keep, each in a fresh process.
      const lines = [`\nsluice dump RSS (MB): idle after start ${idleRss.toFixed(0)} (target ≤ 70); under ${MEMORY_SECONDS} s of wrk c=${CONNECTIONS} load, sampled every ${MEMORY_SECONDS / 6} s (target ≤ 120):`];
      for (const [label, extra] of [["dump (its own view: 100 flows, 16m)", []], ["console/web-sized view (50000 flows, 256m)", ["--set", "view_max_flows=50000", "--set", "view_max_bytes=256m"]]] as const) {
        const proc = await start(process.execPath, [...SLUICE_COMMAND, "dump", ...common, ...extra], /listening at [^\s]+:(\d+)/);
        children.push(proc.child);
        progress(`memory over ${MEMORY_SECONDS} s: ${label}`);
        const samples: string[] = [];
        const load = wrk(target, Number(proc.match[1]), false, CONNECTIONS, MEMORY_SECONDS);
        for (let t = 1; t <= 6; t++) {
          await new Promise((r) => setTimeout(r, (MEMORY_SECONDS / 6) * 1000));
          samples.push(rssMbOf(proc.child.pid).toFixed(0));
        }
        const done = await load;
        lines.push(`  ${label.padEnd(44)} ${samples.join(" → ")}  (${((done.requests ?? 0) / 1000).toFixed(0)}k requests)`);
        proc.child.kill("SIGKILL");
      }
      out.push(lines.join("\n"));
    }

    if (which("curl")) {
      // Loopback throughput swings between runs here: best of three, interleaved, for each path.
      const big = `http://127.0.0.1:${ports.http}/big`;
      const best = { direct: 0, relay: 0, sluice: 0 };
      for (let i = 0; i < 3; i++) {
        progress(`1 GiB download, round ${i + 1} of 3: direct, bare relay, through sluice`);
        best.direct = Math.max(best.direct, await curlSpeed(big));
        best.relay = Math.max(best.relay, await curlSpeed(`http://127.0.0.1:${ceilingPorts.relay}/big`));
        best.sluice = Math.max(best.sluice, await curlSpeed(big, regularPort));
      }
      const mb = (v: number) => `${(v / 1e6).toFixed(0)} MB/s`;
      const pct = (v: number) => `${((v / best.direct) * 100).toFixed(0)}% of direct`;
      out.push(`\n1 GiB download (curl, best of 3): direct ${mb(best.direct)}, through sluice ${mb(best.sluice)} (${pct(best.sluice)}), reference: bare Node TCP relay (socket.pipe) ${mb(best.relay)} (${pct(best.relay)})`);
    }
  } finally {
    for (const c of children) c.kill("SIGKILL");
  }
  return out.join("\n");
}
