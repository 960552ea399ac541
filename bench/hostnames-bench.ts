/**
 * `npm run bench -- hostnames`: new TLS hostnames per second through `sluice dump` (CONNECT, then
 * a handshake with a name never seen before, 32 at a time), against the floor (Node's HTTP server
 * and a TLS handshake with one ready-made context: what any Node TLS server pays, see
 * tls-floor.ts), in interleaved rounds, with two loaders: Python's ssl (OpenSSL in C, as boto3 and
 * the AWS CLI use it; the cheapest client found here) and Node's tls. Reported: names/s end to end,
 * the server's and the loader's CPU per new name (from /proc and the loader's own count), plain
 * requests' p50 during a burst, and, measured in this process, what a new name costs apart:
 * Node's createSecureContext for a leaf, signing a leaf with the CA's key, loading a leaf.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { loadavg, tmpdir } from "node:os";
import { join } from "node:path";
import { createSecureContext } from "node:tls";
import { fileURLToPath } from "node:url";
import { CertificateAuthority, type LeafCertificate } from "../src/proxy/tls/ca.js";
import { progress } from "./progress.js";
import { start } from "./proxy-bench.js";
import { load, startSluice, stop } from "./soak-bench.js";

const here = fileURLToPath(new URL(".", import.meta.url));
const SECONDS = Number(process.env.BENCH_SECONDS ?? 8);
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 2);
const PYTHON = "/usr/bin/python3";

/**
 * The Python loader: 32 connections at a time on one thread (non-blocking sockets), each a
 * CONNECT through the proxy and a handshake verifying the leaf against the CA and the name, as
 * urllib3 does for boto3. Prints the same JSON as hardening-load.ts's `names`.
 */
const PY_NAMES = `
import json, os, resource, selectors, socket, ssl, sys, time
port, ca_file, seconds = int(sys.argv[1]), sys.argv[2], float(sys.argv[3])
ctx = ssl.create_default_context(cafile=ca_file)
sel = selectors.DefaultSelector()
end = time.time() + seconds
counts = {"done": 0, "failed": 0, "seq": 0}
class Conn: pass
def start():
    c = Conn(); c.sock = socket.socket(); c.sock.setblocking(False); c.tls = None; c.head = b""
    c.name = "p%d-%d.bench.test" % (counts["seq"], os.getpid()); counts["seq"] += 1
    try: c.sock.connect(("127.0.0.1", port))
    except BlockingIOError: pass
    c.state = "connect"; sel.register(c.sock, selectors.EVENT_WRITE, c)
def finish(c, ok):
    s = c.tls or c.sock
    sel.unregister(s); s.close()
    counts["done" if ok else "failed"] += 1
    if time.time() < end: start()
def step(c):
    try:
        if c.state == "connect":
            c.sock.send(b"CONNECT 127.0.0.1:9 HTTP/1.1\\r\\nHost: 127.0.0.1:9\\r\\n\\r\\n")
            c.state = "head"; sel.modify(c.sock, selectors.EVENT_READ, c); return
        if c.state == "head":
            d = c.sock.recv(4096)
            if not d: return finish(c, False)
            c.head += d
            if b"\\r\\n\\r\\n" not in c.head: return
            if not c.head.startswith(b"HTTP/1.1 200"): return finish(c, False)
            sel.unregister(c.sock)
            c.tls = ctx.wrap_socket(c.sock, server_hostname=c.name, do_handshake_on_connect=False)
            c.state = "tls"; sel.register(c.tls, selectors.EVENT_READ | selectors.EVENT_WRITE, c)
        try: c.tls.do_handshake()
        except ssl.SSLWantReadError: return sel.modify(c.tls, selectors.EVENT_READ, c)
        except ssl.SSLWantWriteError: return sel.modify(c.tls, selectors.EVENT_WRITE, c)
        finish(c, True)
    except Exception as e:
        if counts["failed"] < 3: print("names loader:", repr(e), file=sys.stderr)
        finish(c, False)
started = time.time(); r0 = resource.getrusage(resource.RUSAGE_SELF)
for _ in range(32): start()
while sel.get_map():
    for key, _ in sel.select(1): step(key.data)
r1 = resource.getrusage(resource.RUSAGE_SELF)
cpu = (r1.ru_utime - r0.ru_utime + r1.ru_stime - r0.ru_stime) * 1000
print(json.dumps({"names": counts["done"], "failed": counts["failed"], "perSecond": counts["done"] / (time.time() - started), "loaderCpuMs": cpu}))
`;

function pythonNames(proxyPort: number, caFile: string, seconds: number): Promise<Record<string, number>> {
  return new Promise((resolve, reject) => {
    const child = spawn(PYTHON, ["-c", PY_NAMES, String(proxyPort), caFile, String(seconds)], { stdio: ["ignore", "pipe", "inherit"] });
    let out = "";
    child.stdout.on("data", (c: Buffer) => (out += c.toString()));
    child.once("exit", (code) => (code === 0 ? resolve(JSON.parse(out) as Record<string, number>) : reject(new Error(`the Python names loader exited with ${code}`))));
  });
}

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

interface Round {
  perSecond: number;
  serverMs: number;
  loaderMs: number;
  failed: number;
}

/** One loader run against one server: names/s, and CPU per name of the server and of the loader. */
async function measure(pid: number, run: () => Promise<Record<string, number>>): Promise<Round> {
  const before = cpuMsOf(pid);
  const r = await run();
  const names = Math.max(1, r.names!);
  return { perSecond: r.perSecond!, serverMs: (cpuMsOf(pid) - before) / names, loaderMs: r.loaderCpuMs! / names, failed: r.failed! };
}

const list = (rounds: Round[], pick: (r: Round) => number, digits: number) => rounds.map((r) => pick(r).toFixed(digits)).join(", ");

function describeRounds(server: string, rounds: Round[]): string {
  const failed = rounds.reduce((s, r) => s + r.failed, 0);
  const bestMs = Math.min(...rounds.map((r) => r.serverMs));
  return `${server} ${list(rounds, (r) => r.perSecond, 0)}/s (${list(rounds, (r) => r.serverMs, 2)} ms of its CPU per name: one core's worth ${(1000 / bestMs).toFixed(0)}/s${failed ? `; ${failed} failed` : ""})`;
}

export async function benchHostnames(): Promise<string> {
  const dir = mkdtempSync(join(tmpdir(), "sluice-bench-hostnames-"));
  const origin = await start(process.execPath, [join(here, "origin-server.js"), join(dir, "origin-conf")], /(\{.*\})\n/, "stdout");
  const lines: string[] = [];
  const children: ChildProcess[] = [origin.child];
  try {
    const ports = JSON.parse(origin.match[1]!) as { http: number; https: number };
    const sluice = await startSluice(dir, []);
    children.push(sluice.child);
    const caFile = join(dir, "conf", "sluice-ca-cert.pem");
    const floor = await start(process.execPath, [join(here, "tls-floor.js"), join(dir, "conf")], /(\{.*\})\n/, "stdout");
    children.push(floor.child);
    const floorPort = (JSON.parse(floor.match[1]!) as { port: number }).port;
    const loaders: { name: string; run: (port: number, seconds?: number) => Promise<Record<string, number>> }[] = [];
    if (existsSync(PYTHON)) loaders.push({ name: "Python's ssl (OpenSSL, as boto3)", run: (port, seconds = SECONDS) => pythonNames(port, caFile, seconds) });
    else lines.push(`(${PYTHON} not found: the Python loader's rows are left out)`);
    loaders.push({ name: "Node's tls", run: (port, seconds = SECONDS) => load(["names", port, ports.https, caFile, seconds]) });
    lines.push(
      `New TLS hostnames per second end to end (CONNECT + handshake, 32 at a time, every name new; the loader and the server share this machine's cores), ${ROUNDS} interleaved rounds of ${SECONDS} s:`,
    );
    progress("warming both servers up (JIT, sluice's first leaf)");
    for (const port of [floorPort, sluice.port]) await loaders[0]!.run(port, 2);
    for (const loader of loaders) {
      const ours: Round[] = [];
      const floors: Round[] = [];
      for (let round = 1; round <= ROUNDS; round++) {
        progress(`new TLS hostnames, ${loader.name} loader, round ${round} of ${ROUNDS}: the floor, then sluice`);
        floors.push(await measure(floor.child.pid!, () => loader.run(floorPort)));
        ours.push(await measure(sluice.child.pid!, () => loader.run(sluice.port)));
      }
      const loaderMs = [...ours, ...floors].map((r) => r.loaderMs);
      lines.push(
        `  ${loader.name} loader: ${describeRounds("sluice", ours)}; the floor ${describeRounds("", floors).trim()}; the loader itself ${Math.min(...loaderMs).toFixed(2)}–${Math.max(...loaderMs).toFixed(2)} ms per name`,
      );
    }
    progress("plain p50 without a burst of new names");
    const quiet = await load(["plain", sluice.port, ports.http, 5]);
    progress(`new TLS hostnames for ${SECONDS} s, plain requests meanwhile`);
    const burstLoader = loaders[0]!;
    const [burst, during] = await Promise.all([burstLoader.run(sluice.port), load(["plain", sluice.port, ports.http, SECONDS])]);
    await stop(sluice.child);
    lines.push(
      `  plain requests during a burst (${burst.perSecond!.toFixed(0)} new names/s, ${burstLoader.name} loader): p50 ${during.p50!.toFixed(2)} ms, p99 ${during.p99!.toFixed(2)} ms (without the burst: p50 ${quiet.p50!.toFixed(2)} ms, p99 ${quiet.p99!.toFixed(2)} ms)`,
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
    for (const child of children) child.kill();
    rmSync(dir, { recursive: true, force: true });
  }
  return lines.join("\n");
}
