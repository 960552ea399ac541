/**
 * Retry reconstruction speed: the InvocationTracker on in-memory flows (AWS recognition included,
 * as each flow is new to it), and `sluice report` end to end on a flow file (decoding included),
 * with the report process's peak memory — which must stay flat as captures grow.
 */
import { spawn } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { Headers } from "../src/core/headers.js";
import { HTTPFlow, Request, Response, newClientConnection, newServerConnection } from "../src/core/flow.js";
import { InvocationTracker } from "../src/aws/invocations.js";
import { FlowWriter } from "../src/store/index.js";

const SLUICE_BIN = join(fileURLToPath(import.meta.url), "..", "..", "..", "bin", "sluice.js");
const THROTTLED = Buffer.from('{"__type":"com.amazonaws.dynamodb.v20120810#ThrottlingException","message":"Rate exceeded"}');

/** Flow i of a stream of DynamoDB calls where every third call is throttled once, then retried: 4 flows per 3 calls. */
function flowAt(i: number): HTTPFlow {
  const j = i % 4;
  const call = Math.floor(i / 4) * 3 + (j < 2 ? 0 : j - 1);
  const retry = j === 1;
  const throttled = j === 0;
  const start = 1_790_000_000 + i * 0.001;
  const headers = new Headers([
    "Host", "dynamodb.eu-west-1.amazonaws.com", "X-Amz-Target", "DynamoDB_20120810.PutItem",
    "Authorization", "AWS4-HMAC-SHA256 Credential=AKID/20261125/eu-west-1/dynamodb/aws4_request, SignedHeaders=host, Signature=0",
    "amz-sdk-invocation-id", `call-${call}`, "amz-sdk-request", `attempt=${retry ? 2 : 1}; max=3`,
  ]);
  const req = new Request({ method: "POST", scheme: "https", host: "dynamodb.eu-west-1.amazonaws.com", port: 443, path: "/", headers, content: Buffer.from("{}"), timestampStart: start });
  const flow = new HTTPFlow(newClientConnection(), newServerConnection(), req);
  flow.clientConn.peername = ["10.0.0.1", 40000 + (call % 100)];
  const resp = new Response({ statusCode: throttled ? 400 : 200, headers: new Headers(["Content-Type", "application/x-amz-json-1.0"]), content: throttled ? THROTTLED : Buffer.from("{}"), timestampStart: start + 0.0005 });
  resp.timestampEnd = start + 0.0005;
  flow.response = resp;
  return flow;
}

function benchTracker(n: number): string {
  const flows = Array.from({ length: n }, (_, i) => flowAt(i));
  const tracker = new InvocationTracker();
  const t0 = process.hrtime.bigint();
  for (const f of flows) tracker.add(f);
  tracker.finishAll();
  const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
  const t = tracker.totals();
  return `tracker      ${n.toLocaleString("en-US")} flows in ${seconds.toFixed(2)} s = ${Math.round(n / seconds).toLocaleString("en-US")} flows/s (${t.invocations} calls, ${t.retries} retries)`;
}

async function benchReport(n: number): Promise<string> {
  const dir = mkdtempSync(join(tmpdir(), "sluice-retries-bench-"));
  try {
    const file = join(dir, "calls.mitm");
    const writer = await FlowWriter.open(file);
    for (let i = 0; i < n; i++) writer.write(flowAt(i));
    await writer.close();
    const t0 = Date.now();
    const peakKb = await new Promise<number>((resolve, reject) => {
      // /usr/bin/time is not everywhere: read the child's own peak RSS from /proc before it exits.
      const child = spawn(process.execPath, [SLUICE_BIN, "report", file, "--json"], { stdio: ["ignore", "ignore", "pipe"] });
      let peak = 0;
      const timer = setInterval(async () => {
        try {
          const { readFile } = await import("node:fs/promises");
          const status = await readFile(`/proc/${child.pid}/status`, "utf8");
          peak = Math.max(peak, Number(/VmHWM:\s+(\d+)/.exec(status)?.[1] ?? 0));
        } catch {
          // The child has exited.
        }
      }, 50);
      child.once("error", reject);
      child.once("exit", (code) => {
        clearInterval(timer);
        if (code === 0) resolve(peak);
        else reject(new Error(`sluice report exited with ${code}`));
      });
    });
    const seconds = (Date.now() - t0) / 1000;
    return `report       ${n.toLocaleString("en-US")} flows from a flow file in ${seconds.toFixed(2)} s = ${Math.round(n / seconds).toLocaleString("en-US")} flows/s, peak RSS ${(peakKb / 1024).toFixed(0)} MB`;
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

export async function benchRetries(): Promise<string> {
  return [benchTracker(300_000), await benchReport(150_000), await benchReport(300_000)].join("\n");
}
