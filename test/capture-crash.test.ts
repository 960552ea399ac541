/**
 * Captures that survive a crash: `kill -9` during a `-w` capture under load loses at most the last
 * `save_flush_interval` of flows for .mitm, .har and .sqlite alike, and the files read back (with
 * mitmdump too for .mitm); a graceful stop logs no writer errors; damaged and truncated files
 * recover every good flow with a warning.
 */
import { test, describe, before, after } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, readFileSync, statSync, truncateSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import http from "node:http";
import Database from "better-sqlite3";
import { ProxyAgent, request } from "undici";
import { Headers } from "../src/core/headers.js";
import { HTTPFlow, Request, Response, newClientConnection, newServerConnection } from "../src/core/flow.js";
import { FlowWriter, HarWriter, readFlowFile, SqliteWriter } from "../src/store/index.js";
import { freePort, spawnSluice } from "./support/cli.js";
import { run } from "./support/run.js";

import { MITMDUMP, mitmdumpMissing } from "./support/mitmdump.js";
const dir = mkdtempSync(join(tmpdir(), "sluice-crash-"));
const confdir = mkdtempSync(join(tmpdir(), "sluice-crash-conf-"));

async function readBack(path: string): Promise<{ urls: Set<string>; warnings: string[] }> {
  const urls = new Set<string>();
  const warnings: string[] = [];
  for await (const flow of readFlowFile(path, { onWarning: (m) => warnings.push(m) })) urls.add(flow.request.path);
  return { urls, warnings };
}

describe("kill -9 during a -w capture under load", () => {
  let origin: http.Server;
  let originPort: number;
  before(async () => {
    origin = http.createServer({ keepAliveTimeout: 60_000 }, (req, res) => {
      req.resume();
      res.writeHead(200, { "content-type": "text/plain" });
      res.end("x".repeat(512));
    });
    await new Promise<void>((r) => origin.listen(0, "127.0.0.1", r));
    originPort = (origin.address() as { port: number }).port;
  });
  after(() => new Promise<void>((r) => origin.close(() => r())));

  for (const ext of ["mitm", "har", "sqlite"]) {
    test(`.${ext}: every response delivered more than save_flush_interval before the kill is on disk`, async (t) => {
      const file = join(dir, `load.${ext}`);
      const port = await freePort();
      const sluice = await spawnSluice(["dump", "-q", "-p", String(port), "--confdir", confdir, "-w", file, "--set", "save_flush_interval=1s"], { port });
      const agent = new ProxyAgent({ uri: `http://127.0.0.1:${sluice.port}`, connections: 10 });
      const delivered: [string, number][] = [];
      let stop = false;
      const worker = async (w: number) => {
        for (let i = 0; !stop; i++) {
          const path = `/w${w}/r${i}`;
          try {
            const res = await request(`http://127.0.0.1:${originPort}${path}`, { dispatcher: agent });
            await res.body.text();
            delivered.push([path, Date.now()]);
          } catch {
            return;
          }
        }
      };
      const workers = Array.from({ length: 10 }, (_, w) => worker(w));
      // Load for 2.5 s, longer on a busy machine until a few hundred responses were delivered.
      const startedAt = Date.now();
      while (Date.now() - startedAt < 2500 || (delivered.length < 300 && Date.now() - startedAt < 20_000)) await new Promise((r) => setTimeout(r, 100));
      const killedAt = Date.now();
      sluice.child.kill("SIGKILL");
      stop = true;
      await Promise.all(workers);
      await agent.close().catch(() => undefined);
      await new Promise((r) => (sluice.child.exitCode !== null || sluice.child.signalCode ? r(null) : sluice.child.once("exit", r)));

      assert.ok(delivered.length > 50, `load ran (${delivered.length} responses)`);
      const { urls } = await readBack(file);
      const missingOld = delivered.filter(([path, at]) => at < killedAt - 1000 && !urls.has(path));
      assert.deepEqual(missingOld.map(([p]) => p), [], `responses delivered over 1 s before kill -9 are all in ${file} (${urls.size} on disk, ${delivered.length} delivered)`);
      // A subtest, so a machine without mitmdump reports it skipped (and CI, which must skip nothing, fails).
      if (ext === "mitm") {
        await t.test("mitmdump -nr reads every flow sluice reads after the kill", { skip: mitmdumpMissing() }, async () => {
          const r = await run(MITMDUMP, ["-n", "-r", file], { timeoutMs: 120_000 });
          assert.equal(r.code, 0, r.stderr);
          assert.equal(r.stdout.split("\n").filter((l) => l.includes(`: GET http://127.0.0.1:${originPort}/w`)).length, urls.size);
        });
      }
    });
  }

  test("a graceful stop (SIGINT) under load logs no writer errors and leaves a complete HAR", async () => {
    const file = join(dir, "graceful.har");
    const sluice = await spawnSluice(["dump", "-p", "0", "--confdir", confdir, "-w", file, "--set", "flow_detail=0"]);
    const agent = new ProxyAgent({ uri: `http://127.0.0.1:${sluice.port}`, connections: 10 });
    let stop = false;
    let ok = 0;
    const worker = async (w: number) => {
      for (let i = 0; !stop; i++) {
        try {
          const res = await request(`http://127.0.0.1:${originPort}/g${w}/${i}`, { dispatcher: agent });
          await res.body.text();
          ok++;
        } catch {
          return;
        }
      }
    };
    const workers = Array.from({ length: 10 }, (_, w) => worker(w));
    await new Promise((r) => setTimeout(r, 1000));
    const code = await sluice.stop();
    stop = true;
    await Promise.all(workers);
    await agent.close().catch(() => undefined);
    assert.equal(code, 0, sluice.stderr());
    assert.doesNotMatch(sluice.stderr(), /closed|cannot save|not saved|error/i, "no writer errors on a graceful stop");
    const har = JSON.parse(readFileSync(file, "utf8")) as { log: { entries: unknown[] } };
    assert.ok(har.log.entries.length >= ok, `every delivered response is in the HAR (${har.log.entries.length} entries, ${ok} delivered)`);
  });
});

function sampleFlow(i: number): HTTPFlow {
  const c = newClientConnection("regular");
  c.peername = ["127.0.0.1", 40000 + i];
  const s = newServerConnection();
  s.address = ["origin.test", 80];
  const t = 1_760_000_000 + i;
  const req = new Request({ method: "GET", scheme: "http", host: "origin.test", port: 80, path: `/item/${i}`, authority: "", headers: new Headers(["Host", "origin.test"]), content: Buffer.alloc(0) });
  req.timestampStart = t;
  req.timestampEnd = t + 0.001;
  const flow = new HTTPFlow(c, s, req);
  flow.response = new Response({ statusCode: 200, reason: "OK", headers: new Headers(["Content-Type", "text/plain"]), content: Buffer.from(`body ${i} `.repeat(20)) });
  flow.response.timestampStart = t + 0.01;
  flow.response.timestampEnd = t + 0.02;
  return flow;
}

describe("damaged and truncated captures", () => {
  test("a mitmproxy flow file with one damaged record reports it and reads every other flow", async () => {
    const file = join(dir, "damaged.mitm");
    const w = await FlowWriter.open(file);
    const offsets: number[] = [];
    for (let i = 0; i < 10; i++) {
      await w.flush();
      offsets.push(statSync(file).size);
      w.write(sampleFlow(i));
    }
    await w.close();
    const bytes = readFileSync(file);
    // Flip bytes in the middle of the fifth record's payload.
    const at = offsets[4]! + Math.floor((offsets[5]! - offsets[4]!) / 2);
    bytes.fill(0x7e, at, at + 8);
    writeFileSync(file, bytes);
    const { urls, warnings } = await readBack(file);
    assert.deepEqual([...urls], [0, 1, 2, 3, 5, 6, 7, 8, 9].map((i) => `/item/${i}`));
    assert.equal(warnings.length, 1, warnings.join("\n"));
    assert.match(warnings[0]!, new RegExp(`damaged flow record at byte ${offsets[4]}.*next good record at byte ${offsets[5]}`));
  });

  test("a damaged length prefix mid-file is skipped too, and a cut-off tail is still just truncated", async () => {
    const file = join(dir, "damaged-length.mitm");
    const w = await FlowWriter.open(file);
    const offsets: number[] = [];
    for (let i = 0; i < 5; i++) {
      await w.flush();
      offsets.push(statSync(file).size);
      w.write(sampleFlow(i));
    }
    await w.close();
    const bytes = readFileSync(file);
    bytes.write("9", offsets[2]!, "latin1"); // a much longer length than the record has
    writeFileSync(file, bytes);
    truncateSync(file, bytes.length - 10);
    const { urls, warnings } = await readBack(file);
    assert.deepEqual([...urls], ["/item/0", "/item/1", "/item/3"]);
    assert.equal(warnings.length, 2, warnings.join("\n"));
    assert.match(warnings[0]!, new RegExp(`damaged flow record at byte ${offsets[2]}`));
    assert.match(warnings[1]!, new RegExp(`truncated record at byte ${offsets[4]}`));
  });

  test("a HAR capture cut short by a crash recovers every complete entry with a warning", async () => {
    const file = join(dir, "cut.har");
    const w = await HarWriter.open(file);
    for (let i = 0; i < 6; i++) w.write(sampleFlow(i));
    await w.flush();
    // No close(): the state a kill -9 leaves, then cut inside the last entry as well.
    const size = statSync(file).size;
    truncateSync(file, size - 40);
    const { urls, warnings } = await readBack(file);
    assert.deepEqual([...urls], [0, 1, 2, 3, 4].map((i) => `/item/${i}`));
    assert.equal(warnings.length, 1);
    assert.match(warnings[0]!, /cut short .* 5 complete entries/);
    await w.close().catch(() => undefined);
  });

  test("an SQLite capture with one bad row reports file and row and reads the rest", async () => {
    const file = join(dir, "bad-row.sqlite");
    const w = await SqliteWriter.open(file);
    for (let i = 0; i < 6; i++) w.write(sampleFlow(i));
    await w.close();
    const db = new Database(file);
    db.prepare("UPDATE flows SET state = ? WHERE seq = 3").run(Buffer.from("12:not a flow!"));
    db.close();
    const { urls, warnings } = await readBack(file);
    assert.deepEqual([...urls], [0, 1, 3, 4, 5].map((i) => `/item/${i}`));
    assert.equal(warnings.length, 1);
    assert.match(warnings[0]!, new RegExp(`${file.replace(/[.]/g, "\\.")}: row 3 .*skipped`));
  });
});
