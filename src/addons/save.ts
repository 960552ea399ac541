/**
 * `-w FILE`: every finished flow is written to FILE as it completes (`-w +FILE` appends), in the
 * format the extension picks (mitmproxy flow file by default, `.har` for HAR, `.sqlite`);
 * `save_stream_filter` limits what is saved. The `save.file FLOWS PATH` command (mitmproxy's
 * name; the console's `w` key) writes chosen flows once.
 *
 * Saving never delays a response: flows finished in one event-loop turn are encoded and written
 * together right after it, by one writer that hands everything waiting to the kernel in a single
 * call (so it keeps up under load and `kill -9` loses at most what the last moments produced).
 * When the disk falls more than `save_max_backlog` behind, finishing flows wait for it
 * (back-pressure) rather than memory growing without bound; nothing is dropped silently.
 */
import type { Addon, AddonContext } from "../core/addons.js";
import { CommandError } from "../core/commands.js";
import type { HTTPFlow } from "../core/flow.js";
import type { FlowPredicate } from "../core/filter.js";
import { Counter } from "../core/prometheus.js";
import { parseDuration } from "../core/values.js";
import { FlowWriter, formatForWriting, type FlowSink } from "../store/index.js";
import { declareOptions, type TypedOptions } from "../core/options.js";
import { expandHome } from "../core/spec.js";
import { sameFile } from "../core/same-file.js";
import { HAR_DUMP_OPTIONS } from "./har-dump.js";

/** Above this many bytes waiting for the disk, finishing flows wait for it (back-pressure). */
const DEFAULT_BACKLOG = 64 * 1024 * 1024;
/** How long a stop waits for flows still in flight (their connections just closed) to finish. */
const SHUTDOWN_GRACE_MS = 2000;
const MAX_TRACKED_LIVE = 100_000;

/** The options this addon owns, declared once (names, types, defaults, help). */
export const SAVE_OPTIONS = declareOptions({
  save_stream_file: { type: "optional-string", default: null, help: "Write finished flows to this file as they complete (+FILE appends; .har writes HAR)" },
  save_stream_filter: { type: "optional-string", default: null, help: "Only save flows matching this filter" },
  save_flush_interval: { type: "string", default: "1s", help: "The longest a saved flow waits before it is on disk (forced with fdatasync; SQLite commits within it): after a crash at most this much is missing" },
  save_max_backlog: { type: "size", default: DEFAULT_BACKLOG, help: "Bytes of flows waiting for the disk before finishing flows wait for it (back-pressure) instead of memory growing" },
});

export class Save implements Addon {
  name = "save";
  private ctx!: AddonContext;
  private opts!: TypedOptions<typeof SAVE_OPTIONS>;
  private sink: FlowSink | null = null;
  private path = "";
  /** The save_stream_file value the open sink was opened for. */
  private openSpec: string | null = null;
  private filter: FlowPredicate | null = null;
  private written = new WeakSet<HTTPFlow>();
  /** Flows finished this event-loop turn: encoded and written together after their responses went out. */
  private pending: HTTPFlow[] = [];
  private writeScheduled = false;
  /** While the disk is behind: resolves when it has caught up. */
  private stall: Promise<void> | null = null;
  private stallStarted = 0;
  private failed = 0;
  private lateFlows = 0;
  private closing = false;
  /** Flows begun and not yet finished, so a graceful stop can wait for them. */
  private live = new Set<HTTPFlow>();
  private onSettled: (() => void) | null = null;
  private counters!: {
    saved: Counter;
    failed: Counter;
    stalls: Counter;
    stallSeconds: Counter;
  };

  load(ctx: AddonContext): void {
    this.ctx = ctx;
    this.opts = ctx.options.register(SAVE_OPTIONS);
    const counter = (name: string, help: string) => new Counter({ name, help, registers: [ctx.metrics] });
    this.counters = {
      saved: counter("sluice_save_flows_total", "Flows written to the -w capture"),
      failed: counter("sluice_save_failed_total", "Flows that could not be written to the -w capture (see the log)"),
      stalls: counter("sluice_save_stalls_total", "Times finishing flows had to wait for the capture to catch up with the disk"),
      stallSeconds: counter("sluice_save_stall_seconds_total", "Seconds finishing flows waited for the capture to catch up with the disk"),
    };
    ctx.commands.add({
      name: "save.file",
      help: "Save flows to a file: .har for HAR, .sqlite for SQLite, else a mitmproxy flow file",
      params: [{ name: "flows", type: "flows" }, { name: "path", type: "rest" }],
      run: (flows: HTTPFlow[], path: string) => {
        this.refuseLiveFile(path);
        return saveFlows(flows, path);
      },
    });
  }

  async configure(updated: Set<string>): Promise<void> {
    if (updated.has("save_stream_filter")) {
      const expr = this.opts.save_stream_filter;
      this.filter = expr ? this.ctx.filter(expr) : null;
    }
    if (updated.has("save_flush_interval")) this.syncIntervalMs();
    if (updated.has("save_stream_file") || updated.has("hardump")) this.refuseSharedFile();
    if (!updated.has("save_stream_file")) return;
    const spec = this.opts.save_stream_file;
    // The same value again (a rollback after another option was refused): reopening would empty the capture.
    if (spec && spec === this.openSpec && this.sink) return;
    await this.closeSink();
    if (!spec) return;
    // `-w -` reads as "standard output" (as `tcpdump -w -`), but would make a file named "-" here.
    if (spec === "-" || spec === "+-") throw new Error(`save_stream_file: -w - would write a file named "-", not standard output (where sluice dump prints its flow lines); give a file name, or ./- if that file is what you mean`);
    const append = spec.startsWith("+");
    // `~/captures/x.mitm` from config.yaml or a quoted argument means the home folder, as in mitmproxy.
    const path = expandHome(append ? spec.slice(1) : spec);
    const format = formatForWriting(path);
    if (append && format.name !== "mitmproxy") throw new Error(`save_stream_file: only mitmproxy flow files can be appended to (+FILE), not ${format.name}`);
    const syncIntervalMs = this.syncIntervalMs();
    try {
      this.sink = append
        ? await FlowWriter.open(path, { append, syncIntervalMs, onWarning: (m) => this.ctx.log.warn(m) })
        : await format.openWriter(path, { syncIntervalMs });
    } catch (err) {
      // The writer's message starts with the path already.
      const why = (err as Error).message.startsWith(`${path}: `) ? (err as Error).message.slice(path.length + 2) : (err as Error).message;
      throw new Error(`cannot write flows to ${path}: ${why}`);
    }
    this.path = path;
    this.openSpec = spec;
    this.closing = false;
    this.ctx.log.info(`saving flows to ${path}${append ? " (appending)" : ""}`);
  }

  /** The -w file and hardump's HAR file written on exit would overwrite each other: one file, one writer. */
  private refuseSharedFile(): void {
    const spec = this.opts.save_stream_file;
    const hardump = this.ctx.options.lookup(HAR_DUMP_OPTIONS)?.hardump ?? null;
    if (!spec || !hardump || hardump === "-") return;
    const path = spec.startsWith("+") ? spec.slice(1) : spec;
    if (sameFile(path, hardump)) {
      throw new Error(`save_stream_file (-w) and hardump name the same file (${spec} and ${hardump}): the HAR written on exit would overwrite the capture; give them different files, or use only -w FILE.har to stream HAR`);
    }
  }

  /** `save.file` onto the file -w is streaming to (or hardump's) would leave neither intact. */
  private refuseLiveFile(path: string): void {
    refuseLiveOutput(this.ctx.options, "save.file", path);
  }

  private syncIntervalMs(): number {
    const text = this.opts.save_flush_interval;
    try {
      return parseDuration(text);
    } catch (err) {
      throw new Error(`save_flush_interval: ${(err as Error).message}`);
    }
  }

  requestHeaders(flow: HTTPFlow): void {
    if (!this.sink) return;
    // Only for the shutdown wait: a flow that somehow never finishes must not pin memory forever.
    if (this.live.size >= MAX_TRACKED_LIVE) this.live.clear();
    this.live.add(flow);
  }

  response(flow: HTTPFlow): Promise<void> | void {
    // WebSocket flows are saved when they end, with their messages.
    if (!flow.websocket) return this.finished(flow);
  }

  error(flow: HTTPFlow): Promise<void> | void {
    return this.finished(flow);
  }

  websocketEnd(flow: HTTPFlow): Promise<void> | void {
    return this.finished(flow);
  }

  /**
   * A flow read from a file (`-r`) goes to `-w` too, as with mitmdump `-nr IN -w OUT`; the
   * promise (when the disk is behind) says when to read on.
   */
  saveLoaded(flow: HTTPFlow): Promise<void> | void {
    return this.save(flow);
  }

  private finished(flow: HTTPFlow): Promise<void> | void {
    if (this.live.delete(flow) && this.live.size === 0) this.onSettled?.();
    return this.save(flow);
  }

  /** Queues the flow; when the disk is far behind, the returned promise holds the flow until it catches up. */
  private save(flow: HTTPFlow): Promise<void> | void {
    if (this.written.has(flow)) return;
    if (!this.sink) {
      if (this.closing) this.notSavedAtShutdown(flow);
      return;
    }
    if (this.filter && !this.filter(flow)) return;
    this.written.add(flow);
    this.pending.push(flow);
    if (!this.writeScheduled) {
      this.writeScheduled = true;
      setImmediate(this.writePending);
    }
    return this.stall ?? this.backPressure();
  }

  private readonly writePending = (): void => {
    this.writeScheduled = false;
    const flows = this.pending;
    this.pending = [];
    const sink = this.sink;
    if (!sink) return;
    for (const flow of flows) {
      try {
        sink.write(flow);
        this.counters.saved.inc();
      } catch (err) {
        this.counters.failed.inc();
        // One line per failure would flood the log when the disk is full: the first, then a count.
        if (this.failed++ === 0) this.ctx.log.error(`cannot save flows to ${this.path}: ${(err as Error).message}; flows are not being saved (counted in sluice_save_failed_total)`);
      }
    }
  };

  private backPressure(): Promise<void> | void {
    const backlog = this.sink?.backlog;
    if (backlog === undefined || !this.sink?.flush || backlog < this.opts.save_max_backlog) return;
    this.stallStarted = performance.now();
    this.counters.stalls.inc();
    this.ctx.log.warn(`${this.path}: the disk is ${(backlog / 1e6).toFixed(0)} MB behind; finishing flows wait until it catches up (save_max_backlog)`);
    this.stall = this.sink
      .flush()
      .catch(() => undefined)
      .then(() => {
        const seconds = (performance.now() - this.stallStarted) / 1000;
        this.counters.stallSeconds.inc(seconds);
        this.ctx.log.info(`${this.path}: caught up with the disk after ${seconds.toFixed(1)} s`);
        this.stall = null;
      });
    return this.stall;
  }

  private notSavedAtShutdown(flow: HTTPFlow): void {
    if (this.lateFlows++ === 0) this.ctx.log.warn(`${flow.request.prettyUrl} finished after ${this.path} was closed at shutdown and is not in it`);
  }

  private async closeSink(): Promise<void> {
    const sink = this.sink;
    if (!sink) return;
    this.writePending();
    this.sink = null;
    this.openSpec = null;
    this.closing = true;
    try {
      await sink.close();
    } catch (err) {
      this.ctx.log.error(`cannot finish ${this.path}: ${(err as Error).message}`);
    }
  }

  async done(): Promise<void> {
    // Flows of connections the shutdown just closed end with an error a moment later: save them too.
    if (this.live.size > 0) {
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, SHUTDOWN_GRACE_MS);
        this.onSettled = () => {
          clearTimeout(timer);
          resolve();
        };
      });
      this.onSettled = null;
    }
    await this.closeSink();
    if (this.failed > 0) this.ctx.log.error(`${this.failed} flow${this.failed === 1 ? " was" : "s were"} not saved to ${this.path} (see the first error above)`);
    if (this.lateFlows > 1) this.ctx.log.warn(`${this.lateFlows} flows finished after ${this.path} was closed at shutdown and are not in it`);
  }
}

/**
 * A command writing a file (`save.file`, `export.file`, `cut.save`) onto the file -w is streaming
 * to, or the one hardump writes on exit, would leave neither intact: refused, naming which.
 */
export function refuseLiveOutput(options: AddonContext["options"], command: string, path: string): void {
  const target = expandHome(path.trim().replace(/^\+/, ""));
  if (!target) return;
  const stream = options.lookup(SAVE_OPTIONS)?.save_stream_file ?? null;
  if (stream && sameFile(target, stream.replace(/^\+/, ""))) throw new CommandError(`${command}: ${path.trim()} is the file -w (save_stream_file) is writing flows to; write to another file`);
  const hardump = options.lookup(HAR_DUMP_OPTIONS)?.hardump ?? null;
  if (hardump && hardump !== "-" && sameFile(target, hardump)) throw new CommandError(`${command}: ${path.trim()} is the file hardump writes on exit, which would overwrite it; write to another file`);
}

/** `save.file`: writes `flows` to `path` in the format its extension names. */
async function saveFlows(flows: HTTPFlow[], path: string): Promise<string> {
  if (!path.trim()) throw new CommandError("save.file: give a file name, e.g. save.file @shown flows.mitm");
  const target = expandHome(path.trim());
  try {
    const sink = await formatForWriting(target).openWriter(target);
    for (const f of flows) sink.write(f);
    await sink.close();
  } catch (err) {
    throw new CommandError(`save.file: cannot write ${target}: ${(err as Error).message}`);
  }
  return `saved ${flows.length} flow${flows.length === 1 ? "" : "s"} to ${target}`;
}
