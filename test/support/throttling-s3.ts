/**
 * A small S3 that throttles on command, and a boto3 driver that counts retries the way boto3
 * itself decides them — for the retry-observability tests. The SlowDown answer is written here,
 * byte for byte as S3 sends it, independently of src/aws.
 */
import { readFile } from "node:fs/promises";
import { S3Client } from "@aws-sdk/client-s3";
import { ConfiguredRetryStrategy } from "@smithy/core/retry";
import { Response, type Request } from "../../src/core/flow.js";
import { tunnelAgent } from "./tunnel-agent.js";
import { startScriptedOrigin, type FakeAwsOrigin } from "./fake-aws.js";
import { run, awsEnv, pythonWithBoto3, PYTHON_ALPN_RACE_GUARD } from "./run.js";

export const S3_HOST = "s3.eu-west-1.amazonaws.com";
/** map_remote value that sends S3 in eu-west-1 to `originUrl`. */
export function mapS3To(originUrl: string): string {
  return JSON.stringify([`|https://${S3_HOST.replace(/\./g, "\\.")}|${originUrl}`]);
}

/**
 * The JavaScript SDK's S3 client in eu-west-1, through sluice's regular mode and trusting its CA:
 * standard retries, three attempts, no back-off sleep (the counts are the point, not the wait).
 */
export async function s3ClientThrough(sluice: { port: number; caCert: string }): Promise<S3Client> {
  return new S3Client({
    region: "eu-west-1",
    forcePathStyle: true,
    credentials: { accessKeyId: "AKIDEXAMPLE", secretAccessKey: "secret" },
    requestHandler: { httpsAgent: tunnelAgent(sluice.port, await readFile(sluice.caCert, "utf8")) },
    retryStrategy: new ConfiguredRetryStrategy(3, 0),
  });
}

export interface ThrottlingS3 extends FakeAwsOrigin {
  /** Throttled answers given, by operation. */
  throttled: Record<string, number>;
  answered: Record<string, number>;
}

/** Deterministic pseudo-random numbers in [0, 1) (a 32-bit LCG), so a run can be reproduced. */
export function seededRandom(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (Math.imul(state, 1664525) + 1013904223) >>> 0;
    return state / 2 ** 32;
  };
}

let requestIds = 0;
function slowDown(): Response {
  const id = (++requestIds).toString(16).toUpperCase().padStart(16, "0");
  const body = `<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>SlowDown</Code><Message>Please reduce your request rate.</Message><RequestId>${id}</RequestId><HostId>dGVzdA==</HostId></Error>`;
  return Response.make(503, body, { "content-type": "application/xml", "x-amz-request-id": id, "x-amz-id-2": "dGVzdA==", server: "AmazonS3" });
}

function operationOf(req: Request): string {
  const [path, query = ""] = req.path.split("?") as [string, string?];
  if (req.method === "GET" && path === "/") return "ListBuckets";
  if (req.method === "GET" && /(^|&)list-type=2/.test(query)) return "ListObjectsV2";
  if (req.method === "PUT" && path.split("/").length > 2) return "PutObject";
  return `${req.method} ${path}`;
}

const XMLNS = "http://s3.amazonaws.com/doc/2006-03-01/";

function success(op: string, req: Request): Response {
  const xml = (body: string) => Response.make(200, `<?xml version="1.0" encoding="UTF-8"?>\n${body}`, { "content-type": "application/xml", "x-amz-request-id": "0000000000000000" });
  switch (op) {
    case "ListBuckets":
      return xml(`<ListAllMyBucketsResult xmlns="${XMLNS}"><Owner><ID>owner</ID><DisplayName>me</DisplayName></Owner><Buckets><Bucket><Name>logs</Name><CreationDate>2026-01-01T00:00:00.000Z</CreationDate></Bucket></Buckets></ListAllMyBucketsResult>`);
    case "ListObjectsV2": {
      const bucket = req.path.split("?")[0]!.split("/")[1]!;
      return xml(`<ListBucketResult xmlns="${XMLNS}"><Name>${bucket}</Name><Prefix></Prefix><KeyCount>0</KeyCount><MaxKeys>1000</MaxKeys><IsTruncated>false</IsTruncated></ListBucketResult>`);
    }
    case "PutObject":
      return Response.make(200, "", { etag: '"d41d8cd98f00b204e9800998ecf8427e"', "x-amz-request-id": "0000000000000000" });
    default:
      return Response.make(404, `<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>NoSuchKey</Code><Message>not here</Message></Error>`, { "content-type": "application/xml" });
  }
}

/** An S3 origin that answers SlowDown whenever `throttle(operation)` says so, else a plausible success. */
export async function startThrottlingS3(throttle: (operation: string) => boolean): Promise<ThrottlingS3> {
  const throttled: Record<string, number> = {};
  const answered: Record<string, number> = {};
  const origin = await startScriptedOrigin((req) => {
    const op = operationOf(req);
    answered[op] = (answered[op] ?? 0) + 1;
    if (throttle(op)) {
      throttled[op] = (throttled[op] ?? 0) + 1;
      return slowDown();
    }
    return success(op, req);
  });
  return Object.assign(origin, { throttled, answered });
}

export interface BotoRun {
  /** Retries boto3 decided on (its needs-retry handler returned a delay), by operation name. */
  retries: Record<string, number>;
  calls: Record<string, number>;
  /** Calls that raised (gave up), by operation name. */
  failures: Record<string, number>;
  /** Back-off delays boto3 chose, in order (only with `realSleeps`). */
  sleeps: number[];
  errors: string[];
}

/**
 * Runs boto3 through sluice: `threads` threads each make `callsPerThread` calls cycling through
 * `operations` (list_buckets, list_objects_v2, put_object). boto3's own retry handler is wrapped
 * by a needs-retry handler that counts a retry whenever the wrapped handler's answer makes
 * botocore retry (a delay, i.e. neither None nor False). Without `realSleeps` botocore's back-off
 * sleeps are skipped (it calls time.sleep; counting does not depend on it); with it they happen
 * and are recorded, with `random.seed(seed)` choosing legacy mode's random factors.
 */
export async function runBoto3(opts: { proxyUrl: string; caCert: string; operations: string[]; threads: number; callsPerThread: number; mode: "legacy" | "standard"; realSleeps?: boolean; seed?: number }): Promise<BotoRun> {
  const script = `${PYTHON_ALPN_RACE_GUARD}
import boto3, botocore.config, botocore.exceptions, collections, json, random, sys, threading, time
operations, threads, per_thread, mode, real_sleeps, seed = json.loads(sys.argv[1])
lock = threading.Lock()
retries, calls, failures, sleeps, errors = collections.Counter(), collections.Counter(), collections.Counter(), [], []
real_sleep = time.sleep
def sleep(seconds):
    sleeps.append(seconds)
    if real_sleeps:
        real_sleep(seconds)
time.sleep = sleep
if seed is not None:
    random.seed(seed)

def counting_retries(client):
    events = client.meta.events
    name = client.meta.service_model.service_id.hyphenize()
    unique_id = "retry-config-" + name
    emitter = getattr(events, "_emitter", events)
    decide = emitter._unique_id_handlers[unique_id]["handler"]
    events.unregister("needs-retry." + name, unique_id=unique_id)
    def needs_retry(**kwargs):
        delay = decide(**kwargs)
        if delay is not None and delay is not False:
            with lock:
                retries[kwargs["operation"].name] += 1
        return delay
    events.register("needs-retry." + name, needs_retry, unique_id=unique_id)
    return client

ARGS = {"list_buckets": {}, "list_objects_v2": {"Bucket": "logs"}, "put_object": {"Bucket": "logs", "Key": "k", "Body": b"x"}}
def worker(n):
    client = counting_retries(boto3.client("s3", region_name="eu-west-1", config=botocore.config.Config(retries={"mode": mode}, s3={"addressing_style": "path"})))
    for i in range(per_thread):
        op = operations[(n + i) % len(operations)]
        name = client.meta.method_to_api_mapping[op]
        with lock:
            calls[name] += 1
        try:
            getattr(client, op)(**ARGS[op])
        except botocore.exceptions.ClientError as e:
            with lock:
                failures[name] += 1
        except Exception as e:
            with lock:
                errors.append(repr(e))

workers = [threading.Thread(target=worker, args=(n,)) for n in range(threads)]
for w in workers: w.start()
for w in workers: w.join()
print(json.dumps({"retries": retries, "calls": calls, "failures": failures, "sleeps": sleeps, "errors": errors}))
`;
  const args = JSON.stringify([opts.operations, opts.threads, opts.callsPerThread, opts.mode, !!opts.realSleeps, opts.seed ?? null]);
  const r = await run(await pythonWithBoto3(), ["-c", script, args], { env: awsEnv({ HTTPS_PROXY: opts.proxyUrl, AWS_CA_BUNDLE: opts.caCert }), timeoutMs: 240_000 });
  if (r.code !== 0) throw new Error(`boto3 failed (${r.code}): ${r.stderr}`);
  return JSON.parse(r.stdout) as BotoRun;
}
