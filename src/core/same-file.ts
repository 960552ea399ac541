/**
 * Whether two path spellings name one file — `~/x`, `./x`, `/abs/x`, a symlinked folder, a hard
 * link — so that two writers (or a reader and a writer) are never given one file without being told.
 */
import { realpathSync, statSync } from "node:fs";
import { basename, dirname, resolve } from "node:path";
import { expandHome } from "./spec.js";

/** The absolute path `path` names: `~` expanded, relative to the working directory, symlinked folders followed. */
export function canonicalPath(path: string): string {
  const absolute = resolve(expandHome(path));
  try {
    return realpathSync(absolute);
  } catch {
    // Not there yet (a file about to be written): its folder may still be reached through a symlink.
    try {
      return resolve(realpathSync(dirname(absolute)), basename(absolute));
    } catch {
      return absolute;
    }
  }
}

export function sameFile(a: string, b: string): boolean {
  if (canonicalPath(a) === canonicalPath(b)) return true;
  // Hard links: two names, one inode.
  try {
    const sa = statSync(expandHome(a));
    const sb = statSync(expandHome(b));
    return sa.isFile() && sa.dev === sb.dev && sa.ino === sb.ino;
  } catch {
    return false;
  }
}
