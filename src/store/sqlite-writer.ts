/**
 * Writes flows into an SQLite capture. This thread turns each flow into a row (its mitmproxy
 * state, the indexed columns, body hashes); a worker thread commits the rows, every 10,000 flows
 * or 200 ms. A writer that falls more than a few batches behind makes `write` wait, so memory
 * stays bounded when flows arrive faster than the disk takes them.
 */
import { createHash } from "node:crypto";
import { closeSync, openSync } from "node:fs";
import { Worker } from "node:worker_threads";
import type { HTTPFlow } from "../core/flow.js";
import { awsInfoOf } from "../aws/index.js";
import { encode, type TnetDict } from "./tnetstring.js";
import { flowToState } from "./mitm-format.js";
import { SqliteStoreError } from "./sqlite-schema.js";
import { whyNotWritable } from "./write-errors.js";
import type { WorkerReply, WriterBatch } from "./sqlite-writer-worker.js";

const BATCH_ROWS = 10_000;
const BATCH_MS = 200;
/** Batches handed to the worker and not yet committed, before `write` blocks. */
const MAX_IN_FLIGHT = 4;

export class SqliteWriter {
  private pending: unknown[][] = [];
  private pendingBodies = new Map<string, Buffer>();
  private timer: NodeJS.Timeout | null = null;
  private closed = false;
  private failure: Error | null = null;
  private readonly inFlight: Int32Array;
  private readonly finished: Promise<void>;

  private constructor(
    private readonly path: string,
    private readonly worker: Worker,
    inFlight: SharedArrayBuffer,
    private readonly batchMs: number,
  ) {
    this.inFlight = new Int32Array(inFlight);
    this.finished = new Promise((resolve) => {
      worker.on("message", (reply: WorkerReply) => {
        if (reply.kind === "error") this.failure ??= new SqliteStoreError(`${path}: cannot write the SQLite capture (${reply.message})`);
        if (reply.kind === "closed") resolve();
      });
      worker.once("error", (err) => {
        this.failure ??= new SqliteStoreError(`${path}: the SQLite writer stopped (${err.message})`);
        resolve();
      });
      worker.once("exit", () => resolve());
    });
  }

  static async open(path: string, options: { syncIntervalMs?: number } = {}): Promise<SqliteWriter> {
    // Opened here first so a missing folder or no permission reads as such, not as a bad capture.
    try {
      closeSync(openSync(path, "a", 0o644));
    } catch (err) {
      throw new SqliteStoreError(`${path}: ${whyNotWritable(path, err)}`);
    }
    const inFlight = new SharedArrayBuffer(4);
    const worker = new Worker(new URL("./sqlite-writer-worker.js", import.meta.url), { workerData: { path, inFlight } });
    const first = await new Promise<WorkerReply>((resolve, reject) => {
      worker.once("message", resolve);
      worker.once("error", reject);
    }).catch((err: Error) => ({ kind: "error", message: err.message }) as WorkerReply);
    if (first.kind === "error") {
      await worker.terminate();
      throw new SqliteStoreError(`${path}: cannot write the SQLite capture (${first.message})`);
    }
    // Like the batch timer, an idle writer does not keep the process alive; close() holds it.
    worker.unref();
    // A batch is committed within half the sync interval, so a crash loses at most that interval.
    const batchMs = options.syncIntervalMs ? Math.max(10, Math.min(BATCH_MS, options.syncIntervalMs / 2)) : BATCH_MS;
    return new SqliteWriter(path, worker, inFlight, batchMs);
  }

  write(flow: HTTPFlow): void {
    if (this.closed) throw new Error("SQLite capture already closed");
    if (this.failure) throw this.failure;
    this.pending.push(this.row(flow));
    if (this.pending.length >= BATCH_ROWS) this.handOver();
    else if (!this.timer) {
      this.timer = setTimeout(() => this.handOver(), this.batchMs);
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

  /** Hands what is pending to the worker as one transaction; waits first if it is too far behind. */
  private handOver(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    if (this.pending.length === 0 || this.failure) return;
    for (let n = Atomics.load(this.inFlight, 0); n >= MAX_IN_FLIGHT; n = Atomics.load(this.inFlight, 0)) {
      Atomics.wait(this.inFlight, 0, n, 1000);
    }
    const batch: WriterBatch = { rows: this.pending, bodies: [...this.pendingBodies] };
    this.pending = [];
    this.pendingBodies = new Map();
    Atomics.add(this.inFlight, 0, 1);
    this.worker.postMessage(batch);
  }

  /** Commits everything written so far and closes the file; rejects if any batch failed. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.handOver();
    this.closed = true;
    this.worker.ref();
    this.worker.postMessage("close");
    await this.finished;
    if (this.failure) throw this.failure;
  }
}
