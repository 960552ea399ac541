/** The options every sluice front end has. Addons register their own in `load`. */
import { statSync } from "node:fs";
import { homedir } from "node:os";
import { join } from "node:path";
import { declareOptions, OptionError, parseSize, type Options, type TypedOptions } from "./options.js";
import { expandHome } from "./spec.js";

export const DEFAULT_CONFDIR = join(homedir(), ".sluice");

/** mitmproxy's TLS version names; UNBOUNDED leaves the bound to Node (TLS 1 … TLS 1.3). */
export const TLS_VERSIONS = ["UNBOUNDED", "SSL3", "TLS1", "TLS1_1", "TLS1_2", "TLS1_3"] as const;

/** The options every front end has, declared once (names, types, defaults, help). */
export const CORE_OPTIONS = declareOptions({
  mode: { type: "strings", default: ["regular"], help: "Proxy modes, one listener each: regular, socks5, reverse:URL or upstream:URL, each optionally @PORT or @HOST:PORT (repeat --mode for several)" },
  listen_host: { type: "string", default: "127.0.0.1", help: "Address to listen on (127.0.0.1 keeps the proxy private to this machine)" },
  listen_port: { type: "int", default: 8080, min: 0, max: 65535, help: "Port to listen on (0 picks a free one); socks5 mode defaults to 1080 unless this is set" },
  backlog: { type: "int", default: 4096, min: 1, help: "Connections the kernel queues for the proxy before it accepts them (capped by net.core.somaxconn); Node's default of 511 overflows at ~1000 concurrent clients" },
  confdir: { type: "string", default: DEFAULT_CONFDIR, help: "Folder for the CA and the config file" },
  ssl_leaf_key_type: { type: "string", default: "auto", choices: ["auto", "ecdsa", "rsa"], help: "Key of the certificates sluice presents to clients: ECDSA P-256, RSA 2048, or auto (ECDSA unless the client's ClientHello accepts no ECDSA)" },
  ssl_insecure: { type: "bool", default: false, help: "Do not verify upstream server certificates" },
  ssl_verify_upstream_trusted_ca: { type: "optional-string", default: null, help: "PEM file with an extra CA to trust for upstream servers" },
  ignore_hosts: { type: "strings", default: [], help: "Regexes of hosts whose TLS connections pass through untouched" },
  allow_hosts: { type: "strings", default: [], help: "Regexes of the only hosts to intercept; all other TLS passes through" },
  stream_large_bodies: { type: "size", default: 1024 * 1024, help: "Bodies larger than this stream through without being kept on the flow (e.g. 512k, 1m, 10m)" },
  http2: { type: "bool", default: true, help: "Offer HTTP/2 to clients and servers" },
  keep_host_header: { type: "bool", default: false, help: "Reverse mode: keep the client's Host header instead of the target's" },
  tls_version_client_min: { type: "string", default: "TLS1_2", choices: TLS_VERSIONS, help: "Oldest TLS version clients may use towards sluice" },
  tls_version_client_max: { type: "string", default: "UNBOUNDED", choices: TLS_VERSIONS, help: "Newest TLS version clients may use towards sluice" },
  tls_version_server_min: { type: "string", default: "TLS1_2", choices: TLS_VERSIONS, help: "Oldest TLS version sluice accepts from servers" },
  tls_version_server_max: { type: "string", default: "UNBOUNDED", choices: TLS_VERSIONS, help: "Newest TLS version sluice offers to servers" },
  client_certs: { type: "optional-string", default: null, help: "Client certificate (PEM with key) to present to servers: a file for all, or a directory of HOST.pem files" },
  certs: { type: "strings", default: [], help: "Certificates to serve instead of generated ones: [domain=]cert.pem (domain may be *.example.com; none means every host; the PEM holds the chain and optionally the key)" },
  upstream_auth: { type: "optional-string", default: null, help: "user:pass sent as Basic auth to the upstream proxy (upstream mode) or the server (reverse mode)" },
  upstream_cert: { type: "bool", default: true, help: "With connection_strategy=eager, learn the server's certificate names (CN, SANs) before making the certificate for the client and add them beside the SNI, as mitmproxy; false: the SNI name only" },
  connection_strategy: { type: "string", default: "lazy", choices: ["eager", "lazy"], help: "eager: connect to the server when a client connects (CONNECT fails if it is unreachable); lazy: only when a request needs it" },
  body_size_limit: { type: "optional-string", default: null, help: "Refuse bodies larger than this (e.g. 10m): requests get 413, responses 502, as mitmproxy does" },
  connect_timeout: { type: "int", default: 10, min: 0, help: "Seconds to wait for an upstream connection (0: no limit)" },
  read_timeout: { type: "int", default: 300, min: 0, help: "Seconds to wait for upstream response headers or body data (0: no limit)" },
});

/** Typed reads of the core options: `core.listen_port` is a number. */
export type CoreOptions = TypedOptions<typeof CORE_OPTIONS>;

export function registerCoreOptions(options: Options): CoreOptions {
  return options.register(CORE_OPTIONS);
}

/**
 * Values the proxy only reads when traffic comes (a size limit, a certificate file) are checked
 * at start-up, so a typo is one line now rather than a failure on the first request (or none).
 */
export function checkCoreValues(core: CoreOptions): void {
  if (core.body_size_limit && parseSize(core.body_size_limit) === null) {
    throw new OptionError(`option body_size_limit expects a size such as 512k, 10m or 2g, got ${JSON.stringify(core.body_size_limit)}`);
  }
  if (core.client_certs) {
    try {
      statSync(expandHome(core.client_certs));
    } catch (err) {
      throw new OptionError(`client_certs: cannot read ${core.client_certs} (${(err as NodeJS.ErrnoException).code ?? (err as Error).message}); name a PEM file (certificate and key) or a directory of HOST.pem files`);
    }
  }
}
