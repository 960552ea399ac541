/**
 * --proxyauth (issue 15), as mitmproxy's: 407 + Proxy-Authenticate in regular and upstream mode
 * (plain requests and CONNECT; a tunnel opened with good credentials stays authenticated), 401 +
 * WWW-Authenticate in reverse mode; the credentials never reach the origin. Real clients: curl
 * (-U / --proxy-user, -u), undici's ProxyAgent. htpasswd files written by Apache's own htpasswd.
 */
import { test, describe, before, after } from "node:test";
import assert from "node:assert/strict";
import net from "node:net";
import { startOrigin, type Origin } from "./support/origins.js";
import { startSluice, type TestSluice } from "./support/sluice.js";
import { curlVia, header } from "./support/mitmdump.js";
import { Response } from "../src/core/flow.js";
import type { Addon } from "../src/core/addons.js";
import { readFileSync } from "node:fs";
import { ProxyAgent, request as undiciRequest } from "undici";
import { ProxyAuth } from "../src/addons/proxy-auth.js";
import { UpstreamAuth } from "../src/addons/upstream-auth.js";
import { ClientReplay } from "../src/addons/client-replay.js";
import { run } from "./support/run.js";
import { context } from "./support/taddons.js";
import { SLUICE_BIN, assertOneLineError, spawnSluice } from "./support/cli.js";
import { tflow } from "./support/tflow.js";
import { md5Crypt } from "../src/addons/htpasswd.js";
import { Block } from "../src/addons/block.js";
import { createHash } from "node:crypto";
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { needs } from "./support/needs.js";

/** Writes `request` on a fresh connection and reads until the proxy closes it. */
function rawExchange(port: number, request: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const s = net.connect(port, "127.0.0.1", () => s.write(request));
    const chunks: Buffer[] = [];
    const timer = setTimeout(() => {
      s.destroy();
      reject(new Error(`no close within 10 s; got ${JSON.stringify(Buffer.concat(chunks).toString("latin1"))}`));
    }, 10_000);
    s.on("data", (c: Buffer) => chunks.push(c));
    s.on("error", reject);
    s.on("close", () => {
      clearTimeout(timer);
      resolve(Buffer.concat(chunks).toString("latin1"));
    });
  });
}

describe("a CONNECT answered by an addon", () => {
  let sluice: TestSluice;
  before(async () => {
    const answer: Addon = {
      name: "answers-connect",
      httpConnect(flow) {
        flow.response = Response.make(403, "not this tunnel\n", { "content-type": "text/plain", "x-why": "policy" });
      },
    };
    sluice = await startSluice({ addons: [answer] });
  });
  after(() => sluice.close());

  test("gets the whole response: status, headers and body", { skip: needs("curl", "curl") }, async () => {
    const r = await curlVia(sluice.port, "https://example.test/", ["-v"]);
    assert.match(r.stderr, /CONNECT tunnel failed, response 403|Received HTTP code 403 from proxy after CONNECT/);
    // curl -v prints the proxy's response head on stderr.
    assert.match(r.stderr, /< x-why: policy/i);
    assert.match(r.stderr, /< content-length: 16/i);
  });

  test("the body follows the head, and the connection closes", async () => {
    const text = await rawExchange(sluice.port, "CONNECT example.test:443 HTTP/1.1\r\nHost: example.test:443\r\n\r\n");
    assert.match(text, /^HTTP\/1\.1 403 Forbidden\r\n/);
    assert.match(text, /\r\nconnection: close\r\n/i);
    assert.ok(text.endsWith("\r\n\r\nnot this tunnel\n"), JSON.stringify(text));
  });
});

const USER = "alice";
/** A colon in the password: RFC 7617 allows it, curl sends it, and it must match whole. */
const PASSWORD = "wonder:land";
const GOOD = `${USER}:${PASSWORD}`;

function basic(userPass: string): string {
  return `Basic ${Buffer.from(userPass).toString("base64")}`;
}

/** The origin saw no proxy credentials (and no client credentials meant for sluice). */
function assertNoCredentialsReached(origin: Origin, from: number, header = "proxy-authorization"): void {
  const seen = origin.requests.slice(from);
  assert.ok(seen.length > 0, "the origin was reached");
  for (const r of seen) assert.equal(r.headers[header], undefined, `${header} leaked to the origin: ${r.headers[header]}`);
}

describe("--proxyauth user:pass in regular mode", () => {
  let sluice: TestSluice;
  let origin: Origin;
  let tlsOrigin: Origin;
  before(async () => {
    origin = await startOrigin();
    tlsOrigin = await startOrigin({ tls: true });
    sluice = await startSluice({ addons: [new ProxyAuth()], set: { proxyauth: GOOD } });
  });
  after(() => Promise.all([sluice.close(), origin.close(), tlsOrigin.close()]));

  test("no credentials: 407 with Proxy-Authenticate, nothing forwarded", { skip: needs("curl", "curl") }, async () => {
    const before = origin.requests.length;
    const r = await curlVia(sluice.port, `${origin.url}/a`);
    assert.equal(r.status, 407);
    assert.deepEqual(header(r, "proxy-authenticate"), ['Basic realm="sluice"']);
    assert.match(r.body, /407 Proxy Authentication Required/);
    assert.equal(origin.requests.length, before);
  });

  test("wrong password, wrong user, a password's prefix: 407, nothing forwarded", { skip: needs("curl", "curl") }, async () => {
    const before = origin.requests.length;
    for (const creds of [`${USER}:wrong`, `bob:${PASSWORD}`, `${USER}:wonder`, `${USER}:`]) {
      const r = await curlVia(sluice.port, `${origin.url}/a`, ["-U", creds]);
      assert.equal(r.status, 407, creds);
    }
    assert.equal(origin.requests.length, before);
  });

  test("right credentials (curl -U): the origin answers and never sees Proxy-Authorization", { skip: needs("curl", "curl") }, async () => {
    const before = origin.requests.length;
    const r = await curlVia(sluice.port, `${origin.url}/b`, ["--proxy-user", GOOD]);
    assert.equal(r.status, 200);
    assertNoCredentialsReached(origin, before);
    const flow = (await sluice.waitForFlows(1)).find((f) => f.request.path === "/b")!;
    assert.deepEqual(flow.metadata.proxyauth, [USER, ""]);
    assert.equal(flow.request.headers.get("proxy-authorization"), undefined, "the credentials are not kept on the flow");
  });

  test("HTTPS through CONNECT: refused without or with wrong credentials, tunnel served with right ones", { skip: needs("curl", "curl") }, async () => {
    const ca = ["--cacert", sluice.caCert];
    const before = tlsOrigin.requests.length;
    const none = await curlVia(sluice.port, `${tlsOrigin.url}/t`, [...ca, "-v"]);
    assert.equal(none.code, 56, none.stderr);
    assert.match(none.stderr, /407/);
    assert.match(none.stderr, /< Proxy-Authenticate: Basic realm="sluice"/i);
    const wrong = await curlVia(sluice.port, `${tlsOrigin.url}/t`, [...ca, "-U", `${USER}:nope`]);
    assert.equal(wrong.code, 56);
    assert.equal(tlsOrigin.requests.length, before);
    // curl sends credentials on the CONNECT only, never inside the tunnel: the connection is what is authenticated.
    const ok = await curlVia(sluice.port, `${tlsOrigin.url}/t1`, [...ca, "-U", GOOD, "--next", "-x", sluice.url, ...ca, "-U", GOOD, `${tlsOrigin.url}/t2`]);
    assert.equal(ok.status, 200, ok.stderr);
    assert.equal(tlsOrigin.requests.length, before + 2);
    assertNoCredentialsReached(tlsOrigin, before);
  });

  test("HTTP/2 inside an authenticated tunnel is served", { skip: needs("curl", "curl") }, async () => {
    const before = tlsOrigin.requests.length;
    const r = await curlVia(sluice.port, `${tlsOrigin.url}/h2`, ["--cacert", sluice.caCert, "-U", GOOD, "--http2"]);
    assert.equal(r.status, 200, r.stderr);
    const flow = (await sluice.waitForFlows(1)).find((f) => f.request.path === "/h2");
    assert.equal(flow?.request.httpVersion, "HTTP/2.0");
    assertNoCredentialsReached(tlsOrigin, before);
  });

  test("a WebSocket upgrade in absolute form without credentials gets the whole 407", async () => {
    const key = "dGhlIHNhbXBsZSBub25jZQ==";
    const text = await rawExchange(sluice.port, `GET http://127.0.0.1:${origin.port}/ws HTTP/1.1\r\nHost: 127.0.0.1:${origin.port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: ${key}\r\nSec-WebSocket-Version: 13\r\n\r\n`);
    assert.match(text, /^HTTP\/1\.1 407 Proxy Authentication Required\r\n/);
    assert.match(text, /\r\nProxy-Authenticate: Basic realm="sluice"\r\n/i);
  });

  test("undici's ProxyAgent with a token: served; without one: the CONNECT is refused with 407", async () => {
    const before = tlsOrigin.requests.length;
    const requestTls = { ca: [readFileSync(sluice.caCert, "utf8")] };
    const withToken = new ProxyAgent({ uri: sluice.url, token: basic(GOOD), requestTls });
    const without = new ProxyAgent({ uri: sluice.url, requestTls });
    try {
      const r = await undiciRequest(`${tlsOrigin.url}/u`, { dispatcher: withToken });
      assert.equal(r.statusCode, 200);
      await r.body.text();
      assertNoCredentialsReached(tlsOrigin, before);
      await assert.rejects(undiciRequest(`${tlsOrigin.url}/u`, { dispatcher: without }), /407/);
      assert.equal(tlsOrigin.requests.length, before + 1);
    } finally {
      await Promise.all([withToken.close(), without.close()]);
    }
  });

  test("credentials that are not Basic are refused", { skip: needs("curl", "curl") }, async () => {
    const before = origin.requests.length;
    for (const value of ["Bearer abc", "Basic", `Digest ${Buffer.from(GOOD).toString("base64")}`, `Basic ${Buffer.from(USER).toString("base64")}`]) {
      const r = await curlVia(sluice.port, `${origin.url}/n`, ["--proxy-header", `Proxy-Authorization: ${value}`]);
      assert.equal(r.status, 407, value);
    }
    assert.equal(origin.requests.length, before);
  });
});

describe("--proxyauth and sluice's own client replay", { skip: needs("curl", "curl") }, () => {
  test("replays of authenticated flows go through (plain and through CONNECT); a client forging the replay marker does not", async () => {
    const origin = await startOrigin();
    const tlsOrigin = await startOrigin({ tls: true });
    // ProxyAuth before ClientReplay, as in every front end.
    const sluice = await startSluice({ addons: [new ProxyAuth(), new ClientReplay()], set: { proxyauth: GOOD } });
    try {
      assert.equal((await curlVia(sluice.port, `${origin.url}/p`, ["-U", GOOD])).status, 200);
      assert.equal((await curlVia(sluice.port, `${tlsOrigin.url}/s`, ["-U", GOOD, "--cacert", sluice.caCert])).status, 200);
      await sluice.waitForFlows(2);
      assert.equal(await sluice.master.commands.execute("replay.client @all"), "replaying 2 flows");
      const flows = await sluice.waitForFlows(4);
      const replays = flows.filter((f) => f.isReplay === "request");
      assert.equal(replays.length, 2);
      for (const f of replays) assert.equal(f.response?.statusCode, 200, f.request.prettyUrl);
      assert.equal(origin.requests.length + tlsOrigin.requests.length, 4);
      for (const r of [...origin.requests, ...tlsOrigin.requests]) assert.equal(r.headers["x-sluice-client-replay"], undefined, "the marker is not forwarded");
      const forged = await curlVia(sluice.port, `${origin.url}/p`, ["-H", "x-sluice-client-replay: 1"]);
      assert.equal(forged.status, 407);
    } finally {
      await Promise.all([sluice.close(), origin.close(), tlsOrigin.close()]);
    }
  });
});

describe("--proxyauth in reverse mode", { skip: needs("curl", "curl") }, () => {
  let sluice: TestSluice;
  let origin: Origin;
  before(async () => {
    origin = await startOrigin();
    sluice = await startSluice({ addons: [new ProxyAuth()], set: { proxyauth: GOOD, mode: `reverse:${origin.url}` } });
  });
  after(() => Promise.all([sluice.close(), origin.close()]));

  test("401 with WWW-Authenticate without or with wrong credentials; curl -u is served and Authorization is not forwarded", async () => {
    const before = origin.requests.length;
    const none = await run("curl", ["-sS", "-i", "--max-time", "10", `${sluice.url}/r`]);
    assert.match(none.stdout, /^HTTP\/1\.1 401 Unauthorized/);
    assert.match(none.stdout, /\r\nWWW-Authenticate: Basic realm="sluice"\r\n/i);
    const wrong = await run("curl", ["-sS", "-o", "/dev/null", "-w", "%{http_code}", "--max-time", "10", "-u", `${USER}:x`, `${sluice.url}/r`]);
    assert.equal(wrong.stdout, "401");
    assert.equal(origin.requests.length, before);
    const ok = await run("curl", ["-sS", "-o", "/dev/null", "-w", "%{http_code}", "--max-time", "10", "-u", GOOD, `${sluice.url}/r`]);
    assert.equal(ok.stdout, "200");
    assertNoCredentialsReached(origin, before, "authorization");
  });
});

describe("--proxyauth in socks5 mode", { skip: needs("curl", "curl") }, () => {
  let sluice: TestSluice;
  let origin: Origin;
  before(async () => {
    origin = await startOrigin();
    sluice = await startSluice({ addons: [new ProxyAuth()], set: { proxyauth: GOOD, mode: "socks5" } });
  });
  after(() => Promise.all([sluice.close(), origin.close()]));

  test("curl --socks5-hostname with the right user and password is served; a wrong one is refused in the handshake", async () => {
    const socks = ["-sS", "-o", "/dev/null", "-w", "%{http_code}", "--max-time", "10", "--socks5-hostname", `127.0.0.1:${sluice.port}`];
    const before = origin.requests.length;
    const wrong = await run("curl", [...socks, "--proxy-user", `${USER}:nope`, `${origin.url}/s`]);
    assert.notEqual(wrong.code, 0, "refused");
    assert.equal(origin.requests.length, before);
    const ok = await run("curl", [...socks, "--proxy-user", GOOD, `${origin.url}/s`]);
    assert.equal(ok.stdout, "200", ok.stderr);
    assert.equal(origin.requests.length, before + 1);
  });
});

describe("--proxyauth in upstream mode, chained to a proxy that wants its own credentials", { skip: needs("curl", "curl") }, () => {
  let front: TestSluice;
  let upstream: TestSluice;
  let origin: Origin;
  before(async () => {
    origin = await startOrigin();
    upstream = await startSluice({ addons: [new ProxyAuth()], set: { proxyauth: "bob:builder" } });
    front = await startSluice({ addons: [new ProxyAuth(), new UpstreamAuth()], set: { proxyauth: GOOD, mode: `upstream:${upstream.url}`, upstream_auth: "bob:builder" } });
  });
  after(() => Promise.all([front.close(), upstream.close(), origin.close()]));

  test("the client's credentials are checked by the first proxy and replaced by upstream_auth for the second; the origin sees neither", async () => {
    const before = origin.requests.length;
    assert.equal((await curlVia(front.port, `${origin.url}/up`)).status, 407);
    assert.equal((await curlVia(front.port, `${origin.url}/up`, ["-U", "bob:builder"])).status, 407, "the upstream's credentials are not the front's");
    assert.equal(origin.requests.length, before);
    const ok = await curlVia(front.port, `${origin.url}/up`, ["-U", GOOD]);
    assert.equal(ok.status, 200, ok.body);
    assertNoCredentialsReached(origin, before);
  });
});

describe("--proxyauth @htpasswd", { skip: needs("openssl", "openssl") ?? needs("htpasswd", "apache2-utils") }, () => {
  let dir: string;
  let file: string;
  let sluice: TestSluice;
  let origin: Origin;
  /** user → password, each hashed by Apache's htpasswd (or openssl for MD5-crypt's $1$). */
  const users: Record<string, string> = { carol: "bcrypt pass", dave: "apr1-pass", erin: "sha pass", frank: "md5 crypt" };
  before(async () => {
    dir = mkdtempSync(join(tmpdir(), "sluice-htpasswd-"));
    file = join(dir, "users");
    const lines = [
      "# made by htpasswd -B, -m, -s and openssl passwd -1",
      (await must("htpasswd", ["-nbB", "carol", users.carol!])).trim(),
      (await must("htpasswd", ["-nbm", "dave", users.dave!])).trim(),
      (await must("htpasswd", ["-nbs", "erin", users.erin!])).trim(),
      `frank:${(await must("openssl", ["passwd", "-1", "-salt", "Fr4nk", users.frank!])).trim()}`,
    ];
    assert.match(lines[1]!, /^carol:\$2y\$/);
    assert.match(lines[2]!, /^dave:\$apr1\$/);
    assert.match(lines[3]!, /^erin:\{SHA\}/);
    writeFileSync(file, lines.join("\n") + "\n");
    origin = await startOrigin();
    sluice = await startSluice({ addons: [new ProxyAuth()], set: { proxyauth: `@${file}` } });
  });
  after(() => Promise.all([sluice.close(), origin.close()]));

  test("each user with their password is served; a wrong password, another's password or an unknown user is not", { skip: needs("curl", "curl") }, async () => {
    for (const [user, password] of Object.entries(users)) {
      const before = origin.requests.length;
      const ok = await curlVia(sluice.port, `${origin.url}/h`, ["-U", `${user}:${password}`]);
      assert.equal(ok.status, 200, `${user}: ${ok.body}`);
      assertNoCredentialsReached(origin, before);
      assert.equal((await curlVia(sluice.port, `${origin.url}/h`, ["-U", `${user}:${password}x`])).status, 407, `${user} wrong`);
    }
    assert.equal((await curlVia(sluice.port, `${origin.url}/h`, ["-U", `carol:${users.dave}`])).status, 407);
    assert.equal((await curlVia(sluice.port, `${origin.url}/h`, ["-U", `mallory:${users.carol}`])).status, 407);
  });

  test("MD5-crypt is computed as openssl computes it", async () => {
    for (const [password, salt] of [["", "abc"], ["x", "12345678"], ["a much longer password than sixteen bytes", "Zz./"], ["päss wörd", "s"]] as const) {
      for (const magic of ["$apr1$", "$1$"] as const) {
        const expected = (await must("openssl", ["passwd", magic === "$1$" ? "-1" : "-apr1", "-salt", salt, password])).trim();
        assert.equal(md5Crypt(password, salt, magic), expected, `${magic} ${JSON.stringify(password)}`);
      }
    }
  });

  test("a hash sluice cannot check, a missing file or an empty one is refused in one line", async () => {
    const tctx = await context(new ProxyAuth());
    const bad = join(dir, "bad");
    writeFileSync(bad, `ok:{SHA}${createHash("sha1").update("x").digest("base64")}\nzed:$6$salt$abcdefghijklmnop\n`);
    await assert.rejects(tctx.configure({ proxyauth: `@${bad}` }), /line 2: user "zed" has a password hash sluice cannot check \(SHA-512 crypt, htpasswd -2\).*htpasswd -B/);
    writeFileSync(bad, "plain:secret\n");
    await assert.rejects(tctx.configure({ proxyauth: `@${bad}` }), /line 1: user "plain" .*plain text/);
    await assert.rejects(tctx.configure({ proxyauth: `@${join(dir, "missing")}` }), /cannot read htpasswd file .*missing: no such file/);
    writeFileSync(bad, "# nobody\n");
    await assert.rejects(tctx.configure({ proxyauth: `@${bad}` }), /has no users/);
  });
});

describe("proxyauth specs", () => {
  test("mitmproxy's forms are read; LDAP and nonsense are refused in one line", async () => {
    const tctx = await context(new ProxyAuth());
    await tctx.configure({ proxyauth: "u:p" });
    await tctx.configure({ proxyauth: "any" });
    await assert.rejects(tctx.configure({ proxyauth: "ldap:localhost:cn=admin:pw:ou=users" }), /^ConfigureError: proxyauth: LDAP authentication is not supported by sluice; use user:pass, any, or @path\/to\/htpasswd$/);
    await assert.rejects(tctx.configure({ proxyauth: "justaname" }), /expected "user:pass", "any" or "@path\/to\/htpasswd"/);
  });

  test("a remembered check is for that user and password only, however they split", async () => {
    const tctx = await context(new ProxyAuth());
    await tctx.configure({ proxyauth: "a\u0000b:c" });
    const good = tflow();
    good.request.headers.set("proxy-authorization", basic("a\u0000b:c"));
    await tctx.trigger("requestHeaders", good);
    assert.equal(good.response, null, "the right credentials are accepted (and remembered)");
    const shifted = tflow();
    shifted.request.headers.set("proxy-authorization", basic("a:b\u0000c"));
    await tctx.trigger("requestHeaders", shifted);
    assert.equal(shifted.response?.statusCode, 407);
  });

  test("any: any user and password are accepted, but some must be sent", async () => {
    const tctx = await context(new ProxyAuth());
    await tctx.configure({ proxyauth: "any" });
    const none = tflow();
    await tctx.trigger("requestHeaders", none);
    assert.equal(none.response?.statusCode, 407);
    const some = tflow();
    some.request.headers.set("proxy-authorization", basic("who:ever"));
    await tctx.trigger("requestHeaders", some);
    assert.equal(some.response, null);
    assert.equal(some.request.headers.has("proxy-authorization"), false);
  });
});

describe("listening beyond loopback", () => {
  async function warnings(listenAddress: string, values: Record<string, unknown>): Promise<string[]> {
    const tctx = await context(new Block(), new ProxyAuth());
    await tctx.configure(values);
    tctx.master.ownListeners.register("proxy", { address: listenAddress, port: 8080 });
    tctx.master.ownListeners.register("admin", { address: "127.0.0.1", port: 8081 });
    await tctx.trigger("running");
    return tctx.logs.filter((l) => /beyond this machine/.test(l));
  }

  test("without proxyauth: one warning line that says what to do", async () => {
    const lines = await warnings("0.0.0.0", {});
    assert.equal(lines.length, 1);
    assert.match(lines[0]!, /listens on 0\.0\.0\.0:8080, beyond this machine, without --proxyauth: anyone who can reach it can use it \(clients from public addresses are refused by block_global; private networks are not\); set --proxyauth/);
    assert.equal((await warnings("::", { block_global: false })).length, 1);
  });

  test("none on loopback, or with proxyauth", async () => {
    assert.deepEqual(await warnings("127.0.0.1", {}), []);
    assert.deepEqual(await warnings("::1", {}), []);
    assert.deepEqual(await warnings("0.0.0.0", { proxyauth: "u:p" }), []);
  });
});

/** Runs a program that must succeed; its stdout. */
async function must(cmd: string, args: string[]): Promise<string> {
  const r = await run(cmd, args);
  assert.equal(r.code, 0, `${cmd} ${args.join(" ")}: ${r.stderr}`);
  return r.stdout;
}

describe("sluice dump --proxyauth", () => {
  test("curl -U is served through the command line's proxy; no credentials get 407", { skip: needs("curl", "curl") }, async () => {
    const origin = await startOrigin();
    const confdir = mkdtempSync(join(tmpdir(), "sluice-proxyauth-cli-"));
    const s = await spawnSluice(["dump", "-p", "0", "--confdir", confdir, "--proxyauth", GOOD]);
    try {
      assert.equal((await curlVia(s.port, `${origin.url}/cli`)).status, 407);
      const ok = await curlVia(s.port, `${origin.url}/cli`, ["-U", GOOD]);
      assert.equal(ok.status, 200);
      assertNoCredentialsReached(origin, 0);
      assert.doesNotMatch(s.stderr(), /beyond this machine/, "no warning on loopback");
    } finally {
      await s.stop();
      await origin.close();
    }
  });

  test("a spec sluice cannot use is a one-line error", async () => {
    const ldap = await run(process.execPath, [SLUICE_BIN, "dump", "-p", "0", "--proxyauth", "ldaps:ldap.example.com:cn=x:pw:ou=u"]);
    assertOneLineError(ldap, /^sluice: proxyauth: LDAP authentication is not supported by sluice/, "ldap", 2);
    const missing = await run(process.execPath, [SLUICE_BIN, "dump", "-p", "0", "--proxyauth", "@/nonexistent/htpasswd"]);
    assertOneLineError(missing, /^sluice: proxyauth: cannot read htpasswd file \/nonexistent\/htpasswd: no such file; make one with `htpasswd -cB FILE USER` or give --proxyauth USER:PASS\n$/, "missing file", 2);
  });
});
