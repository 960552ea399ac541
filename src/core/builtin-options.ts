/** The options every sluice front end has. Addons register their own in `load`. */
import { homedir } from "node:os";
import { join } from "node:path";
import type { Options } from "./options.js";

export const DEFAULT_CONFDIR = join(homedir(), ".sluice");

export function registerCoreOptions(options: Options): void {
  options.add({ name: "mode", type: "string", default: "regular", help: "Proxy mode: regular, reverse:URL or upstream:URL" });
  options.add({ name: "listen_host", type: "string", default: "127.0.0.1", help: "Address to listen on (127.0.0.1 keeps the proxy private to this machine)" });
  options.add({ name: "listen_port", type: "int", default: 8080, help: "Port to listen on (0 picks a free one)" });
  options.add({ name: "backlog", type: "int", default: 4096, help: "Connections the kernel queues for the proxy before it accepts them (capped by net.core.somaxconn); Node's default of 511 overflows at ~1000 concurrent clients" });
  options.add({ name: "confdir", type: "string", default: DEFAULT_CONFDIR, help: "Folder for the CA and the config file" });
  options.add({ name: "leaf_key_type", type: "string", default: "auto", choices: ["auto", "ecdsa", "rsa"], help: "Key of the certificates sluice presents to clients: ECDSA P-256, RSA 2048, or auto (ECDSA unless the client's ClientHello accepts no ECDSA)" });
  options.add({ name: "ssl_insecure", type: "bool", default: false, help: "Do not verify upstream server certificates" });
  options.add({ name: "ssl_verify_upstream_trusted_ca", type: "optional-string", default: null, help: "PEM file with an extra CA to trust for upstream servers" });
  options.add({ name: "ignore_hosts", type: "strings", default: [] as string[], help: "Regexes of hosts whose TLS connections pass through untouched" });
  options.add({ name: "allow_hosts", type: "strings", default: [] as string[], help: "Regexes of the only hosts to intercept; all other TLS passes through" });
  options.add({ name: "stream_large_bodies", type: "size", default: 1024 * 1024, help: "Bodies larger than this stream through without being kept on the flow (e.g. 512k, 1m, 10m)" });
  options.add({ name: "http2", type: "bool", default: true, help: "Offer HTTP/2 to clients and servers" });
  options.add({ name: "keep_host_header", type: "bool", default: false, help: "Reverse mode: keep the client's Host header instead of the target's" });
  options.add({ name: "connect_timeout", type: "int", default: 10, help: "Seconds to wait for an upstream connection" });
  options.add({ name: "read_timeout", type: "int", default: 300, help: "Seconds to wait for upstream response headers or body data" });
}
