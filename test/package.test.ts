/** What `npm install sluice` gets: the program and its licence, no tests, benches or build info. */
import { test } from "node:test";
import assert from "node:assert/strict";
import { existsSync, readFileSync } from "node:fs";
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
