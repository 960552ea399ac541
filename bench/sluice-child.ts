/** `sluice dump` as a child process for the benches, started on a free port with per-flow lines off. */
import { spawn, type ChildProcess } from "node:child_process";
import { readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const SLUICE = join(dirname(fileURLToPath(import.meta.url)), "..", "..", "bin", "sluice.js");

/**
 * What follows `process.execPath` to run sluice as it ships: the Node flags of the executable's
 * `#!/usr/bin/env -S node …` line (V8's young-generation size), then the script. Benches spawn
 * `node` themselves, which reads the script without its first line's flags.
 */
export const SLUICE_COMMAND: string[] = [...shebangFlags(readFileSync(SLUICE, "utf8").split("\n")[0]!), SLUICE];

function shebangFlags(line: string): string[] {
  const args = /^#!.*?\bnode\b(.*)$/.exec(line)?.[1] ?? "";
  return args.split(/\s+/).filter((a) => a.startsWith("--"));
}

/** Resolves with the child and its port once sluice logs where it listens; rejects if it exits or takes 30 s. */
export function startSluiceDump(args: string[]): Promise<{ child: ChildProcess; port: number }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [...SLUICE_COMMAND, "dump", "-p", "0", "--flow-detail", "0", ...args], { stdio: ["ignore", "ignore", "pipe"] });
    let err = "";
    const timer = setTimeout(() => reject(new Error(`sluice did not start: ${err}`)), 30_000);
    child.stderr!.on("data", (c: Buffer) => {
      err += c.toString();
      const m = /listening at [^\s]+:(\d+)/.exec(err);
      if (m) {
        clearTimeout(timer);
        resolve({ child, port: Number(m[1]) });
      }
    });
    child.once("exit", (code) => reject(new Error(`sluice exited with ${code}: ${err}`)));
  });
}
