/** `-M/--map-remote '|filter|url-regex|replacement'`: rewrite where requests go, before they leave. */
import type { Addon, AddonContext } from "../core/addons.js";
import type { HTTPFlow } from "../core/flow.js";
import type { FlowPredicate } from "../core/filter.js";
import { parseSpec, pythonRegex, pythonReplacement } from "../core/spec.js";
import { awsInfoOf } from "../aws/index.js";

interface MapRule {
  spec: string;
  filter: FlowPredicate | null;
  pattern: RegExp;
  replacement: (match: string, ...rest: unknown[]) => string;
}

export class MapRemote implements Addon {
  name = "map_remote";
  private rules: MapRule[] = [];
  private ctx!: AddonContext;

  load(ctx: AddonContext): void {
    this.ctx = ctx;
    ctx.options.add({ name: "map_remote", type: "strings", default: [] as string[], help: "Map remote URLs: |filter|url-regex|replacement (repeatable with -M)" });
  }

  configure(updated: Set<string>): void {
    if (!updated.has("map_remote")) return;
    this.rules = this.ctx.options.get<string[]>("map_remote").map((spec) => {
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
