/** One phrase for why a file cannot be opened for writing, with what to do about it. */
import { existsSync } from "node:fs";
import { dirname } from "node:path";

/**
 * Why opening `path` for writing failed, from open()'s error, as "what; what to do" without the
 * path itself (callers put it first): a missing folder, a folder in the way, no permission.
 */
export function whyNotWritable(path: string, err: unknown): string {
  const e = err as NodeJS.ErrnoException;
  const folder = dirname(path);
  switch (e.code) {
    case "ENOENT":
      // Under /proc, for one, the folder exists and still nothing can be made in it.
      return existsSync(folder) ? `nothing can be created in ${folder} (ENOENT); choose another path` : `the folder ${folder} does not exist (ENOENT); create it or choose another path`;
    case "ENOTDIR":
      return `part of the path is a file, not a folder (ENOTDIR); choose another path`;
    case "EISDIR":
      return `it is a directory (EISDIR); give a file name, e.g. ${path.replace(/\/+$/, "")}/flows.mitm`;
    case "EACCES":
    case "EPERM":
      return `permission denied (${e.code}); choose a path you can write`;
    case "EROFS":
      return `the file system is read-only (EROFS); choose a path you can write`;
    default:
      return `cannot open for writing: ${e.message}`;
  }
}
