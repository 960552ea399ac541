/** What `npm install sluice` gets: the program and its licence, no tests, benches or build info. */
import { test } from "node:test";
import assert from "node:assert/strict";
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, symlinkSync } from "node:fs";
import { builtinModules } from "node:module";
import { spawn } from "node:child_process";
import http from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { run } from "./support/run.js";

const REPO = join(dirname(fileURLToPath(import.meta.url)), "..", "..");

test("the npm tarball holds what a user runs and the LICENSE package.json names, and nothing of the tests", async () => {
  const pkg = JSON.parse(readFileSync(join(REPO, "package.json"), "utf8")) as { license: string };
  assert.equal(pkg.license, "MIT");
  assert.match(readFileSync(join(REPO, "LICENSE"), "utf8"), /^MIT License/);
  const r = await run("npm", ["pack", "--dry-run", "--json", "--ignore-scripts"], { cwd: REPO, timeoutMs: 120_000 });
  assert.equal(r.code, 0, r.stderr);
  const files = (JSON.parse(r.stdout) as { files: { path: string }[] }[])[0]!.files.map((f) => f.path);
  for (const needed of ["LICENSE", "README.md", "bin/sluice.js", "dist/src/index.js", "dist/src/index.d.ts", "dist/src/cli/main.js", "dist/src/addons/script-hooks.js", "examples/s3-throttle.js"]) {
    assert.ok(files.includes(needed), `${needed} is in the tarball`);
  }
  if (existsSync(join(REPO, "dist", "web", "index.html"))) assert.ok(files.includes("dist/web/index.html"), "the web UI's page");
  const unwanted = files.filter((f) => /^(dist\/)?(test|bench)\//.test(f) || f.endsWith(".tsbuildinfo"));
  assert.deepEqual(unwanted, []);
});

/**
 * A global install, as `npm install -g sluice-0.1.0.tgz` lays it out: the packed files under
 * PREFIX/lib/node_modules/sluice and PREFIX/bin/sluice a symlink to its bin entry. A real
 * `npm install -g --prefer-offline` of the tarball took 3 min 9 s here (load average 20; it
 * reifies ~300 packages), far over a test's budget, so the dependencies are linked from this
 * checkout and checked separately: every package the shipped code imports is a runtime dependency.
 */
test("the packed tarball runs as a global install: sluice --version, and sluice dump serves a curl request", { timeout: 120_000 }, async () => {
  const tmp = mkdtempSync(join(tmpdir(), "sluice-global-"));
  const packed = await run("npm", ["pack", "--json", "--ignore-scripts", "--pack-destination", tmp], { cwd: REPO, timeoutMs: 120_000 });
  assert.equal(packed.code, 0, packed.stderr);
  const tarball = join(tmp, (JSON.parse(packed.stdout) as { filename: string }[])[0]!.filename);
  const pkgDir = join(tmp, "prefix", "lib", "node_modules", "sluice");
  mkdirSync(pkgDir, { recursive: true });
  const untar = await run("tar", ["-xzf", tarball, "-C", pkgDir, "--strip-components=1"]);
  assert.equal(untar.code, 0, untar.stderr);
  symlinkSync(join(REPO, "node_modules"), join(pkgDir, "node_modules"));
  mkdirSync(join(tmp, "prefix", "bin"));
  const pkg = JSON.parse(readFileSync(join(pkgDir, "package.json"), "utf8")) as { version: string; bin: Record<string, string>; dependencies: Record<string, string> };
  const bin = join(tmp, "prefix", "bin", "sluice");
  symlinkSync(join("..", "lib", "node_modules", "sluice", pkg.bin.sluice!), bin);

  // What the shipped code imports must be installed for a user: a runtime dependency, not a dev one.
  const imported = new Set<string>();
  const walk = (dir: string): void => {
    for (const entry of readdirSync(dir, { withFileTypes: true })) {
      const path = join(dir, entry.name);
      if (entry.isDirectory()) walk(path);
      else if (entry.name.endsWith(".js")) {
        for (const m of readFileSync(path, "utf8").matchAll(/^\s*(?:import|export)\b[^;"'`]*?\bfrom\s*["']([^"'./][^"']*)["']|^\s*import\s*["']([^"'./][^"']*)["']|\bimport\(\s*["']([^"'./][^"']*)["']\s*\)/gm)) {
          const spec = (m[1] ?? m[2] ?? m[3])!;
          if (spec.startsWith("node:") || builtinModules.includes(spec)) continue;
          imported.add(spec.startsWith("@") ? spec.split("/").slice(0, 2).join("/") : spec.split("/")[0]!);
        }
      }
    }
  };
  walk(join(pkgDir, "dist", "src"));
  const undeclared = [...imported].filter((name) => name !== "sluice" && !(name in pkg.dependencies));
  assert.deepEqual(undeclared, [], "imported by dist/src but not in dependencies");

  const version = await run(bin, ["--version"]);
  assert.equal(version.code, 0, version.stderr);
  assert.equal(version.stdout, `sluice ${pkg.version}\n`);

  const origin = http.createServer((_req, res) => res.end("hello from the origin"));
  await new Promise<void>((r) => origin.listen(0, "127.0.0.1", r));
  const child = spawn(bin, ["dump", "-p", "0", "--confdir", join(tmp, "conf")], { stdio: ["ignore", "pipe", "pipe"] });
  let err = "";
  let out = "";
  child.stderr!.on("data", (c: Buffer) => (err += c.toString()));
  child.stdout!.on("data", (c: Buffer) => (out += c.toString()));
  try {
    let port = 0;
    for (let i = 0; i < 600 && !port; i++) {
      port = Number(/listening at [^\s]+:(\d+)/.exec(err)?.[1] ?? 0);
      if (!port) await new Promise((r) => setTimeout(r, 50));
    }
    assert.ok(port, `sluice dump did not start: ${err}`);
    const url = `http://127.0.0.1:${(origin.address() as AddressInfo).port}/from-global`;
    const r = await run("curl", ["-sS", "--max-time", "30", "--noproxy", "", "-x", `http://127.0.0.1:${port}`, url]);
    assert.equal(r.stdout, "hello from the origin", r.stderr);
    for (let i = 0; i < 100 && !out.includes("/from-global"); i++) await new Promise((res) => setTimeout(res, 50));
    assert.match(out, /GET http:\/\/127\.0\.0\.1:\d+\/from-global → 200/);
  } finally {
    child.kill("SIGINT");
    origin.close();
  }
});

test("the README lists exactly the Debian packages .ci/run installs, and its links stay inside the repository", () => {
  const readme = readFileSync(join(REPO, "README.md"), "utf8");
  const ci = readFileSync(join(REPO, ".ci", "run"), "utf8");
  const packagesIn = (text: string): string[] => {
    const line = /apt-get install -y[^\n]*?--no-install-recommends ((?:[^\n\\]|\\\n)+)/.exec(text)?.[1] ?? "";
    return line.replace(/\\\n/g, " ").replace(/>\/dev\/null.*$/, "").split(/\s+/).filter((w) => /^[a-z0-9][a-z0-9.+-]+$/.test(w)).sort();
  };
  const listed = packagesIn(readme.slice(readme.indexOf("## Tests")));
  assert.ok(listed.length > 5, "the README's Tests section has the apt-get line");
  assert.deepEqual(packagesIn(ci), listed);
  const table = [...readme.slice(readme.indexOf("## Tests")).matchAll(/^\| `([a-z0-9.+-]+)` \|/gm)].map((m) => m[1]!).sort();
  assert.deepEqual(table, listed, "each package has a row saying what uses it");

  const docs = ["README.md", ...readdirSync(join(REPO, "docs")).filter((f) => f.endsWith(".md")).map((f) => join("docs", f))];
  const outside: string[] = [];
  for (const doc of docs) {
    const text = readFileSync(join(REPO, doc), "utf8");
    for (const m of text.matchAll(/\]\(([^)\s]+)\)|src="([^"]+)"|`(\.\.\/[^`]+)`/g)) {
      const target = (m[1] ?? m[2] ?? m[3])!.split("#")[0]!;
      if (!target || /^[a-z]+:/.test(target)) continue;
      const resolved = join(dirname(join(REPO, doc)), target);
      if (!resolved.startsWith(REPO + "/") || !existsSync(resolved)) outside.push(`${doc}: ${target}`);
    }
  }
  assert.deepEqual(outside, [], "links to files a clean clone lacks");
});

test("every skipped test says what to install, through test/support/needs.ts", () => {
  const offenders: string[] = [];
  const walk = (dir: string): void => {
    for (const entry of readdirSync(dir, { withFileTypes: true })) {
      const path = join(dir, entry.name);
      if (entry.isDirectory()) walk(path);
      else if (entry.name.endsWith(".ts") && !path.endsWith(join("support", "needs.ts")) && !path.endsWith("package.test.ts")) {
        readFileSync(path, "utf8").split("\n").forEach((line, i) => {
          // A literal skip reason bypasses the one form ("SKIP: needs X (apt-get install -y P)").
          if (/\bskip\(\s*["'`]|\bskip:\s*["'`]|is not installed/.test(line)) offenders.push(`${path.slice(REPO.length + 1)}:${i + 1}: ${line.trim()}`);
        });
      }
    }
  };
  walk(join(REPO, "test"));
  assert.deepEqual(offenders, []);
});
