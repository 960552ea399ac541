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

const handler: http.RequestListener = (req, res) => {
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
await new Promise<void>((r) => plain.listen(0, "127.0.0.1", r));
await new Promise<void>((r) => secure.listen(0, "127.0.0.1", r));
process.stdout.write(JSON.stringify({ http: (plain.address() as net.AddressInfo).port, https: (secure.address() as net.AddressInfo).port, ca: ca.files.certPem }) + "\n");
