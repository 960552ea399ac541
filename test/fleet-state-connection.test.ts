/** The fleet's Redis connection: options, key prefix, one log line on loss and on recovery. */
import { test, describe, before, after } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { spawnSluice, assertOneLineError } from "./support/cli.js";
import { run } from "./support/run.js";
import { SLUICE_BIN } from "./support/cli.js";
import { redisMissing, startRedis, type RedisServer } from "./support/redis.js";
import { FleetConnection, parseRedisUrl } from "../src/fleet/connection.js";
import { LineLogger } from "../src/core/log.js";

const missing = redisMissing();

async function until(what: string, cond: () => boolean, timeoutMs = 15_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

test("shared_state URLs: redis://, rediss://, a database and a password; anything else is refused in one line", () => {
  assert.deepEqual(parseRedisUrl("redis://127.0.0.1:7000/3"), { tls: false, host: "127.0.0.1", port: 7000, db: 3, display: "redis://127.0.0.1:7000/3" });
  assert.equal(parseRedisUrl("rediss://:s3cret@localhost:7000").display, "rediss://:***@localhost:7000");
  assert.equal(parseRedisUrl("redis://localhost").port, 6379);
  assert.throws(() => parseRedisUrl("http://localhost:6379"), /only redis:\/\/ and rediss:\/\//);
  assert.throws(() => parseRedisUrl("redis://localhost:6379/x"), /database number/);
  assert.throws(() => parseRedisUrl("localhost:6379"), /only redis|not a URL/);
});

describe("the fleet connection", { skip: missing ?? false }, () => {
  let redis: RedisServer;
  before(async () => {
    redis = await startRedis({ password: "pw-1" });
  });
  after(async () => {
    await redis?.stop();
  });

  test("keys carry sluice:{FLEET}:, the password in the URL is used, and loss and recovery are one line each", async () => {
    const lines: string[] = [];
    const log = new LineLogger("info", (l) => lines.push(l));
    const conn = new FleetConnection({ url: redis.url, fleet: "blue", instance: "t1", fallback: "local" }, log);
    try {
      assert.equal(await conn.whenUp(5000), true);
      await conn.redis.set("probe", "1");
      assert.equal(redis.cli("GET", "sluice:{blue}:probe"), "1");
      const downs: string[] = [];
      conn.on("down", () => downs.push("down"));
      await redis.restart();
      await until("recovery", () => conn.up && lines.some((l) => /is back after/.test(l)));
      assert.deepEqual(downs, ["down"]);
      assert.equal(lines.filter((l) => /lost the shared state at redis:\/\/:\*\*\*@127\.0\.0\.1/.test(l)).length, 1, lines.join("\n"));
      assert.ok(!lines.join("\n").includes("pw-1"), "the password is never logged");
      // Commands work again on the restarted (empty) server.
      await conn.redis.set("probe", "2");
      assert.equal(redis.cli("GET", "sluice:{blue}:probe"), "2");
    } finally {
      await conn.close();
    }
  });

  test("sluice dump joins the fleet at start with its name and instance label", async () => {
    const confdir = mkdtempSync(join(tmpdir(), "sluice-fleet-"));
    const s = await spawnSluice(["dump", "-p", "0", "--confdir", confdir, "--set", `shared_state=${redis.url}`, "--set", "fleet=green", "--set", "instance=side-1"]);
    try {
      await until("the join line", () => /fleet: sharing state at redis:\/\/:\*\*\*@127\.0\.0\.1:\d+ as fleet green, instance side-1/.test(s.stderr()));
    } finally {
      await s.stop();
    }
  });
});

test("a bad shared_state or fleet name stops sluice at start with one line", async () => {
  const confdir = mkdtempSync(join(tmpdir(), "sluice-fleet-bad-"));
  const bad = await run(process.execPath, [SLUICE_BIN, "dump", "-p", "0", "--confdir", confdir, "--set", "shared_state=http://127.0.0.1:1"]);
  assertOneLineError(bad, /shared_state="http:\/\/127\.0\.0\.1:1": only redis:\/\/ and rediss:\/\//, "bad scheme");
  const name = await run(process.execPath, [SLUICE_BIN, "dump", "-p", "0", "--confdir", confdir, "--set", "shared_state=redis://127.0.0.1:1", "--set", "fleet=a b"]);
  assertOneLineError(name, /fleet="a b": use 1-64 letters/, "bad fleet name");
});
