/**
 * HTTPS load through an explicit proxy (CONNECT + TLS interception), run as its own process so it
 * does not share a core with the proxy under test. Prints one JSON line: requests/s, p50, p99 (ms).
 *   https-load PROXY_URL CA_FILE TARGET_URL CONNECTIONS SECONDS keepalive|new
 */
import { readFileSync } from "node:fs";
import { ProxyAgent, request } from "undici";

const [proxyUrl, caFile, target, connArg, secondsArg, modeArg] = process.argv.slice(2);
if (!proxyUrl || !caFile || !target) {
  process.stderr.write("usage: https-load PROXY_URL CA_FILE TARGET_URL CONNECTIONS SECONDS keepalive|new\n");
  process.exit(2);
}
const connections = Number(connArg ?? 10);
const seconds = Number(secondsArg ?? 5);
const fresh = modeArg === "new";
const agent = new ProxyAgent({ uri: proxyUrl, requestTls: { ca: readFileSync(caFile, "utf8") }, connections });
const latencies: number[] = [];
let errors = 0;
const deadline = performance.now() + seconds * 1000;

async function worker(): Promise<void> {
  while (performance.now() < deadline) {
    const t0 = performance.now();
    try {
      const res = await request(target!, { dispatcher: agent, reset: fresh });
      await res.body.arrayBuffer();
      if (res.statusCode !== 200) errors++;
      else latencies.push(performance.now() - t0);
    } catch {
      errors++;
    }
  }
}

const start = performance.now();
await Promise.all(Array.from({ length: connections }, worker));
const elapsed = (performance.now() - start) / 1000;
latencies.sort((a, b) => a - b);
const pct = (p: number) => latencies[Math.min(latencies.length - 1, Math.floor(latencies.length * p))] ?? NaN;
process.stdout.write(JSON.stringify({ requests: latencies.length, rps: latencies.length / elapsed, p50: pct(0.5), p99: pct(0.99), errors }) + "\n");
await agent.close();
