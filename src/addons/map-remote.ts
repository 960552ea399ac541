/** `-M/--map-remote '|filter|url-regex|replacement'`: rewrite where requests go, before they leave. */
import type { Addon, AddonContext } from "../core/addons.js";
import type { HTTPFlow } from "../core/flow.js";
import type { FlowPredicate } from "../core/filter.js";
import { parseSpec, pythonRegex, pythonReplacement } from "../core/spec.js";
import { awsInfoOf } from "../aws/index.js";
import { declareOptions, type TypedOptions } from "../core/options.js";

interface MapRule {
  spec: string;
  filter: FlowPredicate | null;
  pattern: RegExp;
  replacement: (match: string, ...rest: unknown[]) => string;
}

/** The options this addon owns, declared once (names, types, defaults, help). */
export const MAP_REMOTE_OPTIONS = declareOptions({
  map_remote: { type: "strings", default: [], help: "Map remote URLs: |filter|url-regex|replacement (repeatable with -M)" },
});

export class MapRemote implements Addon {
  name = "map_remote";
  private rules: MapRule[] = [];
  private ctx!: AddonContext;
  private opts!: TypedOptions<typeof MAP_REMOTE_OPTIONS>;

  load(ctx: AddonContext): void {
    this.ctx = ctx;
    this.opts = ctx.options.register(MAP_REMOTE_OPTIONS);
  }

  configure(updated: Set<string>): void {
    if (!updated.has("map_remote")) return;
    this.rules = this.opts.map_remote.map((spec) => {
      const parsed = parseSpec(spec, "map_remote", "|filter|url-regex|replacement");
      // As mitmproxy's re.sub: case-sensitive, every occurrence replaced.
      const pattern = pythonRegex(parsed.subject, "g", "map_remote");
      return { spec, filter: parsed.filter, pattern, replacement: pythonReplacement(parsed.replacement, "map_remote") };
    });
  }

  requestHeaders(flow: HTTPFlow): void {
    // Mapping before the body is read means even streamed uploads go to the new place.
    if (this.rules.length === 0) return;
    const url = flow.request.url;
    for (const rule of this.rules) {
      if (rule.filter && !rule.filter(flow)) continue;
      const next = url.replace(rule.pattern, rule.replacement);
      if (next !== url) {
        // Recognise the AWS call by where the client sent it, before the host is rewritten.
        awsInfoOf(flow);
        flow.request.url = next;
        flow.metadata.map_remote = { from: url, to: next };
        return;
      }
    }
  }
}
