/**
 * `-C FILE` (client_replay): re-sends the requests recorded in FILE. Each request goes in through
 * sluice's own listener, as a client's would, so it takes the proxy's whole path — addons,
 * map-remote, faults, shaping, saving, and the upstream connections — and shows up as a flow
 * marked isReplay="request". Progress goes to stderr; a summary of status codes ends the run.
 * The `replay.client FLOWS` command (alias `flow.replay`; the console's `r` key) does the same
 * for flows in the view.
 */
import { randomBytes, timingSafeEqual } from "node:crypto";
import { readFileSync } from "node:fs";
import type { ProxyAgent } from "undici";
import type { Addon, AddonContext } from "../core/addons.js";
import type { HTTPFlow } from "../core/flow.js";
import { CommandError } from "../core/commands.js";
import { readFlowFile } from "../store/index.js";
import { declareOptions, type TypedOptions } from "../core/options.js";
import { lazyModule } from "../core/lazy-module.js";

/** undici's whole package (ProxyAgent, request), loaded on the first replay (see core/lazy-module). */
const undici = lazyModule<typeof import("undici")>("undici");

/**
 * Marks a request (and the CONNECT of its tunnel) as ours on its way through the listener; removed
 * before anything else sees it. The value is a secret of this process, so a client cannot pass
 * for a replay (proxyauth lets replays through, as mitmproxy does).
 */
const MARKER = "x-sluice-client-replay";
const MARKER_VALUE = randomBytes(18).toString("base64url");

/** Whether `headers` carry this process's replay marker (compared in constant time). */
export function isOwnReplay(headers: { get(name: string): string | undefined }): boolean {
  const value = headers.get(MARKER);
  if (value === undefined || value.length !== MARKER_VALUE.length) return false;
  return timingSafeEqual(Buffer.from(value), Buffer.from(MARKER_VALUE));
}

/** Removes the replay marker from a request. */
export function dropReplayMarker(headers: { delete(name: string): unknown }): void {
  headers.delete(MARKER);
}
/** Headers undici frames itself (or refuses) — the recorded values would be wrong or rejected. */
const NOT_SENT = new Set(["connection", "keep-alive", "transfer-encoding", "content-length", "upgrade", "proxy-connection", "te", "trailer", "expect", "http2-settings"]);
const REPLAY_HELP = "Re-send the requests of flows through this proxy (they show up as new flows marked as replays)";

/** The options this addon owns, declared once (names, types, defaults, help). */
export const CLIENT_REPLAY_OPTIONS = declareOptions({
  client_replay: { type: "strings", default: [], help: "Re-send the requests recorded in these flow files (-C)" },
  client_replay_concurrency: { type: "int", default: 1, help: "How many replayed requests are in flight at once" },
});

export class ClientReplay implements Addon {
  name = "client_replay";
  private ctx!: AddonContext;
  private opts!: TypedOptions<typeof CLIENT_REPLAY_OPTIONS>;
  private agent: ProxyAgent | null = null;
  private resolveFinished!: () => void;
  /** Settles when every recorded request has been sent and answered (or failed). */
  readonly finished = new Promise<void>((r) => (this.resolveFinished = r));
  readonly statuses = new Map<string, number>();

  load(ctx: AddonContext): void {
    this.ctx = ctx;
    this.opts = ctx.options.register(CLIENT_REPLAY_OPTIONS);
    for (const name of ["replay.client", "flow.replay"]) {
      ctx.commands.add({ name, help: REPLAY_HELP, params: [{ name: "flows", type: "flows" }], run: (flows: HTTPFlow[]) => this.replayFlows(flows) });
    }
  }

  async done(): Promise<void> {
    await this.agent?.close();
    this.agent = null;
  }

  /** The command: sends each flow's request in the background, logs each answer. */
  private replayFlows(flows: HTTPFlow[]): string {
    const agent = this.proxyAgent();
    for (const flow of flows) {
      const r = flow.request;
      void this.send(flow, agent).then((outcome) => {
        if (outcome !== "error") this.ctx.log.info(`replayed ${r.method} ${r.prettyUrl}: ${outcome}`);
      });
    }
    return `replaying ${flows.length} flow${flows.length === 1 ? "" : "s"}`;
  }

  /** A client of our own listener (created on first use, closed when sluice stops). */
  private proxyAgent(): ProxyAgent {
    if (this.agent) return this.agent;
    const address = this.ctx.listener();
    if (!address) throw new CommandError("replay: the proxy is not listening");
    const host = address.address === "0.0.0.0" || address.address === "::" ? "127.0.0.1" : address.address.includes(":") ? `[${address.address}]` : address.address;
    this.agent = new (undici().ProxyAgent)({ uri: `http://${host}:${address.port}`, requestTls: { ca: readFileSync(address.caCertFile, "utf8") }, headers: { [MARKER]: MARKER_VALUE } });
    return this.agent;
  }

  /** The flows of the -C files, read when the option is set so a bad file stops sluice before it listens. */
  private recorded: HTTPFlow[] = [];

  async configure(updated: Set<string>): Promise<void> {
    if (updated.has("client_replay_concurrency") && this.opts.client_replay_concurrency < 1) {
      throw new Error("client_replay_concurrency must be at least 1");
    }
    if (!updated.has("client_replay")) return;
    // As mitmproxy's clientplayback does: a missing or corrupt file is refused like -S's, at once.
    const flows: HTTPFlow[] = [];
    for (const path of this.opts.client_replay) {
      try {
        for await (const flow of readFlowFile(path, { onWarning: (m) => this.ctx.log.warn(m) })) flows.push(flow);
      } catch (err) {
        throw new Error(`client_replay: ${(err as Error).message}`);
      }
    }
    this.recorded = flows;
  }

  /** True when there is something to replay. */
  get active(): boolean {
    return this.opts.client_replay.length > 0;
  }

  requestHeaders(flow: HTTPFlow): void {
    if (!flow.request.headers.has(MARKER)) return;
    if (isOwnReplay(flow.request.headers)) flow.isReplay = "request";
    flow.request.headers.delete(MARKER);
  }

  running(): void {
    if (!this.active) return void this.resolveFinished();
    void this.replayAll()
      .catch((err: Error) => {
        this.ctx.log.error(`client replay: ${err.message}`);
        process.exitCode = 1;
      })
      .finally(() => this.resolveFinished());
  }

  private async replayAll(): Promise<void> {
    const agent = this.proxyAgent();
    const flows = this.recorded;
    this.recorded = [];
    const total = flows.length;
    let done = 0;
    let next = 0;
    const tty = process.stderr.isTTY;
    let lastReport = 0;
    const report = (final: boolean) => {
      const now = Date.now();
      if (!final && now - lastReport < 250) return;
      lastReport = now;
      const line = `client replay: ${done}/${total} requests`;
      if (tty) process.stderr.write(`\r${line}${final ? "\n" : ""}`);
      else if (final || done % 100 === 0) process.stderr.write(`${line}\n`);
    };
    const worker = async () => {
      while (next < flows.length) {
        const flow = flows[next++]!;
        const outcome = await this.send(flow, agent);
        this.statuses.set(outcome, (this.statuses.get(outcome) ?? 0) + 1);
        done++;
        report(false);
      }
    };
    const concurrency = Math.max(1, this.opts.client_replay_concurrency);
    await Promise.all(Array.from({ length: Math.min(concurrency, Math.max(1, total)) }, worker));
    report(true);
    process.stderr.write(`client replay: ${total} request${total === 1 ? "" : "s"} replayed — ${this.summary()}\n`);
  }

  /** "200×8, 404×2, error×1", most frequent first. */
  summary(): string {
    return [...this.statuses].sort((a, b) => b[1] - a[1]).map(([k, n]) => `${k}×${n}`).join(", ") || "nothing sent";
  }

  /** Sends one recorded request through the proxy; returns its status code or "error". */
  private async send(flow: HTTPFlow, agent: ProxyAgent): Promise<string> {
    const r = flow.request;
    const headers: string[] = [];
    for (const [name, value] of r.headers) {
      const lower = name.toLowerCase();
      if (NOT_SENT.has(lower) || lower.startsWith(":")) continue;
      headers.push(name, value);
    }
    headers.push(MARKER, MARKER_VALUE);
    try {
      const res = await undici().request(r.url, {
        method: r.method,
        headers,
        body: r.content && r.content.length > 0 ? r.content : r.method === "GET" || r.method === "HEAD" ? undefined : r.content ?? undefined,
        dispatcher: agent,
      });
      await res.body.dump();
      return String(res.statusCode);
    } catch (err) {
      this.ctx.log.warn(`client replay: ${r.method} ${r.prettyUrl}: ${(err as Error).message}`);
      return "error";
    }
  }
}
