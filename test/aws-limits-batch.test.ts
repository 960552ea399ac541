/**
 * DynamoDB batches and transactions under `--fault aws-limits`: each item is charged to its own
 * table's and partition's buckets (not the request's first table), with real clients through
 * sluice in front of a scripted DynamoDB. When some items' buckets are empty the whole call is
 * refused (sluice cannot forward part of a signed request): batches with ThrottlingException (or
 * ProvisionedThroughputExceededException) naming the tables and partitions over, transactions with
 * TransactionCanceledException and a CancellationReason per item, as AWS answers them.
 */
import { test, describe } from "node:test";
import assert from "node:assert/strict";
import { readFile } from "node:fs/promises";
import { DynamoDBClient, TransactWriteItemsCommand, PutItemCommand, type TransactionCanceledException } from "@aws-sdk/client-dynamodb";
import { Response, type Request } from "../src/core/flow.js";
import { Faults } from "../src/addons/faults.js";
import { Shaping } from "../src/addons/shaping.js";
import { AwsLimiter } from "../src/aws/limits.js";
import { InProcessState } from "../src/core/shared-state.js";
import { partitionOf, requestItemsOf } from "../src/aws/dynamodb-capacity.js";
import { startScriptedOrigin } from "./support/fake-aws.js";
import { startSluice } from "./support/sluice.js";
import { tunnelAgent } from "./support/tunnel-agent.js";
import { tflow } from "./support/tflow.js";
import { needsPython } from "./support/needs.js";
import { boto3Dynamo } from "./support/boto3-dynamo.js";

const mapDynamo = (url: string) => JSON.stringify([`|https://dynamodb\\.eu-west-1\\.amazonaws\\.com|${url}`]);
const PARTITIONS = 2;
const partition = (pk: string) => partitionOf(JSON.stringify({ S: pk }), PARTITIONS);
/** The first of `name-0`, `name-1`, … whose partition `want` accepts. */
const valueIn = (name: string, want: (p: number) => boolean) => Array.from({ length: 50 }, (_, i) => `${name}-${i}`).find((v) => want(partition(v)))!;

/**
 * A DynamoDB that answers every data-plane call as a success: BatchGetItem returns each key asked
 * for as an item (`big-…` keys with 100 KB of data, so their read costs 25 units), the rest `{}`.
 */
function dynamoAnswer(req: Request): Response {
  const op = (req.headers.get("x-amz-target") ?? "").split(".")[1];
  const body = JSON.parse(req.text || "{}") as { RequestItems?: Record<string, { Keys?: Record<string, { S: string }>[] }> };
  let out: unknown = {};
  if (op === "BatchGetItem") {
    out = { Responses: Object.fromEntries(Object.entries(body.RequestItems ?? {}).map(([t, r]) => [t, (r.Keys ?? []).map((k) => ({ ...k, ...(k.pk?.S.startsWith("big") ? { data: { S: "x".repeat(100 * 1024) } } : {}) }))])), UnprocessedKeys: {} };
  } else if (op === "BatchWriteItem") out = { UnprocessedItems: {} };
  return Response.make(200, JSON.stringify(out), { "content-type": "application/x-amz-json-1.0" });
}


/** boto3 (see support/boto3-dynamo) with `put(table, pk)`, a BatchWriteItem PutRequest of a one-attribute item. */
const boto3Batch = <T>(sluice: { url: string; caCert: string }, body: string) =>
  boto3Dynamo<T>(sluice, `put = lambda t, pk: {"PutRequest": {"Item": {"pk": {"S": pk}, "n": {"N": "1"}}}}\n${body}`);

const operationsSeen = (origin: { requests: { headers: Record<string, string | string[] | undefined> }[] }) => origin.requests.map((r) => String(r.headers["x-amz-target"]).split(".")[1]);

describe("DynamoDB batches and transactions are charged item by item under --fault aws-limits", () => {
  // Writes per partition: 1,000 WCU × 0.001 = a bucket of 1 WCU, refilled 1/s; reads 6 half-RCUs, 6/s.
  const rule = `~svc dynamodb => aws-limits scale=0.001 partitions=${PARTITIONS} keys=orders:pk,users:pk`;
  const hot = valueIn("hot", () => true);
  const cool = valueIn("cool", (p) => p !== partition(hot));
  const u1 = valueIn("u", () => true);
  const u2 = valueIn("u", (p) => p !== partition(u1));

  test("boto3: a BatchWriteItem whose first table is users is refused for its orders item in a drained partition (ThrottlingException naming orders), nothing is forwarded or charged; a TransactWriteItems is cancelled with [None, ThrottlingError]", { skip: needsPython("boto3", "python3-boto3") }, async () => {
    const origin = await startScriptedOrigin(dynamoAnswer);
    const sluice = await startSluice({ set: { map_remote: mapDynamo(origin.url), fault_rules: JSON.stringify([rule]) }, addons: [new Faults()] });
    try {
      const out = await boto3Batch<string[]>(sluice, `
out = [call(ddb.put_item, TableName="orders", Item={"pk": {"S": ${JSON.stringify(hot)}}})]
out.append(call(ddb.batch_write_item, RequestItems={"users": [put("users", ${JSON.stringify(u1)})], "orders": [put("orders", ${JSON.stringify(hot)})]}))
out.append(call(ddb.batch_write_item, RequestItems={"users": [put("users", ${JSON.stringify(u1)})], "orders": [put("orders", ${JSON.stringify(cool)})]}))
out.append(call(ddb.transact_write_items, TransactItems=[{"Put": {"TableName": "users", "Item": {"pk": {"S": ${JSON.stringify(u2)}}}}}, {"Put": {"TableName": "orders", "Item": {"pk": {"S": ${JSON.stringify(hot)}}}}}]))
print(json.dumps(out))
`);
      assert.deepEqual(out, [
        "ok",
        "ThrottlingException TableWriteKeyRangeThroughputExceeded@orders",
        "ok",
        "TransactionCanceledException None ThrottlingError",
      ], `${hot} drained by the PutItem; ${cool} in the other partition; the refused batch gave ${u1}'s partition back, so the next batch's ${u1} passes; ${u2} has a partition of its own`);
      assert.deepEqual(operationsSeen(origin), ["PutItem", "BatchWriteItem"], "the refused batch and the cancelled transaction never reached DynamoDB");
      const refused = sluice.flows.find((f) => f.response?.statusCode === 400 && f.request.headers.get("x-amz-target")?.endsWith(".BatchWriteItem"))!;
      assert.match(refused.response!.text, /"throttlingReasons":\[\{"reason":"TableWriteKeyRangeThroughputExceeded","resource":"arn:aws:dynamodb:eu-west-1:000000000000:table\/orders"\}\]/, "ThrottlingException's list is throttlingReasons, as botocore's model spells it");
    } finally {
      await Promise.all([sluice.close(), origin.close()]);
    }
  });

  test("boto3: a BatchGetItem's answer is charged to each item's partition by its size, so a GetItem of that partition is throttled after it, and a batch including it is refused", { skip: needsPython("boto3", "python3-boto3") }, async () => {
    const origin = await startScriptedOrigin(dynamoAnswer);
    const sluice = await startSluice({ set: { map_remote: mapDynamo(origin.url), fault_rules: JSON.stringify([rule]) }, addons: [new Faults()] });
    const big = valueIn("big", () => true);
    try {
      const out = await boto3Batch<string[]>(sluice, `
key = lambda pk: {"pk": {"S": pk}}
out = [call(ddb.batch_get_item, RequestItems={"users": {"Keys": [key(${JSON.stringify(u1)})]}, "orders": {"Keys": [key(${JSON.stringify(big)})]}})]
out.append(call(ddb.get_item, TableName="orders", Key=key(${JSON.stringify(big)})))
out.append(call(ddb.batch_get_item, RequestItems={"users": {"Keys": [key(${JSON.stringify(u2)})]}, "orders": {"Keys": [key(${JSON.stringify(big)})]}}))
out.append(call(ddb.get_item, TableName="users", Key=key(${JSON.stringify(u1)})))
print(json.dumps(out))
`);
      assert.deepEqual(out, [
        "ok",
        "ProvisionedThroughputExceededException TableReadKeyRangeThroughputExceeded@orders",
        "ThrottlingException TableReadKeyRangeThroughputExceeded@orders",
        "ok",
      ], `the 100 KB item of ${big} cost 25 half-RCUs of its partition's 6 (debt for about 3 s); ${u1}'s small item one of users'`);
    } finally {
      await Promise.all([sluice.close(), origin.close()]);
    }
  });

  test("--shape aws-limits in front of the same --fault: BatchWriteItems whose items share a drained partition wait for it to refill, and none is throttled", { skip: needsPython("boto3", "python3-boto3") }, async () => {
    const origin = await startScriptedOrigin(dynamoAnswer);
    // Partitions of 2 WCU, refilled 2/s: the queue keeps one in hand. (With the 1-WCU partitions of
    // the tests above it keeps none, so a request the queue let go the moment its bucket refilled
    // could reach the fault's bucket a few ms before that one had: on a loaded machine, throttled.)
    const paced = rule.replace("scale=0.001", "scale=0.002");
    const sluice = await startSluice({ set: { map_remote: mapDynamo(origin.url), shape_rules: JSON.stringify([paced]), fault_rules: JSON.stringify([paced]) }, addons: [new Shaping(), new Faults()] });
    try {
      const out = await boto3Batch<string[]>(sluice, `
print(json.dumps([call(ddb.batch_write_item, RequestItems={"users": [put("users", ${JSON.stringify(u1)})], "orders": [put("orders", ${JSON.stringify(hot)})]}) for _ in range(3)]))
`);
      assert.deepEqual(out, ["ok", "ok", "ok"]);
      assert.deepEqual(operationsSeen(origin), ["BatchWriteItem", "BatchWriteItem", "BatchWriteItem"]);
      const waits = sluice.flows.map((f) => Number((f.metadata.shaping as { waitMs?: number } | undefined)?.waitMs ?? -1));
      // The queue lets one batch go per partition every 0.5 s: the second and third wait for it.
      assert.ok(waits.filter((w) => w >= 350).length >= 2, `waits ${waits.join(", ")} ms`);
    } finally {
      await Promise.all([sluice.close(), origin.close()]);
    }
  });

  test("@aws-sdk/client-dynamodb: a cancelled TransactWriteItems carries one CancellationReason per item, in the request's order", async () => {
    const origin = await startScriptedOrigin(dynamoAnswer);
    const sluice = await startSluice({ set: { map_remote: mapDynamo(origin.url), fault_rules: JSON.stringify([rule]) }, addons: [new Faults()] });
    const ca = await readFile(sluice.caCert, "utf8");
    const client = new DynamoDBClient({ region: "eu-west-1", credentials: { accessKeyId: "AKIDEXAMPLE", secretAccessKey: "secret" }, maxAttempts: 1, requestHandler: { httpsAgent: tunnelAgent(sluice.port, ca) } });
    try {
      await client.send(new PutItemCommand({ TableName: "orders", Item: { pk: { S: hot } } }));
      const err = await client.send(new TransactWriteItemsCommand({ TransactItems: [
        { Put: { TableName: "orders", Item: { pk: { S: hot } } } },
        { Put: { TableName: "orders", Item: { pk: { S: cool } } } },
        { Delete: { TableName: "users", Key: { pk: { S: u1 } } } },
      ] })).then(() => null, (e: TransactionCanceledException) => e);
      assert.ok(err, "the transaction was cancelled");
      assert.equal(err.name, "TransactionCanceledException");
      assert.equal(err.$metadata.httpStatusCode, 400);
      assert.deepEqual(err.CancellationReasons?.map((r) => r.Code), ["ThrottlingError", "None", "None"]);
      assert.match(err.CancellationReasons![0]!.Message ?? "", /^Throughput exceeds the current capacity of your table or index/);
      assert.equal(err.message, "Transaction cancelled, please refer cancellation reasons for specific reasons [ThrottlingError, None, None]");
      assert.deepEqual(operationsSeen(origin), ["PutItem"]);
    } finally {
      client.destroy();
      await Promise.all([sluice.close(), origin.close()]);
    }
  });

  test("each item goes to its own table's bucket: a provisioned table's items to its budget, the others' to theirs; all of a batch's empty buckets provisioned is ProvisionedThroughputExceededException", () => {
    // orders: 1 WCU/s provisioned (a bucket of 300); users on demand. At one instant (no refill).
    const limiter = new AwsLimiter({ provisioned: { orders: { read: 1, write: 1 } }, partitions: 1000, keys: { orders: "pk", users: "pk" } });
    const state = new InProcessState();
    const flowOf = (op: string, body: unknown) => tflow({ method: "POST", host: "dynamodb.eu-west-1.amazonaws.com", path: "/", reqHeaders: { host: "dynamodb.eu-west-1.amazonaws.com", "x-amz-target": `DynamoDB_20120810.${op}`, authorization: "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20261203/eu-west-1/dynamodb/aws4_request" }, reqBody: JSON.stringify(body) });
    const item = (pk: string, kb: number) => ({ PutRequest: { Item: { pk: { S: pk }, d: { S: "x".repeat(kb * 1024 - 8) } } } });
    const batch = (items: Record<string, unknown[]>) => flowOf("BatchWriteItem", { RequestItems: items });
    const charges = (flow: ReturnType<typeof tflow>) => limiter.applicable(flow).map((a) => `${a.limit.name} ${a.key.replace(/^aws-limit\/\d+\/AKIDEXAMPLE\/eu-west-1\//, "")} ${a.cost}`).sort();
    const big = batch({ users: [item("u", 3)], orders: [item("a", 200), item("b", 50)] });
    const pa = partitionOf(JSON.stringify({ S: "a" }), 1000);
    const pb = partitionOf(JSON.stringify({ S: "b" }), 1000);
    const pu = partitionOf(JSON.stringify({ S: "u" }), 1000);
    assert.deepEqual(charges(big), [
      "on-demand table writes users 3",
      "provisioned writes of orders orders 250",
      `writes per partition orders/p${pa} 200`,
      `writes per partition orders/p${pb} 50`,
      `writes per partition users/p${pu} 3`,
    ].sort());
    assert.equal(limiter.admit(big, state, 0), null);
    const refused = limiter.admit(batch({ users: [item("v", 1)], orders: [item("c", 60)] }), state, 0);
    assert.ok(refused && !(refused instanceof Promise));
    assert.equal(refused.limit.name, "provisioned writes of orders");
    const flow = batch({ users: [item("v", 1)], orders: [item("c", 60)] });
    const again = limiter.admit(flow, state, 0) as Exclude<ReturnType<AwsLimiter["admit"]>, Promise<unknown>>;
    assert.ok(again);
    const error = again.limit.errorFor!(flow, { service: "dynamodb", region: "eu-west-1", operation: "BatchWriteItem", bucket: null, key: null, invocationId: null, attempt: null, maxAttempts: null, sdk: null, retryMode: null }, again.parts);
    assert.equal(error.code, "ProvisionedThroughputExceededException");
    assert.deepEqual(error.fields, { ThrottlingReasons: [{ reason: "TableWriteProvisionedThroughputExceeded", resource: "arn:aws:dynamodb:eu-west-1:000000000000:table/orders" }] });
    assert.equal(limiter.admit(batch({ users: [item("v", 1)], orders: [item("c", 50)] }), state, 0), null, "the refused batches took nothing: 50 WCU were left, and users' budget is its own");
  });

  test("the items of a batch or transaction: table, partition key (keys= or the first attribute) and cost by AWS's rules", () => {
    const items = requestItemsOf("TransactWriteItems", { TransactItems: [
      { Put: { TableName: "a", Item: { sk: { S: "1" }, pk: { S: "p" }, d: { S: "x".repeat(1500) } } } },
      { Update: { TableName: "b", Key: { id: { S: "k" } }, UpdateExpression: "SET #n = :v", ExpressionAttributeNames: { "#n": "name" }, ExpressionAttributeValues: { ":v": { S: "y".repeat(2000) } } } },
      { ConditionCheck: { TableName: "a", Key: { pk: { S: "q" } }, ConditionExpression: "attribute_exists(pk)" } },
      { Delete: { TableName: "c", Key: { id: { N: "7" } } } },
    ] }, { a: "pk" });
    assert.deepEqual(items.map((i) => [i.position, i.table, i.partitionValue, i.cost]), [
      [0, "a", '{"S":"p"}', 4],
      [1, "b", '{"S":"k"}', 4],
      [2, "a", '{"S":"q"}', 2],
      [3, "c", '{"N":"7"}', 2],
    ], "transactional writes cost twice their 1 KB units (1.5 KB: 2 units); an update its key and the values it sets");
    const gets = requestItemsOf("BatchGetItem", { RequestItems: { t: { Keys: [{ pk: { S: "1" } }, { pk: { S: "2" } }], ConsistentRead: true }, u: { Keys: [{ pk: { S: "3" } }] } } });
    assert.deepEqual(gets.map((i) => [i.table, i.cost]), [["t", 2], ["t", 2], ["u", 1]], "a strongly consistent key one RCU (2 half-RCUs), an eventually consistent one half");
  });
});
