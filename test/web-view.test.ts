/**
 * The web UI's server side without a browser: a tab's live view (incremental filter, sort,
 * paging, the view's trims, a filter over a large view in slices with progress), the filter
 * error position and the guard's Host check. ("Copy as" runs the `export` command's code, tested in
 * export-cut.test.ts, and end to end in web.test.ts.)
 */
import { test, describe } from "node:test";
import assert from "node:assert/strict";
import { FlowView } from "../src/core/view.js";
import { LiveView, checkFilter } from "../src/ui/web/live-view.js";
import { hostIsOurs, tokenMatches } from "../src/ui/web/guard.js";
import { EventEmitter } from "node:events";
import { readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { bodyKind, hexDump } from "../src/ui/body-format.js";
import type { WebSocket } from "ws";
import { Session } from "../src/ui/web/session.js";
import { Export } from "../src/addons/export.js";
import { context, type TContext } from "./support/taddons.js";
import { tflow } from "./support/tflow.js";
import { needs } from "./support/needs.js";

function viewOf(n: number, status = (i: number) => (i % 10 === 9 ? 503 : 200)): FlowView {
  const view = new FlowView();
  for (let i = 0; i < n; i++) view.add(tflow({ path: `/item/${i}`, status: status(i), start: 1_700_000_000 + i, took: (n - i) / 1000 }));
  return view;
}

async function settle(live: LiveView): Promise<void> {
  for (let i = 0; i < 1000 && live.rows(null).progress; i++) await new Promise((r) => setImmediate(r));
}

describe("a tab's live view", () => {
  test("pages the view without a filter: only the window's rows, with the totals", () => {
    const view = viewOf(1000);
    const live = new LiveView(view);
    live.configure({ offset: 990, limit: 50 }, () => {});
    const page = live.rows(null);
    assert.equal(page.total, 1000);
    assert.equal(page.rows.length, 10);
    assert.equal(page.rows[0]!.path, "/item/990");
  });

  test("a filter over 40,000 flows runs in slices with progress, then new flows are judged one by one", async () => {
    const view = viewOf(40_000);
    const live = new LiveView(view);
    view.onChange((e, f) => live.onViewEvent(e, f));
    let progressCalls = 0;
    live.configure({ filter: "~c 503", limit: 5 }, () => progressCalls++);
    const during = live.rows(null);
    assert.ok(during.progress && during.progress.done < during.progress.of, "still filtering after the first slice");
    await settle(live);
    assert.ok(progressCalls > 3);
    const page = live.rows(null);
    assert.equal(page.progress, null);
    assert.equal(page.total, 4_000);
    assert.equal(page.rows[0]!.path, "/item/9");
    view.add(tflow({ path: "/new/ok", status: 200 }));
    view.add(tflow({ path: "/new/bad", status: 503 }));
    assert.equal(live.rows(null).total, 4_001);
    // A flow that gets its answer later joins the filtered list then.
    const pending = tflow({ path: "/late" });
    view.add(pending);
    assert.equal(live.rows(null).total, 4_001);
    pending.response = tflow({ status: 503 }).response;
    view.update(pending);
    await settle(live);
    assert.equal(live.rows(null).total, 4_002);
  });

  test("sorts by a column either way, keeping arrival order among equals", async () => {
    const view = viewOf(30);
    const live = new LiveView(view);
    live.configure({ sort: "duration", limit: 3 }, () => {});
    await settle(live);
    assert.deepEqual(live.rows(null).rows.map((r) => r.path), ["/item/29", "/item/28", "/item/27"]);
    live.configure({ sort: "status", desc: true, limit: 3 }, () => {});
    await settle(live);
    assert.deepEqual(live.rows(null).rows.map((r) => r.status), [503, 503, 503]);
  });

  test("follows the view's trims and deletes", () => {
    const view = viewOf(0);
    const live = new LiveView(view);
    view.onChange((e, f) => live.onViewEvent(e, f));
    for (let i = 0; i < 20; i++) view.add(tflow({ path: `/t/${i}`, status: 200 }));
    view.remove(view.all[0]!);
    assert.equal(live.rows(null).total, 19);
    assert.equal(live.rows(null).rows[0]!.path, "/t/1");
  });

  test("a bad filter says where it is wrong and keeps the last good one", async () => {
    const view = viewOf(20);
    const live = new LiveView(view);
    live.configure({ filter: "~c 503" }, () => {});
    await settle(live);
    live.configure({ filter: "~c 50x" }, () => {});
    const page = live.rows(null);
    assert.equal(page.total, 2);
    assert.equal(page.filterError?.position, 3);
    assert.match(page.filterError!.message, /~c expects an integer at position 3/);
    assert.deepEqual(checkFilter("(~m GET").problem?.position !== null, true);
  });

  test("marks a flow as sluice sees it: attempt, fault, shaping, intercept", () => {
    const view = new FlowView();
    const f = tflow({ status: 503 });
    f.metadata.retry = { invocationId: "x", attempt: 2, maxAttempts: 3, inferred: true, backoffMs: 40 };
    f.metadata.fault = { rule: "1", action: "throttle" };
    f.metadata.shaping = { rule: "1", key: "k", waitMs: 1200.4 };
    f.intercept();
    view.add(f);
    const row = new LiveView(view).rows(null).rows[0]!;
    assert.deepEqual(row.marks, { attempt: 2, maxAttempts: 3, inferred: true, fault: "throttle", shapedMs: 1200, intercepted: "request" });
    assert.equal(row.kind, "fault");
  });
});

describe("the web UI's guard", () => {
  test("Host must name the UI: an IP literal, localhost or web_host, on its port", () => {
    const cfg = { port: 8081, host: "127.0.0.1" };
    assert.ok(hostIsOurs("127.0.0.1:8081", cfg));
    assert.ok(hostIsOurs("localhost:8081", cfg));
    assert.ok(hostIsOurs("[::1]:8081", cfg));
    assert.ok(!hostIsOurs("127.0.0.1:8082", cfg));
    assert.ok(!hostIsOurs("attacker.example:8081", cfg), "DNS rebinding");
    assert.ok(!hostIsOurs("127.0.0.1", cfg), "no port");
    assert.ok(hostIsOurs("sluice.lan:8081", { port: 8081, host: "sluice.lan" }));
  });

  test("tokens compare whole", () => {
    assert.ok(tokenMatches("abc", "abc"));
    assert.ok(!tokenMatches("ab", "abc"));
    assert.ok(!tokenMatches("", "abc"));
  });
});

describe("a tab's list follows view_order, and exports through the export addon", () => {
  /** A tab over a fake WebSocket: what the session sends, parsed. */
  function tab(master: TContext["master"]) {
    const sent: Record<string, unknown>[] = [];
    const socket = Object.assign(new EventEmitter(), { OPEN: 1, readyState: 1, bufferedAmount: 0, send: (d: string) => void sent.push(JSON.parse(d) as Record<string, unknown>) });
    const session = new Session(master.context, socket as unknown as WebSocket, { proxy: "127.0.0.1:0", web: "127.0.0.1:0" });
    const ask = async (msg: Record<string, unknown>) => {
      socket.emit("message", Buffer.from(JSON.stringify(msg)));
      for (let i = 0; i < 50 && !sent.some((m) => m.type === "result" && m.reqId === msg.reqId); i++) await new Promise((r) => setImmediate(r));
      return sent.find((m) => m.type === "result" && m.reqId === msg.reqId) as { ok: boolean; text: string };
    };
    const paths = () => {
      session.flush();
      const rows = sent.filter((m) => m.type === "rows").at(-1) as { rows: { path: string }[] };
      return rows.rows.map((r) => r.path);
    };
    return { session, ask, paths };
  }

  test("view_order=url and view_order_reversed order a new tab's rows, and a change re-orders open tabs", async () => {
    const tctx = await context(new Export());
    for (const p of ["/b", "/c", "/a"]) tctx.master.view.add(tflow({ path: p, status: 200 }));
    await tctx.configure({ view_order: "url" });
    const { paths, session } = tab(tctx.master);
    assert.deepEqual(paths(), ["/a", "/b", "/c"]);
    await tctx.configure({ view_order_reversed: true });
    for (let i = 0; i < 5; i++) await new Promise((r) => setImmediate(r));
    assert.deepEqual(paths(), ["/c", "/b", "/a"]);
    session.close();
  });

  test("export answers with the export addon's command: curl without a trailing newline, a binary body through @file", { skip: needs("curl", "curl") }, async () => {
    const tctx = await context(new Export());
    const text = tflow({ method: "POST", url: "http://127.0.0.1:9/p", reqBody: `{"a": 1}` });
    const binary = tflow({ method: "PUT", url: "http://127.0.0.1:9/bin", reqBody: Buffer.from([0xff, 0x00, 0xfe]) });
    tctx.master.view.add(text);
    tctx.master.view.add(binary);
    const { ask, session } = tab(tctx.master);
    const curl = await ask({ type: "export", reqId: 1, id: text.id, format: "curl" });
    assert.ok(curl.ok, curl.text);
    assert.equal(curl.text, String(await tctx.command(`export curl ${text.id}`)).replace(/\n$/, ""));
    assert.match(curl.text, /^curl .* http:\/\/127\.0\.0\.1:9\/p$/);
    const bin = await ask({ type: "export", reqId: 2, id: binary.id, format: "curl" });
    assert.ok(bin.ok, bin.text);
    assert.match(bin.text, /--data-binary @\S+\.body/);
    const bad = await ask({ type: "export", reqId: 3, id: text.id, format: "wget" });
    assert.equal(bad.ok, false);
    assert.match(bad.text, /no such export format: wget/);
    session.close();
  });
});

describe("body formatting shared by the console and the web UI", () => {
  test("one implementation: the web UI's Body imports ui/body-format rather than keeping its own copy", () => {
    const root = join(dirname(fileURLToPath(import.meta.url)), "..", "..");
    const body = readFileSync(join(root, "web", "src", "Body.tsx"), "utf8");
    assert.match(body, /from "\.\.\/\.\.\/src\/ui\/body-format"/);
    assert.doesNotMatch(body, /function (looksBinary|hexDump|prettyMarkup|kindOf)\b/);
  });

  test("kinds: by Content-Type first (declared text stays text), sniffed without one; images; binary", () => {
    const bytes = (s: string) => new TextEncoder().encode(s);
    assert.equal(bodyKind("application/json; charset=utf-8", bytes("{}")), "json");
    assert.equal(bodyKind("text/plain", bytes('{"a": 1}')), "text");
    assert.equal(bodyKind("", bytes(' {"a": 1}')), "json");
    assert.equal(bodyKind("", bytes("<Error/>")), "xml");
    assert.equal(bodyKind("image/png", new Uint8Array([0x89, 0x50])), "image");
    assert.equal(bodyKind("text/plain", new Uint8Array([0, 1, 2])), "binary");
    assert.deepEqual(hexDump(bytes("AB")), ["00000000  41 42" + " ".repeat(42) + "  AB"]);
  });
});
