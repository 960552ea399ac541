/**
 * `npm run bench -- fleet`: three sluice processes sharing budgets through one Redis.
 *
 * 1. Admitted vs configured: three processes in reverse mode with `--shape` rules of 10, 100 and
 *    1,000/s (one rule per path, all shared), each loaded by closed-loop workers spread over the
 *    three so demand always exceeds the budget; the origin counts arrivals over a steady window
 *    (FLEET_SECONDS, default 10 s, after 1 s of warm-up). Redis round trips per admitted request
 *    from Redis's own INFO commandstats (EVALSHA + EVAL calls).
 * 2. Cost of sharing: one process, 32 closed-loop workers, requests/s with a shared budget far
 *    above the load (1,000,000/s: leases) against the same process with no rule, interleaved
 *    rounds (FLEET_ROUND_SECONDS, default 5 s; best of 2).
 */
import type { ChildProcess } from "node:child_process";
import http from "node:http";
import type net from "node:net";
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Agent, request } from "undici";
import { Redis } from "ioredis";
import { startRedis } from "../test/support/redis.js";
import { progress } from "./progress.js";
import { startSluiceDump } from "./sluice-child.js";

const SECONDS = Number(process.env.FLEET_SECONDS ?? 10);
const ROUND_SECONDS = Number(process.env.FLEET_ROUND_SECONDS ?? 5);
const RATES = [10, 100, 1000];

async function stop(c: ChildProcess): Promise<void> {
  if (c.exitCode !== null) return;
  await new Promise<void>((r) => {
    c.once("exit", () => r());
    c.kill("SIGINT");
  });
}

/** An origin that counts arrivals per first path segment, with their times. */
async function startCountingOrigin(): Promise<{ url: string; arrivals: Map<string, number[]>; close(): Promise<void> }> {
  const arrivals = new Map<string, number[]>();
  const server = http.createServer((req, res) => {
    const area = (req.url ?? "").split("/")[1] ?? "";
    let list = arrivals.get(area);
    if (!list) arrivals.set(area, (list = []));
    list.push(performance.now());
    req.resume();
    res.writeHead(200, { "content-type": "text/plain" });
    res.end("ok");
  });
  server.keepAliveTimeout = 30_000;
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  return {
    url: `http://127.0.0.1:${(server.address() as net.AddressInfo).port}`,
    arrivals,
    close: () => new Promise<void>((r) => { server.closeAllConnections(); server.close(() => r()); }),
  };
}

/** `workers` loops per port sending to `path` until `ms` have passed; resolves with requests answered and non-200s. */
async function closedLoop(ports: number[], workersPerPort: number, path: string, ms: number, agent: Agent): Promise<{ done: number; errors: number }> {
  const end = performance.now() + ms;
  let done = 0;
  let errors = 0;
  await Promise.all(
    ports.flatMap((port) =>
      Array.from({ length: workersPerPort }, async () => {
        while (performance.now() < end) {
          try {
            const r = await request(`http://127.0.0.1:${port}${path}`, { dispatcher: agent });
            await r.body.dump();
            if (r.statusCode === 200) done++;
            else errors++;
          } catch {
            errors++;
          }
        }
      }),
    ),
  );
  return { done, errors };
}

async function scriptCalls(redis: Redis): Promise<number> {
  const info = await redis.info("commandstats");
  let n = 0;
  for (const m of info.matchAll(/cmdstat_(?:evalsha|eval):calls=(\d+)/g)) n += Number(m[1]);
  return n;
}

export async function benchFleet(): Promise<string> {
  const redisServer = await startRedis();
  const redis = new Redis(redisServer.url);
  const origin = await startCountingOrigin();
  const confdir = mkdtempSync(join(tmpdir(), "sluice-bench-fleet-"));
  const agent = new Agent({ connections: 512, keepAliveTimeout: 30_000 });
  const lines: string[] = [];
  const procs: ChildProcess[] = [];
  try {
    const shapes = RATES.flatMap((r) => ["--shape", `~u /r${r}/ => ${r}/s max-wait=10s`]);
    for (let i = 0; i < 3; i++) {
      const p = await startSluiceDump(["--confdir", confdir, "--mode", `reverse:${origin.url}`, "--set", `shared_state=${redisServer.url}`, "--set", "fleet=bench", ...shapes]);
      procs.push(p.child);
      (p.child as ChildProcess & { port?: number }).port = p.port;
    }
    const ports = procs.map((c) => (c as ChildProcess & { port?: number }).port!);
    lines.push(`Three sluice processes (reverse mode) sharing one budget through Redis ${(await redis.info("server")).match(/redis_version:(\S+)/)?.[1] ?? "?"} on 127.0.0.1; closed-loop load over the three; steady window ${SECONDS} s after 1 s of warm-up.`);
    lines.push("");
    lines.push("| configured | admitted (origin) | admitted / configured | Redis round trips per admitted request | non-200 answers |");
    lines.push("| --- | --- | --- | --- | --- |");
    for (const rate of RATES) {
      progress(`fleet: ${rate}/s shared by three processes for ${SECONDS + 1} s`);
      // Enough outstanding requests that the budget, not the client, is the limit (each waits its turn in a queue).
      const workers = Math.max(2, Math.ceil(rate * 0.05));
      const calls0 = await scriptCalls(redis);
      const started = performance.now();
      const loadDone = closedLoop(ports, workers, `/r${rate}/x`, (SECONDS + 1) * 1000, agent);
      const result = await loadDone;
      const calls = (await scriptCalls(redis)) - calls0;
      const from = started + 1000;
      const to = from + SECONDS * 1000;
      const arrived = (origin.arrivals.get(`r${rate}`) ?? []).filter((t) => t >= from && t < to).length;
      const admitted = arrived / SECONDS;
      const total = origin.arrivals.get(`r${rate}`)?.length ?? 0;
      lines.push(`| ${rate}/s | ${admitted.toFixed(1)}/s | ${((admitted / rate) * 100).toFixed(1)}% | ${(calls / Math.max(1, total)).toFixed(3)} | ${result.errors} |`);
    }
    for (const c of procs) await stop(c);
    procs.length = 0;

    // 2. One process: a shared budget far above the load against no rule at all.
    lines.push("");
    lines.push(`One process, 32 closed-loop workers, interleaved rounds of ${ROUND_SECONDS} s (best of 2):`);
    lines.push("");
    lines.push("| rule | requests/s | Redis round trips per request |");
    lines.push("| --- | --- | --- |");
    const best = { none: 0, shared: 0, trips: 0 };
    const plain = await startSluiceDump(["--confdir", confdir, "--mode", `reverse:${origin.url}`]);
    procs.push(plain.child);
    const shared = await startSluiceDump(["--confdir", confdir, "--mode", `reverse:${origin.url}`, "--set", `shared_state=${redisServer.url}`, "--set", "fleet=bench2", "--shape", "~all => 1000000/s"]);
    procs.push(shared.child);
    for (let round = 0; round < 2; round++) {
      progress(`fleet: single process, round ${round + 1}/2`);
      const a = await closedLoop([plain.port], 32, "/none/x", ROUND_SECONDS * 1000, agent);
      best.none = Math.max(best.none, a.done / ROUND_SECONDS);
      const calls0 = await scriptCalls(redis);
      const b = await closedLoop([shared.port], 32, "/shared/x", ROUND_SECONDS * 1000, agent);
      const calls = (await scriptCalls(redis)) - calls0;
      if (b.done / ROUND_SECONDS > best.shared) {
        best.shared = b.done / ROUND_SECONDS;
        best.trips = calls / Math.max(1, b.done);
      }
    }
    lines.push(`| none | ${best.none.toFixed(0)} | — |`);
    lines.push(`| \`~all => 1000000/s\` shared through Redis | ${best.shared.toFixed(0)} (${((best.shared / best.none) * 100).toFixed(0)}% of none) | ${best.trips.toFixed(3)} |`);
    return lines.join("\n");
  } finally {
    for (const c of procs) await stop(c);
    await agent.close();
    await origin.close();
    redis.disconnect();
    await redisServer.stop();
  }
}
