/**
 * mitmproxy's connection and TLS options — body_size_limit, upstream_auth, client_certs, --certs,
 * tls_version_client_min, connection_strategy, --no-http2, readfile_filter, hardump — through
 * sluice and, where 8.1.1 has the option, through mitmdump with the same command line.
 */
import { test, describe, before, after } from "node:test";
import assert from "node:assert/strict";
import http from "node:http";
import https from "node:https";
import net from "node:net";
import { mkdirSync, mkdtempSync, readFileSync, writeFileSync, copyFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { spawnSluice, freePort, SLUICE_BIN } from "./support/cli.js";
import { run } from "./support/run.js";
import { echo, startOrigin, originCaFile, testOriginCa, type Origin } from "./support/origins.js";
import { curlVia, mitmdumpMissing, startMitmdump } from "./support/mitmdump.js";
import { needs } from "./support/needs.js";

const skip = mitmdumpMissing();

interface Proxy {
  name: string;
  port: number;
  ca: string;
  stop(): Promise<unknown>;
}

let confdirForAll: string | null = null;

/** sluice and mitmdump with the same arguments (sluice also trusts the test origins' CA). */
async function bothProxies(args: string[], sluiceOnly: string[] = []): Promise<Proxy[]> {
  // One confdir (one CA) for the file: making a CA per proxy costs seconds on a loaded machine.
  confdirForAll ??= mkdtempSync(join(tmpdir(), "sluice-tlsopt-"));
  const confdir = confdirForAll;
  const started = await Promise.allSettled([
    spawnSluice(["dump", "-p", "0", "--confdir", confdir, "--set", `ssl_verify_upstream_trusted_ca=${originCaFile()}`, ...sluiceOnly, ...args], {}),
    startMitmdump(["--set", "ssl_insecure=true", ...args]),
  ]);
  const [s, m] = started.map((r) => (r.status === "fulfilled" ? r.value : null)) as [Awaited<ReturnType<typeof spawnSluice>> | null, Awaited<ReturnType<typeof startMitmdump>> | null];
  if (!s || !m) {
    await Promise.all([s?.stop(), m?.stop()]);
    throw started.find((r): r is PromiseRejectedResult => r.status === "rejected")!.reason;
  }
  return [
    { name: "sluice", port: s.port, ca: join(confdir, "sluice-ca-cert.pem"), stop: () => s.stop() },
    { name: "mitmdump", port: m.port, ca: m.caCert, stop: () => m.stop() },
  ];
}

function openssl(args: string[]): Promise<void> {
  return run("openssl", args).then((r) => assert.equal(r.code, 0, r.stderr));
}

describe("connection and TLS options against mitmdump 8.1.1", { skip: needs("curl", "curl") ?? skip }, () => {
  let dir: string;
  before(() => {
    dir = mkdtempSync(join(tmpdir(), "sluice-tlsopt-files-"));
  });

  test("body_size_limit: a larger request gets 413, a larger response 502, smaller ones pass", async () => {
    const origin = await startOrigin({ handler: (req, res) => res.end(req.url === "/big" ? "x".repeat(500) : "small") });
    const proxies = await bothProxies(["--set", "body_size_limit=100"]);
    try {
      for (const p of proxies) {
        assert.equal((await curlVia(p.port, `${origin.url}/small`)).status, 200, p.name);
        assert.equal((await curlVia(p.port, `${origin.url}/small`, ["-d", "y".repeat(200)])).status, 413, `${p.name}: request over the limit`);
        assert.equal((await curlVia(p.port, `${origin.url}/small`, ["-H", "Transfer-Encoding: chunked", "-d", "y".repeat(200)])).status, 413, `${p.name}: chunked request over the limit`);
        assert.equal((await curlVia(p.port, `${origin.url}/big`)).status, 502, `${p.name}: response over the limit`);
      }
      assert.equal(origin.requests.filter((r) => r.body.length > 0).length, 0, "no oversized body reached the origin");
    } finally {
      await Promise.all(proxies.map((p) => p.stop()));
      await origin.close();
    }
  });

  test("upstream_auth: Proxy-Authorization to the upstream proxy (plain and CONNECT), Authorization in reverse mode", async () => {
    const seen: { method: string; auth: string | undefined }[] = [];
    const upstream = http.createServer((req, res) => {
      seen.push({ method: req.method!, auth: req.headers["proxy-authorization"] });
      res.end("from upstream proxy");
    });
    upstream.on("connect", (req: http.IncomingMessage, socket: net.Socket) => {
      seen.push({ method: "CONNECT", auth: req.headers["proxy-authorization"] });
      socket.end("HTTP/1.1 403 Forbidden\r\ncontent-length: 0\r\n\r\n");
    });
    await new Promise<void>((r) => upstream.listen(0, "127.0.0.1", r));
    const upPort = (upstream.address() as net.AddressInfo).port;
    const expected = `Basic ${Buffer.from("user:pa:ss").toString("base64")}`;
    const proxies = await bothProxies(["--mode", `upstream:http://127.0.0.1:${upPort}`, "--set", "upstream_auth=user:pa:ss"]);
    try {
      for (const p of proxies) {
        seen.length = 0;
        const plain = await curlVia(p.port, "http://plain.example/x");
        assert.equal(plain.body, "from upstream proxy", p.name);
        await run("curl", ["-sS", "--max-time", "10", "--noproxy", "", "-x", `http://127.0.0.1:${p.port}`, "--cacert", p.ca, "https://tls.example/"]);
        // mitmdump tries a refused CONNECT twice; what matters is that every hop carried the credentials.
        assert.deepEqual([...new Set(seen.map((s) => s.method))], ["GET", "CONNECT"], p.name);
        for (const s of seen) assert.equal(s.auth, expected, `${p.name} ${s.method}`);
      }
    } finally {
      await Promise.all(proxies.map((p) => p.stop()));
      upstream.close();
    }
    const origin = await startOrigin();
    const reverse = await bothProxies(["--mode", `reverse:${origin.url}`, "--set", "upstream_auth=user:pa:ss"]);
    try {
      for (const p of reverse) {
        const r = await run("curl", ["-sS", "--noproxy", "", `http://127.0.0.1:${p.port}/r`]);
        assert.equal(r.code, 0, r.stderr);
        assert.equal(origin.requests.at(-1)!.headers.authorization, expected, p.name);
      }
    } finally {
      await Promise.all(reverse.map((p) => p.stop()));
      await origin.close();
    }
  });

  test("client_certs: a file or a HOST.pem directory gets through to an origin that requires a client certificate", { skip: needs("openssl", "openssl") }, async () => {
    const key = join(dir, "client.key");
    const cert = join(dir, "client.crt");
    await openssl(["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=sluice-test-client", "-days", "2", "-keyout", key, "-out", cert]);
    const pem = join(dir, "client.pem");
    writeFileSync(pem, readFileSync(cert, "utf8") + readFileSync(key, "utf8"));
    const perHost = join(dir, "per-host");
    mkdirSync(perHost);
    copyFileSync(pem, join(perHost, "127.0.0.1.pem"));
    const ca = testOriginCa();
    const server = https.createServer({ key: ca.leafKeyPem, cert: ca.leafCertFor("127.0.0.1"), requestCert: true, rejectUnauthorized: true, ca: readFileSync(cert) }, (req, res) => {
      res.end(`hello ${(req.socket as import("node:tls").TLSSocket).getPeerCertificate().subject.CN}`);
    });
    await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
    const url = `https://127.0.0.1:${(server.address() as net.AddressInfo).port}/`;
    try {
      for (const setting of [pem, perHost]) {
        const proxies = await bothProxies(["--set", `client_certs=${setting}`]);
        try {
          for (const p of proxies) {
            const r = await curlVia(p.port, url, ["--cacert", p.ca]);
            assert.equal(r.body, "hello sluice-test-client", `${p.name} with ${setting}: ${r.body}`);
          }
        } finally {
          await Promise.all(proxies.map((p) => p.stop()));
        }
      }
      const without = await bothProxies([]);
      try {
        for (const p of without) {
          // sluice answers 502 saying why; mitmdump drops the client's connection.
          const r = await curlVia(p.port, url, ["--cacert", p.ca, "--max-time", "5"]);
          assert.doesNotMatch(r.body, /hello/, `${p.name} without a client certificate`);
          if (p.name === "sluice") assert.equal(r.status, 502);
        }
      } finally {
        await Promise.all(without.map((p) => p.stop()));
      }
    } finally {
      server.close();
    }
  });

  test("--certs serves the given certificate for its domain; tls_version_client_min refuses older clients; --no-http2", { skip: needs("openssl", "openssl") }, async () => {
    const key = join(dir, "custom.key");
    const cert = join(dir, "custom.crt");
    await openssl(["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=custom.test", "-addext", "subjectAltName=DNS:custom.test", "-days", "2", "-keyout", key, "-out", cert]);
    const pem = join(dir, "custom.pem");
    writeFileSync(pem, readFileSync(cert, "utf8") + readFileSync(key, "utf8"));
    const origin = await startOrigin({ h2: true });
    const proxies = await bothProxies(["--certs", `custom.test=${pem}`, "--map-remote", `|https://custom\\.test|${origin.url}`, "--set", "tls_version_client_min=TLS1_3", "--no-http2"]);
    try {
      for (const p of proxies) {
        // Only the custom certificate is trusted here: the handshake succeeds only if it is served.
        const custom = await curlVia(p.port, "https://custom.test/c", ["--cacert", cert]);
        assert.equal(custom.status, 200, `${p.name}: ${custom.stderr}`);
        const other = await curlVia(p.port, `${origin.url}/o`, ["--cacert", cert]);
        assert.notEqual(other.code, 0, `${p.name}: other hosts still get generated certificates`);
        const old = await curlVia(p.port, `${origin.url}/o`, ["--cacert", p.ca, "--tls-max", "1.2"]);
        assert.notEqual(old.code, 0, `${p.name}: a TLS 1.2 client is refused`);
        const h1 = await curlVia(p.port, `${origin.url}/o`, ["--cacert", p.ca, "--http2"]);
        assert.equal(h1.status, 200, p.name);
        assert.equal(JSON.parse(h1.body).httpVersion, "1.1", `${p.name}: HTTP/1.1 upstream with --no-http2`);
        assert.match(h1.headers.length ? "HTTP/1.1" : "", /HTTP\/1\.1/);
      }
    } finally {
      await Promise.all(proxies.map((p) => p.stop()));
      await origin.close();
    }
  });

  test("connection_strategy=eager fails the CONNECT itself when the server is unreachable; lazy answers it", async () => {
    const closed = await freePort();
    for (const [strategy, expected] of [["eager", 502], ["lazy", 200]] as const) {
      const proxies = await bothProxies(["--set", `connection_strategy=${strategy}`]);
      try {
        for (const p of proxies) {
          const r = await run("curl", ["-sS", "-o", "/dev/null", "-w", "%{http_connect}", "--max-time", "10", "--noproxy", "", "-x", `http://127.0.0.1:${p.port}`, "-k", `https://127.0.0.1:${closed}/`]);
          assert.equal(Number(r.stdout), expected, `${p.name} ${strategy}: ${r.stderr}`);
        }
      } finally {
        await Promise.all(proxies.map((p) => p.stop()));
      }
    }
  });

  test("readfile_filter loads only matching flows; hardump writes them as HAR on exit; termlog_verbosity", async () => {
    const origin = await startOrigin();
    const confdir = mkdtempSync(join(tmpdir(), "sluice-tlsopt-rf-"));
    const file = join(dir, "capture.mitm");
    const proc = await spawnSluice(["dump", "-p", "0", "--confdir", confdir, "-w", file]);
    for (const p of ["/one", "/two", "/three"]) await curlVia(proc.port, `${origin.url}${p}`);
    await proc.stop();
    await origin.close();
    const har = join(dir, "out.har");
    const r = await run(process.execPath, [SLUICE_BIN, "dump", "-n", "-r", file, "--confdir", confdir, "--set", "readfile_filter=~u /t", "--set", `hardump=${har}`, "--set", "termlog_verbosity=warn"]);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout.trim().split("\n").length, 2, r.stdout);
    assert.equal(r.stderr, "", "termlog_verbosity=warn hides info lines");
    const entries = JSON.parse(readFileSync(har, "utf8")).log.entries as { request: { url: string } }[];
    assert.deepEqual(entries.map((e) => new URL(e.request.url).pathname), ["/two", "/three"]);
    const m = await run("mitmdump", ["-nr", file, "--set", `confdir=${confdir}`, "--set", "readfile_filter=~u /t"]);
    assert.equal(m.code, 0, m.stderr);
    assert.equal(m.stdout.match(/GET http/g)?.length, 2, `mitmdump agrees: ${m.stdout}`);
  });
});

void echo;
