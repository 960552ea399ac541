/** Rules files (`--faults`, `--shapes`): a YAML list of rule strings or mappings, read alike for every addon that takes rules. */
import { readFileSync } from "node:fs";
import { lazyModule } from "../core/lazy-module.js";

const yaml = lazyModule<typeof import("yaml")>("yaml");

export type RuleSource = string | Record<string, unknown>;

export interface RulesFileKind {
  /** The command-line flag, for messages: "--faults". */
  flag: string;
  /** Besides `rules`, the key a top-level mapping may hold the list under: "faults". */
  listKey: string;
  /** How a valid file looks, shown when the file is not a list: `e.g. - "…"`. */
  example: string;
  /** The addon's own error type. */
  error: (message: string) => Error;
}

/** Reads `path` as a list of rules; every problem is one error naming the flag and the file. */
export function readRulesFile(path: string, kind: RulesFileKind): RuleSource[] {
  const fail = (message: string): never => {
    throw kind.error(`${kind.flag} ${path}: ${message}`);
  };
  let text = "";
  try {
    text = readFileSync(path, "utf8");
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    const why = code === "ENOENT" ? "no such file" : code === "EISDIR" ? "it is a directory" : code === "EACCES" ? "permission denied" : (err as Error).message;
    fail(`cannot read it (${code ? `${code}, ` : ""}${why}); give a YAML file of rules, ${kind.example}`);
  }
  let doc: unknown;
  try {
    doc = yaml().parse(text);
  } catch (err) {
    fail(`not valid YAML: ${(err as Error).message.split("\n")[0]}`);
  }
  if (doc && typeof doc === "object" && !Array.isArray(doc)) {
    // A mapping must hold the list under a key we know: any other key is a mistake, not "no rules".
    const map = doc as Record<string, unknown>;
    if (!(kind.listKey in map) && !("rules" in map)) fail(`expected a YAML list of rules, or one under ${kind.listKey}: or rules:, found ${Object.keys(map).map((k) => `${k}:`).join(", ")}; ${kind.example}`);
    doc = map[kind.listKey] ?? map.rules;
  }
  if (doc == null) return [];
  if (!Array.isArray(doc)) return fail(`expected a YAML list of rules, ${kind.example}`);
  return doc.map((item, i) => {
    if (typeof item === "string") return item;
    if (item && typeof item === "object" && !Array.isArray(item)) return item as Record<string, unknown>;
    return fail(`item ${i + 1} is neither a rule string nor a mapping`);
  });
}
