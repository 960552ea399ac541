/** Runs the real `sluice` executable as a child process, as a user would. */
import { spawn, type ChildProcess } from "node:child_process";
import { fileURLToPath } from "node:url";
import { dirname, join } from "node:path";
import net from "node:net";
import assert from "node:assert/strict";

/** bin/sluice.js, resolved from the compiled test's location (dist/test/support → repo root). */
export const SLUICE_BIN = join(dirname(fileURLToPath(import.meta.url)), "..", "..", "..", "bin", "sluice.js");

export interface RunningSluice {
  child: ChildProcess;
  port: number;
  stdout: () => string;
  stderr: () => string;
  /** Peak resident memory of the sluice process so far, in bytes (VmHWM). */
  peakRss(): Promise<number>;
  stop(): Promise<number | null>;
}

/**
 * Starts `sluice ARGS`. The port is read from the "listening at" log line, or, for quiet runs
 * that print nothing, given as `port` and waited for.
 */
export async function spawnSluice(args: string[], opts: { env?: NodeJS.ProcessEnv; port?: number; startTimeoutMs?: number } = {}): Promise<RunningSluice> {
  const env = opts.env ?? process.env;
  const child = spawn(process.execPath, [SLUICE_BIN, ...args], { env, stdio: ["ignore", "pipe", "pipe"] });
  let out = "";
  let err = "";
  child.stdout!.on("data", (c: Buffer) => (out += c.toString()));
  child.stderr!.on("data", (c: Buffer) => (err += c.toString()));
  const port = await new Promise<number>((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill("SIGKILL");
      reject(new Error(`sluice did not start: ${err}`));
    }, opts.startTimeoutMs ?? 20_000);
    const done = (p: number) => {
      clearTimeout(timer);
      resolve(p);
    };
    if (opts.port) {
      const probe = () => {
        const s = net.connect(opts.port!, "127.0.0.1");
        s.once("connect", () => {
          s.destroy();
          done(opts.port!);
        });
        s.once("error", () => setTimeout(probe, 50));
      };
      probe();
    } else {
      child.stderr!.on("data", () => {
        const m = /listening at [^\s]+:(\d+)/.exec(err);
        if (m) done(Number(m[1]));
      });
    }
    child.once("exit", (code) => {
      clearTimeout(timer);
      reject(new Error(`sluice exited with ${code}: ${err}`));
    });
  });
  return {
    child,
    port,
    stdout: () => out,
    stderr: () => err,
    async peakRss() {
      const { readFile } = await import("node:fs/promises");
      const status = await readFile(`/proc/${child.pid}/status`, "utf8");
      const kb = Number(/VmHWM:\s+(\d+) kB/.exec(status)?.[1] ?? NaN);
      return kb * 1024;
    },
    stop() {
      return new Promise((resolve) => {
        if (child.exitCode !== null) return resolve(child.exitCode);
        child.once("exit", (code) => resolve(code));
        child.kill("SIGINT");
      });
    },
  };
}

export async function freePort(): Promise<number> {
  const s = net.createServer();
  await new Promise<void>((r) => s.listen(0, "127.0.0.1", r));
  const port = (s.address() as net.AddressInfo).port;
  await new Promise<void>((r) => s.close(() => r()));
  return port;
}

/**
 * A refused command line: it failed (with exit code `code` when given), and its stderr is one line
 * matching `pattern`, without a stack trace.
 */
export function assertOneLineError(r: { code: number | null; stderr: string }, pattern: RegExp, what: string, code?: number): void {
  if (code === undefined) assert.notEqual(r.code, 0, what);
  else assert.equal(r.code, code, `${what}: ${r.stderr}`);
  assert.match(r.stderr, pattern);
  assert.doesNotMatch(r.stderr, /\n\s+at /, "no stack trace");
  assert.equal(r.stderr.trim().split("\n").length, 1, `one line: ${r.stderr}`);
}
