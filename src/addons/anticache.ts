/**
 * `--anticache` (mitmproxy's anticache): strip If-None-Match and If-Modified-Since from requests,
 * so servers answer in full instead of with 304 Not Modified.
 */
import type { Addon, AddonContext } from "../core/addons.js";
import type { HTTPFlow } from "../core/flow.js";
import { declareOptions, type TypedOptions } from "../core/options.js";

/** The options this addon owns, declared once (names, types, defaults, help). */
export const ANTICACHE_OPTIONS = declareOptions({
  anticache: { type: "bool", default: false, help: "Strip request headers that might make the server answer 304 Not Modified (If-None-Match, If-Modified-Since)" },
});

export class AntiCache implements Addon {
  name = "anticache";
  private enabled = false;
  private ctx!: AddonContext;
  private opts!: TypedOptions<typeof ANTICACHE_OPTIONS>;

  load(ctx: AddonContext): void {
    this.ctx = ctx;
    this.opts = ctx.options.register(ANTICACHE_OPTIONS);
  }

  configure(updated: Set<string>): void {
    if (updated.has("anticache")) this.enabled = this.opts.anticache;
  }

  request(flow: HTTPFlow): void {
    if (!this.enabled) return;
    flow.request.headers.delete("if-modified-since");
    flow.request.headers.delete("if-none-match");
  }
}
