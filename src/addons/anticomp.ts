/** `--anticomp` (mitmproxy's anticomp): ask servers for uncompressed bodies (Accept-Encoding: identity). */
import type { Addon, AddonContext } from "../core/addons.js";
import type { HTTPFlow } from "../core/flow.js";

export class AntiComp implements Addon {
  name = "anticomp";
  private enabled = false;
  private ctx!: AddonContext;

  load(ctx: AddonContext): void {
    this.ctx = ctx;
    ctx.options.add({ name: "anticomp", type: "bool", default: false, help: "Ask servers for uncompressed bodies (Accept-Encoding: identity)" });
  }

  configure(updated: Set<string>): void {
    if (updated.has("anticomp")) this.enabled = this.ctx.options.get<boolean>("anticomp");
  }

  request(flow: HTTPFlow): void {
    if (this.enabled) flow.request.headers.set("accept-encoding", "identity");
  }
}
