/**
 * SQLite captures (`.sqlite`, `.db`): one row per flow with indexed columns for the questions
 * people ask (host, method, status, AWS service/operation, time), the flow itself stored as its
 * mitmproxy state (tnetstring, version 17) so it is rebuilt exactly, and bodies kept once per
 * distinct content (sha256) in their own table. WAL mode; writes are batched into transactions.
 */
import { createHash } from "node:crypto";
import { existsSync } from "node:fs";
import Database from "better-sqlite3";
import type { HTTPFlow } from "../core/flow.js";
import { compileFilter } from "../core/filter.js";
import { awsInfoOf } from "../aws/index.js";
import { decode, encode, type TnetDict } from "./tnetstring.js";
import { flowFromState, flowToState, newMigrationContext } from "./mitm-format.js";
import { filterToSql } from "./sqlite-query.js";

/** SQLite's file header: the first 16 bytes of every database file. */
export const SQLITE_MAGIC = Buffer.from("SQLite format 3\0", "latin1");

const SCHEMA = `
CREATE TABLE IF NOT EXISTS flows (
  seq INTEGER PRIMARY KEY,
  id TEXT NOT NULL,
  timestamp_start REAL,
  timestamp_end REAL,
  client TEXT,
  method TEXT,
  scheme TEXT,
  host TEXT,
  host_header TEXT,
  port INTEGER,
  path TEXT,
  url TEXT,
  status INTEGER,
  request_content_type TEXT,
  response_content_type TEXT,
  request_size INTEGER,
  response_size INTEGER,
  aws_service TEXT,
  aws_operation TEXT,
  aws_region TEXT,
  aws_bucket TEXT,
  aws_invocation_id TEXT,
  aws_attempt INTEGER,
  error TEXT,
  request_body TEXT,
  response_body TEXT,
  state BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS bodies (hash TEXT PRIMARY KEY, content BLOB NOT NULL) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS flows_time ON flows(timestamp_start);
CREATE INDEX IF NOT EXISTS flows_host ON flows(host);
CREATE INDEX IF NOT EXISTS flows_host_header ON flows(host_header);
CREATE INDEX IF NOT EXISTS flows_method ON flows(method);
CREATE INDEX IF NOT EXISTS flows_status ON flows(status);
CREATE INDEX IF NOT EXISTS flows_aws_service ON flows(aws_service);
CREATE INDEX IF NOT EXISTS flows_aws_operation ON flows(aws_operation);
CREATE INDEX IF NOT EXISTS flows_aws_region ON flows(aws_region);
CREATE INDEX IF NOT EXISTS flows_aws_bucket ON flows(aws_bucket);
CREATE INDEX IF NOT EXISTS flows_aws_attempt ON flows(aws_attempt);
CREATE INDEX IF NOT EXISTS flows_invocation ON flows(aws_invocation_id);
`;

const COLUMNS = [
  "id", "timestamp_start", "timestamp_end", "client", "method", "scheme", "host", "host_header", "port", "path", "url", "status",
  "request_content_type", "response_content_type", "request_size", "response_size", "aws_service", "aws_operation", "aws_region",
  "aws_bucket", "aws_invocation_id", "aws_attempt", "error", "request_body", "response_body", "state",
];

/** A bad or unreadable SQLite capture, in one line. */
export class SqliteStoreError extends Error {}

function openDatabase(path: string, readonly: boolean): Database.Database {
  if (readonly && !existsSync(path)) throw new SqliteStoreError(`${path}: no such file`);
  let db: Database.Database;
  try {
    db = new Database(path, { readonly, fileMustExist: readonly });
    if (!readonly) {
      // Rows are ~2.5 KB: with the default 4 KB pages each would take a page of its own.
      db.pragma("page_size = 16384");
      db.pragma("journal_mode = WAL");
      db.pragma("synchronous = NORMAL");
      // Keeps the index B-trees in memory while a big capture is written.
      db.pragma("cache_size = -131072");
      db.exec(SCHEMA);
    } else {
      const table = db.prepare("SELECT name FROM sqlite_master WHERE type='table' AND name='flows'").get();
      if (!table) throw new SqliteStoreError(`${path}: an SQLite database, but not a sluice capture (no flows table)`);
    }
  } catch (err) {
    if (err instanceof SqliteStoreError) throw err;
    throw new SqliteStoreError(`${path}: not a readable sluice SQLite capture (${(err as Error).message})`);
  }
  return db;
}

/** Writes flows into an SQLite capture; rows are committed every 10,000 flows or 200 ms. */
export class SqliteWriter {
  private readonly insertFlow: Database.Statement;
  private readonly insertBody: Database.Statement;
  private pending: unknown[][] = [];
  private pendingBodies = new Map<string, Buffer>();
  private timer: NodeJS.Timeout | null = null;
  private closed = false;

  private constructor(private readonly db: Database.Database) {
    this.insertFlow = db.prepare(`INSERT INTO flows (${COLUMNS.join(",")}) VALUES (${COLUMNS.map(() => "?").join(",")})`);
    this.insertBody = db.prepare("INSERT OR IGNORE INTO bodies (hash, content) VALUES (?, ?)");
  }

  static async open(path: string): Promise<SqliteWriter> {
    return new SqliteWriter(openDatabase(path, false));
  }

  write(flow: HTTPFlow): void {
    if (this.closed) throw new Error("SQLite capture already closed");
    this.pending.push(this.row(flow));
    if (this.pending.length >= 10_000) this.flush();
    else if (!this.timer) {
      this.timer = setTimeout(() => this.flush(), 200);
      this.timer.unref();
    }
  }

  private body(content: Buffer | null): string | null {
    if (!content || content.length === 0) return null;
    const hash = createHash("sha256").update(content).digest("hex");
    this.pendingBodies.set(hash, content);
    return hash;
  }

  private row(flow: HTTPFlow): unknown[] {
    const state = flowToState(flow);
    const req = state.request as TnetDict;
    const res = state.response as TnetDict | null;
    // Bodies live in the bodies table; the state keeps an empty placeholder.
    const requestBody = this.body(flow.request.content);
    if (requestBody) req.content = Buffer.alloc(0);
    const responseBody = flow.response ? this.body(flow.response.content) : null;
    if (res && responseBody) res.content = Buffer.alloc(0);
    const r = flow.request;
    const aws = awsInfoOf(flow);
    const peer = flow.clientConn.peername;
    return [
      flow.id, r.timestampStart, flow.response?.timestampEnd ?? r.timestampEnd, peer ? `${peer[0]}:${peer[1]}` : null,
      r.method, r.scheme, r.host, r.prettyHost, r.port, r.path, r.prettyUrl, flow.response?.statusCode ?? null,
      r.headers.get("content-type") ?? null, flow.response?.headers.get("content-type") ?? null,
      r.content?.length ?? null, flow.response?.content?.length ?? null,
      aws?.service ?? null, aws?.operation ?? null, aws?.region ?? null, aws?.bucket ?? null, aws?.invocationId ?? null, aws?.attempt ?? null,
      flow.error?.msg ?? null, requestBody, responseBody, encode(state),
    ];
  }

  /** Commits what is pending in one transaction. */
  flush(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    if (this.pending.length === 0) return;
    const rows = this.pending;
    const bodies = this.pendingBodies;
    this.pending = [];
    this.pendingBodies = new Map();
    this.db.transaction(() => {
      for (const [hash, content] of bodies) this.insertBody.run(hash, content);
      for (const row of rows) this.insertFlow.run(row);
    })();
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.flush();
    this.closed = true;
    this.db.close();
  }
}

export interface SqliteReadOptions {
  /** A filter expression: answered from the indexes where possible, then checked exactly. */
  filter?: string;
  onProgress?: (read: number, total: number) => void;
}

/** The SQL a filter turns into (for EXPLAIN and tests); null means a full scan. */
export function sqlForFilter(db: Database.Database, filter: string | undefined): { sql: string; params: (string | number)[] } {
  const base = "SELECT f.state, f.request_body, f.response_body, rq.content AS rq, rs.content AS rs FROM flows f LEFT JOIN bodies rq ON rq.hash = f.request_body LEFT JOIN bodies rs ON rs.hash = f.response_body";
  const where = filter
    ? filterToSql(filter, (col) => (db.prepare(`SELECT DISTINCT ${col} AS v FROM flows WHERE ${col} IS NOT NULL`).all() as { v: unknown }[]).map((r) => String(r.v)))
    : null;
  return where ? { sql: `${base} WHERE ${where.sql} ORDER BY f.seq`, params: where.params } : { sql: `${base} ORDER BY f.seq`, params: [] };
}

/** Reads flows from an SQLite capture, in the order they were written. */
export async function* readSqlite(path: string, options: SqliteReadOptions = {}): AsyncGenerator<HTTPFlow> {
  const db = openDatabase(path, true);
  try {
    const predicate = options.filter ? compileFilter(options.filter) : null;
    const { sql, params } = sqlForFilter(db, options.filter);
    const ctx = newMigrationContext();
    let n = 0;
    let rows: IterableIterator<unknown>;
    try {
      rows = db.prepare(sql).iterate(...params);
    } catch (err) {
      throw new SqliteStoreError(`${path}: not a readable sluice SQLite capture (${(err as Error).message})`);
    }
    for (const raw of rows) {
      const row = raw as { state: Buffer; request_body: string | null; response_body: string | null; rq: Buffer | null; rs: Buffer | null };
      const state = decode(row.state) as TnetDict;
      if (row.request_body) (state.request as TnetDict).content = row.rq ?? Buffer.alloc(0);
      if (row.response_body && state.response) (state.response as TnetDict).content = row.rs ?? Buffer.alloc(0);
      const flow = flowFromState(state, ctx);
      n++;
      if (predicate && !predicate(flow)) continue;
      options.onProgress?.(n, n);
      yield flow;
    }
  } finally {
    db.close();
  }
}

/** Opens a capture read-only, for queries and EXPLAIN. */
export function openSqliteCapture(path: string): Database.Database {
  return openDatabase(path, true);
}
