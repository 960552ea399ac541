/**
 * `--set stickyauth=FILTER` (mitmproxy's stickyauth): remember the Authorization header each host
 * was last sent, and add it to matching requests to that host that carry none.
 */
import type { Addon, AddonContext } from "../core/addons.js";
import type { HTTPFlow } from "../core/flow.js";
import type { FlowPredicate } from "../core/filter.js";
import { declareOptions, type TypedOptions } from "../core/options.js";

/** The options this addon owns, declared once (names, types, defaults, help). */
export const STICKY_AUTH_OPTIONS = declareOptions({
  stickyauth: { type: "optional-string", default: null, help: "Filter: matching requests without Authorization get the one last sent to their host" },
});

export class StickyAuth implements Addon {
  name = "stickyauth";
  private filter: FlowPredicate | null = null;
  private readonly hosts = new Map<string, string>();
  private ctx!: AddonContext;
  private opts!: TypedOptions<typeof STICKY_AUTH_OPTIONS>;

  load(ctx: AddonContext): void {
    this.ctx = ctx;
    this.opts = ctx.options.register(STICKY_AUTH_OPTIONS);
  }

  configure(updated: Set<string>): void {
    if (!updated.has("stickyauth")) return;
    const expr = this.opts.stickyauth;
    this.filter = expr ? compileOrThrow(this.ctx, expr, "stickyauth") : null;
  }

  request(flow: HTTPFlow): void {
    if (!this.filter) return;
    const host = flow.request.host;
    const auth = flow.request.headers.get("authorization");
    if (auth !== undefined) this.hosts.set(host, auth);
    else if (this.filter(flow)) {
      const known = this.hosts.get(host);
      if (known !== undefined) flow.request.headers.set("authorization", known);
    }
  }
}

export function compileOrThrow(ctx: AddonContext, expr: string, option: string): FlowPredicate {
  try {
    return ctx.filter(expr);
  } catch (err) {
    throw new Error(`${option}: ${(err as Error).message}`);
  }
}
