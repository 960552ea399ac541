/**
 * The `FILTER => ACTION [args] [key=value …]` rule syntax shared by `--fault` and `--shape`, and
 * its rules-file twin, a mapping `{filter, action, args, enabled, …options}`.
 *
 * The filter part is a full filter expression (compiled by the caller); the right-hand side is
 * split into words, so `delay 200ms jitter=50ms p=0.3` gives action "delay", args ["200ms"] and
 * options {jitter: "50ms", p: "0.3"}.
 */
import { splitWords } from "../core/commands.js";
import { parseBool } from "../core/values.js";

export interface RuleSpec {
  /** The text as given, for listing and error messages. */
  text: string;
  filter: string;
  action: string;
  args: string[];
  options: Record<string, string>;
}

export class RuleSpecError extends Error {}

/** Options whose values are comma-separated lists, so they may be repeated (aws-limits' keys=, provisioned=, reserved=, lsi=). */
const LIST_OPTIONS = new Set(["keys", "provisioned", "reserved", "lsi", "gsi"]);

export function parseRuleSpec(text: string, example = "'~d s3.amazonaws.com => throttle p=0.3'"): RuleSpec {
  const arrow = text.lastIndexOf("=>");
  if (arrow < 0) throw new RuleSpecError(`rule ${JSON.stringify(text)} has no "=>": write FILTER => ACTION, e.g. ${example}`);
  const filter = text.slice(0, arrow).trim() || "~all";
  let words: string[];
  try {
    words = splitWords(text.slice(arrow + 2), false);
  } catch (err) {
    throw new RuleSpecError(`rule ${JSON.stringify(text)}: ${(err as Error).message}`);
  }
  const actionIndex = words.findIndex((w) => !isOption(w));
  const action = words[actionIndex];
  if (!action) throw new RuleSpecError(`rule ${JSON.stringify(text)} names no action after "=>", e.g. ${example}`);
  const args: string[] = [];
  const options: Record<string, string> = {};
  for (const [i, w] of words.entries()) {
    if (i === actionIndex) continue;
    if (isOption(w)) {
      const eq = w.indexOf("=");
      const name = w.slice(0, eq);
      if (options[name] !== undefined) {
        // A list option given again adds to it (reserved=a:2 reserved=b:3); any other would silently lose a value.
        if (!LIST_OPTIONS.has(name)) throw new RuleSpecError(`rule ${JSON.stringify(text)} gives ${name}= twice: give it once`);
        options[name] = `${options[name]},${w.slice(eq + 1)}`;
      } else {
        options[name] = w.slice(eq + 1);
      }
    } else {
      args.push(w);
    }
  }
  return { text, filter, action, args, options };
}

function isOption(word: string): boolean {
  return /^[A-Za-z][\w-]*=/.test(word);
}

/** How one kind of rule names itself and its action key in a rules file. */
export interface RuleObjectKind {
  /** The key holding the right-hand side: "action" for faults, "rate" for shaping. */
  actionKey: string;
  /** What to write when the action is missing, e.g. "add action: throttle (or status, …)". */
  missingAction: string;
  example: string;
}

/**
 * A rules-file mapping as a RuleSpec: `filter` (or `match`, default ~all), the action key (which
 * may carry its arguments: "delay 200ms"), `args`, `enabled`, and every other key an option, with
 * underscores read as dashes (max_queue = max-queue). Nested values are refused, not stringified.
 * Errors are RuleSpecErrors starting "rule …"; callers say whose ("fault rule …").
 */
export function specFromObject(obj: Record<string, unknown>, kind: RuleObjectKind): { spec: RuleSpec; enabled: boolean | null } {
  const { filter, match, [kind.actionKey]: action, args, enabled, ...rest } = obj;
  const filterText = String(filter ?? match ?? "~all");
  const options: Record<string, string> = {};
  for (const [k, v] of Object.entries(rest)) {
    if (v === null || typeof v === "object") throw new RuleSpecError(`rule {filter: ${JSON.stringify(filterText)}, …}: option ${k} must be a plain value, got ${JSON.stringify(v)}`);
    options[k.replace(/_/g, "-")] = String(v);
  }
  const extraArgs = args === undefined ? [] : Array.isArray(args) ? args.map(String) : [String(args)];
  const actionText = [action === undefined || action === null ? "" : String(action), ...extraArgs].join(" ").trim();
  const text = `${filterText} => ${actionText}${Object.entries(options).map(([k, v]) => ` ${k}=${v}`).join("")}`;
  if (!actionText) throw new RuleSpecError(`rule ${JSON.stringify(text)} has no ${kind.actionKey}: ${kind.missingAction}`);
  let enabledValue: boolean | null = null;
  if (enabled !== undefined) {
    enabledValue = typeof enabled === "boolean" ? enabled : parseBool(String(enabled));
    if (enabledValue === null) throw new RuleSpecError(`rule ${JSON.stringify(text)}: enabled expects true or false, got ${JSON.stringify(enabled)}`);
  }
  const spec = parseRuleSpec(`${filterText} => ${actionText}`, kind.example);
  return { spec: { ...spec, text, options: { ...spec.options, ...options } }, enabled: enabledValue };
}
