/** The layout of a sluice SQLite capture and how to open one; shared by the reader and the writer's worker thread. */
import { existsSync } from "node:fs";
import type Database from "better-sqlite3";
import { lazyModule } from "../core/lazy-module.js";

const betterSqlite3 = lazyModule<typeof Database>("better-sqlite3");

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

export const COLUMNS = [
  "id", "timestamp_start", "timestamp_end", "client", "method", "scheme", "host", "host_header", "port", "path", "url", "status",
  "request_content_type", "response_content_type", "request_size", "response_size", "aws_service", "aws_operation", "aws_region",
  "aws_bucket", "aws_invocation_id", "aws_attempt", "error", "request_body", "response_body", "state",
];

/** A bad or unreadable SQLite capture, in one line. */
export class SqliteStoreError extends Error {}

export function openDatabase(path: string, readonly: boolean): Database.Database {
  if (readonly && !existsSync(path)) throw new SqliteStoreError(`${path}: no such file`);
  let db: Database.Database;
  try {
    db = new (betterSqlite3())(path, { readonly, fileMustExist: readonly });
    if (!readonly) {
      // Rows are ~2.5 KB: with the default 4 KB pages each would take a page of its own.
      db.pragma("page_size = 16384");
      db.pragma("journal_mode = WAL");
      db.pragma("synchronous = NORMAL");
      db.pragma("wal_autocheckpoint = 8192");
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

