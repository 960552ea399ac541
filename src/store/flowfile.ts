/**
 * Flow files on disk: mitmproxy's format (tnetstring records, one per flow, no header), streamed.
 *
 * Reading never loads the whole file: records are decoded from 1 MB reads, and a record larger
 * than that is read straight into a buffer of its own size. Writing hands each record to the
 * kernel in one write call as soon as the flow is written, so `kill -9` loses at most the record
 * in flight, and a reader reports that truncated tail instead of failing.
 */
import { open, stat, truncate, type FileHandle } from "node:fs/promises";
import { openSync } from "node:fs";
import { AppendFile } from "./append-file.js";
import { whyNotWritable } from "./write-errors.js";
import { constants } from "node:buffer";
import type { HTTPFlow } from "../core/flow.js";
import { decode, encodeChunks, EncodeArena, readLengthPrefix, TnetstringError, MAX_LENGTH_DIGITS, type TnetDict } from "./tnetstring.js";
import { flowFromState, flowToState, FlowFormatError, newMigrationContext } from "./mitm-format.js";
import { harToFlows } from "./har.js";

/** A file sluice cannot read (or append to); the message names the file, the byte offset and what to do. */
export class FlowFileError extends Error {
  readonly file: string;
  readonly offset: number;
  /** For a damaged record: what is wrong with it, and the offset of the record's first byte. */
  readonly damage?: { reason: string; recordOffset: number };

  constructor(file: string, offset: number, message: string, damage?: { reason: string; recordOffset: number }) {
    super(`${file}: ${message}`);
    this.name = "FlowFileError";
    this.file = file;
    this.offset = offset;
    this.damage = damage;
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
      yield* readHar(fh, path, size, warn, options.onProgress);
      return;
    }
    if (kind === "empty" && head.length === size) return;
    yield* readTnetFlows(fh, path, size, warn, options.onProgress);
  } finally {
    await fh.close();
  }
}

/**
 * Reads records one after another. A damaged record (bad length, bad tag, undecodable, or not a
 * flow) is reported and skipped: reading resumes at the next byte where a whole, valid flow record
 * starts, as a file damaged in the middle still holds good flows after the damage.
 */
async function* readTnetFlows(fh: FileHandle, path: string, size: number, warn: (m: string) => void, onProgress?: (read: number, total: number) => void): AsyncGenerator<HTTPFlow> {
  const records = new RecordSource(fh, path, size);
  const ctx = newMigrationContext();
  const skippedTypes = new Set<string>();
  let count = 0;
  const skipDamage = async (recordOffset: number, reason: string, error: FlowFileError | null): Promise<boolean> => {
    const next = await records.resync(recordOffset + 1);
    if (next === null) {
      if (error) throw error;
      warn(`${path}: damaged flow record at byte ${recordOffset} (${reason}) and no readable flow after it; ${count} flows read`);
      return false;
    }
    warn(`${path}: damaged flow record at byte ${recordOffset} (${reason}); skipped ${next - recordOffset} bytes to the next good record at byte ${next}`);
    return true;
  };
  for (;;) {
    let record: TnetRecord | "truncated" | null;
    try {
      const next = records.next(count);
      record = next instanceof Promise ? await next : next;
    } catch (err) {
      if (!(err instanceof FlowFileError) || !err.damage) throw err;
      // A file that does not even start like a flow file is not resynchronised into: it is the wrong file.
      if (!(await skipDamage(err.damage.recordOffset, err.damage.reason, count === 0 && err.damage.recordOffset === 0 ? err : null))) break;
      continue;
    }
    if (record === null) break;
    if (record === "truncated") {
      const at = records.offset;
      // A length that runs past the end is a cut-off tail, unless good records follow (damage).
      if ((await records.resync(at + 1)) !== null) {
        warn(`${path}: damaged flow record at byte ${at} (its length runs past the end of the file); skipped to the next good record at byte ${records.offset}`);
        continue;
      }
      warn(`${path}: truncated record at byte ${at}, ${count} flows read`);
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
      const what = `the flow at byte ${record.offset} is not a valid HTTP flow (${err.message})`;
      // A first record that is not a flow means the wrong kind of file, not a damaged one.
      if (record.offset === 0) throw new FlowFileError(path, 0, `${what}; is this a flow file?`);
      warn(`${path}: ${what}; skipped`);
      continue;
    }
    count++;
    yield flow;
  }
}

async function* readHar(fh: FileHandle, path: string, size: number, warn: (m: string) => void, onProgress?: (read: number, total: number) => void): AsyncGenerator<HTTPFlow> {
  // HAR is one JSON document: it has to be parsed whole, so it must fit in one JS string.
  if (size > constants.MAX_STRING_LENGTH) {
    throw new FlowFileError(path, 0, `is a ${Math.round(size / 1e6)} MB HAR file, too large to parse as one JSON document; split it, or capture to a .mitm flow file instead`);
  }
  const buf = Buffer.allocUnsafe(size);
  await readFully(fh, buf, 0, size, 0);
  const bom = buf[0] === 0xef && buf[1] === 0xbb && buf[2] === 0xbf ? 3 : 0;
  const text = buf.toString("utf8", bom);
  let json: unknown;
  let parseError: Error | null = null;
  try {
    json = JSON.parse(text);
  } catch (err) {
    parseError = err as Error;
    // A capture cut short (a crash before the closing `]}}`) still holds whole entries: keep them.
    const recovered = recoverHarEntries(text);
    if (recovered && !recovered.complete) {
      warn(`${path}: HAR file is cut short at byte ${size} (an interrupted capture?); read the ${recovered.entries.length} complete entries before the cut`);
      json = { log: { entries: recovered.entries } };
      parseError = null;
    }
  }
  if (parseError) {
    // V8 names the position for most syntax errors, not all of them.
    const reason = parseError.message;
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

/**
 * The whole entries of `log.entries` in a HAR text that ends early: walks the JSON structure
 * (strings and nesting only) and parses each entry that closes before the text ends. Null when
 * there is no `log.entries` array to recover from; `complete` when the array itself closed (the
 * text is broken elsewhere, so this is not a truncation to recover from).
 */
export function recoverHarEntries(text: string): { entries: unknown[]; complete: boolean } | null {
  const entries: unknown[] = [];
  const keys: (string | null)[] = [];
  let lastString: string | null = null;
  let entriesDepth = -1;
  let entryStart = -1;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c === 0x22 /* " */) {
      const start = i;
      for (i++; i < text.length && text.charCodeAt(i) !== 0x22; i++) if (text.charCodeAt(i) === 0x5c) i++;
      if (i >= text.length) break;
      lastString = keys.length <= 2 ? text.slice(start + 1, i) : null;
    } else if (c === 0x3a /* : */) {
      keys[keys.length - 1] = lastString;
    } else if (c === 0x7b /* { */ || c === 0x5b /* [ */) {
      if (entriesDepth >= 0 && keys.length === entriesDepth + 1 && c === 0x7b) entryStart = i;
      const parentKey = keys.length === 2 && keys[0] === "log" ? keys[1] : null;
      keys.push(null);
      if (c === 0x5b && parentKey === "entries" && entriesDepth < 0) entriesDepth = keys.length - 1;
    } else if (c === 0x7d /* } */ || c === 0x5d /* ] */) {
      keys.pop();
      if (entriesDepth >= 0 && keys.length === entriesDepth + 1 && c === 0x7d && entryStart >= 0) {
        try {
          entries.push(JSON.parse(text.slice(entryStart, i + 1)));
        } catch {
          return null;
        }
        entryStart = -1;
      } else if (entriesDepth >= 0 && keys.length === entriesDepth) {
        return { entries, complete: true };
      }
    }
  }
  return entriesDepth >= 0 ? { entries, complete: false } : null;
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
      { reason: `${reason} at byte ${at}`, recordOffset: this.offset },
    );
  }

  /**
   * Finds the first offset at or after `from` where a whole flow record starts: a length prefix,
   * a payload that decodes to a dict with "type" and "version" keys, and the dict tag where the
   * length says. Reading continues there; returns that offset, or null if there is none.
   */
  async resync(from: number): Promise<number | null> {
    this.size = (await this.fh.stat()).size;
    const window = new BlockReader(this.fh, this.size);
    const candidate = /\d{1,12}:\d/g;
    for (let pos = from; pos < this.size; ) {
      const chunk = await window.bytes(pos, READ_CHUNK);
      const text = chunk.toString("latin1");
      candidate.lastIndex = 0;
      for (let m = candidate.exec(text); m; m = candidate.exec(text)) {
        const at = pos + m.index;
        if (await this.isRecordAt(at, window)) {
          this.buf = Buffer.alloc(0);
          this.start = this.end = 0;
          this.bufOffset = this.filePos = at;
          return at;
        }
        candidate.lastIndex = m.index + 1;
      }
      // Overlap windows so a prefix cut by the window's end is seen whole in the next one.
      pos += Math.max(1, chunk.length - PREFIX_BYTES - 2);
      if (chunk.length < READ_CHUNK) break;
    }
    return null;
  }

  private async isRecordAt(at: number, window: BlockReader): Promise<boolean> {
    const head = await window.bytes(at, PREFIX_BYTES);
    let length: number;
    let payloadStart: number;
    try {
      ({ length, payloadStart } = readLengthPrefix(head, 0, head.length, true));
    } catch {
      return false;
    }
    const end = at + payloadStart + length + 1;
    if (end > this.size || (await window.bytes(end - 1, 1))[0] !== TAG_DICT) return false;
    const record = Buffer.allocUnsafe(end - at);
    if ((await readFully(this.fh, record, 0, record.length, at)) < record.length) return false;
    try {
      const state = decode(record) as TnetDict;
      return state !== null && typeof state === "object" && "type" in state && "version" in state;
    } catch {
      return false;
    }
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
  /** Force written flows to disk this often (ms) while writing; 0 leaves it to the kernel. */
  syncIntervalMs?: number;
}

/** Small records are packed into arenas of this size; each full or end-of-tick arena slice is one write. */
const ARENA_BYTES = 1 << 20;
/** write() returns false once this much is queued in memory: await flush() before writing more. */
const HIGH_WATER_BYTES = 16 << 20;

/**
 * Writes flows to a mitmproxy-compatible flow file (format version 17), one record per flow.
 *
 * Records are encoded straight into a 1 MB arena; what was written during one synchronous run of
 * JavaScript is queued for the kernel right after it (a microtask), so nothing waits for a timer
 * and a record is never split. The file (AppendFile) hands everything queued meanwhile to the
 * kernel in one writev as soon as the previous write is done, so under load it writes fewer,
 * larger pieces instead of falling behind. A record with a large body is queued with its body
 * passed by reference.
 */
export class FlowWriter {
  private arena = new EncodeArena(ARENA_BYTES);
  /** Start of the arena bytes encoded but not yet handed to the file. */
  private stagedFrom = 0;
  private flushQueued = false;
  private failure: Error | null = null;
  private closed = false;
  private flows = 0;
  private readonly file: AppendFile;

  private constructor(
    fd: number,
    readonly path: string,
    syncIntervalMs: number,
  ) {
    this.file = new AppendFile(fd, syncIntervalMs, (err) => this.fail(err));
  }

  static async open(path: string, options: FlowWriterOptions = {}): Promise<FlowWriter> {
    if (options.append) await prepareForAppend(path, options.onWarning ?? ((m) => console.warn(m)));
    let fd: number;
    try {
      // Opening is one quick call; doing it synchronously saves a thread-pool round trip, which
      // is a third of the time of writing a one-flow file.
      fd = openSync(path, options.append ? "a" : "w", 0o644);
    } catch (err) {
      throw new FlowFileError(path, 0, whyNotWritable(path, err));
    }
    return new FlowWriter(fd, path, options.syncIntervalMs ?? 0);
  }

  /** Flows written so far. */
  get count(): number {
    return this.flows;
  }

  /** Bytes encoded and not yet accepted by the kernel. */
  get backlog(): number {
    return this.file.backlog + (this.arena.used - this.stagedFrom);
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
      this.file.append(chunks);
      this.stagedFrom = arena.used;
      if (!inArena && arena.buffer.length - arena.used < ARENA_BYTES / 4) {
        this.arena = new EncodeArena(ARENA_BYTES);
        this.stagedFrom = 0;
      }
    }
    return this.file.backlog < HIGH_WATER_BYTES;
  }

  /** Resolves when everything written so far has been handed to the operating system. */
  async flush(): Promise<void> {
    this.sendStaged();
    await this.file.drained();
    if (this.failure) throw this.failure;
  }

  async close(): Promise<void> {
    if (this.closed) return this.flush();
    this.closed = true;
    this.sendStaged();
    await this.file.close();
    if (this.failure) throw this.failure;
  }

  private readonly sendStaged = (): void => {
    this.flushQueued = false;
    this.sendArena(this.arena.used);
    // A nearly full arena is retired; its bytes now belong to the file.
    if (this.arena.buffer.length - this.arena.used < ARENA_BYTES / 16) {
      this.arena = new EncodeArena(ARENA_BYTES);
      this.stagedFrom = 0;
    }
  };

  /** Hands the staged arena bytes up to `end` to the file. */
  private sendArena(end: number): void {
    if (end > this.stagedFrom) this.file.append([this.arena.buffer.subarray(this.stagedFrom, end)]);
    this.stagedFrom = end;
  }

  private fail(err: Error): void {
    this.failure ??= new FlowFileError(this.path, 0, `writing flows failed: ${err.message}`);
  }
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
