/**
 * Retry observability: the invocation tracker on hand-made flows (grouping, outcomes, inferred
 * retries, bounded memory), then real SDKs under throttling — sluice's retry counts per operation
 * must equal what boto3 and the AWS SDK for JavaScript themselves decided.
 */
import { test, describe, before, after } from "node:test";
import assert from "node:assert/strict";
import { ListBucketsCommand, ListObjectsV2Command, PutObjectCommand } from "@aws-sdk/client-s3";
import type { Counter } from "prom-client";
import type { HTTPFlow } from "../src/core/flow.js";
import { tflow } from "./support/tflow.js";
import { InvocationTracker, type RetryMetadata, type InvocationRecord } from "../src/aws/invocations.js";
import { Retries } from "../src/addons/retries.js";
import { startSluice, type TestSluice } from "./support/sluice.js";
import { mapS3To, s3ClientThrough, runBoto3, seededRandom, startThrottlingS3, type ThrottlingS3 } from "./support/throttling-s3.js";
import { needsPython } from "./support/needs.js";

const SLOWDOWN = `<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>SlowDown</Code><Message>Please reduce your request rate.</Message><RequestId>A1</RequestId><HostId>h</HostId></Error>`;

interface FlowSpec {
  start: number;
  /** Seconds the exchange took (default 0.01). */
  took?: number;
  /** null: no response (connection error). */
  status?: number | null;
  body?: string;
  method?: string;
  url?: string;
  client?: string;
  /** SDK headers: invocation id and `amz-sdk-request` value. */
  invocation?: string;
  sdkRequest?: string;
}

/** A finished flow as the proxy would have recorded it; AWS-signed S3 ListBuckets unless told otherwise. */
function flow(spec: FlowSpec): HTTPFlow {
  const url = spec.url ?? "https://s3.eu-west-1.amazonaws.com/";
  const headers: Record<string, string> = { host: new URL(url).host };
  if (!spec.url) headers.authorization = "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20261125/eu-west-1/s3/aws4_request, SignedHeaders=host, Signature=00";
  if (spec.invocation) headers["amz-sdk-invocation-id"] = spec.invocation;
  if (spec.sdkRequest) headers["amz-sdk-request"] = spec.sdkRequest;
  const status = spec.status === undefined ? 200 : spec.status;
  return tflow({
    method: spec.method ?? "GET", url, reqHeaders: headers, reqBody: spec.body ?? "", client: [spec.client ?? "10.0.0.1", 50000], start: spec.start, took: spec.took,
    ...(status === null ? { error: "connection reset" } : { status, resHeaders: status === 503 ? { "content-type": "application/xml" } : {}, resBody: status === 503 ? SLOWDOWN : "" }),
  });
}

describe("InvocationTracker", () => {
  test("groups SDK attempts by invocation id: attempts, back-off gaps, outcome", () => {
    const ended: InvocationRecord[] = [];
    const t = new InvocationTracker({ onInvocationEnd: (i) => ended.push(i) });
    const id = "9b2c6a3e-0000-4000-8000-000000000001";
    const meta = [
      t.add(flow({ start: 100, status: 503, invocation: id, sdkRequest: "attempt=1; max=3" })),
      t.add(flow({ start: 100.51, status: 503, invocation: id, sdkRequest: "attempt=2; max=3" })),
      t.add(flow({ start: 101.52, status: 200, invocation: id, sdkRequest: "attempt=3; max=3" })),
    ];
    assert.deepEqual(meta.map((m) => m && [m.invocationId, m.attempt, m.maxAttempts, m.inferred]), [[id, 1, 3, false], [id, 2, 3, false], [id, 3, 3, false]]);
    assert.deepEqual(meta.map((m) => m!.backoffMs), [null, 500, 1000]);
    assert.equal(ended.length, 1, "closed as soon as an attempt succeeded");
    assert.equal(ended[0]!.outcome, "retried");
    assert.equal(ended[0]!.attempts.length, 3);
    const [s] = t.stats();
    assert.equal(s!.service, "s3");
    assert.equal(s!.operation, "ListBuckets");
    assert.equal(s!.requests, 3);
    assert.equal(s!.retries, 2);
    assert.equal(s!.throttles, 2);
    assert.equal(s!.invocations, 1);
    assert.ok(Math.abs(s!.backoffSeconds - 1.5) < 1e-6);
    assert.deepEqual(s!.statuses, { "503": 2, "200": 1 });
    assert.deepEqual(t.attemptsHistogram(), [[3, 1]]);
  });

  test("boto3 legacy: attempt 1 without max, then max=5; the fifth throttled attempt is a give-up at once", () => {
    const t = new InvocationTracker();
    const id = "89500249-0000-4000-8000-000000000002";
    t.add(flow({ start: 10, status: 503, invocation: id, sdkRequest: "attempt=1" }));
    for (let n = 2; n <= 5; n++) t.add(flow({ start: 10 + n, status: 503, invocation: id, sdkRequest: `ttl=20261124T220448Z; attempt=${n}; max=5` }));
    assert.equal(t.openInvocations, 0);
    const [s] = t.stats();
    assert.equal(s!.outcomes["gave-up"], 1);
    assert.equal(s!.retries, 4);
    const [worst] = t.topInvocations();
    assert.deepEqual(worst!.attempts.map((a) => a.attempt), [1, 2, 3, 4, 5]);
    assert.equal(worst!.maxAttempts, 5);
  });

  test("an SDK call left waiting past the idle window gave up (max known or not); a non-retryable failure failed", () => {
    const t = new InvocationTracker({ idleWindow: 60 });
    t.add(flow({ start: 0, status: 503, invocation: "a", sdkRequest: "attempt=1; max=3" }));
    t.add(flow({ start: 0, status: 503, invocation: "b", sdkRequest: "attempt=1" }));
    t.add(flow({ start: 1, status: 404, invocation: "c", sdkRequest: "attempt=1" }));
    assert.equal(t.openInvocations, 2, "a and b may still retry");
    t.sweep(30);
    assert.equal(t.openInvocations, 2);
    t.sweep(61);
    assert.equal(t.openInvocations, 0);
    const [s] = t.stats();
    assert.deepEqual(s!.outcomes, { ok: 0, retried: 0, "gave-up": 2, failed: 1 });
  });

  test("infers retries without SDK headers: same client, method, URL and body soon after a failure", () => {
    const t = new InvocationTracker({ inferWindow: 30 });
    const url = "https://api.example.com/jobs";
    const put = (start: number, status: number | null, extra: Partial<FlowSpec> = {}) => t.add(flow({ start, status, url, method: "PUT", body: "job-1", ...extra }));
    assert.equal(put(0, 503), null, "a first attempt of a plain client gets no retry metadata");
    const second = put(1.01, null) as RetryMetadata;
    assert.equal(second.inferred, true);
    assert.equal(second.attempt, 2);
    assert.equal(second.backoffMs, 1000);
    assert.equal(put(1.5, 200, { body: "job-2" }), null, "another body is another request");
    assert.equal(put(1.6, 200, { client: "10.0.0.2" }), null, "another client is another request");
    const third = put(3.02, 200) as RetryMetadata;
    assert.deepEqual([third.attempt, third.inferred, third.invocationId], [3, true, second.invocationId]);
    assert.equal(put(3.1, 200), null, "after a success a repeat is a new request");
    put(100, 429);
    assert.equal(put(140, 200), null, "too late after the failure to be a retry");
    t.finishAll();
    const [s] = t.stats();
    assert.equal(s!.service, "api.example.com");
    assert.equal(s!.operation, "PUT");
    assert.equal(s!.retries, 2);
    assert.equal(s!.inferredRetries, 2);
    assert.equal(s!.requests, 8);
    assert.equal(s!.outcomes.retried, 1);
    assert.equal(s!.outcomes.failed, 1, "the 429 never retried");
  });

  test("past maxOperations every further operation is counted under other/other (it overflowed the stack before)", () => {
    const ended: InvocationRecord[] = [];
    const t = new InvocationTracker({ maxOperations: 1, onInvocationEnd: (i) => ended.push(i) });
    t.add(flow({ start: 0, url: "https://a.example/" }));
    t.add(flow({ start: 1, url: "https://b.example/" }));
    t.add(flow({ start: 2, url: "https://c.example/", method: "PUT" }));
    const rows = Object.fromEntries(t.stats().map((s) => [`${s.service} ${s.operation}`, [s.requests, s.invocations, s.outcomes.ok]]));
    assert.deepEqual(rows, { "a.example GET": [1, 1, 1], "other other": [2, 2, 2] });
    assert.deepEqual(ended.map((i) => [i.attempts.length, i.outcome]), [[1, "ok"], [1, "ok"], [1, "ok"]]);
  });

  test("a plain success while a failed call waits for its repetition is still its own call", () => {
    const t = new InvocationTracker();
    const url = "https://api.example.com/jobs";
    t.add(flow({ start: 0, url, method: "PUT", body: "a", status: 503 }));
    assert.equal(t.add(flow({ start: 0.5, url: "https://api.example.com/other" })), null);
    assert.equal((t.add(flow({ start: 1, url, method: "PUT", body: "a" })) as RetryMetadata).attempt, 2);
    t.finishAll();
    assert.deepEqual(t.stats().map((s) => [s.operation, s.requests, s.invocations, s.outcomes.ok, s.outcomes.retried]), [["PUT", 2, 1, 0, 1], ["GET", 1, 1, 1, 0]]);
  });

  test("memory stays bounded: open invocations capped, series buckets widen, counts stay exact", () => {
    const t = new InvocationTracker({ maxOpen: 500, maxBuckets: 100, idleWindow: 1e9 });
    const n = 50_000;
    let maxOpen = 0;
    for (let i = 0; i < n; i++) {
      // Every call throttled once and never retried (max 3): each stays open until evicted.
      t.add(flow({ start: i * 0.2, status: 503, invocation: `id-${i}`, sdkRequest: "attempt=1; max=3" }));
      maxOpen = Math.max(maxOpen, t.openInvocations);
    }
    assert.ok(maxOpen <= 501, `open invocations peaked at ${maxOpen}`);
    const series = t.series();
    assert.ok(series.buckets.length <= 100, `${series.buckets.length} buckets`);
    assert.ok(series.bucketSeconds >= 100, `bucket width ${series.bucketSeconds} s for a ${n * 0.2} s capture`);
    assert.equal(series.buckets.reduce((s, b) => s + b.requests, 0), n);
    t.finishAll();
    const totals = t.totals();
    assert.equal(totals.requests, n);
    assert.equal(totals.invocations, n);
    assert.equal(totals.outcomes["gave-up"], n);
  });
});

/** Values of a labelled counter by `label`. */
async function counterBy(sluice: TestSluice, name: string, label: string): Promise<Record<string, number>> {
  const metric = sluice.master.context.metrics.getSingleMetric(name) as Counter<string> | undefined;
  assert.ok(metric, `${name} is registered`);
  const out: Record<string, number> = {};
  for (const v of (await metric.get()).values) {
    const key = String(v.labels[label]);
    out[key] = (out[key] ?? 0) + v.value;
  }
  return out;
}

function trackerOf(sluice: TestSluice): InvocationTracker {
  return (sluice.master.addons.get("retries") as Retries).invocations;
}

/** Per-operation numbers from the live tracker. */
function byOperation(sluice: TestSluice, pick: (s: ReturnType<InvocationTracker["stats"]>[number]) => number): Record<string, number> {
  const out: Record<string, number> = {};
  for (const s of trackerOf(sluice).stats()) if (s.service === "s3") out[s.operation] = pick(s);
  return out;
}

describe("real SDKs under 30% throttling: sluice counts the retries the SDK decided", () => {
  let origin: ThrottlingS3;
  let sluice: TestSluice;
  before(async () => {
    const random = seededRandom(20261125);
    origin = await startThrottlingS3(() => random() < 0.3);
  });
  after(async () => {
    await Promise.all([sluice?.close(), origin?.close()]);
  });

  test("1,000 boto3 calls from 8 threads: retries per operation equal boto3's needs-retry count", { skip: needsPython("boto3", "python3-boto3") }, async () => {
    sluice = await startSluice({ set: { map_remote: mapS3To(origin.url) }, addons: [new Retries()] });
    const boto = await runBoto3({ proxyUrl: sluice.url, caCert: sluice.caCert, operations: ["list_buckets", "list_objects_v2", "put_object"], threads: 8, callsPerThread: 125, mode: "legacy" });
    assert.deepEqual(boto.errors, []);
    assert.equal(Object.values(boto.calls).reduce((a, b) => a + b, 0), 1000);
    const totalRetries = Object.values(boto.retries).reduce((a, b) => a + b, 0);
    assert.ok(totalRetries > 250, `30% throttling should cause hundreds of retries, boto3 made ${totalRetries}`);
    assert.deepEqual(byOperation(sluice, (s) => s.retries), boto.retries, "retries per operation");
    assert.deepEqual(await counterBy(sluice, "sluice_retries_total", "operation"), boto.retries, "sluice_retries_total per operation");
    assert.deepEqual(byOperation(sluice, (s) => s.invocations), boto.calls, "one invocation per call");
    assert.deepEqual(byOperation(sluice, (s) => s.outcomes["gave-up"]), Object.fromEntries(Object.keys(boto.calls).map((op) => [op, boto.failures[op] ?? 0])), "give-ups = calls that raised");
    assert.deepEqual(byOperation(sluice, (s) => s.throttles), origin.throttled, "throttles = SlowDowns the origin sent");
    const retried = sluice.flows.filter((f) => ((f.metadata.retry as RetryMetadata | undefined)?.attempt ?? 1) > 1);
    assert.equal(retried.length, totalRetries, "every retry's flow carries metadata.retry");
    assert.ok(retried.every((f) => typeof (f.metadata.retry as RetryMetadata).backoffMs === "number" && !(f.metadata.retry as RetryMetadata).inferred));
    await sluice.close();
  });

  test("@aws-sdk/client-s3, 300 calls, 10 at a time: retries per operation equal the SDK's extra attempts", async () => {
    sluice = await startSluice({ set: { map_remote: mapS3To(origin.url) }, addons: [new Retries()] });
    const client = await s3ClientThrough(sluice);
    const attemptsSeen: Record<string, number> = {};
    const calls: Record<string, number> = {};
    const metadataAttempts: Record<string, number> = {};
    // Inside the retry middleware (deserialize comes after finalizeRequest): runs once per attempt.
    client.middlewareStack.add(
      (next, context) => async (args) => {
        const op = String(context.commandName).replace(/Command$/, "");
        attemptsSeen[op] = (attemptsSeen[op] ?? 0) + 1;
        return next(args);
      },
      { step: "deserialize", name: "countAttempts" },
    );
    const commands = [() => new ListBucketsCommand({}), () => new ListObjectsV2Command({ Bucket: "logs" }), () => new PutObjectCommand({ Bucket: "logs", Key: "k", Body: "x" })];
    let next = 0;
    const worker = async () => {
      while (next < 300) {
        const command = commands[next++ % commands.length]!();
        const op = command.constructor.name.replace(/Command$/, "");
        calls[op] = (calls[op] ?? 0) + 1;
        const meta = await client.send(command as never).then(
          (r: { $metadata: { attempts?: number } }) => r.$metadata,
          (e: { $metadata?: { attempts?: number } }) => e.$metadata ?? {},
        );
        metadataAttempts[op] = (metadataAttempts[op] ?? 0) + (meta.attempts ?? 1);
      }
    };
    try {
      await Promise.all(Array.from({ length: 10 }, worker));
    } finally {
      client.destroy();
    }
    const sdkRetries = Object.fromEntries(Object.keys(calls).map((op) => [op, attemptsSeen[op]! - calls[op]!]));
    assert.deepEqual(Object.fromEntries(Object.keys(calls).map((op) => [op, metadataAttempts[op]! - calls[op]!])), sdkRetries, "the middleware and $metadata.attempts agree");
    const total = Object.values(sdkRetries).reduce((a, b) => a + b, 0);
    assert.ok(total > 50, `30% throttling should cause retries, the SDK made ${total}`);
    assert.deepEqual(byOperation(sluice, (s) => s.retries), sdkRetries, "retries per operation");
    assert.deepEqual(await counterBy(sluice, "sluice_retries_total", "operation"), sdkRetries, "sluice_retries_total per operation");
    // Calls whose retry quota ran out end without a final attempt: close them to count every call.
    trackerOf(sluice).finishAll();
    assert.deepEqual(byOperation(sluice, (s) => s.invocations), calls, "one invocation per call");
  });
});
