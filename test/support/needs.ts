/** One way for a test to say which system program it needs and how to install it, when it is missing. */
import { spawnSync } from "node:child_process";
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

/** Python interpreters the tests run, in the order tried: PATH's python3 (pyenv's here), then Debian's. */
const PYTHONS = ["python3", "/usr/bin/python3"];
const importable = new Map<string, boolean>();

/** Whether `python -c "import MODULE"` succeeds; asked once per interpreter and module in a process. */
function imports(python: string, module: string): boolean {
  const key = `${python}\0${module}`;
  let ok = importable.get(key);
  if (ok === undefined) {
    ok = spawnSync(python, ["-c", `import ${module}`], { stdio: "ignore", timeout: 60_000 }).status === 0;
    importable.set(key, ok);
  }
  return ok;
}

/** The first python3 (PATH's, then Debian's) that imports every one of `modules`, or undefined. */
export function pythonWith(...modules: string[]): string | undefined {
  return PYTHONS.find((python) => modules.every((m) => imports(python, m)));
}

/**
 * Undefined when a python3 (`python` if given, else PATH's or Debian's) imports `module`; otherwise
 * the skip reason in needs()'s form: "SKIP: needs python3 module boto3 (apt-get install -y python3-boto3)".
 */
export function needsPython(module: string, aptPackage: string, python?: string): string | undefined {
  const found = python === undefined ? pythonWith(module) !== undefined : imports(python, module);
  return found ? undefined : `SKIP: needs python3 module ${module} (apt-get install -y ${aptPackage})`;
}
