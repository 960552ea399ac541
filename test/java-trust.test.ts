/**
 * JVM trust in `sluice env` / `sluice run`: JAVA_TOOL_OPTIONS names the proxy and a PKCS#12 trust
 * store holding the system's roots plus sluice's CA, each entry marked trusted the way Java's
 * keytool marks it. Checked without a JVM: the store is read back with `openssl pkcs12`.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { SLUICE_BIN } from "./support/cli.js";
import { run } from "./support/run.js";
import { needs } from "./support/needs.js";

test("sluice env: JAVA_TOOL_OPTIONS with proxy properties and a PKCS#12 trust store Java accepts", { skip: needs("openssl", "openssl") }, async () => {
  const confdir = mkdtempSync(join(tmpdir(), "sluice-java-"));
  const env = await run(process.execPath, [SLUICE_BIN, "env", "--confdir", confdir, "--attach", "127.0.0.1:9999"]);
  assert.equal(env.code, 0, env.stderr);
  const options = /^export JAVA_TOOL_OPTIONS='([^']+)'$/m.exec(env.stdout)![1]!.split(" ");
  for (const p of ["-Dhttp.proxyHost=127.0.0.1", "-Dhttp.proxyPort=9999", "-Dhttps.proxyHost=127.0.0.1", "-Dhttps.proxyPort=9999", "-Dhttp.nonProxyHosts=", "-Djavax.net.ssl.trustStoreType=PKCS12", "-Djavax.net.ssl.trustStorePassword=changeit"]) {
    assert.ok(options.includes(p), `${p} in ${options.join(" ")}`);
  }
  const store = options.find((o) => o.startsWith("-Djavax.net.ssl.trustStore="))!.split("=")[1]!;
  assert.equal(store, join(confdir, "sluice-ca-truststore.p12"));

  // The MAC verifies with Java's default password (openssl fails otherwise), and every
  // certificate of the PEM bundle is in it.
  const info = await run("openssl", ["pkcs12", "-info", "-nokeys", "-in", store, "-passin", "pass:changeit"]);
  assert.equal(info.code, 0, info.stderr);
  const bundle = readFileSync(/^export AWS_CA_BUNDLE='([^']+)'$/m.exec(env.stdout)![1]!, "utf8");
  const inBundle = (bundle.match(/BEGIN CERTIFICATE/g) ?? []).length;
  const inStore = (info.stdout.match(/BEGIN CERTIFICATE/g) ?? []).length;
  assert.ok(inBundle > 50, "the bundle holds the system's roots");
  assert.equal(inStore, inBundle);
  // Java ignores certificate-only entries without Oracle's trusted-key-usage attribute.
  assert.equal((info.stdout.match(/2\.16\.840\.1\.113894\.746875\.1\.1/g) ?? []).length, inStore);
  // sluice's CA is there under its own alias, byte for byte.
  const caPem = readFileSync(join(confdir, "sluice-ca-cert.pem"), "utf8").trim();
  const entry = info.stdout.slice(info.stdout.indexOf("friendlyName: sluice-ca"));
  const cert = /-----BEGIN CERTIFICATE-----[\s\S]*?-----END CERTIFICATE-----/.exec(entry)![0];
  assert.equal(cert.replace(/\s+/g, ""), caPem.replace(/\s+/g, ""));

  const wrong = await run("openssl", ["pkcs12", "-info", "-nokeys", "-in", store, "-passin", "pass:not-it"]);
  assert.notEqual(wrong.code, 0, "the MAC is real: a wrong password fails");
});
