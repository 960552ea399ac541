/**
 * AWS's documented request limits as data: token buckets keyed the way AWS keys them, each with
 * the page its numbers come from, and the error the throttled operation really returns (the code
 * is one its service model lists for the operation; test/aws-limits checks that against botocore).
 * Where AWS publishes no number, the limit says so in `note` and is a default the user overrides
 * with `scale=`.
 *
 * `AwsLimiter` applies them: `admit(flow, now)` takes from every bucket the request counts against
 * and returns the error to answer with when one is empty, or null. No sockets; time is passed in.
 */
import type { HTTPFlow } from "../core/flow.js";
import { isPromise, type MaybeAsync, type SharedState } from "../core/shared-state.js";
import { awsInfoOf, keyPrefixOf } from "./recognize.js";
import type { AwsError } from "./errors.js";
import type { AwsRequestInfo } from "./types.js";

const EC2_THROTTLING = "https://docs.aws.amazon.com/ec2/latest/devguide/ec2-api-throttling.html";
const S3_PERFORMANCE = "https://docs.aws.amazon.com/AmazonS3/latest/userguide/optimizing-performance.html";
const KINESIS_QUOTAS = "https://docs.aws.amazon.com/streams/latest/dev/service-sizes-and-limits.html";
const SQS_QUOTAS = "https://docs.aws.amazon.com/AWSSimpleQueueService/latest/SQSDeveloperGuide/quotas-messages.html";
const STS_QUOTAS = "https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_iam-quotas.html";
const KMS_QUOTAS = "https://docs.aws.amazon.com/kms/latest/developerguide/requests-per-second.html";
const DYNAMODB_QUOTAS = "https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/ServiceQuotas.html";
const DYNAMODB_PARTITIONS = "https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/bp-partition-key-design.html";
const DYNAMODB_CONTROL_PLANE = "https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/bp-control-plane.html";
const LAMBDA_QUOTAS = "https://docs.aws.amazon.com/lambda/latest/dg/gettingstarted-limits.html";

/** What a request is counted as: one request, or units of its own (instances, records, bytes). */
type Cost = (flow: HTTPFlow, info: AwsRequestInfo) => number;

export interface AwsLimit {
  service: string;
  /** What the bucket is, in the words of the source. */
  name: string;
  /** Operations it applies to: a predicate over the operation name, and how that reads. */
  appliesTo: string;
  matches: (operation: string, flow: HTTPFlow, info: AwsRequestInfo) => boolean;
  /** Bucket size and refill per second, in `unit`s. */
  burst: number;
  rate: number;
  unit: string;
  /** What one bucket is kept per, as AWS keys it ("account and region", "prefix", …). */
  per: string;
  key: (flow: HTTPFlow, info: AwsRequestInfo) => string;
  cost?: Cost;
  /**
   * "rate" (the default): a token bucket of `burst` refilled at `rate`/s. "concurrency": at most
   * `burst` requests in flight at once (Lambda's concurrent executions); `rate` is unused.
   */
  kind?: "rate" | "concurrency";
  error: AwsError;
  /** Kinesis: a refused PutRecords is answered 200 with every record failed with `error`'s code (PutRecord gets the error). */
  failsRecords?: boolean;
  /** The error for this request when it names the resource (DynamoDB's ThrottlingReasons name the table). */
  errorFor?: (flow: HTTPFlow, info: AwsRequestInfo) => AwsError;
  source: string;
  /** Where the number is not AWS's published one, or the emulation is partial: says how. */
  note?: string;
}

/** SigV4 access key id: AWS keys account limits by the caller's account; the key stands in for it. */
function accountOf(flow: HTTPFlow): string {
  const auth = flow.request.headers.get("authorization") ?? "";
  const at = auth.indexOf("Credential=");
  if (at < 0) return "anonymous";
  const slash = auth.indexOf("/", at);
  return slash < 0 ? "anonymous" : auth.slice(at + 11, slash);
}

const accountRegion = (flow: HTTPFlow, info: AwsRequestInfo) => `${accountOf(flow)}/${info.region ?? "-"}`;

function formParam(flow: HTTPFlow, name: string): string | null {
  const query = flow.request.query.get(name);
  if (query !== null) return query;
  if (!flow.request.content) return null;
  return new URLSearchParams(flow.request.text).get(name);
}

function hasFormParamPrefix(flow: HTTPFlow, prefix: string): boolean {
  const text = flow.request.content ? flow.request.text : "";
  return flow.request.path.includes(prefix) || text.includes(prefix) || text.includes(`&${prefix}`);
}

function jsonBody(flow: HTTPFlow): Record<string, unknown> {
  try {
    const v = JSON.parse(flow.request.text) as unknown;
    return v && typeof v === "object" ? (v as Record<string, unknown>) : {};
  } catch {
    return {};
  }
}

const EC2_LIMIT_EXCEEDED: AwsError = { status: 503, code: "RequestLimitExceeded", message: "Request limit exceeded." };
const EC2_RESOURCE_LIMIT: AwsError = { status: 503, code: "RequestResourceCountExceeded", message: "Request resource count exceeded." };

/** Describe*, List*, Search*, Get*: EC2's non-mutating actions. */
const NON_MUTATING = /^(Describe|List|Search|Get)/;
/** Actions with a bucket of their own (EC2_THROTTLING, "Request token bucket sizes"): [name, burst, refill/s]. */
const EC2_OWN_BUCKETS: [string, number, number][] = [
  ["RunInstances", 5, 2],
  ["CreateTags", 100, 10],
];
const EC2_OWN = new Set(EC2_OWN_BUCKETS.map(([n]) => n));
/** Non-mutating actions that count as "unfiltered and unpaginated" when called with neither Filter.N nor MaxResults/NextToken. */
const EC2_UNFILTERED = new Set(["DescribeInstances", "DescribeVolumes", "DescribeSnapshots", "DescribeNetworkInterfaces", "DescribeImages", "DescribeSecurityGroups"]);
const EC2_RESOURCE_INTENSIVE = new Set(["AttachVolume", "CreateVolume", "DeleteVolume", "DetachVolume", "CreateSnapshot", "CopySnapshot", "CopyImage", "CreateImage"]);

function ec2Unfiltered(flow: HTTPFlow): boolean {
  return !hasFormParamPrefix(flow, "Filter.") && formParam(flow, "MaxResults") === null && formParam(flow, "NextToken") === null && !hasFormParamPrefix(flow, "InstanceId.") && !hasFormParamPrefix(flow, "VolumeId.") && !hasFormParamPrefix(flow, "SnapshotId.");
}

/** Instances a RunInstances asks for (MaxCount), or how many ids a Start/Stop/Terminate names. */
function ec2ResourceCount(flow: HTTPFlow, info: AwsRequestInfo): number {
  if (info.operation === "RunInstances") return Math.max(1, Number(formParam(flow, "MaxCount") ?? 1) || 1);
  const text = flow.request.content ? flow.request.text : flow.request.path;
  return Math.max(1, (text.match(/InstanceId\.\d+=/g) ?? []).length);
}

const EC2: AwsLimit[] = [
  ...EC2_OWN_BUCKETS.map(([op, burst, rate]): AwsLimit => ({
    service: "ec2", name: `${op} (its own bucket)`, appliesTo: op, matches: (o) => o === op,
    burst, rate, unit: "requests", per: "account and region", key: accountRegion, error: EC2_LIMIT_EXCEEDED, source: EC2_THROTTLING,
  })),
  {
    service: "ec2", name: "unfiltered and unpaginated non-mutating actions", appliesTo: [...EC2_UNFILTERED].join(", ") + " without Filter.N, MaxResults, NextToken or ids",
    matches: (o, f) => EC2_UNFILTERED.has(o) && ec2Unfiltered(f), burst: 50, rate: 10, unit: "requests", per: "account and region", key: accountRegion,
    error: EC2_LIMIT_EXCEEDED, source: EC2_THROTTLING,
  },
  {
    service: "ec2", name: "non-mutating actions", appliesTo: "Describe*, List*, Search*, Get* (the rest)",
    matches: (o, f) => NON_MUTATING.test(o) && !EC2_OWN.has(o) && !(EC2_UNFILTERED.has(o) && ec2Unfiltered(f)),
    burst: 100, rate: 20, unit: "requests", per: "account and region", key: accountRegion, error: EC2_LIMIT_EXCEEDED, source: EC2_THROTTLING,
  },
  {
    service: "ec2", name: "resource-intensive actions", appliesTo: [...EC2_RESOURCE_INTENSIVE].join(", "),
    matches: (o) => EC2_RESOURCE_INTENSIVE.has(o), burst: 50, rate: 5, unit: "requests", per: "account and region", key: accountRegion,
    error: EC2_LIMIT_EXCEEDED, source: EC2_THROTTLING, note: "the list of actions is sluice's reading of the page; check it for your use",
  },
  {
    service: "ec2", name: "mutating actions", appliesTo: "every other action",
    matches: (o) => !NON_MUTATING.test(o) && !EC2_OWN.has(o) && !EC2_RESOURCE_INTENSIVE.has(o),
    burst: 50, rate: 5, unit: "requests", per: "account and region", key: accountRegion, error: EC2_LIMIT_EXCEEDED, source: EC2_THROTTLING,
  },
  ...([["RunInstances", 1000, 2], ["TerminateInstances", 1000, 20], ["StartInstances", 1000, 2], ["StopInstances", 1000, 20]] as const).map(([op, burst, rate]): AwsLimit => ({
    service: "ec2", name: `${op} resource rate`, appliesTo: op, matches: (o) => o === op, burst, rate, unit: "instances", per: "account and region",
    key: accountRegion, cost: ec2ResourceCount, error: EC2_RESOURCE_LIMIT, source: EC2_THROTTLING,
  })),
];

const S3_SLOW_DOWN: AwsError = { status: 503, code: "SlowDown", message: "Please reduce your request rate." };

function s3Limits(depth: number): AwsLimit[] {
  const prefixKey = (_f: HTTPFlow, info: AwsRequestInfo) => keyPrefixOf(info, depth) ?? "-";
  return [
    {
      service: "s3", name: "PUT/COPY/POST/DELETE per partitioned prefix", appliesTo: "PUT, POST and DELETE requests",
      matches: (_o, f) => f.request.method === "PUT" || f.request.method === "POST" || f.request.method === "DELETE",
      burst: 3500, rate: 3500, unit: "requests", per: `prefix (bucket and the first ${depth} key level${depth === 1 ? "" : "s"})`, key: prefixKey,
      error: S3_SLOW_DOWN, source: S3_PERFORMANCE, note: "S3 partitions prefixes as load grows; depth= chooses how deep sluice treats them as partitioned (default 1)",
    },
    {
      service: "s3", name: "GET/HEAD per partitioned prefix", appliesTo: "GET and HEAD requests (a HEAD gets a bodiless 503)",
      matches: (_o, f) => f.request.method === "GET" || f.request.method === "HEAD",
      burst: 5500, rate: 5500, unit: "requests", per: `prefix (bucket and the first ${depth} key level${depth === 1 ? "" : "s"})`, key: prefixKey,
      error: S3_SLOW_DOWN, source: S3_PERFORMANCE,
    },
  ];
}

const streamKey = (flow: HTTPFlow, info: AwsRequestInfo) => {
  const body = jsonBody(flow);
  return `${accountRegion(flow, info)}/${String(body.StreamName ?? body.StreamARN ?? "-")}`;
};

/** PutRecords' records and their bytes (data decoded from base64, plus the partition key). */
function putRecordsOf(flow: HTTPFlow): { count: number; bytes: number } {
  const records = jsonBody(flow).Records;
  if (!Array.isArray(records)) return { count: 1, bytes: 1 };
  let bytes = 0;
  for (const r of records as { Data?: unknown; PartitionKey?: unknown }[]) {
    bytes += typeof r.Data === "string" ? Math.floor((r.Data.length * 3) / 4) : 0;
    bytes += typeof r.PartitionKey === "string" ? Buffer.byteLength(r.PartitionKey) : 0;
  }
  return { count: Math.max(1, records.length), bytes: Math.max(1, bytes) };
}

const PUT_RECORDS_NOTE = "AWS fails records one by one (HTTP 200, FailedRecordCount); sluice fails the whole batch when the shard has no room for all of it, since forwarding only some records would need a re-signed request";

const KINESIS: AwsLimit[] = [
  {
    service: "kinesis", name: "PutRecord records per shard", appliesTo: "PutRecord, PutRecords (each record counts)", matches: (o) => o === "PutRecord" || o === "PutRecords",
    burst: 1000, rate: 1000, unit: "records", per: "stream (one shard)", key: streamKey, cost: (f, info) => (info.operation === "PutRecords" ? putRecordsOf(f).count : 1), failsRecords: true,
    error: { status: 400, code: "ProvisionedThroughputExceededException", message: "Rate exceeded for shard shardId-000000000000 in stream." },
    source: KINESIS_QUOTAS, note: `sluice cannot see how many shards a stream has: each stream counts as one shard. PutRecords counts each of its records. ${PUT_RECORDS_NOTE}`,
  },
  {
    service: "kinesis", name: "PutRecord bytes per shard", appliesTo: "PutRecord, PutRecords", matches: (o) => o === "PutRecord" || o === "PutRecords",
    burst: 1024 * 1024, rate: 1024 * 1024, unit: "bytes", per: "stream (one shard)", key: streamKey, failsRecords: true,
    cost: (f, info) => (info.operation === "PutRecords" ? putRecordsOf(f).bytes : Math.max(1, f.request.contentLength)),
    error: { status: 400, code: "ProvisionedThroughputExceededException", message: "Rate exceeded for shard shardId-000000000000 in stream." },
    source: KINESIS_QUOTAS, note: `PutRecord counts the request's size, a little more than the record's data; PutRecords its records' data and keys. ${PUT_RECORDS_NOTE}`,
  },
  {
    service: "kinesis", name: "DescribeStream", appliesTo: "DescribeStream", matches: (o) => o === "DescribeStream",
    burst: 10, rate: 10, unit: "requests", per: "account and region", key: accountRegion,
    error: { status: 400, code: "LimitExceededException", message: "Rate exceeded for DescribeStream." }, source: KINESIS_QUOTAS,
  },
];

const SQS: AwsLimit[] = [
  {
    service: "sqs", name: "FIFO queue calls per action", appliesTo: "every action on a .fifo queue",
    matches: (_o, f) => /\.fifo\b/.test(String(jsonBody(f).QueueUrl ?? formParam(f, "QueueUrl") ?? "")),
    burst: 300, rate: 300, unit: "requests", per: "queue and action",
    key: (f, info) => `${String(jsonBody(f).QueueUrl ?? formParam(f, "QueueUrl"))}/${info.operation ?? "-"}`,
    error: { status: 400, code: "RequestThrottled", message: "Request is throttled." }, source: SQS_QUOTAS,
    note: "300 calls per second per action without high-throughput mode; each batch call counts once (up to 10 messages)",
  },
];

const STS: AwsLimit[] = [
  {
    service: "sts", name: "STS requests", appliesTo: "every action", matches: () => true,
    burst: 600, rate: 600, unit: "requests", per: "account and region", key: accountRegion,
    error: { status: 400, code: "Throttling", message: "Rate exceeded" }, source: STS_QUOTAS,
    note: "sluice's default from the published request quota; raise or lower it with scale=",
  },
];

const KMS_CRYPTO = new Set(["Encrypt", "Decrypt", "GenerateDataKey", "GenerateDataKeyWithoutPlaintext", "GenerateDataKeyPair", "GenerateDataKeyPairWithoutPlaintext", "GenerateRandom", "ReEncrypt", "Sign", "Verify", "GenerateMac", "VerifyMac"]);

const KMS: AwsLimit[] = [
  {
    service: "kms", name: "cryptographic operations (shared)", appliesTo: [...KMS_CRYPTO].join(", "), matches: (o) => KMS_CRYPTO.has(o),
    burst: 5500, rate: 5500, unit: "requests", per: "account and region", key: accountRegion,
    error: { status: 400, code: "ThrottlingException", message: "You have exceeded the rate at which you may call KMS. Reduce the frequency of your calls." },
    source: KMS_QUOTAS, note: "5,500/s is the lowest published symmetric-key quota; larger regions have 10,000 to 100,000 — use scale=",
  },
  {
    service: "kms", name: "other operations", appliesTo: "every other operation", matches: (o) => !KMS_CRYPTO.has(o),
    burst: 100, rate: 100, unit: "requests", per: "account, region and operation", key: (f, info) => `${accountRegion(f, info)}/${info.operation ?? "-"}`,
    error: { status: 400, code: "ThrottlingException", message: "You have exceeded the rate at which you may call KMS. Reduce the frequency of your calls." },
    source: KMS_QUOTAS, note: "the page lists each operation; sluice uses the common 100/s for those it does not list",
  },
];

/** DynamoDB's data-plane operations; every other operation is control plane. */
const DYNAMODB_READS = new Set(["GetItem", "Query", "Scan", "BatchGetItem", "TransactGetItems"]);
const DYNAMODB_WRITES = new Set(["PutItem", "UpdateItem", "DeleteItem", "BatchWriteItem", "TransactWriteItems"]);
const DYNAMODB_DATA_PLANE = new Set([...DYNAMODB_READS, ...DYNAMODB_WRITES, "ExecuteStatement", "BatchExecuteStatement", "ExecuteTransaction"]);
/** Operations that name one item (or one key's range), so one partition key value. */
const DYNAMODB_SINGLE_KEY = new Set(["GetItem", "Query", "PutItem", "UpdateItem", "DeleteItem"]);

function dynamoTable(flow: HTTPFlow): string {
  const body = jsonBody(flow);
  return String(body.TableName ?? "-");
}

/** The value the request's partition key has: the first attribute of Key or Item, or the first key-condition value. */
function dynamoPartitionValue(flow: HTTPFlow): string {
  const body = jsonBody(flow);
  const first = (o: unknown): string | null => {
    if (!o || typeof o !== "object") return null;
    const entries = Object.entries(o as Record<string, unknown>);
    return entries.length ? JSON.stringify(entries[0]![1]) : null;
  };
  return first(body.Key) ?? first(body.Item) ?? first(body.ExpressionAttributeValues) ?? (body.KeyConditions ? first(Object.values(body.KeyConditions as object)[0]) : null) ?? "-";
}

/** DynamoDB's item size, roughly: the JSON of the item (attribute names and values) in bytes. */
function dynamoItemBytes(flow: HTTPFlow): number {
  const item = jsonBody(flow).Item;
  return item === undefined ? 1 : Buffer.byteLength(JSON.stringify(item));
}

function countOf(o: unknown): number {
  if (!o || typeof o !== "object") return 0;
  let n = 0;
  for (const v of Object.values(o as Record<string, unknown>)) {
    if (Array.isArray(v)) n += v.length;
    else if (v && typeof v === "object" && Array.isArray((v as { Keys?: unknown }).Keys)) n += ((v as { Keys: unknown[] }).Keys).length;
  }
  return n;
}

/**
 * Read cost in half-RCUs (one eventually consistent read of up to 4 KB): a strongly consistent
 * read is 2, a transactional read 4. The item size is not known before the answer, so each read
 * is charged for one 4 KB unit.
 */
function dynamoReadCost(flow: HTTPFlow, info: AwsRequestInfo): number {
  const body = jsonBody(flow);
  switch (info.operation) {
    case "TransactGetItems": return 4 * Math.max(1, Array.isArray(body.TransactItems) ? body.TransactItems.length : 1);
    case "BatchGetItem": {
      const requests = body.RequestItems && typeof body.RequestItems === "object" ? Object.values(body.RequestItems as Record<string, { Keys?: unknown[]; ConsistentRead?: boolean }>) : [];
      return Math.max(1, requests.reduce((n, r) => n + (Array.isArray(r.Keys) ? r.Keys.length : 0) * (r.ConsistentRead ? 2 : 1), 0));
    }
    default: return body.ConsistentRead === true ? 2 : 1;
  }
}

/** Write cost in WCUs: one per 1 KB of the item written (at least one); transactional writes cost twice. */
function dynamoWriteCost(flow: HTTPFlow, info: AwsRequestInfo): number {
  const body = jsonBody(flow);
  switch (info.operation) {
    case "TransactWriteItems": return 2 * Math.max(1, Array.isArray(body.TransactItems) ? body.TransactItems.length : 1);
    case "BatchWriteItem": return Math.max(1, countOf(body.RequestItems));
    default: return Math.max(1, Math.ceil(dynamoItemBytes(flow) / 1024));
  }
}

/** The table's ARN as ThrottlingReasons name it (the account id is not in the traffic: zeros). */
function dynamoTableArn(flow: HTTPFlow, info: AwsRequestInfo): string {
  return `arn:aws:dynamodb:${info.region ?? "us-east-1"}:000000000000:table/${dynamoTable(flow)}`;
}

function dynamoThrottle(code: "ProvisionedThroughputExceededException" | "RequestLimitExceeded", reason: string, message: string): Pick<AwsLimit, "error" | "errorFor"> {
  const error: AwsError = { status: 400, code, message };
  return { error, errorFor: (flow, info) => ({ ...error, fields: { ThrottlingReasons: [{ reason, resource: dynamoTableArn(flow, info) }] } }) };
}

const dynamoTableKey = (flow: HTTPFlow, info: AwsRequestInfo) => `${accountRegion(flow, info)}/${dynamoTable(flow)}`;
const dynamoPartitionKey = (flow: HTTPFlow, info: AwsRequestInfo) => `${dynamoTableKey(flow, info)}/${dynamoPartitionValue(flow)}`;
const PARTITION_NOTE = "sluice cannot see how a table is split: each partition key value gets the per-partition limit (a real partition holds many values, so AWS may throttle sooner); the first attribute of Key or Item is taken as the partition key";

const DYNAMODB: AwsLimit[] = [
  {
    service: "dynamodb", name: "reads per partition", appliesTo: "GetItem, Query (one partition key value)",
    matches: (o) => DYNAMODB_READS.has(o) && DYNAMODB_SINGLE_KEY.has(o), burst: 6000, rate: 6000, unit: "half-RCUs (3,000 RCU)",
    per: "table and partition key value", key: dynamoPartitionKey, cost: dynamoReadCost,
    ...dynamoThrottle("ProvisionedThroughputExceededException", "TableReadKeyRangeThroughputExceeded", "Throughput exceeds the current capacity for one or more partitions of your table."),
    source: DYNAMODB_PARTITIONS,
    note: `${PARTITION_NOTE}; a read is charged one 4 KB unit (2 half-RCUs strongly consistent) because its size is only known from the answer`,
  },
  {
    service: "dynamodb", name: "writes per partition", appliesTo: "PutItem, UpdateItem, DeleteItem (one partition key value)",
    matches: (o) => DYNAMODB_WRITES.has(o) && DYNAMODB_SINGLE_KEY.has(o), burst: 1000, rate: 1000, unit: "WCU",
    per: "table and partition key value", key: dynamoPartitionKey, cost: dynamoWriteCost,
    ...dynamoThrottle("ProvisionedThroughputExceededException", "TableWriteKeyRangeThroughputExceeded", "Throughput exceeds the current capacity for one or more partitions of your table."),
    source: DYNAMODB_PARTITIONS, note: `${PARTITION_NOTE}; a PutItem costs one WCU per KB of its item's JSON, UpdateItem and DeleteItem one`,
  },
  {
    service: "dynamodb", name: "on-demand table reads", appliesTo: [...DYNAMODB_READS].join(", "),
    matches: (o) => DYNAMODB_READS.has(o), burst: 80000, rate: 80000, unit: "half-RCUs (40,000 read request units)",
    per: "table", key: dynamoTableKey, cost: dynamoReadCost,
    ...dynamoThrottle("RequestLimitExceeded", "TableReadAccountLimitExceeded", "Throughput exceeds the current throughput limit for your account. Please contact AWS Support at https://aws.amazon.com/support request a limit increase"),
    source: DYNAMODB_QUOTAS, note: "the default per-table quota of an on-demand table; provisioned tables are limited by their own provisioned capacity, which the traffic does not show",
  },
  {
    service: "dynamodb", name: "on-demand table writes", appliesTo: [...DYNAMODB_WRITES].join(", "),
    matches: (o) => DYNAMODB_WRITES.has(o), burst: 40000, rate: 40000, unit: "WCU (write request units)",
    per: "table", key: dynamoTableKey, cost: dynamoWriteCost,
    ...dynamoThrottle("RequestLimitExceeded", "TableWriteAccountLimitExceeded", "Throughput exceeds the current throughput limit for your account. Please contact AWS Support at https://aws.amazon.com/support request a limit increase"),
    source: DYNAMODB_QUOTAS, note: "the default per-table quota of an on-demand table",
  },
  {
    service: "dynamodb", name: "control plane requests", appliesTo: "every operation that is not a data-plane read or write (CreateTable, DescribeTable, ListTables, UpdateTable, …)",
    matches: (o) => !DYNAMODB_DATA_PLANE.has(o), burst: 2500, rate: 2500, unit: "requests", per: "account and region", key: accountRegion,
    error: { status: 400, code: "ThrottlingException", message: "Rate of requests exceeds the allowed throughput." }, source: DYNAMODB_CONTROL_PLANE,
  },
];

/** The function a Lambda request names: /2015-03-31/functions/NAME/… */
function lambdaFunction(flow: HTTPFlow): string {
  const m = /\/functions\/([^/]+)/.exec(flow.request.path);
  return m ? decodeURIComponent(m[1]!).replace(/^arn:aws[\w-]*:lambda:[^:]*:[^:]*:function:/, "").replace(/:.*$/, "") : "-";
}

const LAMBDA_INVOKE = new Set(["Invoke", "InvokeWithResponseStream"]);
const isSyncInvoke = (o: string, f: HTTPFlow) => LAMBDA_INVOKE.has(o) && (f.request.headers.get("x-amz-invocation-type") ?? "RequestResponse") !== "Event";
const LAMBDA_CONTROL_PLANE = (o: string) => !LAMBDA_INVOKE.has(o) && o !== "InvokeAsync";

function lambdaThrottle(reason: string, message: string): AwsError {
  return { status: 429, code: "TooManyRequestsException", message, fields: { Reason: reason, Type: "User" } };
}

const LAMBDA: AwsLimit[] = [
  {
    service: "lambda", name: "concurrent executions", appliesTo: "synchronous Invoke and InvokeWithResponseStream (not InvocationType Event)",
    matches: isSyncInvoke, kind: "concurrency", burst: 1000, rate: 0, unit: "invocations in flight", per: "account and region", key: accountRegion,
    error: lambdaThrottle("ConcurrentInvocationLimitExceeded", "Rate Exceeded."), source: LAMBDA_QUOTAS,
    note: "an invocation is in flight from its request to the end of its answer; the count is kept per sluice process. Reserved concurrency is a function's configuration the traffic does not show (use error TooManyRequestsException for it)",
  },
  {
    service: "lambda", name: "invocation requests per function", appliesTo: "synchronous Invoke and InvokeWithResponseStream",
    matches: isSyncInvoke, burst: 10000, rate: 10000, unit: "requests", per: "function", key: (f, info) => `${accountRegion(f, info)}/${lambdaFunction(f)}`,
    error: lambdaThrottle("FunctionInvocationRateLimitExceeded", "Rate Exceeded."), source: LAMBDA_QUOTAS,
    note: "10 × the concurrency limit: each execution environment serves up to 10 requests per second",
  },
  {
    service: "lambda", name: "GetFunction requests", appliesTo: "GetFunction", matches: (o) => o === "GetFunction",
    burst: 100, rate: 100, unit: "requests", per: "account and region", key: accountRegion,
    error: lambdaThrottle("CallerRateLimitExceeded", "Rate exceeded"), source: LAMBDA_QUOTAS,
  },
  {
    service: "lambda", name: "GetPolicy requests", appliesTo: "GetPolicy", matches: (o) => o === "GetPolicy",
    burst: 15, rate: 15, unit: "requests", per: "account and region", key: accountRegion,
    error: lambdaThrottle("CallerRateLimitExceeded", "Rate exceeded"), source: LAMBDA_QUOTAS,
  },
  {
    service: "lambda", name: "other control plane requests", appliesTo: "every operation but Invoke, GetFunction and GetPolicy",
    matches: (o) => LAMBDA_CONTROL_PLANE(o) && o !== "GetFunction" && o !== "GetPolicy",
    burst: 15, rate: 15, unit: "requests", per: "account and region", key: (f, info) => `${accountRegion(f, info)}/control`,
    error: lambdaThrottle("CallerRateLimitExceeded", "Rate exceeded"), source: LAMBDA_QUOTAS,
  },
];

export interface AwsLimitsOptions {
  /** Multiplies every rate and bucket (0.1: ten times tighter). */
  scale?: number;
  /** S3 prefix depth that counts as partitioned (default 1). */
  depth?: number;
}

/** Every limit profile, in the order `sluice limits` prints them. */
export function awsLimits(opts: AwsLimitsOptions = {}): AwsLimit[] {
  return [...EC2, ...s3Limits(opts.depth ?? 1), ...DYNAMODB, ...LAMBDA, ...KINESIS, ...SQS, ...STS, ...KMS];
}

/** Services with a limit profile. */
export const LIMITED_SERVICES: readonly string[] = ["ec2", "s3", "dynamodb", "lambda", "kinesis", "sqs", "sts", "kms"];

/** What `flow.metadata.aws_limit` records when a limit refused a request (kept in captures). */
export interface AwsLimitRefusal {
  service: string;
  limit: string;
  status: number;
  code: string;
  message: string;
  /** Extra members of the error body (Lambda's Reason, DynamoDB's ThrottlingReasons). */
  fields?: Record<string, unknown>;
  /** Kinesis PutRecords: answer 200 with this many records failed with `code` (FailedRecordCount). */
  failedRecords?: number;
  source: string;
}

export function refusalOf(limit: AwsLimit, flow?: HTTPFlow): AwsLimitRefusal {
  const info = flow ? awsInfoOf(flow) : null;
  const e = flow && info && limit.errorFor ? limit.errorFor(flow, info) : limit.error;
  return {
    service: limit.service, limit: limit.name, status: e.status, code: e.code, message: e.message, ...(e.fields ? { fields: e.fields } : {}),
    ...(limit.failsRecords && flow && info?.operation === "PutRecords" ? { failedRecords: putRecordsOf(flow).count } : {}), source: limit.source,
  };
}

/** One limit a request falls under: the limit, its bucket's key and shape (scaled), and what the request costs. */
export interface ApplicableLimit {
  limit: AwsLimit;
  /** The limit's key in the shared state (index, then the key AWS keeps it by). */
  key: string;
  rate: number;
  burst: number;
  cost: number;
}

/**
 * Applies the limit profiles to requests, each bucket kept per the key AWS keeps it by, in a
 * SharedState (in-process, or shared by a fleet): the same rule in every process spends one budget.
 * Concurrency limits (Lambda) count requests in flight in this process: `release(flow)` ends one.
 */
export class AwsLimiter {
  private readonly limits: AwsLimit[];
  readonly scale: number;
  /** In-flight requests per concurrency key, and the keys each admitted flow holds. */
  private readonly inFlight = new Map<string, number>();
  private readonly holding = new WeakMap<HTTPFlow, string[]>();
  /** Requests waiting for a concurrency slot (shaping), per key, first come first served. */
  private readonly waiting = new Map<string, (() => void)[]>();

  constructor(opts: AwsLimitsOptions = {}) {
    this.scale = opts.scale ?? 1;
    if (!(this.scale > 0)) throw new RangeError(`scale= must be above 0, got ${opts.scale}`);
    this.limits = awsLimits(opts);
  }

  /** The limits `flow` falls under, in profile order, with its keys and costs (empty for non-AWS traffic). */
  applicable(flow: HTTPFlow): ApplicableLimit[] {
    const info = awsInfoOf(flow);
    if (!info?.service || !info.operation) return [];
    const out: ApplicableLimit[] = [];
    for (let i = 0; i < this.limits.length; i++) {
      const limit = this.limits[i]!;
      if (limit.service !== info.service || !limit.matches(info.operation, flow, info)) continue;
      const burst = limit.kind === "concurrency" ? Math.max(1, Math.round(limit.burst * this.scale)) : Math.max(1, limit.burst * this.scale);
      // A request costing more than the whole bucket could never pass: it costs the bucket.
      const cost = Math.min(burst, limit.cost ? limit.cost(flow, info) : 1);
      out.push({ limit, key: `aws-limit/${i}/${limit.key(flow, info)}`, rate: limit.rate * this.scale, burst, cost });
    }
    return out;
  }

  /**
   * Counts `flow` against every limit it falls under (taking from each bucket that can pay) and
   * returns the first limit that could not, or null when all admit it. `at` is in milliseconds.
   * A flow admitted under a concurrency limit holds its slot until `release(flow)`.
   */
  admit(flow: HTTPFlow, state: Pick<SharedState, "take">, at: number, ns = ""): MaybeAsync<AwsLimit | null> {
    const applicable = this.applicable(flow);
    if (applicable.length === 0) return null;
    const refusedAt: boolean[] = [];
    const pending: Promise<void>[] = [];
    for (let slot = 0; slot < applicable.length; slot++) {
      const a = applicable[slot]!;
      if (a.limit.kind === "concurrency") {
        refusedAt[slot] = !this.enter(flow, ns + a.key, a.burst);
        continue;
      }
      const grant = state.take(ns + a.key, { rate: a.rate, burst: a.burst }, a.cost, at);
      if (isPromise(grant)) pending.push(grant.then((g) => void (refusedAt[slot] = !g.granted)));
      else refusedAt[slot] = !grant.granted;
    }
    const first = (): AwsLimit | null => {
      const refused = applicable.find((_, i) => refusedAt[i])?.limit ?? null;
      // A refused request is answered at once: it holds no slot.
      if (refused) this.release(flow);
      return refused;
    };
    return pending.length ? Promise.all(pending).then(first) : first();
  }

  /** Ends `flow`'s hold on its concurrency slots (its answer is complete, or it failed). Idempotent. */
  release(flow: HTTPFlow): void {
    const keys = this.holding.get(flow);
    if (!keys) return;
    this.holding.delete(flow);
    for (const key of keys) {
      const n = (this.inFlight.get(key) ?? 1) - 1;
      if (n <= 0) this.inFlight.delete(key);
      else this.inFlight.set(key, n);
      // The slot goes to the longest waiter (shaping), which takes it at once.
      const line = this.waiting.get(key);
      const next = line?.shift();
      if (line && line.length === 0) this.waiting.delete(key);
      next?.();
    }
  }

  /**
   * Shaping: takes a slot of concurrency limit `a` for `flow` now (ready: null), or joins the line
   * for one (ready settles when it is `flow`'s); `cancel` leaves the line.
   */
  acquire(flow: HTTPFlow, a: ApplicableLimit, ns = ""): { ready: Promise<void> | null; cancel: () => void } {
    const key = ns + a.key;
    if (!this.waiting.has(key) && this.enter(flow, key, a.burst)) return { ready: null, cancel: () => {} };
    let wake!: () => void;
    const ready = new Promise<void>((resolve) => {
      wake = () => {
        this.enter(flow, key, Infinity);
        resolve();
      };
    });
    const line = this.waiting.get(key) ?? [];
    line.push(wake);
    this.waiting.set(key, line);
    const cancel = () => {
      const at = line.indexOf(wake);
      if (at >= 0) line.splice(at, 1);
      if (line.length === 0 && this.waiting.get(key) === line) this.waiting.delete(key);
    };
    return { ready, cancel };
  }

  /** Requests in flight under concurrency limits right now (tests check that none leak). */
  get inFlightCount(): number {
    let n = 0;
    for (const v of this.inFlight.values()) n += v;
    return n;
  }

  private enter(flow: HTTPFlow, key: string, max: number): boolean {
    const n = this.inFlight.get(key) ?? 0;
    if (n >= max) return false;
    this.inFlight.set(key, n + 1);
    const keys = this.holding.get(flow);
    if (keys) keys.push(key);
    else this.holding.set(flow, [key]);
    return true;
  }
}

/** `sluice limits [SERVICE]`: the table, with sources. */
export function limitsTable(service: string | null, opts: AwsLimitsOptions = {}): string {
  const rows = awsLimits(opts).filter((l) => service === null || l.service === service);
  const scale = opts.scale ?? 1;
  const lines: string[] = [];
  let current = "";
  for (const l of rows) {
    if (l.service !== current) {
      current = l.service;
      lines.push(`${lines.length ? "\n" : ""}${l.service}`);
    }
    const n = (x: number) => Math.round(x * scale * 100) / 100;
    const size = l.kind === "concurrency"
      ? `at most ${Math.max(1, Math.round(l.burst * scale)).toLocaleString("en")} ${l.unit}`
      : `bucket ${n(l.burst).toLocaleString("en")} ${l.unit}, refill ${n(l.rate).toLocaleString("en")}/s`;
    lines.push(`  ${l.name}: ${size}, per ${l.per}; ${l.error.status} ${l.error.code}`);
    lines.push(`    applies to: ${l.appliesTo}`);
    if (l.note) lines.push(`    note: ${l.note}`);
    lines.push(`    source: ${l.source}`);
  }
  return lines.join("\n") + "\n";
}
