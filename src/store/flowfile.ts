/**
 * Flow files on disk: mitmproxy's format (tnetstring records, one per flow, no header), streamed.
 *
 * Reading never loads the whole file: records are decoded from 1 MB reads, and a record larger
 * than that is read straight into a buffer of its own size. Writing hands each record to the
 * kernel in one write call as soon as the flow is written, so `kill -9` loses at most the record
 * in flight, and a reader reports that truncated tail instead of failing.
 */
import { open, stat, truncate, type FileHandle } from "node:fs/promises";
import { closeSync, openSync, writev } from "node:fs";
import { constants } from "node:buffer";
import type { HTTPFlow } from "../core/flow.js";
import { decode, encodeChunks, EncodeArena, readLengthPrefix, TnetstringError, MAX_LENGTH_DIGITS, type TnetDict } from "./tnetstring.js";
import { flowFromState, flowToState, FlowFormatError, newMigrationContext } from "./mitm-format.js";
import { harToFlows } from "./har.js";

/** A file sluice cannot read (or append to); the message names the file, the byte offset and what to do. */
export class FlowFileError extends Error {
  readonly file: string;
  readonly offset: number;

  constructor(file: string, offset: number, message: string) {
    super(`${file}: ${message}`);
    this.name = "FlowFileError";
    this.file = file;
    this.offset = offset;
  }
}

export interface ReadFlowsOptions {
  /** Problems that do not stop reading: a truncated last record, skipped non-HTTP flows. */
  onWarning?: (message: string) => void;
  /** Called after each record with the bytes consumed so far and the file size. */
  onProgress?: (bytesRead: number, bytesTotal: number) => void;
}

export type FlowFileKind = "tnetstring" | "har" | "empty";

const TAG_DICT = 0x7d;
const READ_CHUNK = 1 << 20;
/** Enough bytes for any valid length prefix and its colon. */
const PREFIX_BYTES = MAX_LENGTH_DIGITS + 1;

/** What a file holds, from its first bytes: HAR starts with `{` (after an optional BOM and blanks). */
export function detectFlowFileKind(head: Buffer): FlowFileKind {
  let i = head[0] === 0xef && head[1] === 0xbb && head[2] === 0xbf ? 3 : 0;
  while (i < head.length && (head[i] === 0x20 || head[i] === 0x09 || head[i] === 0x0a || head[i] === 0x0d)) i++;
  if (i >= head.length) return "empty";
  return head[i] === 0x7b ? "har" : "tnetstring";
}

/**
 * Streams the HTTP flows of a mitmproxy/sluice flow file (any format version up to 21) or a HAR
 * file. A truncated last record is reported once through `onWarning`, not thrown; a file that is
 * not a flow file, a corrupt record or a too-new format version throws FlowFileError.
 */
export async function* readFlows(path: string, options: ReadFlowsOptions = {}): AsyncGenerator<HTTPFlow> {
  const warn = options.onWarning ?? ((message: string) => console.warn(message));
  const fh = await openForReading(path);
  try {
    const size = (await fh.stat()).size;
    const head = Buffer.alloc(Math.min(size, 64));
    await readFully(fh, head, 0, head.length, 0);
    const kind = detectFlowFileKind(head);
    if (kind === "har") {
      yield* readHar(fh, path, size, options.onProgress);
      return;
    }
    if (kind === "empty" && head.length === size) return;
    yield* readTnetFlows(fh, path, size, warn, options.onProgress);
  } finally {
    await fh.close();
  }
}

async function* readTnetFlows(fh: FileHandle, path: string, size: number, warn: (m: string) => void, onProgress?: (read: number, total: number) => void): AsyncGenerator<HTTPFlow> {
  const records = new RecordSource(fh, path, size);
  const ctx = newMigrationContext();
  const skippedTypes = new Set<string>();
  let count = 0;
  for (;;) {
    const next = records.next(count);
    const record = next instanceof Promise ? await next : next;
    if (record === null) break;
    if (record === "truncated") {
      warn(`${path}: truncated record at byte ${records.offset}, ${count} flows read`);
      break;
    }
    onProgress?.(records.offset, records.size);
    let flow: HTTPFlow;
    try {
      flow = flowFromState(record.state, ctx);
    } catch (err) {
      if (!(err instanceof FlowFormatError)) throw err;
      if (err.kind === "unsupported-type") {
        const type = err.detail ?? "unknown";
        if (!skippedTypes.has(type)) warn(`${path}: skipping ${type} flows (first at byte ${record.offset}); sluice reads HTTP flows only`);
        skippedTypes.add(type);
        continue;
      }
      if (err.kind === "newer-version") {
        throw new FlowFileError(path, record.offset, `the flow at byte ${record.offset} uses flow format version ${err.detail}, newer than this sluice reads; update sluice to open this file`);
      }
      throw new FlowFileError(path, record.offset, `the flow at byte ${record.offset} is not a valid HTTP flow (${err.message}); ${count} flows before it were read`);
    }
    count++;
    yield flow;
  }
}

async function* readHar(fh: FileHandle, path: string, size: number, onProgress?: (read: number, total: number) => void): AsyncGenerator<HTTPFlow> {
  // HAR is one JSON document: it has to be parsed whole, so it must fit in one JS string.
  if (size > constants.MAX_STRING_LENGTH) {
    throw new FlowFileError(path, 0, `is a ${Math.round(size / 1e6)} MB HAR file, too large to parse as one JSON document; split it, or capture to a .mitm flow file instead`);
  }
  const buf = Buffer.allocUnsafe(size);
  await readFully(fh, buf, 0, size, 0);
  const bom = buf[0] === 0xef && buf[1] === 0xbb && buf[2] === 0xbf ? 3 : 0;
  const text = buf.toString("utf8", bom);
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (err) {
    // V8 names the position for most syntax errors, not all of them.
    const reason = (err as Error).message;
    const at = /position (\d+)/.exec(reason);
    const offset = at ? bom + Buffer.byteLength(text.slice(0, Number(at[1]))) : /end of JSON/.test(reason) ? size : null;
    const where = offset === null ? "" : ` at byte ${offset}`;
    throw new FlowFileError(path, offset ?? 0, `looks like HAR but is not valid JSON${where} (${reason}); re-export it from the browser or tool that made it`);
  }
  let flows: HTTPFlow[];
  try {
    flows = harToFlows(json);
  } catch (err) {
    throw new FlowFileError(path, 0, `is not a usable HAR file: ${(err as Error).message}`);
  }
  onProgress?.(size, size);
  yield* flows;
}

interface TnetRecord {
  state: TnetDict;
  /** File offset of the record's first byte. */
  offset: number;
}

/** Yields whole top-level tnetstring records from a file, with as few reads and copies as possible. */
class RecordSource {
  /** Data buffer; bytes [start, end) are read but not consumed. Never reused: decoded values keep views into it. */
  private buf = Buffer.alloc(0);
  private start = 0;
  private end = 0;
  /** File offset of buf[0]. */
  private bufOffset = 0;
  private filePos = 0;

  constructor(
    private readonly fh: FileHandle,
    private readonly path: string,
    public size: number,
  ) {}

  /** File offset of the next unconsumed byte. */
  get offset(): number {
    return this.bufOffset + this.start;
  }

  /**
   * The next record, or null at the clean end of the file, or "truncated". Records already in
   * the buffer are decoded without awaiting anything.
   */
  next(flowsRead: number): TnetRecord | Promise<TnetRecord | "truncated" | null> {
    return this.decodeBuffered(flowsRead) ?? this.readAndDecode(flowsRead);
  }

  private async readAndDecode(flowsRead: number): Promise<TnetRecord | "truncated" | null> {
    if ((await this.fill(PREFIX_BYTES)) === 0) return null;
    const recordLength = this.recordLength(flowsRead);
    if (recordLength === null) return "truncated";
    const offset = this.offset;
    if (offset + recordLength > this.size) {
      // The file may still be growing (a capture in progress): look again before calling it truncated.
      this.size = (await this.fh.stat()).size;
      if (offset + recordLength > this.size) return "truncated";
    }
    if ((await this.fill(recordLength)) < recordLength) return "truncated";
    return this.decodeBuffered(flowsRead)!;
  }

  /** Decodes the next record if it is entirely in the buffer. */
  private decodeBuffered(flowsRead: number): TnetRecord | undefined {
    if (this.end - this.start < PREFIX_BYTES && this.offset + (this.end - this.start) < this.size) return undefined;
    if (this.end === this.start) return undefined;
    const recordLength = this.recordLength(flowsRead);
    if (recordLength === null || this.end - this.start < recordLength) return undefined;
    const offset = this.offset;
    const recordEnd = this.start + recordLength;
    const tag = this.buf[recordEnd - 1]!;
    if (tag !== TAG_DICT) {
      const why = tag >= 0x20 && tag < 0x7f ? `"${String.fromCharCode(tag)}"` : `byte 0x${tag.toString(16)}`;
      throw this.corrupt(offset + recordLength - 1, `a record should end with a dict tag "}", found ${why}`, flowsRead);
    }
    // Decoded bodies are views of the bytes they were decoded from. A record sharing a 1 MB read
    // with others gets its own copy, so a flow kept from a huge file pins only its own bytes.
    const shared = recordLength < this.buf.length;
    const source = shared ? Buffer.from(this.buf.subarray(this.start, recordEnd)) : this.buf;
    const base = shared ? 0 : this.start;
    let state: TnetDict;
    try {
      state = decode(source, base, base + recordLength) as TnetDict;
    } catch (err) {
      if (!(err instanceof TnetstringError)) throw err;
      throw this.corrupt(offset + err.offset - base, err.reason, flowsRead);
    }
    this.start = recordEnd;
    return { state, offset };
  }

  /** Length of the record starting at the buffer's start, or null if its prefix is cut off by the end of the file. */
  private recordLength(flowsRead: number): number | null {
    try {
      const { length, payloadStart } = readLengthPrefix(this.buf, this.start, this.end, true);
      return payloadStart - this.start + length + 1;
    } catch (err) {
      if (!(err instanceof TnetstringError)) throw err;
      if (err.truncated) return null;
      throw this.corrupt(err.offset - this.start + this.offset, err.reason, flowsRead);
    }
  }

  private corrupt(at: number, reason: string, flowsRead: number): FlowFileError {
    if (flowsRead === 0 && this.offset === 0) {
      return new FlowFileError(this.path, at, `not a flow file (byte ${at}: ${reason}); sluice reads mitmproxy flow files (.mitm, .flows) and HAR (.har)`);
    }
    return new FlowFileError(
      this.path,
      at,
      `corrupt flow record at byte ${at}: ${reason}. The ${flowsRead} flows before it were read; the rest cannot be located (was the file edited or copied incompletely?)`,
    );
  }

  /** Makes at least `n` unconsumed bytes available unless the file ends first; returns how many are. */
  private async fill(n: number): Promise<number> {
    const have = this.end - this.start;
    if (have >= n) return have;
    const capacity = Math.max(n, READ_CHUNK);
    const next = Buffer.allocUnsafe(capacity);
    this.buf.copy(next, 0, this.start, this.end);
    this.bufOffset += this.start;
    this.buf = next;
    this.start = 0;
    this.end = have;
    const got = await readFully(this.fh, next, this.end, capacity - this.end, this.filePos);
    this.end += got;
    this.filePos += got;
    return this.end;
  }
}

async function openForReading(path: string): Promise<FileHandle> {
  try {
    return await open(path, "r");
  } catch (err) {
    throw new FlowFileError(path, 0, `cannot open for reading: ${(err as Error).message}`);
  }
}

/** Reads until `length` bytes are in or the file ends; returns the bytes read. */
async function readFully(fh: FileHandle, buf: Buffer, offset: number, length: number, position: number): Promise<number> {
  let done = 0;
  while (done < length) {
    const { bytesRead } = await fh.read(buf, offset + done, length - done, position + done);
    if (bytesRead === 0) break;
    done += bytesRead;
  }
  return done;
}

// ---------------------------------------------------------------------------------------------
// Writing

export interface FlowWriterOptions {
  /** Add to an existing file (mitmproxy's `-w +FILE`) instead of replacing it. */
  append?: boolean;
  /** Told when appending first drops a truncated record left by a crash. */
  onWarning?: (message: string) => void;
}

/** Small records are packed into arenas of this size; each full or end-of-tick arena slice is one write. */
const ARENA_BYTES = 1 << 20;
/** write() returns false once this much is queued in memory: await flush() before writing more. */
const HIGH_WATER_BYTES = 16 << 20;

/**
 * Writes flows to a mitmproxy-compatible flow file (format version 17), one record per flow.
 *
 * Records are encoded straight into a 1 MB arena; what was written during one synchronous run of
 * JavaScript goes to the kernel in one write call right after it (a microtask), so nothing waits
 * for a timer and a record is never split across write calls. A record with a large body is
 * written with writev, its body passed by reference.
 */
export class FlowWriter {
  private arena = new EncodeArena(ARENA_BYTES);
  /** Start of the arena bytes encoded but not yet handed to the stream. */
  private stagedFrom = 0;
  private flushQueued = false;
  private pending = 0;
  private idle: (() => void)[] = [];
  private failure: Error | null = null;
  private closed = false;
  private flows = 0;

  /** Writes handed to the kernel one at a time, in order; each is a list of buffers for one writev. */
  private queue: Buffer[][] = [];
  private queuedBytes = 0;
  private writing = false;

  private constructor(
    private readonly fd: number,
    readonly path: string,
  ) {}

  static async open(path: string, options: FlowWriterOptions = {}): Promise<FlowWriter> {
    if (options.append) await prepareForAppend(path, options.onWarning ?? ((m) => console.warn(m)));
    let fd: number;
    try {
      // Opening is one quick call; doing it synchronously saves a thread-pool round trip, which
      // is a third of the time of writing a one-flow file.
      fd = openSync(path, options.append ? "a" : "w", 0o644);
    } catch (err) {
      throw new FlowFileError(path, 0, `cannot open for writing: ${(err as Error).message}`);
    }
    return new FlowWriter(fd, path);
  }

  /** Flows written so far. */
  get count(): number {
    return this.flows;
  }

  /**
   * Encodes the flow and queues its record for the kernel (see the class comment). Returns false
   * when a lot is queued in memory: a bulk writer should then `await flush()`. Throws if an earlier
   * write failed or the writer is closed.
   */
  write(flow: HTTPFlow): boolean {
    if (this.failure) throw this.failure;
    if (this.closed) throw new FlowFileError(this.path, 0, "cannot write a flow: the flow writer is closed");
    const arena = this.arena;
    const before = arena.used;
    const chunks = encodeChunks(flowToState(flow), arena);
    this.flows++;
    const inArena = arena.used > before;
    if (inArena && chunks.length === 1) {
      if (!this.flushQueued) {
        this.flushQueued = true;
        queueMicrotask(this.sendStaged);
      }
    } else {
      // Keep file order: whatever is staged goes first, then this record on its own.
      this.sendArena(before);
      this.send(chunks);
      this.stagedFrom = arena.used;
      if (!inArena && arena.buffer.length - arena.used < ARENA_BYTES / 4) {
        this.arena = new EncodeArena(ARENA_BYTES);
        this.stagedFrom = 0;
      }
    }
    return this.queuedBytes < HIGH_WATER_BYTES;
  }

  /** Resolves when everything written so far has been handed to the operating system. */
  async flush(): Promise<void> {
    this.sendStaged();
    if (this.pending > 0) await new Promise<void>((resolve) => this.idle.push(resolve));
    if (this.failure) throw this.failure;
  }

  async close(): Promise<void> {
    if (this.closed) return this.flush();
    this.closed = true;
    try {
      await this.flush();
    } finally {
      try {
        closeSync(this.fd);
      } catch (err) {
        this.fail(err as Error);
      }
    }
    if (this.failure) throw this.failure;
  }

  private readonly sendStaged = (): void => {
    this.flushQueued = false;
    this.sendArena(this.arena.used);
    this.stagedFrom = this.arena.used;
    // A nearly full arena is retired; its bytes now belong to the stream.
    if (this.arena.buffer.length - this.arena.used < ARENA_BYTES / 16) {
      this.arena = new EncodeArena(ARENA_BYTES);
      this.stagedFrom = 0;
    }
  };

  /** Hands the staged arena bytes up to `end` to the stream. */
  private sendArena(end: number): void {
    if (end > this.stagedFrom) this.send([this.arena.buffer.subarray(this.stagedFrom, end)]);
    this.stagedFrom = end;
  }

  /** Queues one writev; records reach the file in the order they were sent. */
  private send(chunks: Buffer[]): void {
    this.pending++;
    for (const c of chunks) this.queuedBytes += c.length;
    this.queue.push(chunks);
    if (!this.writing) this.writeNext();
  }

  private writeNext(): void {
    const chunks = this.queue.shift();
    if (!chunks) return void (this.writing = false);
    this.writing = true;
    if (this.failure) return this.written(chunks, null);
    writev(this.fd, chunks, (err, bytes) => {
      if (err) {
        this.fail(err);
        return this.written(chunks, null);
      }
      const total = chunks.reduce((n, c) => n + c.length, 0);
      if (bytes < total) {
        // A short write (rare for files: a signal, a full disk): send the rest before anything else.
        this.queuedBytes -= bytes;
        this.queue.unshift(remainderOf(chunks, bytes));
        return this.writeNext();
      }
      this.written(chunks, total);
    });
  }

  private written(chunks: Buffer[], total: number | null): void {
    this.queuedBytes -= total ?? chunks.reduce((n, c) => n + c.length, 0);
    if (--this.pending === 0) {
      const waiters = this.idle;
      this.idle = [];
      for (const w of waiters) w();
    }
    this.writeNext();
  }

  private fail(err: Error): void {
    this.failure ??= new FlowFileError(this.path, 0, `writing flows failed: ${err.message}`);
  }
}

/** What is left of `chunks` after the first `skip` bytes. */
function remainderOf(chunks: Buffer[], skip: number): Buffer[] {
  const rest: Buffer[] = [];
  for (const c of chunks) {
    if (skip >= c.length) {
      skip -= c.length;
      continue;
    }
    rest.push(skip > 0 ? c.subarray(skip) : c);
    skip = 0;
  }
  return rest;
}

/**
 * Before appending: the file must be a flow file, and a record cut short by a crash is removed,
 * or every flow appended after it would be unreadable.
 */
async function prepareForAppend(path: string, warn: (message: string) => void): Promise<void> {
  let size: number;
  try {
    size = (await stat(path)).size;
  } catch {
    return;
  }
  if (size === 0) return;
  const fh = await openForReading(path);
  let scan: { validEnd: number; records: number };
  try {
    const head = Buffer.alloc(Math.min(size, 64));
    await readFully(fh, head, 0, head.length, 0);
    if (detectFlowFileKind(head) === "har") throw new FlowFileError(path, 0, "is a HAR file; sluice can only append to mitmproxy-format flow files (write to a new file instead)");
    scan = await scanRecords(fh, path, size);
  } finally {
    await fh.close();
  }
  if (scan.validEnd < size) {
    if (scan.records === 0) {
      throw new FlowFileError(path, 0, "holds no complete flow (it may not be a flow file at all); refusing to append to it: remove it or choose another file");
    }
    await truncate(path, scan.validEnd);
    warn(`${path}: removed a truncated record at byte ${scan.validEnd} (${size - scan.validEnd} bytes, left by an interrupted write) before appending after ${scan.records} flows`);
  }
}

/** Walks record boundaries without decoding payloads; throws FlowFileError on anything but a truncated tail. */
async function scanRecords(fh: FileHandle, path: string, size: number): Promise<{ validEnd: number; records: number }> {
  const block = new BlockReader(fh, size);
  let pos = 0;
  let records = 0;
  while (pos < size) {
    const head = await block.bytes(pos, PREFIX_BYTES);
    let length: number;
    let payloadStart: number;
    try {
      ({ length, payloadStart } = readLengthPrefix(head, 0, head.length, pos + head.length >= size));
    } catch (err) {
      if (!(err instanceof TnetstringError)) throw err;
      if (err.truncated) break;
      const what = records === 0 ? "not a flow file" : `corrupt flow record at byte ${pos + err.offset}`;
      throw new FlowFileError(path, pos + err.offset, `${what} (${err.reason}); refusing to append to it`);
    }
    const recordEnd = pos + payloadStart + length + 1;
    if (recordEnd > size) break;
    const tag = (await block.bytes(recordEnd - 1, 1))[0];
    if (tag !== TAG_DICT) {
      throw new FlowFileError(path, recordEnd - 1, `corrupt flow record at byte ${pos} (it does not end with a dict tag); refusing to append to it`);
    }
    pos = recordEnd;
    records++;
  }
  return { validEnd: pos, records };
}

/** Positional reads through a 1 MB window, so scanning many small records costs few syscalls. */
class BlockReader {
  private buf = Buffer.alloc(0);
  private bufStart = 0;

  constructor(
    private readonly fh: FileHandle,
    private readonly size: number,
  ) {}

  async bytes(pos: number, n: number): Promise<Buffer> {
    const want = Math.min(n, this.size - pos);
    if (pos < this.bufStart || pos + want > this.bufStart + this.buf.length) {
      const buf = Buffer.allocUnsafe(Math.min(Math.max(READ_CHUNK, want), this.size - pos));
      const got = await readFully(this.fh, buf, 0, buf.length, pos);
      this.buf = buf.subarray(0, got);
      this.bufStart = pos;
    }
    return this.buf.subarray(pos - this.bufStart, pos - this.bufStart + want);
  }
}
