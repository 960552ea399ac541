/** What `npm install sluice` gets: the program and its licence, no tests, benches or build info. */
import { test } from "node:test";
import assert from "node:assert/strict";
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { builtinModules } from "node:module";
import { spawn } from "node:child_process";
import net from "node:net";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { fetch, ProxyAgent } from "undici";
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
 * A real `npm install -g` of the packed tarball into a temporary prefix, then the installed
 * `sluice` run from a third folder with a script that imports a value from "sluice" and answers a
 * request through the proxy. So `files`, `bin`, `exports` and `dependencies` are what a user gets.
 * Dependencies come from npm's cache where it has them (warm after `npm ci`), else the registry.
 * better-sqlite3's install step would compile SQLite from source (about 3 minutes on 2 busy cores)
 * because its prebuilt binaries are downloaded from GitHub; instead prebuild-install is given
 * the binary this checkout already has, through its documented local-prebuilds setting, and loads
 * it to check it before using it (about 15 s in all).
 */
test("npm install -g of the packed tarball: sluice --version, and a script importing Response from \"sluice\" answers through the proxy", { timeout: 300_000 }, async () => {
  const tmp = mkdtempSync(join(tmpdir(), "sluice-global-"));
  try {
    const packed = await run("npm", ["pack", "--json", "--ignore-scripts", "--pack-destination", tmp], { cwd: REPO, timeoutMs: 120_000 });
    assert.equal(packed.code, 0, packed.stderr);
    const tarball = join(tmp, (JSON.parse(packed.stdout) as { filename: string }[])[0]!.filename);

    // better-sqlite3's binary as a prebuild: the name prebuild-install looks for, the layout it unpacks.
    const sqlite = join(REPO, "node_modules", "better-sqlite3");
    const sqliteVersion = (JSON.parse(readFileSync(join(sqlite, "package.json"), "utf8")) as { version: string }).version;
    const prebuilds = join(tmp, "prebuilds");
    mkdirSync(prebuilds);
    const prebuild = join(prebuilds, `better-sqlite3-v${sqliteVersion}-node-v${process.versions.modules}-${process.platform}-${process.arch}.tar.gz`);
    const packedBinary = await run("tar", ["-czf", prebuild, "-C", sqlite, "build/Release/better_sqlite3.node"]);
    assert.equal(packedBinary.code, 0, packedBinary.stderr);

    const prefix = join(tmp, "prefix");
    const install = await run("npm", ["install", "-g", "--prefix", prefix, tarball, "--prefer-offline", "--no-audit", "--no-fund", "--foreground-scripts"], {
      cwd: tmp,
      env: { ...process.env, npm_config_better_sqlite3_local_prebuilds: prebuilds },
      timeoutMs: 280_000,
    });
    assert.equal(install.code, 0, `npm install -g failed:\n${install.stdout}\n${install.stderr}`);
    assert.match(install.stdout + install.stderr, /prebuild-install/, "better-sqlite3's install step ran");
    assert.doesNotMatch(install.stdout + install.stderr, /gyp info|CC\(target\)/, "it used the prebuild instead of compiling SQLite");
    const bin = join(prefix, "bin", "sluice");
    const pkg = JSON.parse(readFileSync(join(prefix, "lib", "node_modules", "sluice", "package.json"), "utf8")) as { version: string };

    // From a folder that has nothing of sluice: no node_modules above it, not the checkout.
    const elsewhere = join(tmp, "elsewhere");
    mkdirSync(elsewhere);
    const version = await run(bin, ["--version"], { cwd: elsewhere });
    assert.equal(version.code, 0, version.stderr);
    assert.equal(version.stdout, `sluice ${pkg.version}\n`);

    // A program beside the global node_modules imports the package by name (package.json's
    // `exports`), and the type declarations `exports` names are installed.
    const pkgDir = join(prefix, "lib", "node_modules", "sluice");
    const types = (JSON.parse(readFileSync(join(pkgDir, "package.json"), "utf8")) as { exports: { ".": { types: string } } }).exports["."].types;
    assert.ok(existsSync(join(pkgDir, types)), `the declarations ${types} are installed`);
    const program = join(prefix, "lib", "uses-sluice.mjs");
    writeFileSync(program, `import { Response, HTTPFlow, Master } from "sluice";\nconst r = Response.make(201, "made");\nconsole.log(r.statusCode, typeof HTTPFlow, typeof Master);\n`);
    const imported = await run(process.execPath, [program], { cwd: elsewhere });
    assert.equal(imported.code, 0, imported.stderr);
    assert.equal(imported.stdout, "201 function function\n");

    const script = join(elsewhere, "answer.ts");
    writeFileSync(script, `import { Response, type HTTPFlow } from "sluice";\nexport default {\n  request(flow: HTTPFlow): void {\n    if (flow.request.path === "/from-global") flow.response = Response.make(200, "answered by the script", { "content-type": "text/plain" });\n  },\n};\n`);
    const child = spawn(bin, ["dump", "-p", "0", "--confdir", join(tmp, "conf"), "-s", script], { cwd: elsewhere, stdio: ["ignore", "pipe", "pipe"] });
    let err = "";
    let out = "";
    child.stderr!.on("data", (c: Buffer) => (err += c.toString()));
    child.stdout!.on("data", (c: Buffer) => (out += c.toString()));
    const exited = new Promise<void>((r) => child.once("exit", () => r()));
    try {
      let port = 0;
      for (let i = 0; i < 600 && !port && child.exitCode === null; i++) {
        port = Number(/listening at [^\s]+:(\d+)/.exec(err)?.[1] ?? 0);
        if (!port) await new Promise((r) => setTimeout(r, 50));
      }
      assert.ok(port, `the installed sluice did not start: ${err}`);
      // Nothing listens on the port: only the script can have answered.
      const closed = net.createServer();
      await new Promise<void>((r) => closed.listen(0, "127.0.0.1", r));
      const url = `http://127.0.0.1:${(closed.address() as net.AddressInfo).port}/from-global`;
      await new Promise<void>((r) => closed.close(() => r()));
      // Absolute-form, as curl -x sends plain HTTP (undici would tunnel it through CONNECT).
      const agent = new ProxyAgent({ uri: `http://127.0.0.1:${port}`, proxyTunnel: false });
      try {
        const r = await fetch(url, { dispatcher: agent });
        assert.equal(r.status, 200);
        assert.equal(await r.text(), "answered by the script", err);
      } finally {
        await agent.close();
      }
      for (let i = 0; i < 100 && !out.includes("/from-global"); i++) await new Promise((res) => setTimeout(res, 50));
      assert.match(out, /GET http:\/\/127\.0\.0\.1:\d+\/from-global → 200/);
    } finally {
      child.kill("SIGINT");
      await exited;
    }
  } finally {
    rmSync(tmp, { recursive: true, force: true });
  }
});

/** What the shipped code imports must be installed for a user: a runtime dependency, not a dev one. */
test("every package dist/src imports is a runtime dependency", () => {
  const pkg = JSON.parse(readFileSync(join(REPO, "package.json"), "utf8")) as { dependencies: Record<string, string> };
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
  walk(join(REPO, "dist", "src"));
  const undeclared = [...imported].filter((name) => name !== "sluice" && !(name in pkg.dependencies));
  assert.deepEqual(undeclared, [], "imported by dist/src but not in dependencies");
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
