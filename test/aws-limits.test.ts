/**
 * AWS's real limits (issue 17): the limit profiles' errors are ones the installed botocore's
 * service models list for the operation (or its retry handler classifies as throttling), and
 * `--fault aws-limits` in front of a local fake answers the excess with them — boto3 sees EC2's
 * RequestLimitExceeded beyond the non-mutating bucket and passes again as it refills, S3 PUTs to
 * two prefixes each get their own budget, a Kinesis PutRecord throttle raises
 * ProvisionedThroughputExceededException.
 */
import { test, describe } from "node:test";
import assert from "node:assert/strict";
import { Response } from "../src/core/flow.js";
import { Faults } from "../src/addons/faults.js";
import { awsLimits } from "../src/aws/limits.js";
import { partitionOf } from "../src/aws/dynamodb-capacity.js";
import { tflow } from "./support/tflow.js";
import { startFakeDynamoDB } from "./support/fake-aws.js";
import { startSluice } from "./support/sluice.js";
import { startScriptedOrigin } from "./support/fake-aws.js";
import { run, awsEnv, pythonWithBoto3, PYTHON_ALPN_RACE_GUARD } from "./support/run.js";
import { SLUICE_BIN, assertOneLineError } from "./support/cli.js";
import { readFile } from "node:fs/promises";
import { EC2Client, DescribeInstancesCommand } from "@aws-sdk/client-ec2";
import { tunnelAgent } from "./support/tunnel-agent.js";
import { needs, needsPython } from "./support/needs.js";

/** Operations each limit names, to look up in the service model (EC2's and S3's models list no errors). */
const SAMPLE_OPERATION: Record<string, string> = { kinesis: "PutRecord", sqs: "SendMessage", sts: "AssumeRole", kms: "Encrypt", dynamodb: "PutItem", lambda: "Invoke" };

/** An operation the limit applies to, to look its error up in the model. */
function sampleOperation(l: ReturnType<typeof awsLimits>[number]): string {
  if (l.appliesTo === "DescribeStream" || l.appliesTo === "GetFunction" || l.appliesTo === "GetPolicy") return l.appliesTo;
  if (l.service === "dynamodb" && l.name.includes("read")) return "GetItem";
  if (l.service === "dynamodb" && l.name.startsWith("control")) return "CreateTable";
  if (l.service === "lambda" && l.name.startsWith("other control")) return "ListFunctions";
  return SAMPLE_OPERATION[l.service] ?? "-";
}

describe("limit profiles", () => {
  test("every limit's error is modelled for its operation or classified as throttling by botocore's retry handler", { skip: needsPython("boto3", "python3-boto3") }, async () => {
    const wanted = [...new Set(awsLimits().map((l) => `${l.service} ${sampleOperation(l)} ${l.error.code}`))];
    const script = `
import botocore.session, json, sys
from botocore.retries import standard
s = botocore.session.get_session()
throttling = set(standard.ThrottledRetryableChecker._THROTTLED_ERROR_CODES)
out = {}
for line in json.loads(sys.argv[1]):
    svc, op, code = line.split(" ")
    modelled = []
    if op != "-":
        m = s.get_service_model(svc)
        modelled = [e.error_code or e.name for e in m.operation_model(op).error_shapes] + [e.name for e in m.operation_model(op).error_shapes]
    out[line] = code in modelled or code in throttling
print(json.dumps(out))
`;
    const r = await run(await pythonWithBoto3(), ["-c", script, JSON.stringify(wanted)]);
    assert.equal(r.code, 0, r.stderr);
    const verdicts = JSON.parse(r.stdout) as Record<string, boolean>;
    const unknown = Object.entries(verdicts).filter(([, ok]) => !ok).map(([line]) => line);
    // EC2's resource-rate error is documented on its throttling page but botocore does not retry it.
    assert.deepEqual(unknown, ["ec2 - RequestResourceCountExceeded"]);
    assert.ok(wanted.includes("kinesis PutRecord ProvisionedThroughputExceededException"));
    for (const line of ["dynamodb PutItem ProvisionedThroughputExceededException", "dynamodb GetItem RequestLimitExceeded", "dynamodb CreateTable ThrottlingException", "lambda Invoke TooManyRequestsException", "lambda ListFunctions TooManyRequestsException"]) {
      assert.ok(wanted.includes(line), `${line} in ${wanted.join(", ")}`);
    }
  });

  test("DynamoDB's ThrottlingReasons and Lambda's Reason values are members and enum values of botocore's error shapes", { skip: needsPython("boto3", "python3-boto3") }, async () => {
    const fieldsOf = awsLimits().filter((l) => l.errorFor || l.error.fields).map((l) => {
      const flow = tflow({ method: "POST", host: "dynamodb.eu-west-1.amazonaws.com", path: "/", reqHeaders: { host: "dynamodb.eu-west-1.amazonaws.com", "x-amz-target": "DynamoDB_20120810.PutItem", authorization: "AWS4-HMAC-SHA256 Credential=AKID/20260101/eu-west-1/dynamodb/aws4_request" }, reqBody: '{"TableName":"t","Item":{"pk":{"S":"a"}}}' });
      const e = l.errorFor ? l.errorFor(flow, { service: l.service, region: "eu-west-1", operation: "PutItem", bucket: null, key: null, invocationId: null, attempt: null, maxAttempts: null, sdk: null, retryMode: null }) : l.error;
      return { service: l.service, code: e.code, fields: e.fields };
    });
    const script = `
import botocore.session, json, sys
s = botocore.session.get_session()
bad = []
for e in json.loads(sys.argv[1]):
    shape = s.get_service_model(e["service"]).shape_for(e["code"])
    for name, value in e["fields"].items():
        if name not in shape.members:
            bad.append("%s %s has no member %s" % (e["service"], e["code"], name))
        elif name == "Reason" and value not in shape.members[name].enum:
            bad.append("lambda Reason %s not in %s" % (value, shape.members[name].enum))
        elif name == "ThrottlingReasons" and set(value[0]) != set(shape.members[name].member.members):
            bad.append("ThrottlingReason members %s" % sorted(value[0]))
print(json.dumps(bad))
`;
    const r = await run(await pythonWithBoto3(), ["-c", script, JSON.stringify(fieldsOf)]);
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual(JSON.parse(r.stdout), []);
    assert.ok(fieldsOf.some((f) => f.service === "dynamodb") && fieldsOf.some((f) => f.service === "lambda"));
  });

  test("sluice limits prints every profile with its source; an unknown service is one line naming those that exist", async () => {
    const r = await run(process.execPath, [SLUICE_BIN, "limits", "ec2", "scale=0.1"]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /non-mutating actions: bucket 10 requests, refill 2\/s, per account and region; 503 RequestLimitExceeded\n.*\n\s+source: https:\/\/docs\.aws\.amazon\.com\/ec2\/latest\/devguide\/ec2-api-throttling\.html/);
    const all = await run(process.execPath, [SLUICE_BIN, "limits"]);
    for (const service of ["ec2", "s3", "dynamodb", "lambda", "kinesis", "sqs", "sts", "kms"]) assert.match(all.stdout, new RegExp(`^${service}$`, "m"));
    assert.equal((all.stdout.match(/^\s+source: https:\/\//gm) ?? []).length, awsLimits().length, "a source for every limit");
    assertOneLineError(await run(process.execPath, [SLUICE_BIN, "limits", "dynamo"]), /no limit profile for "dynamo"; profiles exist for ec2, s3/, "unknown service");
  });
});

describe("--fault aws-limits in front of a local fake, with boto3", { skip: needsPython("boto3", "python3-boto3") }, () => {
  test("EC2 beyond the non-mutating bucket and as it refills, Kinesis PutRecord: each with its own error", async () => {
    const origin = await startScriptedOrigin((req) => {
      const target = req.headers.get("x-amz-target") ?? "";
      if (target.endsWith(".PutRecord")) return Response.make(200, '{"SequenceNumber":"1","ShardId":"shardId-000000000000"}', { "content-type": "application/x-amz-json-1.1" });
      if (req.method === "PUT") return Response.make(200, "", { etag: '"9dd4e461268c8034f5c8564e155c67a6"' });
      return Response.make(200, '<DescribeInstancesResponse xmlns="http://ec2.amazonaws.com/doc/2016-11-15/"><requestId>r1</requestId><reservationSet/></DescribeInstancesResponse>', { "content-type": "text/xml;charset=UTF-8" });
    });
    const mapping = JSON.stringify(["ec2", "kinesis"].map((s) => `|https://${s}\\.eu-west-1\\.amazonaws\\.com|${origin.url}`));
    const sluice = await startSluice({ set: { map_remote: mapping, fault_rules: JSON.stringify(["~svc kinesis => aws-limits scale=0.001", "aws-limits scale=0.05"]) }, addons: [new Faults()] });
    try {
      const script = `
import boto3, botocore.config, botocore.exceptions, json, time
cfg = botocore.config.Config(retries={"total_max_attempts": 1, "mode": "standard"}, s3={"addressing_style": "path"})
def code(call):
    try:
        call()
        return "ok"
    except botocore.exceptions.ClientError as e:
        return e.response["Error"]["Code"]
ec2 = boto3.client("ec2", region_name="eu-west-1", config=cfg)
kinesis = boto3.client("kinesis", region_name="eu-west-1", config=cfg)
describe = lambda: ec2.describe_instances(Filters=[{"Name": "instance-state-name", "Values": ["running"]}])
burst = [code(describe) for _ in range(14)]
time.sleep(2.1)
refilled = [code(describe) for _ in range(3)]
put = lambda: kinesis.put_record(StreamName="clicks", Data=b"x", PartitionKey="k")
records = [code(put) for _ in range(3)]
print(json.dumps({"burst": burst, "refilled": refilled, "records": records}))
`;
      const r = await run(await pythonWithBoto3(), ["-c", script], { env: awsEnv({ HTTPS_PROXY: sluice.url, AWS_CA_BUNDLE: sluice.caCert }) });
      assert.equal(r.code, 0, r.stderr);
      const out = JSON.parse(r.stdout) as Record<string, string[]>;
      // Non-mutating bucket (100, 20/s) × 0.05: 5 back to back, refill 1/s.
      assert.deepEqual(out.burst!.slice(0, 5), Array(5).fill("ok"), "within the bucket every call passes");
      assert.ok(out.burst!.slice(5).every((c) => c === "RequestLimitExceeded" || c === "ok"));
      assert.ok(out.burst!.slice(5).filter((c) => c === "RequestLimitExceeded").length >= 4, `beyond it: ${out.burst!.join(" ")}`);
      assert.ok(out.refilled!.filter((c) => c === "ok").length >= 2, `after 2.1 s the bucket has refilled two: ${out.refilled!.join(" ")}`);
      assert.equal(out.records![0], "ok");
      assert.ok(out.records!.slice(1).includes("ProvisionedThroughputExceededException"), `Kinesis: ${out.records!.join(" ")}`);
      const refused = sluice.flows.filter((f) => f.metadata.aws_limit);
      assert.equal(origin.requests.length, sluice.flows.length - refused.length, "refused requests never reached the origin");
      const limits = new Set(refused.map((f) => (f.metadata.aws_limit as { limit: string }).limit));
      assert.deepEqual([...limits].sort(), ["PutRecord records per shard", "non-mutating actions"]);
    } finally {
      await Promise.all([sluice.close(), origin.close()]);
    }
  });

  test("S3 PUTs to two prefixes each get their own budget (3,500/s × 0.0002: one token, 0.7/s per prefix)", async () => {
    const origin = await startScriptedOrigin(() => Response.make(200, "", { etag: '"9dd4e461268c8034f5c8564e155c67a6"' }));
    const sluice = await startSluice({ set: { map_remote: JSON.stringify([`|https://s3\\.eu-west-1\\.amazonaws\\.com|${origin.url}`]), fault_rules: JSON.stringify(["~svc s3 => aws-limits scale=0.0002"]) }, addons: [new Faults()] });
    try {
      const script = `
import boto3, botocore.config, botocore.exceptions, json
s3 = boto3.client("s3", region_name="eu-west-1", config=botocore.config.Config(retries={"total_max_attempts": 1, "mode": "standard"}, s3={"addressing_style": "path"}))
def code(key):
    try:
        s3.put_object(Bucket="logs", Key=key, Body=b"x")
        return "ok"
    except botocore.exceptions.ClientError as e:
        return e.response["Error"]["Code"]
out = {}
for i in range(6):
    for prefix in ("a", "b"):
        out.setdefault(prefix, []).append(code("%s/%d" % (prefix, i)))
print(json.dumps(out))
`;
      const r = await run(await pythonWithBoto3(), ["-c", script], { env: awsEnv({ HTTPS_PROXY: sluice.url, AWS_CA_BUNDLE: sluice.caCert }) });
      assert.equal(r.code, 0, r.stderr);
      const out = JSON.parse(r.stdout) as Record<string, string[]>;
      for (const prefix of ["a", "b"]) {
        // With one budget for both, b/'s first PUT would find the token a/'s took.
        assert.equal(out[prefix]![0], "ok", `prefix ${prefix}/ has its own bucket: ${out[prefix]!.join(" ")}`);
        assert.ok(out[prefix]!.includes("SlowDown"), `beyond it S3's SlowDown: ${out[prefix]!.join(" ")}`);
      }
    } finally {
      await Promise.all([sluice.close(), origin.close()]);
    }
  });
});

describe("--fault aws-limits for DynamoDB and Lambda, with boto3", { skip: needsPython("boto3", "python3-boto3") }, () => {
  test("a hot DynamoDB partition key gets ProvisionedThroughputExceededException with its ThrottlingReasons; a key in another partition of the table passes", async () => {
    // A value that hashes to another of the table's 4 partitions (the default) than "hot".
    const partition = (pk: string) => partitionOf(JSON.stringify({ S: pk }), 4);
    const cold = Array.from({ length: 50 }, (_, i) => `cold-${i}`).find((c) => partition(c) !== partition("hot"))!;
    const dynamo = await startFakeDynamoDB({ tables: [{ name: "orders", hashKey: "pk" }], region: "eu-west-1" });
    // Writes per partition: 1,000 WCU × 0.002 = a bucket of 2, refilled 2/s.
    const sluice = await startSluice({ set: { map_remote: JSON.stringify([`|https://dynamodb\\.eu-west-1\\.amazonaws\\.com|${dynamo.url}`]), fault_rules: JSON.stringify(["~svc dynamodb => aws-limits scale=0.002"]) }, addons: [new Faults()] });
    try {
      const script = `${PYTHON_ALPN_RACE_GUARD}
import boto3, botocore.config, botocore.exceptions, json
ddb = boto3.client("dynamodb", region_name="eu-west-1", config=botocore.config.Config(retries={"total_max_attempts": 1, "mode": "standard"}, max_pool_connections=10))
def put(pk):
    try:
        ddb.put_item(TableName="orders", Item={"pk": {"S": pk}, "n": {"N": "1"}})
        return {"code": "ok"}
    except botocore.exceptions.ClientError as e:
        return {"code": e.response["Error"]["Code"], "reasons": e.response.get("ThrottlingReasons"), "status": e.response["ResponseMetadata"]["HTTPStatusCode"]}
import threading
hot = []
threads = [threading.Thread(target=lambda: hot.append(put("hot"))) for _ in range(8)]
[t.start() for t in threads]
[t.join() for t in threads]
cold = put(${JSON.stringify(cold)})
print(json.dumps({"hot": hot, "cold": cold}))
`;
      const r = await run(await pythonWithBoto3(), ["-c", script], { env: awsEnv({ HTTPS_PROXY: sluice.url, AWS_CA_BUNDLE: sluice.caCert }) });
      assert.equal(r.code, 0, r.stderr);
      const out = JSON.parse(r.stdout) as { hot: { code: string; reasons?: { reason: string; resource: string }[]; status?: number }[]; cold: { code: string } };
      // 8 at once against a bucket of 2: the bucket's 2 pass (more only as it refills), the rest are refused.
      assert.ok(out.hot.filter((h) => h.code === "ok").length >= 2, JSON.stringify(out.hot));
      const throttled = out.hot.filter((h) => h.code !== "ok");
      assert.ok(throttled.length >= 1, JSON.stringify(out.hot));
      for (const t of throttled) {
        assert.equal(t.code, "ProvisionedThroughputExceededException");
        assert.equal(t.status, 400);
        assert.deepEqual(t.reasons, [{ reason: "TableWriteKeyRangeThroughputExceeded", resource: "arn:aws:dynamodb:eu-west-1:000000000000:table/orders" }]);
      }
      assert.equal(out.cold.code, "ok", "a partition key value in another partition has that partition's budget");
    } finally {
      await Promise.all([sluice.close(), dynamo.close()]);
    }
  });

  test("Lambda beyond the concurrency limit gets 429 TooManyRequestsException with Reason ConcurrentInvocationLimitExceeded; a slot frees when an invocation ends", async () => {
    const origin = await startScriptedOrigin(() => Response.make(200, '{"ok":true}', { "content-type": "application/json", "x-amz-executed-version": "$LATEST" }), { answerAfterMs: () => 1500 });
    // 1,000 concurrent executions × 0.002 = 2 in flight.
    const sluice = await startSluice({ set: { map_remote: JSON.stringify([`|https://lambda\\.eu-west-1\\.amazonaws\\.com|${origin.url}`]), fault_rules: JSON.stringify(["aws-limits scale=0.002"]) }, addons: [new Faults()] });
    try {
      const script = `${PYTHON_ALPN_RACE_GUARD}
import boto3, botocore.config, botocore.exceptions, json, threading
lam = boto3.client("lambda", region_name="eu-west-1", config=botocore.config.Config(retries={"total_max_attempts": 1, "mode": "standard"}, max_pool_connections=10))
out = []
def invoke():
    try:
        lam.invoke(FunctionName="resize", Payload=b"{}")
        out.append({"code": "ok"})
    except botocore.exceptions.ClientError as e:
        out.append({"code": e.response["Error"]["Code"], "reason": e.response.get("Reason"), "type": e.response.get("Type"), "status": e.response["ResponseMetadata"]["HTTPStatusCode"]})
threads = [threading.Thread(target=invoke) for _ in range(5)]
[t.start() for t in threads]
[t.join() for t in threads]
after = []
invoke()
print(json.dumps({"together": out, "after": out[5]}))
`;
      const r = await run(await pythonWithBoto3(), ["-c", script], { env: awsEnv({ HTTPS_PROXY: sluice.url, AWS_CA_BUNDLE: sluice.caCert }) });
      assert.equal(r.code, 0, r.stderr);
      const out = JSON.parse(r.stdout) as { together: { code: string; reason?: string; type?: string; status?: number }[]; after: { code: string } };
      const together = out.together.slice(0, 5);
      const ok = together.filter((x) => x.code === "ok").length;
      assert.ok(ok >= 1 && ok <= 2, `at most 2 in flight: ${JSON.stringify(together)}`);
      const throttled = together.filter((x) => x.code !== "ok");
      assert.ok(throttled.length >= 3);
      for (const t of throttled) assert.deepEqual(t, { code: "TooManyRequestsException", reason: "ConcurrentInvocationLimitExceeded", type: "User", status: 429 });
      assert.equal(out.after.code, "ok", "the slots are free again once the invocations ended");
    } finally {
      await Promise.all([sluice.close(), origin.close()]);
    }
  });
});

describe("--fault aws-limits with the JS SDK, the AWS CLI v2 and boto3 in adaptive mode", () => {
  const ec2Answer = () => Response.make(200, '<DescribeInstancesResponse xmlns="http://ec2.amazonaws.com/doc/2016-11-15/"><requestId>r1</requestId><reservationSet/></DescribeInstancesResponse>', { "content-type": "text/xml;charset=UTF-8" });

  test("@aws-sdk/client-ec2: within the non-mutating bucket every call passes, beyond it RequestLimitExceeded (503)", async () => {
    const origin = await startScriptedOrigin(ec2Answer);
    const sluice = await startSluice({ set: { map_remote: JSON.stringify([`|https://ec2\\.eu-west-1\\.amazonaws\\.com|${origin.url}`]), fault_rules: JSON.stringify(["aws-limits scale=0.05"]) }, addons: [new Faults()] });
    const ca = await readFile(sluice.caCert, "utf8");
    const client = new EC2Client({ region: "eu-west-1", credentials: { accessKeyId: "AKIDEXAMPLE", secretAccessKey: "secret" }, maxAttempts: 1, requestHandler: { httpsAgent: tunnelAgent(sluice.port, ca) } });
    try {
      const codes = await Promise.all(Array.from({ length: 10 }, () =>
        client.send(new DescribeInstancesCommand({ Filters: [{ Name: "instance-state-name", Values: ["running"] }] })).then(
          () => "ok",
          (err: Error & { $metadata?: { httpStatusCode?: number } }) => `${err.name} ${err.$metadata?.httpStatusCode}`,
        )));
      // Non-mutating bucket (100, 20/s) × 0.05: 5 at once, then 1/s.
      assert.ok(codes.filter((c) => c === "ok").length >= 5, codes.join(", "));
      assert.ok(codes.filter((c) => c === "RequestLimitExceeded 503").length >= 3, codes.join(", "));
      assert.deepEqual([...new Set(codes)].sort(), ["RequestLimitExceeded 503", "ok"]);
    } finally {
      client.destroy();
      await Promise.all([sluice.close(), origin.close()]);
    }
  });

  test("the AWS CLI v2: a second describe-instances within the refill time fails with RequestLimitExceeded", { skip: needs("/usr/bin/aws", "awscli") }, async () => {
    const origin = await startScriptedOrigin(ec2Answer);
    // × 0.005: a bucket of 1 refilled every 10 s.
    const sluice = await startSluice({ set: { map_remote: JSON.stringify([`|https://ec2\\.eu-west-1\\.amazonaws\\.com|${origin.url}`]), fault_rules: JSON.stringify(["aws-limits scale=0.005"]) }, addons: [new Faults()] });
    try {
      const env = awsEnv({ HTTPS_PROXY: sluice.url, AWS_CA_BUNDLE: sluice.caCert, AWS_MAX_ATTEMPTS: "1", AWS_RETRY_MODE: "standard", AWS_DEFAULT_REGION: "eu-west-1", AWS_PAGER: "" });
      const args = ["ec2", "describe-instances", "--filters", "Name=instance-state-name,Values=running", "--no-paginate"];
      const first = await run("/usr/bin/aws", args, { env });
      assert.equal(first.code, 0, first.stderr);
      const second = await run("/usr/bin/aws", args, { env });
      assert.notEqual(second.code, 0);
      assert.match(second.stderr, /An error occurred \(RequestLimitExceeded\) when calling the DescribeInstances operation/);
    } finally {
      await Promise.all([sluice.close(), origin.close()]);
    }
  });

  test("boto3 in adaptive mode retries the refused calls and every call ends well as the bucket refills", { skip: needsPython("boto3", "python3-boto3") }, async () => {
    const origin = await startScriptedOrigin(ec2Answer);
    const sluice = await startSluice({ set: { map_remote: JSON.stringify([`|https://ec2\\.eu-west-1\\.amazonaws\\.com|${origin.url}`]), fault_rules: JSON.stringify(["aws-limits scale=0.1"]) }, addons: [new Faults()] });
    try {
      const script = `
import boto3, botocore.config
ec2 = boto3.client("ec2", region_name="eu-west-1", config=botocore.config.Config(retries={"mode": "adaptive", "total_max_attempts": 10}))
for _ in range(14):
    ec2.describe_instances(Filters=[{"Name": "instance-state-name", "Values": ["running"]}])
print("done")
`;
      const r = await run(await pythonWithBoto3(), ["-c", script], { env: awsEnv({ HTTPS_PROXY: sluice.url, AWS_CA_BUNDLE: sluice.caCert }) });
      assert.equal(r.code, 0, r.stderr);
      assert.equal(r.stdout.trim(), "done");
      const refused = sluice.flows.filter((f) => f.metadata.aws_limit);
      // Non-mutating bucket × 0.1: 10 at once, then 2/s: the calls beyond it were refused and retried.
      assert.ok(refused.length >= 1, "some calls ran into the limit");
      assert.ok(sluice.flows.every((f) => (f.request.headers.get("user-agent") ?? "").includes("cfg/retry-mode#adaptive")));
      assert.equal(origin.requests.length, 14, "each call reached the server exactly once, after its retries");
    } finally {
      await Promise.all([sluice.close(), origin.close()]);
    }
  });
});

describe("Kinesis PutRecords under --fault aws-limits", { skip: needsPython("boto3", "python3-boto3") }, () => {
  test("records count against the shard with PutRecord's; beyond it boto3 gets 200 with FailedRecordCount and per-record ProvisionedThroughputExceededException", async () => {
    const origin = await startScriptedOrigin((req) => {
      const records = (JSON.parse(req.text) as { Records?: unknown[] }).Records ?? [];
      return Response.make(200, JSON.stringify({ FailedRecordCount: 0, Records: records.map((_, i) => ({ SequenceNumber: String(i + 1), ShardId: "shardId-000000000000" })) }), { "content-type": "application/x-amz-json-1.1" });
    });
    // Records per shard × 0.004: a bucket of 4 records, refilled 4/s.
    const sluice = await startSluice({ set: { map_remote: JSON.stringify([`|https://kinesis\\.eu-west-1\\.amazonaws\\.com|${origin.url}`]), fault_rules: JSON.stringify(["~svc kinesis => aws-limits scale=0.004"]) }, addons: [new Faults()] });
    try {
      const script = `
import boto3, botocore.config, json
k = boto3.client("kinesis", region_name="eu-west-1", config=botocore.config.Config(retries={"total_max_attempts": 1, "mode": "standard"}))
batch = lambda n: [{"Data": b"x", "PartitionKey": "k%d" % i} for i in range(n)]
first = k.put_records(StreamName="clicks", Records=batch(3))
second = k.put_records(StreamName="clicks", Records=batch(3))
print(json.dumps({"first": first["FailedRecordCount"], "second": second["FailedRecordCount"], "codes": sorted(set(r.get("ErrorCode", "ok") for r in second["Records"])), "n": len(second["Records"])}))
`;
      const r = await run(await pythonWithBoto3(), ["-c", script], { env: awsEnv({ HTTPS_PROXY: sluice.url, AWS_CA_BUNDLE: sluice.caCert }) });
      assert.equal(r.code, 0, r.stderr);
      assert.deepEqual(JSON.parse(r.stdout), { first: 0, second: 3, codes: ["ProvisionedThroughputExceededException"], n: 3 });
      assert.equal(origin.requests.length, 1, "the refused batch never reached the server");
    } finally {
      await Promise.all([sluice.close(), origin.close()]);
    }
  });
});
