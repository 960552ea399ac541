/**
 * The typed option registry. Built-in options and script options live here alike; `--set name=value`,
 * the confdir's config file and the `set` command all go through `set()`, which parses by type and
 * says clearly what is wrong with a bad value.
 */
import { parseBool } from "./values.js";

export type OptionType = "string" | "int" | "bool" | "size" | "strings" | "optional-string";

export interface OptionSpec<T = unknown> {
  name: string;
  type: OptionType;
  default: T;
  help: string;
  choices?: readonly string[];
  /** Bounds of an int option, both inclusive (a port: 0 to 65535). */
  min?: number;
  max?: number;
}

export class OptionError extends Error {}

/**
 * What `--set NAME` without `=VALUE` passes on. As in mitmproxy, a true/false option becomes true,
 * an optional string unset and a list empty; any other option needs its value.
 */
export const OMITTED_VALUE = "\u0000omitted";

/** The TypeScript type of an option's value, by its declared type. */
export type OptionValue<T extends OptionType> = T extends "string" ? string
  : T extends "int" | "size" ? number
  : T extends "bool" ? boolean
  : T extends "strings" ? string[]
  : T extends "optional-string" ? string | null
  : never;

/** One option, declared once: its type drives parsing, checking and the typed accessor. */
export type OptionDecl = { [T in OptionType]: { type: T; default: OptionValue<T>; help: string; choices?: readonly string[]; min?: number; max?: number } }[OptionType];
export type OptionDecls = Record<string, OptionDecl>;

/** Read-only, typed, live view of declared options: `core.listen_port` is a number, always current. */
export type TypedOptions<D extends OptionDecls> = { readonly [K in keyof D]: OptionValue<D[K]["type"]> };

/** Declares a group of options (keeps the literal types the typed accessor needs). */
export function declareOptions<const D extends OptionDecls>(decls: D): D {
  return decls;
}

/** Told which options changed; throwing (or rejecting) refuses the new values, which are then rolled back. */
type Listener = (updated: Set<string>) => void | Promise<void>;

export class Options {
  private specs = new Map<string, OptionSpec>();
  private values = new Map<string, unknown>();
  private listeners: Listener[] = [];
  /** Values set before their option was registered (e.g. a script option given on the command line). */
  private deferred = new Map<string, string>();
  /** Options given a value by the user (even their default), for defaults that depend on it. */
  private explicit = new Set<string>();

  add<T>(spec: OptionSpec<T>): void {
    if (this.specs.has(spec.name)) {
      const old = this.specs.get(spec.name)!;
      if (old.type !== spec.type) throw new OptionError(`option ${spec.name} is already registered with type ${old.type}`);
      return;
    }
    this.specs.set(spec.name, spec as OptionSpec);
    this.values.set(spec.name, spec.default);
    const pending = this.deferred.get(spec.name);
    if (pending !== undefined) {
      this.deferred.delete(spec.name);
      // A refusal is thrown here when synchronous; an async one rolls back and is reported by
      // whoever registered the option (it is configuring right now).
      const r = this.set(spec.name, pending);
      if (r) r.catch(() => {});
    }
  }

  /**
   * Registers every option of `decls` and returns a typed live view of them, so readers write
   * `core.connect_timeout` (a number) instead of `options.get<number>("connect_timeout")`.
   */
  register<D extends OptionDecls>(decls: D): TypedOptions<D> {
    const view = {} as Record<string, unknown>;
    for (const [name, decl] of Object.entries(decls)) {
      this.add<unknown>({ name, ...decl });
      Object.defineProperty(view, name, { get: () => this.values.get(name), enumerable: true });
    }
    return Object.freeze(view) as TypedOptions<D>;
  }

  /** Whether `name` was set (by --set, a flag, the config file or a command), not left at its default. */
  isExplicit(name: string): boolean {
    return this.explicit.has(name);
  }

  /**
   * A typed live view of options another addon declared (pass its exported declarations), or null
   * when they are not registered because that addon is not loaded. A name registered with another
   * type is a programming error and throws.
   */
  lookup<D extends OptionDecls>(decls: D): TypedOptions<D> | null {
    const view = {} as Record<string, unknown>;
    for (const [name, decl] of Object.entries(decls)) {
      const spec = this.specs.get(name);
      if (!spec) return null;
      if (spec.type !== decl.type) throw new OptionError(`option ${name} is registered with type ${spec.type}, not ${decl.type}`);
      Object.defineProperty(view, name, { get: () => this.values.get(name), enumerable: true });
    }
    return Object.freeze(view) as TypedOptions<D>;
  }

  has(name: string): boolean {
    return this.specs.has(name);
  }

  get<T = unknown>(name: string): T {
    if (!this.specs.has(name)) throw new OptionError(`unknown option ${name}: see \`sluice options\``);
    return this.values.get(name) as T;
  }

  spec(name: string): OptionSpec | undefined {
    return this.specs.get(name);
  }

  all(): OptionSpec[] {
    return [...this.specs.values()].sort((a, b) => a.name.localeCompare(b.name));
  }

  /**
   * Parse `raw` by the option's type and set it. Unknown names throw unless `allowDeferred`.
   * As `update`: when a listener refuses the value, the old one is back and the error is thrown.
   */
  set(name: string, raw: string, allowDeferred = false): void | Promise<void> {
    const spec = this.specs.get(name);
    if (!spec) {
      if (allowDeferred) {
        this.deferred.set(name, raw);
        return;
      }
      throw new OptionError(`unknown option ${name}: see \`sluice options\` for the list`);
    }
    return this.update({ [name]: parseValue(spec, raw) });
  }

  /** Names given with --set that no addon or script registered; reported once start-up is done. */
  unknownDeferred(): string[] {
    return [...this.deferred.keys()];
  }

  /**
   * Set typed values at once and notify listeners with the names that changed. When a listener
   * refuses them (throws, or its promise rejects), every value goes back to what it was, listeners
   * are told again so they return to the old values, and the error is thrown — as mitmproxy's
   * optmanager does. A promise is returned only when a listener answered with one.
   */
  update(values: Record<string, unknown>): void | Promise<void> {
    const old = new Map<string, unknown>();
    for (const [name, value] of Object.entries(values)) {
      const spec = this.specs.get(name);
      if (!spec) throw new OptionError(`unknown option ${name}: see \`sluice options\``);
      checkType(spec, value);
    }
    for (const [name, value] of Object.entries(values)) {
      this.explicit.add(name);
      if (this.values.get(name) !== value) {
        if (!old.has(name)) old.set(name, this.values.get(name));
        this.values.set(name, value);
      }
    }
    if (old.size === 0) return;
    const changed = new Set(old.keys());
    const pending: Promise<void>[] = [];
    try {
      for (const l of [...this.listeners]) {
        const r = l(changed);
        if (r) pending.push(r);
      }
    } catch (err) {
      // Listeners that already answered with a promise still settle; their outcome no longer matters.
      for (const p of pending) p.catch(() => {});
      throw this.rollBack(old, err);
    }
    if (pending.length === 0) return;
    return Promise.all(pending).then(
      () => undefined,
      (err: unknown) => {
        throw this.rollBack(old, err);
      },
    );
  }

  /** Restores `old` values, tells listeners, and returns the error to throw. */
  private rollBack(old: Map<string, unknown>, err: unknown): unknown {
    for (const [name, value] of old) this.values.set(name, value);
    const changed = new Set(old.keys());
    const failures: string[] = [];
    for (const l of [...this.listeners]) {
      try {
        const r = l(changed);
        if (r) r.catch((e: unknown) => failures.push(String((e as Error)?.message ?? e)));
      } catch (e) {
        failures.push(String((e as Error)?.message ?? e));
      }
    }
    if (failures.length && err instanceof Error) err.message += `; restoring the old values failed too: ${failures.join("; ")}`;
    return err;
  }

  onChange(listener: Listener): () => void {
    this.listeners.push(listener);
    return () => {
      this.listeners = this.listeners.filter((l) => l !== listener);
    };
  }
}

function parseValue(spec: OptionSpec, raw: string): unknown {
  if (raw === OMITTED_VALUE) {
    if (spec.type === "bool") return true;
    if (spec.type === "optional-string") return null;
    if (spec.type === "strings") return [];
    throw new OptionError(`option ${spec.name} needs a value: --set ${spec.name}=VALUE (only true/false options, lists and optional values may leave it out, as in mitmproxy)`);
  }
  const bad = (what: string) => new OptionError(`option ${spec.name} expects ${what}, got ${JSON.stringify(raw)}`);
  switch (spec.type) {
    case "string":
      if (spec.choices && !spec.choices.includes(raw)) throw bad(`one of ${spec.choices.join(", ")}`);
      return raw;
    case "optional-string":
      return raw === "" || raw === "null" ? null : raw;
    case "int": {
      if (!/^-?\d+$/.test(raw.trim())) throw bad("a whole number");
      const n = Number(raw);
      const range = outOfRange(spec, n);
      if (range) throw bad(range);
      return n;
    }
    case "bool": {
      const v = parseBool(raw);
      if (v === null) throw bad("true or false");
      return v;
    }
    case "size": {
      const n = parseSize(raw);
      if (n === null) throw bad("a size such as 512k, 1m or 2g");
      return n;
    }
    case "strings": {
      // A JSON array keeps items that contain commas (regexes, specs); otherwise split on commas.
      if (raw.trim().startsWith("[")) {
        let list: unknown;
        try {
          list = JSON.parse(raw);
        } catch {
          throw bad("a JSON array of strings or a comma-separated list");
        }
        if (!Array.isArray(list) || !list.every((x) => typeof x === "string")) throw bad("a JSON array of strings");
        return list;
      }
      return raw === "" ? [] : raw.split(",").map((s) => s.trim());
    }
  }
}

function checkType(spec: OptionSpec, value: unknown): void {
  const ok =
    spec.type === "string" ? typeof value === "string" :
    spec.type === "optional-string" ? value === null || typeof value === "string" :
    spec.type === "int" || spec.type === "size" ? typeof value === "number" && Number.isFinite(value) :
    spec.type === "bool" ? typeof value === "boolean" :
    Array.isArray(value);
  if (!ok) throw new OptionError(`option ${spec.name} expects a ${spec.type}, got ${JSON.stringify(value)}`);
  const range = spec.type === "int" ? outOfRange(spec, value as number) : null;
  if (range) throw new OptionError(`option ${spec.name} expects ${range}, got ${JSON.stringify(value)}`);
}

/** What an int option expects when `n` is outside its bounds, or null when it is inside. */
function outOfRange(spec: OptionSpec, n: number): string | null {
  const { min, max } = spec;
  if ((min === undefined || n >= min) && (max === undefined || n <= max)) return null;
  if (min !== undefined && max !== undefined) return `a whole number from ${min} to ${max}`;
  return min !== undefined ? `a whole number of at least ${min}` : `a whole number of at most ${max}`;
}

/** "1m" → 1048576; "512k", "2g", plain bytes. Null when unreadable. */
export function parseSize(raw: string): number | null {
  const m = /^\s*(\d+(?:\.\d+)?)\s*([kmgt]?)i?b?\s*$/i.exec(raw);
  if (!m) return null;
  const mult = { "": 1, k: 1024, m: 1024 ** 2, g: 1024 ** 3, t: 1024 ** 4 }[m[2]!.toLowerCase() as "" | "k" | "m" | "g" | "t"];
  return Math.round(Number(m[1]) * mult);
}

export function formatOptionValue(value: unknown): string {
  if (value === null || value === undefined) return "";
  if (Array.isArray(value)) return value.join(",");
  return String(value);
}
