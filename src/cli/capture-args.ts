/**
 * Capture arguments of commands that read several captures (`sluice report a.sqlite 'logs/*.mitm'`):
 * which leading words name captures and which start the filter expression, and the globs expanded
 * (quoted globs reach us unexpanded; the shell's own expansion arrives as plain paths). A missing
 * file, a directory or a glob matching nothing is a one-line error, never a silently smaller report.
 */
import { statSync } from "node:fs";
import { isAbsolute, resolve } from "node:path";
import { lazyModule } from "../core/lazy-module.js";
import { UsageError } from "./args.js";

const tinyglobby = lazyModule<typeof import("tinyglobby")>("tinyglobby");

/** Extensions of the formats sluice reads (the reader itself goes by content). */
const CAPTURE_EXTENSION = /\.(mitm|flows|har|sqlite3?|db)$/i;

/**
 * Splits positionals into captures and filter words. The first word is always a capture; later
 * ones are captures while they exist as files, contain a glob or a '/', or end in a capture
 * extension. The first other word — a filter such as `~svc s3`, `!~c 200` or a bare URL part —
 * and everything after it is the filter.
 */
export function splitCapturesAndFilter(positionals: readonly string[]): { captures: string[]; filterWords: string[] } {
  let i = positionals.length ? 1 : 0;
  while (i < positionals.length && looksLikeCapture(positionals[i]!)) i++;
  return { captures: positionals.slice(0, i), filterWords: positionals.slice(i) };
}

function looksLikeCapture(word: string): boolean {
  if (/^[~!(]/.test(word)) return false;
  if (CAPTURE_EXTENSION.test(word) || word.includes("/") || tinyglobby().isDynamicPattern(word)) return true;
  try {
    return statSync(word).isFile();
  } catch {
    return false;
  }
}

/** The files the capture arguments name, globs expanded in sorted order, each file once. */
export async function expandCaptures(args: readonly string[], example: string): Promise<string[]> {
  const files: string[] = [];
  const seen = new Set<string>();
  const add = (path: string) => {
    const key = resolve(path);
    if (seen.has(key)) return;
    seen.add(key);
    files.push(path);
  };
  for (const arg of args) {
    let isFile = false;
    let isDirectory = false;
    try {
      const st = statSync(arg);
      isFile = st.isFile();
      isDirectory = st.isDirectory();
    } catch {
      // Not a file by that name: a glob, or missing.
    }
    if (isFile) {
      add(arg);
      continue;
    }
    if (isDirectory) throw new UsageError(`cannot read ${arg}: it is a directory; give capture files or a glob such as '${arg.replace(/\/+$/, "")}/*.mitm'`);
    if (!tinyglobby().isDynamicPattern(arg)) throw new Error(`cannot read ${arg}: no such file (give a flow file, HAR or SQLite capture, e.g. one written with \`sluice dump -w FILE\`)`);
    const matches = (await tinyglobby().glob(arg, { onlyFiles: true, expandDirectories: false, dot: false, absolute: isAbsolute(arg) })).sort();
    if (matches.length === 0) throw new UsageError(`no capture matches ${arg}: check the pattern and directory (e.g. ${example})`);
    for (const m of matches) add(m);
  }
  return files;
}
