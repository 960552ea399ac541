/**
 * Shaping rules: `FILTER => RATE [k=v …]` specs and rules-file mappings parsed into typed,
 * checked rules (every mistake is one ShapeRuleError line naming the rule), and explained in words
 * for `shaping.status`.
 */
import type { FlowPredicate } from "../core/filter.js";
import { formatDuration, formatRate, parseDuration, parseRate } from "../core/values.js";
import { MIN_RATE } from "../core/adaptive-rate.js";
import { parseRuleSpec, RuleSpecError, specFromObject, type RuleSpec } from "../rules/spec.js";
import { readRulesFile, type RuleSource } from "../rules/file.js";
import { isKeyKind, KEY_KINDS, KEY_KIND_HELP, type KeyKind } from "../rules/keys.js";
import { AWS_LIMITS_OPTIONS, AWS_LIMITS_USAGE, explainAwsLimitsOptions, parseAwsLimitsOptions, type AwsLimitsOptions } from "../aws/index.js";

const EXAMPLE = "'~svc ec2 => 20/s burst=5 per=operation'";
const SHAPE_OBJECT = { actionKey: "rate", missingAction: "add rate: 20/s (or rate: adaptive)", example: EXAMPLE };
const OPTION_NAMES = ["burst", "per", "fair", "max-queue", "max-wait", "overflow", "status", "start", "min", "max", "id", "name", ...AWS_LIMITS_OPTIONS];
const DEFAULT_MAX_QUEUE = 10_000;
const DEFAULT_MAX_WAIT_MS = 60_000;
const DEFAULT_ADAPTIVE_START = 10;

export interface ShapeRule {
  id: string;
  /** `name=`: the rule's identity across a fleet (else its text is). */
  name: string | null;
  text: string;
  filter: FlowPredicate;
  /** Fixed rate (requests/s), or the starting rate of an adaptive rule. */
  rate: number;
  adaptive: { min: number; max: number } | null;
  /** `aws-limits [scale=F] [depth=N] …`: queue to AWS's documented limits (aws/limits.ts) instead of one rate. */
  awsLimits: (AwsLimitsOptions & { scale: number; depth: number }) | null;
  burst: number;
  /** What gets its own budget (token bucket). */
  per: KeyKind;
  /** Within a budget, what waits in its own lane (served round-robin). */
  fair: KeyKind;
  maxQueue: number;
  maxWaitMs: number;
  overflow: "reject" | "pass";
  status: 429 | 503;
}

export class ShapeRuleError extends Error {}

/** Parses one rule (a spec string, or an object from a rules file) into a checked rule. */
export function parseShapeRule(source: string | Record<string, unknown>, index: number, compile: (expr: string) => FlowPredicate): ShapeRule {
  let spec: RuleSpec;
  try {
    // `--shape aws-limits` needs no filter: AWS's limits apply to the calls they name.
    if (typeof source === "string") spec = parseRuleSpec(/^\s*aws-limits\b/.test(source) && !source.includes("=>") ? `=> ${source.trim()}` : source, EXAMPLE);
    else {
      const parsed = specFromObject(source, SHAPE_OBJECT);
      spec = parsed.spec;
      if (parsed.enabled !== null) throw new RuleSpecError(`rule ${JSON.stringify(spec.text)}: enabled does not apply to shaping rules (remove the rule instead)`);
    }
  } catch (err) {
    throw new ShapeRuleError(err instanceof RuleSpecError ? `shaping ${err.message}` : (err as Error).message);
  }
  const where = `shaping rule ${JSON.stringify(spec.text)}`;
  const fail = (msg: string): never => {
    throw new ShapeRuleError(`${where}: ${msg}`);
  };
  const o = spec.options;
  for (const name of Object.keys(o)) {
    if (!OPTION_NAMES.includes(name)) fail(`unknown option ${name}=; options are ${OPTION_NAMES.map((n) => n + "=").join(" ")}`);
  }
  const rate = (text: string, what: string): number => {
    try {
      return parseRate(text);
    } catch (err) {
      return fail(`${what}: ${(err as Error).message}`);
    }
  };
  const adaptive = spec.action.toLowerCase() === "adaptive";
  const awsLimits = spec.action.toLowerCase() === "aws-limits";
  let base: number;
  let limits: ShapeRule["awsLimits"] = null;
  if (!awsLimits) for (const name of AWS_LIMITS_OPTIONS) if (o[name] !== undefined) fail(`${name}= only applies to aws-limits rules (FILTER => aws-limits scale=0.5)`);
  if (awsLimits) {
    if (spec.args.length) fail(`unexpected ${JSON.stringify(spec.args[0])}: write ${AWS_LIMITS_USAGE}`);
    for (const name of ["start", "min", "max", "burst", "per", "fair"]) if (o[name] !== undefined) fail(`${name}= does not apply to aws-limits: AWS's limits say their own rates, bursts and keys (scale= makes them tighter or looser)`);
    try {
      limits = parseAwsLimitsOptions(o);
    } catch (err) {
      fail((err as Error).message);
    }
    base = 1;
  } else if (adaptive) {
    if (spec.args.length > 1) fail(`unexpected ${JSON.stringify(spec.args[1])}: write adaptive start=RATE [min=RATE] [max=RATE]`);
    const startText = o.start ?? spec.args[0];
    base = startText === undefined ? DEFAULT_ADAPTIVE_START : rate(startText, "start");
  } else {
    if (spec.args.length) fail(`unexpected ${JSON.stringify(spec.args[0])} after the rate: write FILTER => RATE [burst=N] [per=…] [max-queue=N] [max-wait=DURATION], e.g. ${EXAMPLE}`);
    for (const name of ["start", "min", "max"]) if (o[name] !== undefined) fail(`${name}= only applies to adaptive rules (FILTER => adaptive start=RATE)`);
    base = /^\d/.test(spec.action) ? rate(spec.action, "rate") : fail(`${JSON.stringify(spec.action)} is not a rate: write a rate such as 20/s or 100/min, or adaptive start=20/s`);
  }
  const int = (name: string, def: number, min: number): number => {
    const v = o[name];
    if (v === undefined) return def;
    if (!/^\d+$/.test(v) || Number(v) < min) fail(`${name}= expects a whole number of at least ${min}, got ${JSON.stringify(v)}`);
    return Number(v);
  };
  const kind = (name: string, def: KeyKind): KeyKind => {
    const v = (o[name] ?? def).toLowerCase();
    if (!isKeyKind(v)) return fail(`${name}= expects one of ${KEY_KINDS.join(", ")}, got ${JSON.stringify(o[name])}`);
    return v;
  };
  let maxWaitMs = DEFAULT_MAX_WAIT_MS;
  if (o["max-wait"] !== undefined) {
    try {
      maxWaitMs = /^(none|off|inf)$/i.test(o["max-wait"]) ? Infinity : parseDuration(o["max-wait"]);
    } catch (err) {
      fail(`max-wait: ${(err as Error).message}`);
    }
  }
  const overflow = (o.overflow ?? "reject").toLowerCase();
  if (overflow !== "reject" && overflow !== "pass") fail(`overflow= expects reject or pass, got ${JSON.stringify(o.overflow)}`);
  const status = Number(o.status ?? 429);
  if (status !== 429 && status !== 503) fail(`status= expects 429 or 503, got ${JSON.stringify(o.status)}`);
  const per = kind("per", "rule");
  let filter: FlowPredicate;
  try {
    filter = compile(spec.filter);
  } catch (err) {
    return fail(`bad filter ${JSON.stringify(spec.filter)}: ${(err as Error).message}`);
  }
  const min = adaptive && o.min !== undefined ? rate(o.min, "min") : MIN_RATE;
  const max = adaptive && o.max !== undefined ? rate(o.max, "max") : Infinity;
  if (adaptive && min > max) fail(`min= (${min}/s) is above max= (${max}/s)`);
  return {
    id: o.id ?? String(index + 1),
    name: o.name === undefined ? null : /^[\w.-]+$/.test(o.name) ? o.name : fail(`name= must be letters, digits, '-', '_' or '.', got ${JSON.stringify(o.name)}`),
    text: spec.text,
    filter,
    rate: base,
    adaptive: adaptive ? { min, max } : null,
    awsLimits: limits,
    burst: int("burst", 1, 1),
    per,
    fair: kind("fair", per === "rule" || per === "host" || per === "service" ? "operation" : per),
    maxQueue: o["max-queue"] === undefined ? DEFAULT_MAX_QUEUE : int("max-queue", DEFAULT_MAX_QUEUE, 0),
    maxWaitMs,
    overflow: overflow as "reject" | "pass",
    status: status as 429 | 503,
  };
}

/** Reads a YAML list of rules: spec strings or mappings. */
export function readShapeFile(path: string): RuleSource[] {
  return readRulesFile(path, {
    flag: "--shapes",
    listKey: "shapes",
    example: 'e.g. - "~svc ec2 => 20/s" or - {filter: "~svc s3", rate: adaptive, start: 100/s}',
    error: (message) => new ShapeRuleError(message),
  });
}

/** A rule in words: its rate and what it counts against, queues and refuses. */
export function explainShapeRule(r: ShapeRule): string {
  const overflowText = r.overflow === "pass" ? "pass through unshaped" : `are answered ${r.status}`;
  if (r.awsLimits) {
    return `queue each request until every AWS limit it falls under has room (sluice limits${r.awsLimits.scale === 1 ? "" : ` scale=${r.awsLimits.scale}`}; ${explainAwsLimitsOptions(r.awsLimits)}), with each limit's own rate, burst and key; beyond ${r.maxQueue} queued or a wait over ${formatDuration(r.maxWaitMs)} for one limit, requests ${overflowText}`;
  }
  const rate = r.adaptive
    ? `adaptive: start at ${formatRate(r.rate)}, cut on throttling answers and grow back (between ${formatRate(r.adaptive.min)} and ${Number.isFinite(r.adaptive.max) ? formatRate(r.adaptive.max) : "no ceiling"})`
    : `at most ${formatRate(r.rate)}`;
  const overflow = r.overflow === "pass" ? "pass through unshaped" : `are answered ${r.status}`;
  return `${rate}, burst ${r.burst}, ${KEY_KIND_HELP[r.per]}; waiting requests take turns by ${r.fair}; beyond ${r.maxQueue} queued or a wait over ${formatDuration(r.maxWaitMs)}, requests ${overflow}`;
}
