/**
 * Proxy throughput, side by side in one process tree: direct to a local origin, through sluice
 * (reverse and regular modes), and through mitmdump (Debian's mitmproxy) where installed.
 * Plain HTTP load comes from wrk; HTTPS through CONNECT from an undici loader process. Two ceilings
 * (ceiling-proxies.ts) show what the cheapest Node.js relays reach on the same machine.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { existsSync, mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import net from "node:net";
import { progress } from "./progress.js";

const here = dirname(fileURLToPath(import.meta.url));
const SLUICE = join(here, "..", "..", "bin", "sluice.js");
const SECONDS = Number(process.env.BENCH_SECONDS ?? 5);
const CONNECTIONS = 10;
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 2);

interface Row {
  name: string;
  rps: number;
  p50: number;
  p99: number;
  note?: string;
}

function which(cmd: string): boolean {
  return (process.env.PATH ?? "").split(":").some((d) => existsSync(join(d, cmd)));
}

export function start(cmd: string, args: string[], readyPattern: RegExp, stream: "stdout" | "stderr" = "stderr"): Promise<{ child: ChildProcess; match: RegExpExecArray }> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { stdio: ["ignore", "pipe", "pipe"] });
    let text = "";
    const timer = setTimeout(() => reject(new Error(`${cmd} did not start: ${text}`)), 30_000);
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
 * wrk against `url`; with `proxyPort`, requests go to the proxy in absolute form. A one-second
 * warm-up first, unmeasured, so every row is measured after its JIT and connection pools settle.
 */
export async function wrk(url: string, proxyPort?: number, warmUp = true): Promise<Omit<Row, "name">> {
  if (warmUp) await wrk(url, proxyPort, false).catch(() => undefined);
  const args = ["-t1", `-c${CONNECTIONS}`, `-d${warmUp ? SECONDS : 1}s`, "--latency"];
  let target = url;
  if (proxyPort) {
    const script = join(mkdtempSync(join(tmpdir(), "sluice-wrk-")), "proxy.lua");
    writeFileSync(script, `wrk.path = ${JSON.stringify(url)}\n`);
    args.push("-s", script);
    target = `http://127.0.0.1:${proxyPort}`;
  }
  const out = await runToEnd("wrk", [...args, target]);
  const rps = Number(/Requests\/sec:\s+([\d.]+)/.exec(out)?.[1]);
  const unit = (v: string, u: string) => Number(v) * (u === "us" ? 0.001 : u === "s" ? 1000 : 1);
  const p50 = /\s50%\s+([\d.]+)(us|ms|s)/.exec(out);
  const p99 = /\s99%\s+([\d.]+)(us|ms|s)/.exec(out);
  const errors = /Non-2xx or 3xx responses: (\d+)/.exec(out)?.[1];
  return { rps, p50: p50 ? unit(p50[1]!, p50[2]!) : NaN, p99: p99 ? unit(p99[1]!, p99[2]!) : NaN, note: errors ? `${errors} non-2xx` : undefined };
}

async function httpsLoad(proxyPort: number, ca: string, target: string, mode: "keepalive" | "new"): Promise<Omit<Row, "name">> {
  const out = await runToEnd(process.execPath, [join(here, "https-load.js"), `http://127.0.0.1:${proxyPort}`, ca, target, String(CONNECTIONS), String(SECONDS), mode]);
  const r = JSON.parse(out.trim()) as { rps: number; p50: number; p99: number; errors: number };
  return { rps: r.rps, p50: r.p50, p99: r.p99, note: r.errors ? `${r.errors} errors` : undefined };
}

async function curlSpeed(url: string, proxyPort?: number): Promise<number> {
  const args = ["-sS", "-o", "/dev/null", "-w", "%{speed_download}", "--noproxy", ""];
  if (proxyPort) args.push("-x", `http://127.0.0.1:${proxyPort}`);
  return Number(await runToEnd("curl", [...args, url]));
}

function table(title: string, rows: Row[], baseline: string): string {
  const base = rows.find((r) => r.name === baseline);
  const lines = [title, `${"".padEnd(34)}${"req/s".padStart(10)}${"p50 ms".padStart(9)}${"p99 ms".padStart(9)}   ratio`];
  for (const r of rows) {
    const ratio = base && r !== base ? ` ${(r.rps / base.rps).toFixed(2)}× ${baseline}` : "";
    lines.push(`${r.name.padEnd(34)}${r.rps.toFixed(0).padStart(10)}${r.p50.toFixed(2).padStart(9)}${r.p99.toFixed(2).padStart(9)}  ${ratio}${r.note ? `  (${r.note})` : ""}`);
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
    const reverse = await start(process.execPath, [SLUICE, "dump", ...common, "--mode", `reverse:http://127.0.0.1:${ports.http}`], /listening at [^\s]+:(\d+)/);
    const regular = await start(process.execPath, [SLUICE, "dump", ...common], /listening at [^\s]+:(\d+)/);
    children.push(reverse.child, regular.child);
    const reversePort = Number(reverse.match[1]);
    const regularPort = Number(regular.match[1]);
    const sluiceCa = join(confdir, "sluice-ca-cert.pem");
    const ceilings = await start(process.execPath, [join(here, "ceiling-proxies.js"), String(ports.http)], /(\{.*\})\n/, "stdout");
    children.push(ceilings.child);
    const ceilingPorts = JSON.parse(ceilings.match[1]!) as { minimal: number; relay: number };

    let mitmPort: number | null = null;
    let mitmCa: string | null = null;
    if (existsSync("/usr/bin/mitmdump")) {
      const mitmConf = mkdtempSync(join(tmpdir(), "sluice-bench-mitm-"));
      mitmPort = await freePort();
      const mitm = spawn("/usr/bin/mitmdump", ["-q", "--listen-host", "127.0.0.1", "-p", String(mitmPort), "--set", `confdir=${mitmConf}`, "--set", "ssl_insecure=true"], { stdio: "ignore" });
      children.push(mitm);
      await waitForPort(mitmPort);
      mitmCa = join(mitmConf, "mitmproxy-ca-cert.pem");
    }

    const target = `http://127.0.0.1:${ports.http}/`;
    if (which("wrk")) {
      type Run = [name: string, run: () => Promise<Omit<Row, "name">>];
      const runs: Run[] = [
        ["direct", () => wrk(target)],
        ["sluice reverse", () => wrk(`http://127.0.0.1:${reversePort}/`)],
        ["sluice regular", () => wrk(target, regularPort)],
        ...(mitmPort ? [["mitmdump regular", () => wrk(target, mitmPort)] satisfies Run] : []),
        ["ceiling: minimal Node proxy", () => wrk(target, ceilingPorts.minimal)],
      ];
      // This machine's load swings between runs: rounds are interleaved and each row keeps its best.
      const rows: Row[] = runs.map(([name]) => ({ name, rps: 0, p50: NaN, p99: NaN }));
      for (let round = 0; round < ROUNDS; round++) {
        for (const [i, [name, run]] of runs.entries()) {
          progress(`${name}, round ${round + 1} of ${ROUNDS} (${SECONDS + 1} s)`);
          const r = await run();
          if (r.rps > rows[i]!.rps) rows[i] = { name, ...r };
        }
      }
      out.push(table(`1 KiB GET over HTTP, keep-alive, ${CONNECTIONS} connections, ${SECONDS}s after a 1 s warm-up, best of ${ROUNDS} interleaved rounds (wrk)`, rows, "direct"));
      const direct = rows[0]!;
      const added = rows.slice(1, 3).map((r) => `${r.name} +${(r.p50 - direct.p50).toFixed(2)} ms`).join(", ");
      out.push(`added p50 latency: ${added}`);
      const mitm = rows.find((r) => r.name === "mitmdump regular");
      if (mitm) out.push(`sluice regular / mitmdump regular: ${(rows[2]!.rps / mitm.rps).toFixed(1)}× requests/s`);
      const ceiling = rows.at(-1)!;
      out.push(`ceiling (node:http + undici Pool, no flows or hooks) / mitmdump: ${mitm ? `${(ceiling.rps / mitm.rps).toFixed(1)}×` : "n/a"}; sluice regular reaches ${((rows[2]!.rps / ceiling.rps) * 100).toFixed(0)}% of that ceiling`);
    } else {
      out.push("wrk is not installed (apt-get install -y wrk): plain-HTTP rows skipped");
    }

    const httpsTarget = `https://127.0.0.1:${ports.https}/`;
    for (const mode of ["keepalive", "new"] as const) {
      progress(`HTTPS through CONNECT, ${mode === "new" ? "a new TLS connection per request" : "keep-alive"}`);
      const rows: Row[] = [{ name: "sluice regular (CONNECT, TLS)", ...(await httpsLoad(regularPort, sluiceCa, httpsTarget, mode)) }];
      if (mitmPort && mitmCa) rows.push({ name: "mitmdump regular (CONNECT, TLS)", ...(await httpsLoad(mitmPort, mitmCa, httpsTarget, mode)) });
      out.push(table(`\n1 KiB GET over HTTPS intercepted, ${mode === "new" ? "new TLS connection per request" : "keep-alive"}, ${CONNECTIONS} connections (undici loader)`, rows, "mitmdump regular (CONNECT, TLS)"));
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
