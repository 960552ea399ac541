/** One way for a test to say which system program it needs and how to install it, when it is missing. */
import { accessSync, constants } from "node:fs";
import { basename, delimiter, join } from "node:path";

/**
 * Undefined when `program` (a name looked up on PATH, or an absolute path) can be run; otherwise
 * the skip reason, always in one form: "SKIP: needs mitmdump (apt-get install -y mitmproxy)".
 * CI installs every package, and `.ci/run` fails on any skip, so a skip there means a missing install step.
 */
export function needs(program: string, aptPackage: string): string | undefined {
  const candidates = program.includes("/") ? [program] : (process.env.PATH ?? "").split(delimiter).filter(Boolean).map((dir) => join(dir, program));
  for (const path of candidates) {
    try {
      accessSync(path, constants.X_OK);
      return undefined;
    } catch {
      // not there: try the next folder on PATH
    }
  }
  return `SKIP: needs ${basename(program)} (apt-get install -y ${aptPackage})`;
}
