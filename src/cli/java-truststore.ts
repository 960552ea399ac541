/**
 * A PKCS#12 trust store for the JVM (javax.net.ssl.trustStore): the same certificates as the CA
 * bundle (the system's roots plus sluice's CA), so Java clients trust sluice and still reach hosts
 * that pass through untouched.
 *
 * Java only treats a certificate-only PKCS#12 entry as trusted when its bag carries Oracle's
 * "trusted key usage" attribute (what keytool writes; OpenSSL 3.2 added `-jdktrust` for it), so
 * the file is assembled by proxy/tls/pkcs12.ts: node-forge's writer has no way to add that
 * attribute, and it parses every certificate, which fails on ECDSA roots.
 */
import { chmodSync, renameSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { certificateOnlyPkcs12 } from "../proxy/tls/pkcs12.js";

/** The password Java's tools default to; the store holds only public certificates. */
export const JAVA_TRUSTSTORE_PASSWORD = "changeit";

/** The DER of each certificate in a PEM text, in order. */
export function pemCertificates(pem: string): Buffer[] {
  const out: Buffer[] = [];
  for (const m of pem.matchAll(/-----BEGIN CERTIFICATE-----([\s\S]*?)-----END CERTIFICATE-----/g)) out.push(Buffer.from(m[1]!.replace(/\s+/g, ""), "base64"));
  return out;
}

/** The PKCS#12 bytes of a trust store holding `certs` (DER), each under `aliases[i]`. */
export function javaTrustStore(certs: Buffer[], aliases: string[], password = JAVA_TRUSTSTORE_PASSWORD): Buffer {
  return certificateOnlyPkcs12(certs, aliases, { password, javaTrust: true, iterations: 10_000 });
}

/**
 * Writes confdir/sluice-ca-truststore.p12 from the CA bundle's PEM (sluice's CA last, under the
 * alias `sluice-ca`); returns its path.
 */
export function writeJavaTrustStore(confdir: string, bundlePem: string): string {
  const certs = pemCertificates(bundlePem);
  const aliases = certs.map((_, i) => (i === certs.length - 1 ? "sluice-ca" : `system-root-${i + 1}`));
  const path = join(confdir, "sluice-ca-truststore.p12");
  const tmp = `${path}.${process.pid}.tmp`;
  writeFileSync(tmp, javaTrustStore(certs, aliases), { mode: 0o644 });
  chmodSync(tmp, 0o644);
  renameSync(tmp, path);
  return path;
}
