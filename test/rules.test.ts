/**
 * The rule kit shared by faults and shaping, without sockets: value parsers (rates, durations,
 * booleans), key kinds, rules-file mappings, explain() and the fault actions applied to flows.
 */
import { test, describe } from "node:test";
import assert from "node:assert/strict";
import { parseBool, parseDuration, parseRate } from "../src/core/values.js";
import { Options } from "../src/core/options.js";
import { CommandManager, CommandError } from "../src/core/commands.js";
import { compileFilter } from "../src/core/filter.js";
import { KEY_KINDS, keyOf, hostOf } from "../src/rules/keys.js";
import { FAULT_ACTIONS, explainAction, explainRule, parseFaultRule, FaultRuleError, phaseOf } from "../src/addons/fault-rules.js";
import { applyFaultAction, FlowWaits } from "../src/addons/fault-actions.js";
import { explainShapeRule, parseShapeRule, ShapeRuleError } from "../src/addons/shaping-rules.js";
import { tflow } from "./support/tflow.js";

const S3_AUTH = "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20261125/eu-west-1/s3/aws4_request, SignedHeaders=host, Signature=00";

describe("rates", () => {
  test("every spelling of a unit means what it says", () => {
    const cases: [string, number][] = [
      ["10", 10], ["2.5", 2.5], ["10/s", 10], ["10/sec", 10], ["10/second", 10], ["10/seconds", 10], ["10 / S", 10],
      ["60/m", 1], ["60/min", 1], ["60/minute", 1], ["120/minutes", 2], ["3600/h", 1], ["7200/hr", 2], ["3600/hour", 1],
      ["86400/day", 1], ["172800/d", 2], ["30/10s", 3], ["6/2min", 0.05], [".5/s", 0.5],
    ];
    for (const [text, perSecond] of cases) assert.ok(Math.abs(parseRate(text) - perSecond) < 1e-9, `${text} → ${parseRate(text)}, expected ${perSecond}`);
  });

  test("anything else is refused in one line, never misread", () => {
    for (const text of ["10/ms", "10rps", "10/fortnight", "10 per second", "0/s", "10/0s", "", "/s", "1e3/s", "-5/s", "10/s/s"]) {
      assert.throws(() => parseRate(text), (err: Error) => err instanceof RangeError && /^bad rate .*e\.g\. 3500\/s$|must be more than zero/.test(err.message) && !err.message.includes("\n"), text);
    }
  });

  test("a rule with a refused rate says so, naming the rule", () => {
    assert.throws(() => parseFaultRule("~all => throttle rate=10/ms", "1", compileFilter), /fault rule "~all => throttle rate=10\/ms": rate: bad rate "10\/ms"/);
    assert.throws(() => parseShapeRule("~all => 10/ms", 0, compileFilter), /shaping rule "~all => 10\/ms": rate: bad rate "10\/ms"/);
    assert.equal(parseShapeRule("~all => 600/min", 0, compileFilter).rate, 10);
    assert.equal(parseFaultRule("~all => throttle rate=10/sec", "1", compileFilter).triggers.rate?.perSecond, 10);
  });

  test("durations", () => {
    for (const [text, ms] of [["250", 250], ["250ms", 250], ["2s", 2000], ["2sec", 2000], ["1.5m", 90_000], ["1min", 60_000], ["2h", 7_200_000], ["3 seconds", 3000]] as const) {
      assert.equal(parseDuration(text), ms, text);
    }
    for (const text of ["2 fortnights", "s", "-1s", "1d"]) assert.throws(() => parseDuration(text), /bad duration/, text);
  });
});

describe("one boolean parser", () => {
  test("options, commands and rules read true/false alike", async () => {
    const options = new Options();
    options.add({ name: "flag", type: "bool", default: false, help: "" });
    const commands = new CommandManager(() => undefined);
    let seen: unknown;
    commands.add({ name: "t.bool", help: "", params: [{ name: "b", type: "bool" }], run: (b: boolean) => (seen = b) });
    for (const [word, value] of [["YES", true], ["on", true], ["1", true], ["Off", false], ["no", false], ["0", false]] as const) {
      assert.equal(parseBool(word), value);
      options.set("flag", word);
      assert.equal(options.get("flag"), value, `option ${word}`);
      await commands.execute(`t.bool ${word}`);
      assert.equal(seen, value, `command ${word}`);
      assert.equal(parseFaultRule(`~all => close enabled=${word}`, "1", compileFilter).enabled, value, `rule ${word}`);
    }
    for (const word of ["maybe", "y", "2"]) {
      assert.equal(parseBool(word), null);
      assert.throws(() => options.set("flag", word), /expects true or false/);
      await assert.rejects(commands.execute(`t.bool ${word}`), CommandError);
      assert.throws(() => parseFaultRule(`~all => close enabled=${word}`, "1", compileFilter), /enabled= expects true or false/);
    }
  });
});

describe("key kinds", () => {
  test("faults and shaping accept the same kinds and read them alike", () => {
    for (const kind of KEY_KINDS) {
      assert.equal(parseFaultRule(`~all => throttle rate=5/s per=${kind}`, "1", compileFilter).triggers.rate?.per, kind);
      assert.equal(parseShapeRule(`~all => 5/s per=${kind}`, 0, compileFilter).per, kind);
    }
    assert.throws(() => parseFaultRule("~all => throttle rate=5/s per=planet", "1", compileFilter), /per= expects one of rule, host, client, service, operation, bucket, prefix/);
    assert.throws(() => parseShapeRule("~all => 5/s per=planet", 0, compileFilter), /per= expects one of rule, host, client, service, operation, bucket, prefix/);
  });

  test("keyOf: AWS kinds from the request, the host for other traffic", () => {
    const s3 = tflow({ url: "https://my-bucket.s3.eu-west-1.amazonaws.com/logs/2026/a.txt", reqHeaders: { host: "my-bucket.s3.eu-west-1.amazonaws.com", authorization: S3_AUTH }, client: "10.1.2.3" });
    const plain = tflow({ url: "http://origin.test:8081/x" });
    assert.equal(keyOf("rule", s3), "all");
    assert.equal(keyOf("client", s3), "10.1.2.3");
    assert.equal(keyOf("service", s3), "s3");
    assert.equal(keyOf("operation", s3), "s3.GetObject");
    assert.equal(keyOf("bucket", s3), "my-bucket");
    assert.match(keyOf("prefix", s3), /^my-bucket\/logs/);
    assert.equal(keyOf("host", s3), "my-bucket.s3.eu-west-1.amazonaws.com:443");
    for (const kind of ["service", "operation", "bucket", "prefix", "host"] as const) assert.equal(keyOf(kind, plain), "origin.test:8081", kind);
  });

  test("hostOf is the host the client asked for, before map-remote", () => {
    const f = tflow({ url: "http://127.0.0.1:9999/x" });
    f.metadata.map_remote = { from: "https://sqs.eu-west-1.amazonaws.com/x" };
    assert.equal(hostOf(f), "sqs.eu-west-1.amazonaws.com");
  });
});

describe("rules-file mappings", () => {
  test("faults and shaping read mappings with one reader: nested values are refused, underscores are dashes", () => {
    assert.throws(() => parseFaultRule({ filter: "~all", action: "throttle", p: { x: 1 } }, "1", compileFilter), (e: Error) => e instanceof FaultRuleError && /^fault rule \{filter: "~all", …\}: option p must be a plain value/.test(e.message));
    assert.throws(() => parseShapeRule({ filter: "~all", rate: "5/s", burst: [1, 2] }, 0, compileFilter), (e: Error) => e instanceof ShapeRuleError && /^shaping rule \{filter: "~all", …\}: option burst must be a plain value/.test(e.message));
    assert.equal(parseShapeRule({ filter: "~all", rate: "5/s", max_queue: 3 }, 0, compileFilter).maxQueue, 3);
    assert.equal(parseFaultRule({ filter: "~all", action: "throttle", retry_after: 2 }, "1", compileFilter).action.name, "throttle");
    assert.throws(() => parseShapeRule({ filter: "~all" }, 0, compileFilter), /shaping rule "~all => " has no rate: add rate: 20\/s/);
    assert.throws(() => parseFaultRule({ filter: "~all" }, "1", compileFilter), /fault rule "~all => " has no action: add action: throttle/);
    assert.throws(() => parseShapeRule({ filter: "~all", rate: "5/s", enabled: false }, 0, compileFilter), /enabled does not apply to shaping rules/);
    assert.equal(parseFaultRule({ filter: "~all", action: "close", enabled: false }, "1", compileFilter).enabled, false);
  });
});

describe("explain", () => {
  const examples: Record<(typeof FAULT_ACTIONS)[number], string> = {
    status: "status 503", throttle: "throttle retry-after=2", error: "error 503", delay: "delay 200ms jitter=50ms",
    bandwidth: "bandwidth 64 on=request", reset: "reset", close: "close", hang: "hang", truncate: "truncate 100", "aws-limits": "aws-limits scale=0.1",
  };

  test("every fault action explains itself, each differently", () => {
    const texts = FAULT_ACTIONS.map((name) => explainAction(parseFaultRule(`~all => ${examples[name]}`, "1", compileFilter).action));
    assert.equal(new Set(texts).size, FAULT_ACTIONS.length);
    assert.match(texts[FAULT_ACTIONS.indexOf("throttle")]!, /throttling error with Retry-After 2s/);
    assert.match(texts[FAULT_ACTIONS.indexOf("delay")]!, /by 200ms ± 50ms/);
    assert.match(texts[FAULT_ACTIONS.indexOf("bandwidth")]!, /upload to 64 KB\/s/);
  });

  test("a rule's explanation names its triggers and filter", () => {
    const rule = parseFaultRule("~svc s3 => throttle rate=100/s per=prefix p=50%", "1", compileFilter);
    assert.match(explainRule(rule), /^answer with the service's own throttling error.*; beyond 100\/s \(burst 10\) per S3 bucket\/key prefix.*with probability 50%, for requests matching ~svc s3$/);
    assert.match(explainRule(parseFaultRule("~all => reset", "1", compileFilter)), /; always$/);
  });

  test("a shaping rule explains its rate, keys and limits", () => {
    assert.match(explainShapeRule(parseShapeRule("~svc ec2 => 20/s burst=5 per=operation", 0, compileFilter)), /^at most 20\.0\/s, burst 5, per AWS service\.operation.*take turns by operation; beyond 10000 queued or a wait over 60\.0s, requests are answered 429$/);
    assert.match(explainShapeRule(parseShapeRule("~all => adaptive start=10/s overflow=pass", 0, compileFilter)), /^adaptive: start at 10\.0\/s.*pass through unshaped$/);
  });
});

describe("fault actions on flows", () => {
  test("every action applies in its own phase; none falls through to another", async () => {
    const waits = new FlowWaits();
    for (const name of FAULT_ACTIONS) {
      if (name === "hang") continue;
      const rule = parseFaultRule(`~all => ${{ delay: "delay 1ms", status: "status 418", bandwidth: "bandwidth 1", error: "error 503", truncate: "truncate 3" }[name as string] ?? name}`, "r", compileFilter);
      const f = tflow({ status: phaseOf(rule.action) === "response" ? 200 : null });
      await applyFaultAction(f, "r", rule.action, waits);
      switch (name) {
        case "status": assert.equal(f.response?.statusCode, 418); break;
        case "throttle": assert.ok(f.response && f.response.statusCode >= 400); break;
        case "error": assert.equal(f.response?.statusCode, 503); break;
        case "reset": case "close": assert.ok(f.isKilled && f.error); break;
        case "delay": assert.equal(f.response?.statusCode ?? null, null); break;
        case "bandwidth": assert.equal(f.response?.bandwidthLimit, 1024); break;
        case "truncate": assert.equal(f.response?.truncateAt, 3); break;
      }
    }
    assert.equal(waits.size, 0);
  });

  test("an action the switch does not know is an error, not a loop", () => {
    assert.throws(() => applyFaultAction(tflow(), "r", { name: "explode" } as never, new FlowWaits()), /fault action "explode" has no implementation/);
  });
});
