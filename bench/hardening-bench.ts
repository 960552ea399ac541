/**
 * `npm run bench -- hardening`: a proxy that can be left running.
 *
 * 1. Soak: mixed traffic (plain GETs, 4 KiB POSTs, HTTPS through CONNECT; 10 connections) through
 *    regular mode with `-w` for SLUICE_SOAK_SECONDS (default 600): requests, sluice's RSS every
 *    10 s, and after a graceful stop the flows on disk against the responses delivered.
 * 2. New TLS hostnames per second (CONNECT + handshake, 32 at a time, every name new) and the p50
 *    of plain requests from another client meanwhile, against the p50 without the burst.
 * 3. RSS of sluice holding 10,000 idle client connections.
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { progress } from "./progress.js";
import { start } from "./proxy-bench.js";
import { load, rssMb, soak, startSluice, stop } from "./soak-bench.js";

const here = fileURLToPath(new URL(".", import.meta.url));

export async function benchHardening(): Promise<string> {
  const dir = mkdtempSync(join(tmpdir(), "sluice-bench-hardening-"));
  const lines: string[] = [];
  const origin = await start(process.execPath, [join(here, "origin-server.js"), join(dir, "origin-conf")], /(\{.*\})\n/, "stdout");
  const ports = JSON.parse(origin.match[1]!) as { http: number; https: number };
  try {
    // 1. Soak
    lines.push(...(await soak(dir, ports, Number(process.env.SLUICE_SOAK_SECONDS ?? 600))));
    const caFile = join(dir, "conf", "sluice-ca-cert.pem");

    // 2. New hostnames and plain latency meanwhile
    progress("plain p50 without a burst of new names");
    const quiet = await startSluice(dir, []);
    const before = await load(["plain", quiet.port, ports.http, 5]);
    progress("new TLS hostnames for 10 s, plain requests meanwhile");
    const [names, during] = await Promise.all([load(["names", quiet.port, ports.https, caFile, 10]), load(["plain", quiet.port, ports.http, 10])]);
    await stop(quiet.child);
    lines.push(
      `New TLS hostnames: ${names.perSecond!.toFixed(0)}/s (${names.names} names in 10 s, ${names.failed} failed; CONNECT + handshake, 32 at a time)`,
      `  plain requests meanwhile: p50 ${during.p50!.toFixed(2)} ms, p99 ${during.p99!.toFixed(2)} ms (without the burst: p50 ${before.p50!.toFixed(2)} ms, p99 ${before.p99!.toFixed(2)} ms)`,
    );

    // 3. Idle connections
    progress("10,000 idle client connections");
    const idle = await startSluice(dir, ["--set", "max_client_connections=20000"]);
    const baseline = rssMb(idle.child.pid!);
    let held = NaN;
    let ready = 0;
    const idleResult = await load(["idle", idle.port, 10_000, 5], (j) => {
      ready = j.ready as number;
      setTimeout(() => (held = rssMb(idle.child.pid!)), 3000);
    });
    await stop(idle.child);
    lines.push(`10,000 idle connections (connected, silent): RSS ${baseline.toFixed(0)} MB before, ${held.toFixed(0)} MB holding ${ready} (${(((held - baseline) * 1024) / Math.max(1, ready)).toFixed(1)} KB each); ${idleResult.stillOpen} still open after 5 s`);
  } finally {
    origin.child.kill();
    rmSync(dir, { recursive: true, force: true });
  }
  return lines.join("\n");
}
