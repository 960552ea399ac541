/**
 * The interactive console, driven as a user drives it: the real `sluice` in a real terminal
 * (tmux on a private socket), keys sent with send-keys, the screen read with capture-pane, real
 * curl clients through the proxy to real origins on 127.0.0.1.
 */
import { test, describe, before, after } from "node:test";
import assert from "node:assert/strict";
import { chmodSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { spawn } from "node:child_process";
import { run } from "./support/run.js";
import { SLUICE_BIN, freePort } from "./support/cli.js";
import { startOrigin, originCaFile, type Origin } from "./support/origins.js";
import { gzipSync } from "node:zlib";
import { HTTPFlow, Request, Response, newClientConnection, newServerConnection } from "../src/core/flow.js";
import { Headers } from "../src/core/headers.js";
import { compileFilter } from "../src/core/filter.js";
import { kindOf, throttleCodeOf } from "../src/ui/console/flow-row.js";
import { retrySummary } from "../src/ui/console/retries.js";
import { formatBody, MAX_FORMATTED_BYTES } from "../src/ui/console/body.js";
import { applyMessageText, messageAsText } from "../src/ui/console/editor.js";
import { needs } from "./support/needs.js";

const CURL = ["-sS", "--max-time", "60", "--noproxy", ""];

/** A tmux server of our own (its own socket), holding one pane that runs `command`. */
class Terminal {
  readonly socket = `sluice-console-${process.pid}-${Math.random().toString(36).slice(2, 8)}`;

  async start(command: string, cols = 120, rows = 30): Promise<void> {
    const r = await run("tmux", ["-L", this.socket, "-f", "/dev/null", "new-session", "-d", "-x", String(cols), "-y", String(rows), command]);
    assert.equal(r.code, 0, `tmux failed: ${r.stderr}`);
  }

  async tmux(...args: string[]): Promise<string> {
    const r = await run("tmux", ["-L", this.socket, ...args]);
    assert.equal(r.code, 0, `tmux ${args.join(" ")}: ${r.stderr}`);
    return r.stdout;
  }

  screen(escapes = false): Promise<string> {
    return this.tmux("capture-pane", "-p", ...(escapes ? ["-e"] : []));
  }

  /** Special keys by tmux name (Enter, Tab, Escape, C-u). */
  keys(...names: string[]): Promise<string> {
    return this.tmux("send-keys", ...names);
  }

  /** Literal text, as typed. */
  type(text: string): Promise<string> {
    return this.tmux("send-keys", "-l", text);
  }

  /** Waits until the screen satisfies `check`; fails with the last screen otherwise. */
  async waitFor(check: (screen: string) => boolean, what: string, timeoutMs = 15_000): Promise<string> {
    const deadline = Date.now() + timeoutMs;
    let screen = "";
    while (Date.now() < deadline) {
      screen = await this.screen();
      if (check(screen)) return screen;
      await new Promise((r) => setTimeout(r, 100));
    }
    assert.fail(`timed out waiting for ${what}; the screen was:\n${screen}`);
  }

  waitForText(text: string | RegExp, timeoutMs?: number): Promise<string> {
    return this.waitFor((s) => (typeof text === "string" ? s.includes(text) : text.test(s)), String(text), timeoutMs);
  }

  async kill(): Promise<void> {
    await run("tmux", ["-L", this.socket, "kill-server"]).catch(() => undefined);
    // tmux leaves its socket file behind.
    rmSync(join(process.env.TMUX_TMPDIR || "/tmp", `tmux-${process.getuid?.() ?? 0}`, this.socket), { force: true });
  }
}

/** curl in the background, for a request that waits at the proxy until the console lets it go. */
function curlInBackground(args: string[]): Promise<{ code: number | null; stdout: string }> {
  return new Promise((resolve) => {
    const child = spawn("curl", args, { stdio: ["ignore", "pipe", "pipe"] });
    let out = "";
    child.stdout.on("data", (c: Buffer) => (out += c.toString()));
    child.once("close", (code) => resolve({ code, stdout: out }));
  });
}

const shellQuote = (s: string) => `'${s.replace(/'/g, `'\\''`)}'`;

/**
 * Starts `sluice` with `args` in the terminal on a free port and a fresh confdir, and waits for its
 * status bar. `env` prefixes the command (e.g. "NO_COLOR=1").
 */
async function startConsole(term: Terminal, opts: { args?: string[]; env?: string; cols?: number; rows?: number; confdirPrefix: string }): Promise<{ proxy: string; confdir: string }> {
  const port = await freePort();
  const confdir = mkdtempSync(join(tmpdir(), opts.confdirPrefix));
  const sluice = [process.execPath, SLUICE_BIN, "-p", String(port), "--confdir", confdir, ...(opts.args ?? [])].map(shellQuote).join(" ");
  await term.start(`${opts.env ? `env ${opts.env} ` : ""}${sluice}; echo "SLUICE-EXITED $?"; sleep 120`, opts.cols, opts.rows);
  await term.waitForText(`127.0.0.1:${port} regular`);
  return { proxy: `http://127.0.0.1:${port}`, confdir };
}

describe("sluice console in a terminal", { skip: needs("tmux", "tmux") ?? needs("curl", "curl") }, () => {
  const term = new Terminal();
  let origin: Origin;
  let secure: Origin;
  let port: number;
  let confdir: string;
  let proxy: string;

  before(async () => {
    origin = await startOrigin();
    secure = await startOrigin({ tls: true });
    port = await freePort();
    confdir = mkdtempSync(join(tmpdir(), "sluice-console-"));
    proxy = `http://127.0.0.1:${port}`;
    // A real editor substitute: rewrites the path on the request line of the file it is given.
    const editor = join(confdir, "edit-path.sh");
    writeFileSync(editor, `#!/bin/sh\nsed -i '1s#/original#/edited-in-editor#' "$1"\n`);
    chmodSync(editor, 0o755);
    const sluice = [process.execPath, SLUICE_BIN, "-p", String(port), "--confdir", confdir, "--set", `ssl_verify_upstream_trusted_ca=${originCaFile()}`].map(shellQuote).join(" ");
    // CI=true on purpose: the console must stay interactive in a terminal even when CI is set.
    // After sluice exits the shell reports its exit code and the terminal's line discipline.
    await term.start(
      `env CI=true EDITOR=${shellQuote(editor)} ${sluice}; echo "SLUICE-EXITED $?"; stty -a | tr ' ;' '\\n\\n' | grep -x -e icanon -e -icanon -e echo -e -echo | tr '\\n' ' '; echo; sleep 120`,
    );
    await term.waitForText(`127.0.0.1:${port} regular`);
  });

  after(async () => {
    await term.kill();
    await origin?.close();
    await secure?.close();
  });

  test("the list shows a flow from a real curl, and its tabs show headers, body and timing", async () => {
    const r = await run("curl", [...CURL, "--cacert", join(confdir, "sluice-ca-cert.pem"), "-x", proxy, "-H", "X-Console-Test: hello-header", `${secure.url}/first?x=1`]);
    assert.equal(r.code, 0, r.stderr);
    const list = await term.waitFor((s) => /GET\s+https:\/\/127\.0\.0\.1:\d+\/first\?x=1\s+200 json/.test(s), "the flow in the list");
    assert.match(list, /1 flow/);
    await term.keys("Enter");
    // curl speaks HTTP/2 to sluice here (ALPN), so header names arrive in lower case.
    const request = await term.waitForText(/x-console-test: hello-header/i);
    assert.match(request, /Request .*Response .*Detail/);
    assert.match(request, /GET https:\/\/127\.0\.0\.1:\d+\/first\?x=1 HTTP\/2/);
    await term.keys("Tab");
    const response = await term.waitForText("x-origin: test");
    assert.match(response, /HTTP\/1\.1 200 OK/, "sluice spoke HTTP/1.1 to the origin");
    assert.match(response, /^ {2}"method": "GET",$/m, "the JSON body is pretty-printed");
    await term.keys("Tab");
    const timing = await term.waitForText("response complete");
    for (const field of ["Timing", "client conn. established", "first request byte", "request complete", "server TCP handshake", "server TLS handshake", "first response byte"]) {
      assert.ok(timing.includes(field), `${field} in\n${timing}`);
    }
    await term.keys("G");
    const connections = await term.waitForText("server certificate");
    for (const field of ["Server connection", "TLS version", "TLSv1.3", "ALPN", "subject", "CN=127.0.0.1", "alt names", "IP Address:127.0.0.1"]) {
      assert.ok(connections.includes(field), `${field} in\n${connections}`);
    }
    await term.keys("q");
    await term.waitFor((s) => s.includes(" Flows ") && s.includes("/first?x=1"), "back to the list");
  });

  test("f filter narrows the list and an empty filter shows everything again", async () => {
    const r = await run("curl", [...CURL, "-x", proxy, `${origin.url}/second-flow`]);
    assert.equal(r.code, 0, r.stderr);
    await term.waitForText("/second-flow");
    await term.keys("f");
    await term.waitForText(/^filter:/m); // capture-pane drops trailing spaces
    await term.type("~u second");
    await term.keys("Enter");
    const filtered = await term.waitForText("│ filter: ~u second"); // the status bar, not the prompt
    assert.match(filtered, /1\/2 flows/);
    assert.ok(filtered.includes("/second-flow"));
    assert.ok(!filtered.includes("/first?x=1"), filtered);
    await term.keys("f");
    await term.keys("C-u");
    await term.keys("Enter");
    const all = await term.waitFor((s) => s.includes("/first?x=1") && s.includes("/second-flow"), "both flows again");
    assert.match(all, /│ 2 flows/);
  });

  test("an intercepted request is edited in $EDITOR to a new path, resumed, and curl gets the edited path's response", async () => {
    await term.keys("i");
    await term.waitForText(/^intercept:/m);
    await term.type("~u /original");
    await term.keys("Enter");
    await term.waitForText("│ intercept: ~u /original");
    const pending = curlInBackground([...CURL, "-x", proxy, `${origin.url}/original`]);
    await term.waitFor((s) => /⏸ \d\d:\d\d:\d\d GET\s+http:\/\/127\.0\.0\.1:\d+\/original/.test(s), "the paused flow");
    await term.keys("G");
    await term.keys("e");
    await term.waitForText("edit request:");
    await term.keys("Enter");
    await term.waitForText(/edited request url of GET http:\/\/127\.0\.0\.1:\d+\/edited-in-editor/);
    assert.equal(origin.requests.some((q) => q.url.includes("edited-in-editor")), false, "still paused: nothing reached the origin yet");
    await term.keys("a");
    const answer = await pending;
    assert.equal(answer.code, 0);
    assert.equal(JSON.parse(answer.stdout).url, "/edited-in-editor", "the origin saw the edited path and curl got its answer");
    await term.waitFor((s) => /\/edited-in-editor\s+200 json/.test(s), "the resumed flow with its response");
  });

  test("the inline editor (e, then p) changes an intercepted request's path", async () => {
    const pending = curlInBackground([...CURL, "-x", proxy, `${origin.url}/original-inline`]);
    await term.waitFor((s) => /⏸ \d\d:\d\d:\d\d GET\s+http:\/\/127\.0\.0\.1:\d+\/original-inline/.test(s), "the paused flow");
    await term.keys("G");
    await term.keys("e");
    await term.waitForText("edit request:");
    await term.keys("p");
    await term.waitForText(/^path: \/original-inline/m);
    await term.keys("C-u");
    await term.type("/inline-edited?x=1");
    await term.keys("Enter");
    await term.waitForText("updated 1 flow");
    await term.keys("a");
    const answer = await pending;
    assert.equal(JSON.parse(answer.stdout).url, "/inline-edited?x=1");
  });

  test("`:flow.set @focus status_code 429` changes what a waiting client gets", async () => {
    await term.keys("i");
    await term.keys("C-u");
    await term.type("~s & ~u /wait-here");
    await term.keys("Enter");
    await term.waitForText("│ intercept: ~s & ~u /wait-here");
    const pending = curlInBackground([...CURL, "-x", proxy, "-w", "\nstatus=%{http_code}", `${origin.url}/wait-here`]);
    await term.waitFor((s) => /⏸ \d\d:\d\d:\d\d GET\s+http:\/\/127\.0\.0\.1:\d+\/wait-here\s+200/.test(s), "the flow paused at its response");
    await term.keys("G");
    await term.keys(":");
    await term.type("flow.set @fo");
    await term.keys("Tab");
    await term.waitForText(":flow.set @focus");
    await term.type("status_code 429");
    await term.keys("Enter");
    await term.waitForText("updated 1 flow");
    await term.keys("a");
    const answer = await pending;
    assert.match(answer.stdout, /status=429$/);
    const coloured = await term.waitFor((s) => /\/wait-here\s+429/.test(s), "the throttled flow");
    assert.ok(coloured);
    // The throttle is drawn in yellow (SGR 33) in the list.
    const escapes = await term.screen(true);
    assert.match(escapes.split("\n").find((l) => l.includes("/wait-here"))!, /\x1b\[[0-9;]*33m/);
  });

  test("an 80×24 terminal and a resize keep the list and status bar intact", async () => {
    await term.tmux("resize-window", "-x", "80", "-y", "24");
    const screen = await term.waitFor((s) => {
      const lines = s.split("\n");
      return /^ Flows /.test(lines[0]!) && lines.every((l) => l.length <= 80) && lines.some((l) => /^ 127\.0\.0\.1:\d+ regular │ \d+ flows/.test(l));
    }, "a redraw at 80 columns");
    const lines = screen.split("\n");
    assert.equal(lines.findIndex((l) => l.startsWith(" 127.0.0.1:")), 21, "the status bar is on row 22 of 24, the message line below it");
    assert.ok(lines.some((l) => /GET\s+127\.0\.0\.1:\d+\/wait-here\s+429 json/.test(l)), `rows keep their columns, the URL without its scheme to fit:\n${screen}`);
    await term.tmux("resize-window", "-x", "120", "-y", "30");
  });

  test("q asks before quitting (n stays), y quits and gives the terminal back: alternate screen off, cursor shown, cooked mode", async () => {
    await term.keys("q");
    await term.waitForText("Quit sluice? (y/n)");
    await term.keys("n");
    await term.waitFor((s) => !s.includes("Quit sluice?") && s.includes(" Flows "), "the list, still running");
    await term.keys("q");
    await term.waitForText("Quit sluice? (y/n)");
    await term.keys("y");
    const after = await term.waitForText(/SLUICE-EXITED[\s\S]*\becho\b/);
    assert.match(after, /SLUICE-EXITED 0/);
    assert.match(after, /^icanon echo *$/m, "the tty is back in canonical mode with echo");
    const flags = await term.tmux("display-message", "-p", "#{alternate_on} #{cursor_flag} #{mouse_standard_flag}");
    assert.equal(flags.trim(), "0 1 0", "alternate screen off, cursor visible, mouse reporting off");
  });
});

describe("sluice console without a terminal", () => {
  test("a non-TTY stdin is refused with a pointer to sluice dump", async () => {
    const confdir = mkdtempSync(join(tmpdir(), "sluice-console-notty-"));
    for (const args of [[], ["console"], ["-p", "0"]]) {
      const r = await run(process.execPath, [SLUICE_BIN, ...args, "--confdir", confdir], { timeoutMs: 20_000 });
      assert.equal(r.code, 2, `sluice ${args.join(" ")}: ${r.stderr}`);
      assert.match(r.stderr, /^sluice: the console needs a terminal, but stdin is not one; run `sluice dump` \(same options\) to print flows instead\n$/);
    }
  });

  test("--help for the console, and the main help names it", async () => {
    const r = await run(process.execPath, [SLUICE_BIN, "console", "--help"]);
    assert.equal(r.code, 0);
    assert.match(r.stdout, /Usage: sluice \[console\]/);
    const main = await run(process.execPath, [SLUICE_BIN, "--help"]);
    assert.match(main.stdout, /^ {2}console /m);
  });
});

/** SGR foreground colours (30–37, 90–97; 39 is "default") in a capture-pane -e screen. */
function foregroundColours(screen: string): string[] {
  const found: string[] = [];
  for (const m of screen.matchAll(/\x1b\[([0-9;]*)m/g)) {
    for (const p of m[1]!.split(";")) if (/^(3[0-7]|9[0-7])$/.test(p)) found.push(p);
  }
  return found;
}

describe("sluice console at 80×24 with NO_COLOR, faults and SDK retries", { skip: needs("curl", "curl") ?? needs("tmux", "tmux") }, () => {
  const term = new Terminal();
  let origin: Origin;
  let proxy: string;

  before(async () => {
    origin = await startOrigin();
    ({ proxy } = await startConsole(term, { args: ["--fault", "~u /boom => status 503"], env: "NO_COLOR=1", cols: 80, rows: 24, confdirPrefix: "sluice-console-nocolor-" }));
  });

  after(async () => {
    await term.kill();
    await origin?.close();
  });

  test("injected faults and retry attempts are marked in the list, the retries screen groups them, and no colour is used", async () => {
    assert.equal((await run("curl", [...CURL, "-x", proxy, `${origin.url}/boom`])).code, 0);
    // Three attempts of one DynamoDB GetItem call, as an AWS SDK sends them.
    for (const attempt of [1, 2, 3]) {
      const r = await run("curl", [...CURL, "-x", proxy, "-H", "amz-sdk-invocation-id: 0f4c3f7e-1111-4b4b-9c9c-000000000001", "-H", `amz-sdk-request: attempt=${attempt}; max=5`,
        "-H", "Authorization: AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20260101/eu-west-1/dynamodb/aws4_request, SignedHeaders=host, Signature=abc",
        "-H", "X-Amz-Target: DynamoDB_20120810.GetItem", "-H", "content-type: application/x-amz-json-1.0", "-d", "{}", `${origin.url}/`]);
      assert.equal(r.code, 0, r.stderr);
    }
    const list = await term.waitFor((s) => / 3\/5/.test(s) && s.includes("fault:status"), "fault and attempt markers");
    assert.match(list, /\/boom\s+503 json.* fault:status/);
    assert.match(list, / 2\/5/);
    assert.match(list, /│ 1 fault rule/);
    await term.waitForText(/│ 2 retries/);
    assert.deepEqual(foregroundColours(await term.screen(true)), [], "NO_COLOR: no foreground colours");
    await term.keys("R");
    const retries = await term.waitForText("GetItem");
    assert.match(retries, /dynamodb\s+GetItem\s+3\s+2\b/);
    // Other traffic is grouped by host and method in both tables, as the metrics label it.
    assert.equal(retries.match(/127\.0\.0\.1\s+GET\s+1\s+0\b/g)?.length, 2, retries);
    await term.keys("q");
    await term.keys("?");
    const help = await term.waitForText("Flow details");
    assert.match(help, /flow\.resume @focus/);
  });
});

describe("console body formatting and editing", () => {
  test("JSON, XML, form and gzip bodies are decoded and pretty-printed; binary is shown as hex", () => {
    const json = formatBody(Response.make(200, gzipSync('{"a":{"b":[1,2]}}'), { "content-type": "application/json", "content-encoding": "gzip" }));
    assert.equal(json.kind, "json");
    assert.deepEqual(json.lines, ["{", '  "a": {', '    "b": [', "      1,", "      2", "    ]", "  }", "}"]);
    assert.match(json.note!, /decoded from gzip/);
    const xml = formatBody(Response.make(503, "<?xml version=\"1.0\"?><Error><Code>SlowDown</Code><Message>Reduce your request rate.</Message></Error>", { "content-type": "application/xml" }));
    assert.deepEqual(xml.lines, ['<?xml version="1.0"?>', "<Error>", "  <Code>SlowDown</Code>", "  <Message>Reduce your request rate.</Message>", "</Error>"]);
    const form = formatBody(Response.make(200, "Action=DescribeInstances&Version=2016-11-15", { "content-type": "application/x-www-form-urlencoded" }));
    assert.deepEqual(form.lines, ["Action: DescribeInstances", "Version: 2016-11-15"]);
    const binary = formatBody(Response.make(200, Buffer.from([0, 1, 2, 0x41, 0x42, 0xff]), { "content-type": "application/octet-stream" }));
    assert.equal(binary.kind, "hex");
    assert.equal(binary.lines[0], `00000000  ${"00 01 02 41 42 ff".padEnd(47)}  ...AB.`);
  });

  test("a large body is cut before formatting, so opening it stays quick", () => {
    const big = Buffer.from(JSON.stringify({ items: Array.from({ length: 1_000_000 }, (_, i) => ({ i })) }));
    assert.ok(big.length > 20 * MAX_FORMATTED_BYTES);
    const body = formatBody(Response.make(200, big, { "content-type": "application/json" }));
    assert.match(body.note!, new RegExp(`showing the first ${MAX_FORMATTED_BYTES} of ${big.length} bytes`));
    assert.ok(body.lines.join("\n").length <= MAX_FORMATTED_BYTES + body.lines.length);
    const huge = formatBody(Response.make(200, Buffer.alloc(8 * 1024 * 1024, 7), { "content-type": "application/octet-stream" }));
    assert.equal(huge.lines.length, 64 * 1024 / 16, "hex dump of the first 64 KiB only");
  });

  test("editing a response as text changes status, reason, headers and body through flow.set's rules", () => {
    const flow = { request: null, response: Response.make(200, "hello", { "content-type": "text/plain" }), metadata: {} } as unknown as Parameters<typeof messageAsText>[0];
    const original = messageAsText(flow, "response");
    assert.equal(original, "HTTP/1.1 200 OK\ncontent-type: text/plain\ncontent-length: 5\n\nhello");
    const changed = applyMessageText(flow, "response", original, "HTTP/1.1 429 Slow Down\ncontent-type: text/plain\nretry-after: 2\n\nslow down please\n");
    assert.deepEqual(changed, ["status", "reason", "headers", "body"]);
    const r = flow.response!;
    assert.equal(r.statusCode, 429);
    assert.equal(r.reason, "Slow Down");
    assert.equal(r.headers.get("retry-after"), "2");
    assert.equal(r.text, "slow down please\n");
    assert.equal(r.headers.get("content-length"), String(Buffer.byteLength("slow down please\n")));
    assert.throws(() => applyMessageText(flow, "response", messageAsText(flow, "response"), "HTTP/1.1 abc\n\n"), /status_code must be a three-digit number/);
  });
});

describe("console throttle marks agree with ~throttled and the retries addon", () => {
  const S3_AUTH = "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20261124/eu-west-1/s3/aws4_request, SignedHeaders=host, Signature=0";
  const answered = (url: string, headers: Record<string, string>, response: Response): HTTPFlow => {
    const u = new URL(url);
    const req = new Request({ method: "GET", scheme: "https", host: u.hostname, port: 443, path: u.pathname, headers: new Headers({ Host: u.host, ...headers }), content: null });
    const flow = new HTTPFlow(newClientConnection(), newServerConnection(), req);
    flow.response = response;
    return flow;
  };

  test("429 and S3's 503 SlowDown are throttles; a plain 503 is an error, in the list and on the retries screen", () => {
    const slowDown = answered("https://s3.eu-west-1.amazonaws.com/bucket/key", { Authorization: S3_AUTH },
      Response.make(503, "<?xml version=\"1.0\"?><Error><Code>SlowDown</Code><Message>Reduce your request rate.</Message></Error>", { "content-type": "application/xml" }));
    const tooMany = answered("https://api.example.com/a", {}, Response.make(429, "slow down"));
    const unavailable = answered("https://api.example.com/b", {}, Response.make(503, "down for maintenance"));
    const throttled = compileFilter("~throttled");

    assert.equal(kindOf(slowDown), "throttle");
    assert.equal(throttleCodeOf(slowDown), "SlowDown");
    assert.equal(kindOf(tooMany), "throttle");
    assert.equal(kindOf(unavailable), "error");
    assert.equal(throttleCodeOf(unavailable), null);
    for (const f of [slowDown, tooMany, unavailable]) assert.equal(throttleCodeOf(f) !== null, throttled(f), f.request.url);

    const rows = retrySummary([slowDown, tooMany, unavailable]);
    assert.equal(rows.find((r) => r.service === "s3")?.throttled, 1);
    assert.equal(rows.filter((r) => r.service === "api.example.com").reduce((n, r) => n + r.throttled, 0), 1);
  });
});

describe("sluice console list keys on real flows", { skip: needs("curl", "curl") ?? needs("tmux", "tmux") }, () => {
  const term = new Terminal();
  let origin: Origin;
  let proxy: string;
  let dir: string;

  before(async () => {
    origin = await startOrigin();
    ({ proxy, confdir: dir } = await startConsole(term, { confdirPrefix: "sluice-console-keys-" }));
  });

  after(async () => {
    await term.kill();
    await origin?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  /** The rows of the list that show `path`. */
  const rowsWith = (screen: string, path: string) => screen.split("\n").filter((l) => l.includes(path));

  test("m marks, D duplicates, d deletes, r replays, w saves, E and O open their screens, z clears", async () => {
    for (const path of ["/keys-one", "/keys-two"]) assert.equal((await run("curl", [...CURL, "-x", proxy, `${origin.url}${path}`])).code, 0);
    await term.waitFor((s) => s.includes("/keys-two") && /│ 2 flows/.test(s), "both flows");
    await term.keys("g"); // focus the first flow

    await term.keys("m");
    let screen = await term.waitFor((s) => rowsWith(s, "/keys-one").some((l) => l.includes("●")), "the mark on the focused flow");
    assert.ok(!rowsWith(screen, "/keys-two").some((l) => l.includes("●")), screen);

    await term.keys("D");
    screen = await term.waitForText(/│ 3 flows/);
    assert.equal(rowsWith(screen, "/keys-one").length, 2, screen);

    await term.keys("d");
    screen = await term.waitForText(/│ 2 flows/);
    assert.equal(rowsWith(screen, "/keys-one").length, 1, screen);

    assert.equal(rowsWith(screen, "/keys-two").length, 1, screen);

    const before = origin.requests.length;
    await term.keys("G"); // focus the last flow, then replay it through the proxy
    screen = await term.waitFor((s) => rowsWith(s, "/keys-").at(-1)?.includes("»") ?? false, "the focus on the last flow");
    const last = /\/keys-(one|two)/.exec(rowsWith(screen, "/keys-").at(-1)!)![0];
    await term.keys("r");
    screen = await term.waitFor((s) => /│ 3 flows/.test(s) && rowsWith(s, last).some((l) => l.includes("↻")), "the replayed flow");
    assert.equal(origin.requests.length, before + 1, "the replay reached the origin");
    assert.equal(origin.requests.at(-1)?.url, last);

    const file = join(dir, "saved.har");
    await term.keys("w");
    await term.waitForText("save shown flows to");
    await term.keys("C-u");
    await term.type(file);
    await term.keys("Enter");
    await term.waitForText("saved 3 flows to"); // the command's answer: the file is complete
    const har = JSON.parse(readFileSync(file, "utf8")) as { log: { entries: { request: { url: string } }[] } };
    assert.deepEqual(har.log.entries.map((e) => new URL(e.request.url).pathname).sort(), ["/keys-one", "/keys-two", last].sort());

    await term.keys("E");
    screen = await term.waitForText(" Event log ");
    assert.match(screen, /listening at 127\.0\.0\.1:\d+/);
    await term.keys("q");
    await term.keys("O");
    await term.waitForText(" Options ");
    // More options than fit a screen: page down to `listen_port` and `mode`.
    await term.keys("NPage");
    screen = await term.waitForText(/^mode\s+regular\s/m);
    assert.match(screen, new RegExp(`^listen_port\\s+${new URL(proxy).port}\\s`, "m"));
    await term.keys("q");

    await term.waitForText(" Flows ");
    await term.keys("z");
    screen = await term.waitForText(/│ 0 flows/);
    assert.ok(!screen.includes("/keys-one"), screen);
  });

  /** The list's paths, top to bottom, of the rows that show `prefix`. */
  const order = (screen: string, prefix: string) => screen.split("\n").flatMap((l) => new RegExp(`${prefix}[a-z]+`).exec(l)?.[0] ?? []);

  test("o orders the list (url), v reverses it, F makes the focus follow new flows, x exports the focused flow as curl, Q quits at once", async () => {
    for (const path of ["/ord-b", "/ord-c", "/ord-a"]) assert.equal((await run("curl", [...CURL, "-x", proxy, `${origin.url}${path}`])).code, 0);
    let screen = await term.waitFor((s) => order(s, "/ord-").length === 3, "three flows");
    assert.deepEqual(order(screen, "/ord-"), ["/ord-b", "/ord-c", "/ord-a"], "arrival order by default");

    await term.keys("o");
    await term.waitForText("order flows by: t time · m method · u url · z size");
    await term.keys("u");
    screen = await term.waitFor((s) => s.includes("order: url") && order(s, "/ord-").join() === "/ord-a,/ord-b,/ord-c", "the list by url");
    await term.keys("v");
    screen = await term.waitFor((s) => s.includes("order: url reversed") && order(s, "/ord-").join() === "/ord-c,/ord-b,/ord-a", "the list by url, reversed");

    await term.keys("g"); // focus the top row (/ord-c); a new flow sorts to the top as well (/ord-d)
    await term.keys("j");
    await term.waitFor((s) => rowsWith(s, "/ord-b").some((l) => l.includes("»")), "the focus on /ord-b");
    await term.keys("F");
    await term.waitForText(/│ follow/);
    assert.equal((await run("curl", [...CURL, "-x", proxy, `${origin.url}/ord-d`])).code, 0);
    screen = await term.waitFor((s) => rowsWith(s, "/ord-d").some((l) => l.includes("»")), "the focus on the new flow");
    assert.deepEqual(order(screen, "/ord-"), ["/ord-d", "/ord-c", "/ord-b", "/ord-a"]);

    const file = join(dir, "exported.sh");
    await term.keys("x");
    await term.waitForText("export as: c curl · h httpie · r raw · q raw_request · s raw_response · a har");
    await term.keys("c");
    await term.waitForText("curl to: f file · c clipboard");
    await term.keys("f");
    await term.waitForText("export curl to file: flow.curl.sh");
    await term.keys("C-u");
    await term.type(file);
    await term.keys("Enter");
    await term.waitForText(`exported curl to ${file}`);
    const before = origin.requests.length;
    const replayed = await run("sh", [file], { env: { ...process.env, http_proxy: "", https_proxy: "", HTTP_PROXY: "", HTTPS_PROXY: "" } });
    assert.equal(replayed.code, 0, replayed.stderr);
    assert.equal(origin.requests.at(-1)?.url, "/ord-d", "the exported command repeats the focused request");
    assert.equal(origin.requests.length, before + 1);

    await term.keys("Q");
    await term.waitForText("SLUICE-EXITED 0");
  });
});
