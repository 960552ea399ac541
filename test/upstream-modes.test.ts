/**
 * Upstream mode towards an HTTPS upstream proxy (`upstream:https://…`, TLS verified as for any
 * server), WebSockets through the upstream proxy, and upstream_auth on tunnels that pass TLS
 * through untouched (ignore_hosts).
 */
import { test, describe, before, after } from "node:test";
import assert from "node:assert/strict";
import http from "node:http";
import https from "node:https";
import net from "node:net";
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { WebSocket } from "ws";
import { startSluice } from "./support/sluice.js";
import { startOrigin, testOriginCa, type Origin } from "./support/origins.js";
import { run } from "./support/run.js";
import { CertificateAuthority } from "../src/proxy/tls/ca.js";
import { needs } from "./support/needs.js";

interface Seen {
  method: string;
  url: string;
  proxyAuthorization: string | undefined;
}

interface TestProxy {
  port: number;
  seen: Seen[];
  close(): Promise<void>;
}

/**
 * A small forward proxy built on Node's HTTP server — over TLS when `ca` is given (its certificate
 * signed by that CA) — that records what reaches it: absolute-form requests and CONNECTs.
 */
async function startForwardProxy(ca: CertificateAuthority | null): Promise<TestProxy> {
  const seen: Seen[] = [];
  const server = ca ? https.createServer({ key: ca.leafKeyPem, cert: ca.leafCertFor("127.0.0.1") }) : http.createServer();
  const sockets = new Set<net.Socket>();
  server.on(ca ? "secureConnection" : "connection", (s: net.Socket) => {
    sockets.add(s);
    s.on("close", () => sockets.delete(s));
  });
  server.on("request", (req: http.IncomingMessage, res: http.ServerResponse) => {
    seen.push({ method: req.method ?? "", url: req.url ?? "", proxyAuthorization: req.headers["proxy-authorization"] });
    const headers = { ...req.headers };
    delete headers["proxy-authorization"];
    const out = http.request(req.url!, { method: req.method, headers }, (up) => {
      res.writeHead(up.statusCode ?? 502, up.headers);
      up.pipe(res);
    });
    out.on("error", () => res.destroy());
    req.pipe(out);
  });
  server.on("connect", (req: http.IncomingMessage, client: net.Socket, head: Buffer) => {
    seen.push({ method: "CONNECT", url: req.url ?? "", proxyAuthorization: req.headers["proxy-authorization"] });
    const [host, port] = [req.url!.slice(0, req.url!.lastIndexOf(":")), Number(req.url!.slice(req.url!.lastIndexOf(":") + 1))];
    const server = net.connect(port, host, () => {
      client.write("HTTP/1.1 200 Connection established\r\n\r\n");
      if (head.length) server.write(head);
      server.pipe(client);
      client.pipe(server);
    });
    server.on("error", () => client.destroy());
    client.on("error", () => server.destroy());
    sockets.add(server);
    server.on("close", () => sockets.delete(server));
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  return {
    port: (server.address() as net.AddressInfo).port,
    seen,
    close: () =>
      new Promise<void>((resolve) => {
        for (const s of sockets) s.destroy();
        server.close(() => resolve());
      }),
  };
}

function curl(proxyPort: number, args: string[]) {
  const env = { ...process.env };
  for (const k of Object.keys(env)) if (/^(https?|all|no)_proxy$/i.test(k)) delete env[k];
  return run("curl", ["-sS", "--max-time", "20", "-x", `http://127.0.0.1:${proxyPort}`, ...args], { env, timeoutMs: 30_000 });
}

const basic = (userPass: string) => `Basic ${Buffer.from(userPass).toString("base64")}`;

describe("upstream:https:// — TLS to the upstream proxy", { skip: needs("curl", "curl") }, () => {
  let proxy: TestProxy;
  let plain: Origin;
  let secure: Origin;
  before(async () => {
    proxy = await startForwardProxy(testOriginCa());
    plain = await startOrigin();
    secure = await startOrigin({ tls: true });
  });
  after(async () => {
    await proxy.close();
    await plain.close();
    await secure.close();
  });

  test("plain HTTP (absolute form) and HTTPS (CONNECT) travel over TLS to the proxy, with upstream_auth", async () => {
    // The test proxy's certificate is signed by the origins' CA, which startSluice trusts.
    const sluice = await startSluice({ set: { mode: `upstream:https://127.0.0.1:${proxy.port}`, upstream_auth: "u:pw" } });
    try {
      const a = await curl(sluice.port, [`${plain.url}/over-tls-proxy`]);
      assert.equal(a.code, 0, a.stderr);
      assert.match(a.stdout, /over-tls-proxy/);
      assert.equal(JSON.parse(a.stdout).url, "/over-tls-proxy");
      const b = await curl(sluice.port, ["--cacert", sluice.caCert, `${secure.url}/tunnel`]);
      assert.equal(b.code, 0, b.stderr);
      assert.match(b.stdout, /tunnel/);
      assert.equal(JSON.parse(b.stdout).url, "/tunnel");
      assert.deepEqual(
        proxy.seen.map((s) => [s.method, s.url, s.proxyAuthorization]),
        [
          ["GET", `${plain.url}/over-tls-proxy`, basic("u:pw")],
          ["CONNECT", `127.0.0.1:${secure.port}`, basic("u:pw")],
        ],
      );
      const flows = await sluice.waitForFlows(2);
      assert.ok(flows.every((f) => f.serverConn.via === `upstream:https://127.0.0.1:${proxy.port}`));
    } finally {
      await sluice.close();
    }
  });

  test("an upstream proxy whose certificate is not trusted: one clear 502, nothing sent", async () => {
    const otherCa = CertificateAuthority.loadOrCreate(mkdtempSync(join(tmpdir(), "sluice-other-ca-")));
    const untrusted = await startForwardProxy(otherCa);
    const sluice = await startSluice({ set: { mode: `upstream:https://127.0.0.1:${untrusted.port}` } });
    try {
      const r = await curl(sluice.port, ["-w", "\n%{http_code}", `${plain.url}/x`]);
      assert.match(r.stdout, /502$/);
      assert.match(r.stdout, /TLS handshake with the upstream proxy 127\.0\.0\.1:\d+ failed: the server's certificate is not trusted/);
      assert.equal(untrusted.seen.length, 0);
      // --ssl-insecure applies to the upstream proxy as to any server.
      await sluice.master.options.update({ ssl_insecure: true });
      const ok = await curl(sluice.port, [`${plain.url}/insecure-ok`]);
      assert.equal(JSON.parse(ok.stdout).url, "/insecure-ok");
    } finally {
      await sluice.close();
      await untrusted.close();
    }
  });
});

describe("WebSocket in upstream mode", () => {
  test("the upgrade goes through the upstream proxy (CONNECT), echo works, the flow names the proxy", async () => {
    const proxy = await startForwardProxy(null);
    const origin = await startOrigin({ websocket: true });
    const sluice = await startSluice({ set: { mode: `upstream:http://127.0.0.1:${proxy.port}`, upstream_auth: "ws:pw" } });
    try {
      // The client reaches sluice with CONNECT, then upgrades inside the tunnel.
      const ws = new WebSocket(`ws://127.0.0.1:${origin.port}/chat`, ["echo"], {
        createConnection: ((options: { host?: string; port?: number }, done: (err: Error | null, socket?: net.Socket) => void) => {
          const authority = `${options.host}:${options.port}`;
          const req = http.request({ host: "127.0.0.1", port: sluice.port, method: "CONNECT", path: authority, headers: { host: authority }, agent: false });
          req.once("connect", (res, socket) => (res.statusCode === 200 ? done(null, socket) : done(new Error(`CONNECT answered ${res.statusCode}`))));
          req.once("error", (err) => done(err));
          req.end();
          return undefined;
        }) as unknown as WebSocket.ClientOptions["createConnection"],
      });
      const echoed = await new Promise<string>((resolve, reject) => {
        ws.once("open", () => ws.send("hello upstream"));
        ws.once("message", (data) => resolve(data.toString()));
        ws.once("error", reject);
      });
      assert.equal(echoed, "hello upstream");
      ws.close();
      assert.deepEqual(proxy.seen.map((s) => [s.method, s.url, s.proxyAuthorization]), [["CONNECT", `127.0.0.1:${origin.port}`, basic("ws:pw")]]);
      const flows = await sluice.waitForFlows(1);
      assert.equal(flows[0]!.serverConn.via, `upstream:http://127.0.0.1:${proxy.port}`);
    } finally {
      await sluice.close();
      await origin.close();
      await proxy.close();
    }
  });
});

describe("upstream_auth on passed-through TLS (ignore_hosts) in upstream mode", { skip: needs("curl", "curl") }, () => {
  test("the CONNECT to the upstream proxy carries Proxy-Authorization", async () => {
    const proxy = await startForwardProxy(null);
    const secure = await startOrigin({ tls: true });
    const sluice = await startSluice({ set: { mode: `upstream:http://127.0.0.1:${proxy.port}`, upstream_auth: "pass:through", ignore_hosts: "127\\.0\\.0\\.1" } });
    try {
      // Passed through: curl sees the origin's own certificate, so it trusts the origins' CA.
      const r = await curl(sluice.port, ["--cacert", testOriginCa().files.certPem, `${secure.url}/untouched`]);
      assert.equal(r.code, 0, r.stderr);
      assert.equal(JSON.parse(r.stdout).url, "/untouched");
      assert.deepEqual(proxy.seen.map((s) => [s.method, s.url, s.proxyAuthorization]), [["CONNECT", `127.0.0.1:${secure.port}`, basic("pass:through")]]);
    } finally {
      await sluice.close();
      await secure.close();
      await proxy.close();
    }
  });
});
