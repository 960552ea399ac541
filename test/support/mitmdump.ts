/**
 * Debian's mitmdump 8.1.1 beside sluice, for tests that check the same input gives the same
 * observable result through both. Lazy upstream connections, as sluice's, so offline tests work.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import net from "node:net";
import { freePort } from "./cli.js";
import { run } from "./run.js";
import { needs } from "./needs.js";

export const MITMDUMP = "/usr/bin/mitmdump";

/** The reason to skip a test that needs mitmdump, or undefined when it is installed. */
export function mitmdumpMissing(): string | undefined {
  return needs(MITMDUMP, "mitmproxy");
}

export interface RunningMitmdump {
  port: number;
  confdir: string;
  caCert: string;
  output: () => string;
  stop(): Promise<void>;
}

export async function startMitmdump(args: string[]): Promise<RunningMitmdump> {
  const confdir = mkdtempSync(join(tmpdir(), "sluice-mitm-"));
  const port = await freePort();
  const child: ChildProcess = spawn(MITMDUMP, ["--listen-host", "127.0.0.1", "-p", String(port), "--set", `confdir=${confdir}`, ...(args.some((a) => a.startsWith("connection_strategy=")) ? [] : ["--set", "connection_strategy=lazy"]), ...args], { stdio: ["ignore", "pipe", "pipe"] });
  let out = "";
  child.stdout!.on("data", (c: Buffer) => (out += c.toString()));
  child.stderr!.on("data", (c: Buffer) => (out += c.toString()));
  const deadline = Date.now() + 60_000; // generous: a loaded CI machine starts Python slowly
  for (;;) {
    if (child.exitCode !== null) throw new Error(`mitmdump exited with ${child.exitCode}: ${out}`);
    if (await canConnect(port)) break;
    if (Date.now() > deadline) {
      child.kill("SIGKILL");
      throw new Error(`mitmdump did not start: ${out}`);
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  return {
    port,
    confdir,
    caCert: join(confdir, "mitmproxy-ca-cert.pem"),
    output: () => out,
    stop: () =>
      new Promise<void>((resolve) => {
        if (child.exitCode !== null) return resolve();
        child.once("exit", () => resolve());
        child.kill("SIGTERM");
      }),
  };
}

function canConnect(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.connect(port, "127.0.0.1");
    s.once("connect", () => {
      s.destroy();
      resolve(true);
    });
    s.once("error", () => resolve(false));
  });
}

export interface CurlAnswer {
  code: number | null;
  status: number;
  headers: [string, string][];
  body: string;
  stderr: string;
}

/** curl through the proxy at `proxyPort`; the answer's status, headers (last response) and body. */
export async function curlVia(proxyPort: number, url: string, extra: string[] = []): Promise<CurlAnswer> {
  const r = await run("curl", ["-sS", "-i", "--max-time", "20", "--noproxy", "", "-x", `http://127.0.0.1:${proxyPort}`, ...extra, url]);
  const text = r.stdout;
  // With -i, interim or CONNECT responses come first: the answer is the last head.
  let rest = text;
  let head = "";
  for (;;) {
    const end = rest.indexOf("\r\n\r\n");
    if (end < 0) break;
    head = rest.slice(0, end);
    rest = rest.slice(end + 4);
    if (!/^HTTP\/\S+ (1\d\d|200 Connection established)/i.test(head)) break;
  }
  const lines = head.split("\r\n");
  const status = Number(/^HTTP\/\S+ (\d+)/.exec(lines[0] ?? "")?.[1] ?? 0);
  const headers = lines.slice(1).map((l): [string, string] => {
    const i = l.indexOf(":");
    return [l.slice(0, i).toLowerCase(), l.slice(i + 1).trim()];
  });
  return { code: r.code, status, headers, body: rest, stderr: r.stderr };
}

export function header(answer: CurlAnswer, name: string): string[] {
  return answer.headers.filter(([n]) => n === name).map(([, v]) => v);
}
