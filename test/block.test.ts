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
import { Block } from "../src/addons/block.js";
import { addressScope, isLoopbackHost, type AddressScope } from "../src/core/address-scope.js";
import { needs } from "./support/needs.js";

const CURL = ["-sS", "--max-time", "10", "--noproxy", ""];

describe("a client refused when it connects", { skip: needs("curl", "curl") }, () => {
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
    assert.ok([52, 56].includes(r.code!), `curl should get an empty reply or a reset: ${r.code} ${r.stderr}`);
    assert.equal(origin.requests.length, 0);
  });
});

/** [address, is_loopback, is_private, is_global] as Python's ipaddress answers (3.13; mapped addresses unwrapped as mitmproxy does). */
const PYTHON: [string, boolean, boolean, boolean][] = [
  ["127.0.0.1", true, true, false],
  ["127.255.0.9", true, true, false],
  ["10.1.2.3", false, true, false],
  ["172.16.0.1", false, true, false],
  ["172.32.0.1", false, false, true],
  ["192.168.1.1", false, true, false],
  ["169.254.1.1", false, true, false],
  ["100.64.0.1", false, false, false],
  ["100.127.255.255", false, false, false],
  ["8.8.8.8", false, false, true],
  ["1.1.1.1", false, false, true],
  ["0.0.0.0", false, true, false],
  ["255.255.255.255", false, true, false],
  ["224.0.0.1", false, false, true],
  ["198.18.0.1", false, true, false],
  ["203.0.113.9", false, true, false],
  ["192.0.2.1", false, true, false],
  ["192.0.0.1", false, true, false],
  ["192.0.0.9", false, false, true],
  ["::1", true, true, false],
  ["::", false, true, false],
  ["fe80::1", false, true, false],
  ["fe80::1%eth0", false, true, false],
  ["fd00::1", false, true, false],
  ["fc00::1", false, true, false],
  ["2001:db8::1", false, true, false],
  ["2002::1", false, true, false],
  ["2606:4700:4700::1111", false, false, true],
  ["2a00:1450:4001:80e::200e", false, false, true],
  ["2001:4860:4860::8888", false, false, true],
  ["::ffff:8.8.8.8", false, false, true],
  ["::ffff:10.0.0.1", false, true, false],
  ["::ffff:127.0.0.1", true, true, false],
  ["::ffff:7f00:1", true, true, false],
];

describe("address scope, as Python's ipaddress", () => {
  for (const [address, loopback, isPrivate, isGlobal] of PYTHON) {
    test(address, () => {
      assert.deepEqual(addressScope(address), { loopback, private: isPrivate, global: isGlobal });
    });
  }
  test("what is not an IP address has no scope", () => {
    for (const bad of ["", "localhost", "1.2.3", "1.2.3.4.5", "01.2.3.4", "256.1.1.1", "1::2::3", "12345::", "1:2:3:4:5:6:7:8:9", "::ffff:1.2.3.999"]) {
      assert.equal(addressScope(bad), null, bad);
    }
  });
  test("loopback listeners", () => {
    for (const h of ["127.0.0.1", "127.0.0.2", "::1", "localhost", "[::1]"]) assert.ok(isLoopbackHost(h), h);
    for (const h of ["0.0.0.0", "::", "192.168.1.10", "example.com"]) assert.ok(!isLoopbackHost(h), h);
  });
});

/** Every test client is on loopback, which block_* always lets in: these judge it as another address would be judged. */
/** curl's "empty reply from server" (52) or "failure receiving data" (56: the kernel resets when unread request bytes are discarded). */
const KILLED = [-52, -56];
const AS = (scope: Omit<AddressScope, "loopback">) => () => ({ loopback: false, ...scope });

describe("block_global and block_private on the wire", { skip: needs("curl", "curl") }, () => {
  let origin: Origin;
  before(async () => {
    origin = await startOrigin();
  });
  after(() => origin.close());

  async function attempt(block: Block, set: Record<string, string> = {}): Promise<{ code: number | null; logs: string[] }> {
    const sluice = await startSluice({ addons: [block], set });
    try {
      const r = await run("curl", [...CURL, "-o", "/dev/null", "-w", "%{http_code}", "-x", sluice.url, `${origin.url}/x`]);
      return { code: r.code === 0 ? Number(r.stdout) : -(r.code ?? 1), logs: sluice.logs };
    } finally {
      await sluice.close();
    }
  }

  test("a public client is refused by default: closed without an answer, with a log line", async () => {
    const before = origin.requests.length;
    const r = await attempt(new Block(AS({ private: false, global: true })));
    assert.ok(KILLED.includes(r.code!), `curl: empty reply or reset, got ${r.code}`);
    assert.equal(origin.requests.length, before);
    assert.ok(r.logs.some((l) => /client connection from 127\.0\.0\.1:\d+ killed by block_global/.test(l)), r.logs.join("\n"));
  });

  test("block_global=false serves it", async () => {
    assert.equal((await attempt(new Block(AS({ private: false, global: true })), { block_global: "false" })).code, 200);
  });

  test("a private client is served by default and refused with block_private", async () => {
    assert.equal((await attempt(new Block(AS({ private: true, global: false })))).code, 200);
    const r = await attempt(new Block(AS({ private: true, global: false })), { block_private: "true" });
    assert.ok(KILLED.includes(r.code!), `curl: empty reply or reset, got ${r.code}`);
    assert.ok(r.logs.some((l) => /killed by block_private/.test(l)), r.logs.join("\n"));
  });

  test("loopback is always served, whatever is blocked", async () => {
    assert.equal((await attempt(new Block(), { block_global: "true", block_private: "true" })).code, 200);
  });
});
