/**
 * `sluice dump --cut 'request.method,response.status_code,request.url' [--cut-format json]`:
 * instead of dump's lines, one CSV row (or one JSON object per line) per finished flow — live or
 * read with `-r` — for scripts and spreadsheets. FILTER (dumper_filter) selects the flows.
 */
import type { Addon, AddonContext } from "../core/addons.js";
import type { HTTPFlow } from "../core/flow.js";
import type { FlowPredicate } from "../core/filter.js";
import { csvRow, extractCut, jsonRow, parseCuts } from "../core/cut.js";
import { DUMP_OPTIONS } from "./dump.js";
import { declareOptions, type TypedOptions } from "../core/options.js";

/** The options this addon owns, declared once (names, types, defaults, help). */
export const CUT_OUTPUT_OPTIONS = declareOptions({
  cut: { type: "optional-string", default: null, help: "Print these fields of each flow instead of dump lines, e.g. request.method,response.status_code,request.url" },
  cut_format: { type: "string", default: "csv", choices: ["csv", "json"], help: "How --cut prints: csv rows, or json (one object per line)" },
});

export class CutOutput implements Addon {
  name = "cut_output";
  private cuts: string[] | null = null;
  private json = false;
  private filter: FlowPredicate | null = null;
  private ctx!: AddonContext;
  private opts!: TypedOptions<typeof CUT_OUTPUT_OPTIONS>;

  constructor(private readonly write: (text: string) => void = (t) => void process.stdout.write(t)) {}

  load(ctx: AddonContext): void {
    this.ctx = ctx;
    this.opts = ctx.options.register(CUT_OUTPUT_OPTIONS);
  }

  configure(updated: Set<string>): void {
    if (updated.has("cut")) {
      const text = this.opts.cut;
      this.cuts = text ? parseCuts(text) : null;
    }
    if (updated.has("cut_format")) this.json = this.opts.cut_format === "json";
    const dumpOptions = this.ctx.options.lookup(DUMP_OPTIONS);
    if (updated.has("dumper_filter") && dumpOptions) {
      const expr = dumpOptions.dumper_filter;
      this.filter = expr ? this.ctx.filter(expr) : null;
    }
  }

  get active(): boolean {
    return this.cuts !== null;
  }

  response(flow: HTTPFlow): void {
    this.show(flow);
  }

  error(flow: HTTPFlow): void {
    if (!flow.response || flow.response.timestampEnd === null) this.show(flow);
  }

  show(flow: HTTPFlow): void {
    if (!this.cuts || (this.filter && !this.filter(flow))) return;
    const values = this.cuts.map((c) => extractCut(c, flow));
    this.write(this.json ? JSON.stringify(jsonRow(this.cuts, values)) + "\n" : csvRow(values));
  }
}
