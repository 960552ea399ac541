/**
 * Retries told right (issue 14): inferred retries never join different calls, a call abandoned
 * for lack of retry quota is a give-up at once, a bodiless HEAD 503 counts as what the SDK saw —
 * first on hand-made flows, then with the AWS CLI v2 and boto3 against local fakes.
 */
import { test, describe } from "node:test";
import assert from "node:assert/strict";
import { HTTPFlow, Request, Response, newClientConnection, newServerConnection } from "../src/core/flow.js";
import { Headers } from "../src/core/headers.js";
import { InvocationTracker, type InvocationRecord } from "../src/aws/invocations.js";
import { Retries } from "../src/addons/retries.js";
import { reportText } from "../src/cli/report.js";
import { startSluice } from "./support/sluice.js";
import { startScriptedOrigin } from "./support/fake-aws.js";
import { startThrottlingS3, mapS3To, runBoto3 } from "./support/throttling-s3.js";
import { run, awsEnv } from "./support/run.js";
import { needs, needsPython } from "./support/needs.js";

const THROTTLED_JSON = '{"__type":"ThrottlingException","message":"Rate exceeded"}';
const SLOWDOWN = '<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>SlowDown</Code><Message>Please reduce your request rate.</Message><RequestId>A1</RequestId><HostId>h</HostId></Error>';

interface Spec {
  start: number;
  status: number;
  method?: string;
  url?: string;
  headers?: Record<string, string>;
  body?: string;
  responseBody?: string;
  responseType?: string;
  port?: number;
}

function flow(spec: Spec): HTTPFlow {
  const url = new URL(spec.url ?? "https://kms.eu-west-1.amazonaws.com/");
  const req = new Request({
    method: spec.method ?? "POST", scheme: "https", host: url.hostname, port: 443, path: url.pathname + url.search,
    headers: new Headers({ host: url.host, ...spec.headers }), content: Buffer.from(spec.body ?? ""), timestampStart: spec.start,
  });
  req.timestampEnd = spec.start;
  const client = newClientConnection();
  client.peername = ["10.0.0.1", spec.port ?? 50000];
  const f = new HTTPFlow(client, newServerConnection(), req);
  const end = spec.start + 0.01;
  const body = spec.responseBody ?? (spec.status === 400 ? THROTTLED_JSON : "");
  const r = new Response({ statusCode: spec.status, headers: new Headers(spec.responseType ? { "content-type": spec.responseType } : body ? { "content-type": "application/x-amz-json-1.1" } : {}), content: Buffer.from(body), timestampStart: end });
  r.timestampEnd = end;
  f.response = r;
  return f;
}

const kms = (target: string) => ({ "x-amz-target": `TrentService.${target}`, "content-type": "application/x-amz-json-1.1", authorization: "AWS4-HMAC-SHA256 Credential=AKID/20261203/eu-west-1/kms/aws4_request, SignedHeaders=host, Signature=0" });

describe("inferred retries never join different calls", () => {
  test("KMS ListKeys then ListAliases, same URL and body, both throttled: two calls, no retry", () => {
    const ended: InvocationRecord[] = [];
    const t = new InvocationTracker({ onInvocationEnd: (i) => ended.push(i) });
    for (let i = 0; i < 3; i++) t.add(flow({ start: i, status: 400, headers: kms("ListKeys"), body: "{}" }));
    for (let i = 3; i < 6; i++) t.add(flow({ start: i, status: 400, headers: kms("ListAliases"), body: "{}" }));
    t.finishAll();
    assert.deepEqual(ended.map((i) => [i.operation, i.attempts.length]), [["ListKeys", 3], ["ListAliases", 3]]);
    const totals = t.totals();
    assert.equal(totals.invocations, 2);
    assert.equal(totals.retries, 4);
  });

  test("identical calls in parallel: each repetition joins the call on its own connection", () => {
    const ended: InvocationRecord[] = [];
    const t = new InvocationTracker({ onInvocationEnd: (i) => ended.push(i) });
    const put = (start: number, port: number, status: number) => t.add(flow({ start, status, port, method: "PUT", url: "https://api.example.com/jobs", body: "job" }));
    put(0, 1001, 503);
    put(0.005, 1002, 503); // in parallel: starts before the first one's answer
    put(1, 1002, 200); // the second call's retry, on the second call's connection
    put(2, 1001, 503);
    put(3, 1001, 200);
    t.finishAll();
    const byConnection = ended.map((i) => i.attempts.map((a) => a.start));
    assert.deepEqual(byConnection, [[0.005, 1], [0, 2, 3]]);
  });
});

describe("a call abandoned for lack of retry quota gave up, reported when it happens", () => {
  test("standard mode, every request throttled: after 100 retries the quota is gone; each later call is a give-up as the next one starts", () => {
    const ended: InvocationRecord[] = [];
    const t = new InvocationTracker({ onInvocationEnd: (i) => ended.push(i) });
    const ua = "Boto3/1.43.11 md/Botocore#1.43.11 ua/2.1 os/linux cfg/retry-mode#standard";
    let clock = 0;
    const attempt = (call: number, n: number) => t.add(flow({
      start: (clock += 0.05), status: 503, method: "GET", url: "https://s3.eu-west-1.amazonaws.com/", responseBody: SLOWDOWN, responseType: "application/xml",
      headers: { "user-agent": ua, "amz-sdk-invocation-id": `call-${call}`, "amz-sdk-request": n === 1 ? "attempt=1" : `ttl=x; attempt=${n}; max=3`, authorization: "AWS4-HMAC-SHA256 Credential=AKID/20261203/eu-west-1/s3/aws4_request, SignedHeaders=host, Signature=0" },
    }));
    for (let call = 1; call <= 50; call++) for (let n = 1; n <= 3; n++) attempt(call, n);
    assert.equal(ended.length, 50, "the first 50 calls ran out of attempts");
    for (let call = 51; call <= 60; call++) {
      attempt(call, 1);
      assert.equal(ended.length, call - 1, `call ${call - 1} is closed as soon as call ${call} starts on the same connection`);
    }
    assert.ok(ended.every((i) => i.outcome === "gave-up"));
    assert.deepEqual(ended.slice(50).map((i) => i.attempts.length), Array(9).fill(1));
    assert.equal(t.openInvocations, 1, "the last call waits: nothing has shown it was abandoned yet");
  });
});

describe("a throttled HEAD is a bare 503, counted as the SDK saw it", () => {
  test("HeadObject 503 without a body: a retryable error, not a throttle, and the report says why", () => {
    const t = new InvocationTracker();
    const s3 = { authorization: "AWS4-HMAC-SHA256 Credential=AKID/20261203/eu-west-1/s3/aws4_request, SignedHeaders=host, Signature=0" };
    t.add(flow({ start: 0, status: 503, method: "HEAD", url: "https://s3.eu-west-1.amazonaws.com/logs/a", headers: s3, responseType: "application/xml" }));
    t.add(flow({ start: 1, status: 503, method: "GET", url: "https://s3.eu-west-1.amazonaws.com/logs/a", headers: s3, responseBody: SLOWDOWN, responseType: "application/xml" }));
    t.finishAll();
    const totals = t.totals();
    assert.equal(totals.throttles, 1, "only the SlowDown the SDK could classify");
    assert.equal(totals.retryableErrors, 2);
    assert.equal(totals.bareHead503s, 1);
    const text = reportText(t.snapshot(), "cap.mitm", null);
    assert.match(text, /throttled +1 \(50% of requests\); not counted: 1 bodiless 503 answer to S3 HEAD requests \(S3 throttles HEAD that way\), which SDKs can only see as a server error/);
  });
});

describe("real clients", () => {
  test("AWS CLI v2 (no amz-sdk headers): kms list-keys then list-aliases, both throttled, are two calls of three attempts", { skip: needs("/usr/bin/aws", "awscli") }, async () => {
    const origin = await startScriptedOrigin(() => Response.make(400, THROTTLED_JSON, { "content-type": "application/x-amz-json-1.1", "x-amzn-RequestId": "00000000-0000-4000-8000-000000000000" }));
    const sluice = await startSluice({ addons: [new Retries()] });
    try {
      const env = awsEnv({ HTTP_PROXY: sluice.url, AWS_RETRY_MODE: "standard", AWS_MAX_ATTEMPTS: "3" });
      for (const command of ["list-keys", "list-aliases"]) {
        const r = await run("/usr/bin/aws", ["kms", command, "--endpoint-url", origin.url], { env });
        assert.equal(r.code, 254, r.stderr);
        assert.match(r.stderr, /ThrottlingException.*reached max retries: 2/);
      }
      await sluice.waitForFlows(6);
      const seen = origin.requests.map((r) => [r.headers["x-amz-target"], r.headers["amz-sdk-invocation-id"]]);
      assert.equal(seen.length, 6);
      assert.ok(seen.every(([, id]) => id === undefined), "this CLI sends no amz-sdk-invocation-id: retries are inferred");
      const tracker = (sluice.master.addons.get("retries") as Retries).invocations;
      tracker.finishAll();
      const rows = tracker.stats().filter((s) => s.service === "kms").map((s) => [s.operation, s.invocations, s.retries, s.inferredRetries, s.outcomes["gave-up"]]).sort();
      assert.deepEqual(rows, [["ListAliases", 1, 2, 2, 1], ["ListKeys", 1, 2, 2, 1]]);
    } finally {
      await Promise.all([sluice.close(), origin.close()]);
    }
  });

  test("boto3 standard mode, one client, every request throttled: calls out of quota are give-ups at once, none 'failed'", { skip: needsPython("boto3", "python3-boto3") }, async () => {
    const origin = await startThrottlingS3(() => true);
    const sluice = await startSluice({ set: { map_remote: mapS3To(origin.url) }, addons: [new Retries()] });
    try {
      const boto = await runBoto3({ proxyUrl: sluice.url, caCert: sluice.caCert, operations: ["list_buckets"], threads: 1, callsPerThread: 60, mode: "standard" });
      assert.deepEqual(boto.errors, []);
      assert.equal(boto.failures.ListBuckets, 60);
      assert.equal(boto.retries.ListBuckets, 100, "standard mode's 500-token quota pays for 100 retries");
      const tracker = (sluice.master.addons.get("retries") as Retries).invocations;
      const [live] = tracker.stats().filter((s) => s.operation === "ListBuckets");
      assert.equal(live!.outcomes["gave-up"], 59, "every call but the last is already a give-up, without waiting for the idle window");
      assert.equal(live!.outcomes.failed, 0);
      tracker.finishAll();
      const [all] = tracker.stats().filter((s) => s.operation === "ListBuckets");
      assert.deepEqual([all!.invocations, all!.outcomes["gave-up"], all!.retries], [60, 60, 100]);
    } finally {
      await Promise.all([sluice.close(), origin.close()]);
    }
  });
});
