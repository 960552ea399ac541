/**
 * Benchmark origin, run as its own process: 1 KiB answers over HTTP and HTTPS, and a 1 GiB
 * download at /big. Prints its ports as one JSON line on stdout.
 */
import http from "node:http";
import https from "node:https";
import type net from "node:net";
import { CertificateAuthority } from "../src/proxy/tls/ca.js";

const confdir = process.argv[2];
if (!confdir) {
  process.stderr.write("usage: origin-server CONFDIR\n");
  process.exit(2);
}
const KIB = Buffer.alloc(1024, "x");
const BIG = 1024 ** 3;
const chunk = Buffer.alloc(1024 * 1024);

/**
 * Requests per client connection since the last `GET /__connections`, which answers with them
 * (sorted, as JSON) and starts counting afresh: through sluice each client connection has its own
 * upstream connection, so this shows whether some clients starve while others are served.
 */
let perConnection = new Map<net.Socket, number>();

const handler: http.RequestListener = (req, res) => {
  if (req.url === "/__connections") {
    const counts = [...perConnection.values()].sort((a, b) => a - b);
    perConnection = new Map();
    res.writeHead(200, { "content-type": "application/json" });
    return void res.end(JSON.stringify(counts));
  }
  perConnection.set(req.socket, (perConnection.get(req.socket) ?? 0) + 1);
  if (req.url === "/big") {
    res.writeHead(200, { "content-type": "application/octet-stream", "content-length": String(BIG) });
    let sent = 0;
    const pump = () => {
      while (sent < BIG) {
        sent += chunk.length;
        if (!res.write(chunk)) return void res.once("drain", pump);
      }
      res.end();
    };
    return pump();
  }
  req.resume();
  res.writeHead(200, { "content-type": "text/plain", "content-length": "1024" });
  res.end(KIB);
};

const ca = CertificateAuthority.loadOrCreate(confdir);
const plain = http.createServer({ keepAliveTimeout: 60_000 }, handler);
const secure = https.createServer({ key: ca.leafKeyPem, cert: ca.leafCertFor("127.0.0.1"), keepAliveTimeout: 60_000 }, handler);
// The c=1000 rows open a thousand connections at once, directly or one per client through sluice:
// with Node's default backlog (511) the kernel dropped the surplus handshakes and their requests
// waited for TCP retransmissions (seconds), which read as the proxy's tail latency.
const BACKLOG = 4096;
await new Promise<void>((r) => plain.listen(0, "127.0.0.1", BACKLOG, r));
await new Promise<void>((r) => secure.listen(0, "127.0.0.1", BACKLOG, r));
process.stdout.write(JSON.stringify({ http: (plain.address() as net.AddressInfo).port, https: (secure.address() as net.AddressInfo).port, ca: ca.files.certPem }) + "\n");
