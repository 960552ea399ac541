/**
 * Shared budgets across a fleet: a real redis-server started here, three real `sluice` processes
 * in reverse mode in front of one local origin, load spread over the three. Bounds are loose on
 * purpose (a loaded 2-core machine); each would fail by a wide margin without sharing (three
 * processes with their own buckets admit three times the budget).
 */
import { test, describe, before, after } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Agent, request } from "undici";
import { startOrigin, type Origin } from "./support/origins.js";
import { spawnSluice, assertOneLineError, SLUICE_BIN, type RunningSluice } from "./support/cli.js";
import { run } from "./support/run.js";
import { redisMissing, startRedis, type RedisServer } from "./support/redis.js";
import { FleetConnection } from "../src/fleet/connection.js";
import { RedisSharedState } from "../src/fleet/redis-state.js";
import { LineLogger } from "../src/core/log.js";

const missing = redisMissing();
if (missing) console.log(`SKIP fleet-state tests: ${missing}`);

async function until(what: string, cond: () => boolean, timeoutMs = 20_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

const agent = new Agent({ connections: 256 });

/** Sends `perSecond` requests for `ms`, round-robin over the ports; resolves with every status. */
async function load(ports: number[], perSecond: number, ms: number, path: string): Promise<number[]> {
  const pending: Promise<number>[] = [];
  const start = performance.now();
  for (let i = 0; ; i++) {
    const due = start + (i * 1000) / perSecond;
    if (due - start >= ms) break;
    const wait = due - performance.now();
    if (wait > 0) await new Promise((r) => setTimeout(r, wait));
    const port = ports[i % ports.length]!;
    pending.push(
      request(`http://127.0.0.1:${port}${path}`, { dispatcher: agent }).then(
        async (r) => {
          await r.body.dump();
          return r.statusCode;
        },
        () => -1,
      ),
    );
  }
  return Promise.all(pending);
}

function count<T>(xs: T[], x: T): number {
  return xs.filter((y) => y === x).length;
}

describe("a fleet of three sluice processes sharing budgets through Redis", { skip: missing ?? false }, () => {
  let redis: RedisServer;
  let origin: Origin;
  const arrivals = new Map<string, number>();
  /** Requests /adaptive/ got through in the last second: the origin allows 30/s there. */
  let adaptiveWindow: number[] = [];
  let throttled = 0;
  const procs: RunningSluice[] = [];
  const confdir = mkdtempSync(join(tmpdir(), "sluice-fleet-state-"));
  const rules = [
    "--shape", "~u /shape/ => 30/s max-wait=500ms name=shared-30",
    "--shape", "~u /adaptive/ => adaptive start=120/s max-wait=2s",
    "--shape", "~u /fallback/ => 30/s max-wait=10s",
    "--fault", "~u /fault/ => throttle rate=20/s",
  ];
  const sluice = (extra: string[] = []) =>
    spawnSluice(["dump", "-p", "0", "--confdir", confdir, "--mode", `reverse:${origin.url}`, "--set", `shared_state=${redis.url}`, "--set", "fleet=t", "--set", "termlog_verbosity=info", ...rules, ...extra]);

  before(async () => {
    redis = await startRedis();
    origin = await startOrigin({
      handler: (req, res) => {
        const area = (req.url ?? "").split("/")[1] ?? "";
        const r = res as import("node:http").ServerResponse;
        if (area === "adaptive") {
          const now = performance.now();
          adaptiveWindow = adaptiveWindow.filter((t) => now - t < 1000);
          if (adaptiveWindow.length >= 30) {
            throttled++;
            r.writeHead(429, { "content-type": "text/plain" });
            return r.end("slow down");
          }
          adaptiveWindow.push(now);
        }
        arrivals.set(area, (arrivals.get(area) ?? 0) + 1);
        r.writeHead(200, { "content-type": "text/plain" });
        r.end("ok");
      },
    });
    // Three sidecars: started one after another (start is what is slow on this machine).
    for (let i = 0; i < 3; i++) procs.push(await sluice());
    await until("all three joined", () => procs.every((p) => /fleet: sharing state at/.test(p.stderr())));
  });
  after(async () => {
    for (const p of procs) await p.stop();
    await origin?.close();
    await redis?.stop();
    await agent.close();
  });

  test("a shared --shape '~all => 30/s' under 90/s spread over three admits about 30/s in total", async () => {
    const t0 = performance.now();
    const statuses = await load(procs.map((p) => p.port), 90, 3000, "/shape/x");
    const elapsedS = (performance.now() - t0) / 1000;
    const admitted = arrivals.get("shape") ?? 0;
    // From the first request sent to the last answer (a starved test process stretches both ends):
    // at most 30/s over that time (plus 20% and the burst); unshared, three buckets of 30/s would pass all ~270.
    assert.ok(admitted <= 30 * elapsedS * 1.2 + 3, `admitted ${admitted} of ${statuses.length} in ${elapsedS.toFixed(2)} s (at most 30/s)`);
    assert.ok(admitted >= 30 * 3 * 0.5, `admitted ${admitted} of ${statuses.length}: the budget was used`);
    assert.ok(admitted < statuses.length * 0.6, `the excess was refused: ${admitted} of ${statuses.length} admitted`);
    assert.equal(count(statuses, -1), 0, "no request failed");
    assert.equal(count(statuses, 200) + count(statuses, 429), statuses.length, `every answer is 200 or the queue's 429: ${[...new Set(statuses)]}`);
    assert.equal(count(statuses, 200), admitted);
  });

  test("a shared fault budget 'throttle rate=20/s' faults only the excess across the three", async () => {
    const statuses = await load(procs.map((p) => p.port), 90, 2000, "/fault/x");
    const passed = arrivals.get("fault") ?? 0;
    // 20/s for 2 s plus a burst of 20: ~60 pass, ~120 are faulted; unshared would pass all ~180.
    assert.ok(passed >= 30 && passed <= 80, `passed ${passed} of ${statuses.length}`);
    assert.equal(count(statuses, 200), passed);
    assert.equal(statuses.length - passed, statuses.filter((s) => s !== 200 && s !== -1).length, "everything else got the fault");
  });

  test("adaptive learns one rate for the fleet against an origin that throttles above 30/s", async () => {
    await load(procs.map((p) => p.port), 90, 3500, "/adaptive/x");
    assert.ok(throttled > 0, "the origin throttled");
    const keys = redis.cli("--scan", "--pattern", "sluice:{t}:adaptive:*").split("\n").filter(Boolean);
    assert.equal(keys.length, 1, `one adaptive rate for the whole fleet: ${keys.join(", ")}`);
    const rate = Number(redis.cli("HGET", keys[0]!, "rate"));
    const cuts = Number(redis.cli("HGET", keys[0]!, "cuts"));
    const throttles = Number(redis.cli("HGET", keys[0]!, "throttles"));
    assert.ok(cuts >= 1, `the fleet's rate was cut (cuts ${cuts})`);
    assert.ok(throttles >= cuts, `${throttles} throttles seen across the processes`);
    assert.ok(rate < 100, `the fleet learned a rate below its start of 120/s: ${rate}`);
  });

  test("a rule name used by the fleet for another rule is refused at start in one line", async () => {
    const clash = await run(process.execPath, [SLUICE_BIN, "dump", "-p", "0", "--confdir", confdir, "--mode", `reverse:${origin.url}`, "--set", `shared_state=${redis.url}`, "--set", "fleet=t", "--set", "termlog_verbosity=warn", "--shape", "~u /shape/ => 50/s name=shared-30"]);
    assertOneLineError(clash, /name=shared-30 means "~u \/shape\/ => 30\/s max-wait=500ms name=shared-30" in fleet t, but here "~u \/shape\/ => 50\/s name=shared-30"/, "a name clash");
    // Another fleet (namespace) is free to use the name.
    const other = await spawnSluice(["dump", "-p", "0", "--confdir", confdir, "--mode", `reverse:${origin.url}`, "--set", `shared_state=${redis.url}`, "--set", "fleet=u", "--shape", "~u /shape/ => 50/s name=shared-30"]);
    await other.stop();
  });

  test("Redis stopped mid-load: local fallback fails no request; restarted, the fleet shares again", async () => {
    const ports = procs.map((p) => p.port);
    const evalsBefore = redis.cli("INFO", "commandstats");
    assert.match(evalsBefore, /cmdstat_evalsha|cmdstat_eval/);
    // 24/s over three stays within each process's local share (30/s / 3 live): nothing waits long.
    const during = load(ports, 24, 4000, "/fallback/x");
    await new Promise((r) => setTimeout(r, 1000));
    await redis.stop();
    await until("every process to notice", () => procs.every((p) => /fleet: lost the shared state at redis:\/\/127\.0\.0\.1:\d+ .*falls back to this process's share/.test(p.stderr())));
    await new Promise((r) => setTimeout(r, 800));
    await redis.restart();
    await until("every process to reconnect", () => procs.every((p) => /the shared state at redis:\/\/127\.0\.0\.1:\d+ is back after/.test(p.stderr())));
    const statuses = await during;
    assert.deepEqual([...new Set(statuses)], [200], `no request failed or was refused: ${statuses.filter((s) => s !== 200).length} of ${statuses.length}`);
    // Sharing resumed: the restarted (empty) Redis holds the fallback rule's bucket again.
    await load(ports, 24, 500, "/fallback/x");
    const keys = redis.cli("--scan", "--pattern", "sluice:{t}:bucket:shape/~u /fallback/*");
    assert.ok(keys.length > 0, "the bucket is back in Redis");
    assert.equal(redis.cli("ZCARD", "sluice:{t}:live"), "3", "the three processes registered again");
  });
});

describe("fallback closed", { skip: missing ?? false }, () => {
  test("shaped requests wait while Redis is away and go when it is back", async () => {
    const redis = await startRedis();
    const origin = await startOrigin();
    const confdir = mkdtempSync(join(tmpdir(), "sluice-fleet-closed-"));
    const p = await spawnSluice(["dump", "-p", "0", "--confdir", confdir, "--mode", `reverse:${origin.url}`, "--set", `shared_state=${redis.url}`, "--set", "shared_state_fallback=closed", "--set", "termlog_verbosity=info", "--shape", "~all => 100/s"]);
    try {
      await until("joined", () => /sharing state at/.test(p.stderr()));
      await redis.stop();
      await until("loss noticed", () => /lost the shared state.*wait for it \(shared_state_fallback=closed\)/.test(p.stderr()));
      let answered = false;
      const r = request(`http://127.0.0.1:${p.port}/x`).then(async (res) => {
        answered = true;
        await res.body.dump();
        return res.statusCode;
      });
      await new Promise((res) => setTimeout(res, 700));
      assert.equal(answered, false, "the request waits for the shared state");
      await redis.restart();
      assert.equal(await r, 200);
    } finally {
      await p.stop();
      await origin.close();
      await redis.stop();
    }
  });
});

describe("RedisSharedState directly", { skip: missing ?? false }, () => {
  test("three processes' takes at once admit exactly the budget; a reservation says when its turn comes; leases cut round trips", async () => {
    const redis = await startRedis();
    const log = new LineLogger("error");
    const conns = [0, 1, 2].map((i) => new FleetConnection({ url: redis.url, fleet: "d", instance: `p${i}`, fallback: "local" }, log));
    const states = conns.map((c) => new RedisSharedState(c, log));
    try {
      for (const c of conns) assert.equal(await c.whenUp(5000), true);
      // 300 takes at once against a bucket of 10 (rate 1/s): exactly 10 granted, whatever the interleaving.
      const answers = await Promise.all(Array.from({ length: 300 }, (_, i) => states[i % 3]!.take("k", { rate: 1, burst: 10 }, 1, 0)));
      assert.equal(answers.filter((g) => g.granted).length, 10);
      const refused = answers.find((g) => !g.granted)!;
      assert.ok(refused.waitMs > 0 && refused.waitMs <= 1000, `the script says how long: ${refused.waitMs}`);
      // A reservation: granted now, for a turn ~1 s ahead (the next token at 1/s).
      const reserved = await states[0]!.take("k", { rate: 1, burst: 10 }, 1, 0, 5000);
      assert.equal(reserved.granted, true);
      assert.ok(reserved.waitMs > 0 && reserved.waitMs <= 2000, `reserved turn in ${reserved.waitMs} ms`);
      // A queue with many waiting books several turns in one round trip, spaced 1/rate apart.
      // All four go together on one connection, so Redis runs them back to back. The drain and a
      // booking of 20 turns put the bucket ~20 ms into debt first, so the booking under test meets
      // an empty bucket even if the machine is slow (at this rate a token comes every ms).
      const q = { rate: 1000, burst: 1 };
      const [, , batch, after] = await Promise.all([states[2]!.take("q", q, 1, 0), states[2]!.take("q", q, 1, 0, 1000, 20), states[2]!.take("q", q, 1, 0, 1000, 10), states[2]!.take("q", q, 1, 0)]);
      assert.equal(batch.granted, true);
      assert.equal(batch.turns, 10, "ten turns reserved at once");
      assert.equal(after.granted, false, "the booked turns are the fleet's: a take behind them waits");
      assert.ok(after.waitMs >= 8, `it waits for the ten booked turns: ${after.waitMs} ms`);
      // Leases: a busy process at a high rate asks Redis far less than once per request.
      const s = states[1]!;
      const before = s.stats.roundTrips;
      let granted = 0;
      for (let i = 0; i < 2000; i++) {
        const g = await s.take("fast", { rate: 100_000, burst: 100_000 }, 1, 0);
        if (g.granted) granted++;
      }
      assert.equal(granted, 2000);
      const trips = s.stats.roundTrips - before;
      assert.ok(trips < 1000, `round trips for 2,000 takes: ${trips}`);
    } finally {
      for (const st of states) await st.close();
      for (const c of conns) await c.close();
      await redis.stop();
    }
  });
});
