/** `--set readfile_filter=FILTER` (mitmproxy's readfile): `-r FILE` loads only the flows that match. */
import type { Addon, AddonContext } from "../core/addons.js";
import type { HTTPFlow } from "../core/flow.js";
import type { FlowPredicate } from "../core/filter.js";
import { declareOptions, type TypedOptions } from "../core/options.js";

/** The options this addon owns, declared once (names, types, defaults, help). */
export const READFILE_OPTIONS = declareOptions({
  readfile_filter: { type: "optional-string", default: null, help: "With -r FILE, load only the flows matching this filter" },
});

export class ReadFile implements Addon {
  name = "readfile";
  private filter: FlowPredicate | null = null;
  private ctx!: AddonContext;
  private opts!: TypedOptions<typeof READFILE_OPTIONS>;

  load(ctx: AddonContext): void {
    this.ctx = ctx;
    this.opts = ctx.options.register(READFILE_OPTIONS);
  }

  configure(updated: Set<string>): void {
    if (!updated.has("readfile_filter")) return;
    const expr = this.opts.readfile_filter;
    try {
      this.filter = expr ? this.ctx.filter(expr) : null;
    } catch (err) {
      throw new Error(`readfile_filter: ${(err as Error).message}`);
    }
  }

  /** Whether a flow read from a file is loaded. */
  accepts(flow: HTTPFlow): boolean {
    return !this.filter || this.filter(flow);
  }
}
