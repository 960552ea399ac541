/**
 * Flow persistence: mitmproxy-compatible flow files, HAR 1.2, and the format registry that picks
 * a reader by a file's first bytes and a writer by its extension.
 */
import { open, rename, rm, stat } from "node:fs/promises";
import { extname } from "node:path";
import { sameFile } from "../core/same-file.js";
import type { HTTPFlow } from "../core/flow.js";
import { detectFlowFileKind, FlowFileError, FlowWriter, readFlows, type ReadFlowsOptions } from "./flowfile.js";
import { HarWriter } from "./har.js";
import { readSqlite, SQLITE_MAGIC, SqliteWriter } from "./sqlite.js";

export { decode, decodeAt, encode, encodeChunks, EncodeArena, readLengthPrefix, TnetBytes, TnetFloat, TnetstringError, MAX_LENGTH_DIGITS } from "./tnetstring.js";
export type { TnetDict, TnetValue, LengthPrefix } from "./tnetstring.js";
export {
  flowFromState,
  flowToState,
  migrateState,
  newMigrationContext,
  stateVersion,
  FlowFormatError,
  FLOW_FORMAT_CURRENT,
  FLOW_FORMAT_WRITTEN,
  SLUICE_METADATA_KEY,
} from "./mitm-format.js";
export type { FlowFormatErrorKind, MigrationContext } from "./mitm-format.js";
export { detectFlowFileKind, FlowFileError, FlowWriter, readFlows } from "./flowfile.js";
export type { FlowFileKind, FlowWriterOptions, ReadFlowsOptions } from "./flowfile.js";
export { flowsToHar, harToFlows, HarEntryExporter, HarWriter } from "./har.js";
export { openSqliteCapture, readSqlite, sqlForFilter, SqliteStoreError, SqliteWriter } from "./sqlite.js";
export { filterToSql } from "./sqlite-query.js";
export type { HarContent, HarCookie, HarCreator, HarEntry, HarLog, HarNameValue, HarPostData, HarRequest, HarResponse, HarTimings } from "./har.js";

/** Where converted or saved flows go. */
export interface FlowSink {
  write(flow: HTTPFlow): void;
  close(): Promise<void>;
  /** Bytes written and not yet accepted by the operating system, for back-pressure; absent when the sink bounds itself. */
  readonly backlog?: number;
  /** Resolves when everything written so far has been handed to the operating system. */
  flush?(): Promise<void>;
}

export interface WriterOptions {
  /**
   * The longest a written flow may wait before it is on disk (ms): files are forced to disk this
   * often and SQLite batches commit within it. 0 leaves file flushing to the kernel.
   */
  syncIntervalMs?: number;
}

/** A flow file format sluice can read and write. Register more with registerFlowFileFormat. */
export interface FlowFileFormat {
  name: string;
  /** Lower-case extensions with the dot (".har") that select this format for writing. */
  extensions: string[];
  /** Recognizes the format from a file's first 64 bytes (fewer for short files). */
  sniff(head: Buffer): boolean;
  read(path: string, options: ReadFlowsOptions & FilterHint): AsyncIterable<HTTPFlow>;
  openWriter(path: string, options?: WriterOptions): Promise<FlowSink>;
}

const MITMPROXY_FORMAT: FlowFileFormat = {
  name: "mitmproxy",
  extensions: [".mitm", ".flows"],
  sniff: (head) => detectFlowFileKind(head) === "tnetstring",
  read: readFlows,
  openWriter: (path, options) => FlowWriter.open(path, options),
};

const HAR_FORMAT: FlowFileFormat = {
  name: "har",
  extensions: [".har"],
  sniff: (head) => detectFlowFileKind(head) === "har",
  read: readFlows,
  openWriter: (path, options) => HarWriter.open(path, options),
};

/** Formats with indexes (SQLite) may yield only the flows matching `filter`; others ignore it. */
export interface FilterHint {
  filter?: string;
}

const SQLITE_FORMAT: FlowFileFormat = {
  name: "sqlite",
  extensions: [".sqlite", ".sqlite3", ".db"],
  sniff: (head) => head.length >= 16 && head.subarray(0, 16).equals(SQLITE_MAGIC),
  read: (path, options) => readSqlite(path, { filter: options.filter, onWarning: options.onWarning }),
  openWriter: (path, options) => SqliteWriter.open(path, options),
};

/** Later registrations are asked first, so a new format can claim its extension and magic bytes. */
const formats: FlowFileFormat[] = [SQLITE_FORMAT, HAR_FORMAT, MITMPROXY_FORMAT];

export function registerFlowFileFormat(format: FlowFileFormat): void {
  formats.unshift(format);
}

/** The format a file is written in, by extension; anything unknown is a mitmproxy flow file. */
export function formatForWriting(path: string): FlowFileFormat {
  const ext = extname(path).toLowerCase();
  return formats.find((f) => f.extensions.includes(ext)) ?? MITMPROXY_FORMAT;
}

/** Reads flows from any registered format, recognized by content rather than by name. */
export async function* readFlowFile(path: string, options: ReadFlowsOptions & FilterHint = {}): AsyncGenerator<HTTPFlow> {
  await assertFlowFileReadable(path);
  const head = Buffer.alloc(64);
  let length = 0;
  try {
    const fh = await open(path, "r");
    try {
      length = (await fh.read(head, 0, head.length, 0)).bytesRead;
    } finally {
      await fh.close();
    }
  } catch {
    // readFlows reports the unreadable file with a FlowFileError.
  }
  const sniffed = head.subarray(0, length);
  const format = length > 0 ? formats.find((f) => f.sniff(sniffed)) : undefined;
  yield* (format ?? MITMPROXY_FORMAT).read(path, options);
}

const FLOW_FILE_KINDS = "give a mitmproxy flow file (.mitm, .flows), a HAR file or an SQLite capture, e.g. one written with `sluice dump -w FILE`";

/**
 * A path that cannot be read as a flow file is one sentence naming it and the reason (missing,
 * a directory, no permission) rather than the bare errno a read would throw later.
 */
export async function assertFlowFileReadable(path: string): Promise<void> {
  let isDirectory: boolean;
  try {
    isDirectory = (await stat(path)).isDirectory();
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    const why = code === "ENOENT" ? "ENOENT, no such file" : code === "EACCES" ? "EACCES, permission denied" : (err as Error).message;
    throw new FlowFileError(path, 0, `cannot open for reading: ${why}; ${FLOW_FILE_KINDS}`);
  }
  if (isDirectory) throw new FlowFileError(path, 0, `is a directory; ${FLOW_FILE_KINDS}`);
}

export interface ConvertProgress {
  flows: number;
  bytesRead: number;
  bytesTotal: number;
  done: boolean;
}

export interface ConvertOptions {
  /** Called at most every 100 ms while converting, and once at the end with `done: true`. */
  onProgress?: (progress: ConvertProgress) => void;
  onWarning?: (message: string) => void;
  /** Only flows this filter expression matches are written (an SQLite input answers it from its indexes). */
  filter?: { expression: string; matches: (flow: HTTPFlow) => boolean };
}

/**
 * Converts a flow file to another format: the input format is recognized by content, the output
 * format chosen by extension (`.har` is HAR, `.mitm`, `.flows` and anything else a mitmproxy flow
 * file). The output appears under its name only once complete.
 */
export async function convertFile(inPath: string, outPath: string, options: ConvertOptions = {}): Promise<{ flows: number }> {
  // Any spelling of one file (a symlinked folder, a hard link): the converted output would replace the input.
  if (sameFile(inPath, outPath)) throw new Error(`cannot convert ${inPath} onto itself; choose a different output file`);
  const format = formatForWriting(outPath);
  if (!format.extensions.includes(extname(outPath).toLowerCase())) {
    const known = formats.map((f) => f.extensions.join(" or ")).join(", ");
    throw new Error(`cannot tell which format to write ${outPath} in: name it ${known}`);
  }
  const partial = `${outPath}.partial`;
  let sink: FlowSink;
  try {
    sink = await format.openWriter(partial);
  } catch (err) {
    // The writer names the temporary file; the user named OUT.
    throw new Error((err as Error).message.split(partial).join(outPath));
  }
  const progress: ConvertProgress = { flows: 0, bytesRead: 0, bytesTotal: 0, done: false };
  let lastReport = 0;
  try {
    const flows = readFlowFile(inPath, {
      filter: options.filter?.expression,
      onWarning: options.onWarning,
      onProgress: (read, total) => {
        progress.bytesRead = read;
        progress.bytesTotal = total;
      },
    });
    const matches = options.filter?.matches;
    for await (const flow of flows) {
      if (matches && !matches(flow)) continue;
      sink.write(flow);
      progress.flows++;
      const now = Date.now();
      if (options.onProgress && now - lastReport >= 100) {
        lastReport = now;
        options.onProgress({ ...progress });
      }
    }
    await sink.close();
  } catch (err) {
    await sink.close().catch(() => undefined);
    await rm(partial, { force: true });
    throw err;
  }
  await rename(partial, outPath);
  progress.done = true;
  progress.bytesRead = progress.bytesTotal;
  options.onProgress?.({ ...progress });
  return { flows: progress.flows };
}
