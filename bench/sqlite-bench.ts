/**
 * SQLite capture speed: load N small flows (default 1,000,000; SLUICE_BENCH_FLOWS=… for fewer)
 * into a capture, then answer filters from the indexes, and compare with a full scan.
 * Targets: 1 million flows load in under a minute, an indexed filter answers in under a second.
 */
import { mkdtempSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Headers } from "../src/core/headers.js";
import { HTTPFlow, Request, Response, newClientConnection, newServerConnection } from "../src/core/flow.js";
import { readSqlite, SqliteWriter } from "../src/store/index.js";

const T = 1_700_000_000;
const SERVICES = [
  ["dynamodb.us-east-1.amazonaws.com", "dynamodb", "DynamoDB_20120810.GetItem"],
  ["dynamodb.us-east-1.amazonaws.com", "dynamodb", "DynamoDB_20120810.PutItem"],
  ["sqs.us-east-1.amazonaws.com", "sqs", "AmazonSQS.SendMessage"],
  ["kinesis.us-east-1.amazonaws.com", "kinesis", "Kinesis_20131202.PutRecord"],
] as const;

/** Small flows of a few AWS JSON services; 1 in 501 is throttled (400 ThrottlingException). */
export function flowNumber(i: number): HTTPFlow {
  const [host, service, target] = SERVICES[i % SERVICES.length]!;
  const c = newClientConnection();
  c.peername = ["127.0.0.1", 40000 + (i % 1000)];
  const s = newServerConnection();
  s.address = [host, 443];
  const body = Buffer.from(`{"TableName":"orders","Key":{"id":{"S":"order-${i}"}}}`);
  const req = new Request({
    method: "POST", scheme: "https", host, port: 443, path: "/", authority: host,
    headers: new Headers([
      "Host", host, "Content-Type", "application/x-amz-json-1.0", "X-Amz-Target", target,
      "Authorization", `AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20231114/us-east-1/${service}/aws4_request, SignedHeaders=host, Signature=${(i % 997).toString(16).padStart(64, "0")}`,
      "amz-sdk-request", `attempt=${i % 499 === 1 ? 2 : 1}; max=3`, "Content-Length", String(body.length),
    ]),
    content: body,
    timestampStart: T + i / 1000,
  });
  req.timestampEnd = req.timestampStart + 0.0002;
  const f = new HTTPFlow(c, s, req);
  const throttled = i % 501 === 0;
  const content = Buffer.from(throttled ? '{"__type":"com.amazonaws.dynamodb.v20120810#ThrottlingException","message":"Rate exceeded"}' : '{"Item":{"id":{"S":"x"}}}');
  const res = new Response({ statusCode: throttled ? 400 : 200, reason: throttled ? "Bad Request" : "OK", headers: new Headers(["Content-Type", "application/x-amz-json-1.0", "Content-Length", String(content.length)]), content, timestampStart: req.timestampStart + 0.004 });
  res.timestampEnd = res.timestampStart + 0.0001;
  f.response = res;
  return f;
}

async function timeQuery(path: string, filter: string, repeats = 3): Promise<{ seconds: number; flows: number }> {
  let best = Infinity;
  let flows = 0;
  for (let r = 0; r < repeats; r++) {
    const t0 = performance.now();
    flows = 0;
    for await (const _ of readSqlite(path, { filter })) flows++;
    best = Math.min(best, (performance.now() - t0) / 1000);
  }
  return { seconds: best, flows };
}

export async function benchSqlite(): Promise<string> {
  const n = Number(process.env.SLUICE_BENCH_FLOWS ?? 1_000_000);
  const dir = mkdtempSync(join(tmpdir(), "sluice-sqlite-bench-"));
  const path = join(dir, "capture.sqlite");
  const lines: string[] = [];
  try {
    const t0 = performance.now();
    const writer = await SqliteWriter.open(path);
    for (let i = 0; i < n; i++) {
      writer.write(flowNumber(i));
      if (i % 100_000 === 99_999) process.stderr.write(`  sqlite bench: ${i + 1}/${n} flows written\r`);
    }
    await writer.close();
    const load = (performance.now() - t0) / 1000;
    process.stderr.write("\n");
    const size = statSync(path).size;
    lines.push(`load ${n.toLocaleString("en")} small flows: ${load.toFixed(1)} s (${Math.round(n / load).toLocaleString("en")} flows/s), ${(size / 1e6).toFixed(0)} MB on disk  [target < 60 s for 1M]`);
    for (const filter of ["~c 400", "~svc sqs & ~c 400", "~op PutRecord & ~attempt 2", "~d kinesis & ~c 400"]) {
      const q = await timeQuery(path, filter);
      lines.push(`filter ${JSON.stringify(filter).padEnd(32)} ${q.flows.toLocaleString("en").padStart(8)} flows in ${(q.seconds * 1000).toFixed(0).padStart(6)} ms  [target < 1 s]`);
    }
    // The same kind of question with no index to help: every flow is decoded and tested.
    if (n <= 200_000 || process.env.SLUICE_BENCH_FULL_SCAN) {
      const scan = await timeQuery(path, "~bs ThrottlingException", 1);
      lines.push(`full scan "~bs ThrottlingException"   ${scan.flows.toLocaleString("en").padStart(8)} flows in ${(scan.seconds * 1000).toFixed(0).padStart(6)} ms  (no index: every flow decoded)`);
    } else {
      const m = 100_000;
      const t1 = performance.now();
      let k = 0;
      for await (const _ of readSqlite(path)) if (++k >= m) break;
      const per = (performance.now() - t1) / 1000 / m;
      lines.push(`full scan (no index) decodes ${Math.round(1 / per).toLocaleString("en")} flows/s → ~${(per * n).toFixed(1)} s for all ${n.toLocaleString("en")}`);
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
  return lines.join("\n");
}
