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
  error: AwsError;
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

const KINESIS: AwsLimit[] = [
  {
    service: "kinesis", name: "PutRecord records per shard", appliesTo: "PutRecord", matches: (o) => o === "PutRecord",
    burst: 1000, rate: 1000, unit: "records", per: "stream (one shard)", key: streamKey,
    error: { status: 400, code: "ProvisionedThroughputExceededException", message: "Rate exceeded for shard shardId-000000000000 in stream." },
    source: KINESIS_QUOTAS, note: "sluice cannot see how many shards a stream has: each stream counts as one shard. PutRecords is not emulated (AWS answers it per record)",
  },
  {
    service: "kinesis", name: "PutRecord bytes per shard", appliesTo: "PutRecord", matches: (o) => o === "PutRecord",
    burst: 1024 * 1024, rate: 1024 * 1024, unit: "bytes", per: "stream (one shard)", key: streamKey, cost: (f) => Math.max(1, f.request.contentLength),
    error: { status: 400, code: "ProvisionedThroughputExceededException", message: "Rate exceeded for shard shardId-000000000000 in stream." },
    source: KINESIS_QUOTAS, note: "counts the request's size, a little more than the record's data",
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

export interface AwsLimitsOptions {
  /** Multiplies every rate and bucket (0.1: ten times tighter). */
  scale?: number;
  /** S3 prefix depth that counts as partitioned (default 1). */
  depth?: number;
}

/** Every limit profile, in the order `sluice limits` prints them. */
export function awsLimits(opts: AwsLimitsOptions = {}): AwsLimit[] {
  return [...EC2, ...s3Limits(opts.depth ?? 1), ...KINESIS, ...SQS, ...STS, ...KMS];
}

/** Services with a limit profile. */
export const LIMITED_SERVICES: readonly string[] = ["ec2", "s3", "kinesis", "sqs", "sts", "kms"];

/** What `flow.metadata.aws_limit` records when a limit refused a request (kept in captures). */
export interface AwsLimitRefusal {
  service: string;
  limit: string;
  status: number;
  code: string;
  message: string;
  source: string;
}

export function refusalOf(limit: AwsLimit): AwsLimitRefusal {
  return { service: limit.service, limit: limit.name, status: limit.error.status, code: limit.error.code, message: limit.error.message, source: limit.source };
}

/**
 * Applies the limit profiles to requests, each bucket kept per the key AWS keeps it by, in a
 * SharedState (in-process, or shared by a fleet): the same rule in every process spends one budget.
 */
export class AwsLimiter {
  private readonly limits: AwsLimit[];
  private readonly scale: number;

  constructor(opts: AwsLimitsOptions = {}) {
    this.scale = opts.scale ?? 1;
    if (!(this.scale > 0)) throw new RangeError(`scale= must be above 0, got ${opts.scale}`);
    this.limits = awsLimits(opts);
  }

  /**
   * Counts `flow` against every limit it falls under (taking from each bucket that can pay) and
   * returns the first limit that could not, or null when all admit it. `at` is in milliseconds.
   */
  admit(flow: HTTPFlow, state: Pick<SharedState, "take">, at: number, ns = ""): MaybeAsync<AwsLimit | null> {
    const info = awsInfoOf(flow);
    if (!info?.service || !info.operation) return null;
    const operation = info.operation;
    const refusedAt: boolean[] = [];
    const pending: Promise<void>[] = [];
    const applicable: AwsLimit[] = [];
    for (let i = 0; i < this.limits.length; i++) {
      const limit = this.limits[i]!;
      if (limit.service !== info.service || !limit.matches(operation, flow, info)) continue;
      const slot = applicable.push(limit) - 1;
      const shape = { rate: limit.rate * this.scale, burst: Math.max(1, limit.burst * this.scale) };
      const grant = state.take(`${ns}aws-limit/${i}/${limit.key(flow, info)}`, shape, limit.cost ? limit.cost(flow, info) : 1, at);
      if (isPromise(grant)) pending.push(grant.then((g) => void (refusedAt[slot] = !g.granted)));
      else refusedAt[slot] = !grant.granted;
    }
    const first = () => applicable.find((_, i) => refusedAt[i]) ?? null;
    return pending.length ? Promise.all(pending).then(first) : first();
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
    lines.push(`  ${l.name}: bucket ${n(l.burst).toLocaleString("en")} ${l.unit}, refill ${n(l.rate).toLocaleString("en")}/s, per ${l.per}; ${l.error.status} ${l.error.code}`);
    lines.push(`    applies to: ${l.appliesTo}`);
    if (l.note) lines.push(`    note: ${l.note}`);
    lines.push(`    source: ${l.source}`);
  }
  return lines.join("\n") + "\n";
}
