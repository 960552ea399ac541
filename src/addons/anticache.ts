/**
 * `--anticache` (mitmproxy's anticache): strip If-None-Match and If-Modified-Since from requests,
 * so servers answer in full instead of with 304 Not Modified.
 */
import type { Addon, AddonContext } from "../core/addons.js";
import type { HTTPFlow } from "../core/flow.js";

export class AntiCache implements Addon {
  name = "anticache";
  private enabled = false;
  private ctx!: AddonContext;

  load(ctx: AddonContext): void {
    this.ctx = ctx;
    ctx.options.add({ name: "anticache", type: "bool", default: false, help: "Strip request headers that might make the server answer 304 Not Modified (If-None-Match, If-Modified-Since)" });
  }

  configure(updated: Set<string>): void {
    if (updated.has("anticache")) this.enabled = this.ctx.options.get<boolean>("anticache");
  }

  request(flow: HTTPFlow): void {
    if (!this.enabled) return;
    flow.request.headers.delete("if-modified-since");
    flow.request.headers.delete("if-none-match");
  }
}
