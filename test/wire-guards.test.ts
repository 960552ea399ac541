/**
 * Hardening at the wire (issue 15): sluice's own listeners are never forwarding targets, the admin
 * API needs its token, and forwarding loops are answered 508 at once.
 */
import { test, describe, before, after } from "node:test";
import assert from "node:assert/strict";
import net from "node:net";
import http from "node:http";
import tls from "node:tls";
import { startOrigin, type Origin } from "./support/origins.js";
import { startSluice, type TestSluice } from "./support/sluice.js";
import { run } from "./support/run.js";
import { AdminApi } from "../src/addons/admin-api.js";
import { Metrics } from "../src/addons/metrics.js";
import { OwnListeners } from "../src/core/own-listeners.js";
import { needs } from "./support/needs.js";

const CURL = ["-sS", "--max-time", "10", "--noproxy", ""];

/** A port nothing listens on right now, for a sluice that must know its own port before it starts. */
async function freePort(): Promise<number> {
  const s = net.createServer();
  await new Promise<void>((r) => s.listen(0, "127.0.0.1", r));
  const port = (s.address() as net.AddressInfo).port;
  await new Promise<void>((r) => s.close(() => r()));
  return port;
}

describe("sluice's own listeners through the proxy", { skip: needs("curl", "curl") }, () => {
  let sluice: TestSluice;
  let admin: AdminApi;
  let metrics: Metrics;
  let origin: Origin;
  before(async () => {
    admin = new AdminApi();
    metrics = new Metrics();
    origin = await startOrigin();
    sluice = await startSluice({ set: { admin_port: "0", metrics_port: "0" }, addons: [admin, metrics] });
  });
  after(async () => {
    await Promise.all([sluice.close(), origin.close()]);
  });

  test("the admin API driven through the proxy is refused with 403, whatever the Host says; nothing changes", async () => {
    const api = `http://127.0.0.1:${admin.address!.port}`;
    const auth = ["-H", `Authorization: Bearer ${admin.token}`];
    for (const extra of [[], ["-H", "Host: 127.0.0.1"], ["-H", "Host: example.com"]]) {
      const r = await run("curl", [...CURL, ...auth, ...extra, "-x", sluice.url, "-w", "\n%{http_code}", `${api}/commands`, "-d", '{"command":"set ssl_insecure=true"}']);
      const lines = r.stdout.trimEnd().split("\n");
      assert.equal(lines.at(-1), "403", r.stdout + r.stderr);
      assert.match(r.stdout, /own admin listener; sluice does not forward requests to its own control surfaces/);
    }
    // A name that resolves to the listener is refused too.
    const named = await run("curl", [...CURL, ...auth, "-x", sluice.url, "-o", "/dev/null", "-w", "%{http_code}", `http://localhost:${admin.address!.port}/faults`]);
    assert.equal(named.stdout, "403");
    assert.equal(sluice.master.options.get("ssl_insecure"), false, "the command never ran");
    // Directly, with its token, the API works.
    const direct = await run("curl", [...CURL, ...auth, "-w", "\n%{http_code}", `${api}/commands`, "-d", '{"command":"set view_max_flows=50000"}']);
    assert.equal(direct.stdout.trimEnd().split("\n").at(-1), "200", direct.stdout);
  });

  test("the admin API without its token (or with a wrong one) answers 401", async () => {
    const api = `http://127.0.0.1:${admin.address!.port}`;
    const none = await run("curl", [...CURL, "-i", `${api}/faults`]);
    assert.match(none.stdout, /^HTTP\/1\.1 401 /);
    assert.match(none.stdout, /www-authenticate: Bearer/i);
    assert.match(none.stdout, /needs Authorization: Bearer TOKEN/);
    const wrong = await run("curl", [...CURL, "-o", "/dev/null", "-w", "%{http_code}", "-H", "Authorization: Bearer not-the-token", `${api}/faults`]);
    assert.equal(wrong.stdout, "401");
    assert.ok(sluice.logs.some((l) => l.includes(`admin API token: ${admin.token}`)), "the token is printed at start");
  });

  test("the metrics endpoint through the proxy is refused with 403", async () => {
    const r = await run("curl", [...CURL, "-x", sluice.url, "-w", "\n%{http_code}", `http://127.0.0.1:${metrics.port}/metrics`]);
    assert.equal(r.stdout.trimEnd().split("\n").at(-1), "403", r.stdout);
    assert.match(r.stdout, /own metrics listener/);
  });

  test("a request to the proxy's own port is a loop: 508 at once", async () => {
    const started = Date.now();
    const r = await run("curl", [...CURL, "-x", sluice.url, "-w", "\n%{http_code}", `http://127.0.0.1:${sluice.port}/x`, "-H", "Host: example.com"]);
    assert.equal(r.stdout.trimEnd().split("\n").at(-1), "508", r.stdout);
    assert.match(r.stdout, /loop detected: 127\.0\.0\.1:\d+ is this sluice's own proxy listener/);
    assert.ok(Date.now() - started < 1000, `answered in ${Date.now() - started} ms`);
    // Through CONNECT as well (the tunnel is answered; the request inside it is refused).
    const tunnelled = await run("curl", [...CURL, "-p", "-x", sluice.url, "-o", "/dev/null", "-w", "%{http_code}", `http://127.0.0.1:${sluice.port}/y`]);
    assert.equal(tunnelled.stdout, "508");
  });

  test("a listener registered later (as the web UI will) is refused too, and freed when it unregisters", async () => {
    const web = await startOrigin();
    const unregister = sluice.master.ownListeners.register("web", { address: "127.0.0.1", port: web.port });
    try {
      const r = await run("curl", [...CURL, "-x", sluice.url, "-o", "/dev/null", "-w", "%{http_code}", `${web.url}/`]);
      assert.equal(r.stdout, "403");
    } finally {
      unregister();
    }
    const after = await run("curl", [...CURL, "-x", sluice.url, "-o", "/dev/null", "-w", "%{http_code}", `${web.url}/`]);
    assert.equal(after.stdout, "200");
    await web.close();
  });

  test("other origins on 127.0.0.1 are still served", async () => {
    const r = await run("curl", [...CURL, "-x", sluice.url, "-o", "/dev/null", "-w", "%{http_code}", `${origin.url}/fine`]);
    assert.equal(r.stdout, "200");
  });
});

describe("forwarding loops", { skip: needs("curl", "curl") }, () => {
  test("upstream mode pointing at sluice itself: 508 in under a second", async () => {
    const port = await freePort();
    const sluice = await startSluice({ set: { listen_port: String(port), mode: `upstream:http://127.0.0.1:${port}` } });
    try {
      for (const url of [`http://example.test/`, `https://example.test/`]) {
        const r = await run("curl", [...CURL, "-k", "-x", sluice.url, "-w", "\n%{http_code} %{time_total}", url]);
        const [status, seconds] = r.stdout.trimEnd().split("\n").at(-1)!.split(" ");
        assert.equal(status, "508", url + ": " + r.stdout + r.stderr);
        assert.ok(Number(seconds) < 1, `${url} answered in ${seconds} s`);
      }
    } finally {
      await sluice.close();
    }
  });

  test("two sluices in upstream mode pointing at each other: the Via token stops the loop with 508", async () => {
    const [pa, pb] = [await freePort(), await freePort()];
    const a = await startSluice({ set: { listen_port: String(pa), mode: `upstream:http://127.0.0.1:${pb}`, ssl_insecure: "true" } });
    const b = await startSluice({ set: { listen_port: String(pb), mode: `upstream:http://127.0.0.1:${pa}`, ssl_insecure: "true" } });
    try {
      for (const url of ["http://example.test/plain", "https://example.test/secure"]) {
        const r = await run("curl", [...CURL, "-k", "-x", a.url, "-w", "\n%{http_code} %{time_total}", url]);
        const [status, seconds] = r.stdout.trimEnd().split("\n").at(-1)!.split(" ");
        assert.equal(status, "508", url + ": " + r.stdout + r.stderr);
        assert.match(r.stdout, /loop detected/);
        // Liveness only: over HTTPS each sluice first makes a leaf certificate (two TLS set-ups).
        assert.ok(Number(seconds) < 5, `${url} answered in ${seconds} s`);
      }
      assert.ok(a.logs.some((l) => /loop detected: a request came back carrying this sluice's Via token/.test(l)));
    } finally {
      await Promise.all([a.close(), b.close()]);
    }
  });
});

describe("own listener matching", () => {
  test("a wildcard listener is reached through loopback and 0.0.0.0; a loopback one only through its address", () => {
    const own = new OwnListeners();
    own.register("proxy", { address: "0.0.0.0", port: 8080 });
    own.register("admin", { address: "127.0.0.1", port: 9000 });
    assert.equal(own.match("127.0.0.1", 8080)?.kind, "proxy");
    assert.equal(own.match("127.3.4.5", 8080)?.kind, "proxy");
    assert.equal(own.match("::ffff:127.0.0.1", 8080)?.kind, "proxy");
    assert.equal(own.match("::1", 8080)?.kind, "proxy");
    assert.equal(own.match("0.0.0.0", 9000)?.kind, "admin");
    assert.equal(own.match("127.0.0.1", 9000)?.kind, "admin");
    assert.equal(own.match("127.0.0.2", 9000), null);
    assert.equal(own.match("127.0.0.1", 9001), null);
    assert.equal(own.match("192.0.2.1", 8080), null);
  });
});

/** Connects a raw client, sends `parts` (a pause of `gapMs` between them), and reports what came back and when the connection closed. */
function rawClient(port: number, parts: (string | Buffer)[], gapMs = 0): Promise<{ data: string; closedAfterMs: number }> {
  return new Promise((resolve) => {
    const started = Date.now();
    const socket = net.connect(port, "127.0.0.1");
    const chunks: Buffer[] = [];
    let timer: NodeJS.Timeout | null = null;
    socket.on("data", (c: Buffer) => chunks.push(c));
    socket.on("error", () => {});
    socket.on("close", () => {
      if (timer) clearTimeout(timer);
      resolve({ data: Buffer.concat(chunks).toString("latin1"), closedAfterMs: Date.now() - started });
    });
    // Liveness bound only: a connection still open after 15 s was never going to be closed.
    setTimeout(() => socket.destroy(), 15_000).unref();
    let i = 0;
    const next = () => {
      if (i >= parts.length || socket.destroyed) return;
      socket.write(parts[i++]!);
      if (i < parts.length) timer = setTimeout(next, gapMs);
    };
    socket.once("connect", next);
  });
}

describe("client timeouts and the connection cap", () => {
  let sluice: TestSluice;
  let origin: Origin;
  before(async () => {
    origin = await startOrigin();
    sluice = await startSluice({ set: { client_header_timeout: "1", client_body_timeout: "1", client_keepalive_timeout: "1" } });
  });
  after(async () => {
    await Promise.all([sluice.close(), origin.close()]);
  });

  test("slowloris and silent connections are closed by the timeouts while a normal client is served", { skip: needs("curl", "curl") }, async () => {
    const target = `http://127.0.0.1:${origin.port}/`;
    const head = `POST ${target} HTTP/1.1\r\nHost: 127.0.0.1:${origin.port}\r\n`;
    const preface = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
    // The start of a TLS record announcing a 512-byte ClientHello that never comes.
    const partialHello = Buffer.from([0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc, 0x03, 0x03]);
    const cases: Record<string, Promise<{ data: string; closedAfterMs: number }>> = {
      "silent connection": rawClient(sluice.port, []),
      "partial request line": rawClient(sluice.port, [`GET ${target} HT`]),
      "partial headers": rawClient(sluice.port, [`${head}X-One: 1\r\n`]),
      "headers one byte at a time": rawClient(sluice.port, [...`${head}X-Slow: yes\r\n`].slice(0, 60), 150),
      "half a body": rawClient(sluice.port, [`${head}Content-Length: 100\r\n\r\n`, "0123456789"]),
      "bare CONNECT": rawClient(sluice.port, ["CONNECT example.test:443 HTTP/1.1\r\nHost: example.test:443\r\n\r\n"]),
      "partial ClientHello": rawClient(sluice.port, ["CONNECT example.test:443 HTTP/1.1\r\nHost: example.test:443\r\n\r\n", partialHello], 100),
      "HTTP/2 preface only": rawClient(sluice.port, [`CONNECT 127.0.0.1:${origin.port} HTTP/1.1\r\nHost: x\r\n\r\n`, preface], 100),
    };
    // Meanwhile, a normal client is served.
    const served = await run("curl", [...CURL, "-x", sluice.url, "-o", "/dev/null", "-w", "%{http_code}", `${target}normal`]);
    assert.equal(served.stdout, "200");
    for (const [name, pending] of Object.entries(cases)) {
      const r = await pending;
      assert.ok(r.closedAfterMs < 8000, `${name}: closed after ${r.closedAfterMs} ms`);
      assert.ok(r.closedAfterMs >= 900, `${name}: closed too early (${r.closedAfterMs} ms): ${r.data}`);
      if (name === "partial headers" || name === "partial request line") assert.match(r.data, /^HTTP\/1\.1 408 /, name);
      if (name === "half a body") assert.match(r.data, /^HTTP\/1\.1 408 [^]*client_body_timeout/, name);
    }
    assert.ok(sluice.logs.some((l) => /no complete request within 1s \(client_header_timeout, TLS ClientHello or first request\): closed/.test(l)));
    assert.ok(sluice.logs.some((l) => /request body stalled for 1s \(client_body_timeout\)/.test(l)));
  });

  test("an idle keep-alive connection is closed after client_keepalive_timeout", async () => {
    const r = await rawClient(sluice.port, [`GET http://127.0.0.1:${origin.port}/ka HTTP/1.1\r\nHost: 127.0.0.1:${origin.port}\r\n\r\n`]);
    assert.match(r.data, /^HTTP\/1\.1 200 /);
    assert.ok(r.closedAfterMs < 8000 && r.closedAfterMs >= 900, `closed after ${r.closedAfterMs} ms`);
  });

  test("an HTTP/0.9 request line gets 400 at once instead of a held connection", async () => {
    const r = await rawClient(sluice.port, ["GET /\r\n"]);
    assert.match(r.data, /^HTTP\/1\.1 400 [^]*HTTP\/0\.9/);
    assert.ok(r.closedAfterMs < 900, `answered after ${r.closedAfterMs} ms`);
  });

  test("beyond max_client_connections new connections are closed with one log line; the others go on", { skip: needs("curl", "curl") }, async () => {
    await sluice.master.commands.execute("set max_client_connections=3");
    try {
      const held = [0, 1, 2].map(() => net.connect(sluice.port, "127.0.0.1"));
      await Promise.all(held.map((s) => new Promise((r) => s.once("connect", r))));
      const refused = await rawClient(sluice.port, []);
      assert.ok(refused.closedAfterMs < 900, `the fourth connection was closed after ${refused.closedAfterMs} ms`);
      assert.ok(sluice.logs.some((l) => /client connection limit reached \(max_client_connections=3\)/.test(l)));
      held[0]!.destroy();
      await new Promise((r) => setTimeout(r, 100));
      const served = await run("curl", [...CURL, "-x", sluice.url, "-o", "/dev/null", "-w", "%{http_code}", `${origin.url}/after`]);
      assert.equal(served.stdout, "200");
      for (const s of held) s.destroy();
    } finally {
      await sluice.master.commands.execute("set max_client_connections=10000");
    }
  });
});

describe("headers, Host and odd request lines", () => {
  let sluice: TestSluice;
  let origin: http.Server;
  let originPort: number;
  let responseFields = 0;
  const seen: http.IncomingMessage[] = [];
  before(async () => {
    origin = http.createServer({ maxHeaderSize: 1 << 20 }, (req, res) => {
      seen.push(req);
      const list: string[] = [];
      for (let i = 0; i < responseFields; i++) list.push(`x-r${i}`, "v");
      res.writeHead(200, [...list, "x-last", "yes"]);
      res.end(JSON.stringify({ fields: req.rawHeaders.length / 2, authorization: req.headers.authorization ?? null, host: req.headers.host }));
    });
    origin.maxHeadersCount = 0; // the origin sees every field: what reaches it is what sluice sent
    await new Promise<void>((r) => origin.listen(0, "127.0.0.1", r));
    originPort = (origin.address() as net.AddressInfo).port;
    sluice = await startSluice();
  });
  after(async () => {
    await sluice.close();
    origin.closeAllConnections();
    await new Promise((r) => origin.close(r));
  });

  test("2,000 request headers reach the origin intact, the Authorization after them included", { skip: needs("curl", "curl") }, async () => {
    const args = [...CURL, "-x", sluice.url, `http://127.0.0.1:${originPort}/many`];
    for (let i = 0; i < 2000; i++) args.push("-H", `x-h${i}: v${i}`);
    args.push("-H", "Authorization: Bearer after-2000");
    const r = await run("curl", args);
    assert.match(r.stdout, /^\{/, `curl exited ${r.code} ${r.signal}: ${r.stdout}${r.stderr}`);
    const body = JSON.parse(r.stdout);
    assert.equal(body.authorization, "Bearer after-2000");
    assert.ok(body.fields >= 2002, `the origin saw ${body.fields} fields`);
  });

  test("more than 10,000 request header fields: 431 saying so, nothing forwarded", async () => {
    const before = seen.length;
    let head = `GET http://127.0.0.1:${originPort}/too-many HTTP/1.1\r\nHost: 127.0.0.1:${originPort}\r\n`;
    for (let i = 0; i < 10_001; i++) head += `x-h${i}: v\r\n`;
    const r = await rawClient(sluice.port, [head + "\r\n"]);
    assert.match(r.data, /^HTTP\/1\.1 431 [^]*more than 10,000 header fields/);
    assert.equal(seen.length, before);
  });

  test("2,000 response headers reach the client; more than 10,000 is a 502 saying so", { skip: needs("curl", "curl") }, async () => {
    responseFields = 2000;
    const ok = await run("curl", [...CURL, "-D", "-", "-o", "/dev/null", "-x", sluice.url, `http://127.0.0.1:${originPort}/resp`]);
    assert.equal(ok.stdout.split("\r\n").filter((l) => /^x-r\d+: v$/.test(l)).length, 2000);
    assert.match(ok.stdout, /x-last: yes/);
    responseFields = 10_001;
    const tooMany = await run("curl", [...CURL, "-w", "\n%{http_code}", "-x", sluice.url, `http://127.0.0.1:${originPort}/resp`]).finally(() => (responseFields = 0));
    assert.equal(tooMany.stdout.trimEnd().split("\n").at(-1), "502");
    assert.match(tooMany.stdout, /answered with 10,0\d\d header fields, more than the 10,000 sluice forwards/);
    responseFields = 0;
  });

  test("an absolute-form request forwards the URL's host as Host, not the client's mismatching one", { skip: needs("curl", "curl") }, async () => {
    const r = await run("curl", [...CURL, "-x", sluice.url, "-H", "Host: evil.example", `http://127.0.0.1:${originPort}/host`]);
    assert.match(r.stdout, /^\{/, r.stdout + r.stderr);
    assert.equal(JSON.parse(r.stdout).host, `127.0.0.1:${originPort}`);
    const flow = sluice.flows.at(-1)!;
    assert.equal(flow.request.headers.get("host"), `127.0.0.1:${originPort}`);
  });

  test("raw UTF-8 in a ClientHello's server name is refused with alert unrecognized_name, not mangled", async () => {
    const hello = await clientHelloFor("bxxcher.example");
    const at = hello.indexOf("bxxcher.example");
    Buffer.from("bücher.example", "utf8").copy(hello, at); // same length: xx → ü
    const logsBefore = sluice.logs.length;
    const r = await rawClient(sluice.port, ["CONNECT bxxcher.example:443 HTTP/1.1\r\nHost: bxxcher.example:443\r\n\r\n", hello], 100);
    const afterConnect = Buffer.from(r.data.slice(r.data.indexOf("\r\n\r\n") + 4), "latin1");
    assert.deepEqual([...afterConnect], [0x15, 0x03, 0x03, 0x00, 0x02, 0x02, 0x70]);
    assert.ok(sluice.logs.slice(logsBefore).some((l) => l.includes('server name "bücher.example", which is not an ASCII host name')));
  });
});

/** The first flight of a real TLS client (Node's) for `servername`. */
async function clientHelloFor(servername: string): Promise<Buffer> {
  const server = net.createServer();
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  const got = new Promise<Buffer>((resolve) => server.once("connection", (s) => s.once("data", (d: Buffer) => { resolve(d); s.destroy(); })));
  const client = tls.connect({ host: "127.0.0.1", port: (server.address() as net.AddressInfo).port, servername });
  client.on("error", () => {});
  const hello = await got;
  client.destroy();
  server.close();
  return hello;
}
