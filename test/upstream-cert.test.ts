/**
 * upstream_cert (the server's certificate names copied into the certificate sluice shows its
 * client, with connection_strategy=eager as in mitmproxy) and tls_version_server_min/max.
 */
import { test, describe, before, after } from "node:test";
import assert from "node:assert/strict";
import http from "node:http";
import https from "node:https";
import net from "node:net";
import tls from "node:tls";
import { mkdtempSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { startSluice } from "./support/sluice.js";
import { startOrigin, testOriginCa } from "./support/origins.js";
import { run } from "./support/run.js";
import { needs } from "./support/needs.js";

/** The subjectAltName of the certificate sluice presents for `servername` on a CONNECT to `authority`. */
function leafNamesVia(proxyPort: number, authority: string, servername: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const req = http.request({ host: "127.0.0.1", port: proxyPort, method: "CONNECT", path: authority, headers: { host: authority } });
    req.once("connect", (res, socket) => {
      if (res.statusCode !== 200) return reject(new Error(`CONNECT answered ${res.statusCode}`));
      const secure = tls.connect({ socket, servername, rejectUnauthorized: false, ALPNProtocols: ["http/1.1"] });
      secure.once("secureConnect", () => {
        resolve(secure.getPeerCertificate().subjectaltname ?? "");
        secure.destroy();
      });
      secure.once("error", reject);
    });
    req.once("error", reject);
    req.end();
  });
}

describe("upstream_cert", { skip: needs("openssl", "openssl") }, () => {
  let origin: https.Server;
  let port: number;
  before(async () => {
    // A server whose certificate names more than the client will ask for.
    const dir = mkdtempSync(join(tmpdir(), "sluice-upcert-"));
    const r = await run("openssl", ["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-days", "2", "-subj", "/CN=origin.example.test",
      "-addext", "subjectAltName=DNS:localhost,DNS:alt.example.test", "-keyout", join(dir, "key.pem"), "-out", join(dir, "cert.pem")]);
    assert.equal(r.code, 0, r.stderr);
    origin = https.createServer({ key: readFileSync(join(dir, "key.pem")), cert: readFileSync(join(dir, "cert.pem")) }, (_req, res) => res.end("ok"));
    await new Promise<void>((resolve) => origin.listen(0, "127.0.0.1", resolve));
    port = (origin.address() as net.AddressInfo).port;
  });
  after(() => new Promise<void>((resolve) => origin.close(() => resolve())));

  test("eager (default upstream_cert=true): the leaf carries the server's CN and SANs beside the SNI", async () => {
    const sluice = await startSluice({ set: { connection_strategy: "eager", ssl_insecure: "true" } });
    try {
      const names = await leafNamesVia(sluice.port, `127.0.0.1:${port}`, "localhost");
      assert.deepEqual(names.split(", ").sort(), ["DNS:alt.example.test", "DNS:localhost", "DNS:origin.example.test"]);
    } finally {
      await sluice.close();
    }
  });

  test("upstream_cert=false: the leaf has only the SNI name; lazy (sluice's default) likewise", async () => {
    const off = await startSluice({ set: { connection_strategy: "eager", ssl_insecure: "true", upstream_cert: "false" } });
    try {
      assert.equal(await leafNamesVia(off.port, `127.0.0.1:${port}`, "localhost"), "DNS:localhost");
    } finally {
      await off.close();
    }
    const lazy = await startSluice({ set: { ssl_insecure: "true" } });
    try {
      assert.equal(await leafNamesVia(lazy.port, `127.0.0.1:${port}`, "localhost"), "DNS:localhost");
    } finally {
      await lazy.close();
    }
  });
});

describe("tls_version_server_min/max", { skip: needs("curl", "curl") }, () => {
  test("a server that speaks only TLS 1.2 against tls_version_server_min=TLS1_3: one clear 502", async () => {
    const ca = testOriginCa();
    const old = https.createServer({ key: ca.leafKeyPem, cert: ca.leafCertFor("127.0.0.1"), maxVersion: "TLSv1.2" }, (_req, res) => res.end("tls1.2 only"));
    await new Promise<void>((resolve) => old.listen(0, "127.0.0.1", resolve));
    const port = (old.address() as net.AddressInfo).port;
    const modern = await startOrigin({ tls: true });
    const sluice = await startSluice({ set: { tls_version_server_min: "TLS1_3" } });
    try {
      const env = { ...process.env };
      for (const k of Object.keys(env)) if (/^(https?|all|no)_proxy$/i.test(k)) delete env[k];
      const refused = await run("curl", ["-sS", "-x", sluice.url, "--cacert", sluice.caCert, "-w", "\n%{http_code}", `https://127.0.0.1:${port}/`], { env });
      const status = refused.stdout.slice(refused.stdout.lastIndexOf("\n") + 1);
      const body = refused.stdout.slice(0, refused.stdout.lastIndexOf("\n"));
      assert.equal(status, "502", refused.stdout);
      assert.equal(body.trim().split("\n").length, 1, `one line of explanation: ${body}`);
      assert.match(body, new RegExp(`TLS handshake with 127\\.0\\.0\\.1:${port} failed: no TLS version in common with the server .*tls_version_server_min`));
      // The same proxy still reaches a TLS 1.3 server.
      const ok = await run("curl", ["-sS", "-x", sluice.url, "--cacert", sluice.caCert, `${modern.url}/fine`], { env });
      assert.equal(JSON.parse(ok.stdout).url, "/fine");
      // And with the bound lifted, the TLS 1.2 server is reached.
      await sluice.master.options.update({ tls_version_server_min: "TLS1_2" });
      const now = await run("curl", ["-sS", "-x", sluice.url, "--cacert", sluice.caCert, `https://127.0.0.1:${port}/`], { env });
      assert.equal(now.stdout, "tls1.2 only");
    } finally {
      await sluice.close();
      await modern.close();
      await new Promise<void>((resolve) => old.close(() => resolve()));
    }
  });
});
