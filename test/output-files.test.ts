/**
 * One file, one writer: `-w` (save_stream_file) and `hardump` — or `save.file` onto either — given
 * one file under any spelling (`~`, relative, absolute, a symlinked folder, a hard link) are refused
 * in one line naming both, before either writes, instead of overwriting each other.
 */
import { test, describe, before, after } from "node:test";
import assert from "node:assert/strict";
import http from "node:http";
import { existsSync, linkSync, mkdirSync, mkdtempSync, readFileSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { run } from "./support/run.js";
import { SLUICE_BIN, assertOneLineError } from "./support/cli.js";
import { startSluice, type TestSluice } from "./support/sluice.js";
import { startOrigin, type Origin } from "./support/origins.js";
import { Save } from "../src/addons/save.js";
import { HarDump } from "../src/addons/har-dump.js";
import { Export } from "../src/addons/export.js";
import { readFlowFile } from "../src/store/index.js";

describe("two writers on one file are refused at start", () => {
  const home = mkdtempSync(join(tmpdir(), "sluice-one-writer-home-"));
  const dir = join(home, "work");
  const env = { ...process.env, HOME: home };
  before(async () => {
    mkdirSync(dir);
    symlinkSync(dir, join(home, "link"));
    writeFileSync(join(dir, "read.mitm"), "kept as it was\n");
    linkSync(join(dir, "read.mitm"), join(dir, "hard-link.mitm"));
    const ca = await run(process.execPath, [SLUICE_BIN, "ca"], { env });
    assert.equal(ca.code, 0, ca.stderr);
  });

  test("-w F --set hardump=F, under every spelling of F: one line naming both options, nothing written", async () => {
    const spellings: [string[], string][] = [
      [["-w", "cap.mitm", "--set", "hardump=cap.mitm"], "cap.mitm"],
      [["-w", "./cap.har", "--set", `hardump=${join(dir, "cap.har")}`], "cap.har"],
      [["--set", "save_stream_file=+cap.mitm", "--set", "hardump=~/work/cap.mitm"], "cap.mitm"],
      [["-w", "~/work/cap.sqlite", "--set", "hardump=cap.sqlite"], "cap.sqlite"],
      [["-w", join(home, "link", "cap.har"), "--set", "hardump=../work/cap.har"], "cap.har"],
    ];
    for (const [args, file] of spellings) {
      const r = await run(process.execPath, [SLUICE_BIN, "dump", "-p", "0", ...args], { env, cwd: dir, timeoutMs: 30_000 });
      assertOneLineError(r, /^sluice: save_stream_file \(-w\) and hardump name the same file .*: the HAR written on exit would overwrite the capture; give them different files/, args.join(" "), 2);
      assert.equal(existsSync(join(dir, file)), false, `${args.join(" ")}: nothing was created`);
    }
  });

  test("-r F --set hardump=F (or a hard link to F) would replace the capture read: refused, F untouched", async () => {
    for (const hardump of ["read.mitm", "hard-link.mitm", "~/work/read.mitm"]) {
      const r = await run(process.execPath, [SLUICE_BIN, "dump", "-n", "-r", "read.mitm", "--set", `hardump=${hardump}`], { env, cwd: dir, timeoutMs: 30_000 });
      assertOneLineError(r, /^sluice: -r and hardump name the same file read\.mitm: the HAR written on exit would replace the capture read; give hardump another file/, hardump, 2);
    }
    const r = await run(process.execPath, [SLUICE_BIN, "dump", "-n", "-r", "read.mitm", "-w", "~/link/hard-link.mitm"], { env, cwd: dir, timeoutMs: 30_000 });
    assertOneLineError(r, /^sluice: -r and -w name the same file read\.mitm/, "-w through a symlink and a hard link", 2);
    assert.equal(readFileSync(join(dir, "read.mitm"), "utf8"), "kept as it was\n");
  });

  test("hardump=- beside dump's flow lines on stdout is refused; with -q stdout is the HAR alone", async () => {
    const empty = join(dir, "for-har.mitm");
    writeFileSync(empty, "");
    for (const extra of [[], ["--cut", "request.url"]]) {
      const r = await run(process.execPath, [SLUICE_BIN, "dump", "-n", "-r", empty, "--set", "hardump=-", ...extra], { env, timeoutMs: 30_000 });
      assertOneLineError(r, /^sluice: --set hardump=- prints the HAR on stdout, where sluice dump prints its (flow lines|--cut rows) too, so stdout would not be valid HAR; (add -q|drop --cut) to print only the HAR/, extra.join(" "), 2);
      assert.equal(r.stdout, "");
    }
    const quiet = await run(process.execPath, [SLUICE_BIN, "dump", "-q", "-n", "-r", empty, "--set", "hardump=-"], { env, timeoutMs: 30_000 });
    assert.equal(quiet.code, 0, quiet.stderr);
    assert.deepEqual(JSON.parse(quiet.stdout).log.entries, []);
  });

  test("-w ~/F writes F in the home folder, as mitmproxy's save_stream_file does", async () => {
    const empty = join(dir, "empty.mitm");
    writeFileSync(empty, "");
    const ok = await run(process.execPath, [SLUICE_BIN, "dump", "-n", "-r", empty, "--set", "save_stream_file=~/home-capture.mitm"], { env, cwd: dir, timeoutMs: 30_000 });
    assert.equal(ok.code, 0, ok.stderr);
    assert.ok(existsSync(join(home, "home-capture.mitm")), ok.stderr);
    assert.equal(existsSync(join(dir, "~")), false, "no folder named ~");
  });
});

describe("at run time, a second writer onto the capture is refused and the capture goes on", () => {
  let origin: Origin;
  let sluice: TestSluice;
  const dir = mkdtempSync(join(tmpdir(), "sluice-one-writer-live-"));
  const capture = join(dir, "live.mitm");
  before(async () => {
    origin = await startOrigin();
    sluice = await startSluice({ set: { save_stream_file: capture }, addons: [new Save(), new HarDump(), new Export()] });
  });
  after(async () => {
    await sluice.close();
    await origin.close();
  });

  const get = (path: string) =>
    new Promise<number>((resolve, reject) => {
      http
        .get({ host: "127.0.0.1", port: sluice.port, path: `${origin.url}${path}` }, (res) => {
          res.resume();
          res.on("end", () => resolve(res.statusCode ?? 0));
        })
        .on("error", reject);
    });
  const savedPaths = async () => {
    const paths: string[] = [];
    for await (const f of readFlowFile(capture)) paths.push(f.request.path);
    return paths;
  };
  const waitForSaved = async (n: number) => {
    for (let i = 0; i < 200; i++) {
      const paths = await savedPaths();
      if (paths.length >= n) return paths;
      await new Promise((r) => setTimeout(r, 50));
    }
    throw new Error(`the capture never held ${n} flows: ${await savedPaths()}`);
  };

  test("set hardump=<the -w file> and save.file <the -w file> are refused; flows saved before and after are all there", async () => {
    assert.equal(await get("/before"), 200);
    assert.deepEqual(await waitForSaved(1), ["/before"]);
    await assert.rejects(async () => sluice.master.options.set("hardump", join(dir, ".", "live.mitm")), /save_stream_file \(-w\) and hardump name the same file/);
    assert.equal(sluice.master.options.get("hardump"), null, "rolled back");
    await assert.rejects(sluice.master.commands.execute(`save.file @all ${capture}`), /save\.file: .*live\.mitm is the file -w \(save_stream_file\) is writing flows to; write to another file/);
    await assert.rejects(sluice.master.commands.execute(`export.file raw @all ${join(dir, ".", "live.mitm")}`), /export\.file: .*live\.mitm is the file -w \(save_stream_file\) is writing flows to/);
    await assert.rejects(sluice.master.commands.execute(`cut.save @all request.url +${capture}`), /cut\.save: .*live\.mitm is the file -w \(save_stream_file\) is writing flows to/);
    assert.equal(await get("/after"), 200);
    assert.deepEqual(await waitForSaved(2), ["/before", "/after"], "the refusal neither emptied nor closed the capture");
  });
});
