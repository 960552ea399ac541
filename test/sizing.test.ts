/**
 * What sluice reserves for load (issue 20): the listen backlog, the view `sluice dump` keeps, and
 * flow ids that need no randomness per flow. Performance itself is measured in `npm run bench`.
 */
import { test } from "node:test";
import { needs } from "./support/needs.js";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { Master } from "../src/proxy/master.js";
import { DUMP_VIEW } from "../src/core/view.js";
import { HTTPFlow, Request, newClientConnection, newId, newServerConnection } from "../src/core/flow.js";
import { Headers } from "../src/core/headers.js";
import { startSluice } from "./support/sluice.js";
import { run } from "./support/run.js";

/** The accept-queue length of the socket listening on `port`, as the kernel reports it (ss's Send-Q). */
async function listenBacklog(port: number): Promise<number> {
  const r = await run("ss", ["-ltnH", `sport = :${port}`]);
  assert.equal(r.code, 0, r.stderr);
  const fields = r.stdout.trim().split(/\s+/);
  return Number(fields[2]);
}

const somaxconn = Number(readFileSync("/proc/sys/net/core/somaxconn", "utf8"));

test("the listen backlog defaults to 4096 (Node's 511 overflows at a thousand clients) and follows --set backlog", async (t) => {
  const missing = needs("ss", "iproute2");
  if (missing) return t.skip(missing);
  const wide = await startSluice();
  const narrow = await startSluice({ set: { backlog: "64" } });
  try {
    assert.equal(await listenBacklog(wide.port), Math.min(4096, somaxconn));
    assert.equal(await listenBacklog(narrow.port), 64);
  } finally {
    await Promise.all([wide.close(), narrow.close()]);
  }
});

test("a backlog of 0 is refused with a sentence, not silently replaced by the kernel's default", async () => {
  await assert.rejects(startSluice({ set: { backlog: "0" } }), /option backlog expects a whole number of at least 1, got "0"/);
});

test("sluice dump's view is small by default; the console and web UI keep more; --set still wins", async () => {
  const dump = new Master({ view: DUMP_VIEW });
  const browsing = new Master();
  const tuned = new Master({ view: DUMP_VIEW, set: { view_max_flows: "5000" } });
  await Promise.all([dump.configure(), browsing.configure(), tuned.configure()]);
  assert.equal(dump.options.get("view_max_flows"), 100);
  assert.equal(dump.options.get("view_max_bytes"), 16 * 1024 * 1024);
  assert.equal(browsing.options.get("view_max_flows"), 50_000);
  assert.equal(tuned.options.get("view_max_flows"), 5000);
  // The dump view really stops at its size: finished flows past it are forgotten.
  for (let i = 0; i < 1500; i++) {
    const f = new HTTPFlow(newClientConnection(), newServerConnection(), new Request({ method: "GET", scheme: "http", host: "h", port: 80, path: "/", authority: "h", httpVersion: "HTTP/1.1", headers: new Headers([]) }));
    dump.view.add(f);
  }
  assert.ok(dump.view.all.length <= 1000, `view holds ${dump.view.all.length} flows`);
});

test("flow ids are UUID-shaped and unique from a per-process prefix and a counter", () => {
  const ids = Array.from({ length: 10_000 }, () => newId());
  assert.equal(new Set(ids).size, ids.length);
  for (const id of [ids[0]!, ids.at(-1)!]) assert.match(id, /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
  assert.equal(new Set(ids.map((id) => id.slice(0, 24))).size, 1, "one random prefix per process");
});
