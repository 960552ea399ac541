/**
 * mitmproxy's flow filter language, compiled to plain closures.
 *
 * Grammar (as mitmproxy's pyparsing grammar, made explicit):
 *   top    := infix+                      juxtaposition = AND, loosest of all
 *   infix  := and ("|" and)*
 *   and    := not ("&" not)*
 *   not    := "!" not | atom
 *   atom   := "(" top ")" | ~flag | ~rex ARG | ~int NUMBER | ARG   (a bare ARG means ~u ARG)
 *   ARG    := unquoted run of characters other than whitespace ( ) ~ ' "  |  '…'  |  "…"
 *
 * Regexes are searched (not anchored) and case-insensitive; body regexes let `.` cross lines and
 * header regexes are multi-line, as in mitmproxy. Python-only regex syntax that users paste from
 * mitmproxy docs (`(?P<name>…)`, `(?P=name)`, a leading `(?i)`) is translated.
 *
 * Operators are pluggable: the layers above core register their own with
 * `registerFilterOperator` (aws/ adds `~svc`, `~op`, `~region`, `~bucket`, `~attempt N`, `~retry`
 * and `~throttled`), so core knows nothing of AWS and the language stays one language.
 */
import type { HTTPFlow, Message } from "./flow.js";
import type { Headers } from "./headers.js";

export type FlowPredicate = ((flow: HTTPFlow) => boolean) & { readonly expression: string };

export class FilterSyntaxError extends Error {
  constructor(
    message: string,
    readonly expression: string,
    readonly position: number,
    hint?: string,
  ) {
    super(`${message} at position ${position} in filter ${JSON.stringify(expression)}${hint ? `; ${hint}` : ""}`);
    this.name = "FilterSyntaxError";
  }
}

type Match = (flow: HTTPFlow) => boolean;

// ---------------------------------------------------------------------------------------------
// Operators

/** Response content types mitmproxy calls assets (`~a`). */
const ASSET_TYPE = /^(?:text\/javascript|application\/x-javascript|application\/javascript|text\/css|image\/.*|font\/.*|application\/font.*)/i;

const FLAGS: Record<string, { help: string; match: Match }> = {
  all: { help: "all flows", match: () => true },
  a: {
    help: "asset in response: CSS, JavaScript, images, fonts",
    match: (f) => f.response !== null && ASSET_TYPE.test(f.response.headers.get("content-type") ?? ""),
  },
  e: { help: "flow has an error", match: (f) => f.error !== null },
  http: { help: "HTTP flow", match: (f) => f.type === "http" },
  tcp: { help: "TCP flow (sluice records HTTP flows only)", match: () => false },
  udp: { help: "UDP flow (sluice records HTTP flows only)", match: () => false },
  dns: { help: "DNS flow (sluice records HTTP flows only)", match: () => false },
  websocket: { help: "WebSocket flow", match: (f) => f.websocket !== null },
  marked: { help: "marked flow", match: (f) => f.marked !== "" },
  q: { help: "request without a response yet", match: (f) => f.response === null },
  s: { help: "flow has a response", match: (f) => f.response !== null },
  replay: { help: "replayed flow (client or server replay)", match: (f) => f.isReplay !== null },
  replayq: { help: "client-replayed request", match: (f) => f.isReplay === "request" },
  replays: { help: "server-replayed response", match: (f) => f.isReplay === "response" },
};

/** The text a regex operator searches: one string, several, or null (nothing to search). */
export type TextOf = (flow: HTTPFlow) => Iterable<string> | string | null;
/** How a regex operator's pattern is compiled: body regexes let `.` cross lines, header regexes are multi-line. */
export type RexKind = "plain" | "body" | "headers";

/**
 * How an operator tests one text value against its argument, when plain regex search is not what
 * users mean (`~svc cloudwatch` names a service by another name). Throws an Error whose message
 * says what is wrong with the argument.
 */
export type ValueMatcherFactory = (pattern: string) => (value: string) => boolean;

const REX: Record<string, { help: string; kind: RexKind; text: TextOf; matcher?: ValueMatcherFactory }> = {
  b: { help: "body (request, response or WebSocket message), decoded", kind: "body", text: (f) => bodies(f, true, true) },
  bq: { help: "request body (and client WebSocket messages), decoded", kind: "body", text: (f) => bodies(f, true, false) },
  bs: { help: "response body (and server WebSocket messages), decoded", kind: "body", text: (f) => bodies(f, false, true) },
  t: { help: "Content-Type header of request or response", kind: "plain", text: (f) => contentTypes(f, true, true) },
  tq: { help: "request Content-Type header", kind: "plain", text: (f) => contentTypes(f, true, false) },
  ts: { help: "response Content-Type header", kind: "plain", text: (f) => contentTypes(f, false, true) },
  h: { help: "header line `name: value` in request or response", kind: "headers", text: (f) => headerBlocks(f, true, true) },
  hq: { help: "request header line", kind: "headers", text: (f) => headerBlocks(f, true, false) },
  hs: { help: "response header line", kind: "headers", text: (f) => headerBlocks(f, false, true) },
  m: { help: "request method", kind: "plain", text: (f) => f.request.method },
  d: { help: "domain (host or Host header)", kind: "plain", text: (f) => domains(f) },
  u: { help: "URL (also what a bare word means)", kind: "plain", text: (f) => f.request.prettyUrl },
  src: { help: "client address ip:port", kind: "plain", text: (f) => addressText(f.clientConn.peername) },
  dst: { help: "server address ip:port", kind: "plain", text: (f) => addressText(f.serverConn.address) },
  meta: { help: "flow metadata, one `key: value` line each", kind: "headers", text: (f) => metadataText(f) },
  marker: { help: "marker of a marked flow", kind: "plain", text: (f) => f.marked || null },
  comment: { help: "flow comment", kind: "plain", text: (f) => f.comment || null },
};

const INT: Record<string, { help: string; match: (f: HTTPFlow, n: number) => boolean }> = {
  c: { help: "response status code, exactly", match: (f, n) => f.response !== null && f.response.statusCode === n },
};

/** An operator a layer above core adds to the language. */
export type FilterOperator =
  | { name: string; kind: "flag"; help: string; match: (flow: HTTPFlow) => boolean }
  | { name: string; kind: "regex"; help: string; text: TextOf; rex?: RexKind; matcher?: ValueMatcherFactory }
  | { name: string; kind: "int"; help: string; match: (flow: HTTPFlow, n: number) => boolean };

/**
 * Adds `~name` to the filter language. Registering the same operator object again is a no-op (a
 * module may be loaded twice); a different operator under a taken name is a programming error.
 */
export function registerFilterOperator(op: FilterOperator): void {
  if (!/^[A-Za-z]+$/.test(op.name)) throw new Error(`filter operator name must be letters only, got ${JSON.stringify(op.name)}`);
  const existing = registered.get(op.name);
  if (existing === op) return;
  if (existing || op.name in FLAGS || op.name in REX || op.name in INT) throw new Error(`filter operator ~${op.name} is already registered`);
  registered.set(op.name, op);
  switch (op.kind) {
    case "flag":
      FLAGS[op.name] = { help: op.help, match: op.match };
      return;
    case "regex":
      REX[op.name] = { help: op.help, kind: op.rex ?? "plain", text: op.text, matcher: op.matcher };
      return;
    case "int":
      INT[op.name] = { help: op.help, match: op.match };
      return;
  }
}

const registered = new Map<string, FilterOperator>();

/** What argument `~name` takes, or null for an operator nobody registered. */
export function filterOperatorKind(name: string): "flag" | "regex" | "int" | null {
  return name in FLAGS ? "flag" : name in REX ? "regex" : name in INT ? "int" : null;
}

/** One line per operator (the registered ones included), for help screens: [syntax, description]. */
export function filterHelp(): (readonly [string, string])[] {
  return [
    ...Object.entries(FLAGS).map(([k, v]) => [`~${k}`, v.help] as const),
    ...Object.entries(REX).map(([k, v]) => [`~${k} regex`, v.help] as const),
    ...Object.entries(INT).map(([k, v]) => [`~${k} int`, v.help] as const),
    ["!", "unary not"],
    ["&", "and (also: two expressions side by side)"],
    ["|", "or"],
    ["(...)", "grouping"],
    ["regex", "a bare word or quoted string matches the URL, like ~u"],
  ];
}

/** filterHelp() as an aligned text block. */
export function filterHelpText(): string {
  const help = filterHelp();
  const width = Math.max(...help.map(([op]) => op.length)) + 2;
  return help.map(([op, text]) => `  ${op.padEnd(width)}${text}`).join("\n");
}

// Text extractors. Kept allocation-light: the common operators return a single string.

function addressText(addr: readonly [string, number] | null): string | null {
  return addr ? `${addr[0]}:${addr[1]}` : null;
}

function domains(f: HTTPFlow): string[] | string {
  const pretty = f.request.prettyHost;
  if (f.metadata.map_remote !== undefined) noticeRewrittenHost(f);
  return pretty === f.request.host ? pretty : [f.request.host, pretty];
}

let filterNotice: ((message: string) => void) | null = null;
const noticedRewrites = new Set<string>();

/**
 * Where the filter language says things worth knowing but not worth failing for (the log of the
 * running front end). Today: `~d` on a flow map-remote sent elsewhere tests the host it has now.
 */
export function setFilterNotice(notice: ((message: string) => void) | null): void {
  filterNotice = notice;
}

/** Says once per rewrite (from host → to host) that `~d` sees the new host, not the one the client asked for. */
function noticeRewrittenHost(f: HTTPFlow): void {
  const from = (f.metadata.map_remote as { from?: unknown }).from;
  if (!filterNotice || typeof from !== "string") return;
  let asked: string;
  try {
    asked = new URL(from).hostname.replace(/^\[|\]$/g, "");
  } catch {
    return;
  }
  const now = f.request.host;
  if (asked === now) return;
  const key = `${asked}\0${now}`;
  if (noticedRewrites.has(key) || noticedRewrites.size > 1000) return;
  noticedRewrites.add(key);
  filterNotice(`~d tests the host a flow has now: map_remote sent the client's ${asked} to ${now}, so ~d ${asked} no longer matches those flows (~svc, ~op and ~bucket still see what the client asked for)`);
}

function contentTypes(f: HTTPFlow, req: boolean, res: boolean): string[] {
  const out: string[] = [];
  if (req) {
    const t = f.request.headers.get("content-type");
    if (t !== undefined) out.push(t);
  }
  if (res && f.response) {
    const t = f.response.headers.get("content-type");
    if (t !== undefined) out.push(t);
  }
  return out;
}

function headerBlock(h: Headers): string {
  let s = "";
  const raw = h.raw;
  for (let i = 0; i < raw.length; i += 2) s += `${raw[i]}: ${raw[i + 1]}\r\n`;
  return s;
}

function headerBlocks(f: HTTPFlow, req: boolean, res: boolean): string[] {
  const out: string[] = [];
  if (req) out.push(headerBlock(f.request.headers));
  if (res && f.response) out.push(headerBlock(f.response.headers));
  return out;
}

function bodyText(m: Message): string | null {
  let body: Buffer | null;
  try {
    body = m.decodedContent;
  } catch {
    body = m.content; // undecodable: search the raw bytes rather than fail the filter
  }
  return body && body.length ? body.toString("utf8") : null;
}

function* bodies(f: HTTPFlow, req: boolean, res: boolean): Generator<string> {
  if (req) {
    const t = bodyText(f.request);
    if (t !== null) yield t;
  }
  if (res && f.response) {
    const t = bodyText(f.response);
    if (t !== null) yield t;
  }
  if (f.websocket) {
    for (const m of f.websocket.messages) {
      if ((m.fromClient && req) || (!m.fromClient && res)) yield m.content.toString("utf8");
    }
  }
}

function metadataText(f: HTTPFlow): string | null {
  const entries = Object.entries(f.metadata);
  if (!entries.length) return null;
  return entries.map(([k, v]) => `${k}: ${typeof v === "string" ? v : safeJson(v)}`).join("\n");
}

function safeJson(v: unknown): string {
  try {
    return JSON.stringify(v) ?? String(v);
  } catch {
    return String(v);
  }
}

// ---------------------------------------------------------------------------------------------
// Regexes

/** Python `re` syntax mitmproxy users write, made JavaScript. */
function translatePythonRegex(source: string): { source: string; extraFlags: string } {
  let extraFlags = "";
  let s = source;
  const leading = /^\(\?([aiLmsux]+)\)/.exec(s);
  if (leading) {
    s = s.slice(leading[0].length);
    if (leading[1]!.includes("s")) extraFlags += "s";
    if (leading[1]!.includes("m")) extraFlags += "m";
  }
  s = s.replace(/\(\?P<([A-Za-z_]\w*)>/g, "(?<$1>").replace(/\(\?P=([A-Za-z_]\w*)\)/g, "\\k<$1>");
  s = s.replace(/\\Z/g, "$");
  return { source: s, extraFlags };
}

/**
 * The RegExp a text operator such as ~d, ~m or ~svc compiles `pattern` to (store/sqlite-query runs
 * it over index values). Throws FilterSyntaxError for an invalid pattern.
 */
export function operatorRegex(pattern: string): RegExp {
  return compileRegex(pattern, "plain", pattern, 0);
}

function compileRegex(pattern: string, kind: RexKind, expression: string, position: number): RegExp {
  const { source, extraFlags } = translatePythonRegex(pattern);
  let flags = "i" + (kind === "body" ? "sm" : kind === "headers" ? "m" : "");
  for (const f of extraFlags) if (!flags.includes(f)) flags += f;
  try {
    return new RegExp(source, flags);
  } catch (e) {
    const detail = (e as Error).message.replace(/^Invalid regular expression: /, "");
    throw new FilterSyntaxError(`invalid regular expression ${JSON.stringify(pattern)} (${detail})`, expression, position);
  }
}

/**
 * The test `~name PATTERN` applies to each text value (store/sqlite-query runs it over index
 * values): the operator's own matcher, else regex search. Throws FilterSyntaxError for a bad pattern.
 */
export function operatorValueMatcher(name: string, pattern: string): (value: string) => boolean {
  const factory = REX[name]?.matcher;
  if (!factory) {
    const re = operatorRegex(pattern);
    return (v) => re.test(v);
  }
  try {
    return factory(pattern);
  } catch (e) {
    throw new FilterSyntaxError((e as Error).message, pattern, 0);
  }
}

function valueMatcher(text: TextOf, test: (value: string) => boolean): Match {
  return (f) => {
    const t = text(f);
    if (t === null) return false;
    if (typeof t === "string") return test(t);
    for (const s of t) if (test(s)) return true;
    return false;
  };
}

function rexMatcher(text: TextOf, re: RegExp): Match {
  return (f) => {
    const t = text(f);
    if (t === null) return false;
    if (typeof t === "string") return re.test(t);
    for (const s of t) if (re.test(s)) return true;
    return false;
  };
}

// ---------------------------------------------------------------------------------------------
// Tokenizer and parser

export type FilterToken = Token;

/** The tokens of a filter expression (store/sqlite-query plans index lookups from them). Throws FilterSyntaxError. */
export function tokenizeFilter(expression: string): FilterToken[] {
  return tokenize(expression);
}

type Token =
  | { kind: "op"; name: string; pos: number }
  | { kind: "arg"; value: string; pos: number; quoted: boolean }
  | { kind: "(" | ")" | "!" | "&" | "|"; pos: number }
  | { kind: "end"; pos: number };

const WORD_STOP = new Set([" ", "\t", "\n", "\r", "\f", "\v", "(", ")", "~", "'", '"']);

function tokenize(expr: string): Token[] {
  const tokens: Token[] = [];
  let i = 0;
  while (i < expr.length) {
    const c = expr[i]!;
    if (/\s/.test(c)) {
      i++;
    } else if (c === "(" || c === ")" || c === "!" || c === "&" || c === "|") {
      tokens.push({ kind: c, pos: i });
      i++;
    } else if (c === "~") {
      const m = /^~([A-Za-z]+)/.exec(expr.slice(i));
      if (!m) throw new FilterSyntaxError("expected an operator name after ~", expr, i);
      tokens.push({ kind: "op", name: m[1]!, pos: i });
      i += m[0].length;
    } else if (c === "'" || c === '"') {
      let value = "";
      let j = i + 1;
      for (;;) {
        if (j >= expr.length) throw new FilterSyntaxError(`unterminated quoted string (missing ${c})`, expr, i);
        const d = expr[j]!;
        if (d === "\\" && j + 1 < expr.length) {
          const next = expr[j + 1]!;
          // `\'` inside '…' is the quote; any other escape stays for the regex (`\d`, `\.`).
          value += next === c ? next : d + next;
          j += 2;
        } else if (d === c) {
          j++;
          break;
        } else {
          value += d;
          j++;
        }
      }
      tokens.push({ kind: "arg", value, pos: i, quoted: true });
      i = j;
    } else {
      let j = i;
      while (j < expr.length && !WORD_STOP.has(expr[j]!)) j++;
      tokens.push({ kind: "arg", value: expr.slice(i, j), pos: i, quoted: false });
      i = j;
    }
  }
  tokens.push({ kind: "end", pos: expr.length });
  return tokens;
}

class Parser {
  private i = 0;
  constructor(
    private readonly expr: string,
    private readonly tokens: Token[],
  ) {}

  private peek(): Token {
    return this.tokens[this.i]!;
  }

  private fail(message: string, token = this.peek()): never {
    throw new FilterSyntaxError(message, this.expr, token.pos);
  }

  parse(): Match {
    if (this.peek().kind === "end") throw new FilterSyntaxError("empty filter expression", this.expr, 0);
    const m = this.sequence();
    const t = this.peek();
    if (t.kind === ")") this.fail("unbalanced parenthesis: unexpected )");
    if (t.kind !== "end") this.fail(`unexpected ${describe(t)}`);
    return m;
  }

  private startsOperand(t: Token): boolean {
    return t.kind === "op" || t.kind === "arg" || t.kind === "(" || t.kind === "!";
  }

  /** Expressions side by side: AND, loosest precedence (mitmproxy's OneOrMore). */
  private sequence(): Match {
    const parts = [this.or()];
    while (this.startsOperand(this.peek())) parts.push(this.or());
    return all(parts);
  }

  private or(): Match {
    const parts = [this.and()];
    while (this.peek().kind === "|") {
      this.i++;
      parts.push(this.and());
    }
    return parts.length === 1 ? parts[0]! : any(parts);
  }

  private and(): Match {
    const parts = [this.not()];
    while (this.peek().kind === "&") {
      this.i++;
      parts.push(this.not());
    }
    return all(parts);
  }

  private not(): Match {
    if (this.peek().kind === "!") {
      this.i++;
      const inner = this.not();
      return (f) => !inner(f);
    }
    return this.atom();
  }

  private atom(): Match {
    const t = this.peek();
    switch (t.kind) {
      case "(": {
        this.i++;
        if (this.peek().kind === ")") this.fail("expected an expression inside ( )");
        const inner = this.sequence();
        if (this.peek().kind !== ")") this.fail("unbalanced parenthesis: expected )", this.peek());
        this.i++;
        return inner;
      }
      case "op":
        this.i++;
        return this.operator(t.name, t.pos);
      case "arg":
        this.i++;
        return rexMatcher(REX.u!.text, compileRegex(t.value, "plain", this.expr, t.pos));
      case "end":
        return this.fail("expected an expression");
      default:
        return this.fail(`expected an expression, found ${describe(t)}`);
    }
  }

  private operator(name: string, pos: number): Match {
    const flag = FLAGS[name];
    if (flag) return flag.match;
    const rex = REX[name];
    if (rex) {
      const arg = this.peek();
      if (arg.kind !== "arg") this.fail(`~${name} expects a regular expression`);
      this.i++;
      if (rex.matcher) {
        try {
          return valueMatcher(rex.text, rex.matcher(arg.value));
        } catch (e) {
          throw new FilterSyntaxError((e as Error).message, this.expr, arg.pos);
        }
      }
      return rexMatcher(rex.text, compileRegex(arg.value, rex.kind, this.expr, arg.pos));
    }
    const int = INT[name];
    if (int) {
      const arg = this.peek();
      if (arg.kind !== "arg" || !/^\d+$/.test(arg.value)) this.fail(`~${name} expects an integer`);
      this.i++;
      const n = Number(arg.value);
      const match = int.match;
      return (f) => match(f, n);
    }
    throw new FilterSyntaxError(`unknown operator ~${name}`, this.expr, pos, "`sluice filters` lists them");
  }
}

function describe(t: Token): string {
  switch (t.kind) {
    case "op":
      return `~${t.name}`;
    case "arg":
      return JSON.stringify(t.value);
    case "end":
      return "end of expression";
    default:
      return JSON.stringify(t.kind);
  }
}

function all(parts: Match[]): Match {
  if (parts.length === 1) return parts[0]!;
  if (parts.length === 2) {
    const [a, b] = parts as [Match, Match];
    return (f) => a(f) && b(f);
  }
  return (f) => {
    for (const p of parts) if (!p(f)) return false;
    return true;
  };
}

function any(parts: Match[]): Match {
  if (parts.length === 2) {
    const [a, b] = parts as [Match, Match];
    return (f) => a(f) || b(f);
  }
  return (f) => {
    for (const p of parts) if (p(f)) return true;
    return false;
  };
}

// ---------------------------------------------------------------------------------------------
// Public API

/** Compiles an expression; throws FilterSyntaxError naming the position of the problem. */
export function compileFilter(expression: string): FlowPredicate {
  const match = new Parser(expression, tokenize(expression)).parse();
  const predicate = ((flow: HTTPFlow) => match(flow)) as FlowPredicate;
  Object.defineProperty(predicate, "expression", { value: expression, enumerable: true });
  return predicate;
}

const CACHE_LIMIT = 256;
const cache = new Map<string, FlowPredicate>();

/** Compiles (with a small LRU cache) and matches in one go. */
export function cachedFilter(expression: string): FlowPredicate {
  let p = cache.get(expression);
  if (p) {
    cache.delete(expression);
    cache.set(expression, p);
    return p;
  }
  p = compileFilter(expression);
  cache.set(expression, p);
  if (cache.size > CACHE_LIMIT) cache.delete(cache.keys().next().value!);
  return p;
}

export function matchesFilter(expression: string, flow: HTTPFlow): boolean {
  return cachedFilter(expression)(flow);
}
