/**
 * AWS error responses shaped per protocol, close enough to the real ones that the SDKs parse and
 * classify them as they would AWS's own, and the classification of responses the way the SDKs
 * do it (is this throttling? which error code?).
 */
import { randomBytes, randomUUID } from "node:crypto";
import { crc32 } from "node:zlib";
import { Response, reasonPhrase } from "../core/flow.js";
import { Headers } from "../core/headers.js";
import type { AwsProtocol, AwsRequestInfo } from "./types.js";

const QUERY_SERVICES = [
  "autoscaling", "cloudformation", "cloudsearch", "elasticache", "elasticbeanstalk", "elasticloadbalancing", "iam", "importexport",
  "rds", "redshift", "sdb", "ses", "sns", "sts",
  // CloudWatch: query for older SDKs; newer ones send rpc-v2-cbor, which the request itself shows.
  "monitoring",
];
const JSON_1_0_SERVICES = [
  "dynamodb", "sqs", "states", "swf", "timestream", "cassandra", "cloudcontrolapi", "apprunner", "network-firewall", "aoss",
  "codestar-connections", "codeconnections", "verifiedpermissions", "proton",
];
const JSON_1_1_SERVICES = [
  "acm", "acm-pca", "application-autoscaling", "athena", "budgets", "ce", "cloudtrail", "codebuild", "codecommit", "codedeploy",
  "codepipeline", "cognito-identity", "cognito-idp", "comprehend", "config", "datasync", "dax", "directconnect", "dms", "ds",
  "ecr", "ecr-public", "ecs", "elasticmapreduce", "events", "firehose", "fsx", "glue", "health", "kinesis", "kinesisanalytics",
  "kms", "lightsail", "logs", "memorydb", "organizations", "pricing", "redshift-data", "rekognition", "route53domains",
  "route53resolver", "secretsmanager", "servicediscovery", "servicequotas", "shield", "ssm", "sso", "storagegateway", "support",
  "tagging", "textract", "transcribe", "transfer", "translate", "waf", "waf-regional", "wafv2", "workspaces",
];
const REST_JSON_SERVICES = [
  "lambda", "apigateway", "appsync", "backup", "batch", "bedrock", "eks", "elasticfilesystem", "es", "glacier", "guardduty",
  "iot", "iotdata", "kafka", "lakeformation", "mediaconvert", "mq", "polly", "ram", "rds-data", "resource-groups", "scheduler",
  "schemas", "securityhub", "pipes", "xray",
];

const PROTOCOL_OF_SERVICE = new Map<string, AwsProtocol>([
  ["s3", "rest-xml"], ["cloudfront", "rest-xml"], ["route53", "rest-xml"],
  ["ec2", "ec2"],
  ...QUERY_SERVICES.map((s) => [s, "query"] as const),
  ...JSON_1_0_SERVICES.map((s) => [s, "json"] as const),
  ...JSON_1_1_SERVICES.map((s) => [s, "json"] as const),
  ...REST_JSON_SERVICES.map((s) => [s, "rest-json"] as const),
]);
const JSON_1_0 = new Set(JSON_1_0_SERVICES);

/** XML namespaces of query-protocol error documents. */
const QUERY_NAMESPACE: Record<string, string> = {
  sts: "https://sts.amazonaws.com/doc/2011-06-15/",
  iam: "https://iam.amazonaws.com/doc/2010-05-08/",
  sns: "http://sns.amazonaws.com/doc/2010-03-31/",
  sqs: "http://queue.amazonaws.com/doc/2012-11-05/",
  cloudformation: "http://cloudformation.amazonaws.com/doc/2010-05-15/",
  elasticache: "http://elasticache.amazonaws.com/doc/2015-02-02/",
  rds: "http://rds.amazonaws.com/doc/2014-10-31/",
  autoscaling: "http://autoscaling.amazonaws.com/doc/2011-01-01/",
  elasticloadbalancing: "http://elasticloadbalancing.amazonaws.com/doc/2015-12-01/",
  monitoring: "http://monitoring.amazonaws.com/doc/2010-08-01/",
  ses: "http://ses.amazonaws.com/doc/2010-12-01/",
  redshift: "http://redshift.amazonaws.com/doc/2012-12-01/",
  route53: "https://route53.amazonaws.com/doc/2013-04-01/",
  cloudfront: "http://cloudfront.amazonaws.com/doc/2020-05-31/",
};

/** Services whose JSON/CBOR errors also carry the query-protocol code in `x-amzn-query-error`. */
const QUERY_COMPATIBLE = new Set(["sqs", "monitoring"]);

/**
 * The protocol an error response to this request must speak: what the request itself showed,
 * else what the service is known to use; null when neither tells.
 */
export function protocolOf(info: AwsRequestInfo | null): AwsProtocol | null {
  if (!info) return null;
  return info.protocol ?? (info.service ? PROTOCOL_OF_SERVICE.get(info.service) ?? null : null);
}

/** An AWS error: the HTTP status, the error code SDKs match on, and the human message. */
export interface AwsError {
  status: number;
  code: string;
  message: string;
  /** Query protocols say whose fault it was: "Sender" (4xx) or "Receiver" (5xx). */
  fault?: "Sender" | "Receiver";
  /** Extra JSON members before "message" (Lambda's "Reason" and "Type", DynamoDB's "ThrottlingReasons"). */
  fields?: Record<string, unknown>;
}

export interface ErrorResponseOptions {
  /** Adds `Retry-After: N`. */
  retryAfterSeconds?: number;
  /** Replaces the default message. */
  message?: string;
}

/** The error response `info.service` would send for `error`, in its protocol, with request-id headers. */
export function awsErrorResponse(info: AwsRequestInfo | null, error: AwsError, opts: ErrorResponseOptions = {}): Response {
  const protocol = protocolOf(info);
  const service = info?.service ?? "";
  const message = opts.message ?? error.message;
  const fault = error.fault ?? (error.status < 500 ? "Sender" : "Receiver");
  const headers = new Headers();
  let body: string | Buffer;
  switch (protocol) {
    case "rest-xml":
      if (service === "s3") {
        const requestId = s3RequestId();
        const hostId = s3HostId();
        headers.add("x-amz-request-id", requestId).add("x-amz-id-2", hostId).add("Content-Type", "application/xml");
        // S3 answers HEAD errors with headers only.
        body = info?.operation?.startsWith("Head")
          ? ""
          : `<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>${error.code}</Code><Message>${xmlEscape(message)}</Message><RequestId>${requestId}</RequestId><HostId>${hostId}</HostId></Error>`;
      } else {
        const requestId = randomUUID();
        headers.add("x-amzn-RequestId", requestId).add("Content-Type", "text/xml");
        body = queryErrorXml(service, fault, error.code, message, requestId);
      }
      break;
    case "ec2": {
      const requestId = randomUUID();
      headers.add("x-amzn-RequestId", requestId).add("Content-Type", "text/xml;charset=UTF-8");
      body = `<?xml version="1.0" encoding="UTF-8"?>\n<Response><Errors><Error><Code>${error.code}</Code><Message>${xmlEscape(message)}</Message></Error></Errors><RequestID>${requestId}</RequestID></Response>`;
      break;
    }
    case "query": {
      const requestId = randomUUID();
      headers.add("x-amzn-RequestId", requestId).add("Content-Type", "text/xml");
      body = queryErrorXml(service, fault, error.code, message, requestId);
      break;
    }
    case "json": {
      const version = info?.jsonVersion ?? (JSON_1_0.has(service) ? "1.0" : "1.1");
      const type = service === "dynamodb" ? `com.amazonaws.dynamodb.v20120810#${error.code}` : error.code;
      body = JSON.stringify({ __type: type, ...error.fields, message });
      headers.add("x-amzn-RequestId", service === "dynamodb" ? dynamoDbRequestId() : randomUUID());
      if (QUERY_COMPATIBLE.has(service)) headers.add("x-amzn-query-error", `${error.code};${fault}`);
      headers.add("Content-Type", `application/x-amz-json-${version}`);
      // DynamoDB checksums its bodies and boto3 verifies the checksum when it is there.
      if (service === "dynamodb") headers.add("x-amz-crc32", String(crc32(body)));
      break;
    }
    case "rest-json":
      headers.add("x-amzn-RequestId", randomUUID()).add("x-amzn-ErrorType", error.code).add("Content-Type", "application/json");
      body = JSON.stringify({ ...error.fields, message });
      break;
    case "rpc-v2-cbor":
      headers.add("x-amzn-RequestId", randomUUID()).add("smithy-protocol", "rpc-v2-cbor");
      if (QUERY_COMPATIBLE.has(service)) headers.add("x-amzn-query-error", `${error.code};${fault}`);
      headers.add("Content-Type", "application/cbor");
      body = cborTextMap({ __type: error.code, ...textFields(error.fields), message });
      break;
    default:
      headers.add("Content-Type", "text/plain; charset=utf-8");
      body = message;
  }
  headers.add("Date", new Date().toUTCString());
  if (service === "s3") headers.add("Server", "AmazonS3");
  else if (service === "ec2") headers.add("Server", "AmazonEC2");
  if (opts.retryAfterSeconds !== undefined) {
    // Retry-After holds whole seconds; the SDKs' x-amz-retry-after holds milliseconds, so a
    // sub-second value survives there.
    headers.add("Retry-After", String(Math.max(0, Math.ceil(opts.retryAfterSeconds))));
    headers.add("x-amz-retry-after", String(Math.max(0, Math.round(opts.retryAfterSeconds * 1000))));
  }
  return Response.make(error.status, body, headers);
}

/** The throttling error `info`'s service sends, e.g. S3 503 SlowDown, DynamoDB 400 ThrottlingException. */
export function throttlingErrorOf(info: AwsRequestInfo | null): AwsError {
  const service = info?.service ?? "";
  switch (protocolOf(info)) {
    case "rest-xml":
      return service === "s3"
        ? { status: 503, code: "SlowDown", message: "Please reduce your request rate." }
        : { status: 400, code: "Throttling", message: "Rate exceeded" };
    case "ec2": return { status: 503, code: "RequestLimitExceeded", message: "Request limit exceeded." };
    case "query": return { status: 400, code: "Throttling", message: "Rate exceeded" };
    case "json":
      return service === "dynamodb"
        ? { status: 400, code: "ThrottlingException", message: "Rate of requests exceeds the allowed throughput." }
        : { status: 400, code: "ThrottlingException", message: "Rate exceeded" };
    case "rest-json":
      return service === "lambda"
        ? { status: 429, code: "TooManyRequestsException", message: "Rate exceeded", fields: { Reason: "CallerRateLimitExceeded", Type: "User" } }
        : { status: 429, code: "TooManyRequestsException", message: "Rate exceeded" };
    case "rpc-v2-cbor": return { status: 400, code: "ThrottlingException", message: "Rate exceeded" };
    case null: return { status: 429, code: "429", message: "Too Many Requests" };
  }
}

/** A throttling answer as `info`'s service would give it; a plain 429 when the service is unknown. */
export function throttleResponse(info: AwsRequestInfo | null, opts: ErrorResponseOptions = {}): Response {
  return awsErrorResponse(info, throttlingErrorOf(info), opts);
}

/** The internal-error (500) or unavailable (503) error `info`'s service sends. */
export function serviceErrorOf(status: 500 | 503, info: AwsRequestInfo | null): AwsError {
  const service = info?.service ?? "";
  const internal = status === 500;
  switch (protocolOf(info)) {
    case "rest-xml":
      if (service === "s3") {
        return internal
          ? { status, code: "InternalError", message: "We encountered an internal error. Please try again." }
          : { status, code: "ServiceUnavailable", message: "Service is unable to handle request." };
      }
      return internal
        ? { status, code: "InternalFailure", message: "The request processing has failed because of an unknown error, exception or failure." }
        : { status, code: "ServiceUnavailable", message: "Service is unable to handle request." };
    case "ec2":
      return internal
        ? { status, code: "InternalError", message: "An internal error has occurred" }
        : { status, code: "Unavailable", message: "The server is overloaded or there is an issue with a service, and the request can't be satisfied." };
    case "query":
      return internal
        ? { status, code: "InternalFailure", message: "The request processing has failed because of an unknown error, exception or failure." }
        : { status, code: "ServiceUnavailable", message: "Service is unable to handle request." };
    case "rest-json":
      if (service === "lambda" && internal) return { status, code: "ServiceException", message: "An internal error occurred.", fields: { Type: "Service" } };
      return internal
        ? { status, code: "InternalServerError", message: "Internal server error" }
        : { status, code: "ServiceUnavailableException", message: "Service unavailable" };
    case "json":
    case "rpc-v2-cbor":
      return internal
        ? { status, code: "InternalServerError", message: "Internal server error" }
        : { status, code: "ServiceUnavailableException", message: "Service unavailable" };
    case null: return { status, code: String(status), message: reasonPhrase(status) };
  }
}

/** InternalError / ServiceUnavailable shaped for `info`'s protocol; plain text when unknown. */
export function serviceErrorResponse(status: 500 | 503, info: AwsRequestInfo | null, opts: ErrorResponseOptions = {}): Response {
  return awsErrorResponse(info, serviceErrorOf(status, info), opts);
}

/** The error codes botocore and the JS SDK retry as throttling (botocore's legacy and standard lists agree). */
export const THROTTLING_ERROR_CODES: ReadonlySet<string> = new Set([
  "Throttling", "ThrottlingException", "ThrottledException", "RequestThrottledException", "TooManyRequestsException",
  "ProvisionedThroughputExceededException", "TransactionInProgressException", "RequestLimitExceeded", "BandwidthLimitExceeded",
  "LimitExceededException", "RequestThrottled", "SlowDown", "PriorRequestNotComplete", "EC2ThrottledException",
]);

/** S3 operations that can fail with a 200 whose body is an <Error> (the SDKs check for it). */
const S3_OK_WITH_ERROR_BODY = new Set(["CompleteMultipartUpload", "CopyObject", "UploadPartCopy"]);

/**
 * The throttling error code of `response` ("SlowDown", "ThrottlingException", …, or "429" for a
 * bare 429), or null when the SDKs would not treat it as throttling.
 */
export function throttlingCodeOf(response: Response, info: AwsRequestInfo | null): string | null {
  const status = response.statusCode;
  if (status < 400) {
    if (status !== 200 || info?.service !== "s3" || !info.operation || !S3_OK_WITH_ERROR_BODY.has(info.operation)) return null;
    const code = xmlErrorCodeOf(response);
    return code !== null && THROTTLING_ERROR_CODES.has(code) ? code : null;
  }
  const code = errorCodeOf(response);
  if (code !== null && THROTTLING_ERROR_CODES.has(code)) return code;
  if (status === 429) return code ?? "429";
  // S3 throttles HEAD requests with a bodiless 503, but no SDK can tell that from a server error:
  // they retry it as a transient 5xx (see isBareS3Head503), so neither does sluice.
  return null;
}

/**
 * A bodiless 503 to an S3 HEAD: how S3 throttles HEAD requests (a HEAD response carries no body,
 * so no SlowDown code). SDKs see only the status and treat it as a transient server error, not as
 * throttling (no adaptive slow-down, the non-throttle retry cost); sluice counts it as they do and
 * reports these separately.
 */
export function isBareS3Head503(response: Response, info: AwsRequestInfo | null): boolean {
  return response.statusCode === 503 && info?.service === "s3" && (info.operation?.startsWith("Head") ?? false) && !response.content?.length && errorCodeOf(response) === null;
}

/** Bodies larger than this are not error documents worth parsing. */
const MAX_ERROR_BODY = 256 * 1024;

/**
 * The AWS error code of an error response, the way the SDKs find it: `x-amzn-ErrorType`, then
 * `x-amzn-query-error`, then the body (XML `<Code>`, JSON `__type`/`code`, CBOR `__type`).
 */
export function errorCodeOf(response: Response): string | null {
  if (response.statusCode < 300) return null;
  const errorType = response.headers.get("x-amzn-ErrorType");
  if (errorType) return cleanCode(errorType);
  const queryError = response.headers.get("x-amzn-query-error");
  if (queryError) {
    const semi = queryError.indexOf(";");
    return semi < 0 ? queryError : queryError.slice(0, semi);
  }
  const body = response.decodedContent;
  if (!body || body.length === 0 || body.length > MAX_ERROR_BODY) return null;
  let i = 0;
  while (i < body.length && (body[i] === 0x20 || body[i] === 0x0a || body[i] === 0x0d || body[i] === 0x09)) i++;
  if (body[i] === 0x7b) return jsonErrorCodeOf(body.toString("utf8"));
  if (body[i] === 0x3c) return xmlCodeOf(body.toString("utf8"));
  if (response.headers.get("content-type")?.startsWith("application/cbor")) return cborErrorCodeOf(body);
  return null;
}

function xmlErrorCodeOf(response: Response): string | null {
  const body = response.decodedContent;
  if (!body || body.length > MAX_ERROR_BODY) return null;
  const text = body.toString("utf8");
  return text.includes("<Error>") ? xmlCodeOf(text) : null;
}

/** `<Code>…</Code>` of S3, EC2 and query error documents alike. */
function xmlCodeOf(text: string): string | null {
  const start = text.indexOf("<Code>");
  if (start < 0) return null;
  const end = text.indexOf("</Code>", start + 6);
  return end < 0 ? null : xmlUnescape(text.slice(start + 6, end).trim());
}

function jsonErrorCodeOf(text: string): string | null {
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    return null;
  }
  if (typeof parsed !== "object" || parsed === null) return null;
  const doc = parsed as Record<string, unknown>;
  const code = doc.__type ?? doc.code ?? doc.Code;
  return typeof code === "string" && code ? cleanCode(code) : null;
}

/** "com.amazonaws.dynamodb.v20120810#ThrottlingException" or "TooManyRequestsException:http://…" → the bare code. */
function cleanCode(code: string): string {
  const hash = code.lastIndexOf("#");
  let bare = hash < 0 ? code : code.slice(hash + 1);
  const colon = bare.indexOf(":");
  if (colon >= 0) bare = bare.slice(0, colon);
  return bare.trim();
}

/** The string members of `fields`: all an RPC v2 CBOR error body carries here. */
function textFields(fields: Record<string, unknown> | undefined): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(fields ?? {})) if (typeof v === "string") out[k] = v;
  return out;
}

function queryErrorXml(service: string, fault: string, code: string, message: string, requestId: string): string {
  const namespace = QUERY_NAMESPACE[service] ?? `https://${service || "aws"}.amazonaws.com/doc/`;
  return `<ErrorResponse xmlns="${namespace}">\n  <Error>\n    <Type>${fault}</Type>\n    <Code>${code}</Code>\n    <Message>${xmlEscape(message)}</Message>\n  </Error>\n  <RequestId>${requestId}</RequestId>\n</ErrorResponse>\n`;
}

const XML_ESCAPES: Record<string, string> = { "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&apos;" };
const XML_SPECIAL = /[&<>"']/g;
const XML_ENTITY = /&(amp|lt|gt|quot|apos);/g;
const XML_ENTITY_VALUES: Record<string, string> = { amp: "&", lt: "<", gt: ">", quot: '"', apos: "'" };

function xmlEscape(s: string): string {
  return s.replace(XML_SPECIAL, (c) => XML_ESCAPES[c]!);
}

function xmlUnescape(s: string): string {
  return s.includes("&") ? s.replace(XML_ENTITY, (_, name: string) => XML_ENTITY_VALUES[name]!) : s;
}

/** S3's x-amz-request-id: 16 upper-case hex digits. */
function s3RequestId(): string {
  return randomBytes(8).toString("hex").toUpperCase();
}

/** S3's x-amz-id-2: 76 base64 characters. */
function s3HostId(): string {
  return randomBytes(56).toString("base64");
}

const DYNAMODB_ID_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";

/** DynamoDB's x-amzn-RequestId: 52 upper-case letters and digits. */
function dynamoDbRequestId(): string {
  const bytes = randomBytes(52);
  let id = "";
  for (const b of bytes) id += DYNAMODB_ID_ALPHABET[b % 36];
  return id;
}

/** A CBOR map of text keys to text values: all an RPC v2 CBOR error body needs. */
function cborTextMap(entries: Record<string, string>): Buffer {
  const keys = Object.keys(entries);
  const parts: Buffer[] = [cborHead(5, keys.length)];
  for (const k of keys) parts.push(cborText(k), cborText(entries[k]!));
  return Buffer.concat(parts);
}

function cborText(s: string): Buffer {
  const bytes = Buffer.from(s, "utf8");
  return Buffer.concat([cborHead(3, bytes.length), bytes]);
}

function cborHead(major: number, length: number): Buffer {
  if (length < 24) return Buffer.from([(major << 5) | length]);
  if (length < 0x100) return Buffer.from([(major << 5) | 24, length]);
  if (length < 0x10000) return Buffer.from([(major << 5) | 25, length >> 8, length & 0xff]);
  const b = Buffer.alloc(5);
  b[0] = (major << 5) | 26;
  b.writeUInt32BE(length, 1);
  return b;
}

const CBOR_TYPE_KEY = cborText("__type");

/** `__type` of a CBOR error body, found by its key rather than by decoding the whole map. */
function cborErrorCodeOf(body: Buffer): string | null {
  const at = body.indexOf(CBOR_TYPE_KEY);
  if (at < 0) return null;
  let i = at + CBOR_TYPE_KEY.length;
  const head = body[i];
  if (head === undefined || head >> 5 !== 3) return null;
  let length = head & 0x1f;
  i++;
  if (length === 24) length = body[i++] ?? 0;
  else if (length === 25) {
    length = body.readUInt16BE(i);
    i += 2;
  } else if (length > 25) return null;
  if (i + length > body.length) return null;
  return cleanCode(body.toString("utf8", i, i + length));
}
