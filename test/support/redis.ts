/**
 * A real Debian `redis-server` for fleet tests, on a free port of 127.0.0.1, with nothing saved to
 * disk. Redis cannot listen on port 0, so a free port is found by binding 127.0.0.1:0 and
 * releasing it (a tiny race with other programs, retried once).
 */
import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { needs } from "./needs.js";
import net from "node:net";
import { freePort } from "./cli.js";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

/** Why fleet tests must skip here, or null when redis-server is installed. */
export function redisMissing(): string | null {
  return needs("redis-server", "redis-server") ?? null;
}

export interface RedisServer {
  port: number;
  url: string;
  child: ChildProcess;
  /** Stops the server (SIGKILL: like a crash, nothing saved). */
  stop(): Promise<void>;
  /** Starts it again on the same port, empty (a restarted Redis). */
  restart(): Promise<void>;
  /** Runs redis-cli against it and returns its output. */
  cli(...args: string[]): string;
}

export async function startRedis(opts: { password?: string } = {}): Promise<RedisServer> {
  const dir = mkdtempSync(join(tmpdir(), "sluice-redis-"));
  let port = await freePort();
  let child: ChildProcess;
  const launch = async (): Promise<void> => {
    const args = ["--port", String(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", dir];
    if (opts.password) args.push("--requirepass", opts.password);
    child = spawn("redis-server", args, { stdio: ["ignore", "pipe", "pipe"] });
    let out = "";
    child.stdout!.on("data", (c: Buffer) => (out += c.toString()));
    child.stderr!.on("data", (c: Buffer) => (out += c.toString()));
    await waitForPing(port, opts.password, () => child.exitCode !== null, () => out);
  };
  try {
    await launch();
  } catch {
    port = await freePort(); // someone took the port between probe and start
    await launch();
  }
  const server: RedisServer = {
    port,
    get url() {
      return opts.password ? `redis://:${opts.password}@127.0.0.1:${port}` : `redis://127.0.0.1:${port}`;
    },
    get child() {
      return child;
    },
    async stop() {
      if (child.exitCode !== null || child.signalCode !== null) return;
      const exited = new Promise<void>((r) => child.once("exit", () => r()));
      child.kill("SIGKILL");
      await exited;
    },
    async restart() {
      await server.stop();
      await launch();
    },
    cli(...args: string[]) {
      const auth = opts.password ? ["-a", opts.password, "--no-auth-warning"] : [];
      const r = spawnSync("redis-cli", ["-h", "127.0.0.1", "-p", String(port), ...auth, ...args], { encoding: "utf8" });
      return r.stdout.trim();
    },
  };
  process.once("exit", () => {
    child.kill("SIGKILL");
    rmSync(dir, { recursive: true, force: true });
  });
  return server;
}

/** Waits until redis answers PING (with AUTH if a password is set). */
async function waitForPing(port: number, password: string | undefined, exited: () => boolean, output: () => string): Promise<void> {
  const deadline = Date.now() + 10_000;
  while (Date.now() < deadline) {
    if (exited()) throw new Error(`redis-server exited: ${output()}`);
    const ok = await new Promise<boolean>((resolve) => {
      const s = net.connect(port, "127.0.0.1");
      let got = "";
      s.once("connect", () => s.write((password ? `AUTH ${password}\r\n` : "") + "PING\r\n"));
      s.on("data", (c) => {
        got += c.toString();
        if (got.includes("+PONG")) {
          s.destroy();
          resolve(true);
        }
      });
      s.once("error", () => resolve(false));
      setTimeout(() => {
        s.destroy();
        resolve(false);
      }, 500);
    });
    if (ok) return;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`redis-server did not answer PING on 127.0.0.1:${port}: ${output()}`);
}
