/**
 * sluice's certificate authority: generated once in the confdir, then used to sign leaf
 * certificates per host on the fly.
 *
 * Keys come from Node's native crypto (RSA generation in pure JS takes seconds); node-forge builds
 * and signs the certificates and writes the PKCS#12 bundle, which Node's crypto cannot do.
 */
import { generateKeyPairSync, randomBytes, createPrivateKey, X509Certificate } from "node:crypto";
import { existsSync, mkdirSync, readFileSync, writeFileSync, chmodSync, statSync } from "node:fs";
import { isIP } from "node:net";
import { join } from "node:path";
import { createSecureContext, type SecureContext } from "node:tls";
import forge from "node-forge";

export const CA_BASENAME = "sluice-ca";

export interface CaFiles {
  /** Key and certificate in one PEM, mode 0600: what sluice loads. */
  keyAndCert: string;
  /** Certificate only, PEM: what clients trust. */
  certPem: string;
  /** Certificate only, DER (.cer): for Windows and Android. */
  certCer: string;
  /** Certificate and key, PKCS#12 without password: for browsers and Java keystores. */
  p12: string;
}

export function caFilesIn(confdir: string): CaFiles {
  return {
    keyAndCert: join(confdir, `${CA_BASENAME}.pem`),
    certPem: join(confdir, `${CA_BASENAME}-cert.pem`),
    certCer: join(confdir, `${CA_BASENAME}-cert.cer`),
    p12: join(confdir, `${CA_BASENAME}-cert.p12`),
  };
}

/** Leaf validity stays under 200 days: browsers and Apple platforms refuse longer ones. */
const LEAF_VALIDITY_DAYS = 190;
const CA_VALIDITY_YEARS = 10;
const LEAF_CACHE_SIZE = 1000;

export class CertificateAuthority {
  readonly files: CaFiles;
  readonly certPem: string;
  private readonly caCert: forge.pki.Certificate;
  private readonly caKey: forge.pki.rsa.PrivateKey;
  /** One key for every leaf, as mitmproxy does: generating a key per host would cost ~50 ms each. */
  /** PEM key shared by every leaf (also what tests use to stand up TLS origins). */
  readonly leafKeyPem: string;
  private readonly leafPublicKey: forge.pki.rsa.PublicKey;
  private readonly contexts = new Map<string, SecureContext>();
  private readonly leafPems = new Map<string, string>();

  private constructor(files: CaFiles, keyPem: string, certPem: string) {
    this.files = files;
    this.certPem = certPem;
    this.caCert = forge.pki.certificateFromPem(certPem);
    this.caKey = forge.pki.privateKeyFromPem(keyPem) as forge.pki.rsa.PrivateKey;
    const leaf = generateKeyPairSync("rsa", { modulusLength: 2048 });
    this.leafKeyPem = leaf.privateKey.export({ type: "pkcs1", format: "pem" }).toString();
    this.leafPublicKey = forge.pki.publicKeyFromPem(leaf.publicKey.export({ type: "spki", format: "pem" }).toString()) as forge.pki.rsa.PublicKey;
  }

  /** Loads the CA from `confdir`, creating it (and the folder) on first run. */
  static loadOrCreate(confdir: string, log?: (msg: string) => void): CertificateAuthority {
    const files = caFilesIn(confdir);
    if (!existsSync(files.keyAndCert)) {
      mkdirSync(confdir, { recursive: true, mode: 0o700 });
      createCaFiles(files);
      log?.(`created a new certificate authority in ${confdir}: trust ${files.certPem} (see \`sluice ca\`)`);
    }
    let text: string;
    try {
      text = readFileSync(files.keyAndCert, "utf8");
    } catch (err) {
      throw new Error(`cannot read the CA file ${files.keyAndCert}: ${(err as Error).message}`);
    }
    const keyPem = /-----BEGIN (?:RSA )?PRIVATE KEY-----[\s\S]+?-----END (?:RSA )?PRIVATE KEY-----/.exec(text)?.[0];
    const certPem = /-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/.exec(text)?.[0];
    if (!keyPem || !certPem) {
      throw new Error(`${files.keyAndCert} must hold a private key and a certificate in PEM; move it away to have sluice create a new CA`);
    }
    const mode = statSync(files.keyAndCert).mode & 0o777;
    if (mode & 0o077) {
      chmodSync(files.keyAndCert, 0o600);
      log?.(`tightened permissions of ${files.keyAndCert} to 0600 (it holds the CA's private key)`);
    }
    // forge reads PKCS#1 and PKCS#8 alike only for RSA; normalise through Node.
    const pkcs1 = createPrivateKey(keyPem).export({ type: "pkcs1", format: "pem" }).toString();
    return new CertificateAuthority(files, pkcs1, certPem + "\n");
  }

  /** A TLS context with a leaf certificate for `host` (DNS name or IP), cached. */
  secureContextFor(host: string): SecureContext {
    const name = host.toLowerCase();
    let ctx = this.contexts.get(name);
    if (ctx) {
      // Re-insert to keep the map in least-recently-used order.
      this.contexts.delete(name);
      this.contexts.set(name, ctx);
      return ctx;
    }
    const certPem = this.leafCertFor(name);
    ctx = createSecureContext({ key: this.leafKeyPem, cert: certPem + this.certPem });
    this.contexts.set(name, ctx);
    if (this.contexts.size > LEAF_CACHE_SIZE) this.contexts.delete(this.contexts.keys().next().value!);
    return ctx;
  }

  /** PEM leaf certificate for `host`, signed by the CA (cached with the context). */
  leafCertFor(host: string): string {
    const cached = this.leafPems.get(host);
    if (cached) return cached;
    const cert = forge.pki.createCertificate();
    cert.publicKey = this.leafPublicKey;
    cert.serialNumber = serialNumber();
    const notBefore = new Date(Date.now() - 2 * 86400_000); // tolerate client clock skew
    const notAfter = new Date(notBefore.getTime() + LEAF_VALIDITY_DAYS * 86400_000);
    cert.validity.notBefore = notBefore;
    cert.validity.notAfter = notAfter;
    const cn = host.length <= 64 ? host : host.slice(0, 64);
    cert.setSubject([{ name: "commonName", value: cn }, { name: "organizationName", value: "sluice" }]);
    cert.setIssuer(this.caCert.subject.attributes);
    const altName = isIP(host) ? { type: 7, ip: host } : { type: 2, value: host };
    cert.setExtensions([
      { name: "basicConstraints", cA: false, critical: true },
      { name: "keyUsage", digitalSignature: true, keyEncipherment: true, critical: true },
      { name: "extKeyUsage", serverAuth: true },
      { name: "subjectAltName", altNames: [altName] },
      { name: "subjectKeyIdentifier" },
      { name: "authorityKeyIdentifier", keyIdentifier: this.caCert.generateSubjectKeyIdentifier().getBytes() },
    ]);
    cert.sign(this.caKey, forge.md.sha256.create());
    const pem = forge.pki.certificateToPem(cert);
    this.leafPems.set(host, pem);
    if (this.leafPems.size > LEAF_CACHE_SIZE) this.leafPems.delete(this.leafPems.keys().next().value!);
    return pem;
  }

  /** Subject, fingerprint and validity for `sluice ca`. */
  describe(): { subject: string; fingerprint256: string; validTo: string } {
    const x = new X509Certificate(this.certPem);
    return { subject: x.subject.replace(/\n/g, ", "), fingerprint256: x.fingerprint256, validTo: x.validTo };
  }
}

function serialNumber(): string {
  // Positive 128-bit serial: clear the top bit so DER does not read it as negative.
  const b = randomBytes(16);
  b[0]! &= 0x7f;
  return b.toString("hex");
}

function createCaFiles(files: CaFiles): void {
  const { privateKey, publicKey } = generateKeyPairSync("rsa", { modulusLength: 2048 });
  const keyPem = privateKey.export({ type: "pkcs1", format: "pem" }).toString();
  const key = forge.pki.privateKeyFromPem(keyPem);
  const cert = forge.pki.createCertificate();
  cert.publicKey = forge.pki.publicKeyFromPem(publicKey.export({ type: "spki", format: "pem" }).toString());
  cert.serialNumber = serialNumber();
  const notBefore = new Date(Date.now() - 2 * 86400_000);
  const notAfter = new Date(notBefore);
  notAfter.setFullYear(notAfter.getFullYear() + CA_VALIDITY_YEARS);
  cert.validity.notBefore = notBefore;
  cert.validity.notAfter = notAfter;
  const subject = [
    { name: "commonName", value: "sluice CA" },
    { name: "organizationName", value: "sluice" },
  ];
  cert.setSubject(subject);
  cert.setIssuer(subject);
  cert.setExtensions([
    { name: "basicConstraints", cA: true, critical: true },
    { name: "keyUsage", keyCertSign: true, cRLSign: true, critical: true },
    { name: "extKeyUsage", serverAuth: true, clientAuth: true },
    { name: "subjectKeyIdentifier" },
  ]);
  cert.sign(key, forge.md.sha256.create());
  const certPem = forge.pki.certificateToPem(cert);
  writeFileSync(files.keyAndCert, keyPem + certPem, { mode: 0o600 });
  chmodSync(files.keyAndCert, 0o600);
  writeFileSync(files.certPem, certPem, { mode: 0o644 });
  writeFileSync(files.certCer, Buffer.from(forge.asn1.toDer(forge.pki.certificateToAsn1(cert)).getBytes(), "binary"), { mode: 0o644 });
  // The .p12 carries the private key too (browsers import it that way), so it is 0600 like the key.
  const p12 = forge.pkcs12.toPkcs12Asn1(key, [cert], null, { algorithm: "3des", friendlyName: "sluice CA" });
  writeFileSync(files.p12, Buffer.from(forge.asn1.toDer(p12).getBytes(), "binary"), { mode: 0o600 });
}
