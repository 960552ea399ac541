/**
 * DynamoDB's PartiQL calls charged as the item operations AWS runs them as, under `--fault
 * aws-limits`: boto3's execute_statement, batch_execute_statement and execute_transaction through
 * sluice to a scripted DynamoDB origin. A SELECT of one partition key value is charged by its
 * answer's size to that partition (a Query), a SELECT without one to the table (a Scan), an INSERT
 * by its item's size, a transaction double, a batch per statement.
 */
import { test, describe } from "node:test";
import assert from "node:assert/strict";
import { Response } from "../src/core/flow.js";
import { Faults } from "../src/addons/faults.js";
import { Shaping } from "../src/addons/shaping.js";
import { parseStatement, partiqlEquivalent, partiqlAnswerAsEquivalent } from "../src/aws/partiql.js";
import { readCostBefore, writeCostBefore } from "../src/aws/dynamodb-capacity.js";
import { startScriptedOrigin } from "./support/fake-aws.js";
import { startSluice } from "./support/sluice.js";
import { run, awsEnv, pythonWithBoto3 } from "./support/run.js";
import { needsPython } from "./support/needs.js";

const ITEM_100KB = { pk: { S: "a" }, data: { S: "x".repeat(100_000) } };

/** A DynamoDB that answers PartiQL: a SELECT with a WHERE one 100 KB item, one without twelve (1.2 MB), writes nothing. */
function partiqlOrigin() {
  return startScriptedOrigin((request) => {
    const target = request.headers.get("x-amz-target") ?? "";
    const body = JSON.parse(request.text || "{}") as { Statement?: string; Statements?: unknown[] };
    let answer: unknown = {};
    if (target.endsWith(".ExecuteStatement") && /^\s*SELECT/i.test(body.Statement ?? "")) answer = { Items: /WHERE/i.test(body.Statement!) ? [ITEM_100KB] : Array.from({ length: 12 }, () => ITEM_100KB) };
    if (target.endsWith(".BatchExecuteStatement")) answer = { Responses: (body.Statements ?? []).map(() => ({ TableName: "batch" })) };
    return Response.make(200, JSON.stringify(answer), { "content-type": "application/x-amz-json-1.0" });
  });
}

/** boto3 (one attempt per call): each PartiQL call twice in a row, its outcomes under a name. */
const CALLS = `
import boto3, botocore.config, botocore.exceptions, json
ddb = boto3.client("dynamodb", region_name="eu-west-1", config=botocore.config.Config(retries={"total_max_attempts": 1, "mode": "standard"}))
def twice(fn, **kw):
    out = []
    for _ in range(2):
        try:
            fn(**kw)
            out.append("ok")
        except botocore.exceptions.ClientError as e:
            out.append(e.response["Error"]["Code"])
    return out
def insert(table, pk, size):
    return {"Statement": "INSERT INTO \\"%s\\" VALUE {'pk': ?, 'data': ?}" % table, "Parameters": [{"S": pk}, {"S": "x" * size}]}
print(json.dumps({
    "select": twice(ddb.execute_statement, Statement='SELECT * FROM "orders" WHERE pk = ?', Parameters=[{"S": "a"}]),
    "scan": twice(ddb.execute_statement, Statement='SELECT * FROM logs'),
    "small inserts": twice(ddb.execute_statement, **insert("small", "s", 100)),
    "large inserts": twice(ddb.execute_statement, **insert("large", "l", 1500)),
    "transaction": twice(ddb.execute_transaction, TransactStatements=[insert("txn", "t", 600)]),
    "batch": twice(ddb.batch_execute_statement, Statements=[insert("batch", "b", 600), insert("batch", "b", 600)]),
}))
`;

describe("DynamoDB PartiQL under --fault aws-limits", () => {
  test("boto3's execute_statement, execute_transaction and batch_execute_statement are charged like their item operations: the second of each pair finds its bucket spent", { skip: needsPython("boto3", "python3-boto3") }, async () => {
    const origin = await partiqlOrigin();
    // Scaled by 0.002: a partition holds 12 half-RCUs and 2 WCU (refilled as much a second), a table 160 half-RCUs.
    const sluice = await startSluice({ set: { map_remote: JSON.stringify([`|https://dynamodb\\.eu-west-1\\.amazonaws\\.com|${origin.url}`]), fault_rules: JSON.stringify(["~svc dynamodb => aws-limits scale=0.002 keys=orders:pk"]) }, addons: [new Faults()] });
    try {
      const r = await run(await pythonWithBoto3(), ["-c", CALLS], { env: awsEnv({ HTTPS_PROXY: sluice.url, AWS_CA_BUNDLE: sluice.caCert }), timeoutMs: 60_000 });
      assert.equal(r.code, 0, r.stderr);
      const out = JSON.parse(r.stdout) as Record<string, string[]>;
      assert.deepEqual(out, {
        // 100 KB read: 25 half-RCUs charged to the partition of 12 once the answer came.
        select: ["ok", "ProvisionedThroughputExceededException"],
        // 1.2 MB scanned: 300 half-RCUs charged to the table's 160.
        scan: ["ok", "RequestLimitExceeded"],
        // 1 WCU each of a partition's 2; 2 WCU each.
        "small inserts": ["ok", "ok"],
        "large inserts": ["ok", "ProvisionedThroughputExceededException"],
        // One 1 KB item, transactional: 2 WCU.
        transaction: ["ok", "TransactionCanceledException"],
        // Two 1 KB items in one partition: 2 WCU.
        batch: ["ok", "ThrottlingException"],
      });
      const faulted = sluice.flows.filter((f) => f.metadata.aws_limit).map((f) => (f.metadata.aws_limit as { limit: string }).limit);
      assert.deepEqual(faulted.sort(), ["on-demand table reads", "reads per partition", "writes per partition", "writes per partition", "writes per partition"].sort());
    } finally {
      await Promise.all([sluice.close(), origin.close()]);
    }
  });

  test("--shape aws-limits in front of the same --fault: each second PartiQL call waits until its bucket has refilled, and none is throttled", { skip: needsPython("boto3", "python3-boto3") }, async () => {
    const origin = await partiqlOrigin();
    const rule = "~svc dynamodb => aws-limits scale=0.002 keys=orders:pk";
    const sluice = await startSluice({ set: { map_remote: JSON.stringify([`|https://dynamodb\\.eu-west-1\\.amazonaws\\.com|${origin.url}`]), shape_rules: JSON.stringify([rule]), fault_rules: JSON.stringify([rule]) }, addons: [new Shaping(), new Faults()] });
    try {
      const r = await run(await pythonWithBoto3(), ["-c", CALLS], { env: awsEnv({ HTTPS_PROXY: sluice.url, AWS_CA_BUNDLE: sluice.caCert }), timeoutMs: 60_000 });
      assert.equal(r.code, 0, r.stderr);
      const out = JSON.parse(r.stdout) as Record<string, string[]>;
      for (const [call, outcomes] of Object.entries(out)) assert.deepEqual(outcomes, ["ok", "ok"], call);
      assert.equal(sluice.flows.filter((f) => f.metadata.aws_limit).length, 0, "nothing was throttled");
      const waited = sluice.flows.filter((f) => ((f.metadata.shaping as { waitMs?: number } | undefined)?.waitMs ?? 0) > 0).length;
      assert.ok(waited >= 3, `the second calls of the pairs that spend their bucket wait for it (5 when each call follows the last within a second; ${waited} waited)`);
    } finally {
      await Promise.all([sluice.close(), origin.close()]);
    }
  });

  test("statements are read for what capacity needs: verb, table, index, the WHERE's equalities and parameters, INSERT's VALUE, UPDATE's SET values", () => {
    const p = (s: string, params: unknown[] = []) => parseStatement(s, params);
    assert.deepEqual(p(`SELECT a, "b" FROM "My""Table"."byStatus" WHERE status = ? AND sk >= 'x'`, [{ S: "open" }]), { verb: "SELECT", table: 'My"Table', index: "byStatus", key: { status: { S: "open" } }, scan: false, values: {} });
    assert.equal(p(`SELECT * FROM orders`)!.scan, true, "no WHERE: a scan");
    assert.equal(p(`SELECT * FROM orders WHERE pk = 1 OR other = 'x'`)!.scan, true, "an OR: a scan");
    assert.equal(p(`SELECT * FROM orders WHERE pk IN [1, 2]`)!.scan, true, "an IN reads several partitions: charged to the table");
    assert.equal(p(`SELECT * FROM orders WHERE pk > 1`)!.scan, true, "a range: a scan");
    assert.deepEqual(p(`INSERT INTO "orders" VALUE {'pk': ?, 'n': -1.5, 'ok': true, 'tags': <<'a', 'b'>>, 'm': {'l': [1, null]}, 'note': 'it''s'}`, [{ S: "k" }])!.values, {
      pk: { S: "k" }, n: { N: "-1.5" }, ok: { BOOL: true }, tags: { SS: ["a", "b"] }, m: { M: { l: { L: [{ N: "1" }, { NULL: true }] } } }, note: { S: "it's" },
    });
    const u = p(`UPDATE "orders" SET total = ? SET count = count + 1, note = 'x' REMOVE old WHERE pk = ? AND sk = 'a' RETURNING ALL NEW *`, [{ N: "5" }, { S: "k" }])!;
    assert.deepEqual([u.verb, u.key, u.values], ["UPDATE", { pk: { S: "k" }, sk: { S: "a" } }, { total: { N: "5" }, note: { S: "x" } }], "parameters in order; a SET of an expression has no value");
    assert.deepEqual(p(`DELETE FROM orders WHERE pk = 'k'`)!.key, { pk: { S: "k" } });
    assert.deepEqual(p(`EXISTS(SELECT * FROM orders WHERE pk = 'k' AND n = ?)`, [{ N: "1" }])!.key, { pk: { S: "k" }, n: { N: "1" } });
    assert.equal(p(`CREATE TABLE x`), null, "another verb: not charged");
    assert.equal(p(`SELECT * FROM 'unterminated`), null);
  });

  test("the equivalents are charged by the native calls' rules: a SELECT by its partition (Query) or the table (Scan), an INSERT by size, a transaction double, a batch per statement", () => {
    const select = partiqlEquivalent("ExecuteStatement", { Statement: `SELECT * FROM "orders" WHERE pk = ?`, Parameters: [{ S: "a" }], ConsistentRead: true })!;
    assert.equal(select.operation, "Query");
    assert.equal(readCostBefore(select.operation, select.body), 2, "strongly consistent");
    assert.equal(partiqlEquivalent("ExecuteStatement", { Statement: `SELECT * FROM "orders"."byStatus"` })!.body.IndexName, "byStatus");
    const insert = partiqlEquivalent("ExecuteStatement", { Statement: `INSERT INTO "orders" VALUE {'pk': 'a', 'data': ?}`, Parameters: [{ S: "x".repeat(2100) }] })!;
    assert.deepEqual([insert.operation, writeCostBefore(insert.operation, insert.body)], ["PutItem", 3]);
    const txn = partiqlEquivalent("ExecuteTransaction", { TransactStatements: [{ Statement: `INSERT INTO t VALUE {'pk': 'a'}` }, { Statement: `DELETE FROM t WHERE pk = 'b'` }, { Statement: `EXISTS(SELECT * FROM u WHERE pk = 'c')` }] })!;
    assert.deepEqual([txn.operation, writeCostBefore(txn.operation, txn.body)], ["TransactWriteItems", 6], "an EXISTS is the transaction's condition check");
    const reads = partiqlEquivalent("BatchExecuteStatement", { Statements: [{ Statement: `SELECT * FROM t WHERE pk = 'a'` }, { Statement: `SELECT * FROM u WHERE pk = 'b'`, ConsistentRead: true }] })!;
    assert.deepEqual([reads.operation, readCostBefore(reads.operation, reads.body)], ["BatchGetItem", 3]);
    assert.equal(partiqlEquivalent("BatchExecuteStatement", { Statements: [{ Statement: `SELECT * FROM t WHERE pk = 'a'` }, { Statement: `DELETE FROM t WHERE pk = 'a'` }] }), null, "AWS refuses a batch mixing reads and writes");
    assert.deepEqual(JSON.parse(partiqlAnswerAsEquivalent("BatchExecuteStatement", JSON.stringify({ Responses: [{ TableName: "t", Item: { pk: { S: "a" } } }, { TableName: "t" }] }))).Responses, { t: [{ pk: { S: "a" } }] });
  });
});
