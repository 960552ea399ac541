/** `--anticomp` (mitmproxy's anticomp): ask servers for uncompressed bodies (Accept-Encoding: identity). */
import type { Addon, AddonContext } from "../core/addons.js";
import type { HTTPFlow } from "../core/flow.js";
import { declareOptions, type TypedOptions } from "../core/options.js";

/** The options this addon owns, declared once (names, types, defaults, help). */
export const ANTICOMP_OPTIONS = declareOptions({
  anticomp: { type: "bool", default: false, help: "Ask servers for uncompressed bodies (Accept-Encoding: identity)" },
});

export class AntiComp implements Addon {
  name = "anticomp";
  private enabled = false;
  private ctx!: AddonContext;
  private opts!: TypedOptions<typeof ANTICOMP_OPTIONS>;

  load(ctx: AddonContext): void {
    this.ctx = ctx;
    this.opts = ctx.options.register(ANTICOMP_OPTIONS);
  }

  configure(updated: Set<string>): void {
    if (updated.has("anticomp")) this.enabled = this.opts.anticomp;
  }

  request(flow: HTTPFlow): void {
    if (this.enabled) flow.request.headers.set("accept-encoding", "identity");
  }
}
