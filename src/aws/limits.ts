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
import { PARTIQL_BATCH, PARTIQL_OPERATIONS, PARTIQL_SELECT, PARTIQL_TRANSACTION, partiqlAnswerAsEquivalent, partiqlEquivalent, type PartiqlEquivalent } from "./partiql.js";
import type { AwsError } from "./errors.js";
import type { AwsRequestInfo } from "./types.js";
import { DYNAMODB_GSI, DYNAMODB_ITEM_SIZES, DYNAMODB_MULTI_ITEM, DYNAMODB_READ_WRITE_UNITS, indexWritesOf, itemsReadCost, writeConsumed, type GlobalIndex, partitionKeyValueOf, partitionOf, readCostBefore, readCostOfBytes, readCostReported, requestItemsOf, tableConsumed, tableOf, writeCostAfter, writeCostBefore, type CostFromAnswer, type DynamoRequestItem } from "./dynamodb-capacity.js";

const EC2_THROTTLING = "https://docs.aws.amazon.com/ec2/latest/devguide/ec2-api-throttling.html";
const S3_PERFORMANCE = "https://docs.aws.amazon.com/AmazonS3/latest/userguide/optimizing-performance.html";
const KINESIS_QUOTAS = "https://docs.aws.amazon.com/streams/latest/dev/service-sizes-and-limits.html";
const SQS_QUOTAS = "https://docs.aws.amazon.com/AWSSimpleQueueService/latest/SQSDeveloperGuide/quotas-messages.html";
const STS_QUOTAS = "https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_iam-quotas.html";
const KMS_QUOTAS = "https://docs.aws.amazon.com/kms/latest/developerguide/requests-per-second.html";
const DYNAMODB_QUOTAS = "https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/ServiceQuotas.html";
const DYNAMODB_CONTROL_PLANE = "https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/bp-control-plane.html";
const DYNAMODB_BURST = "https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/burst-adaptive-capacity.html";
const DYNAMODB_ON_DEMAND = "https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/on-demand-capacity-mode.html#on-demand-capacity-mode-initial";
const LAMBDA_QUOTAS = "https://docs.aws.amazon.com/lambda/latest/dg/gettingstarted-limits.html";
const LAMBDA_RESERVED = "https://docs.aws.amazon.com/lambda/latest/dg/configuration-concurrency.html";

/** What a request is counted as: one request, or units of its own (instances, records, bytes). */
type Cost = (flow: HTTPFlow, info: AwsRequestInfo) => number;
/**
 * What a request really cost, known from its answer (DynamoDB), or null to keep what it was
 * charged; `reported`: AWS said so (ConsumedCapacity), so a cost below the charge is given back.
 */
type Settle = (flow: HTTPFlow, info: AwsRequestInfo) => CostFromAnswer | null;

/**
 * One of the buckets a request is charged to when its items go to several (a DynamoDB batch or
 * transaction: each item to its own table's and partition's bucket).
 */
export interface LimitPart {
  /** The bucket's key, as `key` gives it for a request of one item. */
  key: string;
  cost: number;
  /** The cost from the answer, or null to keep the charge. */
  settle?: Settle;
  /** The request's items this part charges, by their place in the request. */
  items: number[];
  /** Why those items are throttled when the bucket is empty (DynamoDB's ThrottlingReason). */
  reason?: { reason: string; resource: string };
}

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
   * The buckets the request's items are charged to when they go to several (DynamoDB batches and
   * transactions); null: one bucket (`key`, `cost`, `settle`); empty: the limit does not apply.
   */
  parts?: (flow: HTTPFlow, info: AwsRequestInfo) => LimitPart[] | null;
  /** The cost from the answer: the difference is charged when the answer comes (into debt if need be). */
  settle?: Settle;
  /** The numbers are the user's (provisioned=, reserved=) or already scaled: scale= does not apply again. */
  fixed?: boolean;
  /**
   * "rate" (the default): a token bucket of `burst` refilled at `rate`/s. "concurrency": at most
   * `burst` requests in flight at once (Lambda's concurrent executions); `rate` is unused.
   */
  kind?: "rate" | "concurrency";
  error: AwsError;
  /** Kinesis: a refused PutRecords is answered 200 with every record failed with `error`'s code (PutRecord gets the error). */
  failsRecords?: boolean;
  /**
   * The error for this request when it names the resource (DynamoDB's ThrottlingReasons name the
   * table); `refused`: the parts whose buckets were empty, of every limit that refused it.
   */
  errorFor?: (flow: HTTPFlow, info: AwsRequestInfo, refused?: LimitPart[]) => AwsError;
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

function rawJsonBody(flow: HTTPFlow): Record<string, unknown> {
  try {
    const v = JSON.parse(flow.request.text) as unknown;
    return v && typeof v === "object" ? (v as Record<string, unknown>) : {};
  } catch {
    return {};
  }
}

/** The item operation each DynamoDB PartiQL flow stands for (partiql.ts), worked out once per flow (with its body). */
const partiqlViews = new WeakMap<HTTPFlow, PartiqlEquivalent | null>();

function partiqlView(flow: HTTPFlow): PartiqlEquivalent | null {
  const known = partiqlViews.get(flow);
  if (known !== undefined) return known;
  const info = awsInfoOf(flow);
  if (info?.service !== "dynamodb" || !PARTIQL_OPERATIONS.has(info.operation ?? "")) return null;
  const view = partiqlEquivalent(info.operation!, rawJsonBody(flow));
  // A body not here yet (recognised from the headers alone) is read again later.
  if (flow.request.content?.length) partiqlViews.set(flow, view);
  return view;
}

/** The request's JSON body; for a DynamoDB PartiQL call, the body of the item operation it stands for. */
function jsonBody(flow: HTTPFlow): Record<string, unknown> {
  return partiqlView(flow)?.body ?? rawJsonBody(flow);
}

/** What the limits see of a request: a DynamoDB PartiQL call as the item operation it stands for. */
function limitInfoOf(flow: HTTPFlow): AwsRequestInfo | null {
  const info = awsInfoOf(flow);
  const view = info ? partiqlView(flow) : null;
  return info && view ? { ...info, operation: view.operation } : info;
}

/** The answer's text; for a PartiQL batch, in the shape of the batch it stands for. */
function answerText(flow: HTTPFlow): string {
  const text = flow.response?.text ?? "";
  const info = awsInfoOf(flow);
  return info?.service === "dynamodb" && info.operation && PARTIQL_OPERATIONS.has(info.operation) ? partiqlAnswerAsEquivalent(info.operation, text) : text;
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
/**
 * A new on-demand table sustains 4,000 writes and 12,000 reads per second (DYNAMODB_ON_DEMAND,
 * "Initial throughput"): four partitions of 1,000 WCU and 3,000 RCU.
 */
export const DEFAULT_DYNAMODB_PARTITIONS = 4;
/** Burst capacity: AWS retains up to 300 seconds of unused provisioned capacity (DYNAMODB_BURST). */
const BURST_SECONDS = 300;

function dynamoTable(flow: HTTPFlow): string {
  return tableOf(jsonBody(flow)) ?? "-";
}

/** The table's ARN as ThrottlingReasons name it (the account id is not in the traffic: zeros). */
function dynamoTableArn(flow: HTTPFlow, info: AwsRequestInfo): string {
  return tableArn(info, dynamoTable(flow));
}

function tableArn(info: AwsRequestInfo, table: string): string {
  return `arn:aws:dynamodb:${info.region ?? "us-east-1"}:000000000000:table/${table}`;
}

/**
 * A DynamoDB throttling error; on a global secondary index (`gsiOf`) its reason and resource name
 * the index (`IndexReadKeyRangeThroughputExceeded`, `…:table/T/index/I`), as AWS's do.
 */
function dynamoThrottle(code: "ProvisionedThroughputExceededException" | "RequestLimitExceeded", reason: string, message: string, gsiOf: (flow: HTTPFlow, info: AwsRequestInfo) => string | null = () => null): Pick<AwsLimit, "error" | "errorFor"> {
  const error: AwsError = { status: 400, code, message };
  return {
    error,
    errorFor: (flow, info, refused) => {
      if (refused?.length && DYNAMODB_MULTI_ITEM.has(info.operation ?? "")) return multiItemThrottle(info.operation!, jsonBody(flow), refused);
      // A write of one item whose index writes were charged too: the reasons of the table and indexes that are over.
      if (refused?.length) return { ...error, fields: { ThrottlingReasons: uniqueReasons(refused) } };
      const index = gsiOf(flow, info);
      const [r, resource] = index === null ? [reason, dynamoTableArn(flow, info)] : [reason.replace(/^Table/, "Index"), `${dynamoTableArn(flow, info)}/index/${index}`];
      return { ...error, fields: { ThrottlingReasons: [{ reason: r, resource }] } };
    },
  };
}

const DYNAMODB_BATCH_WRITE = "https://docs.aws.amazon.com/amazondynamodb/latest/APIReference/API_BatchWriteItem.html";
const DYNAMODB_BATCH_GET = "https://docs.aws.amazon.com/amazondynamodb/latest/APIReference/API_BatchGetItem.html";
const DYNAMODB_TRANSACT_WRITE = "https://docs.aws.amazon.com/amazondynamodb/latest/APIReference/API_TransactWriteItems.html";
/** The on-demand throttling message, as TransactionCanceledException's documentation quotes it for ThrottlingError. */
const SCALING_MESSAGE = "Throughput exceeds the current capacity of your table or index. DynamoDB is automatically scaling your table or index so please try again shortly. If exceptions persist, check if you have a hot key: https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/bp-partition-key-design.html.";
const INDEX_SCALING_MESSAGE = "Throughput exceeds the current capacity for one or more global secondary indexes. DynamoDB is automatically scaling your index so please try again shortly.";
const INDEX_THROUGHPUT_MESSAGE = "The level of configured provisioned throughput for one or more global secondary indexes of the table was exceeded. Consider increasing your provisioning level for the under-provisioned global secondary indexes with the UpdateTable API.";

/**
 * A batch or transaction some of whose items' buckets are empty. sluice cannot forward part of a
 * signed request, so the whole call is refused, as AWS refuses it when none of its items can be
 * processed:
 * - BatchWriteItem / BatchGetItem (DYNAMODB_BATCH_WRITE, DYNAMODB_BATCH_GET): "if none of the items
 *   can be processed due to insufficient provisioned throughput on all of the tables in the
 *   request", ProvisionedThroughputExceededException; "due to other throttling scenarios (such as
 *   exceeding partition level limits)", ThrottlingException (whose model spells its list
 *   `throttlingReasons`). Each with the ThrottlingReasons of the tables and partitions that are over.
 * - TransactWriteItems / TransactGetItems (DYNAMODB_TRANSACT_WRITE): the whole transaction is
 *   cancelled, TransactionCanceledException with one CancellationReason per item in the request's
 *   order — `ProvisionedThroughputExceeded` (a provisioned table or index), `ThrottlingError`
 *   (on-demand, or a partition), `None` for the items that had capacity — with the messages its
 *   documentation lists. SDKs do not retry it, as against AWS.
 */
function multiItemThrottle(operation: string, request: Record<string, unknown>, refused: LimitPart[]): AwsError {
  const provisioned = (p: LimitPart) => p.reason?.reason.endsWith("ProvisionedThroughputExceeded") === true;
  const onIndex = (p: LimitPart) => p.reason?.reason.startsWith("Index") === true;
  if (operation === "TransactWriteItems" || operation === "TransactGetItems") {
    const count = requestItemsOf(operation, request).length;
    const reasons: ({ Code: string; Message: string } | { Code: "None" })[] = Array.from({ length: count }, () => ({ Code: "None" }));
    for (const p of refused) {
      for (const at of p.items) {
        const was = reasons[at];
        if (!was || (was.Code === "ProvisionedThroughputExceeded")) continue;
        if (provisioned(p)) reasons[at] = { Code: "ProvisionedThroughputExceeded", Message: onIndex(p) ? INDEX_THROUGHPUT_MESSAGE : THROUGHPUT_MESSAGE };
        else if (was.Code === "None") reasons[at] = { Code: "ThrottlingError", Message: onIndex(p) ? INDEX_SCALING_MESSAGE : SCALING_MESSAGE };
      }
    }
    const codes = reasons.map((r) => r.Code).join(", ");
    return { status: 400, code: "TransactionCanceledException", message: `Transaction cancelled, please refer cancellation reasons for specific reasons [${codes}]`, fields: { CancellationReasons: reasons } };
  }
  const reasons = uniqueReasons(refused);
  if (refused.every(provisioned)) return { status: 400, code: "ProvisionedThroughputExceededException", message: THROUGHPUT_MESSAGE, fields: { ThrottlingReasons: reasons } };
  return { status: 400, code: "ThrottlingException", message: SCALING_MESSAGE, fields: { throttlingReasons: reasons } };
}

/** The ThrottlingReasons of the parts that were refused, each table (or index) and reason once. */
function uniqueReasons(refused: LimitPart[]): { reason: string; resource: string }[] {
  const seen = new Set<string>();
  return refused.flatMap((p) => {
    if (!p.reason) return [];
    const id = `${p.reason.reason} ${p.reason.resource}`;
    if (seen.has(id)) return [];
    seen.add(id);
    return [{ reason: p.reason.reason, resource: p.reason.resource }];
  });
}

const dynamoTableKey = (flow: HTTPFlow, info: AwsRequestInfo) => `${accountRegion(flow, info)}/${dynamoTable(flow)}`;

const readCost: Cost = (flow, info) => readCostBefore(info.operation ?? "", jsonBody(flow));
const writeCost: Cost = (flow, info) => writeCostBefore(info.operation ?? "", jsonBody(flow));
const readSettle: Settle = (flow, info) => {
  const r = flow.response;
  if (!r || r.statusCode !== 200) return null;
  // A streamed answer was not kept: its size on the wire is all there is to go by.
  if (r.streamed) return { cost: readCostOfBytes(info.operation ?? "", jsonBody(flow), r.contentLength), reported: false };
  return readCostReported(info.operation ?? "", jsonBody(flow), answerText(flow), dynamoTable(flow));
};
const writeSettle: Settle = (flow, info) => {
  if (!flow.response || flow.response.statusCode !== 200) return null;
  const cost = writeCostAfter(info.operation ?? "", answerText(flow), dynamoTable(flow));
  return cost === null ? null : { cost, reported: true };
};

/**
 * What some items of a batch or transaction read cost (their table's, or one partition's): the
 * table's ConsumedCapacity entry when the client asked for it (a table's whole share, so not for a
 * partition), else the items found in the answer, each rounded up to 4 KB; an answer that streamed
 * through unkept, its share (by item count) of its size on the wire.
 */
const settleItemReads = (scope: "table" | "partition", items: DynamoRequestItem[], total: number): Settle => (flow, info) => {
  const r = flow.response;
  if (!r || r.statusCode !== 200) return null;
  const operation = info.operation ?? "";
  if (r.streamed) return { cost: Math.max(1, Math.ceil((readCostOfBytes(operation, jsonBody(flow), r.contentLength) * items.length) / Math.max(1, total))), reported: false };
  if (scope === "table") {
    const consumed = tableConsumed(answerText(flow), items[0]!.table, "read");
    if (consumed !== null) return { cost: consumed, reported: true };
  }
  const cost = itemsReadCost(operation, items, answerText(flow));
  return cost === null ? null : { cost, reported: false };
};

/**
 * Writes to one table, or to one of its global indexes (`index`): what the answer's
 * ConsumedCapacity reports for it, when the client asked for it (INDEXES splits the table's share
 * from each index's; TOTAL's sum stands for the table only when it has no index sluice charges).
 */
const settleWrites = (table: string, index: string | null, withIndexes: boolean): Settle => (flow) => {
  if (!flow.response || flow.response.statusCode !== 200) return null;
  const cost = writeConsumed(answerText(flow), table, index, withIndexes);
  return cost === null ? null : { cost, reported: true };
};

/** What a write costs its table's global secondary indexes (gsi=), and what the request cannot tell. */
const GSI_WRITES_NOTE = `writes are charged to the table's global indexes that gsi=TABLE:INDEX:PK[/SK][:KEYS_ONLY] names, as AWS charges them (${DYNAMODB_GSI}): a put of an item that has the index's key attributes one index write of its projected size (the whole item, or with KEYS_ONLY its keys), to the index's own budget and the index partition of its key value, and an index without room throttles the write (Index… reasons naming the index); an update that sets or removes an index key attribute a delete of the old entry (one unit, charged to the index's budget only: its size and partition are not in the request) and a put of the new one (its key and the values the update sets, a lower bound); what the request cannot tell is not charged — a put that replaces an item whose index entry moves or goes, an update of other attributes of an item in the index, a delete of an item in the index — unless the answer's ConsumedCapacity (ReturnConsumedCapacity INDEXES) reports it, which sets each index's and the table's charge; transactions charge their index writes once (AWS documents the doubling for the items); without gsi= writes are not charged to any index`;

/** How sluice answers a batch or transaction some of whose items have no capacity, and how that differs from AWS. */
const MULTI_ITEM_NOTE = "when some of its items' buckets are empty the whole call is refused, since sluice cannot forward part of a signed request: BatchWriteItem and BatchGetItem get ProvisionedThroughputExceededException when every empty bucket is a provisioned table's, else ThrottlingException, with the ThrottlingReasons of the tables and partitions that are over (AWS answers so only when none of the items could be processed; when some could, it writes or reads those and returns the others in UnprocessedItems or UnprocessedKeys with HTTP 200), and nothing is charged for the refused call; a transaction gets TransactionCanceledException with a ThrottlingError (ProvisionedThroughputExceeded on a provisioned table) CancellationReason for each item over and None for the others, as AWS cancels it whole (SDKs do not retry it)";

/** How PartiQL calls are charged (partiql.ts), and what is approximated. */
const PARTIQL_NOTE = `PartiQL (ExecuteStatement, BatchExecuteStatement, ExecuteTransaction) is charged as the item operations AWS runs it as (${PARTIQL_SELECT}; ${PARTIQL_BATCH}; ${PARTIQL_TRANSACTION}): sluice reads the statement's verb, table (and ."index"), the WHERE clause's top-level equalities (literals or ? parameters) and INSERT's VALUE and UPDATE's SET values; a SELECT whose WHERE has an equality and no OR or IN is a Query of the partition of the keys= attribute's value (without keys=, the first equality's), charged by its answer's size; any other SELECT (no WHERE, a range, an OR, an IN) a Scan, charged to the table or index only (an IN's few partitions are not charged); INSERT a PutItem of its item; UPDATE an UpdateItem of its WHERE's equalities (taken as the key: a condition on another attribute is counted in its size) and the values it SETs (a SET of an expression, a + 1, is not counted); DELETE a DeleteItem; BatchExecuteStatement a BatchGetItem or BatchWriteItem of its statements (an UPDATE as a put of its key and values), refused whole when some of its statements have no capacity, where AWS answers the others and gives an error per statement; ExecuteTransaction a TransactGetItems or TransactWriteItems (twice the units); a statement sluice cannot read (another verb, no table) is not charged`;

const THROUGHPUT_MESSAGE = "The level of configured provisioned throughput for the table was exceeded. Consider increasing your provisioning level with the UpdateTable API.";
const PARTITION_MESSAGE = "Throughput exceeds the current capacity for one or more partitions of your table.";
const ACCOUNT_MESSAGE = "Throughput exceeds the current throughput limit for your account. Please contact AWS Support at https://aws.amazon.com/support request a limit increase";
const READ_CHARGE_NOTE = "a read is admitted when its partition has capacity left and charged by the size of its answer once it comes (a ConsumedCapacity in the answer, when the client asked for one, is taken as is; an answer larger than stream_large_bodies, not kept, by its size on the wire, a little more than its items'), so a large read can take the bucket into debt and the requests after it are throttled until it refills, as with AWS";

function dynamoLimits(opts: AwsLimitsOptions): AwsLimit[] {
  const partitions = opts.partitions ?? DEFAULT_DYNAMODB_PARTITIONS;
  const keys = opts.keys ?? {};
  const provisioned = opts.provisioned ?? {};
  const provisionedTables = new Set(Object.keys(provisioned));
  const local = new Set(Object.entries(opts.lsi ?? {}).flatMap(([table, indexes]) => indexes.map((i) => `${table}/${i}`)));
  const gsis = opts.gsi ?? {};
  /** The global secondary index a Query or Scan reads (IndexName, unless lsi= says it is local), or null. */
  const gsiOf = (flow: HTTPFlow, info: AwsRequestInfo): string | null => {
    if (info.operation !== "Query" && info.operation !== "Scan") return null;
    const body = jsonBody(flow);
    const index = body.IndexName;
    if (typeof index !== "string" || !index) return null;
    return local.has(`${tableOf(body) ?? "-"}/${index}`) ? null : index;
  };
  // A GSI has throughput of its own (its own partitions and budget); an LSI shares its table's.
  const tableKey = (flow: HTTPFlow, info: AwsRequestInfo) => {
    const index = gsiOf(flow, info);
    return index === null ? dynamoTableKey(flow, info) : `${dynamoTableKey(flow, info)}/index/${index}`;
  };
  const partitionKey = (flow: HTTPFlow, info: AwsRequestInfo) => {
    const body = jsonBody(flow);
    const table = tableOf(body) ?? "-";
    // An index's partition key is not the table's: gsi= names it, else the key condition's equality says it.
    const index = gsiOf(flow, info);
    const value = partitionKeyValueOf(body, index === null ? keys[table] ?? null : gsis[table]?.find((g) => g.name === index)?.partitionKey ?? null);
    return `${tableKey(flow, info)}/p${value === null ? 0 : partitionOf(value, partitions)}`;
  };
  const throttle = (code: "ProvisionedThroughputExceededException" | "RequestLimitExceeded", reason: string, message: string) => dynamoThrottle(code, reason, message, gsiOf);
  /**
   * A batch's or transaction's reads grouped by the bucket each is charged to — its table's
   * (`scope` "table") or its table's partition's, keyed as a request of that one item would be —
   * for the items of the tables `onTable` accepts. Null for requests of one item (key and cost).
   */
  const itemParts = (scope: "table" | "partition", onTable: (table: string) => boolean, reason: string) => (flow: HTTPFlow, info: AwsRequestInfo): LimitPart[] | null => {
    const operation = info.operation ?? "";
    if (!DYNAMODB_MULTI_ITEM.has(operation)) return null;
    const all = requestItemsOf(operation, jsonBody(flow), keys);
    const groups = new Map<string, DynamoRequestItem[]>();
    for (const item of all) {
      if (!onTable(item.table)) continue;
      const partition = scope === "partition" ? `/p${item.partitionValue === null ? 0 : partitionOf(item.partitionValue, partitions)}` : "";
      const key = `${accountRegion(flow, info)}/${item.table}${partition}`;
      const group = groups.get(key);
      if (group) group.push(item);
      else groups.set(key, [item]);
    }
    return [...groups].map(([key, items]): LimitPart => ({ key, cost: items.reduce((n, i) => n + i.cost, 0), items: items.map((i) => i.position), reason: { reason, resource: tableArn(info, items[0]!.table) }, settle: settleItemReads(scope, items, all.length) }));
  };
  /**
   * The buckets a write is charged to: each table item's (its table's, or its table's partition's,
   * as `scope` says, keyed as a request of that one item would be) and, for tables with global
   * indexes (gsi=), each index write it causes — to the index's own budget, or the index
   * partition its new key value falls in (an entry whose partition the request does not say, the
   * old one an update deletes, is charged to the index's budget only). Only the tables `onTable`
   * accepts. Null for a request of one item that writes no index (key and cost).
   */
  const writeParts = (scope: "table" | "partition", onTable: (table: string) => boolean, limitType: string) => (flow: HTTPFlow, info: AwsRequestInfo): LimitPart[] | null => {
    const operation = info.operation ?? "";
    const body = jsonBody(flow);
    const multi = DYNAMODB_MULTI_ITEM.has(operation);
    const indexWrites = indexWritesOf(operation, body, gsis, keys).filter((w) => onTable(w.table));
    if (!multi && indexWrites.length === 0) return null;
    const region = accountRegion(flow, info);
    const groups = new Map<string, { table: string; index: string | null; cost: number; items: Set<number> }>();
    const add = (table: string, index: string | null, partitionValue: string | null, position: number, cost: number) => {
      if (scope === "partition" && index !== null && partitionValue === null) return;
      const partition = scope === "partition" ? `/p${partitionValue === null ? 0 : partitionOf(partitionValue, partitions)}` : "";
      const key = `${region}/${table}${index === null ? "" : `/index/${index}`}${partition}`;
      const group = groups.get(key) ?? { table, index, cost: 0, items: new Set<number>() };
      group.cost += cost;
      group.items.add(position);
      groups.set(key, group);
    };
    if (multi) {
      for (const item of requestItemsOf(operation, body, keys)) if (onTable(item.table)) add(item.table, null, item.partitionValue, item.position, item.cost);
    } else {
      const table = tableOf(body) ?? "-";
      if (onTable(table)) add(table, null, partitionKeyValueOf(body, keys[table] ?? null), 0, writeCost(flow, info));
    }
    for (const w of indexWrites) add(w.table, w.index, w.partitionValue, w.position, w.cost);
    return [...groups].map(([key, g]): LimitPart => {
      // What the answer reports is per table and index, so it settles a partition's share only for a request of one item.
      const settles = scope === "table" || (!multi && g.index === null);
      const resource = g.index === null ? tableArn(info, g.table) : `${tableArn(info, g.table)}/index/${g.index}`;
      return {
        key, cost: g.cost, items: [...g.items], reason: { reason: `${g.index === null ? "Table" : "Index"}Write${limitType}`, resource },
        ...(settles ? { settle: settleWrites(g.table, g.index, (gsis[g.table]?.length ?? 0) > 0) } : {}),
      };
    });
  };
  const partitionNote = `the partition is the partition key value's hash modulo ${partitions} (partitions=N; ${DEFAULT_DYNAMODB_PARTITIONS} by default, a new on-demand table's 12,000 RCU and 4,000 WCU); the partition key is the keys=TABLE:ATTRIBUTE attribute of Key or Item, else the first attribute in the request's order, else (Query) the attribute the key condition sets equal to a value; each item of a batch or transaction (BatchGetItem, BatchWriteItem, TransactGetItems, TransactWriteItems) is charged to its own table's and partition's buckets; ${MULTI_ITEM_NOTE}`;
  const indexNote = `a Query or Scan with IndexName reads a global secondary index, which has its own partitions and budget (the bucket is kept per table and index), unless lsi=TABLE:INDEX names it a local secondary index, which shares its table's; its ThrottlingReasons say Index… and name the index (https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/GSI.html#GSI.ThroughputConsiderations); for the writes charged to global indexes, see the write limits (gsi=)`;
  const onTable = (name: string) => (_o: string, f: HTTPFlow) => dynamoTable(f) === name;
  const provisionedLimits = Object.entries(provisioned).flatMap(([table, p]): AwsLimit[] => [
    {
      service: "dynamodb", name: `provisioned reads of ${table}`, appliesTo: `${[...DYNAMODB_READS].join(", ")}, PartiQL SELECT on ${table}`,
      matches: (o, f) => DYNAMODB_READS.has(o) && (DYNAMODB_MULTI_ITEM.has(o) || onTable(table)(o, f)), burst: 2 * p.read * BURST_SECONDS, rate: 2 * p.read, unit: `half-RCUs (${p.read.toLocaleString("en")} RCU provisioned)`, fixed: true,
      per: "table", key: tableKey, cost: readCost, settle: readSettle, parts: itemParts("table", (t) => t === table, "TableReadProvisionedThroughputExceeded"),
      ...throttle("ProvisionedThroughputExceededException", "TableReadProvisionedThroughputExceeded", THROUGHPUT_MESSAGE),
      source: `${DYNAMODB_BURST} (burst capacity: 300 s of the provisioned rate); ${DYNAMODB_READ_WRITE_UNITS}`,
      note: `provisioned=${table}:${p.read}/${p.write}; the bucket holds 300 s of unused capacity (burst capacity, best effort at AWS), refilled at the provisioned rate; the per-partition limits apply as well; ${READ_CHARGE_NOTE}; ${indexNote} (a global index of ${table} gets a bucket of these same numbers: AWS provisions each one separately, and sluice takes no numbers of an index's own)`,
    },
    {
      service: "dynamodb", name: `provisioned writes of ${table}`, appliesTo: `${[...DYNAMODB_WRITES].join(", ")}, PartiQL INSERT, UPDATE, DELETE on ${table}`,
      matches: (o, f) => DYNAMODB_WRITES.has(o) && (DYNAMODB_MULTI_ITEM.has(o) || onTable(table)(o, f)), burst: p.write * BURST_SECONDS, rate: p.write, unit: `WCU (${p.write.toLocaleString("en")} provisioned)`, fixed: true,
      per: "table", key: dynamoTableKey, cost: writeCost, settle: writeSettle, parts: writeParts("table", (t) => t === table, "ProvisionedThroughputExceeded"),
      ...throttle("ProvisionedThroughputExceededException", "TableWriteProvisionedThroughputExceeded", THROUGHPUT_MESSAGE),
      source: `${DYNAMODB_BURST} (burst capacity: 300 s of the provisioned rate); ${DYNAMODB_READ_WRITE_UNITS}`,
      note: `provisioned=${table}:${p.read}/${p.write}; the bucket holds 300 s of unused capacity, refilled at the provisioned rate; the per-partition limits apply as well; a global index of ${table} (gsi=) gets a bucket of these same numbers for its writes`,
    },
  ]);
  return [
    {
      service: "dynamodb", name: "reads per partition", appliesTo: "GetItem, Query (one partition key value); each item of BatchGetItem and TransactGetItems; the PartiQL SELECTs that stand for them",
      matches: (o) => DYNAMODB_READS.has(o) && (DYNAMODB_SINGLE_KEY.has(o) || DYNAMODB_MULTI_ITEM.has(o)), burst: 6000, rate: 6000, unit: "half-RCUs (3,000 RCU)",
      per: `table and partition (of ${partitions})`, key: partitionKey, cost: readCost, settle: readSettle, parts: itemParts("partition", () => true, "TableReadKeyRangeThroughputExceeded"),
      ...throttle("ProvisionedThroughputExceededException", "TableReadKeyRangeThroughputExceeded", PARTITION_MESSAGE),
      source: `${DYNAMODB_BURST} (3,000 RCU per partition, a hard limit burst capacity does not lift); ${DYNAMODB_READ_WRITE_UNITS}; ${DYNAMODB_ON_DEMAND}; ${DYNAMODB_BATCH_GET}; ${DYNAMODB_TRANSACT_WRITE}`,
      note: `${partitionNote}; reads cost 1 half-RCU per 4 KB eventually consistent, 2 strongly consistent, 4 transactional; ${READ_CHARGE_NOTE}; ${indexNote} (an index's partition key is the attribute its key condition sets equal to a value); ${PARTIQL_NOTE}`,
    },
    {
      service: "dynamodb", name: "writes per partition", appliesTo: "PutItem, UpdateItem, DeleteItem (one partition key value); each item of BatchWriteItem and TransactWriteItems; the PartiQL INSERTs, UPDATEs and DELETEs that stand for them",
      matches: (o) => DYNAMODB_WRITES.has(o) && (DYNAMODB_SINGLE_KEY.has(o) || DYNAMODB_MULTI_ITEM.has(o)), burst: 1000, rate: 1000, unit: "WCU",
      per: `table and partition (of ${partitions})`, key: partitionKey, cost: writeCost, settle: writeSettle, parts: writeParts("partition", () => true, "KeyRangeThroughputExceeded"),
      ...throttle("ProvisionedThroughputExceededException", "TableWriteKeyRangeThroughputExceeded", PARTITION_MESSAGE),
      source: `${DYNAMODB_BURST} (1,000 WCU per partition, a hard limit burst capacity does not lift); ${DYNAMODB_ITEM_SIZES}; ${DYNAMODB_ON_DEMAND}; ${DYNAMODB_BATCH_WRITE}; ${DYNAMODB_TRANSACT_WRITE}`,
      note: `${partitionNote}; a PutItem costs one WCU per KB of its item (DynamoDB's item size: names and values), UpdateItem its key and the values it sets (a lower bound: the item's size after the update is not in the request), DeleteItem one, transactions twice; a ConsumedCapacity in the answer sets the charge (topped up, or the difference given back to the bucket); ${GSI_WRITES_NOTE}; for PartiQL see the reads per partition`,
    },
    ...provisionedLimits,
    {
      service: "dynamodb", name: "on-demand table reads", appliesTo: `${[...DYNAMODB_READS].join(", ")}, PartiQL SELECT${provisionedTables.size ? ` (tables not given with provisioned=)` : ""}`,
      matches: (o, f) => DYNAMODB_READS.has(o) && (DYNAMODB_MULTI_ITEM.has(o) || !provisionedTables.has(dynamoTable(f))), burst: 80000, rate: 80000, unit: "half-RCUs (40,000 read request units)",
      per: "table", key: tableKey, cost: readCost, settle: readSettle, parts: itemParts("table", (t) => !provisionedTables.has(t), "TableReadAccountLimitExceeded"),
      ...throttle("RequestLimitExceeded", "TableReadAccountLimitExceeded", ACCOUNT_MESSAGE),
      source: DYNAMODB_QUOTAS, note: `the default per-table quota of an on-demand table (kept for each global secondary index of its own); a provisioned table's own capacity (and its burst capacity) applies with provisioned=TABLE:RCU/WCU instead; ${indexNote}`,
    },
    {
      service: "dynamodb", name: "on-demand table writes", appliesTo: `${[...DYNAMODB_WRITES].join(", ")}, PartiQL INSERT, UPDATE, DELETE${provisionedTables.size ? ` (tables not given with provisioned=)` : ""}`,
      matches: (o, f) => DYNAMODB_WRITES.has(o) && (DYNAMODB_MULTI_ITEM.has(o) || !provisionedTables.has(dynamoTable(f))), burst: 40000, rate: 40000, unit: "WCU (write request units)",
      per: "table", key: dynamoTableKey, cost: writeCost, settle: writeSettle, parts: writeParts("table", (t) => !provisionedTables.has(t), "AccountLimitExceeded"),
      ...throttle("RequestLimitExceeded", "TableWriteAccountLimitExceeded", ACCOUNT_MESSAGE),
      source: DYNAMODB_QUOTAS, note: "the default per-table quota of an on-demand table (kept for each global secondary index of its own: gsi=)",
    },
    {
      service: "dynamodb", name: "control plane requests", appliesTo: "every operation that is not a data-plane read or write (CreateTable, DescribeTable, ListTables, UpdateTable, …)",
      matches: (o) => !DYNAMODB_DATA_PLANE.has(o), burst: 2500, rate: 2500, unit: "requests", per: "account and region", key: accountRegion,
      error: { status: 400, code: "ThrottlingException", message: "Rate of requests exceeds the allowed throughput." }, source: DYNAMODB_CONTROL_PLANE,
    },
  ];
}

/** The function a Lambda request names: /2015-03-31/functions/NAME/… */
function lambdaFunction(flow: HTTPFlow): string {
  const m = /\/functions\/([^/]+)/.exec(flow.request.path);
  return m ? decodeURIComponent(m[1]!).replace(/^arn:aws[\w-]*:lambda:[^:]*:[^:]*:function:/, "").replace(/^\d{12}:function:/, "").replace(/:.*$/, "") : "-";
}

const LAMBDA_INVOKE = new Set(["Invoke", "InvokeWithResponseStream"]);
const isSyncInvoke = (o: string, f: HTTPFlow) => LAMBDA_INVOKE.has(o) && (f.request.headers.get("x-amz-invocation-type") ?? "RequestResponse") !== "Event";
const LAMBDA_CONTROL_PLANE = (o: string) => !LAMBDA_INVOKE.has(o) && o !== "InvokeAsync";
/** The account's concurrent executions (LAMBDA_QUOTAS), and what reservations must leave unreserved (LAMBDA_RESERVED). */
const LAMBDA_ACCOUNT_CONCURRENCY = 1000;
const LAMBDA_MIN_UNRESERVED = 100;

function lambdaThrottle(reason: string, message: string): AwsError {
  return { status: 429, code: "TooManyRequestsException", message, fields: { Reason: reason, Type: "User" } };
}

const CONCURRENCY_NOTE = "an invocation is in flight from its request to the end of its answer (or its connection's end); the count is kept per sluice process, or across the fleet with shared_state (each in-flight invocation holds a lease, renewed while it runs, so a killed process frees its slots within 10 s; --shape waits for a slot freed anywhere in the fleet)";

function lambdaLimits(opts: AwsLimitsOptions): AwsLimit[] {
  const reserved = opts.reserved ?? {};
  const reservedNames = new Set(Object.keys(reserved));
  const totalReserved = Object.values(reserved).reduce((a, b) => a + b, 0);
  const account = Math.max(1, Math.round(LAMBDA_ACCOUNT_CONCURRENCY * (opts.scale ?? 1)));
  const reservedLimits = Object.entries(reserved).map(([fn, n]): AwsLimit => ({
    service: "lambda", name: `reserved concurrency of ${fn}`, appliesTo: `synchronous Invoke and InvokeWithResponseStream of ${fn}`,
    matches: (o, f) => isSyncInvoke(o, f) && lambdaFunction(f) === fn, kind: "concurrency", burst: n, rate: 0, fixed: true, unit: "invocations in flight",
    per: "function", key: (f, info) => `${accountRegion(f, info)}/reserved/${fn}`,
    error: lambdaThrottle("ReservedFunctionConcurrentInvocationLimitExceeded", "Rate Exceeded."), source: LAMBDA_RESERVED,
    note: `reserved=${fn}:${n}; its invocations do not count against the account's unreserved pool; ${CONCURRENCY_NOTE}`,
  }));
  return [
    {
      service: "lambda", name: totalReserved ? "unreserved concurrent executions" : "concurrent executions",
      appliesTo: `synchronous Invoke and InvokeWithResponseStream (not InvocationType Event)${reservedNames.size ? ` of functions without reserved=` : ""}`,
      matches: (o, f) => isSyncInvoke(o, f) && !reservedNames.has(lambdaFunction(f)), kind: "concurrency", burst: account - totalReserved, rate: 0, fixed: true, unit: "invocations in flight", per: "account and region", key: accountRegion,
      error: lambdaThrottle("ConcurrentInvocationLimitExceeded", "Rate Exceeded."), source: totalReserved ? `${LAMBDA_QUOTAS}; ${LAMBDA_RESERVED}` : LAMBDA_QUOTAS,
      note: `${totalReserved ? `the account's ${account.toLocaleString("en")} less the ${totalReserved.toLocaleString("en")} reserved (reserved=); ` : ""}${CONCURRENCY_NOTE}`,
    },
    ...reservedLimits,
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
}

export interface AwsLimitsOptions {
  /** Multiplies every rate and bucket AWS publishes (0.1: ten times tighter); numbers given here (provisioned=, reserved=) are taken as they are. */
  scale?: number;
  /** S3 prefix depth that counts as partitioned (default 1). */
  depth?: number;
  /** DynamoDB: partitions per table that partition key values hash into (default DEFAULT_DYNAMODB_PARTITIONS). */
  partitions?: number;
  /** DynamoDB: each table's partition key attribute (keys=TABLE:ATTRIBUTE,…). */
  keys?: Record<string, string>;
  /** DynamoDB: provisioned tables' read and write capacity per second (provisioned=TABLE:RCU/WCU,…). */
  provisioned?: Record<string, { read: number; write: number }>;
  /** Lambda: functions' reserved concurrency (reserved=FUNCTION:N,…). */
  reserved?: Record<string, number>;
  /** DynamoDB: tables' local secondary indexes (lsi=TABLE:INDEX,…), which share their table's capacity; any other IndexName is a global one. */
  lsi?: Record<string, string[]>;
  /** DynamoDB: tables' global secondary indexes and their keys (gsi=TABLE:INDEX:PK[/SK][:KEYS_ONLY],…), charged for the writes to their table. */
  gsi?: Record<string, GlobalIndex[]>;
}

/** The options an aws-limits rule (and `sluice limits`) takes. */
export const AWS_LIMITS_OPTIONS = ["scale", "depth", "partitions", "keys", "provisioned", "reserved", "lsi", "gsi"] as const;
export const AWS_LIMITS_USAGE = "aws-limits [scale=FACTOR] [depth=N] [partitions=N] [keys=TABLE:ATTR,…] [provisioned=TABLE:RCU/WCU,…] [reserved=FUNCTION:N,…] [lsi=TABLE:INDEX,…] [gsi=TABLE:INDEX:PK[/SK][:KEYS_ONLY],…]";

/**
 * Reads an aws-limits rule's options (values as written; a repeated option's values joined by
 * commas). Throws an Error saying what is wrong and how to write it.
 */
export function parseAwsLimitsOptions(o: Record<string, string | undefined>): AwsLimitsOptions & { scale: number; depth: number } {
  const scale = o.scale === undefined ? 1 : Number(o.scale);
  if (!(scale > 0) || !Number.isFinite(scale)) throw new Error(`scale= expects a factor above 0 (0.1: ten times tighter than AWS), got ${JSON.stringify(o.scale)}`);
  const depth = o.depth === undefined ? 1 : Number(o.depth);
  if (!Number.isInteger(depth) || depth < 0) throw new Error(`depth= expects the S3 prefix depth, a whole number (default 1), got ${JSON.stringify(o.depth)}`);
  const out: AwsLimitsOptions & { scale: number; depth: number } = { scale, depth };
  if (o.partitions !== undefined) {
    const n = Number(o.partitions);
    if (!Number.isInteger(n) || n < 1) throw new Error(`partitions= expects a whole number of DynamoDB partitions per table, 1 or more (default ${DEFAULT_DYNAMODB_PARTITIONS}), got ${JSON.stringify(o.partitions)}`);
    out.partitions = n;
  }
  const pairs = (name: string, text: string, example: string): [string, string][] =>
    text.split(",").map((part) => {
      const at = part.lastIndexOf(":");
      if (at <= 0 || at === part.length - 1) throw new Error(`${name}= expects ${example}, got ${JSON.stringify(part)}`);
      return [part.slice(0, at), part.slice(at + 1)];
    });
  if (o.keys !== undefined) out.keys = Object.fromEntries(pairs("keys", o.keys, "TABLE:ATTRIBUTE[,TABLE:ATTRIBUTE…] (the table's partition key), e.g. keys=orders:customerId"));
  if (o.provisioned !== undefined) {
    out.provisioned = {};
    for (const [table, v] of pairs("provisioned", o.provisioned, "TABLE:RCU/WCU[,…] (the table's provisioned read and write capacity), e.g. provisioned=orders:100/50")) {
      const m = /^(\d+(?:\.\d+)?)\/(\d+(?:\.\d+)?)$/.exec(v);
      if (!m || !(Number(m[1]) > 0) || !(Number(m[2]) > 0)) throw new Error(`provisioned= expects TABLE:RCU/WCU with both above 0, e.g. provisioned=orders:100/50, got ${JSON.stringify(`${table}:${v}`)}`);
      out.provisioned[table] = { read: Number(m[1]), write: Number(m[2]) };
    }
  }
  if (o.lsi !== undefined) {
    out.lsi = {};
    for (const [table, index] of pairs("lsi", o.lsi, "TABLE:INDEX[,TABLE:INDEX…] (a table's local secondary index, which shares the table's capacity), e.g. lsi=orders:byDate")) (out.lsi[table] ??= []).push(index);
  }
  if (o.gsi !== undefined) {
    out.gsi = {};
    const example = "gsi= expects TABLE:INDEX:PARTITIONKEY[/SORTKEY][:KEYS_ONLY][,…] (a table's global secondary index, its key attributes, and KEYS_ONLY when it projects only its keys), e.g. gsi=orders:byCustomer:customerId/createdAt";
    for (const part of o.gsi.split(",")) {
      const [table, name, key, projection, ...rest] = part.split(":");
      const [partitionKey, sortKey, ...more] = (key ?? "").split("/");
      if (!table || !name || !partitionKey || sortKey === "" || more.length || rest.length || (projection !== undefined && projection !== "KEYS_ONLY" && projection !== "ALL")) throw new Error(`${example}, got ${JSON.stringify(part)}`);
      if (out.lsi?.[table]?.includes(name)) throw new Error(`${table}:${name} is given as both lsi= and gsi=: an index is local (it shares its table's capacity) or global (its own), name it once`);
      (out.gsi[table] ??= []).push({ name, partitionKey, sortKey: sortKey ?? null, projection: projection === "KEYS_ONLY" ? "KEYS_ONLY" : "ALL" });
    }
  }
  if (o.reserved !== undefined) {
    out.reserved = {};
    for (const [fn, v] of pairs("reserved", o.reserved, "FUNCTION:N[,FUNCTION:N…] (the function's reserved concurrency), e.g. reserved=resize:10")) {
      const n = Number(v);
      if (!Number.isInteger(n) || n < 0) throw new Error(`reserved= expects FUNCTION:N with N a whole number of concurrent executions, got ${JSON.stringify(`${fn}:${v}`)}`);
      out.reserved[fn] = n;
    }
    const total = Object.values(out.reserved).reduce((a, b) => a + b, 0);
    const account = Math.max(1, Math.round(LAMBDA_ACCOUNT_CONCURRENCY * scale));
    const keep = Math.max(1, Math.round(LAMBDA_MIN_UNRESERVED * scale));
    if (total > account - keep) {
      throw new Error(`reserved= reserves ${total} concurrent executions, but the account has ${account}${scale === 1 ? "" : ` (1,000 × scale=${scale})`} and AWS keeps ${keep} of them unreserved: reserve at most ${account - keep}, or raise scale=`);
    }
  }
  return out;
}

/** The DynamoDB and Lambda settings of aws-limits options, in words ("" when none), for rule explanations. */
export function explainAwsLimitsOptions(o: AwsLimitsOptions): string {
  const parts: string[] = [];
  parts.push(`DynamoDB partitions per table ${o.partitions ?? DEFAULT_DYNAMODB_PARTITIONS}`);
  if (o.keys) parts.push(`partition keys ${Object.entries(o.keys).map(([t, k]) => `${t}.${k}`).join(", ")}`);
  if (o.provisioned) parts.push(`provisioned ${Object.entries(o.provisioned).map(([t, p]) => `${t} ${p.read} RCU/${p.write} WCU`).join(", ")}`);
  if (o.lsi) parts.push(`local secondary indexes ${Object.entries(o.lsi).flatMap(([t, is]) => is.map((i) => `${t}.${i}`)).join(", ")}`);
  if (o.gsi) parts.push(`global secondary indexes ${Object.entries(o.gsi).flatMap(([t, is]) => is.map((i) => `${t}.${i.name} (${i.partitionKey}${i.sortKey ? `/${i.sortKey}` : ""}${i.projection === "KEYS_ONLY" ? ", keys only" : ""})`)).join(", ")}`);
  if (o.reserved) parts.push(`Lambda reserved concurrency ${Object.entries(o.reserved).map(([f, n]) => `${f} ${n}`).join(", ")}`);
  return parts.join("; ");
}

/** Every limit profile, in the order `sluice limits` prints them. */
export function awsLimits(opts: AwsLimitsOptions = {}): AwsLimit[] {
  return [...EC2, ...s3Limits(opts.depth ?? 1), ...dynamoLimits(opts), ...lambdaLimits(opts), ...KINESIS, ...SQS, ...STS, ...KMS];
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

/** A request `admit` refused: the first limit that refused it, and the parts (of every limit) whose buckets were empty. */
export interface AwsLimitRefused {
  limit: AwsLimit;
  parts: LimitPart[];
}

export function refusalOf(limit: AwsLimit, flow?: HTTPFlow, refusedParts?: LimitPart[]): AwsLimitRefusal {
  const info = flow ? limitInfoOf(flow) : null;
  const e = flow && info && limit.errorFor ? limit.errorFor(flow, info, refusedParts) : limit.error;
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
  /** The part of the request this entry charges, when its items go to several buckets. */
  part?: LimitPart;
}

/** A charge to settle when the answer comes: where it was taken and how much. */
interface Charged {
  limit: AwsLimit;
  key: string;
  rate: number;
  burst: number;
  charged: number;
  settle: Settle;
}

/** A concurrency slot a flow holds: in the shared state (fault rules), or in this limiter's own count (shaping's lines). */
interface Held {
  key: string;
  state: Pick<SharedState, "leaveSlot"> | null;
}

/**
 * Applies the limit profiles to requests, each bucket kept per the key AWS keeps it by, in a
 * SharedState (in-process, or shared by a fleet): the same rule in every process spends one budget.
 * Concurrency limits (Lambda) count requests in flight — in the shared state for `admit` (so a
 * fleet shares them), in this limiter for shaping's lines (`acquire`) — and `release(flow)` ends
 * one. Costs known only from the answer (DynamoDB reads) are settled with `settle(flow)`.
 */
export class AwsLimiter {
  private readonly limits: AwsLimit[];
  readonly scale: number;
  /** Shaping: in-flight requests per concurrency key in this process. */
  private readonly inFlight = new Map<string, number>();
  private readonly holding = new WeakMap<HTTPFlow, Held[]>();
  private heldInState = 0;
  /** Requests waiting for a concurrency slot (shaping), per key, first come first served. */
  private readonly waiting = new Map<string, (() => void)[]>();
  /** Admitted flows whose cost is settled by their answer. */
  private readonly unsettled = new WeakMap<HTTPFlow, Charged[]>();

  constructor(opts: AwsLimitsOptions = {}) {
    this.scale = opts.scale ?? 1;
    if (!(this.scale > 0)) throw new RangeError(`scale= must be above 0, got ${opts.scale}`);
    this.limits = awsLimits(opts);
  }

  /** The limits `flow` falls under, in profile order, with its keys and costs (empty for non-AWS traffic). */
  applicable(flow: HTTPFlow): ApplicableLimit[] {
    const info = limitInfoOf(flow);
    if (!info?.service || !info.operation) return [];
    const out: ApplicableLimit[] = [];
    for (let i = 0; i < this.limits.length; i++) {
      const limit = this.limits[i]!;
      if (limit.service !== info.service || !limit.matches(info.operation, flow, info)) continue;
      const scale = limit.fixed ? 1 : this.scale;
      // A concurrency limit is a whole number of slots (a reservation of 0 refuses every invocation, as AWS does).
      const burst = limit.kind === "concurrency" ? (limit.fixed ? limit.burst : Math.max(1, Math.round(limit.burst * scale))) : Math.max(1, limit.burst * scale);
      const parts = limit.parts?.(flow, info) ?? null;
      // A request (or part) costing more than the whole bucket could never pass: it costs the bucket.
      if (parts) for (const part of parts) out.push({ limit, key: `aws-limit/${i}/${part.key}`, rate: limit.rate * scale, burst, cost: Math.min(burst, part.cost), part });
      else out.push({ limit, key: `aws-limit/${i}/${limit.key(flow, info)}`, rate: limit.rate * scale, burst, cost: Math.min(burst, limit.cost ? limit.cost(flow, info) : 1) });
    }
    return out;
  }

  /**
   * Counts `flow` against every limit it falls under (taking from each bucket that can pay, a slot
   * of each concurrency limit) and returns the first limit that could not (with the parts whose
   * buckets were empty), or null when all admit it. `at` is in milliseconds. A flow admitted under
   * a concurrency limit holds its slot until `release(flow)`; one whose cost its answer tells is
   * charged the rest by `settle(flow)`. A refused request consumed no capacity: what it took from
   * the capacity buckets that could pay (DynamoDB's) goes back to them.
   */
  admit(flow: HTTPFlow, state: Pick<SharedState, "take" | "enterSlot" | "leaveSlot" | "charge">, at: number, ns = ""): MaybeAsync<AwsLimitRefused | null> {
    const applicable = this.applicable(flow);
    if (applicable.length === 0) return null;
    const refusedAt: boolean[] = [];
    const pending: Promise<void>[] = [];
    for (let slot = 0; slot < applicable.length; slot++) {
      const a = applicable[slot]!;
      if (a.limit.kind === "concurrency") {
        const key = ns + a.key;
        const entered = state.enterSlot(key, flow.id, a.burst);
        const note = (ok: boolean) => {
          refusedAt[slot] = !ok;
          if (ok) this.hold(flow, { key, state });
        };
        if (isPromise(entered)) pending.push(entered.then(note));
        else note(entered);
        continue;
      }
      const grant = state.take(ns + a.key, { rate: a.rate, burst: a.burst }, a.cost, at);
      if (isPromise(grant)) pending.push(grant.then((g) => void (refusedAt[slot] = !g.granted)));
      else refusedAt[slot] = !grant.granted;
    }
    const first = (): MaybeAsync<AwsLimitRefused | null> => {
      const refusedSlot = applicable.findIndex((_, i) => refusedAt[i]);
      if (refusedSlot < 0) {
        for (const a of applicable) this.charged(flow, a, ns);
        return null;
      }
      // A refused request is answered at once: it holds no slot, and its answer settles nothing.
      this.release(flow);
      const refused: AwsLimitRefused = { limit: applicable[refusedSlot]!.limit, parts: applicable.flatMap((a, i) => (refusedAt[i] && a.part ? [a.part] : [])) };
      const refunds: Promise<void>[] = [];
      applicable.forEach((a, i) => {
        if (refusedAt[i] || a.limit.kind === "concurrency" || !a.limit.settle) return;
        const done = state.charge(ns + a.key, { rate: a.rate, burst: a.burst }, -a.cost, at);
        if (isPromise(done)) refunds.push(done);
      });
      return refunds.length ? Promise.all(refunds).then(() => refused) : refused;
    };
    return pending.length ? Promise.all(pending).then(first) : first();
  }

  /**
   * Notes that `flow` was charged `a.cost` under `a` (at `ns`), to be settled by its answer.
   * Shaping calls it for the limits it waited for (`burst`: the bucket's shape as its queue uses it).
   */
  charged(flow: HTTPFlow, a: ApplicableLimit, ns = "", burst = a.burst): void {
    const settle = a.part ? a.part.settle : a.limit.settle;
    if (!settle) return;
    const list = this.unsettled.get(flow) ?? [];
    list.push({ limit: a.limit, key: ns + a.key, rate: a.rate, burst, charged: a.cost, settle });
    this.unsettled.set(flow, list);
  }

  /**
   * The answer to `flow` is in: charges what it really cost beyond what it was charged (a DynamoDB
   * read by the size of what it read), into debt if the bucket has not that much, so the requests
   * after it wait until it refills — as AWS does. When AWS reports (ConsumedCapacity) less than
   * was charged — a write charged by its item's size before the answer — the difference goes
   * back to the bucket (never above its size); a cost sluice computed itself gives nothing back.
   */
  settle(flow: HTTPFlow, state: Pick<SharedState, "charge">, at: number): MaybeAsync<void> {
    const list = this.unsettled.get(flow);
    if (!list) return;
    this.unsettled.delete(flow);
    const info = limitInfoOf(flow);
    if (!info) return;
    const charges: Promise<void>[] = [];
    for (const c of list) {
      const settled = c.settle(flow, info);
      if (settled === null) continue;
      // Unlike at admission, not capped at the bucket's size: an answer larger than the bucket
      // leaves it that much in debt, and the requests after it wait until it is paid.
      const extra = settled.cost - c.charged;
      if (extra === 0 || (extra < 0 && !settled.reported)) continue;
      const done = state.charge(c.key, { rate: c.rate, burst: c.burst }, extra, at);
      if (isPromise(done)) charges.push(done);
    }
    if (charges.length) return Promise.all(charges).then(() => {});
  }

  /** Ends `flow`'s hold on its concurrency slots (its answer is complete, or it failed). Idempotent. */
  release(flow: HTTPFlow): void {
    const held = this.holding.get(flow);
    if (!held) return;
    this.holding.delete(flow);
    for (const h of held) {
      if (h.state) {
        this.heldInState--;
        const left = h.state.leaveSlot(h.key, flow.id);
        // A leave the store never hears of ends with the slot's lease.
        if (isPromise(left)) left.catch(() => {});
        continue;
      }
      const n = (this.inFlight.get(h.key) ?? 1) - 1;
      if (n <= 0) this.inFlight.delete(h.key);
      else this.inFlight.set(h.key, n);
      // The slot goes to the longest waiter (shaping), which takes it at once.
      const line = this.waiting.get(h.key);
      const next = line?.shift();
      if (line && line.length === 0) this.waiting.delete(h.key);
      next?.();
    }
  }

  /**
   * Shaping: takes a slot of concurrency limit `a` for `flow` now (ready: null), or joins the line
   * for one (ready settles when it is `flow`'s, or after `cancel`, holding nothing). Counted in
   * this process, or — when `state` is shared by a fleet (it has `waitForSlot`) — in the fleet's
   * count, woken when any process frees a slot.
   */
  acquire(flow: HTTPFlow, a: ApplicableLimit, ns = "", state?: Pick<SharedState, "waitForSlot" | "leaveSlot">): { ready: Promise<void> | null; cancel: () => void } {
    const key = ns + a.key;
    if (state?.waitForSlot) {
      const wait = state.waitForSlot(key, flow.id, a.burst);
      const ready = wait.granted.then((held) => {
        if (held) this.hold(flow, { key, state });
      });
      return { ready, cancel: wait.cancel };
    }
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

  /** Requests in flight under concurrency limits right now, held through this limiter (tests check that none leak). */
  get inFlightCount(): number {
    let n = this.heldInState;
    for (const v of this.inFlight.values()) n += v;
    return n;
  }

  private hold(flow: HTTPFlow, h: Held): void {
    if (h.state) this.heldInState++;
    const held = this.holding.get(flow);
    if (held) held.push(h);
    else this.holding.set(flow, [h]);
  }

  private enter(flow: HTTPFlow, key: string, max: number): boolean {
    const n = this.inFlight.get(key) ?? 0;
    if (n >= max) return false;
    this.inFlight.set(key, n + 1);
    this.hold(flow, { key, state: null });
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
    const factor = l.fixed ? 1 : scale;
    const n = (x: number) => Math.round(x * factor * 100) / 100;
    const size = l.kind === "concurrency"
      ? `at most ${(l.fixed ? l.burst : Math.max(1, Math.round(l.burst * scale))).toLocaleString("en")} ${l.unit}`
      : `bucket ${n(l.burst).toLocaleString("en")} ${l.unit}, refill ${n(l.rate).toLocaleString("en")}/s`;
    lines.push(`  ${l.name}: ${size}, per ${l.per}; ${l.error.status} ${l.error.code}`);
    lines.push(`    applies to: ${l.appliesTo}`);
    if (l.note) lines.push(`    note: ${l.note}`);
    lines.push(`    source: ${l.source}`);
  }
  return lines.join("\n") + "\n";
}
