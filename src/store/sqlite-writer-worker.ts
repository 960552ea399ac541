/**
 * The SQLite writer's worker thread: receives batches of ready-made rows and commits each in one
 * transaction, so inserts (the costly part of a big capture) run beside the proxy's event loop
 * instead of stalling it. Messages: a batch, or "close". Replies: ready, committed, error, closed.
 */
import { parentPort, workerData } from "node:worker_threads";
import { COLUMNS, openDatabase } from "./sqlite-schema.js";

export interface WriterBatch {
  rows: unknown[][];
  bodies: [string, Uint8Array][];
}
export type WorkerReply = { kind: "ready" } | { kind: "error"; message: string } | { kind: "closed" };

const port = parentPort!;
const { path, inFlight } = workerData as { path: string; inFlight: SharedArrayBuffer };
const pending = new Int32Array(inFlight);

function done(): void {
  Atomics.sub(pending, 0, 1);
  Atomics.notify(pending, 0);
}

try {
  const db = openDatabase(path, false);
  const insertFlow = db.prepare(`INSERT INTO flows (${COLUMNS.join(",")}) VALUES (${COLUMNS.map(() => "?").join(",")})`);
  const insertBody = db.prepare("INSERT OR IGNORE INTO bodies (hash, content) VALUES (?, ?)");
  const commit = db.transaction((batch: WriterBatch) => {
    for (const [hash, content] of batch.bodies) insertBody.run(hash, content);
    for (const row of batch.rows) insertFlow.run(row);
  });
  port.on("message", (msg: WriterBatch | "close") => {
    if (msg === "close") {
      db.close();
      port.postMessage({ kind: "closed" } satisfies WorkerReply);
      port.close();
      return;
    }
    try {
      commit(msg);
    } catch (err) {
      port.postMessage({ kind: "error", message: (err as Error).message } satisfies WorkerReply);
    } finally {
      done();
    }
  });
  port.postMessage({ kind: "ready" } satisfies WorkerReply);
} catch (err) {
  port.postMessage({ kind: "error", message: (err as Error).message } satisfies WorkerReply);
  port.close();
}
