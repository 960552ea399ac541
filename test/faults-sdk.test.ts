/**
 * Real AWS SDKs under injected faults: boto3 and the AWS CLI (regular mode with HTTPS_PROXY and
 * AWS_CA_BUNDLE), and the AWS SDK for JavaScript v3 (through a CONNECT agent trusting sluice's
 * CA). map-remote sends *.amazonaws.com to fake origins on 127.0.0.1; throttled calls are
 * answered by sluice itself, so nothing leaves the machine.
 */
import { test, describe, before, after } from "node:test";
import assert from "node:assert/strict";
import { readFile } from "node:fs/promises";
import { S3Client, CreateBucketCommand, PutObjectCommand, ListObjectsV2Command } from "@aws-sdk/client-s3";
import { DynamoDBClient, ListTablesCommand, GetItemCommand } from "@aws-sdk/client-dynamodb";
import { EC2Client, DescribeInstancesCommand } from "@aws-sdk/client-ec2";
import { LambdaClient, InvokeCommand } from "@aws-sdk/client-lambda";
import { Response } from "../src/core/flow.js";
import { startFakeS3, startFakeDynamoDB, startScriptedOrigin, type FakeS3, type FakeDynamoDB, type FakeAwsOrigin } from "./support/fake-aws.js";
import { startSluice, type TestSluice } from "./support/sluice.js";
import { run, awsEnv, pythonWithBoto3 } from "./support/run.js";
import { tunnelAgent } from "./support/tunnel-agent.js";
import { Faults } from "../src/addons/faults.js";
import { needs, needsPython } from "./support/needs.js";

const REGION = "eu-west-1";
const credentials = { accessKeyId: "AKIDEXAMPLE", secretAccessKey: "secret" };

describe("real AWS SDKs under fault rules", () => {
  let s3: FakeS3;
  let dynamodb: FakeDynamoDB;
  let unreachable: FakeAwsOrigin;
  let sluice: TestSluice;
  let ca: string;
  const faults = new Faults();

  before(async () => {
    // EC2 and Lambda calls must be answered by sluice; if one got through, this origin says so.
    [s3, dynamodb, unreachable] = await Promise.all([
      startFakeS3(),
      startFakeDynamoDB({ region: REGION, tables: [{ name: "t", hashKey: "pk" }] }),
      startScriptedOrigin(() => Response.make(418, "this request should have been answered by a sluice fault", { "content-type": "text/plain" })),
    ]);
    const mapRemote = [
      `|https://s3[.a-z0-9-]*\\.amazonaws\\.com|${s3.url}`,
      `|https://dynamodb\\.${REGION}\\.amazonaws\\.com|${dynamodb.url}`,
      `|https://[a-z0-9.-]+\\.amazonaws\\.com|${unreachable.url}`,
    ];
    const rules = [
      "~svc s3 & ~op ListBuckets => throttle",
      "~svc s3 & ~op PutObject => throttle p=0.5",
      "~svc dynamodb & ~op ListTables => throttle",
      "~svc dynamodb & ~op GetItem => error 500",
      "~svc ec2 => throttle",
      "~svc lambda => throttle retry-after=2",
    ];
    sluice = await startSluice({ set: { map_remote: JSON.stringify(mapRemote), fault_rules: JSON.stringify(rules) }, addons: [faults] });
    ca = await readFile(sluice.caCert, "utf8");
  });
  after(async () => {
    await Promise.all([sluice.close(), s3.close(), dynamodb.close(), unreachable.close()]);
  });

  const flowsOf = (invocationId: string) => sluice.flows.filter((f) => f.request.headers.get("amz-sdk-invocation-id") === invocationId);

  test("boto3 (legacy) list_buckets gets SlowDown after exactly 5 attempts; the AWS CLI's `s3 ls` fails with it too", { skip: needsPython("boto3", "python3-boto3") ?? needs("aws", "awscli") }, async () => {
    const python = await pythonWithBoto3();
    const script = `
import boto3, botocore.exceptions
s3 = boto3.client("s3", region_name="${REGION}")
try:
    s3.list_buckets()
    print("NO ERROR")
except botocore.exceptions.ClientError as e:
    print("CODE", e.response["Error"]["Code"])
    print("MESSAGE", e)
    print("RETRIES", e.response["ResponseMetadata"].get("RetryAttempts"))
    print("INVOCATION", e.response["ResponseMetadata"].get("HTTPHeaders", {}).get("x-amz-request-id"))
`;
    const proxyEnv = { HTTPS_PROXY: sluice.url, AWS_CA_BUNDLE: sluice.caCert };
    // Both back off for seconds (legacy: up to 1+2+4+8 s × rand), so they run side by side.
    const [boto, cli] = await Promise.all([
      run(python, ["-c", script], { env: awsEnv({ ...proxyEnv, AWS_RETRY_MODE: "legacy" }), timeoutMs: 90_000 }),
      run("aws", ["s3", "ls"], { env: awsEnv(proxyEnv), timeoutMs: 90_000 }),
    ]);
    assert.equal(boto.code, 0, boto.stderr);
    assert.match(boto.stdout, /^CODE SlowDown$/m);
    assert.match(boto.stdout, /An error occurred \(SlowDown\) when calling the ListBuckets operation \(reached max retries: 4\): Please reduce your request rate\./);
    assert.match(boto.stdout, /^RETRIES 4$/m);

    const listFlows = sluice.flows.filter((f) => f.request.method === "GET" && f.request.path.split("?")[0] === "/");
    const botoFlows = listFlows.filter((f) => /Boto3\//.test(f.request.headers.get("user-agent") ?? "") && !/aws-cli\//.test(f.request.headers.get("user-agent") ?? ""));
    const ids = new Set(botoFlows.map((f) => f.request.headers.get("amz-sdk-invocation-id")));
    assert.equal(ids.size, 1, "one boto3 call");
    const attempts = flowsOf([...ids][0]!);
    assert.equal(attempts.length, 5, "exactly 5 attempts reached sluice");
    assert.deepEqual(attempts.map((f) => /attempt=(\d+)/.exec(f.request.headers.get("amz-sdk-request") ?? "")?.[1]), ["1", "2", "3", "4", "5"]);
    for (const f of attempts) {
      assert.deepEqual(f.metadata.fault, { rule: "1", action: "throttle" });
      assert.equal(f.response?.statusCode, 503);
      assert.match(f.response?.text ?? "", /<Code>SlowDown<\/Code>/);
    }

    assert.notEqual(cli.code, 0, `aws s3 ls must fail: ${cli.stdout}`);
    assert.match(cli.stderr, /An error occurred \(SlowDown\) when calling the ListBuckets operation \(reached max retries: \d\): Please reduce your request rate\./);
    const cliFlows = listFlows.filter((f) => /aws-cli\//.test(f.request.headers.get("user-agent") ?? ""));
    assert.ok(cliFlows.length >= 3, `the CLI retried: ${cliFlows.length} attempts`);
    assert.ok(cliFlows.every((f) => (f.metadata.fault as { action: string }).action === "throttle"));
    assert.equal(s3.requests.filter((r) => r.method === "GET" && r.path === "/").length, 0, "no ListBuckets reached the server");
  });

  test("@aws-sdk/client-s3 at p=0.5 succeeds through retries", async () => {
    const client = new S3Client({ region: REGION, forcePathStyle: true, credentials, maxAttempts: 12, requestHandler: { httpsAgent: tunnelAgent(sluice.port, ca) } });
    try {
      await client.send(new CreateBucketCommand({ Bucket: "flaky" }));
      const keys = Array.from({ length: 10 }, (_, i) => `k/${i}.txt`);
      // Ten concurrent calls: the chance that one fails 12 times in a row is ~0.2%.
      const results = await Promise.all(keys.map((Key) => client.send(new PutObjectCommand({ Bucket: "flaky", Key, Body: `body of ${Key}` }))));
      const retried = results.filter((r) => (r.$metadata.attempts ?? 1) > 1).length;
      const listed = await client.send(new ListObjectsV2Command({ Bucket: "flaky" }));
      assert.deepEqual(listed.Contents?.map((c) => c.Key).sort(), [...keys].sort());
      for (const k of keys) assert.equal(s3.object("flaky", k)?.toString(), `body of ${k}`);
      const puts = sluice.flows.filter((f) => f.request.method === "PUT" && f.request.path.startsWith("/flaky/k/"));
      const throttled = puts.filter((f) => f.metadata.fault);
      assert.ok(throttled.length > 0, "some attempts were throttled");
      assert.equal(puts.length - throttled.length, 10, "each object was stored by exactly one admitted attempt");
      assert.ok(retried > 0, "some calls needed retries");
      assert.equal(throttled.length, results.reduce((n, r) => n + (r.$metadata.attempts ?? 1) - 1, 0), "every retry followed a throttled attempt");
      assert.ok(puts.some((f) => /attempt=[2-9]/.test(f.request.headers.get("amz-sdk-request") ?? "")));
    } finally {
      client.destroy();
    }
  });

  test("@aws-sdk/client-dynamodb sees ThrottlingException (and InternalServerError for error 500)", async () => {
    const client = new DynamoDBClient({ region: REGION, credentials, maxAttempts: 1, requestHandler: { httpsAgent: tunnelAgent(sluice.port, ca) } });
    try {
      await assert.rejects(client.send(new ListTablesCommand({})), (err: Error & { $metadata?: { httpStatusCode?: number } }) => {
        assert.equal(err.name, "ThrottlingException");
        assert.equal(err.$metadata?.httpStatusCode, 400);
        return true;
      });
      await assert.rejects(client.send(new GetItemCommand({ TableName: "t", Key: { pk: { S: "a" } } })), (err: Error & { $metadata?: { httpStatusCode?: number } }) => {
        assert.equal(err.name, "InternalServerError");
        assert.equal(err.$metadata?.httpStatusCode, 500);
        return true;
      });
    } finally {
      client.destroy();
    }
    assert.equal(dynamodb.requests.length, 0, "answered by sluice");
  });

  test("@aws-sdk/client-ec2 sees RequestLimitExceeded", async () => {
    const client = new EC2Client({ region: REGION, credentials, maxAttempts: 1, requestHandler: { httpsAgent: tunnelAgent(sluice.port, ca) } });
    try {
      await assert.rejects(client.send(new DescribeInstancesCommand({})), (err: Error & { $metadata?: { httpStatusCode?: number } }) => {
        assert.equal(err.name, "RequestLimitExceeded");
        assert.equal(err.$metadata?.httpStatusCode, 503);
        return true;
      });
    } finally {
      client.destroy();
    }
  });

  test("@aws-sdk/client-lambda sees TooManyRequestsException with Retry-After", async () => {
    const client = new LambdaClient({ region: REGION, credentials, maxAttempts: 1, requestHandler: { httpsAgent: tunnelAgent(sluice.port, ca) } });
    try {
      await assert.rejects(client.send(new InvokeCommand({ FunctionName: "f", Payload: Buffer.from("{}") })), (err: Error & { $metadata?: { httpStatusCode?: number }; retryAfterSeconds?: string; Reason?: string }) => {
        assert.equal(err.name, "TooManyRequestsException");
        assert.equal(err.$metadata?.httpStatusCode, 429);
        assert.equal(err.retryAfterSeconds, "2");
        assert.equal(err.Reason, "CallerRateLimitExceeded");
        return true;
      });
    } finally {
      client.destroy();
    }
    assert.equal(unreachable.requests.length, 0, "EC2 and Lambda calls were all answered by sluice");
    const metrics = await sluice.master.context.metrics.metrics();
    assert.match(metrics, /sluice_faults_injected_total\{rule="6",action="throttle"\} 1/);
    assert.match(metrics, /sluice_faults_injected_total\{rule="4",action="error"\} 1/);
    assert.equal(faults.list().find((r) => r.id === "5")!.injected, 1);
  });
});
