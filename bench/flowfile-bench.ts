/**
 * Flow file speed: sluice's FlowWriter/readFlows against mitmproxy's own FlowWriter/FlowReader
 * (Debian's mitmproxy 8.1.1, timed inside its Python) on the same flows, in one run.
 *
 * Workloads: 100,000 small flows (a typical JSON API call), and single flows with 4, 10 and 50 MB
 * response bodies. Dump = encode + write until the file is closed; load = read + decode into flow
 * objects. Python gets the very flow sluice wrote, read back from sluice's file.
 */
import { spawn } from "node:child_process";
import { existsSync, mkdtempSync, rmSync, statSync } from "node:fs";
import { randomBytes } from "node:crypto";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Headers } from "../src/core/headers.js";
import { HTTPFlow, Request, Response, newClientConnection, newServerConnection } from "../src/core/flow.js";
import { FlowWriter, readFlows } from "../src/store/index.js";

const MITMDUMP = "/usr/bin/mitmdump";
const PYTHON = "/usr/bin/python3";
const SMALL_FLOWS = Number(process.env.BENCH_FLOWS ?? 100_000);
const BIG_BODIES_MB = [4, 10, 50];
const BIG_REPEATS = 7;

interface Timing {
  dumpSeconds: number;
  loadSeconds: number;
  bytes: number;
  flows: number;
}

interface Workload {
  name: string;
  flow: HTTPFlow;
  count: number;
  /** Best of this many runs; sluice gets one more, since its first run also warms up the JIT. */
  repeats: number;
}

export function sampleFlow(responseBody: Buffer): HTTPFlow {
  const t = 1_700_000_000.123456;
  const client = newClientConnection();
  client.peername = ["127.0.0.1", 51234];
  client.sockname = ["127.0.0.1", 8080];
  client.timestampStart = t - 0.01;
  const server = newServerConnection();
  server.address = ["dynamodb.us-east-1.amazonaws.com", 443];
  server.peername = ["52.94.0.10", 443];
  server.sockname = ["10.0.0.2", 40000];
  server.timestampStart = t + 0.001;
  server.timestampTcpSetup = t + 0.01;
  const body = Buffer.from(JSON.stringify({ TableName: "orders", Key: { id: { S: "order-123456" } }, ConsistentRead: true }));
  const request = new Request({
    method: "POST",
    scheme: "https",
    host: "dynamodb.us-east-1.amazonaws.com",
    port: 443,
    path: "/",
    authority: "dynamodb.us-east-1.amazonaws.com",
    headers: new Headers([
      "Host", "dynamodb.us-east-1.amazonaws.com",
      "Content-Type", "application/x-amz-json-1.0",
      "X-Amz-Target", "DynamoDB_20120810.GetItem",
      "X-Amz-Date", "20231114T221320Z",
      "Authorization", "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20231114/us-east-1/dynamodb/aws4_request, SignedHeaders=content-type;host;x-amz-date;x-amz-target, Signature=0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
      "User-Agent", "aws-sdk-js/3.400.0 ua/2.0 os/linux lang/js md/nodejs#20.10.0 api/dynamodb#3.400.0",
      "amz-sdk-invocation-id", "2b3c4d5e-6f70-4182-93a4-b5c6d7e8f901",
      "amz-sdk-request", "attempt=1; max=3",
      "Content-Length", String(body.length),
    ]),
    content: body,
    timestampStart: t,
  });
  request.timestampEnd = t + 0.0005;
  const flow = new HTTPFlow(client, server, request);
  const response = new Response({
    statusCode: 200,
    reason: "OK",
    headers: new Headers([
      "Server", "Server",
      "Date", "Tue, 14 Nov 2023 22:13:20 GMT",
      "Content-Type", "application/x-amz-json-1.0",
      "Content-Length", String(responseBody.length),
      "Connection", "keep-alive",
      "x-amzn-RequestId", "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789ABCDEFGHIJKLMNOP",
      "x-amz-crc32", "1234567890",
    ]),
    content: responseBody,
    timestampStart: t + 0.02,
  });
  response.timestampEnd = t + 0.021;
  flow.response = response;
  flow.metadata = { aws: { service: "dynamodb", region: "us-east-1", operation: "GetItem" } };
  return flow;
}

async function timeSluice(w: Workload, path: string): Promise<Timing> {
  let dump = Infinity;
  let load = Infinity;
  let flows = 0;
  for (let r = 0; r < w.repeats + 1; r++) {
    // A fresh file each run, as a new capture is (rewriting one in place makes ext4 flush it on close).
    rmSync(path, { force: true });
    const t0 = performance.now();
    const writer = await FlowWriter.open(path);
    for (let i = 0; i < w.count; i++) if (!writer.write(w.flow)) await writer.flush();
    await writer.close();
    dump = Math.min(dump, (performance.now() - t0) / 1000);

    const t1 = performance.now();
    flows = 0;
    for await (const _ of readFlows(path)) flows++;
    load = Math.min(load, (performance.now() - t1) / 1000);
  }
  return { dumpSeconds: dump, loadSeconds: load, bytes: statSync(path).size, flows };
}

/** Runs inside mitmproxy's Python: best of N dump and load times for `count` copies of the template. */
const PYTHON_BENCH = `
import json, os, sys, time
from mitmproxy.io import FlowReader, FlowWriter
template_path, out_path, count, repeats = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
with open(template_path, "rb") as f:
    template = next(iter(FlowReader(f).stream()))
dump = load = float("inf")
for _ in range(repeats):
    if os.path.exists(out_path):
        os.unlink(out_path)
    t0 = time.perf_counter()
    with open(out_path, "wb") as f:
        w = FlowWriter(f)
        for _ in range(count):
            w.add(template)
    dump = min(dump, time.perf_counter() - t0)
    t1 = time.perf_counter()
    with open(out_path, "rb") as f:
        n = sum(1 for _ in FlowReader(f).stream())
    load = min(load, time.perf_counter() - t1)
print(json.dumps({"dumpSeconds": dump, "loadSeconds": load, "flows": n, "bytes": os.path.getsize(out_path)}))
`;

function timeMitmproxy(templatePath: string, outPath: string, w: Workload): Promise<Timing> {
  return new Promise((resolve, reject) => {
    const child = spawn(PYTHON, ["-c", PYTHON_BENCH, templatePath, outPath, String(w.count), String(w.repeats)], { stdio: ["ignore", "pipe", "pipe"] });
    let out = "";
    let err = "";
    child.stdout.on("data", (c: Buffer) => (out += c.toString()));
    child.stderr.on("data", (c: Buffer) => (err += c.toString()));
    child.once("error", reject);
    child.once("exit", (code) => {
      if (code !== 0) reject(new Error(`mitmproxy benchmark failed (${code}): ${err.trim()}`));
      else resolve(JSON.parse(out) as Timing);
    });
  });
}

function rate(t: Timing, seconds: number): string {
  const mbps = t.bytes / 1e6 / seconds;
  const fps = t.flows / seconds;
  return `${mbps.toFixed(0).padStart(7)} MB/s ${fps.toFixed(fps < 100 ? 1 : 0).padStart(9)} flows/s`;
}

export async function benchFlowFiles(): Promise<string> {
  const dir = mkdtempSync(join(tmpdir(), "sluice-flowfile-bench-"));
  const haveMitmproxy = existsSync(MITMDUMP);
  const workloads: Workload[] = [
    { name: `${SMALL_FLOWS.toLocaleString("en-US")} small flows`, flow: sampleFlow(Buffer.from(JSON.stringify({ Item: { id: { S: "order-123456" }, total: { N: "42.50" }, status: { S: "shipped" }, notes: { S: "x".repeat(700) } } }))), count: SMALL_FLOWS, repeats: 1 },
    ...BIG_BODIES_MB.map((mb) => ({ name: `1 flow, ${mb} MiB body`, flow: sampleFlow(randomBytes(mb * 1024 * 1024)), count: 1, repeats: BIG_REPEATS })),
  ];
  const lines = [
    `Flow files: dump (encode + write until closed) and load (read + decode into flows); best of ${BIG_REPEATS} runs for big bodies, 1 for small flows (sluice: +1 warm-up run)`,
    `${"".padEnd(24)}${"".padEnd(8)}${"sluice".padStart(30)}   ${haveMitmproxy ? "mitmproxy 8.1.1 (Python)".padStart(30) : ""}   ${haveMitmproxy ? "sluice ÷ mitmproxy" : ""}`,
  ];
  try {
    for (const w of workloads) {
      const sluicePath = join(dir, "sluice.mitm");
      const s = await timeSluice(w, sluicePath);
      let m: Timing | null = null;
      if (haveMitmproxy) m = await timeMitmproxy(sluicePath, join(dir, "mitmproxy.mitm"), w);
      for (const op of ["dump", "load"] as const) {
        const key = op === "dump" ? "dumpSeconds" : "loadSeconds";
        const ratio = m ? `${(m[key] / s[key]).toFixed(1)}×` : "";
        lines.push(`${(op === "dump" ? w.name : "").padEnd(24)}${op.padEnd(8)}${rate(s, s[key]).padStart(30)}   ${m ? rate(m, m[key]).padStart(30) : ""}   ${ratio}`);
      }
    }
    lines.push("(big bodies go to writev by reference; what is left of a dump is the kernel's copy into the page cache)");
    if (!haveMitmproxy) lines.push(`(mitmproxy column skipped: ${MITMDUMP} not found; apt-get install -y mitmproxy)`);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
  return lines.join("\n");
}

if (import.meta.url === `file://${process.argv[1]}`) {
  benchFlowFiles().then((table) => process.stdout.write(table + "\n"));
}
