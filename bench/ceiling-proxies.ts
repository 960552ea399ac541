/**
 * Reference ceilings for the proxy benchmark, run as their own process: what the cheapest possible
 * Node.js relays reach on this machine, so sluice's figures can be read against the ceiling of its
 * platform rather than only against mitmproxy.
 *  - a minimal forward HTTP proxy: node:http server + undici Pool, no flows, no hooks, no logging;
 *  - a bare TCP relay to the origin's HTTP port (socket.pipe both ways): no HTTP parsing at all
 *    (a reference for bulk transfers; with pipe's default 16 KiB buffering it is no upper bound).
 * Prints their ports as one JSON line on stdout.
 */
import http from "node:http";
import net from "node:net";
import { Pool } from "undici";

const originPort = Number(process.argv[2]);
if (!originPort) {
  process.stderr.write("usage: ceiling-proxies ORIGIN_HTTP_PORT\n");
  process.exit(2);
}

const pools = new Map<string, Pool>();
const minimal = http.createServer({ keepAliveTimeout: 60_000 }, (req, res) => {
  let url: URL;
  try {
    url = new URL(req.url ?? "");
  } catch {
    res.writeHead(400).end();
    return;
  }
  let pool = pools.get(url.origin);
  if (!pool) pools.set(url.origin, (pool = new Pool(url.origin, { connections: 64 })));
  const hasBody = req.headers["content-length"] !== undefined || req.headers["transfer-encoding"] !== undefined;
  const { connection: _c, "proxy-connection": _p, "keep-alive": _k, "transfer-encoding": _t, ...headers } = req.headers;
  pool.request({ path: url.pathname + url.search, method: req.method as "GET", headers, body: hasBody ? req : null }).then(
    async (up) => {
      const { connection: _uc, "keep-alive": _uk, "transfer-encoding": _ut, ...upHeaders } = up.headers;
      res.writeHead(up.statusCode, upHeaders as http.OutgoingHttpHeaders);
      for await (const chunk of up.body) if (!res.write(chunk)) await new Promise((r) => res.once("drain", r));
      res.end();
    },
    (err: Error) => res.writeHead(502).end(err.message),
  );
});

const relay = net.createServer((client) => {
  const server = net.connect(originPort, "127.0.0.1");
  client.pipe(server).pipe(client);
  const close = () => {
    client.destroy();
    server.destroy();
  };
  client.on("error", close);
  server.on("error", close);
});

// The same listen backlog as sluice's default, so at c=1000 the floor is not the one whose
// handshakes overflow the accept queue.
await new Promise<void>((r) => minimal.listen(0, "127.0.0.1", 4096, r));
await new Promise<void>((r) => relay.listen(0, "127.0.0.1", 4096, r));
process.stdout.write(JSON.stringify({ minimal: (minimal.address() as net.AddressInfo).port, relay: (relay.address() as net.AddressInfo).port }) + "\n");
