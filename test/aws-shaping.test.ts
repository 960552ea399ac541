/**
 * `--shape aws-limits` (issue 17): requests queue to AWS's documented limits instead of being
 * refused, so a client in front of `--fault aws-limits` at the same limits gets no throttles. The
 * scan is boto3's DescribeSnapshots (unfiltered and unpaginated: EC2's 50-request bucket refilled
 * 10/s) from 16 threads, scaled up so 2,000 calls take seconds.
 */
import { test, describe } from "node:test";
import assert from "node:assert/strict";
import { Response } from "../src/core/flow.js";
import { Faults } from "../src/addons/faults.js";
import { Shaping } from "../src/addons/shaping.js";
import { parseShapeRule, ShapeRuleError } from "../src/addons/shaping-rules.js";
import { startSluice } from "./support/sluice.js";
import { startScriptedOrigin } from "./support/fake-aws.js";
import { run, awsEnv, pythonWithBoto3, PYTHON_ALPN_RACE_GUARD } from "./support/run.js";
import { needsPython } from "./support/needs.js";

const SNAPSHOTS = '<DescribeSnapshotsResponse xmlns="http://ec2.amazonaws.com/doc/2016-11-15/"><requestId>r1</requestId><snapshotSet/></DescribeSnapshotsResponse>';

/** boto3 from 16 threads, one attempt per call (botocore's max_attempts counts retries): every throttle is visible as an error. */
const SCAN = `${PYTHON_ALPN_RACE_GUARD}
import boto3, botocore.config, botocore.exceptions, json, sys, threading, collections
calls = int(sys.argv[1])
ec2 = boto3.client("ec2", region_name="eu-west-1", config=botocore.config.Config(retries={"total_max_attempts": 1, "mode": "standard"}, max_pool_connections=16))
codes = collections.Counter()
lock = threading.Lock()
todo = list(range(calls))
def worker():
    while True:
        with lock:
            if not todo:
                return
            todo.pop()
        try:
            ec2.describe_snapshots()
            code = "ok"
        except botocore.exceptions.ClientError as e:
            code = e.response["Error"]["Code"]
        with lock:
            codes[code] += 1
threads = [threading.Thread(target=worker) for _ in range(16)]
[t.start() for t in threads]
[t.join() for t in threads]
print(json.dumps(codes))
`;

async function scan(calls: number, rules: { fault: string[]; shape: string[] }): Promise<{ codes: Record<string, number>; flows: number; shaped: number; refused: number }> {
  const origin = await startScriptedOrigin(() => Response.make(200, SNAPSHOTS, { "content-type": "text/xml;charset=UTF-8" }));
  const sluice = await startSluice({
    set: { map_remote: JSON.stringify([`|https://ec2\\.eu-west-1\\.amazonaws\\.com|${origin.url}`]), fault_rules: JSON.stringify(rules.fault), shape_rules: JSON.stringify(rules.shape) },
    addons: [new Shaping(), new Faults()],
  });
  try {
    const r = await run(await pythonWithBoto3(), ["-c", SCAN, String(calls)], { env: awsEnv({ HTTPS_PROXY: sluice.url, AWS_CA_BUNDLE: sluice.caCert }), timeoutMs: 120_000 });
    assert.equal(r.code, 0, r.stderr);
    const shaped = sluice.flows.filter((f) => ((f.metadata.shaping as { waitMs?: number } | undefined)?.waitMs ?? 0) > 0).length;
    return { codes: JSON.parse(r.stdout) as Record<string, number>, flows: sluice.flows.filter((f) => f.request.method !== "CONNECT").length, shaped, refused: sluice.flows.filter((f) => f.metadata.aws_limit).length };
  } finally {
    await Promise.all([sluice.close(), origin.close()]);
  }
}

describe("--shape aws-limits", () => {
  test("without shaping, a DescribeSnapshots scan from 16 threads runs into EC2's unfiltered bucket (RequestLimitExceeded)", { skip: needsPython("boto3", "python3-boto3") }, async () => {
    const out = await scan(150, { fault: ["aws-limits"], shape: [] });
    assert.ok((out.codes.RequestLimitExceeded ?? 0) >= 50, JSON.stringify(out.codes));
    assert.equal(out.refused, out.codes.RequestLimitExceeded, JSON.stringify(out));
  });

  test("a 2,000-call DescribeSnapshots scan from 16 threads, shaped to the same limits it is faulted at, gets 0 throttles", { skip: needsPython("boto3", "python3-boto3") }, async () => {
    // Scaled 10×: a bucket of 500 refilled 100/s, so the scan takes at least 15 s however fast the client is.
    const out = await scan(2000, { fault: ["aws-limits scale=10"], shape: ["aws-limits scale=10"] });
    assert.deepEqual(out.codes, { ok: 2000 }, `${out.shaped} requests waited in the queue`);
    assert.equal(out.refused, 0);
    assert.equal(out.flows, 2000);
  });

  test("rules: aws-limits takes scale= and depth=, refuses burst=/per=, and other rules refuse scale=", () => {
    const compile = (expression: string) => Object.assign(() => true, { expression });
    const r = parseShapeRule("aws-limits scale=0.5 max-wait=5s", 0, compile);
    assert.deepEqual(r.awsLimits, { scale: 0.5, depth: 1 });
    assert.equal(r.maxWaitMs, 5000);
    assert.throws(() => parseShapeRule("aws-limits burst=5", 0, compile), (e: Error) => e instanceof ShapeRuleError && /burst= does not apply to aws-limits/.test(e.message));
    assert.throws(() => parseShapeRule("~svc ec2 => 20/s scale=2", 0, compile), /scale= only applies to aws-limits/);
    assert.throws(() => parseShapeRule("aws-limits scale=0", 0, compile), /scale= expects a factor above 0/);
  });
});
