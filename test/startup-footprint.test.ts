/**
 * What `sluice dump` loads at start (issue 20: idle RSS ≤ 70 MB). Packages that only some runs
 * need — ioredis (a fleet), ws (WebSocket traffic), node-forge (writing a .p12), better-sqlite3
 * (SQLite captures), yaml (a config or rules file), tinyglobby (report globs) — cost 5–20 MB each
 * once loaded, so a plain `sluice dump` must not load them. Of undici and prom-client it loads only
 * the files it uses (the upstream Client; the registry and metric classes), not their indexes,
 * which pull in fetch, WebSocket, caches and mocks, and the default process metrics with
 * @opentelemetry/api (~14 MB between them). The ASN.1 library (@peculiar/asn1-x509, asn1js;
 * ~9 MB) only creates a new CA: leaves are written in DER by hand and the CA is read natively.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { pathToFileURL } from "node:url";
import { join } from "node:path";
import { spawn } from "node:child_process";
import { mkdtempSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { CertificateAuthority } from "../src/proxy/tls/ca.js";
import { SLUICE_BIN } from "./support/cli.js";
import { run } from "./support/run.js";

const LAZY = ["ioredis", "ws", "node-forge", "better-sqlite3", "yaml", "tinyglobby", "@opentelemetry/api", "@peculiar/asn1-x509", "@peculiar/asn1-schema", "asn1js"];
/** Package indexes a plain `sluice dump` must not load: it imports the files it needs from them. */
const NOT_WHOLE = ["undici", "prom-client"];

test("sluice dump listens without loading ioredis, ws, node-forge, better-sqlite3, yaml, tinyglobby, the ASN.1 library, or undici's and prom-client's indexes", async () => {
  const confdir = mkdtempSync(join(tmpdir(), "sluice-footprint-"));
  CertificateAuthority.loadOrCreate(confdir); // a CA and its files exist, as on every start but the first
  const mainUrl = pathToFileURL(join(SLUICE_BIN, "..", "..", "dist", "src", "cli", "main.js")).href;
  // Started in a fresh process; once it says it is listening, it prints the packages loaded.
  const script = `
    import { createRequire } from "node:module";
    const { main } = await import(${JSON.stringify(mainUrl)});
    const write = process.stderr.write.bind(process.stderr);
    let reported = false;
    process.stderr.write = (chunk, ...rest) => {
      if (!reported && String(chunk).includes("listening at")) {
        reported = true;
        setImmediate(() => {
          process.stdout.write(JSON.stringify(Object.keys(createRequire(import.meta.url).cache)));
          process.exit(0);
        });
      }
      return write(chunk, ...rest);
    };
    void main(["dump", "--confdir", ${JSON.stringify(confdir)}, "-p", "0", "--listen-host", "127.0.0.1"]);
  `;
  const r = await run(process.execPath, ["--input-type=module", "-e", script], { timeoutMs: 60_000 });
  assert.equal(r.code, 0, r.stderr);
  const loaded = JSON.parse(r.stdout) as string[];
  assert.ok(loaded.some((p) => p.includes("/node_modules/undici/")), "the check sees packages dump does need");
  const eager = LAZY.filter((name) => loaded.some((p) => p.includes(`/node_modules/${name}/`)));
  assert.deepEqual(eager, [], `loaded at start: ${eager.join(", ")}`);
  assert.ok(loaded.some((p) => p.includes("/node_modules/prom-client/lib/registry.js")), "the check sees the prom-client files dump uses");
  const whole = NOT_WHOLE.filter((name) => loaded.some((p) => p.endsWith(`/node_modules/${name}/index.js`)));
  assert.deepEqual(whole, [], `whole package loaded at start: ${whole.join(", ")}`);
});

test("the sluice executable starts Node with V8's young generation capped, and npm start passes the same flags", { skip: process.platform !== "linux" && "reads /proc" }, async () => {
  const shebang = readFileSync(SLUICE_BIN, "utf8").split("\n")[0]!;
  const flags = /^#!\/usr\/bin\/env -S node((?: --[\w-]+=\S+)+)$/.exec(shebang)?.[1]?.trim().split(" ");
  assert.ok(flags?.some((f) => /^--max-semi-space-size=\d+$/.test(f)), `the executable's first line sets --max-semi-space-size: ${shebang}`);
  const pkg = JSON.parse(readFileSync(join(SLUICE_BIN, "..", "..", "package.json"), "utf8")) as { scripts: { start: string } };
  assert.equal(pkg.scripts.start, `node ${flags!.join(" ")} bin/sluice.js dump`);

  // Run as a user's shell runs it (the kernel reads the first line; env -S splits the flags).
  const confdir = mkdtempSync(join(tmpdir(), "sluice-shebang-"));
  const child = spawn(SLUICE_BIN, ["dump", "--confdir", confdir, "-p", "0", "--listen-host", "127.0.0.1"], { stdio: ["ignore", "ignore", "pipe"] });
  try {
    let err = "";
    await new Promise<void>((resolve, reject) => {
      child.stderr!.on("data", (c: Buffer) => {
        err += c.toString();
        if (err.includes("listening at")) resolve();
      });
      child.once("exit", (code) => reject(new Error(`sluice exited with ${code}: ${err}`)));
    });
    const argv = readFileSync(`/proc/${child.pid}/cmdline`, "utf8").split("\0");
    for (const f of flags!) assert.ok(argv.includes(f), `node runs with ${f}: ${argv.join(" ")}`);
  } finally {
    child.kill();
  }
});

test("intercepting TLS (leaves for DNS names, IPv4 and IPv6 addresses, and their handshake contexts) loads no ASN.1 library", async () => {
  const confdir = mkdtempSync(join(tmpdir(), "sluice-footprint-"));
  CertificateAuthority.loadOrCreate(confdir); // created here: creating a CA is what the library is for
  const caUrl = pathToFileURL(join(SLUICE_BIN, "..", "..", "dist", "src", "proxy", "tls", "ca.js")).href;
  const script = `
    import { createRequire } from "node:module";
    const { CertificateAuthority } = await import(${JSON.stringify(caUrl)});
    const ca = CertificateAuthority.loadOrCreate(${JSON.stringify(confdir)});
    for (const host of ["a.example.test", "192.0.2.7", "2001:db8::1"]) {
      for (const keyType of ["ecdsa", "rsa"]) ca.handshakeContext(await ca.certificateFor(host, keyType));
    }
    process.stdout.write(JSON.stringify(Object.keys(createRequire(import.meta.url).cache)));
  `;
  const r = await run(process.execPath, ["--input-type=module", "-e", script], { timeoutMs: 60_000 });
  assert.equal(r.code, 0, r.stderr);
  const loaded = (JSON.parse(r.stdout) as string[]).filter((p) => /\/node_modules\/(@peculiar|asn1js)\//.test(p));
  assert.deepEqual(loaded, []);
});
