/** Options that roll back when an addon refuses them, typed reads, and the taddons harness. */
import { test, describe } from "node:test";
import assert from "node:assert/strict";
import { OMITTED_VALUE, Options, declareOptions } from "../src/core/options.js";
import { parseProxyArgs } from "../src/cli/args.js";
import { CommandManager } from "../src/core/commands.js";
import { Faults } from "../src/addons/faults.js";
import { Shaping } from "../src/addons/shaping.js";
import type { Addon, AddonContext } from "../src/core/addons.js";
import { context } from "./support/taddons.js";
import { tflow } from "./support/tflow.js";

describe("a refused value is rolled back", () => {
  test("Options: a listener that throws leaves the old value, and hears the rollback", () => {
    const options = new Options();
    options.add({ name: "n", type: "int", default: 1, help: "" });
    const heard: number[] = [];
    options.onChange(() => {
      const n = options.get<number>("n");
      heard.push(n);
      if (n > 10) throw new Error(`n must be at most 10, got ${n}`);
    });
    assert.throws(() => options.set("n", "11"), /n must be at most 10, got 11/);
    assert.equal(options.get("n"), 1);
    assert.deepEqual(heard, [11, 1], "told of the new value, then of the old one");
    options.set("n", "5");
    assert.equal(options.get("n"), 5);
  });

  test("Options: an async refusal rolls back too", async () => {
    const options = new Options();
    options.add({ name: "s", type: "string", default: "ok", help: "" });
    options.onChange(async () => {
      await new Promise((r) => setTimeout(r, 1));
      if (options.get("s") === "bad") throw new Error("no");
    });
    await assert.rejects(Promise.resolve(options.set("s", "bad")), /no/);
    assert.equal(options.get("s"), "ok");
  });

  test("the set command: an addon refusing a value leaves the old one, and says so in one line", async () => {
    const faults = new Faults();
    const tctx = await context(faults);
    await tctx.command("set fault_rules=~u /a => status 503");
    await assert.rejects(tctx.command("set fault_rules=~u /b => explode"), (err: Error) => {
      assert.match(err.message, /^set: faults: fault rule "~u \/b => explode": unknown action "explode".*; fault_rules is still "~u \/a => status 503"$/);
      assert.ok(!err.message.includes("\n"));
      return true;
    });
    assert.deepEqual(tctx.master.options.get("fault_rules"), ["~u /a => status 503"]);
    assert.deepEqual(faults.list().map((r) => r.rule), ["~u /a => status 503"], "the addon keeps the rules it had");
  });

  test("a later addon refusing rolls back an earlier addon that had accepted", async () => {
    const seen: string[] = [];
    const accepting: Addon = {
      name: "accepting",
      load: (ctx: AddonContext) => {
        ctx.options.add({ name: "shared", type: "string", default: "a", help: "" });
        accepting.configure = () => void seen.push(ctx.options.get<string>("shared"));
      },
    };
    let ctxRef: AddonContext;
    const refusing: Addon = {
      name: "refusing",
      load: (ctx) => void (ctxRef = ctx),
      configure: () => {
        if (ctxRef.options.get("shared") === "z") throw new Error("z is not allowed");
      },
    };
    const tctx = await context(accepting, refusing);
    seen.length = 0;
    await assert.rejects(tctx.configure({ shared: "z" }), /refusing: z is not allowed/);
    assert.deepEqual(seen, ["z", "a"], "the accepting addon went back to the old value");
    assert.equal(tctx.master.options.get("shared"), "a");
  });
});

describe("addon logic through hooks (taddons + tflow)", () => {
  test("faults: a rule answers in request, first=N counts, fault.list explains", async () => {
    const faults = new Faults();
    const tctx = await context(faults);
    await tctx.configure({ fault_rules: ["~u /x => status 503 first=1"] });
    const a = tflow({ path: "/x", status: 200 });
    await tctx.trigger("responseHeaders", a);
    assert.equal(a.response?.statusCode, 503);
    const b = tflow({ path: "/x", status: 200 });
    await tctx.trigger("responseHeaders", b);
    assert.equal(b.response?.statusCode, 200, "first=1: only the first");
    assert.match(String(await tctx.command("fault.list")), /\(matched 2, injected 1, from option\)\n    replace the status .* the first 1 matching requests/);
  });

  test("shaping: a request over a full queue is answered locally, naming the rule", async () => {
    const tctx = await context(new Shaping());
    await tctx.configure({ shape_rules: ["~all => 1/min max-queue=0"] });
    const first = tflow();
    await tctx.trigger("request", first);
    assert.equal(first.response, null, "the first request passes");
    const second = tflow();
    await tctx.trigger("request", second);
    assert.equal(second.response?.statusCode, 429);
    assert.match(second.response!.text ?? "", /rule 1 \(~all => 1\/min max-queue=0\)/);
    await tctx.trigger("done");
  });
});

describe("declared once", () => {
  test("typed option reads: a live view generated from the declarations", async () => {
    const options = new Options();
    const core = options.register(declareOptions({ port: { type: "int", default: 8080, help: "" }, hosts: { type: "strings", default: [], help: "" } }));
    const port: number = core.port;
    assert.equal(port, 8080);
    options.set("port", "9090");
    assert.equal(core.port, 9090, "the view reads the current value");
    // @ts-expect-error: a strings option reads as string[], not string
    const wrong: string = core.hosts;
    assert.deepEqual(wrong, []);
    const tctx = await context();
    assert.equal(typeof tctx.master.core.listen_port, "number");
    assert.equal(tctx.master.core.connect_timeout, 10);
  });

  test("command parameters and run's arguments come from one declaration", async () => {
    const commands = new CommandManager(() => undefined);
    commands.add({ name: "t.add", help: "", params: [{ name: "a", type: "int" }, { name: "b", type: "int", optional: true }], run: (a, b) => a + (b ?? 0) });
    assert.equal(await commands.execute("t.add 2 3"), 5);
    assert.equal(await commands.execute("t.add 2"), 2);
    // @ts-expect-error: an int parameter arrives as a number, not a string
    commands.add({ name: "t.bad", help: "", params: [{ name: "a", type: "int" }], run: (a: string) => a.length });
  });
});

describe("--set NAME without a value, as in mitmproxy", () => {
  test("a true/false option becomes true, an optional string unset, a list empty; another option is refused", () => {
    const args = parseProxyArgs(["--set", "ssl_insecure", "--set", "intercept", "--set", "ignore_hosts", "--set", "listen_port"]);
    assert.equal(args.set.ssl_insecure, OMITTED_VALUE);
    const options = new Options();
    options.add({ name: "ssl_insecure", type: "bool", default: false, help: "" });
    options.add({ name: "intercept", type: "optional-string", default: "~q", help: "" });
    options.add({ name: "ignore_hosts", type: "strings", default: ["a"], help: "" });
    options.add({ name: "listen_port", type: "int", default: 8080, help: "" });
    for (const name of ["ssl_insecure", "intercept", "ignore_hosts"]) options.set(name, args.set[name]!);
    assert.equal(options.get("ssl_insecure"), true);
    assert.equal(options.get("intercept"), null);
    assert.deepEqual(options.get("ignore_hosts"), []);
    assert.throws(() => options.set("listen_port", args.set.listen_port!), /option listen_port needs a value: --set listen_port=VALUE/);
    assert.equal(options.get("listen_port"), 8080);
  });
});
