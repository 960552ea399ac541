/**
 * `sluice dump` output: one line per finished flow (client, method, URL, status, type, size,
 * duration, retry attempt, injected fault), more with `--flow-detail`.
 * Lines are batched per event-loop turn so a busy proxy does not make one write per flow.
 */
import type { Addon, AddonContext } from "../core/addons.js";
import type { HTTPFlow } from "../core/flow.js";
import { compileFilter, type FlowPredicate } from "../core/filter.js";
import { awsInfoOf } from "../aws/index.js";
import { declareOptions, type TypedOptions } from "../core/options.js";

export interface DumpOutput {
  write(text: string): void;
  color: boolean;
}

export function stdoutOutput(): DumpOutput {
  const color = !!process.stdout.isTTY && !process.env.NO_COLOR;
  return { write: (t) => process.stdout.write(t), color };
}

const BODY_PREVIEW = 4096;

/** The options this addon owns, declared once (names, types, defaults, help). */
export const DUMP_OPTIONS = declareOptions({
  flow_detail: { type: "int", default: 1, help: "0 nothing, 1 one line per flow, 2 with headers, 3 with bodies (truncated), 4 full bodies" },
  showhost: { type: "bool", default: false, help: "Show URLs with the Host header's name instead of the address connected to (mitmproxy's --showhost)" },
  dumper_filter: { type: "optional-string", default: null, help: "Only print flows matching this filter expression" },
});

export class Dump implements Addon {
  name = "dump";
  private detail = 1;
  private showhost = false;
  /** Several --mode listeners: each line starts with the mode that accepted the flow. */
  private tagMode = false;
  private filter: FlowPredicate | null = null;
  private pending: string[] = [];
  private scheduled = false;
  private ctx!: AddonContext;
  private opts!: TypedOptions<typeof DUMP_OPTIONS>;

  constructor(private readonly out: DumpOutput = stdoutOutput()) {}

  load(ctx: AddonContext): void {
    this.ctx = ctx;
    this.opts = ctx.options.register(DUMP_OPTIONS);
  }

  configure(updated: Set<string>): void {
    if (updated.has("flow_detail")) {
      const d = this.opts.flow_detail;
      if (d < 0 || d > 4) throw new Error(`flow_detail must be 0 to 4, got ${d}`);
      this.detail = d;
    }
    if (updated.has("mode")) this.tagMode = this.ctx.core.mode.length > 1;
    if (updated.has("showhost")) this.showhost = this.opts.showhost;
    if (updated.has("dumper_filter")) {
      const expr = this.opts.dumper_filter;
      this.filter = expr ? compileFilter(expr) : null;
    }
  }

  response(flow: HTTPFlow): void {
    this.show(flow);
  }

  error(flow: HTTPFlow): void {
    // A flow that already printed its response (e.g. client left mid-body) is not printed twice.
    if (!flow.response || flow.response.timestampEnd === null) this.show(flow);
  }

  websocketEnd(flow: HTTPFlow): void {
    if (this.detail >= 3 && flow.websocket) {
      const lines = flow.websocket.messages.map((m) => `    ${m.fromClient ? "→" : "←"} ${m.type === 1 ? m.content.toString("utf8").slice(0, 200) : `<${m.content.length} bytes binary>`}`);
      this.emit(`${lines.join("\n")}\n    WebSocket closed by ${flow.websocket.closedByClient ? "client" : "server"} (${flow.websocket.closeCode})\n`);
    }
  }

  /** Prints a flow if it passes the filter; also used by `sluice dump -n -r FILE`. */
  show(flow: HTTPFlow): void {
    if (this.detail === 0) return;
    if (this.filter && !this.filter(flow)) return;
    const line = formatFlow(flow, this.detail, this.out.color, this.showhost);
    this.emit(this.tagMode ? `[${flow.clientConn.proxyMode}] ${line}` : line);
  }

  private emit(text: string): void {
    this.pending.push(text);
    if (!this.scheduled) {
      this.scheduled = true;
      setImmediate(() => this.flush());
    }
  }

  flush(): void {
    this.scheduled = false;
    if (this.pending.length === 0) return;
    const text = this.pending.join("");
    this.pending = [];
    this.out.write(text);
  }

  done(): void {
    this.flush();
  }
}

/** `showhost`: the URL as the Host header names it (mitmproxy's pretty_url), else as connected to. */
export function formatFlow(flow: HTTPFlow, detail: number, color: boolean, showhost = false): string {
  const c = color ? colors : plain;
  const req = flow.request;
  const client = flow.clientConn.peername ? `${flow.clientConn.peername[0]}:${flow.clientConn.peername[1]}` : "-";
  let line = `${client} ${c.bold(req.method)} ${showhost ? req.prettyUrl : req.url}`;
  const resp = flow.response;
  if (resp) {
    const st = `${resp.statusCode}${resp.reason ? " " + resp.reason : ""}`;
    line += ` → ${resp.statusCode >= 500 || resp.statusCode === 429 ? c.red(st) : resp.statusCode >= 400 ? c.yellow(st) : c.green(st)}`;
    const type = resp.headers.get("content-type");
    if (type) line += ` ${type.split(";")[0]}`;
    line += ` ${humanSize(resp.streamed ? resp.contentLength : (resp.content?.length ?? resp.contentLength))}`;
  }
  if (flow.error) line += ` ${c.red("✗ " + flow.error.msg)}`;
  const duration = flow.duration;
  if (duration !== null) line += ` ${humanDuration(duration)}`;
  const aws = awsInfoOf(flow);
  if (aws?.attempt && (aws.attempt > 1 || (aws.maxAttempts ?? 0) > 1)) line += ` ${c.magenta(`[attempt ${aws.attempt}${aws.maxAttempts ? "/" + aws.maxAttempts : ""}]`)}`;
  else {
    // Clients without amz-sdk-request: the retries addon infers attempts from repeats after failures.
    const retry = flow.metadata.retry as { attempt?: number; inferred?: boolean } | undefined;
    if (retry?.inferred && (retry.attempt ?? 1) > 1) line += ` ${c.magenta(`[attempt ${retry.attempt}, inferred]`)}`;
  }
  const shaped = flow.metadata.shaping as { waitMs?: number; rejected?: string } | undefined;
  if (shaped && !shaped.rejected && (shaped.waitMs ?? 0) >= 1) line += ` ${c.cyan(`[shaped ${humanDuration((shaped.waitMs ?? 0) / 1000)}]`)}`;
  const fault = flow.metadata.fault as { action?: string } | undefined;
  if (fault?.action) line += ` ${c.magenta(`[fault: ${fault.action}]`)}`;
  if (flow.isReplay) line += ` [replay]`;
  line += "\n";
  if (detail >= 2) {
    line += indent(req.headers.toText());
    if (detail >= 3) line += bodyText(req.decodedContent, req.headers.get("content-type"), detail);
    if (resp) {
      line += `    ${resp.httpVersion} ${resp.statusCode} ${resp.reason}\n` + indent(resp.headers.toText());
      if (detail >= 3) line += bodyText(resp.decodedContent, resp.headers.get("content-type"), detail);
    }
  }
  return line;
}

function indent(text: string): string {
  return text ? text.split("\n").map((l) => `    ${l}\n`).join("") : "";
}

function bodyText(body: Buffer | null, type: string | undefined, detail: number): string {
  if (!body || body.length === 0) return "";
  const limit = detail >= 4 ? Infinity : BODY_PREVIEW;
  const slice = body.length > limit ? body.subarray(0, limit) : body;
  const binary = !/json|xml|text|javascript|x-www-form-urlencoded|html/i.test(type ?? "") && slice.includes(0);
  const shown = binary ? `<${body.length} bytes binary>` : slice.toString("utf8");
  const more = body.length > limit ? `\n… (${body.length - limit} more bytes; --flow-detail 4 shows all)` : "";
  return indent(shown + more) + "\n";
}

export function humanSize(n: number): string {
  if (n < 1024) return `${n}b`;
  if (n < 1024 * 1024) return `${(n / 1024).toFixed(1)}k`;
  if (n < 1024 ** 3) return `${(n / 1024 / 1024).toFixed(1)}m`;
  return `${(n / 1024 ** 3).toFixed(2)}g`;
}

export function humanDuration(seconds: number): string {
  if (seconds < 1) return `${Math.max(0, Math.round(seconds * 1000))}ms`;
  return `${seconds.toFixed(2)}s`;
}

const wrap = (code: number) => (s: string) => `\x1b[${code}m${s}\x1b[0m`;
const colors = { bold: wrap(1), red: wrap(31), green: wrap(32), yellow: wrap(33), magenta: wrap(35), cyan: wrap(36) };
const id = (s: string) => s;
const plain = { bold: id, red: id, green: id, yellow: id, magenta: id, cyan: id };
