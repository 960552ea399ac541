/**
 * The layers of src/ import only downwards: core imports nothing above it (no AWS, no sockets),
 * aws/ only core, and proxy/ never reaches into the features in addons/ (wiring lives in cli/).
 * The test reads the TypeScript sources, so a new file that breaks the rule fails it at once.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { readdirSync, readFileSync, statSync } from "node:fs";
import { dirname, join, relative, resolve, sep } from "node:path";
import { fileURLToPath } from "node:url";

const root = resolve(dirname(fileURLToPath(import.meta.url)), "..", "..");
const src = join(root, "src");

function sourceFiles(dir: string): string[] {
  return readdirSync(dir).flatMap((name) => {
    const path = join(dir, name);
    if (statSync(path).isDirectory()) return sourceFiles(path);
    return /\.tsx?$/.test(name) ? [path] : [];
  });
}

/** Every relative import of a file (static, dynamic, `import type` and re-exports alike), as src-relative paths. */
function importsOf(file: string): { target: string; typeOnly: boolean }[] {
  const text = readFileSync(file, "utf8");
  const out: { target: string; typeOnly: boolean }[] = [];
  const patterns = [
    /^\s*(import|export)\s+(type\s+)?(?:[^"';]*?\s+from\s+)?["'](\.[^"']+)["']/gm,
    /import\(\s*["'](\.[^"']+)["']\s*\)/g,
  ];
  for (const m of text.matchAll(patterns[0]!)) out.push({ target: m[3]!, typeOnly: m[2] !== undefined });
  for (const m of text.matchAll(patterns[1]!)) out.push({ target: m[1]!, typeOnly: false });
  return out.map(({ target, typeOnly }) => ({ target: relative(src, resolve(dirname(file), target)).split(sep).join("/"), typeOnly }));
}

function layerOf(srcRelative: string): string {
  return srcRelative.split("/")[0]!;
}

function violations(from: string, forbidden: string[], opts: { typesAllowed?: boolean } = {}): string[] {
  const bad: string[] = [];
  for (const file of sourceFiles(join(src, from))) {
    for (const imp of importsOf(file)) {
      if (opts.typesAllowed && imp.typeOnly) continue;
      if (forbidden.includes(layerOf(imp.target)) || imp.target.startsWith("..")) {
        bad.push(`${relative(src, file)} imports ${imp.target}`);
      }
    }
  }
  return bad;
}

test("the import scanner sees every kind of import (so the rules below can fail)", () => {
  const file = join(src, "cli", "wiring.ts");
  const targets = importsOf(file).map((i) => i.target);
  assert.ok(targets.includes("addons/faults.js"), `saw ${targets.join(", ")}`);
  assert.ok(targets.includes("aws/index.js"), "a side-effect import counts");
  assert.ok(importsOf(join(src, "core", "addons.ts")).some((i) => i.typeOnly && i.target === "core/flow.js"), "an import type is seen and marked");
});

test("core imports nothing above it: no aws/, proxy/, addons/, store/, ui/ or cli/", () => {
  assert.deepEqual(violations("core", ["aws", "proxy", "addons", "store", "ui", "cli", "rules", "index.ts"]), []);
});

test("aws/ builds on core only, and core does not import aws/ back (no cycle)", () => {
  assert.deepEqual(violations("aws", ["proxy", "addons", "store", "ui", "cli", "rules", "index.ts"]), []);
});

test("proxy/ never reaches into addons/ or cli/: which features run is wired in cli/", () => {
  assert.deepEqual(violations("proxy", ["addons", "cli", "ui"]), []);
});

/**
 * Options are read through typed views (`this.opts.flow_detail`, `ctx.core.mode`,
 * `options.lookup(DECLS)`), never by a name in a string with a type the caller asserts: a typo or a
 * wrong type there compiles and fails at run time.
 */
function stringlyOptionReads(dir: string): string[] {
  const patterns = [
    // options.get("name") or options.get<T>("name"), however the registry is reached
    /options\s*\.\s*get\s*(<[^>()]*(?:<[^>]*>)?[^>()]*>)?\s*\(\s*["'`]/g,
    // an alias of the registry read with an asserted type: o.get<number>("name")
    /\.get\s*<[^>()]*(?:<[^>]*>)?[^>()]*>\s*\(\s*["'`][a-z][a-z0-9_]*["'`]\s*\)/g,
  ];
  const bad: string[] = [];
  for (const file of sourceFiles(join(src, dir))) {
    const lines = readFileSync(file, "utf8").split("\n");
    lines.forEach((line, i) => {
      if (patterns.some((p) => new RegExp(p.source).test(line))) bad.push(`${relative(src, file)}:${i + 1}: ${line.trim()}`);
    });
  }
  return bad;
}

test("the stringly-option scanner sees both spellings (so the rule below can fail)", () => {
  const probe = (line: string) => [/options\s*\.\s*get\s*(<[^>()]*(?:<[^>]*>)?[^>()]*>)?\s*\(\s*["'`]/, /\.get\s*<[^>()]*(?:<[^>]*>)?[^>()]*>\s*\(\s*["'`][a-z][a-z0-9_]*["'`]\s*\)/].some((p) => p.test(line));
  assert.ok(probe(`const d = this.ctx.options.get<number>("flow_detail");`));
  assert.ok(probe(`const d = ctx.options.get("flow_detail");`));
  assert.ok(probe(`if (o.get<string | null>("intercept")) x();`));
  assert.ok(probe(`for (const h of o.get<string[]>("server_replay_use_headers")) y();`));
  assert.ok(!probe(`const v = formatOptionValue(o.get(spec.name));`), "a name from the registry's own list is not stringly");
  assert.ok(!probe(`flow.request.headers.get("content-type")`));
});

test("addons/, ui/ and proxy/ read options through typed views, never options.get(\"name\")", () => {
  assert.deepEqual(["addons", "ui", "proxy"].flatMap(stringlyOptionReads), []);
});
