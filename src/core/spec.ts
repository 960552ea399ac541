/**
 * mitmproxy's `[|filter]|a|b` spec syntax, shared by every addon that takes such specs
 * (map-remote, modify-headers, …). The first character is the separator, whatever it is.
 */
import { compileFilter, type FlowPredicate } from "./filter.js";

export interface ParsedSpec {
  filter: FlowPredicate | null;
  subject: string;
  replacement: string;
}

export class SpecError extends Error {}

export function parseSpec(spec: string, what: string): ParsedSpec {
  if (spec.length < 3) throw new SpecError(`${what}: ${JSON.stringify(spec)} is too short; expected |filter|pattern|replacement or |pattern|replacement`);
  const sep = spec[0]!;
  if (/[\w\s~]/.test(sep)) {
    throw new SpecError(`${what}: ${JSON.stringify(spec)} must start with a separator character such as | or /, e.g. |~d example.com|pattern|replacement`);
  }
  const parts = spec.slice(1).split(sep);
  if (parts.length === 2) return { filter: null, subject: parts[0]!, replacement: parts[1]! };
  if (parts.length === 3) {
    let filter: FlowPredicate;
    try {
      filter = compileFilter(parts[0]!);
    } catch (err) {
      throw new SpecError(`${what}: bad filter in ${JSON.stringify(spec)}: ${(err as Error).message}`);
    }
    return { filter, subject: parts[1]!, replacement: parts[2]! };
  }
  throw new SpecError(`${what}: ${JSON.stringify(spec)} has ${parts.length} parts separated by ${JSON.stringify(sep)}; expected 2 or 3`);
}

/** Python-style group references (\1, \g<name>) as users write them for mitmproxy, made JavaScript's ($1, $<name>). */
export function pythonReplacement(repl: string): string {
  return repl.replace(/\$/g, "$$$$").replace(/\\g<(\w+)>/g, "$$<$1>").replace(/\\(\d+)/g, "$$$1");
}
