/**
 * `npm run bench -- soak [--minutes N]` (default 10; SLUICE_SOAK_SECONDS also sets it, in seconds):
 * steady mixed traffic (60% GET, 20% 4 KiB POST, 20% HTTPS through CONNECT; 10 connections)
 * through `sluice dump -w` in regular mode, sluice's RSS read every 10 s. Reported: the samples,
 * first and last, the slope after a one-minute warm-up (least squares, MB per minute), requests
 * delivered against flows on disk after a graceful stop, and the load average meanwhile.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { loadavg, tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { readFlowFile } from "../src/store/index.js";
import { progress } from "./progress.js";
import { SLUICE_COMMAND } from "./sluice-child.js";
import { start } from "./proxy-bench.js";

const here = fileURLToPath(new URL(".", import.meta.url));
const LOAD = join(here, "hardening-load.js");
const SAMPLE_SECONDS = 10;
const WARM_UP_SECONDS = 60;

export function rssMb(pid: number): number {
  const status = readFileSync(`/proc/${pid}/status`, "utf8");
  return Number(/VmRSS:\s+(\d+) kB/.exec(status)?.[1] ?? NaN) / 1024;
}

/** Runs one mode of hardening-load.ts; resolves with its result line. */
export function load(args: (string | number)[], onLine?: (json: Record<string, unknown>) => void): Promise<Record<string, number>> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [LOAD, ...args.map(String)], { stdio: ["ignore", "pipe", "inherit"] });
    let out = "";
    child.stdout.on("data", (c: Buffer) => {
      out += c.toString();
      const lines = out.split("\n");
      out = lines.pop()!;
      for (const l of lines) if (l.trim()) {
        const json = JSON.parse(l) as Record<string, number>;
        if ("ready" in json) onLine?.(json);
        else resolve(json);
      }
    });
    child.once("exit", (code) => (code === 0 ? undefined : reject(new Error(`load ${args[0]} exited with ${code}`))));
  });
}

export async function startSluice(dir: string, extra: string[]): Promise<{ child: ChildProcess; port: number }> {
  const { child, match } = await start(process.execPath, [...SLUICE_COMMAND, "dump", "-p", "0", "--confdir", join(dir, "conf"), "--set", "flow_detail=0", "-k", ...extra], /listening at [^\s]+:(\d+)/);
  return { child, port: Number(match[1]) };
}

export function stop(child: ChildProcess): Promise<void> {
  return new Promise((resolve) => {
    if (child.exitCode !== null) return resolve();
    child.once("exit", () => resolve());
    child.kill("SIGINT");
  });
}

/** Least-squares slope of y over x. */
export function slope(points: [x: number, y: number][]): number {
  const n = points.length;
  if (n < 2) return NaN;
  const mx = points.reduce((s, [x]) => s + x, 0) / n;
  const my = points.reduce((s, [, y]) => s + y, 0) / n;
  let num = 0;
  let den = 0;
  for (const [x, y] of points) {
    num += (x - mx) * (y - my);
    den += (x - mx) ** 2;
  }
  return den ? num / den : NaN;
}

/** The soak against an origin already running; returns the report's lines. */
export async function soak(dir: string, ports: { http: number; https: number }, seconds: number): Promise<string[]> {
  const capture = join(dir, "soak.mitm");
  progress(`soak: ${seconds} s of mixed traffic through sluice dump -w ${capture}`);
  const sluice = await startSluice(dir, ["-w", capture]);
  const caFile = join(dir, "conf", "sluice-ca-cert.pem");
  const samples: [seconds: number, mb: number][] = [];
  const loads: number[] = [];
  const t0 = Date.now();
  const sampler = setInterval(() => {
    samples.push([Math.round((Date.now() - t0) / 1000), rssMb(sluice.child.pid!)]);
    loads.push(loadavg()[0]!);
    progress(`soak ${samples.at(-1)![0]} s: ${samples.at(-1)![1].toFixed(0)} MB, load ${loads.at(-1)!.toFixed(1)}`);
  }, SAMPLE_SECONDS * 1000);
  const result = await load(["soak", sluice.port, ports.http, ports.https, caFile, seconds]);
  clearInterval(sampler);
  await stop(sluice.child);
  let onDisk = 0;
  for await (const _ of readFlowFile(capture)) onDisk++;
  rmSync(capture, { force: true });
  const warm = samples.filter(([t]) => t >= Math.min(WARM_UP_SECONDS, seconds / 2));
  const perMinute = slope(warm.map(([t, mb]) => [t / 60, mb]));
  const mbs = samples.map(([, mb]) => mb);
  return [
    `Soak: ${seconds} s, mixed traffic (60% GET, 20% 4 KiB POST, 20% HTTPS through CONNECT; 10 connections), sluice dump -w flow file`,
    `  requests delivered ${result.delivered}, failed ${result.failed}; flows on disk after stop ${onDisk} (lost ${Math.max(0, result.delivered! - onDisk)})`,
    `  RSS MB every ${SAMPLE_SECONDS} s: ${mbs.map((mb) => mb.toFixed(0)).join(", ")}`,
    `  RSS first ${mbs[0]?.toFixed(0)} MB, last ${mbs.at(-1)?.toFixed(0)} MB, min ${Math.min(...mbs).toFixed(0)}, max ${Math.max(...mbs).toFixed(0)}; ` +
      `slope after ${Math.min(WARM_UP_SECONDS, seconds / 2)} s: ${perMinute >= 0 ? "+" : ""}${perMinute.toFixed(2)} MB/min`,
    `  load average meanwhile (1 min): ${Math.min(...loads).toFixed(1)}–${Math.max(...loads).toFixed(1)}`,
  ];
}

function minutesFromArgs(): number | null {
  const at = process.argv.indexOf("--minutes");
  if (at < 0) return null;
  const n = Number(process.argv[at + 1]);
  if (!(n > 0)) throw new Error(`--minutes expects a positive number, got ${JSON.stringify(process.argv[at + 1])}`);
  return n;
}

export async function benchSoak(): Promise<string> {
  const minutes = minutesFromArgs();
  const seconds = minutes !== null ? Math.round(minutes * 60) : Number(process.env.SLUICE_SOAK_SECONDS ?? 600);
  const dir = mkdtempSync(join(tmpdir(), "sluice-bench-soak-"));
  const origin = await start(process.execPath, [join(here, "origin-server.js"), join(dir, "origin-conf")], /(\{.*\})\n/, "stdout");
  try {
    const ports = JSON.parse(origin.match[1]!) as { http: number; https: number };
    return (await soak(dir, ports, seconds)).join("\n");
  } finally {
    origin.child.kill();
    rmSync(dir, { recursive: true, force: true });
  }
}
