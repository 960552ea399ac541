/**
 * Tells which AWS API call a request is: service, region, operation, S3 bucket and key, and the
 * SDK's invocation and attempt headers. Pure string work on the request; no sockets.
 */
import { Request, type HTTPFlow } from "../core/flow.js";
import type { Headers } from "../core/headers.js";
import type { AwsProtocol, AwsRequestInfo } from "./types.js";

/** eu-west-1, us-gov-west-1, cn-north-1, ap-southeast-2, us-isob-east-1 … */
const REGION_NAME = /^[a-z]{2}(?:-[a-z]+)+-\d{1,2}$/;

/** Global endpoints (iam.amazonaws.com, sts.amazonaws.com, s3.amazonaws.com) sign for these. */
const GLOBAL_REGION = "us-east-1";
const GLOBAL_REGION_CN = "cn-north-1";

/** Endpoint prefixes whose SigV4 signing name differs. */
const SIGNING_NAME_OF_ENDPOINT: Record<string, string> = {
  email: "ses",
  queue: "sqs",
  "bedrock-runtime": "bedrock",
  "bedrock-agent": "bedrock",
  "bedrock-agent-runtime": "bedrock",
};

/** Everything recognition needs from the headers, gathered in one pass. */
interface AwsHeaderSignals {
  authorization: string | undefined;
  target: string | undefined;
  invocationId: string | undefined;
  sdkRequest: string | undefined;
  userAgent: string | undefined;
  amzUserAgent: string | undefined;
  contentType: string | undefined;
  smithyProtocol: string | undefined;
  regionSet: string | undefined;
  copySource: string | undefined;
  /** Any `x-amz-*` (bar CloudFront's `x-amz-cf-*`, which any origin behind CloudFront gets) or `amz-sdk-*`. */
  hasAmzHeader: boolean;
}

function scanHeaders(headers: Headers): AwsHeaderSignals {
  const s: AwsHeaderSignals = {
    authorization: undefined,
    target: undefined,
    invocationId: undefined,
    sdkRequest: undefined,
    userAgent: undefined,
    amzUserAgent: undefined,
    contentType: undefined,
    smithyProtocol: undefined,
    regionSet: undefined,
    copySource: undefined,
    hasAmzHeader: false,
  };
  const raw = headers.raw;
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i]!;
    const first = name.charCodeAt(0) | 0x20;
    // Only names starting a, c, s, u or x can matter; skip the rest without lowercasing.
    if (first !== 0x61 && first !== 0x63 && first !== 0x73 && first !== 0x75 && first !== 0x78) continue;
    const lower = name.toLowerCase();
    const value = raw[i + 1]!;
    switch (lower) {
      case "authorization": s.authorization ??= value; continue;
      case "user-agent": s.userAgent ??= value; continue;
      case "content-type": s.contentType ??= value; continue;
      case "smithy-protocol": s.smithyProtocol ??= value; continue;
      case "x-amz-target": s.target ??= value; break;
      case "amz-sdk-invocation-id": s.invocationId ??= value; break;
      case "amz-sdk-request": s.sdkRequest ??= value; break;
      case "x-amz-user-agent": s.amzUserAgent ??= value; break;
      case "x-amz-region-set": s.regionSet ??= value; break;
      case "x-amz-copy-source": s.copySource ??= value; break;
    }
    if (lower.startsWith("amz-sdk-") || (lower.startsWith("x-amz-") && !lower.startsWith("x-amz-cf-"))) s.hasAmzHeader = true;
  }
  return s;
}

/** What an amazonaws.com host name says. */
interface AwsHost {
  service: string;
  region: string | null;
  /** Virtual-hosted S3 bucket (bucket.s3.eu-west-1.amazonaws.com). */
  bucket: string | null;
  /** S3 Control and similar: the path holds neither bucket nor key. */
  noBucketInPath: boolean;
}

const AWS_DOMAINS: [suffix: string, globalRegion: string][] = [
  [".amazonaws.com", GLOBAL_REGION],
  [".amazonaws.com.cn", GLOBAL_REGION_CN],
  [".api.aws", GLOBAL_REGION],
];

/** Parses s3.eu-west-1.amazonaws.com, bucket.s3.amazonaws.com, s3-eu-west-1…, dynamodb.us-east-1…, sts.amazonaws.com … */
export function awsHostOf(hostname: string): AwsHost | null {
  const host = hostname.toLowerCase();
  let rest: string | null = null;
  let globalRegion = GLOBAL_REGION;
  for (const [suffix, region] of AWS_DOMAINS) {
    if (host.endsWith(suffix) && host.length > suffix.length) {
      rest = host.slice(0, host.length - suffix.length);
      globalRegion = region;
      break;
    }
  }
  if (rest === null) return null;
  const labels = rest.split(".");
  // From the right: bucket names may themselves look like "s3-logs".
  for (let i = labels.length - 1; i >= 0; i--) {
    const label = labels[i]!;
    if (label === "s3" || label.startsWith("s3-")) return s3HostOf(labels, i, globalRegion);
  }
  let r = labels.length - 1;
  while (r >= 0 && !REGION_NAME.test(labels[r]!)) r--;
  if (r >= 1) {
    // Resource endpoints put the service after the region (domain.eu-west-1.es.amazonaws.com);
    // API endpoints before it (runtime.sagemaker.…, streams.dynamodb.…).
    const prefix = stripFips(r < labels.length - 1 ? labels[r + 1]! : labels[r - 1]!);
    return { service: SIGNING_NAME_OF_ENDPOINT[prefix] ?? prefix, region: labels[r]!, bucket: null, noBucketInPath: false };
  }
  // No region label: a global endpoint such as iam.amazonaws.com or sts.amazonaws.com.
  const prefix = stripFips(labels[labels.length - 1]!);
  return { service: SIGNING_NAME_OF_ENDPOINT[prefix] ?? prefix, region: globalRegion, bucket: null, noBucketInPath: false };
}

function stripFips(label: string): string {
  return label.endsWith("-fips") ? label.slice(0, -5) : label;
}

function s3HostOf(labels: string[], s3Index: number, globalRegion: string): AwsHost {
  const label = labels[s3Index]!;
  const before = s3Index > 0 ? labels.slice(0, s3Index).join(".") : null;
  if (label === "s3-control" || label === "s3-outposts") {
    return { service: "s3", region: regionAfter(labels, s3Index) ?? globalRegion, bucket: null, noBucketInPath: true };
  }
  let region: string | null;
  if (label === "s3" || label === "s3-fips") region = regionAfter(labels, s3Index) ?? globalRegion;
  else if (label === "s3-external-1") region = GLOBAL_REGION;
  else if (label === "s3-accelerate") region = null;
  else {
    // s3-eu-west-1, s3-website-us-east-1, s3-website.eu-west-1, s3-accesspoint.eu-west-1
    const dashed = label.slice(label.startsWith("s3-website-") ? 11 : 3);
    region = REGION_NAME.test(dashed) ? dashed : regionAfter(labels, s3Index);
  }
  return { service: "s3", region, bucket: before, noBucketInPath: false };
}

function regionAfter(labels: string[], index: number): string | null {
  for (let i = index + 1; i < labels.length; i++) if (REGION_NAME.test(labels[i]!)) return labels[i]!;
  return null;
}

/** Service and region from a SigV4 (or SigV4a) Authorization header's credential scope. */
export function credentialScopeOf(authorization: string, regionSet?: string): { service: string; region: string | null } | null {
  const at = authorization.indexOf("Credential=");
  if (at < 0) return null;
  const start = at + 11;
  let end = start;
  while (end < authorization.length) {
    const c = authorization.charCodeAt(end);
    if (c === 0x2c || c === 0x20) break; // ',' or ' '
    end++;
  }
  return scopeOf(authorization.slice(start, end), regionSet);
}

/** "AKID/20261124/eu-west-1/s3/aws4_request" (SigV4) or "AKID/20261124/s3/aws4_request" (SigV4a). */
function scopeOf(credential: string, regionSet?: string): { service: string; region: string | null } | null {
  const parts = credential.split("/");
  if (parts.length === 5) return { service: parts[3]!, region: parts[2]! };
  if (parts.length === 4) {
    const region = regionSet && regionSet !== "*" && !regionSet.includes(",") ? regionSet.trim() : null;
    return { service: parts[2]!, region };
  }
  return null;
}

/** Value of `name` in a form-encoded string ("Action=ListUsers&Version=…"), or null. */
function formValue(form: string, name: string): string | null {
  const needle = name + "=";
  let start: number;
  if (form.startsWith(needle)) start = needle.length;
  else {
    const at = form.indexOf("&" + needle);
    if (at < 0) return null;
    start = at + 1 + needle.length;
  }
  const end = form.indexOf("&", start);
  return safeDecode((end < 0 ? form.slice(start) : form.slice(start, end)).replaceAll("+", " "));
}

function safeDecode(s: string): string {
  if (!s.includes("%")) return s;
  try {
    return decodeURIComponent(s);
  } catch {
    return s;
  }
}

/** `amz-sdk-request: attempt=2; max=5` (also `ttl=…`, any order, any spacing). */
export function parseSdkRequestHeader(value: string): { attempt: number | null; maxAttempts: number | null } {
  let attempt: number | null = null;
  let maxAttempts: number | null = null;
  for (const part of value.split(";")) {
    const eq = part.indexOf("=");
    if (eq < 0) continue;
    const name = part.slice(0, eq).trim().toLowerCase();
    const n = Number.parseInt(part.slice(eq + 1).trim(), 10);
    if (!Number.isFinite(n)) continue;
    if (name === "attempt") attempt = n;
    else if (name === "max") maxAttempts = n;
  }
  return { attempt, maxAttempts };
}

/** The SDK token of a User-Agent: "Boto3/1.43.11", "aws-cli/2.9.19", "aws-sdk-js/3.1169.0", … */
export function sdkOf(userAgent: string): string | null {
  let botocore: string | null = null;
  let start = 0;
  while (start < userAgent.length) {
    let end = userAgent.indexOf(" ", start);
    if (end < 0) end = userAgent.length;
    const slash = userAgent.indexOf("/", start);
    if (slash > start && slash < end) {
      const product = userAgent.slice(start, slash).toLowerCase();
      if (product === "aws-cli" || product === "boto3" || product.startsWith("aws-sdk-")) return userAgent.slice(start, end);
      if (product === "botocore") botocore ??= userAgent.slice(start, end);
    }
    start = end + 1;
  }
  return botocore;
}

/** "legacy" | "standard" | "adaptive" from `cfg/retry-mode#…` (or Java's `cfg/retry-mode/…`). */
export function retryModeOf(userAgent: string): string | null {
  const at = userAgent.indexOf("cfg/retry-mode");
  if (at < 0) return null;
  const start = at + 15;
  let end = userAgent.indexOf(" ", start);
  if (end < 0) end = userAgent.length;
  return end > start ? userAgent.slice(start, end).toLowerCase() : null;
}

type SubresourceRule = [param: string, operation: string];

/** Bucket sub-resources with one operation per method, in the order S3 would match them. */
const BUCKET_GET: SubresourceRule[] = [
  ["location", "GetBucketLocation"], ["acl", "GetBucketAcl"], ["policy", "GetBucketPolicy"],
  ["policyStatus", "GetBucketPolicyStatus"], ["cors", "GetBucketCors"], ["lifecycle", "GetBucketLifecycleConfiguration"],
  ["versioning", "GetBucketVersioning"], ["tagging", "GetBucketTagging"], ["website", "GetBucketWebsite"],
  ["logging", "GetBucketLogging"], ["notification", "GetBucketNotificationConfiguration"], ["replication", "GetBucketReplication"],
  ["encryption", "GetBucketEncryption"], ["accelerate", "GetBucketAccelerateConfiguration"], ["requestPayment", "GetBucketRequestPayment"],
  ["object-lock", "GetObjectLockConfiguration"], ["ownershipControls", "GetBucketOwnershipControls"],
  ["publicAccessBlock", "GetPublicAccessBlock"], ["uploads", "ListMultipartUploads"], ["versions", "ListObjectVersions"],
  ["metadataTable", "GetBucketMetadataTableConfiguration"],
];
const BUCKET_PUT: SubresourceRule[] = [
  ["acl", "PutBucketAcl"], ["policy", "PutBucketPolicy"], ["cors", "PutBucketCors"], ["lifecycle", "PutBucketLifecycleConfiguration"],
  ["versioning", "PutBucketVersioning"], ["tagging", "PutBucketTagging"], ["website", "PutBucketWebsite"], ["logging", "PutBucketLogging"],
  ["notification", "PutBucketNotificationConfiguration"], ["replication", "PutBucketReplication"], ["encryption", "PutBucketEncryption"],
  ["accelerate", "PutBucketAccelerateConfiguration"], ["requestPayment", "PutBucketRequestPayment"], ["object-lock", "PutObjectLockConfiguration"],
  ["ownershipControls", "PutBucketOwnershipControls"], ["publicAccessBlock", "PutPublicAccessBlock"],
];
const BUCKET_DELETE: SubresourceRule[] = [
  ["policy", "DeleteBucketPolicy"], ["cors", "DeleteBucketCors"], ["lifecycle", "DeleteBucketLifecycle"], ["tagging", "DeleteBucketTagging"],
  ["website", "DeleteBucketWebsite"], ["replication", "DeleteBucketReplication"], ["encryption", "DeleteBucketEncryption"],
  ["ownershipControls", "DeleteBucketOwnershipControls"], ["publicAccessBlock", "DeletePublicAccessBlock"], ["metadataTable", "DeleteBucketMetadataTableConfiguration"],
];
/** Bucket configurations addressed by `?analytics&id=…`: Get/Put/Delete one, List without an id. */
const BUCKET_ID_CONFIGS: [param: string, name: string][] = [
  ["analytics", "Analytics"], ["metrics", "Metrics"], ["inventory", "Inventory"], ["intelligent-tiering", "IntelligentTiering"],
];
const OBJECT_GET: SubresourceRule[] = [
  ["uploadId", "ListParts"], ["acl", "GetObjectAcl"], ["tagging", "GetObjectTagging"], ["retention", "GetObjectRetention"],
  ["legal-hold", "GetObjectLegalHold"], ["attributes", "GetObjectAttributes"], ["torrent", "GetObjectTorrent"],
];
const OBJECT_PUT: SubresourceRule[] = [
  ["acl", "PutObjectAcl"], ["tagging", "PutObjectTagging"], ["retention", "PutObjectRetention"], ["legal-hold", "PutObjectLegalHold"],
];
const OBJECT_POST: SubresourceRule[] = [
  ["uploads", "CreateMultipartUpload"], ["uploadId", "CompleteMultipartUpload"], ["restore", "RestoreObject"], ["select", "SelectObjectContent"],
];
const OBJECT_DELETE: SubresourceRule[] = [["uploadId", "AbortMultipartUpload"], ["tagging", "DeleteObjectTagging"]];

function firstMatching(rules: SubresourceRule[], query: URLSearchParams): string | null {
  for (const [param, operation] of rules) if (query.has(param)) return operation;
  return null;
}

/** S3 REST operation from method, bucket, key and query markers. */
export function s3OperationOf(method: string, bucket: string | null, key: string | null, query: URLSearchParams, copySource?: string): string | null {
  // The JS SDK v3 names the operation itself: `?x-id=PutObject`.
  const named = query.get("x-id");
  if (named) return named;
  const m = method.toUpperCase();
  if (!bucket) return m === "GET" && !key ? "ListBuckets" : null;
  if (key) {
    switch (m) {
      case "GET": return firstMatching(OBJECT_GET, query) ?? "GetObject";
      case "HEAD": return "HeadObject";
      case "PUT":
        if (query.has("partNumber") && query.has("uploadId")) return copySource ? "UploadPartCopy" : "UploadPart";
        return firstMatching(OBJECT_PUT, query) ?? (copySource ? "CopyObject" : "PutObject");
      case "POST": return firstMatching(OBJECT_POST, query);
      case "DELETE": return firstMatching(OBJECT_DELETE, query) ?? "DeleteObject";
    }
    return null;
  }
  for (const [param, name] of BUCKET_ID_CONFIGS) {
    if (!query.has(param)) continue;
    const configuration = `Bucket${name}Configuration`;
    if (m === "GET") return query.has("id") ? `Get${configuration}` : `List${configuration}s`;
    if (m === "PUT") return `Put${configuration}`;
    if (m === "DELETE") return `Delete${configuration}`;
  }
  switch (m) {
    case "GET": return firstMatching(BUCKET_GET, query) ?? (query.get("list-type") === "2" ? "ListObjectsV2" : "ListObjects");
    case "HEAD": return "HeadBucket";
    case "PUT": return firstMatching(BUCKET_PUT, query) ?? "CreateBucket";
    case "DELETE": return firstMatching(BUCKET_DELETE, query) ?? "DeleteBucket";
    case "POST": return query.has("delete") ? "DeleteObjects" : "PostObject";
  }
  return null;
}

/** Lambda's REST paths: /2015-03-31/functions/NAME/invocations → Invoke, … */
export function lambdaOperationOf(method: string, pathname: string): string | null {
  const segments = pathname.split("/").filter((s) => s !== "");
  const [, collection, name, sub, subName] = segments;
  const m = method.toUpperCase();
  switch (collection) {
    case "functions":
      if (!name) return m === "GET" ? "ListFunctions" : m === "POST" ? "CreateFunction" : null;
      switch (sub) {
        case undefined: return m === "GET" ? "GetFunction" : m === "DELETE" ? "DeleteFunction" : null;
        case "invocations": return "Invoke";
        case "invoke-async": return "InvokeAsync";
        case "response-streaming-invocations": return "InvokeWithResponseStream";
        case "configuration": return m === "GET" ? "GetFunctionConfiguration" : m === "PUT" ? "UpdateFunctionConfiguration" : null;
        case "code": return m === "PUT" ? "UpdateFunctionCode" : null;
        case "versions": return m === "GET" ? "ListVersionsByFunction" : m === "POST" ? "PublishVersion" : null;
        case "aliases":
          if (!subName) return m === "GET" ? "ListAliases" : m === "POST" ? "CreateAlias" : null;
          return m === "GET" ? "GetAlias" : m === "PUT" ? "UpdateAlias" : m === "DELETE" ? "DeleteAlias" : null;
        case "policy":
          if (m === "DELETE") return "RemovePermission";
          return m === "GET" ? "GetPolicy" : m === "POST" ? "AddPermission" : null;
        case "concurrency":
          return m === "GET" ? "GetFunctionConcurrency" : m === "PUT" ? "PutFunctionConcurrency" : m === "DELETE" ? "DeleteFunctionConcurrency" : null;
        case "url":
          return m === "GET" ? "GetFunctionUrlConfig" : m === "POST" ? "CreateFunctionUrlConfig" : m === "PUT" ? "UpdateFunctionUrlConfig" : m === "DELETE" ? "DeleteFunctionUrlConfig" : null;
      }
      return null;
    case "event-source-mappings":
      if (!name) return m === "GET" ? "ListEventSourceMappings" : m === "POST" ? "CreateEventSourceMapping" : null;
      return m === "GET" ? "GetEventSourceMapping" : m === "PUT" ? "UpdateEventSourceMapping" : m === "DELETE" ? "DeleteEventSourceMapping" : null;
    case "layers":
      if (!name) return m === "GET" ? "ListLayers" : null;
      if (sub !== "versions") return null;
      if (!subName) return m === "GET" ? "ListLayerVersions" : m === "POST" ? "PublishLayerVersion" : null;
      return m === "GET" ? "GetLayerVersion" : m === "DELETE" ? "DeleteLayerVersion" : null;
    case "account-settings": return m === "GET" ? "GetAccountSettings" : null;
    case "tags": return m === "GET" ? "ListTags" : m === "POST" ? "TagResource" : m === "DELETE" ? "UntagResource" : null;
  }
  return null;
}

/** `X-Amz-Target: DynamoDB_20120810.PutItem` → "PutItem". */
function targetOperation(target: string): string {
  const dot = target.lastIndexOf(".");
  return dot < 0 ? target : target.slice(dot + 1);
}

/** "application/x-amz-json-1.0" → "1.0". */
function amzJsonVersionOf(contentType: string | undefined): string | null {
  if (!contentType) return null;
  const at = contentType.indexOf("x-amz-json-");
  return at < 0 ? null : contentType.slice(at + 11, at + 14);
}

function startsWithIgnoreCase(s: string, prefix: string): boolean {
  return s.length >= prefix.length && s.slice(0, prefix.length).toLowerCase() === prefix;
}

/**
 * What sluice can tell about an AWS API request, or null when it does not look like one:
 * no SigV4 Authorization, no `X-Amz-*`/`amz-sdk-*` header, no presigned query and no AWS host.
 */
export function recognizeAwsRequest(req: Request): AwsRequestInfo | null {
  const h = scanHeaders(req.headers);
  const path = req.path;
  const queryAt = path.indexOf("?");
  const presigned = queryAt >= 0 && (path.includes("X-Amz-Credential=", queryAt) || path.includes("AWSAccessKeyId=", queryAt));
  const signed = h.authorization !== undefined && (startsWithIgnoreCase(h.authorization, "aws4-") || startsWithIgnoreCase(h.authorization, "aws "));
  const host = awsHostOf(req.prettyHost);
  if (!signed && !presigned && !h.hasAmzHeader && !host) return null;

  const query = queryAt >= 0 ? new URLSearchParams(path.slice(queryAt + 1)) : null;
  let scope = signed ? credentialScopeOf(h.authorization!, h.regionSet) : null;
  if (!scope && query) {
    const credential = query.get("X-Amz-Credential");
    if (credential) scope = scopeOf(credential, query.get("X-Amz-Region-Set") ?? undefined);
  }
  const service = scope?.service ?? host?.service ?? null;
  const region = scope?.region ?? host?.region ?? null;

  let protocol: AwsProtocol | null = null;
  const jsonVersion = amzJsonVersionOf(h.contentType);
  let operation: string | null = null;
  let bucket: string | null = null;
  let key: string | null = null;
  if (h.target) {
    operation = targetOperation(h.target);
    protocol = "json";
  } else if (h.smithyProtocol === "rpc-v2-cbor") {
    protocol = "rpc-v2-cbor";
    const at = path.indexOf("/operation/");
    if (at >= 0) operation = path.slice(at + 11, queryAt >= 0 ? queryAt : path.length);
  } else {
    const action = actionOf(req, h.contentType, query);
    if (action) {
      operation = action;
      protocol = service === "ec2" ? "ec2" : "query";
    } else if (service === "s3" && !host?.noBucketInPath) {
      const pathname = req.pathname;
      if (host?.bucket) {
        bucket = host.bucket;
        key = pathname.length > 1 ? safeDecode(pathname.slice(1)) : null;
      } else {
        const slash = pathname.indexOf("/", 1);
        const first = slash < 0 ? pathname.slice(1) : pathname.slice(1, slash);
        bucket = first ? safeDecode(first) : null;
        key = slash >= 0 && slash + 1 < pathname.length ? safeDecode(pathname.slice(slash + 1)) : null;
      }
      operation = s3OperationOf(req.method, bucket, key, query ?? EMPTY_QUERY, h.copySource);
    } else if (service === "lambda") {
      operation = lambdaOperationOf(req.method, req.pathname);
    }
  }
  if (!protocol && jsonVersion) protocol = "json";

  const sdkRequest = h.sdkRequest ? parseSdkRequestHeader(h.sdkRequest) : null;
  return {
    service,
    region,
    operation,
    bucket,
    key,
    invocationId: h.invocationId ?? null,
    attempt: sdkRequest?.attempt ?? null,
    maxAttempts: sdkRequest?.maxAttempts ?? null,
    sdk: (h.userAgent ? sdkOf(h.userAgent) : null) ?? (h.amzUserAgent ? sdkOf(h.amzUserAgent) : null),
    retryMode: (h.userAgent ? retryModeOf(h.userAgent) : null) ?? (h.amzUserAgent ? retryModeOf(h.amzUserAgent) : null),
    protocol,
    jsonVersion,
  };
}

const EMPTY_QUERY = new URLSearchParams();

/** `Action=` from the query string or, for query-protocol POSTs, from the form body. */
function actionOf(req: Request, contentType: string | undefined, query: URLSearchParams | null): string | null {
  const fromQuery = query?.get("Action");
  if (fromQuery) return fromQuery;
  if (!contentType || !startsWithIgnoreCase(contentType, "application/x-www-form-urlencoded") || !req.content) return null;
  return formValue(req.text, "Action");
}

/**
 * A flow's recognition, kept on the flow itself under symbols (invisible to scripts, files and
 * copies): a WeakMap entry per flow cost a hash lookup and insert on every request, and an
 * ephemeron for the garbage collector to trace.
 */
const AWS_INFO = Symbol("sluice.awsInfo");
/** Set once awsInfoOf has looked in the body for an operation the headers did not name. */
const BODY_CONSULTED = Symbol("sluice.awsInfo.bodyConsulted");
type Recognized = HTTPFlow & { [AWS_INFO]?: AwsRequestInfo | null; [BODY_CONSULTED]?: boolean };

/**
 * `recognizeAwsRequest(flow.request)`, computed once per flow: filters and addons call this on
 * every flow. The first answer sticks (map-remote relies on that to keep the original host), so
 * call `forgetAwsInfo` after editing a request when you want it recognized afresh.
 */
export function awsInfoOf(flow: HTTPFlow): AwsRequestInfo | null {
  const kept = flow as Recognized;
  let info = kept[AWS_INFO];
  if (info === undefined) {
    info = recognizeAwsRequest(requestedOf(flow));
    kept[AWS_INFO] = info;
  } else if (info && info.operation === null && flow.request.content && !kept[BODY_CONSULTED]) {
    // Recognised from the headers alone (map-remote does that before the body arrives): a
    // query-protocol call names its operation in the form body, read it now (once: filters call
    // this for every flow they test).
    kept[BODY_CONSULTED] = true;
    const action = actionOf(flow.request, flow.request.headers.get("content-type") ?? undefined, null);
    if (action) {
      info = { ...info, operation: action, protocol: info.service === "ec2" ? "ec2" : "query" };
      kept[AWS_INFO] = info;
    }
  }
  return info;
}

/**
 * The request as the client asked for it. map-remote records the URL it rewrote in
 * `flow.metadata.map_remote.from`, which every capture format keeps: a flow read back from a file
 * is then recognised by where the client sent it (a virtual-hosted S3 bucket lives in the host
 * name the mapping replaced), exactly as it was live.
 */
export function requestedOf(flow: HTTPFlow): Request {
  const from = requestedUrlOf(flow);
  if (from === null) return flow.request;
  const r = flow.request;
  let original: Request;
  try {
    original = new Request({ method: r.method, scheme: r.scheme, host: r.host, port: r.port, path: r.path, httpVersion: r.httpVersion, headers: r.headers.clone(), content: r.content });
    original.url = from;
  } catch {
    return flow.request;
  }
  return original;
}

/** The URL map-remote rewrote for this flow (what the client asked for), or null when none was rewritten. */
export function requestedUrlOf(flow: HTTPFlow): string | null {
  const mapped = flow.metadata.map_remote as { from?: unknown; to?: unknown } | undefined;
  if (!mapped || typeof mapped.from !== "string" || mapped.from === flow.request.url) return null;
  return mapped.from;
}

export function forgetAwsInfo(flow: HTTPFlow): void {
  // Set rather than deleted: deleting a property sends the flow object to V8's slow dictionary mode.
  const kept = flow as Recognized;
  if (kept[AWS_INFO] !== undefined) kept[AWS_INFO] = undefined;
  if (kept[BODY_CONSULTED]) kept[BODY_CONSULTED] = false;
}

/**
 * The S3 key prefix that per-prefix rate budgets count against: "bucket/" plus the first `depth`
 * "/"-separated directories of the key ("logs/2026/x.gz" at depth 1 → "bucket/logs/").
 * Null when the request names no bucket.
 */
export function keyPrefixOf(info: AwsRequestInfo, depth = 1): string | null {
  if (!info.bucket) return null;
  let prefix = info.bucket + "/";
  const key = info.key;
  if (!key || depth <= 0) return prefix;
  let end = -1;
  for (let d = 0; d < depth; d++) {
    const next = key.indexOf("/", end + 1);
    if (next < 0) break;
    end = next;
  }
  if (end >= 0) prefix += key.slice(0, end + 1);
  return prefix;
}
