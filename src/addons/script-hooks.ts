/**
 * Module loader hooks for user scripts (registered once with `module.register` by the scripts
 * addon; they run on Node's loader thread).
 *
 * - `import … from "sluice"` resolves to the running sluice, wherever the script lives and however
 *   sluice was installed (a clone, `npm install -g`), so `Response.make` in a script builds the
 *   very class the proxy checks for.
 * - A `.ts` script is loaded as an ES module even outside a `"type": "module"` package, so tsx
 *   compiles it with its own file URL and source map: an error in it shows the script's file, line
 *   and column rather than a `data:` URL of compiled code.
 */
import { readFile } from "node:fs/promises";

interface ResolveContext {
  parentURL?: string;
  conditions: string[];
}
interface ResolveResult {
  url: string;
  format?: string | null;
  shortCircuit?: boolean;
}
interface LoadContext {
  format?: string | null;
  conditions: string[];
}
interface LoadResult {
  format: string;
  source?: string | Buffer;
  shortCircuit?: boolean;
}

/** The names sluice's entry module exports; the running module itself waits on the main thread. */
let sluiceExports: string[] = [];

export function initialize(data: { sluiceExports: string[] }): void {
  sluiceExports = data.sluiceExports;
}

export async function resolve(specifier: string, context: ResolveContext, next: (s: string, c: ResolveContext) => Promise<ResolveResult>): Promise<ResolveResult> {
  if (specifier === "sluice" && sluiceExports.length) return { url: sluiceFacade(), format: "module", shortCircuit: true };
  return next(specifier, context);
}

/**
 * tsx loads each TypeScript script in a namespace of its own, and any file it imports (sluice's
 * entry too) would be a private copy, with classes the proxy does not know. So "sluice" is a tiny
 * module that hands out the running module, which the scripts addon put on `globalThis`.
 */
function sluiceFacade(): string {
  const names = sluiceExports.join(",");
  return `data:text/javascript,${encodeURIComponent(`const api = globalThis[Symbol.for("sluice.api")]; export const { ${names} } = api;`)}`;
}

const TYPESCRIPT = /\.(ts|tsx)$/;

export async function load(url: string, context: LoadContext, next: (u: string, c: LoadContext) => Promise<LoadResult>): Promise<LoadResult> {
  if (url.startsWith("file:") && !url.includes("/node_modules/")) {
    const path = new URL(url);
    if (TYPESCRIPT.test(path.pathname)) {
      return { format: "module-typescript", source: await readFile(path), shortCircuit: true };
    }
  }
  return next(url, context);
}
