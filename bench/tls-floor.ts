/**
 * The floor for `npm run bench -- hostnames`: what any Node TLS server pays per new connection
 * when it makes no certificates. Node's HTTP server reads the CONNECT and answers 200, then a TLS
 * handshake follows with one ready-made context: a wildcard leaf for every name the loaders send,
 * with the key type and chain sluice presents (an ECDSA P-256 leaf, alone). Prints
 * `{"port":N}` on stdout.
 *
 *   node dist/bench/tls-floor.js CONFDIR
 */
import http from "node:http";
import type { AddressInfo } from "node:net";
import tls from "node:tls";
import { CertificateAuthority } from "../src/proxy/tls/ca.js";

const ca = CertificateAuthority.loadOrCreate(process.argv[2]!);
const leaf = await ca.certificateForNames(["*.bench.test", "bench.test"]);
const context = tls.createSecureContext({ key: leaf.keyPem, cert: leaf.certPem });
const server = http.createServer((_req, res) => res.end());
server.on("connect", (_req, socket: import("node:net").Socket, head: Buffer) => {
  socket.on("error", () => socket.destroy());
  socket.write("HTTP/1.1 200 Connection established\r\n\r\n");
  if (head.length) socket.unshift(head);
  socket.once("data", (chunk: Buffer) => {
    socket.pause();
    socket.unshift(chunk);
    const t = new tls.TLSSocket(socket, { isServer: true, secureContext: context, ALPNProtocols: ["http/1.1"] });
    t.on("error", () => t.destroy());
    t.once("secure", () => server.emit("connection", t));
  });
});
server.listen(0, "127.0.0.1", () => process.stdout.write(JSON.stringify({ port: (server.address() as AddressInfo).port }) + "\n"));
process.on("SIGINT", () => process.exit(0));
