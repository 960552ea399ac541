/**
 * DynamoDB capacity as AWS charges it under `--fault aws-limits` (issue 17), with real clients in
 * front of the local fake DynamoDB: a Query's answer is charged by its size after it comes (the
 * bucket goes into debt and the next call is throttled with the right ThrottlingReasons), the
 * partition is the partition key value's hash (two values in one partition share its budget, one
 * in another has its own), a provisioned table keeps 300 s of unused capacity (burst capacity);
 * and the throttling reasons sluice sends fit the format botocore's model documents. Lambda's
 * reserved concurrency (reserved=) with concurrent slow invocations, in one process and shared by
 * two sluice processes through a redis-server.
 */
import { test, describe } from "node:test";
import assert from "node:assert/strict";
import { readFile } from "node:fs/promises";
import { DynamoDBClient, GetItemCommand, PutItemCommand, QueryCommand } from "@aws-sdk/client-dynamodb";
import { LambdaClient, InvokeCommand } from "@aws-sdk/client-lambda";
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Response } from "../src/core/flow.js";
import { Faults } from "../src/addons/faults.js";
import { Shaping } from "../src/addons/shaping.js";
import { parseFaultRule } from "../src/addons/fault-rules.js";
import { awsLimits, AwsLimiter, parseAwsLimitsOptions, refusalOf } from "../src/aws/limits.js";
import { InProcessState } from "../src/core/shared-state.js";
import { itemBytes, partitionOf, readCostAfter } from "../src/aws/dynamodb-capacity.js";
import { startFakeDynamoDB, startScriptedOrigin } from "./support/fake-aws.js";
import { startRedis, redisMissing } from "./support/redis.js";
import { spawnSluice, SLUICE_BIN, assertOneLineError, type RunningSluice } from "./support/cli.js";
import { FleetConnection, redisClass } from "../src/fleet/connection.js";
import { RedisSharedState, SLOT_RECHECK_MS } from "../src/fleet/redis-state.js";
import { CHARGE_SCRIPT, SLOT_ENTER_SCRIPT, SLOT_RENEW_SCRIPT, TAKE_SCRIPT } from "../src/fleet/scripts.js";
import { LineLogger } from "../src/core/log.js";
import { startSluice } from "./support/sluice.js";
import { run, awsEnv, pythonWithBoto3, PYTHON_ALPN_RACE_GUARD } from "./support/run.js";
import { tunnelAgent } from "./support/tunnel-agent.js";
import { tflow } from "./support/tflow.js";
import { needsPython } from "./support/needs.js";
import { boto3Dynamo } from "./support/boto3-dynamo.js";

/** A filter compiler for rules whose filter does not matter here. */
const compile = (expression: string) => Object.assign(() => true, { expression });

const mapDynamo = (url: string) => JSON.stringify([`|https://dynamodb\\.eu-west-1\\.amazonaws\\.com|${url}`]);


/** boto3: the Query of the ten items, then a GetItem of one; prints each call's outcome. */
const QUERY_THEN_GET = `
q = call(ddb.query, TableName="orders", KeyConditionExpression="pk = :pk", ExpressionAttributeValues={":pk": {"S": "hot"}})
g = call(ddb.get_item, TableName="orders", Key={"pk": {"S": "hot"}, "sk": {"S": "i0"}})
print(json.dumps([q, g]))
`;

/** A fake DynamoDB whose table `orders` holds ten ~4 KB items under the partition key "hot" (a Query of them reads 40 KB). */
async function startDynamoWithTenItems(): Promise<Awaited<ReturnType<typeof startFakeDynamoDB>>> {
  const dynamo = await startFakeDynamoDB({ tables: [{ name: "orders", hashKey: "pk", rangeKey: "sk" }], region: "eu-west-1" });
  for (let i = 0; i < 10; i++) {
    const r = await fetch(dynamo.url, { method: "POST", headers: { "x-amz-target": "DynamoDB_20120810.PutItem", "content-type": "application/x-amz-json-1.0" }, body: JSON.stringify({ TableName: "orders", Item: { pk: { S: "hot" }, sk: { S: `i${i}` }, data: { S: "x".repeat(4000) } } }) });
    assert.equal(r.status, 200);
  }
  return dynamo;
}

describe("DynamoDB capacity under --fault aws-limits", () => {
  test("@aws-sdk/client-dynamodb: a Query's 40 KB answer is charged after it comes (10 half-RCUs of a 6-unit bucket), so the next read of that partition is throttled with TableReadKeyRangeThroughputExceeded", async () => {
    const dynamo = await startFakeDynamoDB({ tables: [{ name: "orders", hashKey: "pk", rangeKey: "sk" }], region: "eu-west-1" });
    // Seeded straight into the fake: 10 items of about 4 KB under one partition key value.
    for (let i = 0; i < 10; i++) {
      const r = await fetch(dynamo.url, { method: "POST", headers: { "x-amz-target": "DynamoDB_20120810.PutItem", "content-type": "application/x-amz-json-1.0" }, body: JSON.stringify({ TableName: "orders", Item: { pk: { S: "hot" }, sk: { S: `i${i}` }, data: { S: "x".repeat(4000) } } }) });
      assert.equal(r.status, 200);
    }
    // Reads per partition: 3,000 RCU × 0.001 = a bucket of 6 half-RCUs, refilled 6/s.
    const sluice = await startSluice({ set: { map_remote: mapDynamo(dynamo.url), fault_rules: JSON.stringify(["~svc dynamodb => aws-limits scale=0.001"]) }, addons: [new Faults()] });
    const ca = await readFile(sluice.caCert, "utf8");
    const client = new DynamoDBClient({ region: "eu-west-1", credentials: { accessKeyId: "AKIDEXAMPLE", secretAccessKey: "secret" }, maxAttempts: 1, requestHandler: { httpsAgent: tunnelAgent(sluice.port, ca) } });
    try {
      const page = await client.send(new QueryCommand({ TableName: "orders", KeyConditionExpression: "pk = :pk", ExpressionAttributeValues: { ":pk": { S: "hot" } } }));
      assert.equal(page.Count, 10, "the Query itself was admitted: the partition had capacity");
      const next = await client.send(new GetItemCommand({ TableName: "orders", Key: { pk: { S: "hot" }, sk: { S: "i0" } } })).then(
        () => null,
        (err: Error & { ThrottlingReasons?: { reason?: string; resource?: string }[]; $metadata?: { httpStatusCode?: number } }) => err,
      );
      assert.ok(next, "the Query's answer took the bucket into debt: the next read of the partition is throttled");
      assert.equal(next.name, "ProvisionedThroughputExceededException");
      assert.equal(next.$metadata?.httpStatusCode, 400);
      assert.deepEqual(next.ThrottlingReasons, [{ reason: "TableReadKeyRangeThroughputExceeded", resource: "arn:aws:dynamodb:eu-west-1:000000000000:table/orders" }]);
      const charged = sluice.flows.find((f) => f.request.headers.get("x-amz-target")?.endsWith(".Query"));
      assert.ok(charged);
      assert.equal(readCostAfter("Query", {}, charged.response!.text, "orders"), 10, "10 items of ~4 KB: 40 KB rounded up once, in 4 KB units");
    } finally {
      client.destroy();
      await Promise.all([sluice.close(), dynamo.close()]);
    }
  });

  test("--shape aws-limits in front of the same --fault: the read after a large Query waits for the debt its answer left, and is not throttled", { skip: needsPython("boto3", "python3-boto3") }, async () => {
    const dynamo = await startDynamoWithTenItems();
    const sluice = await startSluice({ set: { map_remote: mapDynamo(dynamo.url), shape_rules: JSON.stringify(["~svc dynamodb => aws-limits scale=0.001"]), fault_rules: JSON.stringify(["~svc dynamodb => aws-limits scale=0.001"]) }, addons: [new Shaping(), new Faults()] });
    try {
      const out = await boto3Dynamo<string[]>(sluice, QUERY_THEN_GET);
      assert.deepEqual(out, ["ok", "ok"]);
      const get = sluice.flows.find((f) => f.request.headers.get("x-amz-target")?.endsWith(".GetItem"))!;
      // 10 half-RCUs charged against a bucket of 6 refilled 6/s: 4 in debt, the GetItem waits for about 0.8 s of refill.
      assert.ok(Number((get.metadata.shaping as { waitMs: number }).waitMs) >= 400, JSON.stringify(get.metadata.shaping));
    } finally {
      await Promise.all([sluice.close(), dynamo.close()]);
    }
  });

  test("boto3: an answer larger than stream_large_bodies streams through unkept and is charged by its size on the wire", { skip: needsPython("boto3", "python3-boto3") }, async () => {
    const dynamo = await startDynamoWithTenItems();
    const sluice = await startSluice({ set: { map_remote: mapDynamo(dynamo.url), stream_large_bodies: "8k", fault_rules: JSON.stringify(["~svc dynamodb => aws-limits scale=0.001"]) }, addons: [new Faults()] });
    try {
      const out = await boto3Dynamo<string[]>(sluice, QUERY_THEN_GET);
      assert.deepEqual(out, ["ok", "ProvisionedThroughputExceededException TableReadKeyRangeThroughputExceeded@orders"]);
      const query = sluice.flows.find((f) => f.request.headers.get("x-amz-target")?.endsWith(".Query"))!;
      assert.equal(query.response!.streamed, true, "the 40 KB answer was not kept");
    } finally {
      await Promise.all([sluice.close(), dynamo.close()]);
    }
  });

  test("boto3: two partition key values that hash to one partition share its write budget; a value in another partition has its own", { skip: needsPython("boto3", "python3-boto3") }, async () => {
    const partitions = 2;
    const of = (pk: string) => partitionOf(JSON.stringify({ S: pk }), partitions);
    const candidates = Array.from({ length: 50 }, (_, i) => `customer-${i}`);
    const first = candidates[0]!;
    const sameAsFirst = candidates.find((c) => c !== first && of(c) === of(first))!;
    const elsewhere = candidates.find((c) => of(c) !== of(first))!;
    const dynamo = await startFakeDynamoDB({ tables: [{ name: "orders", hashKey: "pk" }], region: "eu-west-1" });
    // Writes per partition: 1,000 WCU × 0.001 = a bucket of 1, refilled 1/s.
    const sluice = await startSluice({ set: { map_remote: mapDynamo(dynamo.url), fault_rules: JSON.stringify([`~svc dynamodb => aws-limits scale=0.001 partitions=${partitions} keys=orders:pk`]) }, addons: [new Faults()] });
    try {
      const out = await boto3Dynamo<string[]>(sluice, `
put = lambda pk: call(ddb.put_item, TableName="orders", Item={"pk": {"S": pk}, "n": {"N": "1"}})
print(json.dumps([put(${JSON.stringify(first)}), put(${JSON.stringify(sameAsFirst)}), put(${JSON.stringify(elsewhere)})]))
`);
      assert.deepEqual(out, ["ok", "ProvisionedThroughputExceededException TableWriteKeyRangeThroughputExceeded@orders", "ok"], `${first} and ${sameAsFirst} in partition ${of(first)}, ${elsewhere} in ${of(elsewhere)}`);
    } finally {
      await Promise.all([sluice.close(), dynamo.close()]);
    }
  });

  test("boto3: a provisioned table keeps 300 s of unused capacity — drained, it throttles with TableWriteProvisionedThroughputExceeded; after 2.5 s idle a burst of 2 writes passes at 1 WCU/s", { skip: needsPython("boto3", "python3-boto3") }, async () => {
    const dynamo = await startFakeDynamoDB({ tables: [{ name: "orders", hashKey: "pk" }], region: "eu-west-1" });
    const sluice = await startSluice({ set: { map_remote: mapDynamo(dynamo.url), fault_rules: JSON.stringify(["~svc dynamodb => aws-limits provisioned=orders:1/1"]) }, addons: [new Faults()] });
    try {
      const out = await boto3Dynamo<{ drain: string; drained: string; burst: string[] }>(sluice, `
put = lambda pk, size=1: call(ddb.put_item, TableName="orders", Item={"pk": {"S": pk}, "data": {"S": "x" * size}})
drain = put("big", 310 * 1024)
drained = put("a")
time.sleep(2.5)
burst = [put("b"), put("c")]
print(json.dumps({"drain": drain, "drained": drained, "burst": burst}))
`);
      assert.equal(out.drain, "ok", "a 310 KB item costs the whole 300-WCU bucket (300 s × 1 WCU/s) and passes when it is full");
      assert.equal(out.drained, "ProvisionedThroughputExceededException TableWriteProvisionedThroughputExceeded@orders");
      assert.deepEqual(out.burst, ["ok", "ok"], "2.5 s of unused capacity is kept: two writes at once, above the 1 WCU/s rate");
    } finally {
      await Promise.all([sluice.close(), dynamo.close()]);
    }
  });

  test("item sizes and read costs follow AWS's rules; a ConsumedCapacity in the answer is taken as is", () => {
    // Names and values: "pk" + "a" (3), "n" + 123 (2 digits per byte + 1: 2 + 1), "l" + list overhead 3 + 1 per element + "x".
    assert.equal(itemBytes({ pk: { S: "a" }, n: { N: "123" }, l: { L: [{ S: "x" }] } }), 3 + 4 + (1 + 3 + 1 + 1));
    const item = { pk: { S: "k" }, data: { S: "x".repeat(5000) } };
    assert.equal(readCostAfter("GetItem", {}, JSON.stringify({ Item: item }), "t"), 2, "5 KB eventually consistent: two 4 KB units at half an RCU");
    assert.equal(readCostAfter("GetItem", { ConsistentRead: true }, JSON.stringify({ Item: item }), "t"), 4);
    assert.equal(readCostAfter("GetItem", {}, "{}", "t"), 1, "a missing item still costs one unit");
    assert.equal(readCostAfter("BatchGetItem", {}, JSON.stringify({ Responses: { t: [{ a: { S: "x".repeat(1500) } }, { a: { S: "x".repeat(6500) } }] } }), null), 3, "each item of a batch is rounded up on its own (4 KB + 8 KB)");
    assert.equal(readCostAfter("GetItem", {}, JSON.stringify({ Item: item, ConsumedCapacity: { TableName: "t", CapacityUnits: 7.5 } }), "t"), 15);
    assert.equal(readCostAfter("Query", {}, JSON.stringify({ Items: [item], Count: 1, ScannedCount: 4 }), "t"), 5, "a filter's dropped items were read too: 4 × 5 KB = 20 KB");
  });

  test("a ConsumedCapacity below what a write was charged gives the difference back to the bucket (never above its size); a cost sluice computed gives nothing back", () => {
    // orders: 1 WCU/s provisioned, a bucket of 300 WCU (burst capacity). At one instant (no refill).
    const limiter = new AwsLimiter({ provisioned: { orders: { read: 1, write: 1 } } });
    const state = new InProcessState();
    const put = (kb: number) => tflow({ method: "POST", host: "dynamodb.eu-west-1.amazonaws.com", path: "/", reqHeaders: { host: "dynamodb.eu-west-1.amazonaws.com", "x-amz-target": "DynamoDB_20120810.PutItem", authorization: "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20261203/eu-west-1/dynamodb/aws4_request" }, reqBody: JSON.stringify({ TableName: "orders", Item: { pk: { S: "a" }, d: { S: "x".repeat(kb * 1024 - 4) } } }) });
    const answer = (flow: ReturnType<typeof tflow>, body: unknown) => (flow.response = Response.make(200, JSON.stringify(body), { "content-type": "application/x-amz-json-1.0" }));
    /** The limit that refused `flow` at `at`, or null when admitted (in-process: answered at once). */
    const refusedBy = (flow: ReturnType<typeof tflow>, at: number) => {
      const refused = limiter.admit(flow, state, at);
      assert.ok(!(refused instanceof Promise));
      return refused?.limit.name ?? null;
    };
    const big = put(290);
    assert.equal(refusedBy(big, 0), null, "290 WCU of 300 by the item's size");
    answer(big, { ConsumedCapacity: { TableName: "orders", CapacityUnits: 1 } });
    limiter.settle(big, state, 0);
    const next = put(250);
    assert.equal(refusedBy(next, 0), null, "AWS reported 1 WCU: 289 came back, so 250 more fit");
    answer(next, {});
    limiter.settle(next, state, 0);
    assert.equal(refusedBy(put(50), 0), "provisioned writes of orders", "no ConsumedCapacity: the 250 stay charged (49 left)");
    // Given back after the bucket refilled to full: still at most its 300.
    const small = put(10);
    assert.equal(refusedBy(small, 1_000_000), null);
    answer(small, { ConsumedCapacity: { TableName: "orders", CapacityUnits: 1 } });
    limiter.settle(small, state, 2_000_000);
    assert.equal(refusedBy(put(300), 2_000_000), null, "a full bucket pays 300");
    assert.equal(refusedBy(put(9), 2_000_000), "provisioned writes of orders", "the 9 given back to a full bucket were not kept above its size");
  });

  test("@aws-sdk/client-dynamodb: two 200 KB PutItems against a 300 WCU bucket both pass when the answers report 1 WCU each (ConsumedCapacity gives the rest back)", async () => {
    const origin = await startScriptedOrigin(() => Response.make(200, JSON.stringify({ ConsumedCapacity: { TableName: "orders", CapacityUnits: 1 } }), { "content-type": "application/x-amz-json-1.0" }));
    const sluice = await startSluice({ set: { map_remote: mapDynamo(origin.url), fault_rules: JSON.stringify(["~svc dynamodb => aws-limits provisioned=orders:1/1"]) }, addons: [new Faults()] });
    const ca = await readFile(sluice.caCert, "utf8");
    const client = new DynamoDBClient({ region: "eu-west-1", credentials: { accessKeyId: "AKIDEXAMPLE", secretAccessKey: "secret" }, maxAttempts: 1, requestHandler: { httpsAgent: tunnelAgent(sluice.port, ca) } });
    try {
      for (const sk of ["a", "b"]) {
        const out = await client.send(new PutItemCommand({ TableName: "orders", Item: { pk: { S: "k" }, sk: { S: sk }, data: { S: "x".repeat(200 * 1024) } }, ReturnConsumedCapacity: "TOTAL" }));
        assert.equal(out.ConsumedCapacity?.CapacityUnits, 1);
      }
      assert.equal(origin.requests.length, 2, "the second write was not throttled: the first's 200 WCU charge came back down to the 1 AWS reported");
    } finally {
      client.destroy();
      await Promise.all([sluice.close(), origin.close()]);
    }
  });

  test("a Query or Scan of a global secondary index is charged to the index's own budget (Index… reasons naming the index); a local one (lsi=) shares its table's", () => {
    // orders: 1 RCU/s provisioned, a bucket of 600 half-RCUs; at one instant (no refill).
    const limiter = new AwsLimiter({ provisioned: { orders: { read: 1, write: 1 } }, lsi: { orders: ["byDate"] } });
    const state = new InProcessState();
    const query = (index: string | null, op = "Query") => tflow({ method: "POST", host: "dynamodb.eu-west-1.amazonaws.com", path: "/", reqHeaders: { host: "dynamodb.eu-west-1.amazonaws.com", "x-amz-target": `DynamoDB_20120810.${op}`, authorization: "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20261203/eu-west-1/dynamodb/aws4_request" }, reqBody: JSON.stringify({ TableName: "orders", ...(index ? { IndexName: index } : {}), ...(op === "Query" ? { KeyConditionExpression: "c = :c", ExpressionAttributeValues: { ":c": { S: "x" } } } : {}) }) });
    const refusedBy = (flow: ReturnType<typeof tflow>) => {
      const refused = limiter.admit(flow, state, 0);
      assert.ok(!(refused instanceof Promise));
      return refused ? (refusalOf(refused.limit, flow, refused.parts).fields!.ThrottlingReasons as unknown[])[0] : null;
    };
    /** A read whose answer says it consumed `rcu` RCUs: charged that, draining whichever bucket it was counted in. */
    const drain = (flow: ReturnType<typeof tflow>, rcu: number) => {
      assert.equal(refusedBy(flow), null);
      flow.response = Response.make(200, JSON.stringify({ Items: [], ConsumedCapacity: { TableName: "orders", CapacityUnits: rcu } }), { "content-type": "application/x-amz-json-1.0" });
      limiter.settle(flow, state, 0);
    };
    drain(query("byCustomer"), 300);
    assert.deepEqual(refusedBy(query("byCustomer")), { reason: "IndexReadProvisionedThroughputExceeded", resource: "arn:aws:dynamodb:eu-west-1:000000000000:table/orders/index/byCustomer" });
    assert.deepEqual(refusedBy(query("byCustomer", "Scan")), { reason: "IndexReadProvisionedThroughputExceeded", resource: "arn:aws:dynamodb:eu-west-1:000000000000:table/orders/index/byCustomer" }, "a Scan of the index counts against it too");
    assert.equal(refusedBy(query(null)), null, "the table's budget is its own: the index's reads did not spend it");
    assert.equal(refusedBy(query("byRegion")), null, "another global index has its own");
    drain(query("byDate"), 300);
    assert.deepEqual(refusedBy(query(null)), { reason: "TableReadProvisionedThroughputExceeded", resource: "arn:aws:dynamodb:eu-west-1:000000000000:table/orders" }, "a local index's reads are the table's");
    assert.throws(() => parseAwsLimitsOptions({ lsi: "orders" }), /lsi= expects TABLE:INDEX/);
    assert.deepEqual(parseAwsLimitsOptions({ lsi: "orders:a,orders:b,users:c" }).lsi, { orders: ["a", "b"], users: ["c"] });
  });

  test("the ThrottlingReasons sluice sends fit the format botocore's model documents for ThrottlingReason.reason (ResourceType + OperationType + LimitType)", { skip: needsPython("boto3", "python3-boto3") }, async () => {
    const flow = tflow({ method: "POST", host: "dynamodb.eu-west-1.amazonaws.com", path: "/", reqHeaders: { host: "dynamodb.eu-west-1.amazonaws.com", "x-amz-target": "DynamoDB_20120810.PutItem" }, reqBody: '{"TableName":"t","Item":{"pk":{"S":"a"}}}' });
    const info = { service: "dynamodb", region: "eu-west-1", operation: "PutItem", bucket: null, key: null, invocationId: null, attempt: null, maxAttempts: null, sdk: null, retryMode: null };
    // And a Query of a global secondary index: the same reasons with Index for Table.
    const onIndex = tflow({ method: "POST", host: "dynamodb.eu-west-1.amazonaws.com", path: "/", reqHeaders: { host: "dynamodb.eu-west-1.amazonaws.com", "x-amz-target": "DynamoDB_20120810.Query" }, reqBody: '{"TableName":"t","IndexName":"g"}' });
    const dynamoLimits = awsLimits({ provisioned: { t: { read: 1, write: 1 } } }).filter((l) => l.service === "dynamodb" && l.errorFor);
    const reasonsOf = (f: typeof flow, operation: string) => dynamoLimits.map((l) => (l.errorFor!(f, { ...info, operation }).fields!.ThrottlingReasons as { reason: string }[])[0]!.reason);
    const reasons = [...new Set([...reasonsOf(flow, "PutItem"), ...reasonsOf(onIndex, "Query")])];
    assert.equal(reasons.length, 12, reasons.join(", "));
    const script = `
import botocore.session, json, re, itertools
doc = botocore.session.get_session().get_service_model("dynamodb").shape_for("ThrottlingReason").members["reason"].documentation
resources = re.search(r"Resource Type[^:]*:\\s*(\\w+) or (\\w+)", doc).groups()
operations = re.search(r"Operation Type[^:]*:\\s*(\\w+) or (\\w+)", doc).groups()
limits = re.findall(r"<code>(\\w+)</code>:", doc)
print(json.dumps(sorted(r + o + l for r, o, l in itertools.product(resources, operations, limits))))
`;
    const r = await run(await pythonWithBoto3(), ["-c", script]);
    assert.equal(r.code, 0, r.stderr);
    const documented = JSON.parse(r.stdout) as string[];
    assert.ok(documented.includes("TableReadKeyRangeThroughputExceeded") && documented.length >= 16, documented.join(", "));
    for (const reason of reasons) assert.ok(documented.includes(reason), `${reason} is not among the documented reasons: ${documented.join(", ")}`);
  });
});

const lambdaAnswer = () => Response.make(200, '{"ok":true}', { "content-type": "application/json", "x-amz-executed-version": "$LATEST" });

describe("Lambda reserved concurrency under --fault aws-limits", () => {
  test("@aws-sdk/client-lambda: beyond a function's reserved= concurrency, ReservedFunctionConcurrentInvocationLimitExceeded; other functions share the account's pool less the reservation, beyond it ConcurrentInvocationLimitExceeded", async () => {
    // Each invocation runs 1.5 s, so those sent together are all in flight at once.
    const origin = await startScriptedOrigin(lambdaAnswer, { answerAfterMs: () => 1500 });
    // 1,000 × 0.005 = 5 concurrent executions in the account, 2 reserved for resize: 3 unreserved.
    const faults = new Faults();
    const sluice = await startSluice({ set: { map_remote: JSON.stringify([`|https://lambda\\.eu-west-1\\.amazonaws\\.com|${origin.url}`]), fault_rules: JSON.stringify(["aws-limits scale=0.005 reserved=resize:2"]) }, addons: [faults] });
    const ca = await readFile(sluice.caCert, "utf8");
    const client = new LambdaClient({ region: "eu-west-1", credentials: { accessKeyId: "AKIDEXAMPLE", secretAccessKey: "secret" }, maxAttempts: 1, requestHandler: { httpsAgent: tunnelAgent(sluice.port, ca) } });
    const invoke = (fn: string) =>
      client.send(new InvokeCommand({ FunctionName: fn, Payload: Buffer.from("{}") })).then(
        () => "ok",
        (err: Error & { Reason?: string; $metadata?: { httpStatusCode?: number } }) => `${err.$metadata?.httpStatusCode} ${err.name} ${err.Reason}`,
      );
    try {
      const [resize, thumb] = await Promise.all([Promise.all([1, 2, 3, 4].map(() => invoke("resize"))), Promise.all([1, 2, 3, 4, 5].map(() => invoke("thumb")))]);
      assert.deepEqual(resize.sort(), ["429 TooManyRequestsException ReservedFunctionConcurrentInvocationLimitExceeded", "429 TooManyRequestsException ReservedFunctionConcurrentInvocationLimitExceeded", "ok", "ok"], "2 reserved for resize");
      assert.deepEqual(thumb.sort(), ["429 TooManyRequestsException ConcurrentInvocationLimitExceeded", "429 TooManyRequestsException ConcurrentInvocationLimitExceeded", "ok", "ok", "ok"], "the 3 unreserved for the rest, whatever resize holds");
      const limiter = (faults as unknown as { configured: { limiter: AwsLimiter | null }[] }).configured[0]!.limiter!;
      assert.equal(limiter.inFlightCount, 0, "every slot was released when its answer ended");
      assert.equal((await invoke("resize")), "ok", "and can be taken again");
    } finally {
      client.destroy();
      await Promise.all([sluice.close(), origin.close()]);
    }
  });

  test("sluice limits shows reserved= and provisioned= as they apply, with their sources; a bad option is one line", async () => {
    const lambda = await run(process.execPath, [SLUICE_BIN, "limits", "lambda", "reserved=resize:10"]);
    assert.equal(lambda.code, 0, lambda.stderr);
    assert.match(lambda.stdout, /unreserved concurrent executions: at most 990 invocations in flight, per account and region; 429 TooManyRequestsException/);
    assert.match(lambda.stdout, /reserved concurrency of resize: at most 10 invocations in flight, per function; 429 TooManyRequestsException\n.*\n.*\n\s+source: https:\/\/docs\.aws\.amazon\.com\/lambda\/latest\/dg\/configuration-concurrency\.html/);
    const dynamo = await run(process.execPath, [SLUICE_BIN, "limits", "dynamodb", "provisioned=orders:100/50", "partitions=8"]);
    assert.equal(dynamo.code, 0, dynamo.stderr);
    assert.match(dynamo.stdout, /provisioned reads of orders: bucket 60,000 half-RCUs \(100 RCU provisioned\), refill 200\/s, per table; 400 ProvisionedThroughputExceededException/);
    assert.match(dynamo.stdout, /provisioned writes of orders: bucket 15,000 WCU \(50 provisioned\), refill 50\/s/);
    assert.match(dynamo.stdout, /reads per partition: .* per table and partition \(of 8\)/);
    assertOneLineError(await run(process.execPath, [SLUICE_BIN, "limits", "lambda", "reserved=resize"]), /limits: reserved= expects FUNCTION:N/, "bad reserved=");
    assertOneLineError(await run(process.execPath, [SLUICE_BIN, "limits", "lambda", "reserve=resize:1"]), /limits: unknown option reserve=; options are scale= depth= partitions= keys= provisioned= reserved=/, "unknown option");
  });

  test("reserved= and the list options may be repeated; reserving more than the account leaves unreserved is refused in one line", () => {
    const rule = parseFaultRule("aws-limits scale=0.01 reserved=a:2 reserved=b:3 keys=t:pk", "1", compile);
    assert.equal(rule.action.name, "aws-limits");
    assert.deepEqual((rule.action as { reserved?: Record<string, number> }).reserved, { a: 2, b: 3 });
    assert.throws(() => parseFaultRule("~all => throttle p=0.3 p=0.5", "1", compile), /gives p= twice: give it once/);
    assert.throws(() => parseFaultRule("aws-limits reserved=a:950", "1", compile), /reserves 950 concurrent executions, but the account has 1000 and AWS keeps 100 of them unreserved: reserve at most 900/);
    assert.throws(() => parseFaultRule("aws-limits provisioned=orders:100", "1", compile), /provisioned= expects TABLE:RCU\/WCU/);
  });
});

/** boto3 invokes `resize` three times at once through each sluice URL given (one attempt per call); prints each outcome, sorted. */
const BOTO3_INVOKE_THREE_EACH = `${PYTHON_ALPN_RACE_GUARD}
import boto3, botocore.config, botocore.exceptions, json, sys, threading
out = []
def invoke(url):
    lam = boto3.client("lambda", region_name="eu-west-1", endpoint_url=url, config=botocore.config.Config(retries={"total_max_attempts": 1, "mode": "standard"}))
    try:
        lam.invoke(FunctionName="resize", Payload=b"{}")
        out.append("ok")
    except botocore.exceptions.ClientError as e:
        out.append(e.response.get("Reason") or e.response["Error"]["Code"])
threads = [threading.Thread(target=invoke, args=(url,)) for url in sys.argv[1:] for _ in range(3)]
[t.start() for t in threads]
[t.join() for t in threads]
print(json.dumps(sorted(out)))
`;

/**
 * Two `sluice dump` processes in one fleet (a fresh redis-server) in front of a fake Lambda whose
 * answers take `answerAfterMs`; boto3 invokes three times through each at once. Hands the sorted
 * outcomes and the origin to `check`, then checks that no fleet slot is left held.
 */
async function invokeThroughTwoFleetProcesses(o: { fleet: string; rule: string[]; answerAfterMs: number }, check: (outcomes: string[], origin: Awaited<ReturnType<typeof startScriptedOrigin>>) => void): Promise<void> {
  const redis = await startRedis();
  const origin = await startScriptedOrigin(lambdaAnswer, { answerAfterMs: () => o.answerAfterMs });
  const confdir = mkdtempSync(join(tmpdir(), `sluice-${o.fleet}-`));
  const procs: RunningSluice[] = [];
  try {
    for (let i = 0; i < 2; i++) {
      procs.push(await spawnSluice(["dump", "-p", "0", "--confdir", confdir, "--mode", `reverse:${origin.url}`, "--set", `shared_state=${redis.url}`, "--set", `fleet=${o.fleet}`, ...o.rule]));
    }
    const r = await run(await pythonWithBoto3(), ["-c", BOTO3_INVOKE_THREE_EACH, ...procs.map((p) => `http://127.0.0.1:${p.port}`)], { env: awsEnv() });
    assert.equal(r.code, 0, r.stderr);
    check(JSON.parse(r.stdout) as string[], origin);
    const sets = redis.cli("--scan", "--pattern", `sluice:{${o.fleet}}:slots:*`).split("\n").filter(Boolean);
    for (const key of sets) assert.equal(redis.cli("ZCARD", key).trim(), "0", `${key} holds no slot once the invocations ended`);
  } finally {
    await Promise.all(procs.map((p) => p.stop()));
    await Promise.all([origin.close(), redis.stop()]);
  }
}

describe("Lambda concurrency shared by a fleet through Redis", { skip: redisMissing() ?? false }, () => {
  test("two sluice processes sharing a redis-server share a function's reserved concurrency: 6 invocations through both, 2 in flight in all; no slot is left behind", { skip: needsPython("boto3", "python3-boto3") }, async () => {
    await invokeThroughTwoFleetProcesses({ fleet: "lam", rule: ["--fault", "aws-limits scale=0.005 reserved=resize:2"], answerAfterMs: 2000 }, (out) => {
      assert.deepEqual(out, ["ReservedFunctionConcurrentInvocationLimitExceeded", "ReservedFunctionConcurrentInvocationLimitExceeded", "ReservedFunctionConcurrentInvocationLimitExceeded", "ReservedFunctionConcurrentInvocationLimitExceeded", "ok", "ok"], "2 in flight across the fleet, not 2 per process");
    });
  });

  test("--shape aws-limits in two sluice processes sharing a redis-server: 6 concurrent invocations wait for the fleet's 2 slots — all succeed, none throttled, the function never runs more than 2 at once", { skip: needsPython("boto3", "python3-boto3") }, async () => {
    await invokeThroughTwoFleetProcesses({ fleet: "lamshape", rule: ["--shape", "aws-limits scale=0.005 reserved=resize:2"], answerAfterMs: 1000 }, (out, origin) => {
      assert.deepEqual(out, ["ok", "ok", "ok", "ok", "ok", "ok"], "every invocation waited for a slot and none was refused");
      assert.equal(origin.requests.length, 6);
      assert.ok(origin.inFlight.most <= 2, `the function ran ${origin.inFlight.most} at once: the fleet's 2 slots, not 2 per process`);
    });
  });

  test("waitForSlot: a process's waiters get fleet slots in arrival order, woken by another process's leave (no polling); a cancelled waiter holds nothing; a lapsed lease is found by the re-check", async () => {
    const redis = await startRedis();
    const log = new LineLogger("error");
    const conns = [0, 1].map((i) => new FleetConnection({ url: redis.url, fleet: "w", instance: `p${i}`, fallback: "local" }, log));
    const [a, b] = conns.map((c) => new RedisSharedState(c, log)) as [RedisSharedState, RedisSharedState];
    const raw = new (redisClass())(redis.url, { keyPrefix: "sluice:{w}:" });
    try {
      for (const c of conns) assert.equal(await c.whenUp(5000), true);
      assert.equal(await b.enterSlot("k", "b1", 2), true);
      assert.equal(await b.enterSlot("k", "b2", 2), true);
      const order: string[] = [];
      const waits = ["w1", "w2", "w3"].map((h) => {
        const w = a.waitForSlot("k", h, 2);
        void w.granted.then((held) => held && order.push(h));
        return w;
      });
      await new Promise((r) => setTimeout(r, 150));
      assert.deepEqual(order, [], "both slots are held by the other process");
      const asksWhileWaiting = a.stats.roundTrips;
      await new Promise((r) => setTimeout(r, 300));
      // A polling loop would ask dozens of times; the line asks once per SLOT_RECHECK_MS (2 allows a late subscription's ask and a late timer on a loaded machine).
      assert.ok(a.stats.roundTrips - asksWhileWaiting <= 2, `waiting asks Redis at most once per ${SLOT_RECHECK_MS} ms: ${a.stats.roundTrips - asksWhileWaiting} round trips in 300 ms`);
      waits[1]!.cancel();
      assert.equal(await waits[1]!.granted, false);
      await b.leaveSlot("k", "b1");
      await waits[0]!.granted;
      assert.deepEqual(order, ["w1"], "the first to come gets the freed slot, woken by the leave's notice");
      await b.leaveSlot("k", "b2");
      await waits[2]!.granted;
      assert.deepEqual(order, ["w1", "w3"], "the cancelled waiter is skipped");
      assert.deepEqual((await raw.zrange("slots:k", 0, -1)).sort(), ["w1", "w3"]);
      // A slot whose holder died (its lease lapses, announced to no one) is found by the re-check.
      await a.leaveSlot("k", "w1");
      await a.leaveSlot("k", "w3");
      await raw.eval(SLOT_ENTER_SCRIPT, 1, "slots:k", "dead", 1, 300);
      const late = a.waitForSlot("k", "w4", 1);
      assert.equal(await late.granted, true);
      assert.deepEqual(await raw.zrange("slots:k", 0, -1), ["w4"]);
      await a.leaveSlot("k", "w4");
    } finally {
      raw.disconnect();
      await Promise.all([a.close(), b.close()]);
      await Promise.all(conns.map((c) => c.close()));
      await redis.stop();
    }
  });

  test("a slot whose holder stops renewing its lease (a killed process) is free again when the lease lapses; a renewal moves the lease on; a charge takes the fleet's bucket into debt", async () => {
    const redis = await startRedis();
    const r = new (redisClass())(redis.url);
    try {
      const enter = (holder: string, max: number, leaseMs: number) => r.eval(SLOT_ENTER_SCRIPT, 1, "slots:k", holder, max, leaseMs) as Promise<number>;
      assert.equal(await enter("dead", 1, 300), 1);
      assert.equal(await enter("alive", 1, 300), 0, "the one slot is held");
      await new Promise((resolve) => setTimeout(resolve, 400));
      assert.equal(await enter("alive", 1, 300), 1, "the dead holder's lease lapsed");
      const before = Number(await r.zscore("slots:k", "alive"));
      await new Promise((resolve) => setTimeout(resolve, 100));
      await r.eval(SLOT_RENEW_SCRIPT, 1, "slots:k", 300, "alive", "gone");
      assert.ok(Number(await r.zscore("slots:k", "alive")) >= before + 100, "a renewal moves the lease's end to 300 ms from now");
      assert.equal(await r.zscore("slots:k", "gone"), null, "a holder that is not there is not brought back");
      // A read's charge in the fleet: 8 from a full bucket of 5 (10/s) leaves it 3 in debt, so a take of 1 waits 400 ms.
      await r.eval(CHARGE_SCRIPT, 1, "bucket:b", 10, 5, 8);
      const [granted, wait] = (await r.eval(TAKE_SCRIPT, 1, "bucket:b", 10, 5, 1, 0, 1, 1)) as [number, string];
      assert.equal(granted, 0);
      assert.ok(Number(wait) > 200 && Number(wait) <= 400, `3 in debt and 1 to take at 10/s: up to 400 ms, less what refilled meanwhile; wait ${wait} ms`);
      // A cost AWS reported lower gives tokens back (a negative charge), never above the bucket's size.
      await r.eval(CHARGE_SCRIPT, 1, "bucket:b", 10, 5, -100);
      assert.equal(Number(await r.hget("bucket:b", "t")), 5, "given back up to the bucket's 5, not beyond");
    } finally {
      r.disconnect();
      await redis.stop();
    }
  });
});
