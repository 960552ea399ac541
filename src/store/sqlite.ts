/**
 * SQLite captures (`.sqlite`, `.db`): one row per flow with indexed columns for the questions
 * people ask (host, method, status, AWS service/operation, time), the flow itself stored as its
 * mitmproxy state (tnetstring, version 17) so it is rebuilt exactly, and bodies kept once per
 * distinct content (sha256) in their own table. WAL mode; the writer batches rows into
 * transactions committed on a worker thread (sqlite-writer.ts).
 */
import type Database from "better-sqlite3";
import type { HTTPFlow } from "../core/flow.js";
import { compileFilter } from "../core/filter.js";
import { decode, type TnetDict } from "./tnetstring.js";
import { flowFromState, newMigrationContext } from "./mitm-format.js";
import { filterToSql } from "./sqlite-query.js";
import { openDatabase, SqliteStoreError } from "./sqlite-schema.js";

export { SqliteStoreError } from "./sqlite-schema.js";
export { SqliteWriter } from "./sqlite-writer.js";

/** SQLite's file header: the first 16 bytes of every database file. */
export const SQLITE_MAGIC = Buffer.from("SQLite format 3\0", "latin1");

export interface SqliteReadOptions {
  /** Rows that cannot be read; they are skipped. */
  onWarning?: (message: string) => void;
  /** A filter expression: answered from the indexes where possible, then checked exactly. */
  filter?: string;
  onProgress?: (read: number, total: number) => void;
}

/** The SQL a filter turns into (for EXPLAIN and tests); null means a full scan. */
export function sqlForFilter(db: Database.Database, filter: string | undefined): { sql: string; params: (string | number)[] } {
  const base = "SELECT f.seq, f.state, f.request_body, f.response_body, rq.content AS rq, rs.content AS rs FROM flows f LEFT JOIN bodies rq ON rq.hash = f.request_body LEFT JOIN bodies rs ON rs.hash = f.response_body";
  const where = filter
    ? filterToSql(filter, (col) => (db.prepare(`SELECT DISTINCT ${col} AS v FROM flows WHERE ${col} IS NOT NULL`).all() as { v: unknown }[]).map((r) => String(r.v)))
    : null;
  return where ? { sql: `${base} WHERE ${where.sql} ORDER BY f.seq`, params: where.params } : { sql: `${base} ORDER BY f.seq`, params: [] };
}

/** Reads flows from an SQLite capture, in the order they were written. */
export async function* readSqlite(path: string, options: SqliteReadOptions = {}): AsyncGenerator<HTTPFlow> {
  const warn = options.onWarning ?? ((message: string) => console.warn(message));
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
      const row = raw as { seq: number; state: Buffer; request_body: string | null; response_body: string | null; rq: Buffer | null; rs: Buffer | null };
      let flow: HTTPFlow;
      try {
        const state = decode(row.state) as TnetDict;
        if (row.request_body) (state.request as TnetDict).content = row.rq ?? Buffer.alloc(0);
        if (row.response_body && state.response) (state.response as TnetDict).content = row.rs ?? Buffer.alloc(0);
        flow = flowFromState(state, ctx);
      } catch (err) {
        // One damaged row does not cost the rest of the capture.
        warn(`${path}: row ${row.seq} of the flows table is not a readable flow (${(err as Error).message}); skipped`);
        continue;
      }
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
