/**
 * sluice's certificate authority: generated once in the confdir, then used to sign leaf
 * certificates per host on the fly.
 *
 * Certificates are built as ASN.1 structures (`@peculiar/asn1-x509`) and signed by Node's native
 * crypto: a leaf for a new host is signed on the thread pool, never on the event loop, and
 * concurrent requests for the same host share one signing. Leaves use one shared ECDSA P-256 key
 * (TLS handshakes with it cost a fraction of RSA's) or, for clients that accept no ECDSA, one
 * shared RSA key. node-forge is kept only to write the PKCS#12 bundles, which Node cannot.
 *
 * Two processes starting on one fresh confdir must end up with one CA: the CA file is written
 * under a temporary name and linked into place, which fails if another process got there first;
 * the loser then loads the winner's.
 */
import {
  createHash,
  createPrivateKey,
  createPublicKey,
  generateKeyPair,
  generateKeyPairSync,
  randomBytes,
  sign as signSync,
  X509Certificate,
  type KeyObject,
} from "node:crypto";
import { chmodSync, existsSync, linkSync, mkdirSync, readFileSync, renameSync, statSync, unlinkSync, writeFileSync } from "node:fs";
import { isIP } from "node:net";
import { dirname, join, resolve } from "node:path";
import { createSecureContext, type SecureContext } from "node:tls";
import { promisify } from "node:util";
import { sign as signCallback } from "node:crypto";
import type * as Asn1Schema from "@peculiar/asn1-schema";
import type * as Asn1X509 from "@peculiar/asn1-x509";
import type { AlgorithmIdentifier, Extension, Name, SubjectPublicKeyInfo } from "@peculiar/asn1-x509";
import type forgeTypes from "node-forge";
import { certificateOnlyPkcs12 } from "./pkcs12.js";
import { derBitString, derChildren, derExtension, derOid, derRdn, derRead, derSequence, derTlv, derUtcTime } from "./der.js";
import { ipAddressBytes } from "../../core/address-scope.js";
import { lazyModule } from "../../core/lazy-module.js";

export const CA_BASENAME = "sluice-ca";

export interface CaFiles {
  /** Key and certificate in one PEM, mode 0600: what sluice loads. Never hand it out. */
  keyAndCert: string;
  /** Certificate only, PEM: what clients trust. */
  certPem: string;
  /** Certificate only, DER (.cer): for Windows and Android. */
  certCer: string;
  /** Certificate only, PKCS#12 without password: for Windows and Java keystores. */
  p12: string;
  /** Certificate and private key, PKCS#12, mode 0600 (as mitmproxy's `-ca.p12`): never hand it out. */
  keyP12: string;
}

export function caFilesIn(confdir: string): CaFiles {
  return {
    keyAndCert: join(confdir, `${CA_BASENAME}.pem`),
    certPem: join(confdir, `${CA_BASENAME}-cert.pem`),
    certCer: join(confdir, `${CA_BASENAME}-cert.cer`),
    p12: join(confdir, `${CA_BASENAME}-cert.p12`),
    keyP12: join(confdir, `${CA_BASENAME}.p12`),
  };
}

/** Which key a leaf certificate carries. */
export type LeafKeyType = "ecdsa" | "rsa";

/** A leaf certificate for one host, with its key and a TLS context presenting it. */
export interface LeafCertificate {
  /** The certificate's common name: the first of `names`. */
  host: string;
  /**
   * Every name the certificate is valid for (its subjectAltName). Names that arrive while another
   * leaf is being made share the next one (see certificateFor); each is exact, never a wildcard.
   */
  names: string[];
  keyType: LeafKeyType;
  certPem: string;
  keyPem: string;
  /**
   * A TLS context of its own presenting this leaf, made on first use. The proxy's handshakes take
   * `CertificateAuthority.handshakeContext(leaf)` instead, which spares most new leaves this.
   */
  readonly context: SecureContext;
}

/** Leaf validity stays under 200 days: browsers and Apple platforms refuse longer ones. */
const LEAF_VALIDITY_DAYS = 190;
const CA_VALIDITY_YEARS = 10;
const LEAF_CACHE_SIZE = 10_000;
/** Names one leaf certificate carries at most (each adds ~20 bytes to every handshake that serves it). */
const MAX_NAMES_PER_LEAF = 64;
/**
 * New leaves of one key type start at most this often (a full batch goes at once). A new name
 * during a burst of them waits at most this long for its leaf; a lone one does not wait.
 */
const LEAF_PACE_MS = 10;
const DAY_MS = 86_400_000;
/** TLS session ticket keys (48 bytes, Node's format), one set per process for every leaf context. */
const TICKET_KEYS_BYTES = 48;

const OID_CN = "2.5.4.3";
const OID_O = "2.5.4.10";
const SHA256_WITH_RSA = "1.2.840.113549.1.1.11";
const ECDSA_WITH_SHA256 = "1.2.840.10045.4.3.2";
/** DER NULL: RSA signature algorithms carry it as their parameters. */
const DER_NULL = new Uint8Array([0x05, 0x00]).buffer;

const signAsync = promisify(signCallback);

/** node-forge, loaded only to write (or check an old) PKCS#12 bundle (see core/lazy-module). */
const forge = lazyModule<typeof forgeTypes>("node-forge");
/**
 * The ASN.1 library, loaded when the first certificate is built, not at start: with its
 * dependencies it costs ~12 MB of RSS (issue 20: idle RSS ≤ 70 MB), and a proxy that never
 * intercepts TLS never needs it. At start the CA is checked with Node's own parsers.
 */
const asn1X509 = lazyModule<typeof Asn1X509>("@peculiar/asn1-x509");
const asn1Schema = lazyModule<typeof Asn1Schema>("@peculiar/asn1-schema");

interface LeafKey {
  privateKey: KeyObject;
  keyPem: string;
  /** The public key in DER; parsed into ASN.1 (spki) when the first leaf with this key is made. */
  spkiDer: Buffer;
  /** The DER pieces every leaf with this key shares, made on first use. */
  tbsParts?: LeafTbsParts;
}

interface LeafTbsParts {
  version: Buffer;
  signature: Buffer;
  issuer: Buffer;
  organization: Buffer;
  spki: Buffer;
  extensions: Buffer[];
}

/** What every leaf takes from the CA certificate, in DER. */
interface IssuerParts {
  /** The CA's subject Name, which is each leaf's issuer. */
  name: Buffer;
  /** The CA's key identifier, for each leaf's authorityKeyIdentifier. */
  keyId: Buffer;
  signatureAlgorithmDer: Buffer;
}

/** DER contents of the OIDs 2.5.4.3 (commonName), 2.5.4.10 (organizationName), 2.5.29.17 (subjectAltName). */
/** Certificate extensions (RFC 5280 section 4.2.1) and the server-authentication purpose. */
const OID_SUBJECT_KEY_ID = "2.5.29.14";
const OID_KEY_USAGE = "2.5.29.15";
const OID_SUBJECT_ALT_NAME = "2.5.29.17";
const OID_BASIC_CONSTRAINTS = "2.5.29.19";
const OID_AUTHORITY_KEY_ID = "2.5.29.35";
const OID_EXT_KEY_USAGE = "2.5.29.37";
const OID_SERVER_AUTH = "1.3.6.1.5.5.7.3.1";

export class CertificateAuthority {
  readonly files: CaFiles;
  readonly certPem: string;
  private readonly caKey: KeyObject;
  /** The CA's name, key identifier and signature algorithm in ASN.1, made with the first leaf. */
  private issuerParts: IssuerParts | null = null;
  private readonly ecdsaLeafKey: LeafKey;
  private rsaLeafKey: Promise<LeafKey> | null = null;
  /** Finished and in-progress leaves per "keyType host", least recently used first. */
  private readonly leaves = new Map<string, Promise<LeafCertificate>>();
  /** Per key type: names waiting for the next shared leaf, and whether one is being made now. */
  private readonly batches = new Map<LeafKeyType, BatchState>();
  /** Synchronously signed PEMs (leafCertFor), for tools and tests that cannot wait. */
  private readonly syncPems = new Map<string, string>();
  /** Leaves' own TLS contexts, made when a leaf is needed again after its first handshakes. */
  private readonly ownContexts = new WeakMap<LeafCertificate, SecureContext>();
  /** Per key type: the context a new leaf is loaded into for its first handshakes (see handshakeContext). */
  private readonly staging = new Map<LeafKeyType, StagingContext | null>();
  /** Leaves that have been loaded into a staging context once. */
  private readonly staged = new WeakSet<LeafCertificate>();
  /**
   * Shared by every leaf context, so a client's session ticket from a leaf's first handshake (in
   * the staging context) resumes later in the leaf's own context.
   */
  private readonly ticketKeys = randomBytes(TICKET_KEYS_BYTES);

  private constructor(files: CaFiles, caKey: KeyObject, certPem: string) {
    this.files = files;
    this.certPem = certPem;
    this.caKey = caKey;
    // Checked at start with Node's own parsers (the ASN.1 library comes with the first leaf).
    try {
      new X509Certificate(certPem);
    } catch (err) {
      throw new Error(`the certificate in ${files.keyAndCert} cannot be read (${(err as Error).message}); move the file away to have sluice create a new CA`);
    }
    signatureAlgorithmOidFor(caKey);
    this.ecdsaLeafKey = leafKeyFrom(generateKeyPairSync("ec", { namedCurve: "P-256" }).privateKey);
  }

  private get issuer(): IssuerParts {
    if (this.issuerParts) return this.issuerParts;
    // TBSCertificate ::= SEQUENCE { [0] version, serialNumber, signature, issuer, validity,
    //   subject, subjectPublicKeyInfo, [1] issuerUniqueID, [2] subjectUniqueID, [3] extensions }
    const tbs = derChildren(derChildren(derRead(pemToDer(this.certPem)))[0]!);
    const fields = tbs[0]!.tag === 0xa0 ? tbs.slice(1) : tbs;
    const extensions = tbs.find((e) => e.tag === 0xa3);
    let keyId: Buffer | null = null;
    for (const ext of extensions ? derChildren(derChildren(extensions)[0]!) : []) {
      const parts = derChildren(ext);
      if (parts[0]!.whole.equals(derOid(OID_SUBJECT_KEY_ID))) keyId = derRead(parts[parts.length - 1]!.content).content;
    }
    this.issuerParts = {
      name: fields[4]!.whole,
      keyId: keyId ?? keyIdOf(fields[5]!.whole),
      signatureAlgorithmDer: signatureAlgorithmDer(this.caKey),
    };
    return this.issuerParts;
  }


  /** PEM key of the ECDSA leaf certificates (what `leafCertFor` certificates carry). */
  get leafKeyPem(): string {
    return this.ecdsaLeafKey.keyPem;
  }

  /**
   * Loads the CA from `confdir`, creating it (and the folder) on first run. Safe when several
   * processes start on one fresh confdir at once: they all end up with the CA on disk.
   */
  static loadOrCreate(confdir: string, log?: (msg: string) => void): CertificateAuthority {
    try {
      return CertificateAuthority.loadOrCreateIn(confdir, log);
    } catch (err) {
      // A folder sluice cannot create or write (a file in the way, no permission, read-only disk).
      const e = err as NodeJS.ErrnoException;
      if (e.syscall && e.code) throw new Error(`cannot keep the CA in ${confdir}: ${e.message}; choose a folder you can write with --confdir DIR`);
      throw err;
    }
  }

  private static loadOrCreateIn(confdir: string, log?: (msg: string) => void): CertificateAuthority {
    const files = caFilesIn(confdir);
    let created = false;
    if (!existsSync(files.keyAndCert)) {
      makeFolders(confdir, 0o700);
      created = createCaFile(files.keyAndCert);
      if (created) log?.(`created a new certificate authority in ${confdir}: trust ${files.certPem} (see \`sluice ca\`)`);
    }
    let text: string;
    try {
      text = readFileSync(files.keyAndCert, "utf8");
    } catch (err) {
      throw new Error(`cannot read the CA file ${files.keyAndCert}: ${(err as Error).message}`);
    }
    const keyPem = /-----BEGIN (?:RSA |EC )?PRIVATE KEY-----[\s\S]+?-----END (?:RSA |EC )?PRIVATE KEY-----/.exec(text)?.[0];
    const certPem = /-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/.exec(text)?.[0];
    if (!keyPem || !certPem) {
      throw new Error(`${files.keyAndCert} must hold a private key and a certificate in PEM; move it away to have sluice create a new CA`);
    }
    tighten(files.keyAndCert, log);
    const ca = new CertificateAuthority(files, createPrivateKey(keyPem), certPem + "\n");
    ca.writeMissingFiles(created ? undefined : log);
    return ca;
  }

  /**
   * The certificate files clients use are derived from the key file: any that is missing is
   * written again (atomically, by rename), and the key-bearing .p12 is kept at 0600.
   */
  private writeMissingFiles(log?: (msg: string) => void): void {
    const der = pemToDer(this.certPem);
    const missing: string[] = [];
    const write = (path: string, data: string | Buffer, mode: number) => {
      if (existsSync(path)) return;
      writeAtomically(path, data, mode);
      missing.push(path);
    };
    write(this.files.certPem, this.certPem.trim() + "\n", 0o644);
    write(this.files.certCer, der, 0o644);
    if (existsSync(this.files.p12) && p12HasKey(this.files.p12)) {
      // Before this name was certificate-only, sluice put the key in it: move the key to the
      // .p12 whose name says so, and make this one safe to hand out again.
      unlinkSync(this.files.p12);
      log?.(`${this.files.p12} held the CA's private key; it now holds only the certificate, and the key bundle is ${this.files.keyP12}`);
    }
    // Assembled from the DER (any key type): node-forge's writer parses only RSA certificates.
    if (!existsSync(this.files.p12)) write(this.files.p12, certificateOnlyPkcs12([der], [PKCS12_NAME], { password: null }), 0o644);
    if (this.caKey.asymmetricKeyType === "rsa") {
      if (!existsSync(this.files.keyP12)) {
        const forgeKey = forge().pki.privateKeyFromPem(this.caKey.export({ type: "pkcs1", format: "pem" }).toString()) as forgeTypes.pki.rsa.PrivateKey;
        const forgeCert = forge().pki.certificateFromAsn1(forge().asn1.fromDer(der.toString("binary")));
        write(this.files.keyP12, pkcs12(forgeKey, forgeCert), 0o600);
      }
      tighten(this.files.keyP12, log);
    } else if (!existsSync(this.files.keyP12)) {
      log?.(`no ${this.files.keyP12} (CA and key for import elsewhere): it is written for RSA CA keys only, and this CA's key is ${this.caKey.asymmetricKeyType}; its key and certificate are in ${this.files.keyAndCert}`);
    }
    if (missing.length) log?.(`wrote the missing ${missing.join(", ")} from ${this.files.keyAndCert}`);
  }

  /**
   * The leaf certificate for `host` (DNS name or IP): signed on the thread pool the first time,
   * then cached (10,000 hosts, least recently used out). Concurrent calls for one host share one
   * signing. This is what TLS interception and custom-certificate tools call.
   *
   * New DNS names are batched: while one leaf is being made (signature on the thread pool), and
   * until LEAF_PACE_MS after it was started, the names that arrive meanwhile wait and then share
   * one certificate listing all of them (up to MAX_NAMES_PER_LEAF). A burst of new hosts then
   * costs one signing and one certificate load per batch instead of per name, and a lone new name
   * is signed at once, alone, as before. Every name is exact, so each client gets a certificate
   * valid for precisely the name it asked for.
   */
  certificateFor(host: string, keyType: LeafKeyType = "ecdsa"): Promise<LeafCertificate> {
    const name = host.toLowerCase();
    const cacheKey = `${keyType} ${name}`;
    let leaf = this.leaves.get(cacheKey);
    if (leaf) {
      this.leaves.delete(cacheKey);
      this.leaves.set(cacheKey, leaf);
      return leaf;
    }
    leaf = isIP(name) ? this.makeLeaf([name], keyType) : this.batched(name, keyType);
    this.leaves.set(cacheKey, leaf);
    // A failed signing is not cached: the next handshake tries again.
    leaf.catch(() => this.leaves.get(cacheKey) === leaf && this.leaves.delete(cacheKey));
    if (this.leaves.size > LEAF_CACHE_SIZE) this.leaves.delete(this.leaves.keys().next().value!);
    return leaf;
  }

  /**
   * A leaf valid for every one of `names` (DNS names; the first is the common name), cached like
   * single-name leaves: upstream_cert copies a server's names into the certificate for its client.
   */
  certificateForNames(names: string[], keyType: LeafKeyType = "ecdsa"): Promise<LeafCertificate> {
    const unique = [...new Set(names.map((n) => n.toLowerCase()))].slice(0, MAX_NAMES_PER_LEAF);
    if (unique.length === 1) return this.certificateFor(unique[0]!, keyType);
    const cacheKey = `${keyType} ${unique.join(" ")}`;
    let leaf = this.leaves.get(cacheKey);
    if (!leaf) {
      leaf = this.makeLeaf(unique, keyType);
      this.leaves.set(cacheKey, leaf);
      leaf.catch(() => this.leaves.get(cacheKey) === leaf && this.leaves.delete(cacheKey));
      if (this.leaves.size > LEAF_CACHE_SIZE) this.leaves.delete(this.leaves.keys().next().value!);
    }
    return leaf;
  }

  /**
   * The TLS context for a handshake presenting `leaf`; the TLS socket must be created from it at
   * once, before anything else runs (OpenSSL copies the certificate and key into each connection
   * when it is created, so loading the next leaf afterwards leaves it untouched).
   *
   * Making a context of its own for every new leaf (Node's createSecureContext: a context, the key
   * and the chain parsed from PEM) costs ~1.4 ms, more than the handshake itself. Instead, one
   * context per key type holds the shared leaf key, and a new leaf is loaded
   * into it (one certificate parsed, ~0.4 ms): every connection that comes while it is the latest leaf — the whole
   * batch of names it was made for — uses it as is. A leaf needed again after another took its
   * place gets a context of its own, made once and kept with the leaf.
   */
  handshakeContext(leaf: LeafCertificate): SecureContext {
    const own = this.ownContexts.get(leaf);
    if (own) return own;
    const staging = this.stagingFor(leaf);
    if (!staging || this.staged.has(leaf)) return staging?.holds === leaf ? staging.context : this.ownContext(leaf);
    staging.load(leaf.certPem);
    staging.holds = leaf;
    this.staged.add(leaf);
    return staging.context;
  }

  private stagingFor(leaf: LeafCertificate): StagingContext | null {
    let staging = this.staging.get(leaf.keyType);
    if (staging === undefined) {
      // The leaf alone, no chain (see leafChain): later leaves replace it in the key's slot.
      const context = createSecureContext({ key: leaf.keyPem, cert: leafChain(leaf), ticketKeys: this.ticketKeys });
      const load = (context as unknown as { context?: { setCert?: (pem: string) => void } }).context?.setCert;
      // Node's native context has loaded certificates this way since SNI contexts existed; should a
      // later Node lack it, every leaf simply gets a context of its own, as before.
      staging = typeof load === "function" ? { context, holds: null, load: (pem) => load.call((context as unknown as { context: object }).context, pem) } : null;
      this.staging.set(leaf.keyType, staging);
    }
    return staging;
  }

  private ownContext(leaf: LeafCertificate): SecureContext {
    let context = this.ownContexts.get(leaf);
    if (!context) {
      context = createSecureContext({ key: leaf.keyPem, cert: leafChain(leaf), ticketKeys: this.ticketKeys });
      this.ownContexts.set(leaf, context);
    }
    return context;
  }

  /** A TLS context presenting the leaf for `host`. */
  async secureContextFor(host: string, keyType: LeafKeyType = "ecdsa"): Promise<SecureContext> {
    return (await this.certificateFor(host, keyType)).context;
  }

  /**
   * PEM ECDSA leaf certificate for `host`, signed synchronously on the calling thread: for tools
   * and tests that stand up a TLS server with `leafKeyPem`. The proxy uses `certificateFor`.
   */
  leafCertFor(host: string): string {
    const name = host.toLowerCase();
    let pem = this.syncPems.get(name);
    if (!pem) {
      const tbs = this.leafTbs([name], this.ecdsaLeafKey);
      pem = toPem(this.assemble(tbs, signSync("sha256", tbs, this.caKey)));
      this.syncPems.set(name, pem);
      if (this.syncPems.size > 1000) this.syncPems.delete(this.syncPems.keys().next().value!);
    }
    return pem;
  }

  /** `name`'s share of the next leaf of `keyType`; starts making one when none is under way. */
  private batched(name: string, keyType: LeafKeyType): Promise<LeafCertificate> {
    let state = this.batches.get(keyType);
    if (!state) this.batches.set(keyType, (state = { next: null, busy: false, lastStart: -Infinity }));
    let batch = state.next;
    if (!batch || batch.names.length >= MAX_NAMES_PER_LEAF) {
      if (batch) this.startBatch(keyType, batch); // full: it goes now, alongside any other
      batch = state.next = newBatch();
    }
    batch.names.push(name);
    if (!state.busy) {
      state.busy = true;
      // One turn of the event loop: the other new names of the same burst (CONNECTs read together) join.
      setImmediate(() => this.runBatches(keyType));
    }
    return batch.promise;
  }

  /**
   * Makes the waiting batch of `keyType`, then the one that filled meanwhile, until none waits.
   * Leaves are started at most one per LEAF_PACE_MS (a full batch goes at once): a lone new name
   * is signed at once, but during a burst of new names each leaf covers the names of a whole
   * pace interval, so the cost of making and loading a leaf (~1.2 ms of CPU, half of it the CA's
   * RSA signature) is shared by ~10 names at 1,000 names/s instead of ~3.
   */
  private runBatches(keyType: LeafKeyType): void {
    const state = this.batches.get(keyType)!;
    const batch = state.next;
    if (!batch) {
      state.busy = false;
      return;
    }
    const wait = state.lastStart + LEAF_PACE_MS - performance.now();
    if (wait > 0) {
      setTimeout(() => this.runBatches(keyType), wait);
      return;
    }
    state.next = null;
    state.lastStart = performance.now();
    this.startBatch(keyType, batch).finally(() => this.runBatches(keyType));
  }

  private startBatch(keyType: LeafKeyType, batch: LeafBatch): Promise<void> {
    const batches = this.batches.get(keyType)!;
    if (batches.next === batch) batches.next = null;
    return this.makeLeaf(batch.names, keyType).then(batch.resolve, batch.reject);
  }

  private async makeLeaf(names: string[], keyType: LeafKeyType): Promise<LeafCertificate> {
    const key = keyType === "rsa" ? await this.rsaKey() : this.ecdsaLeafKey;
    const tbs = this.leafTbs(names, key);
    const signature = await signAsync("sha256", tbs, this.caKey);
    const certPem = toPem(this.assemble(tbs, signature));
    const ca = this; // the getter's own `this` is the leaf
    const leaf: LeafCertificate = {
      host: names[0]!,
      names,
      keyType,
      certPem,
      keyPem: key.keyPem,
      get context() {
        return ca.ownContext(leaf);
      },
    };
    return leaf;
  }

  /** The shared RSA leaf key, made on first use (off the event loop: RSA generation takes ~100 ms). */
  private rsaKey(): Promise<LeafKey> {
    this.rsaLeafKey ??= promisify(generateKeyPair)("rsa", { modulusLength: 2048 }).then(({ privateKey }) => leafKeyFrom(privateKey));
    return this.rsaLeafKey;
  }

  /**
   * The leaf's TBSCertificate in DER. Everything but the serial, validity, subject and SAN is the
   * same for every leaf of one key, so those parts are serialised once (by asn1-x509) and the
   * per-host parts are encoded here: the ASN.1 library's generic serialiser costs milliseconds
   * per certificate, this costs microseconds.
   */
  private leafTbs(names: string[], key: LeafKey): Buffer {
    const fixed = (key.tbsParts ??= this.fixedLeafParts(key));
    const notBefore = new Date(Date.now() - 2 * DAY_MS); // tolerate client clock skew
    const notAfter = new Date(notBefore.getTime() + LEAF_VALIDITY_DAYS * DAY_MS);
    const host = names[0]!;
    // GeneralName: [2] dNSName IA5String, or [7] iPAddress, the address's bytes.
    const ip = isIP(host) ? ipAddressBytes(host) : null;
    const san = derExtension(OID_SUBJECT_ALT_NAME, false, derSequence(ip ? [derTlv(0x87, ip)] : names.map((n) => derTlv(0x82, Buffer.from(n, "ascii")))));
    const extensions = derTlv(0xa3, derSequence([...fixed.extensions, san]));
    const cn = host.length <= 64 ? host : host.slice(0, 64);
    return derSequence([
      fixed.version,
      derTlv(0x02, Buffer.from(serialNumber())),
      fixed.signature,
      fixed.issuer,
      derSequence([derUtcTime(notBefore), derUtcTime(notAfter)]),
      derSequence([derRdn(OID_CN, cn), fixed.organization]),
      fixed.spki,
      extensions,
    ]);
  }

  private fixedLeafParts(key: LeafKey): LeafTbsParts {
    return {
      version: Buffer.from([0xa0, 0x03, 0x02, 0x01, 0x02]), // [0] INTEGER 2: v3
      signature: this.issuer.signatureAlgorithmDer,
      issuer: this.issuer.name,
      organization: derRdn(OID_O, "sluice"),
      spki: key.spkiDer,
      extensions: [
        // BasicConstraints: cA FALSE is the default, which DER leaves out: an empty SEQUENCE.
        derExtension(OID_BASIC_CONSTRAINTS, true, derSequence([])),
        // KeyUsage BIT STRING: digitalSignature (bit 0) and keyEncipherment (bit 2), 5 unused bits.
        derExtension(OID_KEY_USAGE, true, Buffer.from([0x03, 0x02, 0x05, 0xa0])),
        derExtension(OID_EXT_KEY_USAGE, false, derSequence([derOid(OID_SERVER_AUTH)])),
        derExtension(OID_SUBJECT_KEY_ID, false, derTlv(0x04, keyIdOf(key.spkiDer))),
        // AuthorityKeyIdentifier ::= SEQUENCE { [0] keyIdentifier }
        derExtension(OID_AUTHORITY_KEY_ID, false, derSequence([derTlv(0x80, this.issuer.keyId)])),
      ],
    };
  }


  /** Certificate ::= SEQUENCE { tbsCertificate, signatureAlgorithm, signatureValue BIT STRING }. */
  private assemble(tbsDer: Buffer, signature: Buffer): Buffer {
    return certificateDer(tbsDer, this.issuer.signatureAlgorithmDer, signature);
  }

  /** Subject, fingerprint and validity for `sluice ca`. */
  describe(): { subject: string; fingerprint256: string; validTo: string } {
    const x = new X509Certificate(this.certPem);
    return { subject: x.subject.replace(/\n/g, ", "), fingerprint256: x.fingerprint256, validTo: x.validTo };
  }
}

/**
 * What a handshake presents for a leaf: the leaf alone, as mitmproxy does (checked with
 * mitmdump 8.1.1 and openssl s_client). A client that trusts sluice's CA has it already, and
 * sending it too cost every OpenSSL client ~0.2 ms per handshake to parse (a Python client's CPU
 * per new name 1.06 -> 0.87 ms measured without it).
 */
function leafChain(leaf: LeafCertificate): string {
  return leaf.certPem;
}

/** A TLS context with a leaf key, into which new leaves are loaded (see handshakeContext). */
interface StagingContext {
  context: SecureContext;
  /** The leaf whose chain it presents now. */
  holds: LeafCertificate | null;
  /** Loads a leaf certificate (PEM) in place of the one it presents; its chain (the CA) stays. */
  load: (certPem: string) => void;
}

/** Names waiting to share one leaf certificate, and the promise they all get. */
/** Per key type: the names waiting for the next leaf, whether one is being made, and when the last one started. */
interface BatchState {
  next: LeafBatch | null;
  busy: boolean;
  lastStart: number;
}

interface LeafBatch {
  names: string[];
  promise: Promise<LeafCertificate>;
  resolve: (leaf: LeafCertificate) => void;
  reject: (err: unknown) => void;
}

function newBatch(): LeafBatch {
  let resolve!: (leaf: LeafCertificate) => void;
  let reject!: (err: unknown) => void;
  const promise = new Promise<LeafCertificate>((res, rej) => ((resolve = res), (reject = rej)));
  return { names: [], promise, resolve, reject };
}

function leafKeyFrom(privateKey: KeyObject): LeafKey {
  return {
    privateKey,
    keyPem: privateKey.export({ type: "pkcs8", format: "pem" }).toString(),
    spkiDer: createPublicKey(privateKey).export({ type: "spki", format: "der" }),
  };
}

function signatureAlgorithmOidFor(key: KeyObject): string {
  if (key.asymmetricKeyType === "rsa") return SHA256_WITH_RSA;
  if (key.asymmetricKeyType === "ec") return ECDSA_WITH_SHA256;
  throw new Error(`the CA key is ${key.asymmetricKeyType}; sluice signs with RSA or ECDSA CA keys`);
}

function signatureAlgorithmFor(key: KeyObject): AlgorithmIdentifier {
  const algorithm = signatureAlgorithmOidFor(key);
  return new (asn1X509().AlgorithmIdentifier)(algorithm === SHA256_WITH_RSA ? { algorithm, parameters: DER_NULL } : { algorithm });
}

/** AlgorithmIdentifier of the CA's signatures, in DER (RSA's carries a NULL parameter). */
function signatureAlgorithmDer(key: KeyObject): Buffer {
  const algorithm = signatureAlgorithmOidFor(key);
  return derSequence(algorithm === SHA256_WITH_RSA ? [derOid(algorithm), Buffer.from([0x05, 0x00])] : [derOid(algorithm)]);
}

/** RFC 5280's method 1: SHA-1 of the subjectPublicKey bits of a SubjectPublicKeyInfo (DER). */
function keyIdOf(spkiDer: Buffer): Buffer {
  const bits = derChildren(derRead(spkiDer))[1]!.content;
  return createHash("sha1").update(bits.subarray(1)).digest(); // after the unused-bits byte
}

function extension(id: string, critical: boolean, value: object): Extension {
  const { AsnConvert, OctetString } = asn1Schema();
  const { Extension } = asn1X509();
  return new Extension({ extnID: id, critical, extnValue: new OctetString(AsnConvert.serialize(value)) });
}

/** CN=cn, O=sluice: the CA's subject (and issuer). */
function distinguishedName(cn: string): Name {
  const { AttributeTypeAndValue, AttributeValue, Name, RelativeDistinguishedName } = asn1X509();
  return new Name([
    new RelativeDistinguishedName([new AttributeTypeAndValue({ type: OID_CN, value: new AttributeValue({ utf8String: cn }) })]),
    new RelativeDistinguishedName([new AttributeTypeAndValue({ type: OID_O, value: new AttributeValue({ utf8String: "sluice" }) })]),
  ]);
}

function serialNumber(): ArrayBuffer {
  // Positive 128-bit serial: clear the top bit so DER does not read it as negative.
  const b = randomBytes(16);
  b[0]! &= 0x7f;
  b[0]! |= 0x01;
  return new Uint8Array(b).buffer;
}

/** Certificate ::= SEQUENCE { tbsCertificate, signatureAlgorithm, signatureValue BIT STRING }. */
function certificateDer(tbs: Buffer, algorithm: Buffer, signature: Buffer): Buffer {
  return derSequence([tbs, algorithm, derBitString(signature)]);
}

function toPem(der: Buffer): string {
  const b64 = der.toString("base64").replace(/.{64}/g, "$&\n");
  return `-----BEGIN CERTIFICATE-----\n${b64}${b64.endsWith("\n") ? "" : "\n"}-----END CERTIFICATE-----\n`;
}

function pemToDer(pem: string): Buffer {
  return Buffer.from(pem.replace(/-----(BEGIN|END) CERTIFICATE-----|\s/g, ""), "base64");
}

function tighten(path: string, log?: (msg: string) => void): void {
  const mode = statSync(path).mode & 0o777;
  if (mode & 0o077) {
    chmodSync(path, 0o600);
    log?.(`tightened permissions of ${path} to 0600 (it holds the CA's private key)`);
  }
}

/** Writes under a temporary name, then renames into place: readers never see half a file. */
function writeAtomically(path: string, data: string | Buffer, mode: number): void {
  const tmp = `${path}.${process.pid}.${randomBytes(4).toString("hex")}.tmp`;
  writeFileSync(tmp, data, { mode });
  chmodSync(tmp, mode);
  renameSync(tmp, path);
}

/** The friendly name of the CA in both .p12 bundles. */
const PKCS12_NAME = "sluice CA";

/** The key-bearing bundle (RSA keys: node-forge writes no other). */
function pkcs12(key: forgeTypes.pki.rsa.PrivateKey, cert: forgeTypes.pki.Certificate): Buffer {
  const f = forge();
  const asn1 = f.pkcs12.toPkcs12Asn1(key, [cert], null, { algorithm: "3des", friendlyName: PKCS12_NAME });
  return Buffer.from(f.asn1.toDer(asn1).getBytes(), "binary");
}

/** DER of the PKCS#12 bag OIDs for keys: keyBag (1.2.840.113549.1.12.10.1.1) and pkcs8ShroudedKeyBag (…1.2). */
const KEY_BAG_OID_DER = Buffer.from([0x06, 0x0b, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x0c, 0x0a, 0x01]);

function p12HasKey(path: string): boolean {
  try {
    const der = readFileSync(path);
    // sluice's bundles are unencrypted (no password), so a key bag's OID is in the clear: without
    // it there is no key, and the bundle need not be parsed (nor node-forge loaded) at every start.
    let keyBag = false;
    for (let at = der.indexOf(KEY_BAG_OID_DER); at >= 0 && !keyBag; at = der.indexOf(KEY_BAG_OID_DER, at + 1)) {
      const last = der[at + KEY_BAG_OID_DER.length];
      keyBag = last === 0x01 || last === 0x02; // 0x03 is a certificate's bag
    }
    if (!keyBag) return false;
    const f = forge();
    const p12 = f.pkcs12.pkcs12FromAsn1(f.asn1.fromDer(der.toString("binary")));
    const bags = p12.getBags({ bagType: f.pki.oids.pkcs8ShroudedKeyBag! })[f.pki.oids.pkcs8ShroudedKeyBag!] ?? [];
    const plain = p12.getBags({ bagType: f.pki.oids.keyBag! })[f.pki.oids.keyBag!] ?? [];
    return bags.length + plain.length > 0;
  } catch {
    return false;
  }
}

/**
 * Makes a new CA key and self-signed certificate and links it into place as `path` only if no
 * file is there yet. Returns false when another process created it first (its CA is then used).
 */
function createCaFile(path: string): boolean {
  const { privateKey } = generateKeyPairSync("rsa", { modulusLength: 2048 });
  const { AsnConvert } = asn1Schema();
  const { BasicConstraints, ExtendedKeyUsage, Extensions, KeyUsage, KeyUsageFlags, SubjectKeyIdentifier, SubjectPublicKeyInfo, TBSCertificate, Validity, Version } = asn1X509();
  const { id_ce_basicConstraints, id_ce_extKeyUsage, id_ce_keyUsage, id_ce_subjectKeyIdentifier, id_kp_clientAuth, id_kp_serverAuth } = asn1X509();
  const spkiDer = createPublicKey(privateKey).export({ type: "spki", format: "der" });
  const spki = AsnConvert.parse(spkiDer, SubjectPublicKeyInfo);
  const notBefore = new Date(Date.now() - 2 * DAY_MS);
  const notAfter = new Date(notBefore);
  notAfter.setFullYear(notAfter.getFullYear() + CA_VALIDITY_YEARS);
  const algorithm = signatureAlgorithmFor(privateKey);
  const name = distinguishedName("sluice CA");
  const tbs = new TBSCertificate({
    version: Version.v3,
    serialNumber: serialNumber(),
    signature: algorithm,
    issuer: name,
    validity: new Validity({ notBefore, notAfter }),
    subject: name,
    subjectPublicKeyInfo: spki,
    extensions: new Extensions([
      extension(id_ce_basicConstraints, true, new BasicConstraints({ cA: true })),
      extension(id_ce_keyUsage, true, new KeyUsage(KeyUsageFlags.keyCertSign | KeyUsageFlags.cRLSign)),
      extension(id_ce_extKeyUsage, false, new ExtendedKeyUsage([id_kp_serverAuth, id_kp_clientAuth])),
      extension(id_ce_subjectKeyIdentifier, false, new SubjectKeyIdentifier(Uint8Array.from(keyIdOf(spkiDer)).buffer)),
    ]),
  });
  const tbsDer = Buffer.from(AsnConvert.serialize(tbs));
  const certPem = toPem(certificateDer(tbsDer, Buffer.from(AsnConvert.serialize(algorithm)), signSync("sha256", tbsDer, privateKey)));
  const keyPem = privateKey.export({ type: "pkcs1", format: "pem" }).toString();
  const tmp = `${path}.${process.pid}.${randomBytes(4).toString("hex")}.tmp`;
  writeFileSync(tmp, keyPem + certPem, { mode: 0o600 });
  chmodSync(tmp, 0o600);
  try {
    linkSync(tmp, path);
    return true;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "EEXIST") return false;
    throw new Error(`cannot create the CA file ${path}: ${(err as Error).message}`);
  } finally {
    unlinkSync(tmp);
  }
}

/**
 * `mkdir -p` one level at a time. Node's recursive mkdirSync never returns for a folder the kernel
 * refuses with ENOENT although its parent exists (any path under /proc): it retries the parent
 * forever. Here that is an ENOENT error naming the folder, as for any folder sluice cannot create.
 */
function makeFolders(dir: string, mode: number): void {
  const missing: string[] = [];
  for (let at = resolve(dir); !existsSync(at); at = dirname(at)) {
    missing.push(at);
    if (dirname(at) === at) break;
  }
  for (const folder of missing.reverse()) {
    try {
      mkdirSync(folder, { mode });
    } catch (err) {
      // Another process starting on the same fresh confdir made it first: that is fine.
      if ((err as NodeJS.ErrnoException).code !== "EEXIST") throw err;
    }
  }
}
