/**
 * mitmproxy's `[|filter]|subject|replacement` spec syntax, shared by every addon that takes such
 * specs (map-remote, map-local, modify-headers, modify-body). The first character is the
 * separator, whatever it is; the text is split on it at most twice, so a replacement may itself
 * contain the separator (`|~d x|a|b|c` replaces "a" by "b|c"), as in mitmproxy.
 *
 * Also here, because those specs are written for Python: Python string escapes (`\n`, `\x00`,
 * mitmproxy's `escaped_str_to_bytes`), Python regex syntax (`(?P<name>…)`) and `re.sub`
 * replacement templates (`\1`, `\g<name>`).
 */
import { readFileSync } from "node:fs";
import { homedir } from "node:os";
import { compileFilter, type FlowPredicate } from "./filter.js";

export interface ParsedSpec {
  /** Null when the spec has no filter part: it applies to every flow. */
  filter: FlowPredicate | null;
  filterText: string | null;
  subject: string;
  replacement: string;
}

export class SpecError extends Error {}

export function parseSpec(spec: string, what: string, shape = "|filter|pattern|replacement"): ParsedSpec {
  const short = shape.replace(/^\|filter/, "");
  if (spec.length < 2) throw new SpecError(`${what}: ${JSON.stringify(spec)} is too short; expected ${shape} or ${short}`);
  const sep = spec[0]!;
  // mitmproxy takes any first character; a letter, digit or space there is a forgotten separator,
  // not a choice, and would silently split the spec in the wrong places.
  if (/[\w\s~]/.test(sep)) {
    throw new SpecError(`${what}: ${JSON.stringify(spec)} must start with a separator character such as | or /, e.g. ${shape}`);
  }
  const parts = splitAtMost(spec.slice(1), sep, 3);
  if (parts.length === 2) return { filter: null, filterText: null, subject: parts[0]!, replacement: parts[1]! };
  if (parts.length === 3) {
    let filter: FlowPredicate;
    try {
      filter = compileFilter(parts[0]!);
    } catch (err) {
      throw new SpecError(`${what}: bad filter in ${JSON.stringify(spec)}: ${(err as Error).message}`);
    }
    return { filter, filterText: parts[0]!, subject: parts[1]!, replacement: parts[2]! };
  }
  throw new SpecError(`${what}: ${JSON.stringify(spec)} has one part; expected ${shape} or ${short}, separated by its first character ${JSON.stringify(sep)}`);
}

/** Python's `str.split(sep, n - 1)`: at most `n` parts, the last keeps any further separators. */
function splitAtMost(text: string, sep: string, n: number): string[] {
  const parts: string[] = [];
  let rest = text;
  while (parts.length < n - 1) {
    const i = rest.indexOf(sep);
    if (i < 0) break;
    parts.push(rest.slice(0, i));
    rest = rest.slice(i + sep.length);
  }
  parts.push(rest);
  return parts;
}

const SIMPLE_ESCAPES: Record<string, number> = { "\\": 0x5c, "'": 0x27, '"': 0x22, a: 0x07, b: 0x08, f: 0x0c, n: 0x0a, r: 0x0d, t: 0x09, v: 0x0b };

/**
 * mitmproxy's `escaped_str_to_bytes`: the text as UTF-8 with Python's byte-string escapes
 * undone (`\n`, `\t`, `\\`, `\xHH`, octal `\ooo`); unknown escapes stay as written.
 */
export function unescapePython(text: string): Buffer {
  if (!text.includes("\\")) return Buffer.from(text, "utf8");
  const out: number[] = [];
  const src = Buffer.from(text, "utf8");
  for (let i = 0; i < src.length; i++) {
    const b = src[i]!;
    if (b !== 0x5c || i + 1 >= src.length) {
      out.push(b);
      continue;
    }
    const next = String.fromCharCode(src[i + 1]!);
    if (next in SIMPLE_ESCAPES) {
      out.push(SIMPLE_ESCAPES[next]!);
      i++;
    } else if (next === "\n") {
      i++;
    } else if (next === "x" && /^[0-9a-fA-F]{2}$/.test(src.toString("latin1", i + 2, i + 4))) {
      out.push(parseInt(src.toString("latin1", i + 2, i + 4), 16));
      i += 3;
    } else if (/[0-7]/.test(next)) {
      const m = /^[0-7]{1,3}/.exec(src.toString("latin1", i + 1, i + 4))![0];
      out.push(parseInt(m, 8) & 0xff);
      i += m.length;
    } else {
      out.push(b);
    }
  }
  return Buffer.from(out);
}

/**
 * A regex written for Python's `re`, compiled for JavaScript: `(?P<name>…)` and `(?P=name)` are
 * translated; `flags` as JavaScript's ("s" for re.DOTALL). Errors name the option.
 */
export function pythonRegex(source: string, flags: string, what: string): RegExp {
  const js = source.replace(/\(\?P<(\w+)>/g, "(?<$1>").replace(/\(\?P=(\w+)\)/g, "\\k<$1>");
  try {
    return new RegExp(js, flags);
  } catch (err) {
    throw new SpecError(`${what}: ${JSON.stringify(source)} is not a valid regular expression: ${(err as Error).message}`);
  }
}

type TemplatePart = string | { group: number | string };

/**
 * A replacement as Python's `re.sub` reads it (`\1`, `\g<1>`, `\g<name>`, `\n`, `\\`), turned into
 * a function for `String.replace`: no `$` in the replacement is ever special, as in Python.
 */
export function pythonReplacement(template: string, what = "replacement"): (match: string, ...rest: unknown[]) => string {
  const parts: TemplatePart[] = [];
  let literal = "";
  for (let i = 0; i < template.length; i++) {
    const ch = template[i]!;
    if (ch !== "\\" || i + 1 >= template.length) {
      literal += ch;
      continue;
    }
    const next = template[i + 1]!;
    const named = next === "g" ? /^\\g<([^>]*)>/.exec(template.slice(i)) : null;
    const numbered = /^\\(\d{1,2})/.exec(template.slice(i));
    if (named) {
      if (literal) parts.push(literal);
      literal = "";
      parts.push({ group: /^\d+$/.test(named[1]!) ? Number(named[1]) : named[1]! });
      i += named[0].length - 1;
    } else if (numbered && numbered[1] !== "0") {
      if (literal) parts.push(literal);
      literal = "";
      parts.push({ group: Number(numbered[1]) });
      i += numbered[0].length - 1;
    } else if (next in SIMPLE_ESCAPES && next !== "'" && next !== '"') {
      literal += String.fromCharCode(SIMPLE_ESCAPES[next]!);
      i++;
    } else if (/[A-Za-z]/.test(next)) {
      throw new SpecError(`${what}: bad escape \\${next} in ${JSON.stringify(template)} (write \\\\ for a backslash)`);
    } else {
      literal += ch;
    }
  }
  if (literal) parts.push(literal);
  return (match: string, ...rest: unknown[]) => {
    // String.replace passes groups…, offset, whole string[, named groups].
    const last = rest[rest.length - 1];
    const named = typeof last === "object" && last !== null ? (last as Record<string, string | undefined>) : undefined;
    const groupCount = rest.length - (named ? 3 : 2);
    let out = "";
    for (const p of parts) {
      if (typeof p === "string") out += p;
      else if (typeof p.group === "number") {
        if (p.group === 0) out += match;
        else if (p.group > groupCount) throw new SpecError(`${what}: invalid group reference ${p.group}`);
        else out += (rest[p.group - 1] as string | undefined) ?? "";
      } else {
        if (!named || !(p.group in named)) throw new SpecError(`${what}: unknown group name ${JSON.stringify(p.group)}`);
        out += named[p.group] ?? "";
      }
    }
    return out;
  };
}

/**
 * A spec's `[@]value`: the text with Python escapes undone, or, after `@`, the bytes of that file
 * (read on every use, as mitmproxy does, so editing the file takes effect at once).
 */
export function replacementValue(value: string): { fromFile: string | null; read(): Buffer } {
  if (value.startsWith("@")) {
    const path = expandHome(value.slice(1));
    return { fromFile: path, read: () => readFileSync(path) };
  }
  const bytes = unescapePython(value);
  return { fromFile: null, read: () => bytes };
}

export function expandHome(path: string): string {
  return path === "~" ? homedir() : path.startsWith("~/") ? homedir() + path.slice(1) : path;
}
