/**
 * Rate shaping against a throttling API, the ScoutSuite story: a scanner with N parallel workers
 * makes a few thousand EC2 DescribeSnapshots calls against an origin that admits R/s (a token
 * bucket, EC2-style 503 RequestLimitExceeded above it). The client retries like the AWS SDK for
 * JavaScript v3's standard mode: full-jitter exponential back-off, 500 ms base for throttles,
 * 20 s cap (more attempts than the SDK's 3, so that no call is lost and times compare).
 *
 * Rows: straight through; a blanket delay on every request (tuned to this client's concurrency,
 * the best case for that approach); `--shape` at R; `--shape adaptive` with R unknown.
 * Sizes: SHAPING_CALLS (2000), SHAPING_RATE (100), SHAPING_WORKERS (32).
 */
import http from "node:http";
import type net from "node:net";
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Agent, request } from "undici";
import { TokenBucket } from "../src/core/token-bucket.js";
import { startSluiceDump } from "./sluice-child.js";

const CALLS = Number(process.env.SHAPING_CALLS ?? 2000);
const RATE = Number(process.env.SHAPING_RATE ?? 100);
const WORKERS = Number(process.env.SHAPING_WORKERS ?? 32);
const MAX_ATTEMPTS = 10;
const ORIGIN_BURST = RATE; // one second's worth, like EC2's bucket capacity for describe calls

const THROTTLE_BODY =
  '<?xml version="1.0" encoding="UTF-8"?>\n<Response><Errors><Error><Code>RequestLimitExceeded</Code><Message>Request limit exceeded.</Message></Error></Errors><RequestID>00000000-0000-0000-0000-000000000000</RequestID></Response>';
const OK_BODY =
  '<?xml version="1.0" encoding="UTF-8"?>\n<DescribeSnapshotsResponse xmlns="http://ec2.amazonaws.com/doc/2016-11-15/"><requestId>1</requestId><snapshotSet><item><snapshotId>snap-0123456789abcdef0</snapshotId></item></snapshotSet></DescribeSnapshotsResponse>';
const HEADERS = {
  authorization: "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20260101/us-east-1/ec2/aws4_request, SignedHeaders=content-type;host;x-amz-date, Signature=0",
  "content-type": "application/x-www-form-urlencoded; charset=utf-8",
  "user-agent": "shaping-bench scanner (retry like aws-sdk-js standard)",
};

interface Row {
  name: string;
  seconds: number;
  throttled: number;
  retries: number;
  gaveUp: number;
}

/** The API: admits RATE/s with a burst, throttles the rest the way EC2 does. */
async function startThrottlingOrigin(): Promise<{ port: number; close(): Promise<void>; reset(): void }> {
  let bucket = new TokenBucket(RATE, ORIGIN_BURST, performance.now());
  const server = http.createServer((req, res) => {
    req.resume();
    req.on("end", () => {
      if (bucket.tryTake(performance.now())) {
        res.writeHead(200, { "content-type": "text/xml;charset=UTF-8" });
        res.end(OK_BODY);
      } else {
        res.writeHead(503, { "content-type": "text/xml;charset=UTF-8" });
        res.end(THROTTLE_BODY);
      }
    });
  });
  server.keepAliveTimeout = 30_000;
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  return {
    port: (server.address() as net.AddressInfo).port,
    close: () => new Promise<void>((r) => { server.closeAllConnections(); server.close(() => r()); }),
    // Each row starts against a full, fresh budget.
    reset: () => void (bucket = new TokenBucket(RATE, ORIGIN_BURST, performance.now())),
  };
}

/** The scanner: WORKERS loops taking calls from a shared counter, each retried like an SDK would. */
async function scan(proxyPort: number): Promise<Omit<Row, "name">> {
  const agent = new Agent({ connections: WORKERS, keepAliveTimeout: 30_000 });
  let next = 0;
  let throttled = 0;
  let retries = 0;
  let gaveUp = 0;
  let done = 0;
  const started = performance.now();
  const progress = setInterval(() => process.stderr.write(`\r  ${done}/${CALLS} calls, ${throttled} throttled`), 1000);
  const call = async (i: number) => {
    const body = `Action=DescribeSnapshots&Version=2016-11-15&MaxResults=5&NextToken=${i}`;
    for (let attempt = 1; ; attempt++) {
      const r = await request(`http://127.0.0.1:${proxyPort}/`, { method: "POST", headers: HEADERS, body, dispatcher: agent });
      await r.body.text();
      if (r.statusCode === 200) return;
      throttled++;
      if (attempt >= MAX_ATTEMPTS) {
        gaveUp++;
        return;
      }
      retries++;
      const backoff = Math.random() * Math.min(20_000, 500 * 2 ** (attempt - 1));
      await new Promise((res) => setTimeout(res, backoff));
    }
  };
  await Promise.all(
    Array.from({ length: WORKERS }, async () => {
      while (next < CALLS) {
        await call(next++);
        done++;
      }
    }),
  );
  clearInterval(progress);
  process.stderr.write("\r" + " ".repeat(50) + "\r");
  await agent.close();
  return { seconds: (performance.now() - started) / 1000, throttled, retries, gaveUp };
}

export async function benchShaping(): Promise<string> {
  const origin = await startThrottlingOrigin();
  const confdir = mkdtempSync(join(tmpdir(), "sluice-bench-shaping-"));
  const delayMs = Math.ceil((WORKERS / RATE) * 1000);
  const base = ["--confdir", confdir, "--mode", `reverse:http://127.0.0.1:${origin.port}`];
  const scenarios: [string, string[]][] = [
    ["no shaping", []],
    // The blanket approach: the same pause before every request, whatever the load (a fault rule).
    [`--fault '~svc ec2 => delay ${delayMs}ms'`, ["--fault", `~svc ec2 => delay ${delayMs}ms`]],
    [`--shape '~svc ec2 => ${RATE}/s'`, ["--shape", `~svc ec2 => ${RATE}/s`]],
    ["--shape '~svc ec2 => adaptive'", ["--shape", "~svc ec2 => adaptive"]],
  ];
  const rows: Row[] = [];
  try {
    for (const [name, args] of scenarios) {
      process.stderr.write(`shaping bench: ${name} …\n`);
      origin.reset();
      const sluice = await startSluiceDump([...base, ...args]);
      try {
        rows.push({ name, ...(await scan(sluice.port)) });
      } finally {
        sluice.child.kill("SIGINT");
        await new Promise((r) => sluice.child.once("exit", r));
      }
    }
  } finally {
    await origin.close();
  }
  const ideal = CALLS / RATE;
  const lines = [
    `${CALLS} DescribeSnapshots calls, ${WORKERS} workers, origin admits ${RATE}/s (burst ${ORIGIN_BURST}), throttles above with 503 RequestLimitExceeded`,
    `client retries: full-jitter exponential back-off (500 ms base, 20 s cap), up to ${MAX_ATTEMPTS} attempts; calls/R = ${ideal.toFixed(1)} s`,
    "",
    `${"".padEnd(36)}${"total s".padStart(9)}${"vs calls/R".padStart(12)}${"throttled".padStart(11)}${"retries".padStart(9)}${"gave up".padStart(9)}`,
  ];
  for (const r of rows) {
    const vs = `${r.seconds >= ideal ? "+" : ""}${(((r.seconds - ideal) / ideal) * 100).toFixed(0)}%`;
    lines.push(`${r.name.padEnd(36)}${r.seconds.toFixed(1).padStart(9)}${vs.padStart(12)}${String(r.throttled).padStart(11)}${String(r.retries).padStart(9)}${String(r.gaveUp).padStart(9)}`);
  }
  lines.push("", `The blanket delay is ${delayMs} ms = workers/R: tuned to this exact client. With twice the workers it is throttled again; with half, it takes twice as long.`);
  return lines.join("\n");
}

if (import.meta.url === `file://${process.argv[1]}`) {
  process.stdout.write((await benchShaping()) + "\n");
}
