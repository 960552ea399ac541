/**
 * `npm run bench -- hostnames`: new TLS hostnames per second through `sluice dump` (CONNECT, then
 * a handshake with a name never seen before, 32 at a time), sluice's and the loader's CPU per new
 * name (from /proc, and the loader's own count), plain requests' p50 during a burst, and, measured
 * in this process, what a new name costs apart: Node's createSecureContext for a
 * leaf (key and chain, and each alone), and signing a leaf with the CA's key.
 */
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { loadavg, tmpdir } from "node:os";
import { join } from "node:path";
import { createSecureContext } from "node:tls";
import { fileURLToPath } from "node:url";
import { CertificateAuthority, type LeafCertificate } from "../src/proxy/tls/ca.js";
import { progress } from "./progress.js";
import { start } from "./proxy-bench.js";
import { load, startSluice, stop } from "./soak-bench.js";

const here = fileURLToPath(new URL(".", import.meta.url));
const SECONDS = Number(process.env.BENCH_SECONDS ?? 10);

function cpuMsOf(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  return (Number(fields[11]) + Number(fields[12])) * 10;
}

/** CPU milliseconds per call of `fn` on this thread, over `n` calls. */
function cpuMsPer(n: number, fn: (i: number) => void): number {
  const before = process.cpuUsage();
  for (let i = 0; i < n; i++) fn(i);
  const used = process.cpuUsage(before);
  return (used.user + used.system) / 1000 / n;
}

export async function benchHostnames(): Promise<string> {
  const dir = mkdtempSync(join(tmpdir(), "sluice-bench-hostnames-"));
  const origin = await start(process.execPath, [join(here, "origin-server.js"), join(dir, "origin-conf")], /(\{.*\})\n/, "stdout");
  const lines: string[] = [];
  try {
    const ports = JSON.parse(origin.match[1]!) as { http: number; https: number };
    const sluice = await startSluice(dir, []);
    const caFile = join(dir, "conf", "sluice-ca-cert.pem");
    progress(`new TLS hostnames for ${SECONDS} s`);
    const cpuBefore = cpuMsOf(sluice.child.pid!);
    const names = await load(["names", sluice.port, ports.https, caFile, SECONDS]);
    const cpuPerName = (cpuMsOf(sluice.child.pid!) - cpuBefore) / Math.max(1, names.names!);
    const loaderPerName = names.loaderCpuMs! / Math.max(1, names.names!);
    progress("plain p50 without a burst of new names");
    const quiet = await load(["plain", sluice.port, ports.http, 5]);
    progress(`new TLS hostnames for ${SECONDS} s, plain requests meanwhile`);
    const [burst, during] = await Promise.all([load(["names", sluice.port, ports.https, caFile, SECONDS]), load(["plain", sluice.port, ports.http, SECONDS])]);
    await stop(sluice.child);
    lines.push(
      `New TLS hostnames through sluice dump: ${names.perSecond!.toFixed(0)}/s (${names.names} names in ${SECONDS} s, ${names.failed} failed; CONNECT + handshake, 32 at a time, the loader on the same cores)`,
      `  sluice's CPU per new name: ${cpuPerName.toFixed(2)} ms (handshake, certificate and context, CONNECT) — one core's worth is ${(1000 / cpuPerName).toFixed(0)} names/s`,
      `  the loader's CPU per new name: ${loaderPerName.toFixed(2)} ms (Node's TLS client, verifying each leaf against sluice's CA) — sluice and loader together ${(cpuPerName + loaderPerName).toFixed(2)} ms, so two cores give at most ${(2000 / (cpuPerName + loaderPerName)).toFixed(0)} names/s end to end`,
      `  plain requests during a second burst (${burst.perSecond!.toFixed(0)} names/s): p50 ${during.p50!.toFixed(2)} ms, p99 ${during.p99!.toFixed(2)} ms (without the burst: p50 ${quiet.p50!.toFixed(2)} ms, p99 ${quiet.p99!.toFixed(2)} ms)`,
    );

    progress("what a new name costs, in isolation");
    const ca = CertificateAuthority.loadOrCreate(join(dir, "conf"));
    const leaf = await ca.certificateFor("isolated.bench.test");
    const chain = leaf.certPem + ca.certPem;
    const n = 200;
    const full = cpuMsPer(n, () => createSecureContext({ key: ca.leafKeyPem, cert: chain }));
    const keyOnly = cpuMsPer(n, () => createSecureContext({ key: ca.leafKeyPem }));
    const certOnly = cpuMsPer(n, () => createSecureContext({ cert: chain }));
    const empty = cpuMsPer(n, () => createSecureContext({}));
    const sign = cpuMsPer(n, (i) => ca.leafCertFor(`sign-${i}.bench.test`));
    // What a new leaf costs on the event loop now: loaded into the shared context for its first handshakes.
    const fresh: LeafCertificate[] = [];
    ca.handshakeContext(leaf); // the shared context itself is made once, with the first leaf
    for (let i = 0; i < n; i++) fresh.push(await ca.certificateFor(`load-${i}.bench.test`));
    const loadLeaf = cpuMsPer(n, (i) => ca.handshakeContext(fresh[i]!));
    lines.push(
      `  in isolation, per call on one thread: tls.createSecureContext with the leaf key and chain ${full.toFixed(2)} ms ` +
        `(key alone ${keyOnly.toFixed(2)}, chain alone ${certOnly.toFixed(2)}, empty ${empty.toFixed(2)}); ` +
        `signing a leaf with the CA's key ${sign.toFixed(2)} ms (on the thread pool in the proxy); ` +
        `loading a new leaf into the shared handshake context (what the proxy does instead of createSecureContext) ${loadLeaf.toFixed(2)} ms`,
      `  load average: ${loadavg().map((l) => l.toFixed(1)).join(" ")}`,
    );
  } finally {
    origin.child.kill();
    rmSync(dir, { recursive: true, force: true });
  }
  return lines.join("\n");
}
