/**
 * `-H/--modify-headers '[|filter]|name|[@]value'` (mitmproxy's modify_headers): set a header on
 * requests and responses of matching flows. An empty value removes the header; `@FILE` reads the
 * value from a file on each use. Without a filter it applies to requests *and* responses, as in
 * mitmproxy; `~q` limits it to requests, `~s` to responses.
 */
import type { Addon, AddonContext } from "../core/addons.js";
import type { HTTPFlow } from "../core/flow.js";
import type { Headers } from "../core/headers.js";
import type { FlowPredicate } from "../core/filter.js";
import { parseSpec, replacementValue, unescapePython } from "../core/spec.js";
import { declareOptions, type TypedOptions } from "../core/options.js";

interface HeaderRule {
  filter: FlowPredicate | null;
  name: string;
  value: ReturnType<typeof replacementValue>;
}

/** The options this addon owns, declared once (names, types, defaults, help). */
export const MODIFY_HEADERS_OPTIONS = declareOptions({
  modify_headers: { type: "strings", default: [], help: "Set headers: |filter|name|value (empty value removes, @FILE reads the value from a file; repeatable with -H)" },
});

export class ModifyHeaders implements Addon {
  name = "modify_headers";
  private rules: HeaderRule[] = [];
  private ctx!: AddonContext;
  private opts!: TypedOptions<typeof MODIFY_HEADERS_OPTIONS>;

  load(ctx: AddonContext): void {
    this.ctx = ctx;
    this.opts = ctx.options.register(MODIFY_HEADERS_OPTIONS);
  }

  configure(updated: Set<string>): void {
    if (!updated.has("modify_headers")) return;
    this.rules = this.opts.modify_headers.map((spec) => {
      const parsed = parseSpec(spec, "modify_headers", "|filter|name|value");
      const name = unescapePython(parsed.subject).toString("latin1");
      if (!/^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/.test(name)) throw new Error(`modify_headers: ${JSON.stringify(name)} in ${JSON.stringify(spec)} is not a valid header name`);
      const value = replacementValue(parsed.replacement);
      if (value.fromFile) readOrThrow(value, spec);
      return { filter: parsed.filter, name, value };
    });
  }

  request(flow: HTTPFlow): void {
    if (flow.response || flow.error || !flow.live || this.rules.length === 0) return;
    this.apply(flow, flow.request.headers);
  }

  response(flow: HTTPFlow): void {
    if (flow.error || !flow.live || !flow.response || this.rules.length === 0) return;
    this.apply(flow, flow.response.headers);
  }

  private apply(flow: HTTPFlow, headers: Headers): void {
    // Every filter is judged on the flow as it arrived, before any rule changed it; then all named
    // headers are removed, then the non-empty values added: mitmproxy's order, so two rules for one
    // name give two headers.
    const matching = this.rules.filter((r) => !r.filter || r.filter(flow));
    for (const rule of matching) headers.delete(rule.name);
    for (const rule of matching) {
      let value: Buffer;
      try {
        value = rule.value.read();
      } catch (err) {
        this.ctx.log.warn(`modify_headers: cannot read ${rule.value.fromFile}: ${(err as Error).message}; header ${rule.name} left out`);
        continue;
      }
      if (value.length) headers.add(rule.name, value.toString("latin1"));
    }
  }
}

function readOrThrow(value: ReturnType<typeof replacementValue>, spec: string): void {
  try {
    value.read();
  } catch (err) {
    throw new Error(`modify_headers: cannot read ${value.fromFile} named in ${JSON.stringify(spec)}: ${(err as Error).message}`);
  }
}
