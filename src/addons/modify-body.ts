/**
 * `-B/--modify-body '[|filter]|regex|[@]replacement'` (mitmproxy's modify_body): replace every
 * match of a regex in the bodies of matching flows — the request body before it is sent, the
 * response body before the client gets it. The regex is Python's (`.` matches newlines, as with
 * re.DOTALL; case-sensitive), the replacement `re.sub`'s (`\1`, `\g<name>`); `@FILE` reads the
 * replacement from a file. Bodies are matched as bytes, after undoing Content-Encoding.
 */
import type { Addon, AddonContext } from "../core/addons.js";
import type { HTTPFlow, Message } from "../core/flow.js";
import type { FlowPredicate } from "../core/filter.js";
import { parseSpec, pythonRegex, pythonReplacement, replacementValue, unescapePython } from "../core/spec.js";
import { declareOptions, type TypedOptions } from "../core/options.js";

interface BodyRule {
  spec: string;
  filter: FlowPredicate | null;
  pattern: RegExp;
  replacement: ReturnType<typeof replacementValue>;
}

/** The options this addon owns, declared once (names, types, defaults, help). */
export const MODIFY_BODY_OPTIONS = declareOptions({
  modify_body: { type: "strings", default: [], help: "Replace in bodies: |filter|regex|replacement (@FILE reads the replacement from a file; repeatable with -B)" },
});

export class ModifyBody implements Addon {
  name = "modify_body";
  private rules: BodyRule[] = [];
  private ctx!: AddonContext;
  private opts!: TypedOptions<typeof MODIFY_BODY_OPTIONS>;

  load(ctx: AddonContext): void {
    this.ctx = ctx;
    this.opts = ctx.options.register(MODIFY_BODY_OPTIONS);
  }

  configure(updated: Set<string>): void {
    if (!updated.has("modify_body")) return;
    this.rules = this.opts.modify_body.map((spec) => {
      const parsed = parseSpec(spec, "modify_body", "|filter|regex|replacement");
      // Bytes in, bytes out: the regex and the body both as latin1, one character per byte.
      const pattern = pythonRegex(unescapePython(parsed.subject).toString("latin1"), "gs", "modify_body");
      const replacement = replacementValue(parsed.replacement);
      try {
        replacement.read();
      } catch (err) {
        throw new Error(`modify_body: cannot read ${replacement.fromFile} named in ${JSON.stringify(spec)}: ${(err as Error).message}`);
      }
      if (!replacement.fromFile) pythonReplacement(replacement.read().toString("latin1"), `modify_body ${JSON.stringify(spec)}`);
      return { spec, filter: parsed.filter, pattern, replacement };
    });
  }

  request(flow: HTTPFlow): void {
    if (flow.response || flow.error || !flow.live || this.rules.length === 0) return;
    this.apply(flow, flow.request, "request");
  }

  response(flow: HTTPFlow): void {
    if (flow.error || !flow.live || !flow.response || this.rules.length === 0) return;
    this.apply(flow, flow.response, "response");
  }

  private apply(flow: HTTPFlow, message: Message, which: string): void {
    for (const rule of this.rules) {
      if (rule.filter && !rule.filter(flow)) continue;
      if (message.streamed) {
        // The body went by without being kept (larger than stream_large_bodies): say so, once per flow.
        if (!flow.metadata.modify_body_skipped) this.ctx.log.warn(`modify_body: the ${which} body of ${flow.request.method} ${flow.request.url} streamed through unmodified: it is larger than stream_large_bodies; raise that option to modify it`);
        flow.metadata.modify_body_skipped = true;
        return;
      }
      let template: string;
      try {
        template = rule.replacement.read().toString("latin1");
      } catch (err) {
        this.ctx.log.warn(`modify_body: cannot read ${rule.replacement.fromFile}: ${(err as Error).message}; ${JSON.stringify(rule.spec)} skipped`);
        continue;
      }
      const body = (message.decodedContent ?? Buffer.alloc(0)).toString("latin1");
      let next: string;
      try {
        next = body.replace(rule.pattern, pythonReplacement(template, "modify_body"));
      } catch (err) {
        this.ctx.log.warn(`${(err as Error).message}; ${JSON.stringify(rule.spec)} skipped`);
        continue;
      }
      if (next !== body) message.setContent(Buffer.from(next, "latin1"));
    }
  }
}
