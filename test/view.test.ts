/** The flow view's bound: old finished flows go, live, intercepted and marked ones stay, focus follows. */
import { test } from "node:test";
import assert from "node:assert/strict";
import { FlowView, sortFlows } from "../src/core/view.js";
import { context } from "./support/taddons.js";
import { ConsoleModel } from "../src/ui/console/model.js";
import type { HTTPFlow } from "../src/core/flow.js";
import { tflow } from "./support/tflow.js";

function flow(path: string): HTTPFlow {
  return tflow({ url: `http://origin.test${path}`, reqHeaders: ["Host", "origin.test"] });
}

function viewWithMax(max: number): FlowView {
  const view = new FlowView();
  (view as unknown as { max: number }).max = max;
  return view;
}

test("past the cap the oldest finished flows are dropped down to 90% of it, in one pass", () => {
  const view = viewWithMax(100);
  const flows = Array.from({ length: 101 }, (_, i) => flow(`/${i}`));
  for (const f of flows.slice(0, 100)) view.add(f);
  assert.equal(view.all.length, 100);
  view.add(flows[100]!);
  assert.equal(view.all.length, 90);
  assert.equal(view.all[0]!.request.path, "/11");
  assert.equal(view.get(flows[0]!.id), undefined);
  for (let i = 0; i < 10; i++) view.add(flow(`/more${i}`));
  assert.equal(view.all.length, 100, "no trimming until the cap is passed again");
});

test("live, intercepted and marked flows survive trimming; a dropped focus moves to the oldest kept flow", () => {
  const view = viewWithMax(10);
  const flows = Array.from({ length: 11 }, (_, i) => flow(`/${i}`));
  flows[0]!.live = true;
  flows[1]!.marked = ":default:";
  flows[2]!.intercept();
  for (const f of flows) view.add(f);
  const kept = view.all.map((f) => f.request.path);
  assert.deepEqual(kept.slice(0, 3), ["/0", "/1", "/2"]);
  assert.equal(kept.length, 9);
  assert.ok(!kept.includes("/3") && !kept.includes("/4"));
  assert.equal(view.focus?.request.path, "/0", "the first flow was focused and is kept");
});

test("focus on a dropped flow moves to a kept one", () => {
  const view = viewWithMax(10);
  const flows = Array.from({ length: 11 }, (_, i) => flow(`/${i}`));
  for (const f of flows) view.add(f);
  assert.ok(view.focus, "focus points at a flow still in the view");
  assert.equal(view.focus!.request.path, "/2");
});

test("past view_max_bytes of kept bodies the oldest finished flows go, down to 90% of it", () => {
  const view = new FlowView();
  (view as unknown as { maxBytes: number }).maxBytes = 1000;
  const withBody = (path: string, size: number) => {
    const f = flow(path);
    f.request.content = Buffer.alloc(size);
    return f;
  };
  const marked = withBody("/marked", 100);
  marked.marked = ":default:";
  view.add(marked);
  for (let i = 0; i < 8; i++) view.add(withBody(`/${i}`, 100));
  assert.equal(view.all.length, 9, "900 bytes: under the cap");
  // A flow whose body arrives later is counted when it changes.
  const late = flow("/late");
  view.add(late);
  late.request.content = Buffer.alloc(300);
  view.update(late);
  // 1,200 bytes: drop the oldest unmarked flows until at most 900 remain, keeping the marked one.
  assert.deepEqual(view.all.map((f) => f.request.path), ["/marked", "/3", "/4", "/5", "/6", "/7", "/late"]);
  view.remove(late);
  view.add(withBody("/big", 950));
  assert.deepEqual(view.all.map((f) => f.request.path), ["/marked", "/big"], "the newest flow stays even when it alone is over the cap");
  view.clear();
  view.add(withBody("/after-clear", 500));
  assert.equal(view.all.length, 1);
});

test("view orders as mitmproxy's: time, method, url, size (request plus response body), ties in arrival order, reversed as a whole", () => {
  const a = tflow({ method: "POST", url: "http://o.test/b", reqBody: "12345", status: 200, resBody: "1", start: 30 });
  const b = tflow({ method: "GET", url: "http://o.test/c", status: 200, resBody: "1234567", start: 10 });
  const c = tflow({ method: "DELETE", url: "http://o.test/a", start: 20 });
  const d = tflow({ method: "GET", url: "http://o.test/d", status: 200, resBody: "123456", start: 40 });
  const paths = (fs: HTTPFlow[]) => fs.map((f) => f.request.path).join(" ");
  const flows = [a, b, c, d];
  assert.equal(paths(sortFlows(flows, "time", false)), "/c /a /b /d");
  assert.equal(paths(sortFlows(flows, "method", false)), "/a /c /d /b", "DELETE, GET (b before d: arrival), POST");
  assert.equal(paths(sortFlows(flows, "url", false)), "/a /b /c /d");
  assert.equal(paths(sortFlows(flows, "size", false)), "/a /b /d /c", "0, 6, 6 (arrival), 7 bytes");
  assert.equal(paths(sortFlows(flows, "size", true)), "/c /d /b /a");
  assert.deepEqual(flows, [a, b, c, d], "the input is left as it was");
});

test("console_focus_follow: a new flow the list shows takes the focus; without it the focus stays", async () => {
  const tctx = await context();
  const view = tctx.master.view;
  view.add(flow("/one"));
  view.add(flow("/two"));
  assert.equal(view.focus?.request.path, "/one");
  await tctx.configure({ console_focus_follow: true, view_filter: "!~u hidden" });
  view.add(flow("/three"));
  assert.equal(view.focus?.request.path, "/three");
  view.add(flow("/hidden"));
  assert.equal(view.focus?.request.path, "/three", "a flow the filter hides does not take the focus");
  await tctx.configure({ console_focus_follow: false });
  view.add(flow("/four"));
  assert.equal(view.focus?.request.path, "/three");
});

test("view_order accepts only mitmproxy's orders", async () => {
  const tctx = await context();
  await assert.rejects(async () => tctx.command("set view_order=status"), /view_order expects one of time, method, url, size/);
  assert.equal(tctx.master.view.options.view_order, "time");
});

test("the console list in view_order keeps a flow that just took the focus, even while its re-sort is throttled", async () => {
  const tctx = await context();
  const model = new ConsoleModel(tctx.master);
  await tctx.configure({ view_order: "url", view_order_reversed: true, console_focus_follow: true });
  for (const p of ["/b", "/c", "/a"]) tctx.master.view.add(flow(p));
  assert.deepEqual(model.shown.map((f) => f.request.path), ["/c", "/b", "/a"]);
  tctx.master.view.add(flow("/d"));
  assert.equal(model.focusIndex(), 0);
  assert.equal(model.focus?.request.path, "/d");
  assert.deepEqual(model.shown.map((f) => f.request.path), ["/d", "/c", "/b", "/a"]);
  model.close();
});
