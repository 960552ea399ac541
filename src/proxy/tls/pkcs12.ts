/**
 * Certificate-only PKCS#12 files (RFC 7292), assembled from the certificates' DER as they are:
 * node-forge's writer parses every certificate, and it can parse only RSA ones, so a CA with an
 * ECDSA key (or an ECDSA root in a trust store) could not be written with it.
 *
 * What mitmproxy and node-forge write for a certificate bundle with no password: one unencrypted
 * SafeContents of certificate bags, each with a friendly name (and a localKeyId, the SHA-1 of the
 * certificate), and a MAC keyed by no password. Java's trust stores add Oracle's "trusted
 * key usage" attribute to each bag, without which the JVM does not trust a certificate-only entry.
 */
import { createHash } from "node:crypto";
import type forgeNs from "node-forge";
import { lazyModule } from "../../core/lazy-module.js";

const OID = {
  data: "1.2.840.113549.1.7.1",
  certBag: "1.2.840.113549.1.12.10.1.3",
  x509Certificate: "1.2.840.113549.1.9.22.1",
  friendlyName: "1.2.840.113549.1.9.20",
  localKeyId: "1.2.840.113549.1.9.21",
  oracleTrustedKeyUsage: "2.16.840.1.113894.746875.1.1",
  anyExtendedKeyUsage: "2.5.29.37.0",
  sha1: "1.3.14.3.2.26",
};

/** node-forge, for its DER encoder and the PKCS#12 key derivation (see core/lazy-module). */
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

export interface CertificateBundleOptions {
  /**
   * The MAC's password; null for none, as node-forge and mitmproxy write `-cert.p12` (the key is
   * derived from no bytes at all, where "" would derive it from a lone terminator; OpenSSL
   * accepts both as "no password", node-forge's reader only the first).
   */
  password: string | null;
  /** Mark each certificate trusted for Java (Oracle's trusted key usage attribute). */
  javaTrust?: boolean;
  /** The MAC's iteration count (node-forge writes 2048, keytool 10,000). */
  iterations?: number;
}

/** The PKCS#12 bytes of a bundle holding `certs` (DER), each under `names[i]`. */
export function certificateOnlyPkcs12(certs: Buffer[], names: string[], o: CertificateBundleOptions): Buffer {
  const bags = certs.map((cert, i) => {
    const attributes = [seq([oid(OID.friendlyName), set([bmp(names[i]!)])])];
    if (o.javaTrust) attributes.push(seq([oid(OID.oracleTrustedKeyUsage), set([oid(OID.anyExtendedKeyUsage)])]));
    else attributes.unshift(seq([oid(OID.localKeyId), set([octets(createHash("sha1").update(cert).digest().toString("binary"))])]));
    return seq([oid(OID.certBag), explicit0(seq([oid(OID.x509Certificate), explicit0(octets(cert.toString("binary")))])), set(attributes)]);
  });
  const authSafe = seq([seq([oid(OID.data), explicit0(octets(der(seq(bags))))])]);
  const authSafeDer = der(authSafe);

  // MacData: HMAC-SHA1 keyed by the PKCS#12 KDF (RFC 7292 appendix B), as every reader checks it.
  const salt = forge().random.getBytesSync(8);
  const iterations = o.iterations ?? 2048;
  const macKey = forge().pkcs12.generateKey(o.password, forge().util.createBuffer(salt), 3, iterations, 20);
  const hmac = forge().hmac.create();
  hmac.start("sha1", macKey);
  hmac.update(authSafeDer);
  const macData = seq([seq([seq([oid(OID.sha1), asn1().create(asn1().Class.UNIVERSAL, asn1().Type.NULL, false, "")]), octets(hmac.digest().getBytes())]), octets(salt), int(iterations)]);

  const pfx = seq([int(3), seq([oid(OID.data), explicit0(octets(authSafeDer))]), macData]);
  return Buffer.from(der(pfx), "binary");
}
