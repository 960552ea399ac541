/**
 * The command language, the same for every front end: `flow.set @focus status_code 429`.
 * Commands are typed; arguments are parsed from words (quotes group words) by their declared type,
 * and a flow-list argument takes a selector (`@focus`, `@all`, …) or a filter expression.
 */
import type { HTTPFlow } from "./flow.js";
import type { FlowView } from "./view.js";
import { parseBool } from "./values.js";

export type ParamType = "flows" | "string" | "int" | "bool" | "rest";

export interface CommandParam {
  name: string;
  type: ParamType;
  help?: string;
  optional?: boolean;
}

export interface CommandSpec {
  name: string;
  help: string;
  params: readonly CommandParam[];
  run(...args: any[]): unknown;
}

/** What a parameter of each type arrives as. */
export type ParamValue<T extends ParamType> = T extends "flows" ? HTTPFlow[] : T extends "int" ? number : T extends "bool" ? boolean : string;

/** The arguments `run` receives, derived from the parameter declarations (optional ones may be undefined). */
export type ArgsOf<P extends readonly CommandParam[]> = {
  [I in keyof P]: P[I] extends { optional: true } ? ParamValue<P[I]["type"]> | undefined : ParamValue<P[I]["type"]>;
};

/** A command declared once: `run`'s parameters are checked against `params`. */
export interface TypedCommandSpec<P extends readonly CommandParam[]> {
  name: string;
  help: string;
  params: P;
  run(...args: ArgsOf<P>): unknown;
}

export class CommandError extends Error {}

export class CommandManager {
  private commands = new Map<string, CommandSpec>();

  constructor(private readonly view: () => FlowView | undefined) {}

  /** Adds a command; the compiler checks `run` against the declared `params`. */
  add<const P extends readonly CommandParam[]>(spec: TypedCommandSpec<P>): void {
    this.commands.set(spec.name, spec as unknown as CommandSpec);
  }

  remove(name: string): void {
    this.commands.delete(name);
  }

  list(): CommandSpec[] {
    return [...this.commands.values()].sort((a, b) => a.name.localeCompare(b.name));
  }

  get(name: string): CommandSpec | undefined {
    return this.commands.get(name);
  }

  /** Usage line, e.g. "flow.set FLOWS ATTR VALUE". */
  usage(spec: CommandSpec): string {
    return [spec.name, ...spec.params.map((p) => (p.optional ? `[${p.name.toUpperCase()}]` : p.name.toUpperCase()))].join(" ");
  }

  /** Command names and selectors that complete `partial` (for the console prompt). */
  complete(partial: string): string[] {
    const words = splitWords(partial, true);
    if (words.length <= 1) return this.list().map((c) => c.name).filter((n) => n.startsWith(words[0] ?? ""));
    const spec = this.commands.get(words[0]!);
    const param = spec?.params[words.length - 2];
    if (param?.type === "flows") return ["@all", "@focus", "@shown", "@hidden", "@marked", "@unmarked"].filter((s) => s.startsWith(words.at(-1)!));
    return [];
  }

  /** Parses and runs one command line. */
  async execute(line: string): Promise<unknown> {
    const text = line.trim().replace(/^:/, "");
    const starts: number[] = [];
    const words = splitWords(text, false, starts);
    if (words.length === 0) throw new CommandError("empty command");
    const [name, ...rest] = words;
    const spec = this.commands.get(name!);
    if (!spec) throw new CommandError(`unknown command ${name}: \`sluice commands\` lists them`);
    return this.call(spec, rest, (i) => text.slice(starts[i + 1]));
  }

  /** `rawFrom(i)` is the line as typed from word i on: a `rest` parameter keeps its quotes. */
  private async call(spec: CommandSpec, words: string[], rawFrom: (i: number) => string): Promise<unknown> {
    const args: unknown[] = [];
    let i = 0;
    for (const p of spec.params) {
      if (p.type === "rest") {
        // One word is taken unquoted ("hello world" → hello world); several are kept as typed,
        // so a filter such as ~h "x y" => throttle reaches its parser with its quotes.
        args.push(i >= words.length ? "" : words.length - i === 1 ? words[i]! : rawFrom(i).trim());
        i = words.length;
        continue;
      }
      const word = words[i++];
      if (word === undefined) {
        if (p.optional) {
          args.push(undefined);
          continue;
        }
        throw new CommandError(`${spec.name}: missing ${p.name.toUpperCase()}; usage: ${this.usage(spec)}`);
      }
      args.push(this.convert(spec, p, word));
    }
    if (i < words.length) throw new CommandError(`${spec.name}: too many arguments; usage: ${this.usage(spec)}`);
    return spec.run(...args);
  }

  private convert(spec: CommandSpec, p: CommandParam, word: string): unknown {
    switch (p.type) {
      case "string":
        return word;
      case "int": {
        if (!/^-?\d+$/.test(word)) throw new CommandError(`${spec.name}: ${p.name.toUpperCase()} must be a whole number, got ${JSON.stringify(word)}`);
        return Number(word);
      }
      case "bool": {
        const v = parseBool(word);
        if (v === null) throw new CommandError(`${spec.name}: ${p.name.toUpperCase()} must be true or false, got ${JSON.stringify(word)}`);
        return v;
      }
      case "flows": {
        const view = this.view();
        if (!view) throw new CommandError(`${spec.name}: no flow view in this front end`);
        try {
          return view.resolve(word);
        } catch (err) {
          throw new CommandError(`${spec.name}: ${(err as Error).message}`);
        }
      }
      default:
        return word;
    }
  }
}

/** Splits a command line into words; "…" and '…' group, backslash escapes inside quotes. */
export function splitWords(line: string, keepTrailingEmpty: boolean, starts?: number[]): string[] {
  const words: string[] = [];
  let cur = "";
  let quote: string | null = null;
  let inWord = false;
  for (let i = 0; i < line.length; i++) {
    const ch = line[i]!;
    if (quote) {
      if (ch === "\\" && i + 1 < line.length) cur += line[++i];
      else if (ch === quote) quote = null;
      else cur += ch;
    } else if (ch === '"' || ch === "'") {
      if (!inWord) starts?.push(i);
      quote = ch;
      inWord = true;
    } else if (/\s/.test(ch)) {
      if (inWord) words.push(cur);
      cur = "";
      inWord = false;
    } else {
      if (!inWord) starts?.push(i);
      cur += ch;
      inWord = true;
    }
  }
  if (quote) throw new CommandError(`unterminated ${quote} quote`);
  if (inWord) words.push(cur);
  else if (keepTrailingEmpty) words.push("");
  return words;
}

/** Sets one attribute of a flow from text, as `flow.set` does. Returns a description of the change. */
export function setFlowAttribute(flow: HTTPFlow, attr: string, value: string): void {
  const req = flow.request;
  const resp = flow.response;
  const needResponse = () => {
    if (!resp) throw new CommandError(`flow ${flow.id.slice(0, 8)} has no response yet: ${attr} cannot be set`);
    return resp;
  };
  const lower = attr.toLowerCase();
  if (lower.startsWith("request.header.")) {
    req.headers.set(attr.slice("request.header.".length), value);
    return;
  }
  if (lower.startsWith("response.header.")) {
    needResponse().headers.set(attr.slice("response.header.".length), value);
    return;
  }
  switch (lower) {
    case "status_code": {
      if (!/^\d{3}$/.test(value)) throw new CommandError(`status_code must be a three-digit number, got ${JSON.stringify(value)}`);
      const r = needResponse();
      r.statusCode = Number(value);
      r.reason = "";
      return;
    }
    case "reason":
      needResponse().reason = value;
      return;
    case "method":
      req.method = value.toUpperCase();
      return;
    case "url":
      try {
        req.url = value;
      } catch {
        throw new CommandError(`url: ${JSON.stringify(value)} is not an absolute URL`);
      }
      return;
    case "path":
      req.path = value.startsWith("/") ? value : "/" + value;
      return;
    case "host":
      req.host = value;
      if (req.headers.has("host")) req.headers.set("host", value);
      return;
    case "port":
      if (!/^\d+$/.test(value) || Number(value) > 65535) throw new CommandError(`port must be 1-65535`);
      req.port = Number(value);
      return;
    case "scheme":
      if (value !== "http" && value !== "https") throw new CommandError("scheme must be http or https");
      req.scheme = value;
      return;
    case "request.body":
    case "request.text":
      req.text = value;
      return;
    case "response.body":
    case "response.text":
      needResponse().text = value;
      return;
    case "comment":
      flow.comment = value;
      return;
    default:
      throw new CommandError(
        `unknown attribute ${attr}: use status_code, reason, method, url, path, host, port, scheme, request.body, response.body, request.header.NAME, response.header.NAME or comment`,
      );
  }
}
