/**
 * TLS choices made from options, on both sides of the proxy: the TLS version bounds
 * (`tls_version_client_*`, `tls_version_server_*`, mitmproxy's names), certificates given with
 * `--certs [domain=]cert.pem` served instead of generated ones, and the client certificate
 * (`client_certs=FILE|DIR`) presented to servers.
 */
import { existsSync, readFileSync, statSync } from "node:fs";
import { homedir } from "node:os";
import { join } from "node:path";
import { createSecureContext, type SecureContext, type SecureVersion } from "node:tls";
import type { CoreOptions } from "../../core/builtin-options.js";
import type { CertificateAuthority, LeafKeyType } from "./ca.js";

const NODE_VERSION: Record<string, SecureVersion | undefined> = { TLS1: "TLSv1", TLS1_1: "TLSv1.1", TLS1_2: "TLSv1.2", TLS1_3: "TLSv1.3" };

export interface VersionBounds {
  minVersion?: SecureVersion;
  maxVersion?: SecureVersion;
}

/** Node's bounds for one side; empty when they are Node's defaults (TLS 1.2 … 1.3). */
export function tlsVersionBounds(options: CoreOptions, side: "client" | "server"): VersionBounds {
  const bound = (which: "min" | "max"): SecureVersion | undefined => {
    const name = options[`tls_version_${side}_${which}`];
    if (name === "UNBOUNDED") return which === "min" ? "TLSv1" : undefined;
    if (name === "SSL3") throw new Error(`tls_version_${side}_${which}=SSL3: Node's OpenSSL has no SSL 3; the oldest version is TLS1`);
    return NODE_VERSION[name];
  };
  const min = bound("min");
  const max = bound("max");
  const out: VersionBounds = {};
  if (min && min !== "TLSv1.2") out.minVersion = min;
  if (max && max !== "TLSv1.3") out.maxVersion = max;
  return out;
}

function expandHome(path: string): string {
  return path.startsWith("~/") ? homedir() + path.slice(1) : path;
}

interface ServedCert {
  pattern: string;
  context: SecureContext;
  leafPem: string;
}

/** `--certs`: certificates to serve for matching hosts, each with its chain and key. */
export class CustomCerts {
  private readonly certs: ServedCert[] = [];

  constructor(specs: string[], defaultKeyPem: string, bounds: VersionBounds) {
    for (const spec of specs) {
      const eq = spec.indexOf("=");
      const pattern = (eq < 0 ? "*" : spec.slice(0, eq)).toLowerCase();
      const path = expandHome(eq < 0 ? spec : spec.slice(eq + 1));
      let pem: string;
      try {
        pem = readFileSync(path, "utf8");
      } catch (err) {
        throw new Error(`certs: cannot read ${path} (${(err as NodeJS.ErrnoException).code ?? (err as Error).message}); give --certs [domain=]cert.pem`);
      }
      const chain = pem.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g);
      if (!chain) throw new Error(`certs: ${path} holds no PEM certificate`);
      const key = /-----BEGIN (?:RSA |EC )?PRIVATE KEY-----[\s\S]+?-----END (?:RSA |EC )?PRIVATE KEY-----/.exec(pem)?.[0] ?? defaultKeyPem;
      let context: SecureContext;
      try {
        context = createSecureContext({ key, cert: chain.join("\n") + "\n", ...bounds });
      } catch (err) {
        throw new Error(`certs: ${path}: ${(err as Error).message}${key === defaultKeyPem ? " (it holds no private key, and sluice's leaf key does not match its certificate: add the key to the PEM)" : ""}`);
      }
      this.certs.push({ pattern, context, leafPem: chain[0]! + "\n" });
    }
  }

  get size(): number {
    return this.certs.length;
  }

  /** The certificate for `host`: an exact name first, then the nearest wildcard, then `*`. */
  find(host: string): ServedCert | null {
    if (!this.certs.length) return null;
    const name = host.toLowerCase();
    const labels = name.split(".");
    const forms = [name];
    for (let i = 1; i < labels.length; i++) forms.push("*." + labels.slice(i).join("."));
    forms.push("*");
    for (const form of forms) {
      const hit = this.certs.find((c) => c.pattern === form);
      if (hit) return hit;
    }
    return null;
  }
}

/** What sluice serves to a client for `host`: a `--certs` certificate, or one made by the CA. */
export class ServingCertificates {
  private custom: CustomCerts;
  private bounds: VersionBounds;
  private readonly bounded = new Map<string, SecureContext>();

  constructor(private readonly options: CoreOptions, private readonly ca: CertificateAuthority) {
    this.bounds = tlsVersionBounds(options, "client");
    this.custom = new CustomCerts(options.certs, ca.leafKeyPem, this.bounds);
  }

  reload(): void {
    this.bounds = tlsVersionBounds(this.options, "client");
    this.custom = new CustomCerts(this.options.certs, this.ca.leafKeyPem, this.bounds);
    this.bounded.clear();
  }

  /**
   * The certificate to present for `host`, and the TLS context for its handshake: call
   * `handshakeContext()` just as the TLS socket is created, in the same turn (see
   * CertificateAuthority.handshakeContext).
   */
  async certificateFor(host: string, keyType: LeafKeyType, alsoNames: string[] = []): Promise<{ certPem: string; handshakeContext: () => SecureContext }> {
    const custom = this.custom.find(host);
    if (custom) return { certPem: custom.leafPem, handshakeContext: () => custom.context };
    const leaf = alsoNames.length ? await this.ca.certificateForNames([host, ...alsoNames], keyType) : await this.ca.certificateFor(host, keyType);
    if (!this.bounds.minVersion && !this.bounds.maxVersion) return { certPem: leaf.certPem, handshakeContext: () => this.ca.handshakeContext(leaf) };
    const key = `${keyType} ${leaf.names.join(" ")}`;
    let context = this.bounded.get(key);
    if (!context) {
      context = createSecureContext({ key: leaf.keyPem, cert: leaf.certPem + this.ca.certPem, ...this.bounds });
      if (this.bounded.size > 1000) this.bounded.clear();
      this.bounded.set(key, context);
    }
    const bounded = context;
    return { certPem: leaf.certPem, handshakeContext: () => bounded };
  }
}

/** `client_certs`: the PEM (certificate + key) to present to `serverName`, or null. */
export function clientCertFileFor(options: CoreOptions, serverName: string): string | null {
  const setting = options.client_certs;
  if (!setting) return null;
  const path = expandHome(setting);
  let isFile: boolean;
  try {
    isFile = statSync(path).isFile();
  } catch {
    throw new Error(`client_certs: ${path} does not exist; name a PEM file (certificate and key) or a directory of HOST.pem files`);
  }
  if (isFile) return path;
  const perHost = join(path, `${serverName}.pem`);
  return existsSync(perHost) ? perHost : null;
}
