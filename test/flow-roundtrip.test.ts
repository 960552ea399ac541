/**
 * Flow files a mitmproxy user round-trips: `sluice dump -n -r IN -w OUT FILTER` and
 * `sluice convert IN OUT FILTER` write what they read (what FILTER matches), FILTER filters what
 * a live `sluice dump -w` saves too, and the files sluice writes replay in mitmproxy: origin-form
 * requests (`authority` empty for HTTP/1, as mitmproxy records it) and the headers the server
 * sent (no Content-Length beside Transfer-Encoding: chunked).
 */
import { test, describe, before, after } from "node:test";
import assert from "node:assert/strict";
import { spawn, type ChildProcess } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { run } from "./support/run.js";
import { SLUICE_BIN, spawnSluice } from "./support/cli.js";
import { startSluice, testConfdir } from "./support/sluice.js";
import { MITMDUMP, mitmdumpMissing } from "./support/mitmdump.js";
import { Save } from "../src/addons/save.js";
import { readFlowFile } from "../src/store/index.js";
import type { HTTPFlow } from "../src/core/flow.js";
import { needs } from "./support/needs.js";

const sluice = (args: string[]) => run(process.execPath, [SLUICE_BIN, ...args], { timeoutMs: 60_000 });
const CURL = ["-sS", "--max-time", "20", "--noproxy", ""];

async function readAll(path: string): Promise<HTTPFlow[]> {
  const out: HTTPFlow[] = [];
  for await (const f of readFlowFile(path)) out.push(f);
  return out;
}

/** A Python origin on 127.0.0.1 (port 0): GET answers 200 with a chunked body; paths are echoed. */
const PYTHON_ORIGIN = `
import http.server, sys
class H(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_GET(self):
        if not self.path.startswith("/"):
            self.send_response(400); self.send_header("Content-Length", "0"); self.end_headers(); return
        body = ("path " + self.path + "\\n").encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        self.wfile.write(b"%x\\r\\n%s\\r\\n0\\r\\n\\r\\n" % (len(body), body))
    def log_message(self, *a): pass
s = http.server.HTTPServer(("127.0.0.1", 0), H)
print(s.server_address[1], flush=True)
s.serve_forever()
`;

async function startPythonOrigin(): Promise<{ port: number; close(): void; child: ChildProcess }> {
  const child = spawn("python3", ["-c", PYTHON_ORIGIN], { stdio: ["ignore", "pipe", "inherit"] });
  const port = await new Promise<number>((resolve, reject) => {
    child.stdout!.once("data", (c: Buffer) => resolve(Number(c.toString().trim())));
    child.once("exit", (code) => reject(new Error(`python origin exited with ${code}`)));
  });
  return { port, child, close: () => void child.kill() };
}

describe("flow files a mitmproxy user round-trips", { skip: needs("curl", "curl") ?? needs("python3", "python3") }, () => {
  const dir = mkdtempSync(join(tmpdir(), "sluice-roundtrip-"));
  const capture = join(dir, "capture.mitm");
  let origin: Awaited<ReturnType<typeof startPythonOrigin>>;

  before(async () => {
    origin = await startPythonOrigin();
    // Plain HTTP through sluice's regular mode: absolute-form requests, chunked answers.
    const proxy = await spawnSluice(["dump", "-p", "0", "--confdir", testConfdir(), "-w", capture]);
    try {
      for (const path of ["/keep/1", "/drop/2", "/keep/3"]) {
        const r = await run("curl", [...CURL, "-x", `http://127.0.0.1:${proxy.port}`, `http://127.0.0.1:${origin.port}${path}`]);
        assert.equal(r.stdout, `path ${path}\n`, r.stderr);
      }
    } finally {
      await proxy.stop();
    }
  });
  after(() => {
    origin?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  test("the capture keeps the headers the server sent: chunked, and no Content-Length beside it", async () => {
    const flows = await readAll(capture);
    assert.equal(flows.length, 3);
    for (const f of flows) {
      assert.equal(f.response!.headers.get("transfer-encoding"), "chunked");
      assert.equal(f.response!.headers.get("content-length"), undefined);
    }
  });

  test("save.file later on stores the same headers (sending to the client did not change the flow)", async () => {
    const live = await startSluice({ addons: [new Save()] });
    try {
      const r = await run("curl", [...CURL, "-x", live.url, `http://127.0.0.1:${origin.port}/later`]);
      assert.equal(r.stdout, "path /later\n");
      await live.waitForFlows(1);
      const file = join(dir, "later.mitm");
      await live.master.commands.execute(`save.file @all ${file}`);
      const [flow] = await readAll(file);
      assert.equal(flow!.response!.headers.get("transfer-encoding"), "chunked");
      assert.equal(flow!.response!.headers.get("content-length"), undefined, "no Content-Length beside Transfer-Encoding: chunked");
    } finally {
      await live.close();
    }
  });

  for (const ext of ["mitm", "har", "sqlite"]) {
    test(`sluice dump -n -r IN -w OUT.${ext} FILTER writes the flows read that FILTER matches`, async () => {
      const out = join(dir, `filtered-dump.${ext}`);
      const r = await sluice(["dump", "-n", "-r", capture, "-w", out, "~u /keep/"]);
      assert.equal(r.code, 0, r.stderr);
      assert.equal(r.stdout.trim().split("\n").length, 2, `printed the two matching flows: ${r.stdout}`);
      const flows = await readAll(out);
      assert.deepEqual(flows.map((f) => f.request.path), ["/keep/1", "/keep/3"]);
    });

    test(`sluice convert IN OUT.${ext} FILTER converts only what FILTER matches`, async () => {
      const out = join(dir, `filtered-convert.${ext}`);
      const r = await sluice(["convert", capture, out, "~u", "/drop/"]);
      assert.equal(r.code, 0, r.stderr);
      assert.match(r.stderr, /converted 1 flow matching ~u \/drop\//);
      assert.deepEqual((await readAll(out)).map((f) => f.request.path), ["/drop/2"]);
    });
  }

  test("reading an SQLite capture with -w and a filter writes what it read", async () => {
    const db = join(dir, "all.sqlite");
    assert.equal((await sluice(["convert", capture, db])).code, 0);
    const out = join(dir, "from-sqlite.mitm");
    const r = await sluice(["dump", "-n", "-r", db, "-w", out, "~u /keep/3"]);
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual((await readAll(out)).map((f) => f.request.path), ["/keep/3"]);
  });

  test("a live sluice dump -w FILE FILTER saves only what FILTER matches, as mitmdump does", async () => {
    const out = join(dir, "live-filtered.mitm");
    const proxy = await spawnSluice(["dump", "-p", "0", "--confdir", testConfdir(), "-w", out, "~u /keep/"]);
    try {
      for (const path of ["/keep/a", "/drop/b"]) await run("curl", [...CURL, "-x", `http://127.0.0.1:${proxy.port}`, `http://127.0.0.1:${origin.port}${path}`]);
    } finally {
      await proxy.stop();
    }
    assert.deepEqual((await readAll(out)).map((f) => f.request.path), ["/keep/a"]);
  });

  test("mitmdump -nr reads the filtered file sluice wrote", { skip: mitmdumpMissing() }, async () => {
    const out = join(dir, "for-mitmdump.mitm");
    assert.equal((await sluice(["dump", "-n", "-r", capture, "-w", out, "~u /keep/"])).code, 0);
    const r = await run(MITMDUMP, ["-n", "-r", out, "--set", `confdir=${dir}`]);
    assert.equal(r.code, 0, r.stderr);
    const lines = r.stdout.split("\n").filter((l) => /GET http/.test(l));
    assert.equal(lines.length, 2, r.stdout);
    assert.ok(lines[0]!.includes("/keep/1") && lines[1]!.includes("/keep/3"), r.stdout);
  });

  test("mitmdump -n -C replays sluice's capture of plain HTTP to the Python origin: origin-form, 200s", { skip: mitmdumpMissing() }, async () => {
    // Before sluice stored mitmproxy's empty authority for HTTP/1, mitmdump sent absolute-form and got 400s.
    const r = await run(MITMDUMP, ["-n", "-C", capture, "--set", `confdir=${dir}`, "--flow-detail", "1"], { timeoutMs: 60_000 });
    assert.equal(r.code, 0, r.stderr);
    const answers = [...r.stdout.matchAll(/<< (\d{3})/g)].map((m) => Number(m[1]));
    assert.deepEqual(answers, [200, 200, 200], r.stdout);
  });
});

describe("reading a capture shows progress on a terminal", () => {
  test("sluice dump -n -r in a terminal prints a live counter on stderr; not when stderr is a file", { skip: needs("script", "bsdutils") }, async () => {
    const dir = mkdtempSync(join(tmpdir(), "sluice-progress-"));
    try {
      const file = join(dir, "big.mitm");
      // 3,000 flows: enough for the counter (every 256 flows, at most every 200 ms) to show.
      const gen = `
import { FlowWriter } from ${JSON.stringify(join(SLUICE_BIN, "..", "..", "dist", "src", "store", "index.js"))};
import { HTTPFlow, Request, Response, newClientConnection, newServerConnection } from ${JSON.stringify(join(SLUICE_BIN, "..", "..", "dist", "src", "core", "flow.js"))};
const w = await FlowWriter.open(${JSON.stringify(file)});
for (let i = 0; i < 3000; i++) {
  const f = new HTTPFlow(newClientConnection(), newServerConnection(), new Request({ method: "GET", scheme: "http", host: "a", port: 80, path: "/" + i, content: Buffer.alloc(2000) }));
  f.response = Response.make(200, Buffer.alloc(2000));
  w.write(f);
}
await w.close();
`;
      writeFileSync(join(dir, "gen.mjs"), gen);
      assert.equal((await run(process.execPath, [join(dir, "gen.mjs")])).code, 0);
      // util-linux \`script\` gives sluice a pseudo-terminal.
      const cmd = `${process.execPath} ${SLUICE_BIN} dump -n -q -r ${file}`;
      const tty = await run("script", ["-qec", cmd, "/dev/null"], { timeoutMs: 60_000 });
      assert.equal(tty.code, 0, tty.stdout);
      assert.match(tty.stdout, /\rreading .*big\.mitm: \d+ flows \(\d+%\)/);
      const plain = await sluice(["dump", "-n", "-q", "-r", file]);
      assert.doesNotMatch(plain.stderr, /reading .*flows/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
