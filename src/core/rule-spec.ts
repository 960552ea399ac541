/**
 * The `FILTER => ACTION [args] [key=value …]` rule syntax shared by `--fault` and `--shape`.
 *
 * The filter part is a full filter expression (compiled by the caller); the right-hand side is
 * split into words, so `delay 200ms jitter=50ms p=0.3` gives action "delay", args ["200ms"] and
 * options {jitter: "50ms", p: "0.3"}.
 */
import { splitWords } from "./commands.js";

export interface RuleSpec {
  /** The text as given, for listing and error messages. */
  text: string;
  filter: string;
  action: string;
  args: string[];
  options: Record<string, string>;
}

export class RuleSpecError extends Error {}

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
      options[w.slice(0, eq)] = w.slice(eq + 1);
    } else {
      args.push(w);
    }
  }
  return { text, filter, action, args, options };
}

function isOption(word: string): boolean {
  return /^[A-Za-z][\w-]*=/.test(word);
}
