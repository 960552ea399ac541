/**
 * The one-line prompt at the bottom of the screen: `:` commands (Tab completes command names,
 * selectors and option names from the command and option registries), filter and intercept
 * expressions, save paths and inline edits.
 */
import type { CommandManager } from "../../core/commands.js";
import type { Options } from "../../core/options.js";
import type { Key } from "ink";

export interface PromptState {
  label: string;
  text: string;
  cursor: number;
  /** Completions offered by the last Tab, cycled by further Tabs. */
  completions: string[];
  completionIndex: number;
  /** Text before the word being completed. */
  completionBase: string;
  complete: ((text: string) => { base: string; candidates: string[] }) | null;
  submit: (text: string) => void;
}

export function newPrompt(label: string, initial: string, submit: (text: string) => void, complete: PromptState["complete"] = null): PromptState {
  return { label, text: initial, cursor: initial.length, completions: [], completionIndex: 0, completionBase: "", complete, submit };
}

/** Completion for `:` commands: command names, then selectors, option names after `set`. */
export function commandCompleter(commands: CommandManager, options: Options): NonNullable<PromptState["complete"]> {
  return (text) => {
    const lastSpace = text.lastIndexOf(" ");
    const base = text.slice(0, lastSpace + 1);
    const word = text.slice(lastSpace + 1);
    if (/^set\s+[\w.]*$/.test(text)) {
      const names = options.all().map((o) => o.name).filter((n) => n.startsWith(word));
      return { base, candidates: names.map((n) => n + "=") };
    }
    let candidates: string[];
    try {
      candidates = commands.complete(text);
    } catch {
      candidates = [];
    }
    return { base, candidates: candidates.map((c) => (lastSpace < 0 || c.startsWith("@") ? c + " " : c)) };
  };
}

/** Applies one key to the prompt. Returns "submit", "cancel" or null (still editing). */
export function promptKey(p: PromptState, input: string, key: Key): "submit" | "cancel" | null {
  if (key.return) return "submit";
  if (key.escape || (key.ctrl && (input === "c" || input === "g"))) return "cancel";
  if (key.tab) {
    if (!p.complete) return null;
    if (p.completions.length === 0) {
      const { base, candidates } = p.complete(p.text);
      if (candidates.length === 0) return null;
      p.completionBase = base;
      p.completions = candidates;
      p.completionIndex = 0;
      // One candidate, or a common prefix longer than the word: complete that much.
      const prefix = commonPrefix(candidates);
      if (candidates.length > 1 && prefix.length > p.text.length - base.length) {
        p.text = base + prefix;
        p.cursor = p.text.length;
        p.completions = candidates;
        p.completionIndex = -1;
        return null;
      }
    } else p.completionIndex = (p.completionIndex + (key.shift ? -1 : 1) + p.completions.length) % p.completions.length;
    p.text = p.completionBase + p.completions[Math.max(0, p.completionIndex)]!;
    p.cursor = p.text.length;
    if (p.completions.length === 1) p.completions = [];
    return null;
  }
  p.completions = [];
  if (key.backspace || key.delete) {
    // Terminals send DEL (0x7f) for Backspace; ink reports it as `delete`. Both erase to the left.
    if (p.cursor > 0) {
      p.text = p.text.slice(0, p.cursor - 1) + p.text.slice(p.cursor);
      p.cursor--;
    } else if (p.text === "") return "cancel";
    return null;
  }
  if (key.leftArrow) p.cursor = Math.max(0, p.cursor - 1);
  else if (key.rightArrow) p.cursor = Math.min(p.text.length, p.cursor + 1);
  else if (key.home || (key.ctrl && input === "a")) p.cursor = 0;
  else if (key.end || (key.ctrl && input === "e")) p.cursor = p.text.length;
  else if (key.ctrl && input === "u") {
    p.text = p.text.slice(p.cursor);
    p.cursor = 0;
  } else if (key.ctrl && input === "k") p.text = p.text.slice(0, p.cursor);
  else if (key.ctrl && input === "w") {
    const before = p.text.slice(0, p.cursor).replace(/\S+\s*$/, "");
    p.text = before + p.text.slice(p.cursor);
    p.cursor = before.length;
  } else if (input && !key.ctrl && !key.meta && !key.upArrow && !key.downArrow) {
    const clean = input.replace(/[\x00-\x1f\x7f]/g, "");
    p.text = p.text.slice(0, p.cursor) + clean + p.text.slice(p.cursor);
    p.cursor += clean.length;
  }
  return null;
}

function commonPrefix(words: string[]): string {
  let prefix = words[0] ?? "";
  for (const w of words) while (!w.startsWith(prefix)) prefix = prefix.slice(0, -1);
  return prefix;
}
