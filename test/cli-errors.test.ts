/**
 * Every mistake a user can make on the command line is one line on stderr and a non-zero exit:
 * the real `sluice` executable, spawned per case, never a stack trace, never a quiet exit 0.
 */
import { test, describe, before, after } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { run } from "./support/run.js";
import { SLUICE_BIN, spawnSluice, freePort } from "./support/cli.js";
import { startOrigin, originCaFile, type Origin } from "./support/origins.js";
import { parseMode } from "../src/proxy/mode.js";

describe("--mode without a scheme, as in mitmproxy", () => {
  test("reverse defaults to https and upstream to http; a path or credentials are refused", () => {
    assert.deepEqual(parseMode("reverse:example.com:8443"), { kind: "reverse", spec: "reverse:example.com:8443", scheme: "https", host: "example.com", port: 8443, listenHost: null, listenPort: null });
    assert.deepEqual(parseMode("reverse:example.com"), { kind: "reverse", spec: "reverse:example.com", scheme: "https", host: "example.com", port: 443, listenHost: null, listenPort: null });
    assert.deepEqual(parseMode("upstream:127.0.0.1:3128"), { kind: "upstream", spec: "upstream:127.0.0.1:3128", scheme: "http", host: "127.0.0.1", port: 3128, listenHost: null, listenPort: null });
    assert.deepEqual(parseMode("reverse:http://127.0.0.1:81/"), { kind: "reverse", spec: "reverse:http://127.0.0.1:81/", scheme: "http", host: "127.0.0.1", port: 81, listenHost: null, listenPort: null }, "a trailing slash is allowed, as in mitmproxy");
    assert.throws(() => parseMode("reverse:https://example.com/api"), /has a path; give only scheme:\/\/host\[:port\]/);
    assert.throws(() => parseMode("upstream:http://u:p@127.0.0.1:3128"), /upstream_auth=USER:PASS/);
  });

  let origin: Origin;
  before(async () => {
    origin = await startOrigin({ tls: true });
  });
  after(() => origin.close());

  test("sluice dump --mode reverse:127.0.0.1:PORT speaks https to the server and says so", async () => {
    const confdir = mkdtempSync(join(tmpdir(), "sluice-mode-"));
    const proc = await spawnSluice(["dump", "-p", "0", "--confdir", confdir, "--mode", `reverse:127.0.0.1:${origin.port}`, "--set", `ssl_verify_upstream_trusted_ca=${originCaFile()}`]);
    try {
      assert.match(proc.stderr(), new RegExp(`reverse:127\\.0\\.0\\.1:${origin.port} \\(reverse to https://127\\.0\\.0\\.1:${origin.port}\\) proxy listening`));
      const r = await run("curl", ["-sS", "--max-time", "30", "--noproxy", "*", "-o", "/dev/null", "-w", "%{http_code}", `http://127.0.0.1:${proc.port}/hello`]);
      assert.equal(r.stdout, "200", r.stderr + proc.stderr());
      assert.equal(origin.requests.at(-1)?.url, "/hello");
    } finally {
      await proc.stop();
    }
  });
});

describe("upstream mode with an unreachable upstream proxy", () => {
  test("the 502 body and the dump line name the upstream proxy, not the origin", async () => {
    const confdir = mkdtempSync(join(tmpdir(), "sluice-upstream-"));
    const deadProxy = await freePort();
    const origin = await freePort(); // never contacted: the upstream proxy is the one that is down
    const proc = await spawnSluice(["dump", "-p", "0", "--confdir", confdir, "--mode", `upstream:http://127.0.0.1:${deadProxy}`]);
    try {
      const expected = new RegExp(`could not connect to the upstream proxy 127\\.0\\.0\\.1:${deadProxy}: connection refused .*; the request was for 127\\.0\\.0\\.1:${origin}`);
      const plain = await run("curl", ["-sS", "--max-time", "30", "--noproxy", "", "-x", `http://127.0.0.1:${proc.port}`, "-w", "\n%{http_code}", `http://127.0.0.1:${origin}/x`]);
      assert.match(plain.stdout, /\n502$/);
      assert.match(plain.stdout, expected);
      const tunnelled = await run("curl", ["-sS", "--max-time", "30", "--noproxy", "", "--cacert", join(confdir, "sluice-ca-cert.pem"), "-x", `http://127.0.0.1:${proc.port}`, "-w", "\n%{http_code}", `https://127.0.0.1:${origin}/y`]);
      assert.match(tunnelled.stdout, /\n502$/);
      assert.match(tunnelled.stdout, expected);
      for (let i = 0; i < 100 && proc.stdout().split("\n").filter(Boolean).length < 2; i++) await new Promise((r) => setTimeout(r, 50));
      const lines = proc.stdout().trim().split("\n");
      assert.equal(lines.length, 2, proc.stdout());
      for (const line of lines) assert.match(line, expected);
    } finally {
      await proc.stop();
    }
  });
});
