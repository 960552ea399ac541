/**
 * `-w FILE`: every finished flow is written to FILE as it completes (`-w +FILE` appends), in the
 * format the extension picks (mitmproxy flow file by default, `.har` for HAR, `.sqlite`);
 * `save_stream_filter` limits what is saved. The `save.file FLOWS PATH` command (mitmproxy's
 * name; the console's `w` key) writes chosen flows once.
 */
import type { Addon, AddonContext } from "../core/addons.js";
import { CommandError } from "../core/commands.js";
import type { HTTPFlow } from "../core/flow.js";
import type { FlowPredicate } from "../core/filter.js";
import { FlowWriter, formatForWriting, type FlowSink } from "../store/index.js";

export class Save implements Addon {
  name = "save";
  private ctx!: AddonContext;
  private sink: FlowSink | null = null;
  private filter: FlowPredicate | null = null;
  private written = new WeakSet<HTTPFlow>();

  load(ctx: AddonContext): void {
    this.ctx = ctx;
    ctx.options.add({ name: "save_stream_file", type: "optional-string", default: null, help: "Write finished flows to this file as they complete (+FILE appends; .har writes HAR)" });
    ctx.options.add({ name: "save_stream_filter", type: "optional-string", default: null, help: "Only save flows matching this filter" });
    ctx.commands.add({
      name: "save.file",
      help: "Save flows to a file: .har for HAR, .sqlite for SQLite, else a mitmproxy flow file",
      params: [{ name: "flows", type: "flows" }, { name: "path", type: "rest" }],
      run: (flows: HTTPFlow[], path: string) => saveFlows(flows, path),
    });
  }

  async configure(updated: Set<string>): Promise<void> {
    if (updated.has("save_stream_filter")) {
      const expr = this.ctx.options.get<string | null>("save_stream_filter");
      this.filter = expr ? this.ctx.filter(expr) : null;
    }
    if (!updated.has("save_stream_file")) return;
    await this.sink?.close();
    this.sink = null;
    const spec = this.ctx.options.get<string | null>("save_stream_file");
    if (!spec) return;
    const append = spec.startsWith("+");
    const path = append ? spec.slice(1) : spec;
    const format = formatForWriting(path);
    if (append && format.name !== "mitmproxy") throw new Error(`save_stream_file: only mitmproxy flow files can be appended to (+FILE), not ${format.name}`);
    try {
      this.sink = append ? await FlowWriter.open(path, { append, onWarning: (m) => this.ctx.log.warn(m) }) : await format.openWriter(path);
    } catch (err) {
      throw new Error(`cannot write flows to ${path}: ${(err as Error).message}`);
    }
    this.ctx.log.info(`saving flows to ${path}${append ? " (appending)" : ""}`);
  }

  response(flow: HTTPFlow): void {
    // WebSocket flows are saved when they end, with their messages.
    if (!flow.websocket) this.save(flow);
  }

  error(flow: HTTPFlow): void {
    this.save(flow);
  }

  websocketEnd(flow: HTTPFlow): void {
    this.save(flow);
  }

  private save(flow: HTTPFlow): void {
    if (!this.sink || this.written.has(flow)) return;
    if (this.filter && !this.filter(flow)) return;
    this.written.add(flow);
    try {
      this.sink.write(flow);
    } catch (err) {
      this.ctx.log.error(`cannot save flow ${flow.request.prettyUrl}: ${(err as Error).message}`);
    }
  }

  async done(): Promise<void> {
    await this.sink?.close();
    this.sink = null;
  }
}

/** `save.file`: writes `flows` to `path` in the format its extension names. */
async function saveFlows(flows: HTTPFlow[], path: string): Promise<string> {
  if (!path.trim()) throw new CommandError("save.file: give a file name, e.g. save.file @shown flows.mitm");
  const target = path.trim().replace(/^~(?=\/)/, process.env.HOME ?? "~");
  try {
    const sink = await formatForWriting(target).openWriter(target);
    for (const f of flows) sink.write(f);
    await sink.close();
  } catch (err) {
    throw new CommandError(`save.file: cannot write ${target}: ${(err as Error).message}`);
  }
  return `saved ${flows.length} flow${flows.length === 1 ? "" : "s"} to ${target}`;
}
