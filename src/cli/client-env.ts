/**
 * The environment that puts a program behind sluice: proxy variables every common client reads,
 * and trust for sluice's CA — a bundle of the system's roots plus sluice's CA for clients that
 * replace their trust store rather than add to it (so hosts that pass through untouched still
 * verify), sluice's CA alone where a variable adds to the defaults (NODE_EXTRA_CA_CERTS), and a
 * preload for Node releases that ignore HTTP(S)_PROXY.
 */
import { existsSync, readFileSync, writeFileSync } from "node:fs";
import { rootCertificates } from "node:tls";
import { dirname, join } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import { JAVA_TRUSTSTORE_PASSWORD, writeJavaTrustStore } from "./java-truststore.js";

/** Where distributions keep their root bundle; the first that exists is used. */
const SYSTEM_BUNDLES = ["/etc/ssl/certs/ca-certificates.crt", "/etc/pki/tls/certs/ca-bundle.crt", "/etc/ssl/ca-bundle.pem", "/etc/ssl/cert.pem"];

/**
 * Writes confdir/sluice-ca-bundle.pem (system roots, else Node's, plus sluice's CA) and the same
 * certificates as a Java trust store, confdir/sluice-ca-truststore.p12; returns their paths.
 */
export function writeCaBundle(confdir: string, caCertPem: string): { bundle: string; javaTrustStore: string } {
  const system = SYSTEM_BUNDLES.find((p) => existsSync(p));
  const roots = system ? readFileSync(system, "utf8") : rootCertificates.join("\n");
  const path = join(confdir, "sluice-ca-bundle.pem");
  const pem = `${roots.trimEnd()}\n# sluice's CA\n${readFileSync(caCertPem, "utf8").trimEnd()}\n`;
  writeFileSync(path, pem, { mode: 0o644 });
  return { bundle: path, javaTrustStore: writeJavaTrustStore(confdir, pem) };
}

/** The preload that points Node's fetch and http(s) agents at the proxy (compiled next to this file). */
export function nodePreloadPath(): string {
  return join(dirname(fileURLToPath(import.meta.url)), "node-proxy-preload.js");
}

export interface ClientEnvInput {
  proxyUrl: string;
  caCertPem: string;
  caBundle: string;
  /** The same certificates as a PKCS#12 Java trust store. */
  javaTrustStore: string;
  /** The inherited NODE_OPTIONS, kept after the preload. */
  nodeOptions?: string;
}

/** Every variable, in a stable order. */
export function clientEnv(input: ClientEnvInput): [string, string][] {
  const { proxyUrl, caCertPem, caBundle, javaTrustStore } = input;
  const proxy = new URL(proxyUrl);
  const preload = `--import=${pathToFileURL(nodePreloadPath()).href}`;
  const nodeOptions = [preload, ...(input.nodeOptions ?? "").split(/\s+/).filter((o) => o && o !== preload)].join(" ");
  return [
    ["HTTP_PROXY", proxyUrl],
    ["HTTPS_PROXY", proxyUrl],
    ["http_proxy", proxyUrl],
    ["https_proxy", proxyUrl],
    // Cleared: an inherited NO_PROXY (often localhost, 127.0.0.1) would send exactly the traffic
    // under study around the proxy.
    ["NO_PROXY", ""],
    ["no_proxy", ""],
    ["AWS_CA_BUNDLE", caBundle],
    ["REQUESTS_CA_BUNDLE", caBundle],
    ["SSL_CERT_FILE", caBundle],
    ["CURL_CA_BUNDLE", caBundle],
    ["GIT_SSL_CAINFO", caBundle],
    ["CARGO_HTTP_CAINFO", caBundle],
    ["DENO_CERT", caBundle],
    ["NODE_EXTRA_CA_CERTS", caCertPem],
    ["NODE_USE_ENV_PROXY", "1"],
    ["NODE_OPTIONS", nodeOptions],
    // The JVM reads these at start: proxy properties (an empty nonProxyHosts, or Java would skip the
    // proxy for localhost) and the trust store (system roots plus sluice's CA).
    ["JAVA_TOOL_OPTIONS", [
      `-Dhttp.proxyHost=${proxy.hostname}`, `-Dhttp.proxyPort=${proxy.port}`, `-Dhttps.proxyHost=${proxy.hostname}`, `-Dhttps.proxyPort=${proxy.port}`, "-Dhttp.nonProxyHosts=",
      `-Djavax.net.ssl.trustStore=${javaTrustStore}`, "-Djavax.net.ssl.trustStoreType=PKCS12", `-Djavax.net.ssl.trustStorePassword=${JAVA_TRUSTSTORE_PASSWORD}`,
    ].join(" ")],
  ];
}

export type Shell = "bash" | "fish" | "powershell";

/** `sluice env`: the variables as commands for `eval` in the given shell. */
export function formatEnv(vars: [string, string][], shell: Shell): string {
  const sh = (v: string) => `'${v.replace(/'/g, `'"'"'`)}'`;
  const fish = (v: string) => `'${v.replace(/\\/g, "\\\\").replace(/'/g, "\\'")}'`;
  const ps = (v: string) => `'${v.replace(/'/g, "''")}'`;
  return vars
    .map(([name, value]) => {
      if (shell === "fish") return `set -gx ${name} ${fish(value)};`;
      if (shell === "powershell") return `$env:${name} = ${ps(value)}`;
      return `export ${name}=${sh(value)}`;
    })
    .join("\n") + "\n";
}
