/** SQLite captures: exact round trips, body dedup, index-answered filters, CLI convert and -r. */
import { test, describe, before } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import Database from "better-sqlite3";
import type { HTTPFlow } from "../src/core/flow.js";
import { compileFilter, registerFilterOperator } from "../src/core/filter.js";
import { tflow } from "./support/tflow.js";
import { convertFile, encode, flowToState, FlowWriter, openSqliteCapture, readFlowFile, sqlForFilter, SqliteWriter } from "../src/store/index.js";
import { run } from "./support/run.js";
import { SLUICE_BIN } from "./support/cli.js";

const T = 1_700_000_000.25;
const HOSTS = ["api.example.com", "s3.us-east-1.amazonaws.com", "dynamodb.eu-west-1.amazonaws.com", "origin.test"];
const STATUSES = [200, 201, 404, 429, 503];

function sign(service: string, region: string): string {
  return `AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20231114/${region}/${service}/aws4_request, SignedHeaders=host;x-amz-date, Signature=${"ab".repeat(32)}`;
}

/** A mixed capture: several hosts, methods, statuses, AWS services and operations, errors, repeated bodies. */
function mixedFlows(n: number): HTTPFlow[] {
  const flows: HTTPFlow[] = [];
  for (let i = 0; i < n; i++) {
    const host = HOSTS[i % HOSTS.length]!;
    const headers = ["Host", host, "Content-Type", "application/json"];
    let method = ["GET", "POST", "PUT", "DELETE"][i % 3]!;
    let path = `/items/${i}?q=${i % 7}`;
    if (host.startsWith("dynamodb")) {
      method = "POST";
      path = "/";
      headers.push("X-Amz-Target", (i >> 2) % 2 ? "DynamoDB_20120810.GetItem" : "DynamoDB_20120810.PutItem", "Authorization", sign("dynamodb", "eu-west-1"), "amz-sdk-request", `attempt=${1 + (i % 3)}; max=3`);
    } else if (host.startsWith("s3.")) {
      path = `/bucket-${i % 2}/key-${i}`;
      headers.push("Authorization", sign("s3", "us-east-1"));
    }
    const failed = i % 11 === 10;
    const status = STATUSES[i % STATUSES.length]!;
    const f = tflow({
      method, scheme: "https", host, port: 443, path, authority: host, reqHeaders: headers, client: ["127.0.0.1", 50000 + (i % 100)], start: T + i, took: 0.02,
      reqBody: i % 5 === 0 ? Buffer.alloc(0) : `{"shared":"${"x".repeat(100)}","n":${i % 4}}`,
      ...(failed ? { error: "connection refused" } : { status, resHeaders: ["Content-Type", "application/json"], resBody: status === 200 ? '{"ok":true}' : `{"status":${status}}` }),
    });
    if (i % 13 === 0) f.metadata = { note: `flow ${i}` };
    flows.push(f);
  }
  return flows;
}

const serialized = (f: HTTPFlow) => encode(flowToState(f)).toString("base64");

async function readAll(path: string, filter?: string): Promise<HTTPFlow[]> {
  const out: HTTPFlow[] = [];
  for await (const f of readFlowFile(path, { filter })) out.push(f);
  return out;
}

describe("SQLite captures", () => {
  const dir = mkdtempSync(join(tmpdir(), "sluice-sqlite-"));
  const flows = mixedFlows(400);
  const mitm = join(dir, "capture.mitm");
  const db = join(dir, "capture.sqlite");

  before(async () => {
    const w = await FlowWriter.open(mitm);
    for (const f of flows) w.write(f);
    await w.close();
    await convertFile(mitm, db);
  });

  test("mitm → sqlite → mitm keeps every flow exactly", async () => {
    const back = join(dir, "back.mitm");
    await convertFile(db, back);
    const again = await readAll(back);
    const original = await readAll(mitm);
    assert.equal(again.length, 400);
    assert.deepEqual(again.map(serialized), original.map(serialized));
  });

  test("bodies are stored once per distinct content", () => {
    const d = new Database(db, { readonly: true });
    const bodies = (d.prepare("SELECT COUNT(*) AS n FROM bodies").get() as { n: number }).n;
    const withBody = (d.prepare("SELECT COUNT(*) AS n FROM flows WHERE request_body IS NOT NULL").get() as { n: number }).n;
    d.close();
    // 4 distinct request bodies + 5 distinct response bodies, referenced by hundreds of flows.
    assert.equal(bodies, 9);
    assert.ok(withBody > 300);
  });

  const filters = [
    "~d amazonaws",
    "~d '^api\\.example\\.com$'",
    "~m POST",
    "~c 429",
    "!~c 200",
    "~svc dynamodb & ~op GetItem",
    "~svc s3 | ~c 503",
    "~d origin & !(~m GET | ~c 404)",
    "~attempt 2",
    "~e",
    "!~s",
    "~u bucket-1",
    "~svc dynamodb ~bq shared",
    "!(~d amazonaws & ~b ok)",
    "~region eu-west-1 | ~bucket bucket-0",
  ];
  for (const expr of filters) {
    test(`index-answered ${JSON.stringify(expr)} equals a full scan`, async () => {
      const predicate = compileFilter(expr);
      const expected = flows.filter(predicate).map((f) => f.id);
      const got = (await readAll(db, expr)).map((f) => f.id);
      assert.ok(expected.length > 0 && expected.length < 400, `the filter should select some but not all flows (${expected.length})`);
      assert.deepEqual(got, expected);
    });
  }

  test("EXPLAIN QUERY PLAN uses an index for ~d, ~c and ~svc", () => {
    const d = openSqliteCapture(db);
    try {
      for (const [expr, index] of [["~d api", "flows_host"], ["~c 404", "flows_status"], ["~svc s3", "flows_aws_service"]] as const) {
        const { sql, params } = sqlForFilter(d, expr);
        const plan = (d.prepare(`EXPLAIN QUERY PLAN ${sql}`).all(...params) as { detail: string }[]).map((r) => r.detail).join("\n");
        assert.match(plan, new RegExp(`USING (COVERING )?INDEX ${index}`), `${expr}:\n${plan}`);
      }
    } finally {
      d.close();
    }
  });

  test("an operator registered later (as aws/ registers its own) is handled from the registry: the query still uses the index, and answers exactly", async () => {
    registerFilterOperator({ name: "sqltnote", kind: "flag", help: "test: flows with a note", match: (f) => typeof f.metadata.note === "string" });
    registerFilterOperator({ name: "sqltpath", kind: "regex", help: "test: the path", text: (f) => f.request.path });
    registerFilterOperator({ name: "sqltport", kind: "int", help: "test: the client port", match: (f, n) => f.clientConn.peername?.[1] === n });
    const d = openSqliteCapture(db);
    try {
      for (const expr of ["~sqltnote & ~c 404", "~c 404 & !~sqltpath items/1", "~sqltport 50013 & ~c 404"]) {
        const { sql, params } = sqlForFilter(d, expr);
        const plan = (d.prepare(`EXPLAIN QUERY PLAN ${sql}`).all(...params) as { detail: string }[]).map((r) => r.detail).join("\n");
        assert.match(plan, /USING (COVERING )?INDEX flows_status/, `${expr}:\n${plan}`);
        const expected = flows.filter(compileFilter(expr)).map((f) => f.id);
        assert.deepEqual((await readAll(db, expr)).map((f) => f.id), expected, expr);
      }
    } finally {
      d.close();
    }
  });

  test("sluice convert to .sqlite and back to .har, and dump -n -r capture.sqlite FILTER", async () => {
    const out = join(dir, "cli.sqlite");
    const r1 = await run(process.execPath, [SLUICE_BIN, "convert", mitm, out]);
    assert.equal(r1.code, 0, r1.stderr);
    const har = join(dir, "cli.har");
    const r2 = await run(process.execPath, [SLUICE_BIN, "convert", out, har]);
    assert.equal(r2.code, 0, r2.stderr);
    assert.equal((await readAll(har)).length, 400);
    const r3 = await run(process.execPath, [SLUICE_BIN, "dump", "-n", "-r", out, "~c 429"]);
    assert.equal(r3.code, 0, r3.stderr);
    const lines = r3.stdout.trim().split("\n").filter(Boolean);
    assert.equal(lines.length, flows.filter(compileFilter("~c 429")).length);
    for (const l of lines) assert.match(l, /429/);
  });

  test("a file that is not an SQLite capture is a one-line error", async () => {
    const bad = join(dir, "bad.sqlite");
    writeFileSync(bad, Buffer.concat([Buffer.from("SQLite format 3\0", "latin1"), Buffer.alloc(200, 7)]));
    const r = await run(process.execPath, [SLUICE_BIN, "dump", "-n", "-r", bad]);
    assert.notEqual(r.code, 0);
    assert.match(r.stderr, /bad\.sqlite: not a readable sluice SQLite capture/);
    assert.doesNotMatch(r.stderr, /\n\s+at /);
    const other = join(dir, "other.db");
    const d = new Database(other);
    d.exec("CREATE TABLE t (x)");
    d.close();
    const r2 = await run(process.execPath, [SLUICE_BIN, "dump", "-n", "-r", other]);
    assert.notEqual(r2.code, 0);
    assert.match(r2.stderr, /not a sluice capture \(no flows table\)/);
  });

  test("the writer commits in batches that a reader sees after close", async () => {
    const path = join(dir, "batched.sqlite");
    const w = await SqliteWriter.open(path);
    for (const f of flows.slice(0, 50)) w.write(f);
    await w.close();
    assert.deepEqual((await readAll(path)).map(serialized), flows.slice(0, 50).map(serialized));
  });
});
