/**
 * `-S FILE` (server_replay): answers requests from the responses recorded in FILE, without
 * contacting the server. As in mitmproxy, requests match on method, scheme, host, port, path,
 * query and body; headers are ignored (so SigV4 signatures, dates, invocation ids and user agents
 * never stop a match) unless named in server_replay_use_headers. Each recorded response is used
 * once, in order, unless server_replay_reuse is set.
 */
import type { Addon, AddonContext } from "../core/addons.js";
import type { HTTPFlow, Response } from "../core/flow.js";
import { Response as FlowResponse } from "../core/flow.js";
import { Headers } from "../core/headers.js";
import { readFlowFile } from "../store/index.js";
import { declareOptions, type TypedOptions } from "../core/options.js";

/** The options this addon owns, declared once (names, types, defaults, help). */
export const SERVER_REPLAY_OPTIONS = declareOptions({
  server_replay: { type: "strings", default: [], help: "Answer requests from the responses recorded in these flow files (-S)" },
  server_replay_extra: { type: "string", default: "forward", help: "Unmatched requests: forward (to the server), kill, or 204/404/… (answer with that status)" },
  server_replay_reuse: { type: "bool", default: false, help: "Keep answering with a recorded response instead of using each once" },
  server_replay_ignore_params: { type: "strings", default: [], help: "Query parameters left out of matching" },
  server_replay_ignore_content: { type: "bool", default: false, help: "Leave request bodies out of matching" },
  server_replay_ignore_payload_params: { type: "strings", default: [], help: "Form parameters (urlencoded request bodies, e.g. the AWS query protocol) left out of matching" },
  server_replay_ignore_host: { type: "bool", default: false, help: "Leave host and port out of matching" },
  server_replay_use_headers: { type: "strings", default: [], help: "Request headers that must also match" },
});

export class ServerReplay implements Addon {
  name = "server_replay";
  private ctx!: AddonContext;
  private opts!: TypedOptions<typeof SERVER_REPLAY_OPTIONS>;
  private recorded = new Map<string, Response[]>();
  private served = 0;
  private active = false;

  load(ctx: AddonContext): void {
    this.ctx = ctx;
    this.opts = ctx.options.register(SERVER_REPLAY_OPTIONS);
  }

  async configure(updated: Set<string>): Promise<void> {
    const extra = this.opts.server_replay_extra;
    if (updated.has("server_replay_extra") && !/^(forward|kill|\d{3})$/.test(extra)) {
      throw new Error(`server_replay_extra: ${JSON.stringify(extra)} is not forward, kill or a status code such as 404`);
    }
    if (!["server_replay", "server_replay_ignore_params", "server_replay_ignore_content", "server_replay_ignore_payload_params", "server_replay_ignore_host", "server_replay_use_headers"].some((n) => updated.has(n))) return;
    this.recorded.clear();
    this.active = this.opts.server_replay.length > 0;
    let count = 0;
    for (const path of this.opts.server_replay) {
      try {
        for await (const flow of readFlowFile(path, { onWarning: (m) => this.ctx.log.warn(m) })) {
          if (!flow.response) continue;
          const key = this.keyOf(flow);
          const list = this.recorded.get(key) ?? [];
          list.push(flow.response);
          this.recorded.set(key, list);
          count++;
        }
      } catch (err) {
        throw new Error(`server_replay: ${(err as Error).message}`);
      }
    }
    if (count) this.ctx.log.info(`server replay: ${count} recorded response${count === 1 ? "" : "s"} loaded`);
    // Replaying nothing would look like replay working while every request goes elsewhere.
    else if (this.active) this.ctx.log.warn(`server replay: no recorded responses in ${this.opts.server_replay.join(", ")}; every request is handled as server_replay_extra=${this.opts.server_replay_extra} says`);
  }

  /** What a request must agree on to be answered by a recorded response. */
  private keyOf(flow: HTTPFlow): string {
    const o = this.opts;
    const r = flow.request;
    // Where the client sent the request, before map-remote redirected it (kept in the flow's metadata),
    // so a capture recorded against one origin replays whatever map-remote points at now.
    const mapped = flow.metadata.map_remote as { from?: unknown } | undefined;
    const u = new URL(typeof mapped?.from === "string" ? mapped.from : r.url);
    const ignoreParams = new Set(o.server_replay_ignore_params);
    const params = [...u.searchParams].filter(([k]) => !ignoreParams.has(k));
    const parts: unknown[] = [r.method, u.protocol, u.pathname, params];
    if (!o.server_replay_ignore_host) parts.push(u.hostname.toLowerCase(), u.port);
    if (!o.server_replay_ignore_content) parts.push(this.contentKey(flow));
    for (const h of o.server_replay_use_headers) parts.push([h.toLowerCase(), r.headers.getAll(h)]);
    return JSON.stringify(parts);
  }

  /** The body as matched: a form body without the ignored payload params, otherwise the bytes. */
  private contentKey(flow: HTTPFlow): unknown {
    const r = flow.request;
    const ignored = this.opts.server_replay_ignore_payload_params;
    const form = /^application\/x-www-form-urlencoded/i.test(r.headers.get("content-type") ?? "");
    if (!r.content?.length) return null;
    if (ignored.length === 0 || !form) return r.content.toString("base64");
    const skip = new Set(ignored);
    return [...new URLSearchParams(r.content.toString("utf8"))].filter(([k]) => !skip.has(k));
  }

  request(flow: HTTPFlow): void {
    if (!this.active || flow.response) return;
    const key = this.keyOf(flow);
    const list = this.recorded.get(key);
    if (list && list.length) {
      // Without reuse each recorded response answers once, in recorded order (mitmproxy's default).
      const recorded = this.opts.server_replay_reuse ? list[0]! : list.shift()!;
      if (list.length === 0) this.recorded.delete(key);
      flow.response = copyResponse(recorded);
      flow.isReplay = "response";
      this.served++;
      return;
    }
    const extra = this.opts.server_replay_extra;
    if (extra === "kill") flow.kill();
    else if (/^\d{3}$/.test(extra)) flow.response = FlowResponse.make(Number(extra), `sluice server replay: no recorded response for ${flow.request.method} ${flow.request.prettyUrl}\n`, { "content-type": "text/plain" });
  }

  done(): void {
    if (this.served) this.ctx.log.info(`server replay: answered ${this.served} request${this.served === 1 ? "" : "s"} from recorded responses`);
  }
}

function copyResponse(r: Response): Response {
  const out = FlowResponse.make(r.statusCode, r.content ?? Buffer.alloc(0), new Headers([...r.headers]));
  out.reason = r.reason;
  out.httpVersion = r.httpVersion;
  return out;
}
