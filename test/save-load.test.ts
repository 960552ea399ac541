/** `-w`, `-w +FILE`, `save_stream_filter`, `-n -r FILE [FILTER]` and `sluice convert`, as a user runs them. */
import { test, describe, before, after } from "node:test";
import assert from "node:assert/strict";
import { existsSync, mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { run } from "./support/run.js";
import { SLUICE_BIN, spawnSluice } from "./support/cli.js";
import { startOrigin, type Origin } from "./support/origins.js";
import { needs } from "./support/needs.js";
import { mitmdumpMissing } from "./support/mitmdump.js";

const CURL = ["-sS", "--max-time", "20", "--noproxy", ""];
const sluice = (args: string[]) => run(process.execPath, [SLUICE_BIN, ...args]);

describe("saving and loading flows", () => {
  let origin: Origin;
  let dir: string;
  let confdir: string;
  before(async () => {
    origin = await startOrigin();
    dir = mkdtempSync(join(tmpdir(), "sluice-save-"));
    confdir = mkdtempSync(join(tmpdir(), "sluice-save-conf-"));
  });
  after(() => origin.close());

  async function capture(args: string[], paths: string[]): Promise<void> {
    const proc = await spawnSluice(["dump", "-p", "0", "--confdir", confdir, ...args]);
    try {
      for (const p of paths) {
        const r = await run("curl", [...CURL, "-x", `http://127.0.0.1:${proc.port}`, "-d", `body-of-${p}`, `${origin.url}${p}`]);
        assert.equal(r.code, 0, r.stderr);
      }
    } finally {
      assert.equal(await proc.stop(), 0, "sluice exits cleanly on SIGINT");
    }
  }

  test("-w writes every flow; -n -r reads them back and prints them; FILTER narrows", { skip: needs("curl", "curl") }, async () => {
    const file = join(dir, "capture.mitm");
    await capture(["-w", file], ["/one", "/two", "/three"]);
    const all = await sluice(["dump", "-n", "-r", file, "--confdir", confdir]);
    assert.equal(all.code, 0, all.stderr);
    const lines = all.stdout.trim().split("\n");
    assert.equal(lines.length, 3, all.stdout);
    assert.match(lines[0]!, new RegExp(`POST ${origin.url}/one → 200 OK application/json`));
    assert.match(all.stderr, /loaded 3 flows/);
    const some = await sluice(["dump", "-n", "-r", file, "--confdir", confdir, "~u /two"]);
    assert.deepEqual(some.stdout.trim().split("\n").length, 1);
    assert.match(some.stdout, /\/two → 200/);
    const detail = await sluice(["dump", "-n", "-r", file, "--confdir", confdir, "--flow-detail", "3", "~u /three"]);
    assert.match(detail.stdout, /body-of-\/three/, "request bodies were saved");
  });

  test("the file sluice writes opens in mitmproxy (mitmdump -nr)", { skip: needs("curl", "curl") ?? mitmdumpMissing() }, async () => {
    const file = join(dir, "for-mitmproxy.mitm");
    await capture(["-w", file], ["/for-mitm"]);
    const r = await run("mitmdump", ["-nr", file, "--set", `confdir=${confdir}`]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /POST http:\/\/127\.0\.0\.1:\d+\/for-mitm/);
    assert.match(r.stdout, /<< 200 OK/);
  });

  test("-w +FILE appends; save_stream_filter limits what is saved", { skip: needs("curl", "curl") }, async () => {
    const file = join(dir, "appended.mitm");
    await capture(["-w", file], ["/first"]);
    await capture(["-w", `+${file}`, "--set", "save_stream_filter=~u /keep"], ["/keep", "/drop"]);
    const r = await sluice(["dump", "-n", "-r", file, "--confdir", confdir]);
    assert.deepEqual(r.stdout.trim().split("\n").map((l) => /\/(first|keep|drop)/.exec(l)?.[1]), ["first", "keep"]);
  });

  test("sluice convert: flow file → HAR → flow file keeps the flows", { skip: needs("curl", "curl") }, async () => {
    const file = join(dir, "conv.mitm");
    await capture(["-w", file], ["/har-a", "/har-b"]);
    const har = join(dir, "conv.har");
    const r = await sluice(["convert", file, har]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stderr, /converted 2 flows/);
    const doc = JSON.parse(readFileSync(har, "utf8"));
    assert.equal(doc.log.version, "1.2");
    assert.deepEqual(doc.log.entries.map((e: { request: { url: string } }) => new URL(e.request.url).pathname), ["/har-a", "/har-b"]);
    const back = join(dir, "back.flows");
    assert.equal((await sluice(["convert", har, back])).code, 0);
    const again = await sluice(["dump", "-n", "-r", back, "--confdir", confdir]);
    assert.match(again.stdout, /POST .*\/har-a → 200/);
    assert.match(again.stdout, /POST .*\/har-b → 200/);
    const direct = await sluice(["dump", "-n", "-r", har, "--confdir", confdir]);
    assert.equal(direct.stdout.trim().split("\n").length, 2, "-r reads HAR directly");
  });

  test("bad files: a clear one-line error naming the file, no stack trace, nothing written", async () => {
    const junk = join(dir, "junk.mitm");
    writeFileSync(junk, "this is not a flow file at all");
    const r = await sluice(["dump", "-n", "-r", junk, "--confdir", confdir]);
    assert.equal(r.code, 1);
    assert.match(r.stderr, new RegExp(junk.replace(/[.*+?^${}()|[\]\\/]/g, "\\$&")));
    assert.match(r.stderr, /byte|offset/);
    assert.doesNotMatch(r.stderr, /\n\s+at /);
    const out = join(dir, "never.har");
    const c = await sluice(["convert", junk, out]);
    assert.notEqual(c.code, 0);
    assert.equal(existsSync(out), false, "no half-written output");
    const missing = await sluice(["dump", "-n", "-r", join(dir, "missing.mitm"), "--confdir", confdir]);
    assert.equal(missing.code, 1);
    assert.match(missing.stderr, /missing\.mitm/);
  });

  test("-n without -r is a usage error", async () => {
    const r = await sluice(["dump", "-n"]);
    assert.equal(r.code, 2);
    assert.match(r.stderr, /-n \(no server\) needs -r FILE/);
  });
});
