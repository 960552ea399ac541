/**
 * DynamoDB writes charged to their table's global secondary indexes under `--fault aws-limits`
 * (gsi=TABLE:INDEX:PK[/SK][:KEYS_ONLY]): a write costs each index whose key attributes the item has
 * a write of its own, to the index's budget and the index partition of its key value, as AWS
 * charges it (GSI.html#GSI.ThroughputConsiderations.Writes); an index without room throttles the
 * table write with Index… ThrottlingReasons naming it. With boto3 through sluice in front of a
 * scripted DynamoDB, and the accounting of updates, projections and ConsumedCapacity.
 */
import { test, describe } from "node:test";
import assert from "node:assert/strict";
import { Response } from "../src/core/flow.js";
import { Faults } from "../src/addons/faults.js";
import { AwsLimiter, parseAwsLimitsOptions, refusalOf } from "../src/aws/limits.js";
import { InProcessState } from "../src/core/shared-state.js";
import { indexWritesOf, partitionOf, type GlobalIndex } from "../src/aws/dynamodb-capacity.js";
import { startScriptedOrigin } from "./support/fake-aws.js";
import { startSluice } from "./support/sluice.js";
import { boto3Dynamo } from "./support/boto3-dynamo.js";
import { tflow } from "./support/tflow.js";
import { needsPython } from "./support/needs.js";

const mapDynamo = (url: string) => JSON.stringify([`|https://dynamodb\\.eu-west-1\\.amazonaws\\.com|${url}`]);
const PARTITIONS = 2;
const partition = (v: string) => partitionOf(JSON.stringify({ S: v }), PARTITIONS);
const valueIn = (name: string, want: (p: number) => boolean) => Array.from({ length: 50 }, (_, i) => `${name}-${i}`).find((v) => want(partition(v)))!;

const dynamoFlow = (op: string, body: unknown) => tflow({ method: "POST", host: "dynamodb.eu-west-1.amazonaws.com", path: "/", reqHeaders: { host: "dynamodb.eu-west-1.amazonaws.com", "x-amz-target": `DynamoDB_20120810.${op}`, authorization: "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20261203/eu-west-1/dynamodb/aws4_request" }, reqBody: JSON.stringify(body) });

describe("DynamoDB writes are charged to their table's global secondary indexes (gsi=)", () => {
  test("boto3: a PutItem whose index partition has no room is throttled with IndexWriteKeyRangeThroughputExceeded naming the index; an item without the index's key attribute writes no index entry; a transaction is cancelled for it", { skip: needsPython("boto3", "python3-boto3") }, async () => {
    const origin = await startScriptedOrigin(() => Response.make(200, "{}", { "content-type": "application/x-amz-json-1.0" }));
    // Writes per partition: 1,000 WCU × 0.001 = a bucket of 1 WCU (each table partition, each index partition).
    const rule = `~svc dynamodb => aws-limits scale=0.001 partitions=${PARTITIONS} keys=orders:pk gsi=orders:byStatus:status`;
    const sluice = await startSluice({ set: { map_remote: mapDynamo(origin.url), fault_rules: JSON.stringify([rule]) }, addons: [new Faults()] });
    const a = valueIn("a", () => true);
    const b = valueIn("b", (p) => p !== partition(a));
    const b2 = valueIn("bb", (p) => p === partition(b));
    try {
      const out = await boto3Dynamo<string[]>(sluice, `
item = lambda pk, **more: dict({"pk": {"S": pk}}, **{k: {"S": v} for k, v in more.items()})
out = [call(ddb.put_item, TableName="orders", Item=item(${JSON.stringify(a)}, status="open"))]
out.append(call(ddb.put_item, TableName="orders", Item=item(${JSON.stringify(b)}, status="open")))
out.append(call(ddb.transact_write_items, TransactItems=[{"Put": {"TableName": "orders", "Item": item(${JSON.stringify(b2)}, status="open")}}]))
out.append(call(ddb.put_item, TableName="orders", Item=item(${JSON.stringify(b)}, note="no status")))
print(json.dumps(out))
`);
      assert.deepEqual(out, [
        "ok",
        "ProvisionedThroughputExceededException IndexWriteKeyRangeThroughputExceeded@orders/index/byStatus",
        "TransactionCanceledException ThrottlingError",
        "ok",
      ], `${a} and ${b} (and ${b2}) are in different table partitions, but every item with status "open" goes to one partition of byStatus; the last item has no status`);
      assert.equal(origin.requests.length, 2, "the throttled put and the cancelled transaction never reached DynamoDB");
      const cancelled = sluice.flows.find((f) => f.request.headers.get("x-amz-target")?.endsWith(".TransactWriteItems"))!;
      assert.match(cancelled.response!.text, /Throughput exceeds the current capacity for one or more global secondary indexes/);
    } finally {
      await Promise.all([sluice.close(), origin.close()]);
    }
  });

  test("index writes by AWS's rules: a put of an item with the index keys (its projected size), an update of an index key a delete and a put, other updates and deletes nothing the request can tell", () => {
    const gsis: Record<string, GlobalIndex[]> = { orders: [{ name: "byCustomer", partitionKey: "customer", sortKey: "date", projection: "ALL" }, { name: "byStatus", partitionKey: "status", sortKey: null, projection: "KEYS_ONLY" }] };
    const big = "x".repeat(3000);
    const writes = (op: string, body: unknown) => indexWritesOf(op, body as Record<string, unknown>, gsis, { orders: "pk" }).map((w) => `${w.position} ${w.index} ${w.partitionValue ?? "?"} ${w.cost}`);
    assert.deepEqual(writes("PutItem", { TableName: "orders", Item: { pk: { S: "1" }, customer: { S: "c" }, date: { S: "d" }, status: { S: "open" }, body: { S: big } } }), [
      '0 byCustomer {"S":"c"} 3',
      '0 byStatus {"S":"open"} 1',
    ], "ALL projects the 3 KB item; KEYS_ONLY only the keys");
    assert.deepEqual(writes("PutItem", { TableName: "orders", Item: { pk: { S: "1" }, customer: { S: "c" } } }), [], "an index entry needs all of the index's key attributes");
    assert.deepEqual(writes("UpdateItem", { TableName: "orders", Key: { pk: { S: "1" } }, UpdateExpression: "SET #s = :s, total = :t", ExpressionAttributeNames: { "#s": "status" }, ExpressionAttributeValues: { ":s": { S: "closed" }, ":t": { N: "5" } } }), [
      "0 byStatus ? 1",
      '0 byStatus {"S":"closed"} 1',
    ], "a changed index key: the old entry deleted (its partition unknown), the new one put");
    assert.deepEqual(writes("UpdateItem", { TableName: "orders", Key: { pk: { S: "1" } }, UpdateExpression: "REMOVE status" }), ["0 byStatus ? 1"], "a removed index key: the entry deleted");
    assert.deepEqual(writes("UpdateItem", { TableName: "orders", Key: { pk: { S: "1" } }, UpdateExpression: "SET total = :t", ExpressionAttributeValues: { ":t": { N: "5" } } }), [], "other attributes: a lower bound of nothing");
    assert.deepEqual(writes("DeleteItem", { TableName: "orders", Key: { pk: { S: "1" } } }), []);
    assert.deepEqual(writes("TransactWriteItems", { TransactItems: [{ ConditionCheck: { TableName: "orders", Key: { pk: { S: "0" } } } }, { Put: { TableName: "orders", Item: { pk: { S: "2" }, status: { S: "new" } } } }, { Put: { TableName: "other", Item: { status: { S: "x" } } } }] }), ['1 byStatus {"S":"new"} 1'], "by the item's place in the transaction; tables without gsi= have none");
    assert.deepEqual(parseAwsLimitsOptions({ gsi: "orders:byCustomer:customer/date,orders:byStatus:status:KEYS_ONLY" }).gsi, gsis);
    // A Query of the index: its partition is the value gsi= names as the index's partition key, whichever equality comes first.
    const limiter = new AwsLimiter({ partitions: 1000, gsi: gsis });
    const query = dynamoFlow("Query", { TableName: "orders", IndexName: "byCustomer", KeyConditionExpression: "#d = :d AND customer = :c", ExpressionAttributeNames: { "#d": "date" }, ExpressionAttributeValues: { ":d": { S: "2026" }, ":c": { S: "c" } } });
    assert.ok(limiter.applicable(query).some((a) => a.limit.name === "reads per partition" && a.key.endsWith(`/orders/index/byCustomer/p${partitionOf(JSON.stringify({ S: "c" }), 1000)}`)));
    assert.throws(() => parseAwsLimitsOptions({ gsi: "orders:byStatus" }), /gsi= expects TABLE:INDEX:PARTITIONKEY\[\/SORTKEY\]\[:KEYS_ONLY\]/);
    assert.throws(() => parseAwsLimitsOptions({ gsi: "orders:byStatus:status:SOME" }), /gsi= expects/);
    assert.throws(() => parseAwsLimitsOptions({ lsi: "orders:byDate", gsi: "orders:byDate:date" }), /orders:byDate is given as both lsi= and gsi=/);
  });

  test("a provisioned table's index has a budget of the table's numbers; a ConsumedCapacity with INDEXES settles the table's and each index's share", () => {
    // orders: 1 WCU/s provisioned, a bucket of 300 for the table and 300 for byStatus. At one instant.
    const limiter = new AwsLimiter({ provisioned: { orders: { read: 1, write: 1 } }, partitions: 1000, gsi: { orders: [{ name: "byStatus", partitionKey: "status", sortKey: null, projection: "ALL" }] } });
    const state = new InProcessState();
    const put = (pk: string, kb: number, status: string | null) => dynamoFlow("PutItem", { TableName: "orders", Item: { pk: { S: pk }, ...(status ? { status: { S: status } } : {}), d: { S: "x".repeat(kb * 1024 - 40) } } });
    const answer = (flow: ReturnType<typeof tflow>, body: unknown) => {
      flow.response = Response.make(200, JSON.stringify(body), { "content-type": "application/x-amz-json-1.0" });
      limiter.settle(flow, state, 0);
    };
    const first = put("a", 250, "open");
    assert.equal(limiter.admit(first, state, 0), null);
    answer(first, {});
    const second = put("b", 100, "open");
    const refused = limiter.admit(second, state, 0);
    assert.ok(refused && !(refused instanceof Promise));
    assert.deepEqual(refusalOf(refused.limit, second, refused.parts).fields, { ThrottlingReasons: [
      { reason: "TableWriteProvisionedThroughputExceeded", resource: "arn:aws:dynamodb:eu-west-1:000000000000:table/orders" },
      { reason: "IndexWriteProvisionedThroughputExceeded", resource: "arn:aws:dynamodb:eu-west-1:000000000000:table/orders/index/byStatus" },
    ] }, "250 WCU in the table's bucket and 250 in the index's: 100 more fit in neither");
    const third = put("c", 40, "open");
    assert.equal(limiter.admit(third, state, 0), null, "40 fit in both (50 left each)");
    answer(third, { ConsumedCapacity: { TableName: "orders", CapacityUnits: 2, Table: { CapacityUnits: 1 }, GlobalSecondaryIndexes: { byStatus: { CapacityUnits: 1 } } } });
    assert.equal(limiter.admit(put("d", 45, null), state, 0), null, "AWS reported 1 for the table: 39 came back (49 left), and an item without status writes no index entry");
    assert.deepEqual((() => {
      const f = put("e", 40, "open");
      const r = limiter.admit(f, state, 0);
      assert.ok(r && !(r instanceof Promise));
      return refusalOf(r.limit, f, r.parts).fields;
    })(), { ThrottlingReasons: [{ reason: "TableWriteProvisionedThroughputExceeded", resource: "arn:aws:dynamodb:eu-west-1:000000000000:table/orders" }] }, "the index got its 39 back too (49 left, 40 fit); the table has 4 left");
  });
});
