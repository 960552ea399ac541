/**
 * aws/ error responses: real boto3 and the AWS SDK for JavaScript, pointed at a local origin that
 * answers with `throttleResponse` / `serviceErrorResponse`, must parse them and treat them the way
 * they treat AWS's own (retry throttling, report the right code); and `throttlingCodeOf` must
 * classify every shape as the SDKs do.
 */
import { test, describe, before, after } from "node:test";
import assert from "node:assert/strict";
import { gzipSync, crc32 } from "node:zlib";
import { S3Client, ListBucketsCommand } from "@aws-sdk/client-s3";
import { cbor } from "@smithy/core/cbor";
import { Response } from "../src/core/flow.js";
import { recognizeAwsRequest, throttleResponse, serviceErrorResponse, throttlingCodeOf, isBareS3Head503, errorCodeOf, protocolOf, type AwsRequestInfo } from "../src/aws/index.js";
import { startScriptedOrigin, sluiceRequestOf, type FakeAwsOrigin, type FakeAwsRequest } from "./support/fake-aws.js";
import { run, awsEnv, pythonWithBoto3 } from "./support/run.js";
import { needsPython } from "./support/needs.js";

interface BotoOutcome {
  code?: string;
  message?: string;
  text?: string;
  status?: number;
  retryAttempts?: number;
  headers?: Record<string, string>;
  ok?: boolean;
}

/** Calls `service.call(**args)` with boto3 against `endpoint` and reports the ClientError it raised. */
async function botoCall(endpoint: string, service: string, call: string, args: object, retries: object): Promise<BotoOutcome> {
  const script = `
import boto3, botocore.config, botocore.exceptions, json, sys
endpoint, service, call, args, retries = sys.argv[1], sys.argv[2], sys.argv[3], json.loads(sys.argv[4]), json.loads(sys.argv[5])
client = boto3.client(service, endpoint_url=endpoint, region_name="eu-west-1", config=botocore.config.Config(retries=retries))
try:
    getattr(client, call)(**args)
    print(json.dumps({"ok": True}))
except botocore.exceptions.ClientError as e:
    r = e.response
    print(json.dumps({"code": r["Error"].get("Code"), "message": r["Error"].get("Message"), "text": str(e),
                      "status": r["ResponseMetadata"]["HTTPStatusCode"], "retryAttempts": r["ResponseMetadata"].get("RetryAttempts"),
                      "headers": r["ResponseMetadata"].get("HTTPHeaders")}))
`;
  const r = await run(await pythonWithBoto3(), ["-c", script, endpoint, service, call, JSON.stringify(args), JSON.stringify(retries)], { env: awsEnv(), timeoutMs: 60_000 });
  assert.equal(r.code, 0, r.stderr);
  return JSON.parse(r.stdout) as BotoOutcome;
}

/** An origin that recognizes each request and answers with `respond(info)`. */
function startAnswering(respond: (info: AwsRequestInfo | null) => Response): Promise<FakeAwsOrigin> {
  return startScriptedOrigin((request) => respond(recognizeAwsRequest(request)));
}

const TWO_LEGACY_ATTEMPTS = { mode: "legacy", total_max_attempts: 2 };

describe("real boto3 classifies throttleResponse as throttling", { skip: needsPython("boto3", "python3-boto3"), concurrency: true }, () => {
  let throttling: FakeAwsOrigin;
  before(async () => {
    throttling = await startAnswering((info) => throttleResponse(info));
  });
  after(async () => {
    await throttling?.close();
  });

  const infoOf = (seen: FakeAwsRequest) => recognizeAwsRequest(sluiceRequestOf(seen, throttling));
  const seenBy = (invocationId: string) => throttling.requests.filter((r) => r.headers["amz-sdk-invocation-id"] === invocationId);
  /** The invocation id of the (one) SDK call made for `operation`. */
  const invocationOf = (operation: string) => {
    const first = throttling.requests.find((r) => infoOf(r)?.operation === operation);
    assert.ok(first, `no ${operation} request seen`);
    return String(first.headers["amz-sdk-invocation-id"]);
  };

  test("S3 ListBuckets: SlowDown, 5 legacy attempts of one invocation, '(reached max retries: 4)'", async () => {
    const outcome = await botoCall(throttling.url, "s3", "list_buckets", {}, { mode: "legacy" });
    assert.equal(outcome.code, "SlowDown");
    assert.equal(outcome.status, 503);
    assert.match(outcome.text!, /An error occurred \(SlowDown\) when calling the ListBuckets operation \(reached max retries: 4\): Please reduce your request rate\./);
    assert.match(outcome.headers!["x-amz-request-id"]!, /^[0-9A-F]{16}$/);
    const attempts = seenBy(invocationOf("ListBuckets")).map((r) => infoOf(r)!);
    assert.deepEqual(attempts.map((a) => a.attempt), [1, 2, 3, 4, 5]);
    assert.deepEqual(attempts.map((a) => a.maxAttempts), [null, 5, 5, 5, 5]);
    assert.ok(attempts.every((a) => a.service === "s3" && a.operation === "ListBuckets" && a.retryMode === "legacy"));
  });

  test("DynamoDB ListTables: ThrottlingException, retried although it is a 400", async () => {
    const outcome = await botoCall(throttling.url, "dynamodb", "list_tables", {}, TWO_LEGACY_ATTEMPTS);
    assert.equal(outcome.code, "ThrottlingException");
    assert.equal(outcome.status, 400);
    assert.equal(outcome.message, "Rate of requests exceeds the allowed throughput.");
    assert.match(outcome.text!, /\(reached max retries: 1\)/);
    assert.equal(seenBy(invocationOf("ListTables")).length, 2);
  });

  test("DynamoDB PutItem in standard mode: ThrottlingException, retried", async () => {
    const outcome = await botoCall(throttling.url, "dynamodb", "put_item", { TableName: "t", Item: { id: { S: "1" } } }, { mode: "standard", total_max_attempts: 2 });
    assert.equal(outcome.code, "ThrottlingException");
    assert.equal(seenBy(invocationOf("PutItem")).length, 2);
  });

  test("EC2 DescribeInstances: RequestLimitExceeded", async () => {
    const outcome = await botoCall(throttling.url, "ec2", "describe_instances", {}, TWO_LEGACY_ATTEMPTS);
    assert.equal(outcome.code, "RequestLimitExceeded");
    assert.equal(outcome.status, 503);
    assert.equal(outcome.message, "Request limit exceeded.");
    assert.equal(seenBy(invocationOf("DescribeInstances")).length, 2);
  });

  test("Lambda Invoke: TooManyRequestsException", async () => {
    const outcome = await botoCall(throttling.url, "lambda", "invoke", { FunctionName: "my-fn", Payload: "{}" }, TWO_LEGACY_ATTEMPTS);
    assert.equal(outcome.code, "TooManyRequestsException");
    assert.equal(outcome.status, 429);
    assert.equal(outcome.headers!["x-amzn-errortype"], "TooManyRequestsException");
    assert.equal(seenBy(invocationOf("Invoke")).length, 2);
  });

  test("STS GetCallerIdentity: Throttling, retried although it is a 400", async () => {
    const outcome = await botoCall(throttling.url, "sts", "get_caller_identity", {}, TWO_LEGACY_ATTEMPTS);
    assert.equal(outcome.code, "Throttling");
    assert.equal(outcome.status, 400);
    assert.equal(outcome.message, "Rate exceeded");
    assert.equal(seenBy(invocationOf("GetCallerIdentity")).length, 2);
  });

  test("SQS ListQueues (JSON): ThrottlingException with the query-compatible code header", async () => {
    const outcome = await botoCall(throttling.url, "sqs", "list_queues", {}, TWO_LEGACY_ATTEMPTS);
    assert.equal(outcome.code, "ThrottlingException");
    assert.equal(seenBy(invocationOf("ListQueues")).length, 2);
  });
});

describe("real boto3 parses serviceErrorResponse", { skip: needsPython("boto3", "python3-boto3"), concurrency: true }, () => {
  const cases: [status: 500 | 503, service: string, call: string, args: object, code: string][] = [
    [500, "s3", "list_buckets", {}, "InternalError"],
    [503, "s3", "list_buckets", {}, "ServiceUnavailable"],
    [500, "dynamodb", "list_tables", {}, "InternalServerError"],
    [503, "dynamodb", "list_tables", {}, "ServiceUnavailableException"],
    [503, "ec2", "describe_instances", {}, "Unavailable"],
    [500, "sts", "get_caller_identity", {}, "InternalFailure"],
    [500, "lambda", "list_functions", {}, "ServiceException"],
  ];
  for (const [status, service, call, args, code] of cases) {
    test(`${service} ${call} → ${status} ${code}, retried`, async () => {
      const origin = await startAnswering((info) => serviceErrorResponse(status, info, { retryAfterSeconds: 1 }));
      try {
        const outcome = await botoCall(origin.url, service, call, args, TWO_LEGACY_ATTEMPTS);
        assert.equal(outcome.code, code);
        assert.equal(outcome.status, status);
        assert.equal(outcome.headers!["retry-after"], "1");
        assert.equal(origin.requests.length, 2);
      } finally {
        await origin.close();
      }
    });
  }
});

describe("the AWS SDK for JavaScript classifies throttleResponse as throttling", () => {
  test("S3 ListBuckets: SlowDown after maxAttempts", async () => {
    const origin = await startAnswering((info) => throttleResponse(info));
    const client = new S3Client({ region: "eu-west-1", endpoint: origin.url, forcePathStyle: true, maxAttempts: 2, credentials: { accessKeyId: "AKIDEXAMPLE", secretAccessKey: "x" } });
    try {
      const error = await client.send(new ListBucketsCommand({})).then(
        () => assert.fail("ListBuckets should have failed"),
        (e: Error & { $metadata?: { attempts?: number; httpStatusCode?: number }; $retryable?: { throttling?: boolean } }) => e,
      );
      assert.equal(error.name, "SlowDown");
      assert.equal(error.message, "Please reduce your request rate.");
      assert.equal(error.$metadata?.httpStatusCode, 503);
      assert.equal(error.$metadata?.attempts, 2);
      const attempts = origin.requests.map((r) => r.headers["amz-sdk-request"]);
      assert.deepEqual(attempts, ["attempt=1; max=2", "attempt=2; max=2"]);
    } finally {
      client.destroy();
      await origin.close();
    }
  });
});

/** A minimal AwsRequestInfo for unit tests. */
function info(service: string | null, operation: string | null = null, extra: Partial<AwsRequestInfo> = {}): AwsRequestInfo {
  return { service, region: "eu-west-1", operation, bucket: null, key: null, invocationId: null, attempt: null, maxAttempts: null, sdk: null, retryMode: null, ...extra };
}

describe("throttleResponse and serviceErrorResponse shapes", () => {
  test("protocolOf: per service, and what the request itself showed wins", () => {
    assert.equal(protocolOf(info("s3")), "rest-xml");
    assert.equal(protocolOf(info("dynamodb")), "json");
    assert.equal(protocolOf(info("kinesis")), "json");
    assert.equal(protocolOf(info("logs")), "json");
    assert.equal(protocolOf(info("lambda")), "rest-json");
    assert.equal(protocolOf(info("ec2")), "ec2");
    for (const s of ["sts", "iam", "sns", "cloudformation", "elasticache", "rds"]) assert.equal(protocolOf(info(s)), "query", s);
    assert.equal(protocolOf(info("sqs")), "json");
    assert.equal(protocolOf(info("sqs", "ListQueues", { protocol: "query" })), "query", "old SDKs speak query to SQS");
    assert.equal(protocolOf(info("no-such-service")), null);
    assert.equal(protocolOf(info(null)), null);
    assert.equal(protocolOf(null), null);
  });

  test("S3: 503 SlowDown XML with x-amz-request-id, x-amz-id-2, Date and Server", () => {
    const r = throttleResponse(info("s3", "GetObject"));
    assert.equal(r.statusCode, 503);
    assert.equal(r.reason, "Service Unavailable");
    assert.equal(r.headers.get("content-type"), "application/xml");
    assert.match(r.headers.get("x-amz-request-id")!, /^[0-9A-F]{16}$/);
    assert.match(r.headers.get("x-amz-id-2")!, /^[A-Za-z0-9+/]{74}==$|^[A-Za-z0-9+/]{75}=$|^[A-Za-z0-9+/]{76}$/);
    assert.ok(!Number.isNaN(Date.parse(r.headers.get("date")!)));
    assert.equal(r.headers.get("server"), "AmazonS3");
    assert.equal(r.headers.get("content-length"), String(r.content!.length));
    assert.equal(
      r.text,
      `<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>SlowDown</Code><Message>Please reduce your request rate.</Message><RequestId>${r.headers.get("x-amz-request-id")}</RequestId><HostId>${r.headers.get("x-amz-id-2")}</HostId></Error>`,
    );
  });

  test("S3 HEAD: headers only, so not classifiable as throttling (as the SDKs see it): a bare HEAD 503", () => {
    const i = info("s3", "HeadObject");
    const r = throttleResponse(i);
    assert.equal(r.statusCode, 503);
    assert.equal(r.content!.length, 0);
    assert.equal(throttlingCodeOf(r, i), null);
    assert.equal(isBareS3Head503(r, i), true);
    assert.equal(isBareS3Head503(r, info("s3", "GetObject")), false);
  });

  test("DynamoDB: 400 ThrottlingException JSON 1.0 with a correct x-amz-crc32", () => {
    const r = throttleResponse(info("dynamodb", "PutItem"));
    assert.equal(r.statusCode, 400);
    assert.equal(r.text, '{"__type":"com.amazonaws.dynamodb.v20120810#ThrottlingException","message":"Rate of requests exceeds the allowed throughput."}');
    assert.equal(r.headers.get("content-type"), "application/x-amz-json-1.0");
    assert.equal(r.headers.get("x-amz-crc32"), String(crc32(r.content!)));
    assert.match(r.headers.get("x-amzn-RequestId")!, /^[A-Z0-9]{52}$/);
  });

  test("other JSON services: 400 ThrottlingException in the request's JSON version", () => {
    const r = throttleResponse(info("kinesis", "PutRecord", { protocol: "json", jsonVersion: "1.1" }));
    assert.equal(r.statusCode, 400);
    assert.equal(r.headers.get("content-type"), "application/x-amz-json-1.1");
    assert.deepEqual(JSON.parse(r.text), { __type: "ThrottlingException", message: "Rate exceeded" });
  });

  test("EC2: 503 RequestLimitExceeded", () => {
    const r = throttleResponse(info("ec2", "DescribeInstances"));
    assert.equal(r.statusCode, 503);
    assert.match(r.text, /^<\?xml version="1.0" encoding="UTF-8"\?>\n<Response><Errors><Error><Code>RequestLimitExceeded<\/Code><Message>Request limit exceeded.<\/Message><\/Error><\/Errors><RequestID>[0-9a-f-]{36}<\/RequestID><\/Response>$/);
  });

  test("Lambda: 429 TooManyRequestsException with x-amzn-ErrorType and Reason", () => {
    const r = throttleResponse(info("lambda", "Invoke"), { retryAfterSeconds: 2.5 });
    assert.equal(r.statusCode, 429);
    assert.equal(r.headers.get("x-amzn-ErrorType"), "TooManyRequestsException");
    assert.equal(r.headers.get("content-type"), "application/json");
    assert.equal(r.headers.get("retry-after"), "3");
    assert.equal(r.headers.get("x-amz-retry-after"), "2500", "milliseconds: the sub-second part is kept");
    assert.equal(r.text, '{"Reason":"CallerRateLimitExceeded","Type":"User","message":"Rate exceeded"}');
  });

  test("query services: 400 Throttling ErrorResponse in the service's namespace", () => {
    const r = throttleResponse(info("iam", "ListUsers"));
    assert.equal(r.statusCode, 400);
    assert.equal(r.headers.get("content-type"), "text/xml");
    assert.match(r.headers.get("x-amzn-RequestId")!, /^[0-9a-f-]{36}$/);
    assert.match(r.text, /^<ErrorResponse xmlns="https:\/\/iam\.amazonaws\.com\/doc\/2010-05-08\/">\n  <Error>\n    <Type>Sender<\/Type>\n    <Code>Throttling<\/Code>\n    <Message>Rate exceeded<\/Message>\n  <\/Error>\n  <RequestId>[0-9a-f-]{36}<\/RequestId>\n<\/ErrorResponse>\n$/);
  });

  test("unknown services: plain 429 Too Many Requests; a custom message is escaped where XML", () => {
    const r = throttleResponse(null, { retryAfterSeconds: 7 });
    assert.equal(r.statusCode, 429);
    assert.equal(r.text, "Too Many Requests");
    assert.equal(r.headers.get("retry-after"), "7");
    assert.equal(throttleResponse(info("sts"), { message: "slow <down> & wait" }).text.includes("<Message>slow &lt;down&gt; &amp; wait</Message>"), true);
  });

  test("rpc-v2-cbor: a CBOR body the Smithy decoder reads", () => {
    const i = info("monitoring", "PutMetricData", { protocol: "rpc-v2-cbor" });
    const r = throttleResponse(i);
    assert.equal(r.statusCode, 400);
    assert.equal(r.headers.get("smithy-protocol"), "rpc-v2-cbor");
    assert.equal(r.headers.get("content-type"), "application/cbor");
    assert.deepEqual(cbor.deserialize(new Uint8Array(r.content!)), { __type: "ThrottlingException", message: "Rate exceeded" });
    assert.equal(throttlingCodeOf(r, i), "ThrottlingException");
  });

  test("serviceErrorResponse codes per protocol", () => {
    const codes = (status: 500 | 503, i: AwsRequestInfo | null) => errorCodeOf(serviceErrorResponse(status, i));
    assert.deepEqual([codes(500, info("s3")), codes(503, info("s3"))], ["InternalError", "ServiceUnavailable"]);
    assert.deepEqual([codes(500, info("dynamodb")), codes(503, info("kinesis"))], ["InternalServerError", "ServiceUnavailableException"]);
    assert.deepEqual([codes(500, info("ec2")), codes(503, info("ec2"))], ["InternalError", "Unavailable"]);
    assert.deepEqual([codes(500, info("sts")), codes(503, info("sns"))], ["InternalFailure", "ServiceUnavailable"]);
    const plain = serviceErrorResponse(503, null);
    assert.equal(plain.statusCode, 503);
    assert.equal(plain.text, "Service Unavailable");
    assert.equal(throttlingCodeOf(serviceErrorResponse(500, info("s3")), info("s3")), null);
  });
});

describe("throttlingCodeOf and errorCodeOf", () => {
  const xml = (status: number, body: string, headers: Record<string, string> = {}) => Response.make(status, body, { "Content-Type": "application/xml", ...headers });
  const json = (status: number, body: object, headers: Record<string, string> = {}) => Response.make(status, JSON.stringify(body), { "Content-Type": "application/x-amz-json-1.0", ...headers });

  test("every throttleResponse shape is throttling", () => {
    const expected: [AwsRequestInfo | null, string][] = [
      [info("s3", "PutObject"), "SlowDown"],
      [info("dynamodb", "Query"), "ThrottlingException"],
      [info("logs", "PutLogEvents"), "ThrottlingException"],
      [info("ec2", "RunInstances"), "RequestLimitExceeded"],
      [info("lambda", "Invoke"), "TooManyRequestsException"],
      [info("apigateway", "GetRestApis"), "TooManyRequestsException"],
      [info("sts", "AssumeRole"), "Throttling"],
      [info("route53", null), "Throttling"],
      [info("sqs", "SendMessage"), "ThrottlingException"],
      [null, "429"],
    ];
    for (const [i, code] of expected) assert.equal(throttlingCodeOf(throttleResponse(i), i), code, i?.service ?? "unknown");
  });

  test("AWS's other throttling bodies and headers", () => {
    const none = info(null);
    assert.equal(throttlingCodeOf(json(400, { __type: "com.amazonaws.dynamodb.v20120810#ProvisionedThroughputExceededException", message: "x" }), none), "ProvisionedThroughputExceededException");
    assert.equal(throttlingCodeOf(json(400, { __type: "LimitExceededException", message: "Rate exceeded for shard" }), none), "LimitExceededException");
    assert.equal(throttlingCodeOf(json(400, { code: "RequestThrottledException" }), none), "RequestThrottledException");
    assert.equal(throttlingCodeOf(xml(400, "<ErrorResponse><Error><Code>Throttling</Code></Error></ErrorResponse>"), none), "Throttling");
    assert.equal(throttlingCodeOf(xml(503, '<?xml version="1.0"?><Response><Errors><Error><Code>EC2ThrottledException</Code></Error></Errors></Response>'), none), "EC2ThrottledException");
    assert.equal(throttlingCodeOf(xml(400, "<Error>\n  <Code> PriorRequestNotComplete </Code>\n</Error>"), none), "PriorRequestNotComplete");
    assert.equal(throttlingCodeOf(Response.make(429, "{}", { "x-amzn-ErrorType": "ThrottledException:http://internal.amazon.com/coral/com.amazon.x/" }), none), "ThrottledException");
    assert.equal(throttlingCodeOf(Response.make(400, "{}", { "x-amzn-query-error": "RequestThrottled;Sender" }), none), "RequestThrottled");
    assert.equal(throttlingCodeOf(Response.make(400, gzipSync(Buffer.from('{"__type":"TransactionInProgressException"}')), { "Content-Encoding": "gzip" }), none), "TransactionInProgressException");
    assert.equal(throttlingCodeOf(xml(503, "<Error><Code>BandwidthLimitExceeded</Code></Error>"), none), "BandwidthLimitExceeded");
  });

  test("a bare 429 is '429'; a 429 with a code reports the code", () => {
    assert.equal(throttlingCodeOf(Response.make(429, "Too Many Requests"), null), "429");
    assert.equal(throttlingCodeOf(Response.make(429), info("s3")), "429");
    assert.equal(throttlingCodeOf(json(429, { __type: "QuotaExceeded" }), null), "QuotaExceeded");
  });

  test("not throttling: successes, other errors, bodiless 503s outside S3", () => {
    assert.equal(throttlingCodeOf(Response.make(200, "<Error><Code>SlowDown</Code></Error>"), info("s3", "GetObject")), null);
    assert.equal(throttlingCodeOf(xml(404, "<Error><Code>NoSuchKey</Code></Error>"), info("s3", "GetObject")), null);
    assert.equal(throttlingCodeOf(json(400, { __type: "com.amazon.coral.validate#ValidationException" }), info("dynamodb")), null);
    assert.equal(throttlingCodeOf(Response.make(503), info("dynamodb")), null);
    assert.equal(throttlingCodeOf(Response.make(500, "oops"), null), null);
    assert.equal(throttlingCodeOf(xml(400, "not <xml"), null), null);
    assert.equal(throttlingCodeOf(json(400, [1, 2]), null), null);
  });

  test("S3's 200 responses that carry an <Error> (CompleteMultipartUpload, CopyObject)", () => {
    const body = '<?xml version="1.0" encoding="UTF-8"?>\n\n<Error><Code>SlowDown</Code><Message>Please reduce your request rate.</Message></Error>';
    assert.equal(throttlingCodeOf(xml(200, body), info("s3", "CompleteMultipartUpload")), "SlowDown");
    assert.equal(throttlingCodeOf(xml(200, body), info("s3", "CopyObject")), "SlowDown");
    assert.equal(throttlingCodeOf(xml(200, "<CompleteMultipartUploadResult/>"), info("s3", "CompleteMultipartUpload")), null);
  });

  test("errorCodeOf: any AWS error code, header first", () => {
    assert.equal(errorCodeOf(xml(404, '<?xml version="1.0"?><Error><Code>NoSuchKey</Code><Message>m</Message></Error>')), "NoSuchKey");
    assert.equal(errorCodeOf(json(400, { __type: "com.amazonaws.dynamodb.v20120810#ConditionalCheckFailedException" })), "ConditionalCheckFailedException");
    assert.equal(errorCodeOf(Response.make(404, '{"message":"x"}', { "x-amzn-ErrorType": "ResourceNotFoundException:http://internal.amazon.com/" })), "ResourceNotFoundException");
    assert.equal(errorCodeOf(json(403, { Code: "AccessDenied" })), "AccessDenied");
    assert.equal(errorCodeOf(Response.make(200, "<Error><Code>X</Code></Error>")), null);
    assert.equal(errorCodeOf(Response.make(502, "")), null);
  });
});
