/** The `sluice` executable: help, ca, options, dump output, bad input, and 1 GiB streamed each way. */
import { test, describe, before, after } from "node:test";
import assert from "node:assert/strict";
import http from "node:http";
import net from "node:net";
import { existsSync, mkdtempSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { run } from "./support/run.js";
import { spawn } from "node:child_process";
import { SLUICE_BIN, spawnSluice, freePort, assertOneLineError } from "./support/cli.js";
import { startOrigin, originCaFile, type Origin } from "./support/origins.js";
import { needs } from "./support/needs.js";

const sluice = (args: string[]) => run(process.execPath, [SLUICE_BIN, ...args]);
const CURL = ["-sS", "--max-time", "120", "--noproxy", ""];

describe("sluice executable", () => {
  test("--help lists the commands; dump --help lists the proxy options", async () => {
    const main = await sluice(["--help"]);
    assert.equal(main.code, 0);
    for (const cmd of ["dump", "ca", "options"]) assert.match(main.stdout, new RegExp(`^  ${cmd} `, "m"));
    const dump = await sluice(["dump", "--help"]);
    assert.equal(dump.code, 0);
    for (const flag of ["--mode", "--listen-port", "--listen-host", "--ssl-insecure", "--ignore-hosts", "--allow-hosts", "--map-remote", "--set", "--flow-detail", "--quiet"]) {
      assert.ok(dump.stdout.includes(flag), flag);
    }
    // As in git, `--help COMMAND` is that command's help, not the main help with COMMAND ignored.
    const helpDump = await sluice(["--help", "dump"]);
    assert.equal(helpDump.code, 0, helpDump.stderr);
    assert.equal(helpDump.stdout, dump.stdout);
  });

  test("a reader that closes the pipe early (sluice help | head) ends sluice quietly, exit 0, no EPIPE stack", async () => {
    const child = spawn(process.execPath, [SLUICE_BIN, "help"], { stdio: ["ignore", "pipe", "pipe"] });
    // Closed before sluice has written anything: every write it makes meets a closed pipe.
    child.stdout.destroy();
    let stderr = "";
    child.stderr.on("data", (c: Buffer) => (stderr += c));
    const code = await new Promise<number | null>((r) => child.once("exit", r));
    assert.equal(stderr, "");
    assert.equal(code, 0);
  });

  test("unknown command, unknown flag and bad option values are one-line errors, no stack trace", async () => {
    const confdir = mkdtempSync(join(tmpdir(), "sluice-bad-"));
    for (const [args, pattern] of [
      [["frobnicate"], /unknown command "frobnicate"/],
      [["dump", "--no-such-flag"], /unknown option --no-such-flag/],
      [["dump", "--set", "listen_port=abc"], /listen_port expects a whole number/],
      [["dump", "--set", "nonexistent=1"], /unknown option nonexistent/],
      [["dump", "--mode", "sideways"], /unknown mode "sideways"/],
      [["dump", "--flow-detail", "9"], /flow_detail must be 0 to 4/],
      [["dump", "~c ("], /~c expects an integer at position 3/],
      [["dump", "~s & ~zz"], /unknown operator ~zz at position 5/],
    ] as const) {
      const r = await sluice(args[0] === "dump" ? [...args, "--confdir", confdir] : [...args]);
      assertOneLineError(r, pattern, args.join(" "));
    }
    assert.equal(existsSync(join(confdir, "sluice-ca.pem")), false, "bad configuration is caught before a CA is made");
  });

  test("sluice filters lists the filter operators, AWS ones included", async () => {
    const r = await sluice(["filters"]);
    assert.equal(r.code, 0);
    for (const op of ["~d regex", "~c int", "~svc regex", "~op regex", "~retry", "~throttled"]) assert.ok(r.stdout.includes(op), op);
  });

  test("a port in use is reported clearly", async () => {
    const blocker = net.createServer();
    await new Promise<void>((r) => blocker.listen(0, "127.0.0.1", r));
    const port = (blocker.address() as net.AddressInfo).port;
    const confdir = mkdtempSync(join(tmpdir(), "sluice-cli-"));
    const r = await sluice(["dump", "-p", String(port), "--confdir", confdir]);
    blocker.close();
    assert.equal(r.code, 1);
    assert.match(r.stderr, new RegExp(`cannot listen on 127\\.0\\.0\\.1:${port}: the port is in use`));
  });

  test("sluice ca creates the CA on first use and explains how to trust it", async () => {
    const confdir = mkdtempSync(join(tmpdir(), "sluice-ca-"));
    const r = await sluice(["ca", "--confdir", confdir]);
    assert.equal(r.code, 0, r.stderr);
    for (const word of ["--cacert", "AWS_CA_BUNDLE", "NODE_EXTRA_CA_CERTS", "REQUESTS_CA_BUNDLE", "sluice-ca-cert.pem", "sluice-ca-cert.p12"]) assert.ok(r.stdout.includes(word), word);
    assert.equal(statSync(join(confdir, "sluice-ca.pem")).mode & 0o777, 0o600);
    const again = await sluice(["ca", "--confdir", confdir]);
    assert.equal(again.stdout, r.stdout, "the CA is reused, not regenerated");
  });

  test("sluice options lists every option with type, default and help", async () => {
    const r = await sluice(["options"]);
    assert.equal(r.code, 0, r.stderr);
    for (const name of ["mode", "listen_host", "listen_port", "stream_large_bodies", "ssl_insecure", "map_remote", "flow_detail", "web_port", "web_password"]) {
      assert.match(r.stdout, new RegExp(`^${name}  \\(\\w[\\w-]*, default: `, "m"), name);
    }
    assert.match(r.stdout, /^listen_host  \(string, default: 127\.0\.0\.1\)/m);
  });
});

describe("sluice dump", { skip: needs("curl", "curl") }, () => {
  let origin: Origin;
  before(async () => {
    origin = await startOrigin();
  });
  after(() => origin.close());

  test("prints one line per flow: client, method, URL, status, type, size, duration; FILTER narrows", async () => {
    const confdir = mkdtempSync(join(tmpdir(), "sluice-dump-"));
    const proc = await spawnSluice(["dump", "-p", "0", "--confdir", confdir, "~u shown"]);
    try {
      for (const path of ["/shown/1", "/hidden/2", "/shown/3"]) {
        const r = await run("curl", [...CURL, "-x", `http://127.0.0.1:${proc.port}`, `${origin.url}${path}`]);
        assert.equal(r.code, 0, r.stderr);
      }
      await waitUntil(() => proc.stdout().split("\n").filter(Boolean).length >= 2);
      await new Promise((r) => setTimeout(r, 200));
      const lines = proc.stdout().trim().split("\n");
      assert.equal(lines.length, 2, proc.stdout());
      assert.match(lines[0]!, new RegExp(`^127\\.0\\.0\\.1:\\d+ GET ${origin.url}/shown/1 → 200 OK application/json \\d+(\\.\\d)?[bk] \\d+ms$`));
      assert.match(lines[1]!, /\/shown\/3 → 200 OK/);
    } finally {
      await proc.stop();
    }
  });

  test("--flow-detail 3 adds headers and bodies; -q prints nothing", async () => {
    const confdir = mkdtempSync(join(tmpdir(), "sluice-dump-"));
    const detailed = await spawnSluice(["dump", "-p", "0", "--confdir", confdir, "--flow-detail", "3"]);
    const quietPort = await freePort();
    const quiet = await spawnSluice(["dump", "-p", String(quietPort), "--confdir", confdir, "-q"], { port: quietPort });
    try {
      await run("curl", [...CURL, "-x", `http://127.0.0.1:${detailed.port}`, "-H", "X-Detail: yes", "-d", "hello-body", `${origin.url}/d`]);
      await run("curl", [...CURL, "-x", `http://127.0.0.1:${quiet.port}`, `${origin.url}/q`]);
      await waitUntil(() => detailed.stdout().includes("hello-body") && detailed.stdout().includes('"method":"POST"'));
      assert.match(detailed.stdout(), /^\s+X-Detail: yes$/m);
      assert.match(detailed.stdout(), /^\s+content-type: application\/json$/im);
      await new Promise((r) => setTimeout(r, 300));
      assert.equal(quiet.stdout(), "");
      assert.doesNotMatch(quiet.stderr(), /GET/);
    } finally {
      await Promise.all([detailed.stop(), quiet.stop()]);
    }
  });
});

describe("large bodies stream through with bounded memory", { skip: needs("curl", "curl") }, () => {
  const GiB = 1024 ** 3;
  test("1 GiB upload and 1 GiB download through sluice keep its RSS under 200 MB", { timeout: 300_000 }, async () => {
    let uploaded = 0;
    const server = http.createServer((req, res) => {
      if (req.method === "PUT") {
        req.on("data", (c: Buffer) => (uploaded += c.length));
        req.on("end", () => res.end(String(uploaded)));
        return;
      }
      res.writeHead(200, { "content-type": "application/octet-stream", "content-length": String(GiB) });
      const chunk = Buffer.alloc(1024 * 1024);
      let sent = 0;
      const pump = () => {
        while (sent < GiB) {
          sent += chunk.length;
          if (!res.write(chunk)) return void res.once("drain", pump);
        }
        res.end();
      };
      pump();
    });
    await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
    const port = (server.address() as net.AddressInfo).port;
    const confdir = mkdtempSync(join(tmpdir(), "sluice-big-"));
    const proc = await spawnSluice(["dump", "-p", "0", "--confdir", confdir, "--set", `ssl_verify_upstream_trusted_ca=${originCaFile()}`]);
    const file = join(mkdtempSync(join(tmpdir(), "sluice-big-file-")), "1g.bin");
    try {
      const made = await run("truncate", ["-s", String(GiB), file]);
      assert.equal(made.code, 0, made.stderr);
      const up = await run("curl", [...CURL, "-x", `http://127.0.0.1:${proc.port}`, "-T", file, `http://127.0.0.1:${port}/upload`], { timeoutMs: 150_000 });
      assert.equal(up.code, 0, up.stderr);
      assert.equal(up.stdout, String(GiB));
      const down = await run("curl", [...CURL, "-x", `http://127.0.0.1:${proc.port}`, "-o", "/dev/null", "-w", "%{size_download}", `http://127.0.0.1:${port}/download`], { timeoutMs: 150_000 });
      assert.equal(down.code, 0, down.stderr);
      assert.equal(Number(down.stdout), GiB);
      const peak = await proc.peakRss();
      assert.ok(peak < 200 * 1024 * 1024, `peak RSS ${(peak / 1024 / 1024).toFixed(0)} MB`);
      await waitUntil(() => proc.stdout().split("\n").filter(Boolean).length >= 2);
      assert.match(proc.stdout(), /PUT .*\/upload → 200 OK/);
      assert.match(proc.stdout(), /GET .*\/download → 200 OK application\/octet-stream 1\.00g/);
    } finally {
      await proc.stop();
      server.close();
      await run("rm", ["-f", file]);
    }
  });
});

async function waitUntil(cond: () => boolean, timeoutMs = 10_000): Promise<void> {
  const start = Date.now();
  while (!cond()) {
    if (Date.now() - start > timeoutMs) throw new Error("condition not met in time");
    await new Promise((r) => setTimeout(r, 25));
  }
}
