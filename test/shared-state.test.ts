/**
 * The shared-state interface behind fault budgets and shaping: the in-process implementation's
 * semantics, and the features working the same over an asynchronous implementation (as a network
 * store answers) and across two masters sharing one store (as two processes would).
 */
import { test, describe } from "node:test";
import assert from "node:assert/strict";
import { InProcessState, type SharedState, type RateLimit, type AdaptiveEvent } from "../src/core/shared-state.js";
import type { AdaptiveRateOptions } from "../src/core/adaptive-rate.js";
import { Faults } from "../src/addons/faults.js";
import { Shaping } from "../src/addons/shaping.js";
import { contextWith } from "./support/taddons.js";
import { tflow } from "./support/tflow.js";

/** The in-process state answering every call with a promise, a turn later, as Redis would. */
class AsyncState implements SharedState {
  readonly description = "async test double";
  calls = 0;
  constructor(private readonly inner = new InProcessState()) {}
  private later<T>(value: T): Promise<T> {
    this.calls++;
    return new Promise((resolve) => setImmediate(() => resolve(value)));
  }
  take(key: string, limit: RateLimit, n: number, at: number) {
    return this.later(this.inner.take(key, limit, n, at));
  }
  adaptive(key: string, opts: AdaptiveRateOptions, event: AdaptiveEvent, at: number) {
    return this.later(this.inner.adaptive(key, opts, event, at));
  }
  forget(prefix: string) {
    return this.later(this.inner.forget(prefix));
  }
  charge(key: string, limit: RateLimit, n: number, at: number) {
    return this.later(this.inner.charge(key, limit, n, at));
  }
  enterSlot(key: string, holder: string, max: number) {
    return this.later(this.inner.enterSlot(key, holder, max));
  }
  leaveSlot(key: string, holder: string) {
    return this.later(this.inner.leaveSlot(key, holder));
  }
}

describe("InProcessState", () => {
  test("charge takes into debt (a cost known after admission); slots admit at most max holders until they leave", () => {
    const s = new InProcessState();
    const limit = { rate: 10, burst: 5 };
    s.charge("k", limit, 8, 0);
    const refused = s.take("k", limit, 1, 0);
    assert.equal(refused.granted, false, "5 − 8: 3 in debt");
    assert.ok(Math.abs(refused.waitMs - 400) < 1e-9, `4 tokens at 10/s: ${refused.waitMs}`);
    assert.equal(s.take("k", limit, 1, 400).granted, true);
    assert.equal(s.enterSlot("f", "a", 2), true);
    assert.equal(s.enterSlot("f", "b", 2), true);
    assert.equal(s.enterSlot("f", "c", 2), false);
    s.leaveSlot("f", "a");
    s.leaveSlot("f", "a");
    assert.equal(s.enterSlot("f", "c", 2), true, "a's slot went to c; leaving twice frees one slot");
    s.leaveSlot("f", "b");
    s.leaveSlot("f", "c");
    assert.equal(s.slotsHeld, 0);
  });

  test("take: a full bucket of `burst`, refilled at `rate`; a refusal says how long to wait", () => {
    const s = new InProcessState();
    const limit = { rate: 10, burst: 2 };
    assert.deepEqual(s.take("k", limit, 1, 0), { granted: true, waitMs: 0 });
    assert.deepEqual(s.take("k", limit, 1, 0), { granted: true, waitMs: 0 });
    const refused = s.take("k", limit, 1, 0);
    assert.equal(refused.granted, false);
    assert.ok(Math.abs(refused.waitMs - 100) < 1e-9, `waitMs ${refused.waitMs}`);
    assert.equal(s.take("k", limit, 1, 100).granted, true, "one token after 100 ms at 10/s");
    assert.equal(s.take("other", limit, 1, 100).granted, true, "keys are separate");
    assert.equal(s.take("k", limit, 2, 100).granted, false, "n tokens or none");
    assert.equal(s.take("k", limit, 2, 300).granted, true);
  });

  test("a changed rate applies from now on, keeping the tokens earned at the old one", () => {
    const s = new InProcessState();
    s.take("k", { rate: 1, burst: 1 }, 1, 0);
    // 500 ms at 1/s earned half a token; at 10/s the other half takes 50 ms.
    const g = s.take("k", { rate: 10, burst: 1 }, 1, 500);
    assert.equal(g.granted, false);
    assert.ok(Math.abs(g.waitMs - 50) < 1e-6, `waitMs ${g.waitMs}`);
  });

  test("adaptive: cut on throttle, grow on success; forget drops a rule's keys; idle keys are swept", () => {
    const s = new InProcessState(1000, 5000);
    const opts = { start: 100 };
    assert.equal(s.adaptive("shape/1/k", opts, { kind: "read" }, 0).rate, 100);
    const cut = s.adaptive("shape/1/k", opts, { kind: "throttle", sentAt: 0 }, 10);
    assert.ok(cut.cut && Math.abs(cut.rate - 70) < 1e-9 && cut.throttles === 1);
    assert.ok(s.adaptive("shape/1/k", opts, { kind: "success" }, 5000).rate > 70);
    s.take("shape/1/k", { rate: 1, burst: 1 }, 1, 0);
    s.take("fault/1/x", { rate: 1, burst: 1 }, 1, 0);
    s.forget("shape/1/");
    assert.deepEqual(s.size, { buckets: 1, adaptive: 0 });
    s.take("fresh", { rate: 1, burst: 1 }, 1, 60_000);
    assert.deepEqual(s.size, { buckets: 1, adaptive: 0 }, "the idle, full bucket went");
  });
});

describe("features over any implementation", () => {
  test("faults: a rate budget is shared by two masters on one store", async () => {
    const state = new InProcessState();
    const a = await contextWith({ state }, new Faults());
    const b = await contextWith({ state }, new Faults());
    const rules = { fault_rules: ["~all => throttle rate=1/h burst=2"] };
    await a.configure(rules);
    await b.configure(rules);
    const outcomes: (number | null)[] = [];
    for (const tctx of [a, b, a, b]) {
      const f = tflow();
      await tctx.trigger("request", f);
      outcomes.push(f.response?.statusCode ?? null);
    }
    assert.equal(outcomes.slice(0, 2).every((s) => s === null), true, `the first two pass: ${outcomes}`);
    assert.ok(outcomes.slice(2).every((s) => s !== null && s >= 400), `the rest, from either master, are throttled: ${outcomes}`);
  });

  test("faults over an asynchronous store", async () => {
    const state = new AsyncState();
    const tctx = await contextWith({ state }, new Faults());
    await tctx.configure({ fault_rules: ["~u /never => status 500", "~all => throttle rate=1/h burst=1"] });
    const first = tflow();
    await tctx.trigger("request", first);
    const second = tflow();
    await tctx.trigger("request", second);
    assert.equal(first.response, null);
    assert.ok(second.response && second.response.statusCode >= 400);
    assert.ok(state.calls >= 2, "the budget was asked through the interface");
  });

  test("shaping over an asynchronous store: requests leave in order at the rate, adaptive rates learn", async () => {
    const state = new AsyncState();
    const tctx = await contextWith({ state }, new Shaping());
    await tctx.configure({ shape_rules: ["~all => adaptive start=50/s"] });
    const order: number[] = [];
    const started = performance.now();
    await Promise.all(
      Array.from({ length: 6 }, async (_, i) => {
        const f = tflow({ path: `/${i}` });
        await tctx.trigger("request", f);
        order.push(i);
        assert.equal(f.response, null);
        f.response = tflow({ status: i === 0 ? 429 : 200, resHeaders: { "content-type": "application/json" }, resBody: i === 0 ? '{"__type":"ThrottlingException"}' : "{}" }).response;
        await tctx.trigger("response", f);
      }),
    );
    const elapsed = performance.now() - started;
    assert.deepEqual(order, [0, 1, 2, 3, 4, 5]);
    assert.ok(elapsed >= 50, `6 requests at ≤50/s with burst 1 take ≥ 5 intervals, took ${elapsed.toFixed(0)} ms`);
    assert.match(String(await tctx.command("shaping.status")), /all: rate [\d.]+\/s, queued 0, .*1 cut on 1 throttle/);
    await tctx.trigger("done");
  });
});
