/** The proxy core with real clients (curl, Node) and real origins on 127.0.0.1. */
import { test, describe, before, after } from "node:test";
import assert from "node:assert/strict";
import http from "node:http";
import http2 from "node:http2";
import net from "node:net";
import { statSync, existsSync, readFileSync } from "node:fs";
import { X509Certificate } from "node:crypto";
import { WebSocket } from "ws";
import { startOrigin, originCaFile, type Origin } from "./support/origins.js";
import { startSluice, type TestSluice } from "./support/sluice.js";
import { run } from "./support/run.js";
import { tunnelAgent } from "./support/tunnel-agent.js";
import { needs } from "./support/needs.js";

const CURL = ["-sS", "--max-time", "20", "--noproxy", ""];

describe("regular mode", () => {
  let sluice: TestSluice;
  let plain: Origin;
  let secure: Origin;
  let h2: Origin;
  before(async () => {
    [sluice, plain, secure, h2] = await Promise.all([startSluice(), startOrigin(), startOrigin({ tls: true }), startOrigin({ h2: true })]);
  });
  after(async () => {
    await Promise.all([sluice.close(), plain.close(), secure.close(), h2.close()]);
  });

  test("curl to a plain HTTP origin: absolute-form request, flow recorded with timings", { skip: needs("curl", "curl") }, async () => {
    const before = sluice.flows.length;
    const r = await run("curl", [...CURL, "-x", sluice.url, `${plain.url}/hello?x=1`, "-H", "X-Test: yes"]);
    assert.equal(r.code, 0, r.stderr);
    const body = JSON.parse(r.stdout);
    assert.equal(body.url, "/hello?x=1");
    assert.equal(body.headers["x-test"], "yes");
    assert.equal(body.headers["proxy-connection"], undefined, "hop-by-hop header must not be forwarded");
    const [flow] = (await sluice.waitForFlows(before + 1)).slice(before);
    assert.equal(flow!.request.method, "GET");
    assert.equal(flow!.request.url, `${plain.url}/hello?x=1`);
    assert.equal(flow!.response!.statusCode, 200);
    assert.equal(flow!.response!.headers.get("x-origin"), "test");
    assert.ok(flow!.response!.content!.length > 0);
    const t = flow!;
    assert.ok(t.clientConn.timestampStart! <= t.request.timestampStart);
    assert.ok(t.request.timestampStart <= t.request.timestampEnd!);
    assert.ok(t.serverConn.timestampStart! <= t.serverConn.timestampTcpSetup!);
    assert.ok(t.request.timestampEnd! <= t.response!.timestampStart);
    assert.ok(t.response!.timestampStart <= t.response!.timestampEnd!);
    assert.deepEqual(t.serverConn.address, ["127.0.0.1", plain.port]);
  });

  test("curl to an HTTPS origin through CONNECT with sluice's CA; upstream verified", { skip: needs("curl", "curl") }, async () => {
    const before = sluice.flows.length;
    const r = await run("curl", [...CURL, "--cacert", sluice.caCert, "-x", sluice.url, `${secure.url}/secure`, "-d", "payload=1"]);
    assert.equal(r.code, 0, r.stderr);
    const body = JSON.parse(r.stdout);
    assert.equal(body.method, "POST");
    assert.equal(body.body, "payload=1");
    const [flow] = (await sluice.waitForFlows(before + 1)).slice(before);
    assert.equal(flow!.request.scheme, "https");
    assert.equal(flow!.request.text, "payload=1");
    assert.equal(flow!.clientConn.tls, true);
    assert.match(flow!.clientConn.tlsVersion!, /^TLSv1\.[23]$/);
    assert.equal(flow!.serverConn.tls, true);
    assert.ok(flow!.serverConn.timestampTlsSetup! >= flow!.serverConn.timestampTcpSetup!);
    assert.ok(flow!.serverConn.certificateList.length >= 1);
  });

  test("HTTP/2 on both sides with curl --http2", { skip: needs("curl", "curl") }, async () => {
    const before = sluice.flows.length;
    const r = await run("curl", [...CURL, "--http2", "--cacert", sluice.caCert, "-x", sluice.url, "-w", "\n%{http_version}", `${h2.url}/two`]);
    assert.equal(r.code, 0, r.stderr);
    const [json, version] = r.stdout.split("\n");
    assert.equal(version, "2", "curl spoke HTTP/2 to sluice");
    assert.equal(JSON.parse(json!).httpVersion, "2.0", "sluice spoke HTTP/2 to the origin");
    const [flow] = (await sluice.waitForFlows(before + 1)).slice(before);
    assert.equal(flow!.request.httpVersion, "HTTP/2.0");
    assert.equal(flow!.response!.httpVersion, "HTTP/2.0");
    assert.equal(flow!.clientConn.alpn, "h2");
  });

  test("HTTP/1.1 client to an HTTP/2-capable origin stays HTTP/1.1", { skip: needs("curl", "curl") }, async () => {
    const r = await run("curl", [...CURL, "--http1.1", "--cacert", sluice.caCert, "-x", sluice.url, "-w", "\n%{http_version}", `${h2.url}/one`]);
    assert.equal(r.code, 0, r.stderr);
    const [json, version] = r.stdout.split("\n");
    assert.equal(version, "1.1");
    assert.equal(JSON.parse(json!).httpVersion, "1.1");
  });

  test("keep-alive: several requests over one client connection", { skip: needs("curl", "curl") }, async () => {
    const before = sluice.flows.length;
    const r = await run("curl", [...CURL, "-x", sluice.url, `${plain.url}/a`, `${plain.url}/b`, `${plain.url}/c`, "-w", "%{num_connects}\n", "-o", "/dev/null", "-o", "/dev/null", "-o", "/dev/null"]);
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual(r.stdout.trim().split("\n"), ["1", "0", "0"]);
    const flows = (await sluice.waitForFlows(before + 3)).slice(before);
    assert.equal(new Set(flows.map((f) => f.clientConn.id)).size, 1);
    assert.equal(new Set(flows.map((f) => f.serverConn.id)).size, 1, "upstream connection reused");
  });

  test("Expect: 100-continue upload (as boto3 sends on PUT)", { skip: needs("curl", "curl") }, async () => {
    const body = "x".repeat(50_000);
    const r = await run("curl", [...CURL, "-x", sluice.url, "-X", "PUT", "-H", "Expect: 100-continue", "--data-binary", "@-", `${plain.url}/put`], { input: body });
    assert.equal(r.code, 0, r.stderr);
    const echoed = JSON.parse(r.stdout);
    assert.equal(echoed.bodyLength, 50_000);
    assert.equal(echoed.headers.expect, undefined);
  });

  test("chunked request body from the client", { skip: needs("curl", "curl") }, async () => {
    const r = await run("curl", [...CURL, "-x", sluice.url, "-H", "Transfer-Encoding: chunked", "--data-binary", "@-", `${plain.url}/chunked`], { input: "chunk-data-".repeat(1000) });
    assert.equal(r.code, 0, r.stderr);
    assert.equal(JSON.parse(r.stdout).bodyLength, 11_000);
  });

  test("a server that answers before the upload ends: curl finishes sending and keeps its connection", { skip: needs("curl", "curl") }, async () => {
    const early = await startEarlyAnswerOrigin();
    try {
      // 30 MB streams (past stream_large_bodies). Before the fix sluice stopped reading the body
      // once the answer was out, and curl sat half-way through its upload until a timeout.
      const body = Buffer.alloc(30 * 1024 * 1024, 0x61);
      const r = await run("curl", [...CURL, "-x", sluice.url, "-X", "PUT", "--data-binary", "@-", "-o", "/dev/null", "-w", "%{http_code} %{size_upload} %{num_connects}\n", `${early.url}/upload`,
        "--next", ...CURL, "-x", sluice.url, "-o", "/dev/null", "-w", "%{http_code} %{num_connects}\n", `${early.url}/after`], { input: body });
      assert.equal(r.code, 0, r.stderr);
      const [upload, after] = r.stdout.trim().split("\n");
      assert.equal(upload, `201 ${body.length} 1`, "the whole body was sent and the early answer arrived");
      assert.equal(after, "201 0", "the next request reused the client connection");
    } finally {
      await early.close();
    }
  });

  test("upstream down: 502 with a body saying what failed, flow has the error", { skip: needs("curl", "curl") }, async () => {
    const dead = await freePort();
    const before = sluice.flows.length;
    const r = await run("curl", [...CURL, "-x", sluice.url, "-w", "\n%{http_code}", `http://127.0.0.1:${dead}/x`]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /could not connect to 127\.0\.0\.1:\d+: connection refused/);
    assert.match(r.stdout, /\n502$/);
    const [flow] = (await sluice.waitForFlows(before + 1)).slice(before);
    assert.match(flow!.error!.msg, /connection refused/);
  });

  test("an upstream that does not speak HTTP: 502 saying so, not a connection failure", { skip: needs("curl", "curl") }, async () => {
    const notHttp = net.createServer((s) => s.once("data", () => s.end("SSH-2.0-OpenSSH_9.2\r\n")));
    await new Promise<void>((resolve) => notHttp.listen(0, "127.0.0.1", resolve));
    const port = (notHttp.address() as net.AddressInfo).port;
    try {
      const r = await run("curl", [...CURL, "-x", sluice.url, "-w", "\n%{http_code}", `http://127.0.0.1:${port}/`]);
      assert.equal(r.code, 0, r.stderr);
      assert.match(r.stdout, new RegExp(`^sluice: 127\\.0\\.0\\.1:${port} answered with something that is not valid HTTP/1\\.1 \\(.+\\)\n\n502$`));
    } finally {
      await new Promise<void>((resolve) => notHttp.close(() => resolve()));
    }
  });

  test("upstream TLS certificate not trusted: 502 naming --ssl-insecure", { skip: needs("curl", "curl") }, async () => {
    const other = await startSluice({ set: { ssl_verify_upstream_trusted_ca: "" } });
    try {
      const r = await run("curl", [...CURL, "--cacert", other.caCert, "-x", other.url, "-w", "\n%{http_code}", `${secure.url}/x`]);
      assert.match(r.stdout, /not trusted/);
      assert.match(r.stdout, /--ssl-insecure/);
      assert.match(r.stdout, /\n502$/);
    } finally {
      await other.close();
    }
  });

  test("--ssl-insecure accepts an untrusted upstream certificate", { skip: needs("curl", "curl") }, async () => {
    const other = await startSluice({ set: { ssl_verify_upstream_trusted_ca: "", ssl_insecure: "true" } });
    try {
      const r = await run("curl", [...CURL, "--cacert", other.caCert, "-x", other.url, `${secure.url}/x`]);
      assert.equal(r.code, 0, r.stderr);
      assert.equal(JSON.parse(r.stdout).url, "/x");
    } finally {
      await other.close();
    }
  });

  test("a client that hangs up mid-upload ends its flow with an error, not a 'malformed request' log", async () => {
    const before = sluice.flows.length;
    const logsBefore = sluice.logs.length;
    await new Promise<void>((resolve, reject) => {
      const s = net.connect(sluice.port, "127.0.0.1", () => {
        s.write(`POST ${plain.url}/cut-short HTTP/1.1\r\nHost: 127.0.0.1:${plain.port}\r\nContent-Length: 100000\r\n\r\n${"x".repeat(10)}`);
        setTimeout(() => s.end(), 100); // after the request head has reached the proxy
      });
      s.on("close", () => resolve());
      s.on("error", reject);
      s.resume();
    });
    const [flow] = (await sluice.waitForFlows(before + 1)).slice(before);
    assert.equal(flow!.request.path, "/cut-short");
    assert.match(flow!.error!.msg, /client closed the connection before the request body was complete/);
    await new Promise((r) => setTimeout(r, 100));
    assert.deepEqual(sluice.logs.slice(logsBefore).filter((l) => /malformed/.test(l)), []);
  });

  test("garbage on the listening port gets 400 and the proxy keeps serving", { skip: needs("curl", "curl") }, async () => {
    const reply = await rawExchange(sluice.port, "THIS IS NOT HTTP\r\n\r\n");
    assert.match(reply, /^HTTP\/1\.1 400 Bad Request/);
    assert.match(reply, /malformed HTTP request/);
    const r = await run("curl", [...CURL, "-x", sluice.url, `${plain.url}/still-alive`]);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(JSON.parse(r.stdout).url, "/still-alive");
  });

  test("origin-form request to the proxy gets 400 explaining proxy configuration", { skip: needs("curl", "curl") }, async () => {
    const r = await run("curl", [...CURL, "-w", "\n%{http_code}", `${sluice.url}/direct`]);
    assert.match(r.stdout, /configure your client to use sluice as its proxy/);
    assert.match(r.stdout, /\n400$/);
  });

  test("lazy upstream: CONNECT to an unreachable host is answered and intercepted; map-remote sends it to a local origin", { skip: needs("curl", "curl") }, async () => {
    const mapped = await startSluice({ set: { map_remote: JSON.stringify([`|https://s3\\.eu-west-1\\.amazonaws\\.com|${secure.url}`]) } });
    try {
      const r = await run("curl", [...CURL, "--cacert", mapped.caCert, "-x", mapped.url, "https://s3.eu-west-1.amazonaws.com/bucket/key"]);
      assert.equal(r.code, 0, r.stderr);
      assert.equal(JSON.parse(r.stdout).url, "/bucket/key");
      const [flow] = await mapped.waitForFlows(1);
      assert.equal(flow!.request.host, "127.0.0.1");
      assert.deepEqual(flow!.metadata.map_remote, { from: "https://s3.eu-west-1.amazonaws.com/bucket/key", to: `${secure.url}/bucket/key` });
      assert.equal(flow!.clientConn.sni, "s3.eu-west-1.amazonaws.com");
    } finally {
      await mapped.close();
    }
  });

  test("a client that rejects sluice's certificate produces one clear log line", { skip: needs("curl", "curl") }, async () => {
    const before = sluice.logs.length;
    const r = await run("curl", [...CURL, "-x", sluice.url, `https://127.0.0.1:${secure.port}/`]);
    assert.notEqual(r.code, 0);
    await waitFor(() => sluice.logs.slice(before).some((l) => /rejected sluice's certificate|closed the connection during the TLS handshake/.test(l)));
    const line = sluice.logs.slice(before).find((l) => /sluice's certificate|TLS handshake/.test(l))!;
    assert.match(line, /sluice ca/);
    assert.match(line, /sluice-ca-cert\.pem/);
  });

  test("--ignore-hosts passes TLS through untouched (the origin's own certificate reaches the client)", { skip: needs("curl", "curl") }, async () => {
    const passing = await startSluice({ set: { ignore_hosts: JSON.stringify(["^127\\.0\\.0\\.1$"]) } });
    try {
      const r = await run("curl", [...CURL, "--cacert", originCaFile(), "-x", passing.url, `${secure.url}/through`]);
      assert.equal(r.code, 0, r.stderr);
      assert.equal(JSON.parse(r.stdout).url, "/through");
      assert.equal(passing.flows.length, 0, "pass-through traffic is not a flow");
      const rejected = await run("curl", [...CURL, "--cacert", passing.caCert, "-x", passing.url, `${secure.url}/through`]);
      assert.notEqual(rejected.code, 0, "sluice's CA does not vouch for a passed-through server");
    } finally {
      await passing.close();
    }
  });

  test("--allow-hosts intercepts only matching hosts", { skip: needs("curl", "curl") }, async () => {
    const allowing = await startSluice({ set: { allow_hosts: JSON.stringify(["^example\\.invalid$"]) } });
    try {
      const r = await run("curl", [...CURL, "--cacert", originCaFile(), "-x", allowing.url, `${secure.url}/through`]);
      assert.equal(r.code, 0, r.stderr);
      assert.equal(allowing.flows.length, 0);
    } finally {
      await allowing.close();
    }
  });
});

describe("reverse mode: client plain or TLS × origin plain or TLS", () => {
  const cases = [
    { client: "http", origin: "http" },
    { client: "http", origin: "https" },
    { client: "https", origin: "http" },
    { client: "https", origin: "https" },
  ] as const;
  for (const c of cases) {
    test(`client ${c.client} → sluice → origin ${c.origin}`, { skip: needs("curl", "curl") }, async () => {
      const origin = await startOrigin({ tls: c.origin === "https" });
      const sluice = await startSluice({ set: { mode: `reverse:${origin.url}` } });
      try {
        const args = [...CURL, `${c.client}://127.0.0.1:${sluice.port}/rev/path?q=1`];
        if (c.client === "https") args.unshift("--cacert", sluice.caCert);
        const r = await run("curl", args);
        assert.equal(r.code, 0, r.stderr);
        const echoed = JSON.parse(r.stdout);
        assert.equal(echoed.url, "/rev/path?q=1");
        assert.equal(echoed.headers.host, `127.0.0.1:${origin.port}`, "Host rewritten to the target");
        const [flow] = await sluice.waitForFlows(1);
        assert.equal(flow!.clientConn.tls, c.client === "https");
        assert.equal(flow!.serverConn.tls, c.origin === "https");
        assert.equal(flow!.request.scheme, c.origin);
        assert.equal(flow!.clientConn.proxyMode, `reverse:${origin.url}`);
      } finally {
        await Promise.all([sluice.close(), origin.close()]);
      }
    });
  }

  test("HTTP/2 client in reverse mode with TLS", { skip: needs("curl", "curl") }, async () => {
    const origin = await startOrigin({ h2: true });
    const sluice = await startSluice({ set: { mode: `reverse:${origin.url}` } });
    try {
      const r = await run("curl", [...CURL, "--http2", "--cacert", sluice.caCert, "-w", "\n%{http_version}", `https://127.0.0.1:${sluice.port}/h2`]);
      assert.equal(r.code, 0, r.stderr);
      assert.equal(r.stdout.split("\n")[1], "2");
    } finally {
      await Promise.all([sluice.close(), origin.close()]);
    }
  });

  test("an HTTP/2 client whose server answers before the upload ends sends it all and ends cleanly", async () => {
    const early = await startEarlyAnswerOrigin();
    const sluice = await startSluice({ set: { mode: `reverse:${early.url}` } });
    const session = http2.connect(`https://127.0.0.1:${sluice.port}`, { ca: readFileSync(sluice.caCert) });
    const sessionError = new Promise<Error>((resolve) => session.once("error", resolve));
    try {
      const total = 30 * 1024 * 1024;
      const result = await new Promise<{ status: number; body: string; sent: number; rstCode: number | undefined }>((resolve, reject) => {
        const req = session.request({ ":method": "PUT", ":path": "/upload", "content-length": String(total) });
        let status = 0;
        let body = "";
        let sent = 0;
        const chunk = Buffer.alloc(64 * 1024, 0x62);
        const pump = () => {
          while (sent < total && !req.destroyed) {
            sent += chunk.length;
            if (!req.write(chunk)) return void req.once("drain", pump);
          }
          if (!req.destroyed) req.end();
        };
        req.on("response", (h) => (status = Number(h[":status"])));
        req.setEncoding("utf8");
        req.on("data", (d: string) => (body += d));
        req.once("error", reject);
        req.once("close", () => resolve({ status, body, sent, rstCode: req.rstCode }));
        setTimeout(() => reject(new Error(`stalled: ${sent} of ${total} bytes sent, status ${status}`)), 20_000).unref();
        pump();
      });
      assert.equal(result.status, 201);
      assert.equal(result.body, "stored\n");
      assert.equal(result.sent, total);
      assert.equal(result.rstCode, http2.constants.NGHTTP2_NO_ERROR);
      assert.equal(await Promise.race([sessionError, new Promise((r) => setTimeout(r, 100, null))]), null, "the session had no error");
    } finally {
      await new Promise<void>((resolve) => session.close(() => resolve()));
      await Promise.all([sluice.close(), early.close()]);
    }
  });

  test("plain HTTP/2 with prior knowledge (h2c) in reverse mode", { skip: needs("curl", "curl") }, async () => {
    const origin = await startOrigin();
    const sluice = await startSluice({ set: { mode: `reverse:${origin.url}` } });
    try {
      // One URL per curl: curl 7.88 cannot reuse an h2c connection (it fails the same way against
      // Node's own h2c server); several streams on one connection are checked with Node's client.
      const r = await run("curl", [...CURL, "--http2-prior-knowledge", "-w", "\n%{http_version}", `http://127.0.0.1:${sluice.port}/h2c`]);
      assert.equal(r.code, 0, r.stderr);
      const lines = r.stdout.split("\n");
      assert.equal(JSON.parse(lines[0]!).url, "/h2c");
      assert.equal(lines[1], "2");
      const session = http2.connect(`http://127.0.0.1:${sluice.port}`);
      try {
        const get = (path: string) =>
          new Promise<string>((resolve, reject) => {
            const s = session.request({ ":path": path });
            let body = "";
            s.setEncoding("utf8");
            s.on("data", (d: string) => (body += d));
            s.on("end", () => resolve(body));
            s.on("error", reject);
          });
        const bodies = await Promise.all([get("/h2c/a"), get("/h2c/b"), get("/h2c/c")]);
        assert.deepEqual(bodies.map((b) => JSON.parse(b).url), ["/h2c/a", "/h2c/b", "/h2c/c"]);
      } finally {
        session.destroy();
      }
      const flows = await sluice.waitForFlows(4);
      assert.ok(flows.every((f) => f.request.httpVersion === "HTTP/2.0"));
    } finally {
      await Promise.all([sluice.close(), origin.close()]);
    }
  });

  test("WebSocket echo through reverse mode, messages recorded on the flow", async () => {
    const origin = await startOrigin({ websocket: true });
    const sluice = await startSluice({ set: { mode: `reverse:${origin.url}` } });
    try {
      const ws = new WebSocket(`ws://127.0.0.1:${sluice.port}/chat`, ["echo"]);
      const got: string[] = [];
      await new Promise<void>((resolve, reject) => {
        ws.on("open", () => {
          assert.equal(ws.protocol, "echo", "subprotocol chosen by the server reaches the client");
          ws.send("hello");
          ws.send(Buffer.from([1, 2, 3]), { binary: true });
        });
        ws.on("message", (data, isBinary) => {
          got.push(isBinary ? `bin:${(data as Buffer).length}` : data.toString());
          if (got.length === 2) ws.send("close-please");
        });
        ws.on("close", (code) => {
          assert.equal(code, 4000);
          resolve();
        });
        ws.on("error", reject);
      });
      assert.deepEqual(got, ["hello", "bin:3"]);
      const [flow] = await sluice.waitForFlows(1);
      await waitFor(() => flow!.websocket?.closeCode != null);
      const msgs = flow!.websocket!.messages;
      // Each direction keeps its order; how the two directions interleave is timing.
      const side = (fromClient: boolean) => msgs.filter((m) => m.fromClient === fromClient).map((m) => `${m.type}:${m.content.toString("utf8")}`);
      assert.deepEqual(side(true), ["1:hello", "2:\u0001\u0002\u0003", "1:close-please"]);
      assert.deepEqual(side(false), ["1:hello", "2:\u0001\u0002\u0003"]);
      assert.equal(flow!.response!.statusCode, 101);
      assert.equal(flow!.websocket!.closeCode, 4000);
      assert.equal(flow!.websocket!.closedByClient, false);
    } finally {
      await Promise.all([sluice.close(), origin.close()]);
    }
  });
});

describe("WebSocket in regular mode", () => {
  test("wss through CONNECT with interception: echo works and the messages are on the flow", async () => {
    const origin = await startOrigin({ tls: true, websocket: true });
    const sluice = await startSluice();
    try {
      const ws = new WebSocket(`wss://127.0.0.1:${origin.port}/secure-chat`, ["echo"], { agent: tunnelAgent(sluice.port, readFileSync(sluice.caCert, "utf8")) });
      const reply = await new Promise<string>((resolve, reject) => {
        ws.once("open", () => ws.send("through CONNECT"));
        ws.once("message", (data) => resolve(data.toString()));
        ws.once("error", reject);
      });
      assert.equal(reply, "through CONNECT");
      ws.close();
      const [flow] = await sluice.waitForFlows(1);
      assert.equal(flow!.request.url, `https://127.0.0.1:${origin.port}/secure-chat`);
      assert.equal(flow!.response!.statusCode, 101);
      assert.equal(flow!.clientConn.tls, true, "the client's TLS was terminated by sluice");
      await waitFor(() => (flow!.websocket?.messages.length ?? 0) >= 2);
      assert.deepEqual(flow!.websocket!.messages.slice(0, 2).map((m) => [m.fromClient, m.content.toString()]), [[true, "through CONNECT"], [false, "through CONNECT"]]);
    } finally {
      await Promise.all([sluice.close(), origin.close()]);
    }
  });
});

describe("upstream mode", { skip: needs("curl", "curl") }, () => {
  test("chains through another proxy for HTTP and HTTPS", async () => {
    const [origin, secure] = await Promise.all([startOrigin(), startOrigin({ tls: true })]);
    const next = await startSluice();
    const first = await startSluice({ set: { mode: `upstream:http://127.0.0.1:${next.port}`, ssl_insecure: "true" } });
    try {
      const a = await run("curl", [...CURL, "-x", first.url, `${origin.url}/via-plain`]);
      assert.equal(a.code, 0, a.stderr);
      assert.equal(JSON.parse(a.stdout).url, "/via-plain");
      const b = await run("curl", [...CURL, "--cacert", first.caCert, "-x", first.url, `${secure.url}/via-tls`]);
      assert.equal(b.code, 0, b.stderr);
      assert.equal(JSON.parse(b.stdout).url, "/via-tls");
      const seen = await next.waitForFlows(2);
      assert.deepEqual(seen.map((f) => f.request.path).sort(), ["/via-plain", "/via-tls"]);
      const [f] = await first.waitForFlows(2);
      assert.equal(f!.serverConn.via, `upstream:http://127.0.0.1:${next.port}`);
    } finally {
      await Promise.all([first.close(), next.close(), origin.close(), secure.close()]);
    }
  });
});

describe("certificate authority", () => {
  test("CA files: key+cert 0600, PEM, CER, P12; leaf certificates with the right SAN and short validity", async () => {
    const sluice = await startSluice();
    try {
      const files = sluice.master.ca.files;
      assert.equal(statSync(files.keyAndCert).mode & 0o777, 0o600);
      for (const f of [files.certPem, files.certCer, files.p12]) assert.ok(existsSync(f), f);
      const caCert = new X509Certificate(readFileSync(files.certPem));
      assert.ok(caCert.ca);
      assert.deepEqual(new X509Certificate(readFileSync(files.certCer)).fingerprint256, caCert.fingerprint256);
      const dns = new X509Certificate(sluice.master.ca.leafCertFor("s3.eu-west-1.amazonaws.com"));
      assert.equal(dns.subjectAltName, "DNS:s3.eu-west-1.amazonaws.com");
      assert.ok(dns.verify(caCert.publicKey));
      const ip = new X509Certificate(sluice.master.ca.leafCertFor("127.0.0.1"));
      assert.equal(ip.subjectAltName, "IP Address:127.0.0.1");
      const days = (Date.parse(dns.validTo) - Date.parse(dns.validFrom)) / 86400_000;
      assert.ok(days < 200, `leaf valid ${days} days`);
      const run2 = await startSluice();
      assert.equal(readFileSync(run2.master.ca.files.certPem, "utf8"), readFileSync(files.certPem, "utf8"), "CA reused on later runs");
      await run2.close();
    } finally {
      await sluice.close();
    }
  });
});

/** An origin that answers at once, before a request body has arrived, then drains the body as Node's server does. */
async function startEarlyAnswerOrigin(): Promise<{ url: string; port: number; close(): Promise<void> }> {
  const server = http.createServer((req, res) => {
    res.writeHead(201, { "content-type": "text/plain" }).end("stored\n");
    req.resume();
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const port = (server.address() as net.AddressInfo).port;
  return {
    url: `http://127.0.0.1:${port}`,
    port,
    close: () => {
      server.closeAllConnections();
      return new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

export async function freePort(): Promise<number> {
  const s = net.createServer();
  await new Promise<void>((r) => s.listen(0, "127.0.0.1", r));
  const port = (s.address() as net.AddressInfo).port;
  await new Promise<void>((r) => s.close(() => r()));
  return port;
}

function rawExchange(port: number, data: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const s = net.connect(port, "127.0.0.1", () => s.write(data));
    const chunks: Buffer[] = [];
    s.on("data", (c) => chunks.push(c));
    s.on("end", () => resolve(Buffer.concat(chunks).toString()));
    s.on("error", reject);
    s.setTimeout(5000, () => {
      s.destroy();
      resolve(Buffer.concat(chunks).toString());
    });
  });
}

export async function waitFor(cond: () => boolean, timeoutMs = 5000): Promise<void> {
  const start = Date.now();
  while (!cond()) {
    if (Date.now() - start > timeoutMs) throw new Error("condition not met in time");
    await new Promise((r) => setTimeout(r, 20));
  }
}
