/**
 * `sluice web` driven in Debian's chromium through playwright-core, with real clients: curl and
 * boto3 traffic appears live; filters narrow the list and a bad one shows its error; the detail
 * shows headers, a pretty JSON body and the timing; an intercepted curl request is edited in the
 * browser and resumed; replay, copy as curl, save as .mitm (read by mitmdump), the Retries page
 * on a boto3 call throttled by a --fault rule, a fault rule added live; and the UI's guard:
 * token, Host and Origin checks, the port-taken error.
 */
import { test, describe, before, after } from "node:test";
import assert from "node:assert/strict";
import http from "node:http";
import net from "node:net";
import { existsSync, mkdtempSync, mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { spawn } from "node:child_process";
import { chromium, type Page } from "playwright-core";
import WebSocket from "ws";
import { echo, startOrigin, type Origin } from "./support/origins.js";
import { run } from "./support/run.js";
import { spawnSluice, assertOneLineError, SLUICE_BIN, type RunningSluice } from "./support/cli.js";
import { testConfdir } from "./support/sluice.js";
import { mapS3To, runBoto3, startThrottlingS3, type ThrottlingS3 } from "./support/throttling-s3.js";
import { needs, needsPython } from "./support/needs.js";
import { mitmdumpMissing } from "./support/mitmdump.js";

/** Where the README's screenshots go when SLUICE_WEB_SCREENSHOTS names a folder (docs/ in the repository). */
const SHOTS = process.env.SLUICE_WEB_SCREENSHOTS ?? null;

/** Debian's chromium, headless, with nothing that reaches beyond this machine; a new empty profile per run. */
const CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync"];

/** The UI's URL from the line `sluice web` prints. */
async function webUrlOf(proxy: RunningSluice): Promise<string> {
  for (let i = 0; i < 100; i++) {
    const m = /web UI at (\S+)/.exec(proxy.stderr());
    if (m) return m[1]!;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`no web UI line in: ${proxy.stderr()}`);
}

/** A 1×1 PNG: the Response tab must show it as an image the browser decodes. */
const PNG = Buffer.from("iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg==", "base64");

/** A plain WebSocket through the proxy in regular mode: CONNECT, then the upgrade inside the tunnel. */
function wsThroughProxy(proxyPort: number, url: string): WebSocket {
  return new WebSocket(url, ["echo"], {
    createConnection: ((options: { host?: string; port?: number }, done: (err: Error | null, socket?: net.Socket) => void) => {
      const authority = `${options.host}:${options.port}`;
      const req = http.request({ host: "127.0.0.1", port: proxyPort, method: "CONNECT", path: authority, headers: { host: authority }, agent: false });
      req.once("connect", (res, socket) => (res.statusCode === 200 ? done(null, socket) : done(new Error(`CONNECT answered ${res.statusCode}`))));
      req.once("error", (err) => done(err));
      req.end();
      return undefined;
    }) as unknown as WebSocket.ClientOptions["createConnection"],
  });
}

function curl(proxyPort: number, args: string[]) {
  return run("curl", ["-s", "-x", `http://127.0.0.1:${proxyPort}`, ...args], { timeoutMs: 30_000 });
}

describe("sluice web in chromium", { skip: needs("/usr/bin/chromium", "chromium") ?? needs("curl", "curl") ?? needsPython("boto3", "python3-boto3") }, () => {
  const dir = mkdtempSync(join(tmpdir(), "sluice-web-"));
  let origin: Origin;
  let s3: ThrottlingS3;
  let proxy: RunningSluice;
  /** The page's "intercept" messages to sluice, as sent on its WebSocket. */
  const interceptsSent: string[] = [];
  let url: string;
  let page: Page;
  let contextClose: () => Promise<void>;

  const row = (text: string) => page.locator(".flow-scroll .flow-row", { hasText: text });
  const shot = async (name: string) => {
    if (!SHOTS) return;
    mkdirSync(SHOTS, { recursive: true });
    await page.screenshot({ path: join(SHOTS, name) });
  };

  before(async () => {
    origin = await startOrigin({ websocket: true, handler: (req, res, body) => (req.url === "/image.png" ? (res as http.ServerResponse).writeHead(200, { "content-type": "image/png" }).end(PNG) : echo(req, res, body)) });
    s3 = await startThrottlingS3(() => false);
    proxy = await spawnSluice([
      "web", "-p", "0", "--set", "web_port=0", "--confdir", testConfdir(),
      "--set", `map_remote=${mapS3To(s3.url)}`,
      "--fault", "~op ListBuckets => throttle first=2",
      "--shape", "~u /shaped/ => 40/s",
    ]);
    url = await webUrlOf(proxy);
    const context = await chromium.launchPersistentContext(join(dir, "profile"), { executablePath: "/usr/bin/chromium", headless: true, args: CHROMIUM_ARGS, viewport: { width: 1280, height: 720 }, acceptDownloads: true });
    contextClose = () => context.close();
    page = context.pages()[0] ?? (await context.newPage());
    page.on("pageerror", (e) => process.stderr.write(`page error: ${e.message}\n`));
    page.on("websocket", (ws) => ws.on("framesent", (frame) => /"type":"intercept"/.test(String(frame.payload)) && interceptsSent.push(String(frame.payload))));
    await page.goto(url);
    await page.locator(".status", { hasText: "shown of" }).waitFor();
  });

  after(async () => {
    await contextClose?.();
    await proxy?.stop();
    await origin?.close();
    await s3?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  test("the UI's address is printed with a token, on 127.0.0.1, not on the proxy's port", () => {
    const u = new URL(url);
    assert.equal(u.hostname, "127.0.0.1");
    assert.notEqual(Number(u.port), proxy.port);
    assert.match(u.searchParams.get("token") ?? "", /^[0-9a-f]{32}$/);
  });

  test("flows from curl and from boto3 appear live in the list", async () => {
    const r = await curl(proxy.port, [`${origin.url}/live/one?x=1`]);
    assert.equal(r.code, 0, r.stderr);
    await row("/live/one?x=1").waitFor();
    const boto = await runBoto3({ proxyUrl: `http://127.0.0.1:${proxy.port}`, caCert: join(testConfdir(), "sluice-ca-cert.pem"), operations: ["list_buckets"], threads: 1, callsPerThread: 1, mode: "standard" });
    assert.deepEqual(boto.failures, {});
    assert.equal(boto.retries.ListBuckets, 2, "the fault rule throttled the first two attempts");
    // boto3's three attempts: two injected throttles marked as faults, each an attempt n/3.
    // map_remote sent them to the local S3, which the list shows as their host.
    const s3Host = `127.0.0.1:${new URL(s3.url).port}`;
    await row(s3Host).nth(2).waitFor();
    const rows = await row(s3Host).allInnerTexts();
    assert.equal(rows.length, 3);
    assert.match(rows[0]!, /fault:throttle[\s\S]*503/);
    assert.match(rows[1]!, /2\/3[\s\S]*fault:throttle[\s\S]*503/);
    assert.match(rows[2]!, /3\/3[\s\S]*200/);
    await shot("web-flows.png");
  });

  test("the view filter narrows the list; a bad filter shows its error and position, keeping the last good one", async () => {
    await curl(proxy.port, [`${origin.url}/filter/keep`]);
    await curl(proxy.port, [`${origin.url}/filter/drop`]);
    await row("/filter/drop").waitFor();
    const box = page.locator("[data-filter=filter] input");
    await box.fill("~u /filter/keep");
    await box.press("Enter");
    await row("/filter/drop").waitFor({ state: "detached" });
    assert.equal(await row("/filter/keep").count(), 1);
    assert.match(await page.locator(".status").innerText(), /^1 shown of \d+ flows/);
    await box.fill("~c 50x");
    await box.press("Enter");
    const error = page.locator("[data-filter=filter] .filter-error");
    await error.waitFor();
    assert.match(await error.innerText(), /~c expects an integer at position 3/);
    assert.equal(await page.locator("[data-filter=filter] .filter-caret").innerText(), "\u00a0\u00a0\u00a0^");
    assert.equal(await row("/filter/keep").count(), 1, "the last good filter still applies");
    await box.fill("");
    await box.press("Enter");
    await row("/filter/drop").waitFor();
  });

  test("a flow's detail shows its headers, a pretty JSON body and the timing waterfall", async () => {
    await curl(proxy.port, ["-H", "X-Detail: yes", `${origin.url}/detail/json`]);
    await row("/detail/json").click();
    await page.locator(".flow-scroll .flow-row.focused", { hasText: "/detail/json" }).waitFor();
    await page.keyboard.press("Enter");
    const detail = page.locator(".detail");
    await detail.locator(".start-line", { hasText: "/detail/json" }).waitFor();
    assert.match(await detail.locator("table.headers").first().innerText(), /X-Detail\s+yes/);
    await detail.getByRole("tab", { name: "Response" }).click();
    const body = detail.locator(".body-content[data-kind=json]");
    await body.waitFor();
    const text = await body.innerText();
    // The echo origin answers one line of JSON; shown folded and indented, key per line.
    assert.match(text, /▾\{\n\s+"method": "GET",\n\s+"url": "\/detail\/json",/);
    assert.match(await detail.locator(".start-line").innerText(), /200 OK/);
    await shot("web-detail.png");
    await page.keyboard.press("Tab"); // Response → Connection
    await page.keyboard.press("Tab"); // → Timing
    const timing = detail.locator("table.waterfall");
    await timing.waitFor();
    const t = await timing.innerText();
    for (const event of ["client connected", "request started", "request complete", "server TCP connected", "response started", "response complete"]) assert.match(t, new RegExp(event));
    await page.keyboard.press("Escape");
  });

  test("an image body is shown as the image, decoded by the browser", async () => {
    await curl(proxy.port, ["-o", "/dev/null", `${origin.url}/image.png`]);
    await row("/image.png").click();
    await page.locator(".flow-scroll .flow-row.focused", { hasText: "/image.png" }).waitFor();
    await page.keyboard.press("Enter");
    const detail = page.locator(".detail");
    await detail.locator(".start-line", { hasText: "/image.png" }).waitFor();
    await detail.getByRole("tab", { name: "Response" }).click();
    const img = detail.locator(".body-content[data-kind=image] img.body-image");
    await img.waitFor();
    // The test's TypeScript has no DOM types: the image element seen structurally.
    type Img = { complete: boolean; naturalWidth: number; naturalHeight: number };
    await page.waitForFunction((el) => (el as unknown as Img).complete, await img.elementHandle());
    assert.deepEqual(await img.evaluate((el) => [(el as unknown as Img).naturalWidth, (el as unknown as Img).naturalHeight]), [1, 1]);
    await page.keyboard.press("Escape");
  });

  test("a WebSocket flow's tab lists the messages both ways and the close", async () => {
    const ws = wsThroughProxy(proxy.port, `ws://127.0.0.1:${origin.port}/ws-chat`);
    const echoed: string[] = [];
    ws.on("message", (data) => echoed.push(String(data)));
    await new Promise<void>((resolve, reject) => (ws.once("open", () => resolve()), ws.once("error", reject)));
    ws.send("hello from the test");
    while (echoed.length < 1) await new Promise((r) => setTimeout(r, 20));
    ws.send("close-please");
    await new Promise((r) => ws.once("close", r));
    await row("/ws-chat").click();
    await page.locator(".flow-scroll .flow-row.focused", { hasText: "/ws-chat" }).waitFor();
    await page.keyboard.press("Enter");
    const detail = page.locator(".detail");
    await detail.locator(".start-line", { hasText: "/ws-chat" }).waitFor();
    await detail.getByRole("tab", { name: "WebSocket" }).click();
    const messages = detail.locator("table.ws-messages tr");
    await detail.locator(".ws .muted", { hasText: "closed by server: 4000 asked to" }).waitFor();
    const lines = await messages.allInnerTexts();
    assert.equal(lines.length, 3, lines.join("\n"));
    assert.match(lines[0]!, /→\s+text\s+hello from the test\s+19b/);
    assert.match(lines[1]!, /←\s+text\s+hello from the test\s+19b/);
    assert.match(lines[2]!, /→\s+text\s+close-please/);
    await page.keyboard.press("Escape");
  });

  test("an intercepted curl request is edited (path and a header) in the browser, resumed, and curl gets the origin's answer to the edit", async () => {
    const box = page.locator("[data-filter=intercept] input");
    const sentBefore = interceptsSent.length;
    await box.fill("~u /intercept-me");
    await box.press("Enter");
    await page.locator("[role=status]", { hasText: "intercepting ~u /intercept-me" }).waitFor();
    // Enter applies the filter; the pause after typing must not apply it a second time (its notice
    // then arrived in the middle of what follows, in place of Apply's answer).
    await new Promise((resolve) => setTimeout(resolve, 600));
    assert.deepEqual(interceptsSent.slice(sentBefore).map((m) => JSON.parse(m).expr), ["~u /intercept-me"]);
    const child = spawn("curl", ["-s", "-x", `http://127.0.0.1:${proxy.port}`, `${origin.url}/intercept-me`]);
    let out = "";
    child.stdout.on("data", (c: Buffer) => (out += c));
    const exited = new Promise<number | null>((r) => child.once("exit", r));
    const paused = page.locator(".flow-scroll .flow-row.intercepted", { hasText: "/intercept-me" });
    await paused.waitFor();
    await paused.click();
    // Enter opens the focused flow: wait until sluice has the click's focus (a slow machine lags).
    await page.locator(".flow-scroll .flow-row.focused", { hasText: "/intercept-me" }).waitFor();
    await page.keyboard.press("Enter");
    const detail = page.locator(".detail");
    await detail.locator(".start-line", { hasText: "/intercept-me" }).waitFor();
    await detail.getByRole("button", { name: "Edit" }).click();
    const editor = detail.locator("textarea[aria-label='edit request']");
    const original = await editor.inputValue();
    const [first, ...rest] = original.split("\n");
    assert.match(first!, /\/intercept-me/, "the editor holds the intercepted request");
    await editor.fill([first!.replace("/intercept-me", "/edited-path"), "X-Edited-In: browser", ...rest].join("\n"));
    const status = page.locator("[role=status]");
    await detail.getByRole("button", { name: "Apply" }).click();
    // The status line also reports the intercept filter and flows as they come, so the first text
    // after Apply need not be Apply's answer: wait for that answer, and if another one stays
    // instead, fail with the page's text. (Runs in the page: `document` is the page's; the test's
    // tsconfig has no DOM types.)
    const applied = "changed url, headers";
    await page
      .waitForFunction((want) => (globalThis as unknown as { document: { querySelector(s: string): { textContent: string | null } | null } }).document.querySelector("[role=status]")?.textContent === want, applied, { timeout: 30_000 })
      .catch(() => undefined);
    assert.equal(await status.innerText(), applied);
    await detail.getByRole("button", { name: "Resume" }).click();
    assert.equal(await exited, 0);
    const answer = JSON.parse(out) as { url: string; headers: Record<string, string> };
    assert.equal(answer.url, "/edited-path");
    assert.equal(answer.headers["x-edited-in"], "browser");
    assert.equal(origin.requests.at(-1)!.url, "/edited-path");
    await box.fill("");
    await box.press("Enter");
    await page.locator("[role=status]", { hasText: "intercept filter cleared" }).waitFor();
    await page.keyboard.press("Escape");
  });

  test("r replays the focused flow: the origin sees the request again", async () => {
    await curl(proxy.port, [`${origin.url}/replay-me`]);
    await row("/replay-me").click();
    const before = origin.requests.filter((r) => r.url === "/replay-me").length;
    await page.keyboard.press("r");
    await row("/replay-me").nth(1).waitFor();
    assert.equal(origin.requests.filter((r) => r.url === "/replay-me").length, before + 1);
    assert.match(await row("/replay-me").nth(1).innerText(), /↻/);
  });

  test("copy as curl yields a command that, run in a shell, repeats the request at the origin", async () => {
    await curl(proxy.port, ["-X", "PUT", "-H", "X-Copy: it's quoted", "--data-binary", `{"a": "b c"}`, `${origin.url}/copy-me?q=1&r=2`]);
    await row("/copy-me").click();
    await page.locator(".flow-scroll .flow-row.focused", { hasText: "/copy-me" }).waitFor();
    await page.keyboard.press("Enter");
    await page.locator(".detail select[aria-label=export]").selectOption("curl");
    const text = page.locator("[role=dialog] textarea.export-text");
    await text.waitFor();
    const command = await text.inputValue();
    assert.match(command, /^curl -X PUT /);
    const count = origin.requests.length;
    const r = await run("sh", ["-c", `${command} -s -o /dev/null -w '%{http_code}'`]);
    assert.equal(r.stdout, "200", r.stderr);
    assert.equal(origin.requests.length, count + 1);
    const seen = origin.requests.at(-1)!;
    assert.equal(seen.method, "PUT");
    assert.equal(seen.url, "/copy-me?q=1&r=2");
    assert.equal(seen.headers["x-copy"], "it's quoted");
    assert.equal(seen.body.toString(), `{"a": "b c"}`);
    await page.locator("[role=dialog]").getByRole("button", { name: "Close" }).click();
    await page.keyboard.press("Escape");
  });

  test("the shown flows saved as .mitm open in mitmdump -nr", { skip: mitmdumpMissing() }, async () => {
    await curl(proxy.port, [`${origin.url}/saved/a`]);
    await curl(proxy.port, [`${origin.url}/saved/b`]);
    const box = page.locator("[data-filter=filter] input");
    await box.fill("~u /saved/");
    await box.press("Enter");
    await page.locator(".status", { hasText: /^2 shown of/ }).waitFor();
    const [download] = await Promise.all([page.waitForEvent("download"), page.locator("select[aria-label='save flows']").selectOption("@shown mitm")]);
    const file = join(dir, "saved.mitm");
    await download.saveAs(file);
    const r = await run("mitmdump", ["-nr", file, "--set", `confdir=${join(dir, "mitm-conf")}`]);
    assert.equal(r.code, 0, r.stderr);
    const requests = r.stdout.split("\n").filter((l) => /GET http/.test(l));
    assert.equal(requests.length, 2, r.stdout);
    assert.match(requests[0]!, /\/saved\/a/);
    assert.match(requests[1]!, /\/saved\/b/);
    await box.fill("");
    await box.press("Enter");
  });

  test("the Retries page shows the boto3 call the --fault rule throttled, with its attempts", async () => {
    await page.getByRole("button", { name: "Retries" }).click();
    const call = page.locator(".calls-table tr", { hasText: "ListBuckets" });
    await call.waitFor();
    assert.match(await call.innerText(), /s3\s+ListBuckets\s+3 attempts\s+ok/);
    const op = page.locator("table.ops tr", { hasText: "ListBuckets" });
    assert.match(await op.innerText(), /s3\s+ListBuckets\s+1\s+3\s+2\s+2 \(67%\)/);
    await call.click();
    const timeline = page.locator(".timeline");
    await timeline.waitFor();
    const lines = await timeline.locator("table.attempts tr").allInnerTexts();
    assert.equal(lines.length, 3);
    assert.match(lines[0]!, /#1\s+503 SlowDown \(fault: throttle\)/);
    assert.match(lines[1]!, /#2\s+503 SlowDown \(fault: throttle\)\s+waited \d+\.\d{3} s/);
    assert.match(lines[2]!, /#3\s+200/);
    assert.ok(await page.locator(".plot svg polyline.s-requests").count());
    await shot("web-retries.png");
    await timeline.locator("table.attempts tr").nth(2).click();
    await page.locator(".detail .start-line", { hasText: `127.0.0.1:${new URL(s3.url).port}/` }).waitFor();
    await page.keyboard.press("Escape");
  });

  test("a fault rule added on the Faults page affects the next request", async () => {
    await page.getByRole("button", { name: "Faults" }).click();
    const input = page.locator("input[aria-label='new fault rule']");
    await input.fill("~u /teapot => status 418");
    await input.press("Enter");
    const ruleRow = page.locator("tr[data-rule]", { hasText: "/teapot" });
    await ruleRow.waitFor();
    const r = await curl(proxy.port, ["-o", "/dev/null", "-w", "%{http_code}", `${origin.url}/teapot`]);
    assert.equal(r.stdout, "418");
    await page.locator("tr[data-rule]", { hasText: "/teapot" }).locator("td.num").nth(1).filter({ hasText: "1" }).waitFor();
    await input.fill("~u /teapot => nonsense");
    await input.press("Enter");
    assert.match(await page.locator(".add-rule [role=alert]").innerText(), /nonsense/);
    await ruleRow.getByRole("button", { name: "Remove" }).click();
    await ruleRow.waitFor({ state: "detached" });
    const after = await curl(proxy.port, ["-o", "/dev/null", "-w", "%{http_code}", `${origin.url}/teapot`]);
    assert.equal(after.stdout, "200");
    await page.getByRole("button", { name: "Flows" }).click();
  });

  test("the Shaping page shows each rule's keys as table rows: rate, released, queue", async () => {
    for (let i = 0; i < 3; i++) await curl(proxy.port, ["-o", "/dev/null", `${origin.url}/shaped/${i}`]);
    await page.getByRole("button", { name: "Shaping" }).click();
    await page.locator("tr.rule-head", { hasText: "~u /shaped/ => 40/s" }).waitFor();
    const key = page.locator("tr[data-key]");
    await key.locator("td.num").nth(3).filter({ hasText: /^3$/ }).waitFor();
    const cells = await key.locator("td").allInnerTexts();
    assert.equal(cells[2], "40/s");
    assert.equal(cells[3], "0", "nothing queued once the three requests are through");
    assert.equal(cells[6], "0", "nothing rejected");
    await page.getByRole("button", { name: "Flows" }).click();
  });

  test("an option set on the Options page applies; a bad value shows its error inline", async () => {
    await page.getByRole("button", { name: "Options" }).click();
    assert.equal(await page.locator("tr[data-option=view_max_flows] input").inputValue(), "100000", "sluice web keeps a larger view than dump");
    const field = page.locator("tr[data-option=connect_timeout] input");
    await field.fill("soon");
    await field.press("Enter");
    assert.match(await page.locator("tr[data-option=connect_timeout] [role=alert]").innerText(), /connect_timeout expects a whole number, got "soon"/);
    await field.fill("7");
    await field.press("Enter");
    await page.locator("tr[data-option=connect_timeout] [role=alert]").waitFor({ state: "detached" });
    await page.locator("tr.changed[data-option=connect_timeout]").waitFor();
    await page.getByRole("button", { name: "Flows" }).click();
  });

  test("the command bar runs any command on the focused flow", async () => {
    await curl(proxy.port, [`${origin.url}/command-bar`]);
    await row("/command-bar").click();
    await page.keyboard.press(":");
    await page.keyboard.type("flow.set @focus status_code 429");
    await page.keyboard.press("Enter");
    await page.locator("[role=status]", { hasText: "updated 1 flow" }).waitFor();
    await page.locator(".flow-scroll .flow-row", { hasText: "/command-bar" }).locator(".c-status", { hasText: "429" }).waitFor();
  });

  test("without the token, for a foreign Host, or from another origin, the UI refuses", async () => {
    const u = new URL(url);
    const port = Number(u.port);
    const token = u.searchParams.get("token")!;
    const get = (path: string, headers: Record<string, string> = {}, method = "GET") =>
      new Promise<{ status: number; body: string }>((resolve, reject) => {
        const req = http.request({ host: "127.0.0.1", port, path, method, headers }, (res) => {
          let body = "";
          res.on("data", (c: Buffer) => (body += c));
          res.on("end", () => resolve({ status: res.statusCode!, body }));
        });
        req.on("error", reject);
        req.end();
      });
    assert.equal((await get(`/?token=${token}`)).status, 200);
    const none = await get("/");
    assert.equal(none.status, 401);
    assert.match(none.body, /token/);
    assert.equal((await get("/?token=wrong")).status, 401);
    const rebound = await get(`/?token=${token}`, { host: `attacker.example:${port}` });
    assert.equal(rebound.status, 403);
    assert.match(rebound.body, /Host/);
    assert.equal((await get(`/api/open?token=${token}&name=x.mitm`, { origin: "http://attacker.example" }, "POST")).status, 403);
    const ws = (headers: Record<string, string>, query = `?token=${token}`) =>
      new Promise<number>((resolve) => {
        const socket = new WebSocket(`ws://127.0.0.1:${port}/updates${query}`, { headers });
        socket.on("open", () => {
          socket.close();
          resolve(101);
        });
        socket.on("unexpected-response", (_req, res) => resolve(res.statusCode!));
        socket.on("error", () => {});
      });
    assert.equal(await ws({ origin: `http://127.0.0.1:${port}` }), 101, "the UI's own origin with the token is let in");
    assert.equal(await ws({ origin: "http://attacker.example" }), 403, "a cross-origin WebSocket is refused");
    assert.equal(await ws({ origin: `http://127.0.0.1:${port}` }, ""), 401, "a WebSocket without the token is refused");
    assert.equal(await ws({ host: `attacker.example:${port}`, origin: `http://attacker.example:${port}` }), 403, "a rebound Host is refused");
    // The proxy's own port never serves the UI.
    const viaProxyPort = await new Promise<number>((resolve) => {
      http.get({ host: "127.0.0.1", port: proxy.port, path: `/?token=${token}` }, (res) => {
        res.resume();
        resolve(res.statusCode!);
      });
    });
    assert.notEqual(viaProxyPort, 200);
    // Nor does the proxy forward a request to the UI: a page browsing through sluice cannot drive it.
    const through = await curl(proxy.port, ["-o", "/dev/null", "-w", "%{http_code}", `${url}`]);
    assert.equal(through.stdout, "403");
  });
});

describe("sluice web start-up errors", () => {
  // The CA exists, as on any run but the first, so no "created a new certificate authority" line
  // comes before the error (even when the chromium tests that would have made it were skipped).
  before(async () => {
    const ca = await run(process.execPath, [SLUICE_BIN, "ca", "--confdir", testConfdir()]);
    assert.equal(ca.code, 0, ca.stderr);
  });

  test("a taken UI port is one clear line and exit status 1", async () => {
    const blocker = net.createServer();
    await new Promise<void>((r) => blocker.listen(0, "127.0.0.1", r));
    const port = (blocker.address() as net.AddressInfo).port;
    try {
      const r = await run(process.execPath, [SLUICE_BIN, "web", "-p", "0", "--confdir", testConfdir(), "--set", `web_port=${port}`], { timeoutMs: 30_000 });
      assertOneLineError(r, new RegExp(`web UI not started: port ${port} on 127.0.0.1 is in use; pick another with --set web_port=PORT`), "port taken", 1);
    } finally {
      blocker.close();
    }
  });

  test("web_open_browser hands the URL with its token to the system's opener (xdg-open)", async () => {
    const bin = mkdtempSync(join(tmpdir(), "sluice-opener-"));
    const opened = join(bin, "opened.txt");
    writeFileSync(join(bin, "xdg-open"), `#!/bin/sh\nprintf '%s' "$1" > ${JSON.stringify(opened)}\n`, { mode: 0o755 });
    const web = await spawnSluice(["web", "-p", "0", "--set", "web_port=0", "--confdir", testConfdir(), "--set", "web_open_browser=true", "--set", "web_password=opened-token"], { env: { ...process.env, PATH: `${bin}:${process.env.PATH}` } });
    try {
      const url = await webUrlOf(web);
      assert.match(url, /\?token=opened-token$/);
      for (let i = 0; i < 100 && !existsSync(opened); i++) await new Promise((r) => setTimeout(r, 50));
      assert.equal(readFileSync(opened, "utf8"), url);
    } finally {
      await web.stop();
      rmSync(bin, { recursive: true, force: true });
    }
  });

  test("the UI never shares the proxy's port", async () => {
    const r = await run(process.execPath, [SLUICE_BIN, "web", "-p", "18673", "--confdir", testConfdir(), "--set", "web_port=18673"], { timeoutMs: 30_000 });
    assertOneLineError(r, /the web UI cannot share the proxy's port 18673/, "same port", 1);
  });
});
