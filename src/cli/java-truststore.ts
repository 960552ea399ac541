/**
 * A PKCS#12 trust store for the JVM (javax.net.ssl.trustStore): the same certificates as the CA
 * bundle (the system's roots plus sluice's CA), so Java clients trust sluice and still reach hosts
 * that pass through untouched.
 *
 * Java only treats a certificate-only PKCS#12 entry as trusted when its bag carries Oracle's
 * "trusted key usage" attribute (what keytool writes; OpenSSL 3.2 added `-jdktrust` for it), so
 * the file is assembled here: node-forge's writer has no way to add that attribute, and it parses
 * every certificate, which fails on ECDSA roots. The certificates go in as the DER they are.
 */
import { chmodSync, renameSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import type forgeNs from "node-forge";
import { lazyModule } from "../core/lazy-module.js";

/** The password Java's tools default to; the store holds only public certificates. */
export const JAVA_TRUSTSTORE_PASSWORD = "changeit";

const OID = {
  data: "1.2.840.113549.1.7.1",
  certBag: "1.2.840.113549.1.12.10.1.3",
  x509Certificate: "1.2.840.113549.1.9.22.1",
  friendlyName: "1.2.840.113549.1.9.20",
  oracleTrustedKeyUsage: "2.16.840.1.113894.746875.1.1",
  anyExtendedKeyUsage: "2.5.29.37.0",
  sha1: "1.3.14.3.2.26",
};

/** node-forge, loaded when a trust store is written (see core/lazy-module). */
const forge = lazyModule<typeof forgeNs>("node-forge");
const asn1 = () => forge().asn1;
const seq = (items: forgeNs.asn1.Asn1[]) => asn1().create(asn1().Class.UNIVERSAL, asn1().Type.SEQUENCE, true, items);
const set = (items: forgeNs.asn1.Asn1[]) => asn1().create(asn1().Class.UNIVERSAL, asn1().Type.SET, true, items);
const oid = (o: string) => asn1().create(asn1().Class.UNIVERSAL, asn1().Type.OID, false, asn1().oidToDer(o).getBytes());
const octets = (bytes: string) => asn1().create(asn1().Class.UNIVERSAL, asn1().Type.OCTETSTRING, false, bytes);
const explicit0 = (inner: forgeNs.asn1.Asn1) => asn1().create(asn1().Class.CONTEXT_SPECIFIC, 0, true, [inner]);
const int = (n: number) => asn1().create(asn1().Class.UNIVERSAL, asn1().Type.INTEGER, false, asn1().integerToDer(n).getBytes());
const der = (node: forgeNs.asn1.Asn1) => asn1().toDer(node).getBytes();

/** A BMPString, the type PKCS#12 friendly names have (forge writes the UTF-16BE itself). */
function bmp(text: string): forgeNs.asn1.Asn1 {
  return asn1().create(asn1().Class.UNIVERSAL, asn1().Type.BMPSTRING, false, text);
}

/** The DER of each certificate in a PEM text, in order. */
export function pemCertificates(pem: string): Buffer[] {
  const out: Buffer[] = [];
  for (const m of pem.matchAll(/-----BEGIN CERTIFICATE-----([\s\S]*?)-----END CERTIFICATE-----/g)) out.push(Buffer.from(m[1]!.replace(/\s+/g, ""), "base64"));
  return out;
}

/** The PKCS#12 bytes of a trust store holding `certs` (DER), each under `aliases[i]`. */
export function javaTrustStore(certs: Buffer[], aliases: string[], password = JAVA_TRUSTSTORE_PASSWORD): Buffer {
  const bags = certs.map((cert, i) =>
    seq([
      oid(OID.certBag),
      explicit0(seq([oid(OID.x509Certificate), explicit0(octets(cert.toString("binary")))])),
      set([
        seq([oid(OID.friendlyName), set([bmp(aliases[i]!)])]),
        seq([oid(OID.oracleTrustedKeyUsage), set([oid(OID.anyExtendedKeyUsage)])]),
      ]),
    ]),
  );
  const safeContents = seq(bags);
  const authSafe = seq([seq([oid(OID.data), explicit0(octets(der(safeContents)))])]);
  const authSafeDer = der(authSafe);

  // MacData: HMAC-SHA1 keyed by the PKCS#12 KDF (RFC 7292 appendix B), as every JDK reads it.
  const salt = forge().random.getBytesSync(8);
  const iterations = 10_000;
  const macKey = forge().pkcs12.generateKey(password, forge().util.createBuffer(salt), 3, iterations, 20);
  const hmac = forge().hmac.create();
  hmac.start("sha1", macKey);
  hmac.update(authSafeDer);
  const macData = seq([seq([seq([oid(OID.sha1), asn1().create(asn1().Class.UNIVERSAL, asn1().Type.NULL, false, "")]), octets(hmac.digest().getBytes())]), octets(salt), int(iterations)]);

  const pfx = seq([int(3), seq([oid(OID.data), explicit0(octets(authSafeDer))]), macData]);
  return Buffer.from(der(pfx), "binary");
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
