/**
 * Filter matching speed: compiled expressions against in-memory headers-only flows, simple and
 * compound, in matches per second. The target is ≥ 1 million simple matches per second.
 */
import { compileFilter } from "../src/core/filter.js";
import { Headers } from "../src/core/headers.js";
import { HTTPFlow, Request, Response, newClientConnection, newServerConnection } from "../src/core/flow.js";

const TARGET = 1_000_000;

function sampleFlows(n: number): HTTPFlow[] {
  const flows: HTTPFlow[] = [];
  const hosts = ["s3.eu-west-1.amazonaws.com", "dynamodb.us-east-1.amazonaws.com", "example.com", "api.github.com"];
  const methods = ["GET", "PUT", "POST", "HEAD"];
  for (let i = 0; i < n; i++) {
    const host = hosts[i % hosts.length]!;
    const req = new Request({
      method: methods[i % methods.length]!,
      scheme: "https",
      host,
      port: 443,
      path: `/bucket-${i % 7}/key-${i}?x-id=GetObject`,
      httpVersion: "HTTP/1.1",
      headers: new Headers(["Host", host, "User-Agent", "Boto3/1.34.0 md/Botocore#1.34.0", "amz-sdk-invocation-id", `inv-${i >> 2}`, "amz-sdk-request", `attempt=${((i >> 2) % 4) + 1}; max=5`, "Accept", "*/*"]),
      content: null,
      timestampStart: 1_700_000_000 + i / 1000,
    });
    const flow = new HTTPFlow(newClientConnection(), newServerConnection(), req);
    const status = i % 10 === 0 ? 503 : 200;
    flow.response = new Response({
      statusCode: status,
      reason: status === 503 ? "Slow Down" : "OK",
      httpVersion: "HTTP/1.1",
      headers: new Headers(["Content-Type", "application/xml", "Content-Length", "0", "x-amz-request-id", `REQ${i}`]),
      content: null,
      timestampStart: 1_700_000_000 + i / 1000 + 0.01,
    });
    flows.push(flow);
  }
  return flows;
}

const EXPRESSIONS: [kind: string, expr: string][] = [
  ["simple", "~c 503"],
  ["simple", "~m PUT"],
  ["simple", "~d s3.eu-west-1.amazonaws.com"],
  ["simple", "amazonaws"],
  ["compound", "~d amazonaws & (~m GET | ~m HEAD) & !~c 200"],
  ["compound", "~h 'amz-sdk-request: attempt=[2-9]' & ~s"],
  ["aws", "~svc s3 & ~retry"],
  ["aws", "~op GetObject & ~throttled"],
];

function measure(expr: string, flows: HTTPFlow[]): { rate: number; matched: number } {
  const pred = compileFilter(expr);
  let matched = 0;
  for (let i = 0; i < 20_000; i++) if (pred(flows[i % flows.length]!)) matched++; // warm the JIT
  matched = 0;
  let calls = 0;
  const start = process.hrtime.bigint();
  let elapsed = 0;
  while (elapsed < 0.5) {
    for (const f of flows) if (pred(f)) matched++;
    calls += flows.length;
    elapsed = Number(process.hrtime.bigint() - start) / 1e9;
  }
  return { rate: calls / elapsed, matched: (matched / calls) * flows.length };
}

export async function benchFilter(): Promise<string> {
  const flows = sampleFlows(10_000);
  const rows = [["kind", "expression", "matches/s", "vs 1M/s target", "matching flows of 10k"]];
  for (const [kind, expr] of EXPRESSIONS) {
    const { rate, matched } = measure(expr, flows);
    rows.push([kind, expr, Math.round(rate).toLocaleString("en-US"), `${(rate / TARGET).toFixed(2)}×`, String(Math.round(matched))]);
  }
  const widths = rows[0]!.map((_, c) => Math.max(...rows.map((r) => r[c]!.length)));
  return rows.map((r) => r.map((cell, c) => cell.padEnd(widths[c]!)).join("  ")).join("\n");
}
