/**
 * The CA under concurrency and damage: two processes on one fresh confdir, missing certificate
 * files, loose permissions, the key-bearing PKCS#12; leaves signed natively (ECDSA P-256, RSA for
 * clients that accept no ECDSA), concurrent generations for one host sharing one signing.
 */
import { test, describe, after } from "node:test";
import assert from "node:assert/strict";
import { X509Certificate, createHash } from "node:crypto";
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import net from "node:net";
import tls from "node:tls";
import forge from "node-forge";
import { CertificateAuthority, caFilesIn } from "../src/proxy/tls/ca.js";
import { spawnSluice } from "./support/cli.js";
import { startOrigin, originCaFile, type Origin } from "./support/origins.js";
import { startSluice } from "./support/sluice.js";
import { run } from "./support/run.js";
import { needs } from "./support/needs.js";

const CURL = ["-s", "-S", "--max-time", "20", "--noproxy", ""];

describe("two processes on one fresh confdir", { skip: needs("curl", "curl") }, () => {
  let origin: Origin | null = null;
  after(() => origin?.close());

  test("both serve leaves from the CA on disk (curl --cacert), in every trial", async () => {
    origin = await startOrigin({ tls: true });
    for (let trial = 0; trial < 2; trial++) {
      const confdir = join(mkdtempSync(join(tmpdir(), "sluice-race-")), "conf");
      const args = ["dump", "-p", "0", "--confdir", confdir, "--set", `ssl_verify_upstream_trusted_ca=${originCaFile()}`];
      // Both make an RSA CA key at once: slow on a busy machine, so allow them time to start.
      const [a, b] = await Promise.all([spawnSluice(args, { startTimeoutMs: 90_000 }), spawnSluice(args, { startTimeoutMs: 90_000 })]);
      try {
        const caFile = caFilesIn(confdir).certPem;
        for (const proxy of [a, b]) {
          const r = await run("curl", [...CURL, "--cacert", caFile, "-x", `http://127.0.0.1:${proxy.port}`, `${origin.url}/trial${trial}`]);
          assert.equal(r.code, 0, `trial ${trial}, proxy on ${proxy.port}: ${r.stderr}`);
        }
        const created = [a, b].filter((p) => /created a new certificate authority/.test(p.stderr()));
        assert.equal(created.length, 1, "exactly one process created the CA");
      } finally {
        await Promise.all([a.stop(), b.stop()]);
      }
    }
  });
});

describe("CA files", () => {
  test("missing certificate files beside an existing key are written again; loose key files tightened", () => {
    const confdir = mkdtempSync(join(tmpdir(), "sluice-ca-files-"));
    const first = CertificateAuthority.loadOrCreate(confdir);
    const files = first.files;
    for (const f of [files.certPem, files.certCer, files.p12, files.keyP12]) rmSync(f);
    chmodSync(files.keyAndCert, 0o644);
    const logs: string[] = [];
    const again = CertificateAuthority.loadOrCreate(confdir, (m) => logs.push(m));
    assert.equal(again.certPem, first.certPem, "same CA");
    for (const f of [files.certPem, files.certCer, files.p12, files.keyP12]) assert.ok(existsSync(f), `${f} written again`);
    assert.equal(new X509Certificate(readFileSync(files.certCer)).fingerprint256, new X509Certificate(first.certPem).fingerprint256);
    assert.equal(statSync(files.keyAndCert).mode & 0o777, 0o600);
    assert.equal(statSync(files.keyP12).mode & 0o777, 0o600, "the key-bearing .p12 is private");
    assert.equal(statSync(files.p12).mode & 0o777, 0o644, "the certificate-only .p12 can be handed out");
    assert.match(logs.join("\n"), /wrote the missing .*sluice-ca-cert\.pem/);
    assert.match(logs.join("\n"), /tightened permissions of .*sluice-ca\.pem/);

    chmodSync(files.keyP12, 0o644);
    CertificateAuthority.loadOrCreate(confdir);
    assert.equal(statSync(files.keyP12).mode & 0o777, 0o600, "a loose key .p12 is tightened");
  });

  test("the certificate .p12 holds no key; an old one that did is replaced and the key moves to sluice-ca.p12", () => {
    const confdir = mkdtempSync(join(tmpdir(), "sluice-ca-p12-"));
    const ca = CertificateAuthority.loadOrCreate(confdir);
    const bags = (path: string) => {
      const p12 = forge.pkcs12.pkcs12FromAsn1(forge.asn1.fromDer(readFileSync(path).toString("binary")));
      const keys = [forge.pki.oids.pkcs8ShroudedKeyBag!, forge.pki.oids.keyBag!].flatMap((t) => p12.getBags({ bagType: t })[t] ?? []);
      const certs = p12.getBags({ bagType: forge.pki.oids.certBag! })[forge.pki.oids.certBag!] ?? [];
      return { keys: keys.length, certs: certs.length };
    };
    assert.deepEqual(bags(ca.files.p12), { keys: 0, certs: 1 });
    assert.deepEqual(bags(ca.files.keyP12), { keys: 1, certs: 1 });
    // What earlier sluice versions wrote under the certificate's name: key and certificate.
    writeFileSync(ca.files.p12, readFileSync(ca.files.keyP12), { mode: 0o644 });
    const logs: string[] = [];
    CertificateAuthority.loadOrCreate(confdir, (m) => logs.push(m));
    assert.deepEqual(bags(ca.files.p12), { keys: 0, certs: 1 });
    assert.match(logs.join("\n"), /held the CA's private key; it now holds only the certificate/);
  });

  test("a CA file whose certificate is damaged is refused at start in one line naming the file, not at the first leaf", () => {
    const confdir = mkdtempSync(join(tmpdir(), "sluice-ca-damaged-"));
    const { files } = CertificateAuthority.loadOrCreate(confdir);
    const text = readFileSync(files.keyAndCert, "utf8");
    // The PEM armour stays; the DER inside loses its second half.
    const damaged = text.replace(/(-----BEGIN CERTIFICATE-----\n)([\s\S]+?)(-----END CERTIFICATE-----)/, (_m, begin: string, body: string, end: string) => `${begin}${body.slice(0, body.length >> 1).replace(/\n$/, "")}\n${end}`);
    assert.notEqual(damaged, text);
    writeFileSync(files.keyAndCert, damaged, { mode: 0o600 });
    assert.throws(() => CertificateAuthority.loadOrCreate(confdir), /^Error: the certificate in .*sluice-ca\.pem cannot be read \(.+\); move the file away to have sluice create a new CA$/);
  });
});

describe("a user's own ECDSA CA", { skip: needs("openssl", "openssl") ?? needs("curl", "curl") }, () => {
  test("made with openssl: sluice starts with it, writes the certificate-only .p12, says why there is no key .p12, and curl trusts its leaves", async () => {
    const dir = mkdtempSync(join(tmpdir(), "sluice-ec-ca-"));
    const key = join(dir, "k.pem");
    const cert = join(dir, "c.pem");
    const made = await run("openssl", ["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", key, "-out", cert, "-days", "300", "-subj", "/CN=team EC CA", "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign"]);
    assert.equal(made.code, 0, made.stderr);
    const confdir = join(dir, "conf");
    const files = caFilesIn(confdir);
    mkdirSync(confdir);
    writeFileSync(files.keyAndCert, readFileSync(key, "utf8") + readFileSync(cert, "utf8"), { mode: 0o600 });
    const logs: string[] = [];
    const ca = CertificateAuthority.loadOrCreate(confdir, (m) => logs.push(m));
    assert.equal(new X509Certificate(readFileSync(files.certCer)).subject, "CN=team EC CA");
    // The certificate-only bundle, read by openssl with the empty password as mitmproxy's is.
    const p12 = await run("openssl", ["pkcs12", "-in", files.p12, "-nokeys", "-passin", "pass:"]);
    assert.equal(p12.code, 0, p12.stderr);
    assert.equal(new X509Certificate(p12.stdout.slice(p12.stdout.indexOf("-----BEGIN CERTIFICATE-----"))).fingerprint256, new X509Certificate(ca.certPem).fingerprint256);
    assert.ok(!existsSync(files.keyP12));
    assert.match(logs.join("\n"), /no .*sluice-ca\.p12 .*written for RSA CA keys only, and this CA's key is ec/);
    const leaf = new X509Certificate((await ca.certificateFor("example.com")).certPem);
    assert.ok(leaf.verify(new X509Certificate(ca.certPem).publicKey), "the leaf is signed by the EC CA");

    const origin = await startOrigin({ tls: true });
    const proxy = await spawnSluice(["dump", "-p", "0", "--confdir", confdir, "--set", `ssl_verify_upstream_trusted_ca=${originCaFile()}`]);
    try {
      const r = await run("curl", [...CURL, "--cacert", cert, "-x", `http://127.0.0.1:${proxy.port}`, `${origin.url}/ec`]);
      assert.equal(r.code, 0, r.stderr);
    } finally {
      await proxy.stop();
      await origin.close();
    }
  });
});

describe("leaf certificates", () => {
  test("signed natively: ECDSA P-256 by default, verified by the CA; one signing per host however many ask", async () => {
    const ca = CertificateAuthority.loadOrCreate(mkdtempSync(join(tmpdir(), "sluice-leaf-")));
    const caCert = new X509Certificate(ca.certPem);
    const a = ca.certificateFor("Example.COM");
    const b = ca.certificateFor("example.com");
    assert.equal(a, b, "concurrent requests for one host share one promise");
    const leaf = await a;
    const x = new X509Certificate(leaf.certPem);
    assert.equal(x.publicKey.asymmetricKeyType, "ec");
    assert.equal(x.publicKey.asymmetricKeyDetails?.namedCurve, "prime256v1");
    assert.equal(x.subjectAltName, "DNS:example.com");
    assert.ok(x.verify(caCert.publicKey));
    assert.ok(x.checkIssued(caCert));
    const rsa = new X509Certificate((await ca.certificateFor("example.com", "rsa")).certPem);
    assert.equal(rsa.publicKey.asymmetricKeyType, "rsa");
    assert.ok(rsa.verify(caCert.publicKey));
  });

  test("leaves (DNS names, IPv4, IPv6) carry what the ASN.1 library reads back: issuer, key identifiers, constraints, usages, names", async () => {
    const { AsnConvert } = await import("@peculiar/asn1-schema");
    const x509 = await import("@peculiar/asn1-x509");
    const ca = CertificateAuthority.loadOrCreate(mkdtempSync(join(tmpdir(), "sluice-leaf-")));
    const der = (pem: string) => Buffer.from(pem.replace(/-----[^-]+-----|\s/g, ""), "base64");
    const caCert = AsnConvert.parse(der(ca.certPem), x509.Certificate);
    const extensionOf = <T>(cert: InstanceType<typeof x509.Certificate>, id: string, type: new () => T) => {
      const ext = cert.tbsCertificate.extensions!.find((e) => e.extnID === id)!;
      return { critical: ext.critical, value: AsnConvert.parse(ext.extnValue, type) };
    };
    const caKeyId = Buffer.from(extensionOf(caCert, x509.id_ce_subjectKeyIdentifier, x509.SubjectKeyIdentifier).value.buffer);
    for (const [host, name] of [["a.example.test", { dNSName: "a.example.test" }], ["192.0.2.7", { iPAddress: "192.0.2.7" }], ["2001:db8::1", { iPAddress: "2001:db8::1" }]] as const) {
      const leaf = await ca.certificateFor(host);
      const cert = AsnConvert.parse(der(leaf.certPem), x509.Certificate);
      const tbs = cert.tbsCertificate;
      assert.equal(tbs.version, x509.Version.v3);
      assert.deepEqual(Buffer.from(AsnConvert.serialize(tbs.issuer)), Buffer.from(AsnConvert.serialize(caCert.tbsCertificate.subject)), host);
      const basic = extensionOf(cert, x509.id_ce_basicConstraints, x509.BasicConstraints);
      assert.deepEqual([basic.critical, basic.value.cA], [true, false]);
      const usage = extensionOf(cert, x509.id_ce_keyUsage, x509.KeyUsage);
      assert.deepEqual([usage.critical, usage.value.toNumber()], [true, x509.KeyUsageFlags.digitalSignature | x509.KeyUsageFlags.keyEncipherment]);
      assert.deepEqual([...extensionOf(cert, x509.id_ce_extKeyUsage, x509.ExtendedKeyUsage).value], [x509.id_kp_serverAuth]);
      const keyBits = Buffer.from(tbs.subjectPublicKeyInfo.subjectPublicKey);
      assert.deepEqual(Buffer.from(extensionOf(cert, x509.id_ce_subjectKeyIdentifier, x509.SubjectKeyIdentifier).value.buffer), createHash("sha1").update(keyBits).digest());
      assert.deepEqual(Buffer.from(extensionOf(cert, x509.id_ce_authorityKeyIdentifier, x509.AuthorityKeyIdentifier).value.keyIdentifier!.buffer), caKeyId);
      const names = extensionOf(cert, x509.id_ce_subjectAltName, x509.SubjectAlternativeName).value;
      assert.deepEqual([...names].map((n) => ({ ...(n.dNSName ? { dNSName: n.dNSName } : {}), ...(n.iPAddress ? { iPAddress: n.iPAddress } : {}) })), [name]);
      assert.ok(new X509Certificate(leaf.certPem).verify(new X509Certificate(ca.certPem).publicKey), `${host}: signed by the CA`);
    }
  });

  test("a burst of new names shares a few multi-name leaves, each valid for exactly the names in it", async () => {
    const ca = CertificateAuthority.loadOrCreate(mkdtempSync(join(tmpdir(), "sluice-leaf-")));
    const caCert = new X509Certificate(ca.certPem);
    const hosts = Array.from({ length: 200 }, (_, i) => `h${i}.example.net`);
    const many = await Promise.all(hosts.map((h) => ca.certificateFor(h)));
    const certs = new Set(many.map((l) => l.certPem));
    // One signing (and one TLS context) per batch: 64 names at most per leaf.
    assert.ok(certs.size >= 4 && certs.size <= 8, `${certs.size} certificates for 200 names`);
    assert.equal(new Set(many.map((l) => l.context)).size, certs.size, "one TLS context per certificate");
    const serials = new Set<string>();
    for (const [i, leaf] of many.entries()) {
      const x = new X509Certificate(leaf.certPem);
      serials.add(x.serialNumber);
      assert.ok(x.verify(caCert.publicKey));
      assert.equal(x.checkHost(hosts[i]!), hosts[i], `${hosts[i]} is one of its certificate's names`);
      assert.ok(leaf.names.includes(hosts[i]!));
      assert.equal(x.subjectAltName, leaf.names.map((n) => `DNS:${n}`).join(", "), "exact names only, no wildcard");
      assert.equal(x.checkHost("other.example.net"), undefined);
    }
    assert.equal(serials.size, certs.size, "distinct serials");
    // Once the burst is over, a new name is signed alone again.
    const lone = await ca.certificateFor("lone.example.org");
    assert.deepEqual(lone.names, ["lone.example.org"]);
    assert.equal(new X509Certificate(lone.certPem).subjectAltName, "DNS:lone.example.org");
  });

  test("names arriving one at a time during a burst share a leaf per pacing interval (10 ms), not a leaf each", async () => {
    const ca = CertificateAuthority.loadOrCreate(mkdtempSync(join(tmpdir(), "sluice-leaf-")));
    await ca.certificateFor("first.example.net"); // a leaf was just started: the burst is on
    const started = performance.now();
    const pending = [];
    for (let i = 0; i < 30; i++) {
      pending.push(ca.certificateFor(`t${i}.example.net`));
      await new Promise((resolve) => setTimeout(resolve, 1));
    }
    const span = performance.now() - started;
    const leaves = await Promise.all(pending);
    const certs = new Set(leaves.map((l) => l.certPem));
    // At most one leaf starts per 10 ms, so the names of each interval share one. Without the
    // pacing a leaf was started whenever the previous one was done (~1 ms): one per name or two.
    assert.ok(certs.size <= Math.ceil(span / 10) + 1, `${certs.size} certificates for 30 names arriving over ${span.toFixed(0)} ms`);
    for (const [i, leaf] of leaves.entries()) assert.equal(new X509Certificate(leaf.certPem).checkHost(`t${i}.example.net`), `t${i}.example.net`);
  });

  test("new leaves' first handshakes share one context, each connection presenting the leaf it was made with; a leaf needed again gets its own", async () => {
    const ca = CertificateAuthority.loadOrCreate(mkdtempSync(join(tmpdir(), "sluice-leaf-")));
    const a = await ca.certificateFor("a.example.test");
    const b = await ca.certificateFor("b.example.test");
    assert.notEqual(a.certPem, b.certPem);
    const server = net.createServer();
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    const accepted: net.Socket[] = [];
    let onAccept = () => {};
    server.on("connection", (s) => {
      accepted.push(s);
      onAccept();
    });
    try {
      // Three clients (a, b, then a again) connect; their server sides are made one after the
      // other before any of them handshakes, as a burst of CONNECTs would be.
      const names = ["a.example.test", "b.example.test", "a.example.test"];
      const presented: Promise<string>[] = [];
      for (const name of names) {
        const client = tls.connect({ port: (server.address() as net.AddressInfo).port, host: "127.0.0.1", servername: name, ca: ca.certPem });
        presented.push(
          new Promise((resolve, reject) => {
            client.once("secureConnect", () => {
              resolve(client.getPeerCertificate().subjectaltname ?? "");
              client.destroy();
            });
            client.once("error", reject);
          }),
        );
        const count = accepted.length;
        await new Promise<void>((resolve) => (accepted.length > count ? resolve() : (onAccept = resolve)));
      }
      const first = ca.handshakeContext(a);
      new tls.TLSSocket(accepted[0]!, { isServer: true, secureContext: first });
      const second = ca.handshakeContext(b);
      new tls.TLSSocket(accepted[1]!, { isServer: true, secureContext: second });
      assert.equal(second, first, "a new leaf is loaded into the shared context, not a context of its own");
      const again = ca.handshakeContext(a);
      new tls.TLSSocket(accepted[2]!, { isServer: true, secureContext: again });
      assert.notEqual(again, second, "a leaf needed after another took the shared context gets its own");
      assert.equal(again, a.context);
      assert.equal(ca.handshakeContext(b), second, "the latest leaf keeps using the shared context");
      assert.deepEqual(await Promise.all(presented), ["DNS:a.example.test", "DNS:b.example.test", "DNS:a.example.test"]);
    } finally {
      for (const s of accepted) s.destroy();
      server.close();
    }
  });

  test("a session ticket from a leaf's first handshake (shared context) resumes in the leaf's own context", async () => {
    const ca = CertificateAuthority.loadOrCreate(mkdtempSync(join(tmpdir(), "sluice-leaf-")));
    const a = await ca.certificateFor("a.example.test");
    const served: tls.SecureContext[] = [];
    const sockets: net.Socket[] = [];
    const server = net.createServer((s) => {
      const secureContext = ca.handshakeContext(a);
      served.push(secureContext);
      sockets.push(s);
      new tls.TLSSocket(s, { isServer: true, secureContext }).on("error", () => {});
    });
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    const connect = (session?: Buffer) =>
      new Promise<{ reused: boolean; ticket: Promise<Buffer> }>((resolve, reject) => {
        const client = tls.connect({ port: (server.address() as net.AddressInfo).port, host: "127.0.0.1", servername: "a.example.test", ca: ca.certPem, session });
        sockets.push(client);
        const ticket = new Promise<Buffer>((got) => client.once("session", got));
        client.once("secureConnect", () => resolve({ reused: client.isSessionReused(), ticket }));
        client.once("error", reject);
      });
    try {
      const first = await connect();
      assert.equal(first.reused, false);
      const ticket = await first.ticket;
      await ca.certificateFor("b.example.test").then((b) => ca.handshakeContext(b)); // b takes the shared context
      const second = await connect(ticket);
      assert.notEqual(served[1], served[0], "the second handshake is in a's own context");
      assert.equal(second.reused, true, "the ticket from the shared context is accepted by a's own context");
    } finally {
      for (const s of sockets) s.destroy();
      server.close();
    }
  });

  test("through the proxy each new name's handshake presents its leaf alone, as mitmproxy does, and verifies against the CA file (openssl s_client), one after another and in a burst", { skip: needs("openssl", "openssl") }, async () => {
    const origin = await startOrigin({ tls: true });
    const sluice = await startSluice();
    const port = new URL(origin.url).port;
    const handshake = async (name: string) => {
      const args = ["s_client", "-proxy", `127.0.0.1:${sluice.port}`, "-connect", `127.0.0.1:${port}`, "-servername", name, "-CAfile", sluice.caCert, "-verify_hostname", name, "-showcerts"];
      const r = await run("openssl", args, { timeoutMs: 20_000 });
      const chain = [...r.stdout.matchAll(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g)].map((m) => new X509Certificate(m[0]));
      assert.match(r.stdout, /Verify return code: 0 \(ok\)/, `${name}: ${r.stdout.slice(-400)}${r.stderr}`);
      assert.equal(chain.length, 1, `${name}: ${chain.length} certificates sent`);
      assert.ok(chain[0]!.checkHost(name), `${name}: the leaf names ${chain[0]!.subjectAltName}`);
      assert.ok(chain[0]!.checkIssued(new X509Certificate(readFileSync(sluice.caCert))), `${name}: issued by the CA on disk`);
    };
    try {
      for (let i = 0; i < 4; i++) await handshake(`one-${i}.example.test`);
      await Promise.all(Array.from({ length: 8 }, (_, i) => handshake(`burst-${i}.example.test`)));
      await handshake("one-0.example.test");
    } finally {
      await Promise.all([sluice.close(), origin.close()]);
    }
  });

  test("curl gets an ECDSA leaf, or an RSA one when its ClientHello offers no ECDSA", { skip: needs("curl", "curl") }, async () => {
    const origin = await startOrigin({ tls: true });
    const sluice = await startSluice();
    try {
      let r = await run("curl", [...CURL, "--cacert", sluice.caCert, "-x", sluice.url, `${origin.url}/ecdsa`]);
      assert.equal(r.code, 0, r.stderr);
      r = await run("curl", [...CURL, "--tls-max", "1.2", "--ciphers", "ECDHE-RSA-AES128-GCM-SHA256", "--cacert", sluice.caCert, "-x", sluice.url, `${origin.url}/rsa`]);
      assert.equal(r.code, 0, r.stderr);
      const flows = await sluice.waitForFlows(2);
      const keyOf = (path: string) => new X509Certificate(flows.find((f) => f.request.path === path)!.clientConn.certificateList[0]!).publicKey.asymmetricKeyType;
      assert.equal(keyOf("/ecdsa"), "ec");
      assert.equal(keyOf("/rsa"), "rsa");
    } finally {
      await Promise.all([sluice.close(), origin.close()]);
    }
  });
});
