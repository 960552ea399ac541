/**
 * One chaos switch for a fleet, and who is in it: three real sluice processes sharing a real
 * redis-server. A fault rule added through one process's admin API throttles requests sent
 * through the others; disabling it (a command on another) and removing it (another's admin API)
 * reach every process; a process started afterwards gets the rules; a start-up rule whose id the
 * fleet uses for another rule is refused in one line; `sluice fleet status` lists the live
 * processes (table and JSON) from their heartbeats and drops a stopped one.
 */
import { test, describe, before, after } from "node:test";
import assert from "node:assert/strict";
import http from "node:http";
import { SLUICE_BIN, spawnSluice, assertOneLineError, type RunningSluice } from "./support/cli.js";
import { run } from "./support/run.js";
import { testConfdir } from "./support/sluice.js";
import { startOrigin, type Origin } from "./support/origins.js";
import { redisMissing, startRedis, type RedisServer } from "./support/redis.js";
import type { InstanceRecord } from "../src/fleet/heartbeat.js";

const missing = redisMissing();
const TOKEN = "fleet-ops-test-token-0123456789";
const FLEET = "opstest";

async function until<T>(what: string, probe: () => Promise<T | null | undefined | false>, timeoutMs = 15_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const got = await probe();
    if (got) return got;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

function request(opts: http.RequestOptions, body?: string): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = http.request(opts, (res) => {
      let text = "";
      res.on("data", (c: Buffer) => (text += c.toString()));
      res.on("end", () => resolve({ status: res.statusCode ?? 0, body: text }));
    });
    req.on("error", reject);
    req.end(body);
  });
}

interface Member {
  name: string;
  proc: RunningSluice;
  adminPort: number;
}

/** A GET of the origin's `path` through a member, as an HTTP proxy client sends it. */
function through(m: Member, origin: Origin, path: string): Promise<number> {
  return request({ host: "127.0.0.1", port: m.proc.port, path: `${origin.url}${path}`, headers: { host: new URL(origin.url).host } }).then((r) => r.status);
}

function admin(m: Member, method: string, path: string, body?: unknown): Promise<{ status: number; json: Record<string, unknown> }> {
  const text = body === undefined ? undefined : JSON.stringify(body);
  return request({ host: "127.0.0.1", port: m.adminPort, method, path, headers: { authorization: `Bearer ${TOKEN}`, "content-type": "application/json" } }, text).then((r) => ({ status: r.status, json: JSON.parse(r.body) as Record<string, unknown> }));
}

describe("a fleet of three sluice processes sharing fault rules through Redis", { skip: missing ?? false }, () => {
  let redis: RedisServer;
  let origin: Origin;
  const members: Member[] = [];

  async function startMember(name: string, extra: string[] = []): Promise<Member> {
    const proc = await spawnSluice(["dump", "-p", "0", "--confdir", testConfdir(), "--set", `shared_state=${redis.url}`, "--set", `fleet=${FLEET}`, "--set", `instance=${name}`, "--set", "admin_port=0", "--set", `admin_token=${TOKEN}`, ...extra]);
    const adminPort = await until(`${name}'s admin API`, async () => Number(/admin API at http:\/\/127\.0\.0\.1:(\d+)/.exec(proc.stderr() + proc.stdout())?.[1] ?? 0));
    const m = { name, proc, adminPort };
    members.push(m);
    return m;
  }

  const sluiceCli = (args: string[]) => run(process.execPath, [SLUICE_BIN, ...args], { timeoutMs: 30_000 });
  const status = async (): Promise<InstanceRecord[]> => {
    const r = await sluiceCli(["fleet", "status", "--set", `shared_state=${redis.url}`, "--set", `fleet=${FLEET}`, "--json"]);
    assert.equal(r.code, 0, r.stderr);
    return (JSON.parse(r.stdout) as { instances: InstanceRecord[] }).instances;
  };

  before(async () => {
    redis = await startRedis();
    origin = await startOrigin();
    for (const name of ["s1", "s2", "s3"]) await startMember(name, name === "s1" ? ["--fault", "~u /boot => status 418"] : []);
  });
  after(async () => {
    for (const m of members) await m.proc.stop();
    await origin?.close();
    await redis?.stop();
  });

  test("a start-up rule of one process reaches the others", async () => {
    const [s1, s2, s3] = members as [Member, Member, Member];
    for (const m of [s1, s2, s3]) assert.equal(await until(`${m.name} applying the start-up rule`, async () => (await through(m, origin, "/boot")) === 418 && 418), 418);
  });

  test("a rule added through s1's admin API throttles requests through s2 and s3 within a second", async (t) => {
    const [s1, s2, s3] = members as [Member, Member, Member];
    for (const m of [s1, s2, s3]) assert.equal(await through(m, origin, "/chaos"), 200);
    const added = await admin(s1, "POST", "/faults", { rule: "~u /chaos => throttle id=chaos" });
    assert.equal(added.status, 201, JSON.stringify(added.json));
    const t0 = performance.now();
    const took: number[] = [];
    for (const m of [s2, s3]) {
      await until(`${m.name} throttling`, async () => (await through(m, origin, "/chaos")) === 429);
      took.push(performance.now() - t0);
    }
    // The target is well under a second; the bound is loose for a loaded machine.
    t.diagnostic(`added on s1, throttling on s2 and s3 after ${took.map((x) => x.toFixed(0)).join(" and ")} ms`);
    assert.ok(Math.max(...took) < 3000, `propagation took ${took.map((t) => t.toFixed(0)).join(", ")} ms`);
    const listed = await admin(s3, "GET", "/faults/chaos");
    assert.equal((listed.json.fault as { source: string }).source, "fleet");
    // Loop-free: the change was applied once per process, not echoed back and forth.
    await new Promise((r) => setTimeout(r, 300));
    assert.equal(redis.cli("GET", `sluice:{${FLEET}}:faults:seq`), "2", "one change for the start-up rule, one for the added one");
  });

  test("disabled by a command on s2, enabled again, then removed through s3's admin API: every process follows", async () => {
    const [s1, s2, s3] = members as [Member, Member, Member];
    const cmd = await admin(s2, "POST", "/commands", { command: "fault.disable chaos" });
    assert.equal(cmd.status, 200, JSON.stringify(cmd.json));
    for (const m of [s1, s3]) await until(`${m.name} disabling`, async () => (await through(m, origin, "/chaos")) === 200);
    await admin(s1, "POST", "/faults/chaos/enable");
    for (const m of [s2, s3]) await until(`${m.name} enabling`, async () => (await through(m, origin, "/chaos")) === 429);
    const removed = await admin(s3, "DELETE", "/faults/chaos");
    assert.equal(removed.status, 200, JSON.stringify(removed.json));
    for (const m of [s1, s2]) {
      await until(`${m.name} removing`, async () => (await through(m, origin, "/chaos")) === 200);
      assert.equal((await admin(m, "GET", "/faults/chaos")).status, 404);
    }
  });

  test("a process started afterwards gets the current rules, not the removed one", async () => {
    const [s1] = members as [Member];
    assert.equal((await admin(s1, "POST", "/faults", { rule: "~u /late => error 503 id=late" })).status, 201);
    const s4 = await startMember("s4", ["--set", "metrics_port=0"]);
    assert.equal(await through(s4, origin, "/late"), 503);
    // In a fleet, the metrics carry the instance label.
    const metricsPort = Number(/Prometheus metrics at http:\/\/127\.0\.0\.1:(\d+)\/metrics/.exec(s4.proc.stderr() + s4.proc.stdout())?.[1]);
    const page = (await request({ host: "127.0.0.1", port: metricsPort, path: "/metrics" })).body;
    assert.match(page, /^sluice_faults_injected_total\{rule="late",action="error",instance="s4"\} 1$/m);
    assert.equal(await through(s4, origin, "/boot"), 418);
    assert.equal(await through(s4, origin, "/chaos"), 200);
    const ids = ((await admin(s4, "GET", "/faults")).json.faults as { id: string }[]).map((f) => f.id).sort();
    assert.deepEqual(ids, ["1", "late"]);
  });

  test("a start-up rule under an id the fleet uses for another rule is refused in one line", async () => {
    const r = await sluiceCli(["dump", "-p", "0", "--confdir", testConfdir(), "--set", `shared_state=${redis.url}`, "--set", `fleet=${FLEET}`, "--fault", "~u /other => throttle id=late"]);
    assert.notEqual(r.code, 0);
    // The line before it is the fleet connection's own "sharing state at …" log line.
    const lines = r.stderr.trim().split("\n");
    assert.match(lines.at(-1)!, /^sluice: fault rule late \(~u \/other => throttle id=late\) clashes with the fleet's rule late \(~u \/late => error 503 id=late, from s1\): give it its own id=NAME/);
    assert.doesNotMatch(r.stderr, /\n\s+at /, "no stack trace");
    assert.ok(lines.length <= 2, r.stderr);
  });

  test("sluice fleet status lists the live processes with address, mode, req/s, queue and rules; a stopped one drops out", async () => {
    // A record is rewritten every 1.5 s: wait until each carries the rules the earlier tests left
    // (one written just before the last rule reached its process still lists the ones before).
    const live = await until("four heartbeats listing both rules", async () => {
      const l = await status();
      return l.length === 4 && l.every((i) => i.faults.map((f) => f.id).sort().join() === "1,late") && l;
    });
    assert.deepEqual(live.map((i) => i.instance), ["s1", "s2", "s3", "s4"]);
    for (const i of live) {
      const m = members.find((x) => x.name === i.instance)!;
      assert.equal(i.address, `127.0.0.1:${m.proc.port}`);
      assert.equal(i.mode, "regular");
      assert.equal(i.pid, m.proc.child.pid);
      assert.equal(typeof i.requestsPerSecond, "number");
      assert.equal(i.queueDepth, 0);
      assert.deepEqual(i.faults.map((f) => f.id).sort(), ["1", "late"]);
    }
    const ttl = Number(redis.cli("PTTL", `sluice:{${FLEET}}:instances:s1`));
    assert.ok(ttl > 0 && ttl <= 5000, `the heartbeat key expires (PTTL ${ttl})`);
    const table = await sluiceCli(["fleet", "status", "--set", `shared_state=${redis.url}`, "--set", `fleet=${FLEET}`]);
    assert.equal(table.code, 0, table.stderr);
    assert.match(table.stdout, new RegExp(`^fleet ${FLEET} at redis://127\\.0\\.0\\.1:\\d+: 4 live processes\\ninstance\\s+address\\s+mode\\s+req/s\\s+queued\\s+faults\\s+shapes\\s+seen\\n`));
    assert.match(table.stdout, /^s1\s+127\.0\.0\.1:\d+\s+regular\s+\d+\.\d\s+0\s+1: ~u \/boot => status 418; late: ~u \/late => error 503 id=late\s+-\s+\d+\.\ds ago$/m);
    const s4 = members.pop()!;
    await s4.proc.stop();
    await until("s4 dropping out", async () => (await status()).length === 3);
  });

  test("a second process under a label already in use is told so, in one warning", async () => {
    const twin = await startMember("s2");
    try {
      await until("the duplicate warning", async () => /fleet: another sluice \(.* pid \d+, 127\.0\.0\.1:\d+\) uses the instance label s2 in this fleet; give each process its own with --set instance=NAME/.test(twin.proc.stderr() + twin.proc.stdout() + members[1]!.proc.stderr() + members[1]!.proc.stdout()));
    } finally {
      members.splice(members.indexOf(twin), 1);
      await twin.proc.stop();
    }
  });

  test("Redis restarted empty: the processes offer their rules again and go on sharing changes", async () => {
    const [s1, s2, s3] = members as [Member, Member, Member];
    await redis.restart();
    await until("the rules offered again", async () => redis.cli("HEXISTS", `sluice:{${FLEET}}:faults`, "late") === "1" && redis.cli("HEXISTS", `sluice:{${FLEET}}:faults`, "1") === "1");
    await until("every process subscribed again", async () => Number(redis.cli("PUBSUB", "NUMSUB", `sluice:{${FLEET}}:faults:changes`).split("\n")[1]) >= 3);
    assert.equal((await admin(s2, "POST", "/faults", { rule: "~u /after => error 500 id=after" })).status, 201);
    for (const m of [s1, s3]) await until(`${m.name} applying a change after the restart`, async () => (await through(m, origin, "/after")) === 500);
    assert.equal(await through(s3, origin, "/late"), 503);
  });

  test("fleet status without shared_state, or with Redis unreachable, fails in one line", async () => {
    assertOneLineError(await sluiceCli(["fleet", "status"]), /needs the fleet's Redis: --set shared_state=redis:\/\/HOST:PORT/, "no shared_state");
    assertOneLineError(await sluiceCli(["fleet", "status", "--set", "shared_state=redis://127.0.0.1:1"]), /cannot reach the shared state at redis:\/\/127\.0\.0\.1:1/, "unreachable");
  });
});
