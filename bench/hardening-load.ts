/**
 * Load generator for `npm run bench -- hardening`, run as its own process so it does not share an
 * event loop with the proxy. Prints one JSON line with its results on stdout.
 *
 *   soak PROXY_PORT HTTP_PORT HTTPS_PORT CA_FILE SECONDS   mixed traffic, responses delivered
 *   names PROXY_PORT HTTPS_PORT CA_FILE SECONDS            new TLS hostnames per second (CONNECT + handshake)
 *   plain PROXY_PORT HTTP_PORT SECONDS                     plain request latencies (p50, p99)
 *   idle PROXY_PORT COUNT HOLD_SECONDS                     COUNT idle keep-alive connections held open
 */
import net from "node:net";
import tls from "node:tls";
import { readFileSync } from "node:fs";
import { Agent, ProxyAgent, request } from "undici";

const [mode, ...args] = process.argv.slice(2);

function percentile(sorted: number[], p: number): number {
  return sorted.length ? sorted[Math.min(sorted.length - 1, Math.floor((sorted.length * p) / 100))]! : NaN;
}

async function soak(proxyPort: number, httpPort: number, httpsPort: number, caFile: string, seconds: number): Promise<object> {
  const proxy = `http://127.0.0.1:${proxyPort}`;
  const plain = new ProxyAgent({ uri: proxy, connections: 8 });
  const secure = new ProxyAgent({ uri: proxy, connections: 2, requestTls: { ca: readFileSync(caFile, "utf8") } });
  const end = Date.now() + seconds * 1000;
  let delivered = 0;
  let failed = 0;
  const body = Buffer.alloc(4096, "b");
  const worker = async (w: number) => {
    for (let i = 0; Date.now() < end; i++) {
      const kind = (w + i) % 10;
      try {
        const res =
          kind < 6
            ? await request(`http://127.0.0.1:${httpPort}/get/${w}/${i}`, { dispatcher: plain })
            : kind < 8
              ? await request(`http://127.0.0.1:${httpPort}/post/${w}/${i}`, { dispatcher: plain, method: "POST", body })
              : await request(`https://127.0.0.1:${httpsPort}/secure/${w}/${i}`, { dispatcher: secure });
        await res.body.dump();
        delivered++;
      } catch {
        failed++;
      }
    }
  };
  await Promise.all(Array.from({ length: 10 }, (_, w) => worker(w)));
  await Promise.all([plain.close(), secure.close()]);
  return { delivered, failed };
}

/** CONNECT, then a TLS handshake with a hostname never seen before; the connection is then closed. */
function newName(proxyPort: number, httpsPort: number, ca: tls.SecureContext, name: string): Promise<void> {
  return new Promise((resolve, reject) => {
    const socket = net.connect(proxyPort, "127.0.0.1");
    socket.once("error", reject);
    socket.once("connect", () => socket.write(`CONNECT 127.0.0.1:${httpsPort} HTTP/1.1\r\nHost: 127.0.0.1:${httpsPort}\r\n\r\n`));
    let head = "";
    const onData = (c: Buffer) => {
      head += c.toString("latin1");
      if (!head.includes("\r\n\r\n")) return;
      socket.removeListener("data", onData);
      if (!/^HTTP\/1\.[01] 200/.test(head)) return reject(new Error(head.split("\r\n")[0]));
      const t = tls.connect({ socket, servername: name, secureContext: ca });
      // Verified as a client in C (curl, boto3's OpenSSL) verifies: OpenSSL checks the chain against
      // sluice's CA (rejectUnauthorized), and Node's checkServerIdentity checks the name against the
      // leaf's subjectAltName. Node would first convert the whole chain into JS objects
      // (getPeerCertificate(true): fingerprints, moduli, the issuer chain) — half the loader's CPU —
      // though its check reads only the names; so it is given the leaf's names alone.
      t.getPeerCertificate = () => ({ subject: {}, subjectaltname: t.getPeerX509Certificate()?.subjectAltName }) as tls.DetailedPeerCertificate;
      t.once("secureConnect", () => {
        t.destroy();
        resolve();
      });
      t.once("error", reject);
    };
    socket.on("data", onData);
  });
}

async function names(proxyPort: number, httpsPort: number, caFile: string, seconds: number): Promise<object> {
  // One client context for every handshake: a `ca` option per connection would parse the CA
  // again each time, and the loader's cost would be measured instead of the proxy's.
  const ca = tls.createSecureContext({ ca: readFileSync(caFile, "utf8") });
  const end = Date.now() + seconds * 1000;
  let done = 0;
  let failed = 0;
  let seq = 0;
  const worker = async () => {
    while (Date.now() < end) {
      try {
        await newName(proxyPort, httpsPort, ca, `n${seq++}-${process.pid}.bench.test`);
        done++;
      } catch {
        failed++;
      }
    }
  };
  const started = Date.now();
  const cpuBefore = process.cpuUsage();
  await Promise.all(Array.from({ length: 32 }, worker));
  const cpu = process.cpuUsage(cpuBefore);
  // The loader's own CPU (its TLS handshakes verify sluice's leaves): it shares the cores with sluice.
  return { names: done, failed, perSecond: done / ((Date.now() - started) / 1000), loaderCpuMs: (cpu.user + cpu.system) / 1000 };
}

async function plainLatency(proxyPort: number, httpPort: number, seconds: number): Promise<object> {
  const agent = new ProxyAgent({ uri: `http://127.0.0.1:${proxyPort}`, connections: 2 });
  const end = Date.now() + seconds * 1000;
  const times: number[] = [];
  let failed = 0;
  const worker = async () => {
    while (Date.now() < end) {
      const t0 = performance.now();
      try {
        const res = await request(`http://127.0.0.1:${httpPort}/plain`, { dispatcher: agent });
        await res.body.dump();
        times.push(performance.now() - t0);
      } catch {
        failed++;
      }
    }
  };
  await Promise.all([worker(), worker()]);
  await agent.close();
  times.sort((a, b) => a - b);
  return { requests: times.length, failed, p50: percentile(times, 50), p99: percentile(times, 99) };
}

async function idle(proxyPort: number, count: number, holdSeconds: number): Promise<object> {
  const sockets: net.Socket[] = [];
  let open = 0;
  for (let i = 0; i < count; i += 500) {
    const batch = Array.from({ length: Math.min(500, count - i) }, () =>
      new Promise<void>((resolve) => {
        const s = net.connect(proxyPort, "127.0.0.1");
        s.once("connect", () => {
          open++;
          resolve();
        });
        s.once("error", () => resolve());
        s.on("close", () => open--);
        sockets.push(s);
      }),
    );
    await Promise.all(batch);
  }
  process.stdout.write(JSON.stringify({ ready: open }) + "\n");
  await new Promise((r) => setTimeout(r, holdSeconds * 1000));
  const stillOpen = open;
  for (const s of sockets) s.destroy();
  return { opened: sockets.length, stillOpen };
}

let result: object;
const n = args.map(Number);
switch (mode) {
  case "soak":
    result = await soak(n[0]!, n[1]!, n[2]!, args[3]!, n[4]!);
    break;
  case "names":
    result = await names(n[0]!, n[1]!, args[2]!, n[3]!);
    break;
  case "plain":
    result = await plainLatency(n[0]!, n[1]!, n[2]!);
    break;
  case "idle":
    result = await idle(n[0]!, n[1]!, n[2]!);
    break;
  default:
    throw new Error(`unknown mode ${mode}`);
}
process.stdout.write(JSON.stringify(result) + "\n");
// undici keeps sockets referenced until they time out; the numbers are out.
process.exit(0);
