/**
 * Fault rules: `FILTER => ACTION [args] [k=v …]` specs and rules-file entries parsed into typed,
 * checked rules. Every mistake becomes one FaultRuleError line that names the rule and says what
 * is wrong and how to write it instead.
 */
import type { FlowPredicate } from "../core/filter.js";
import { parseSize } from "../core/options.js";
import { formatDuration, formatRate, parseBool, parseDuration, parseRate } from "../core/values.js";
import { parseRuleSpec, RuleSpecError, specFromObject, type RuleSpec } from "../rules/spec.js";
import { readRulesFile, type RuleSource } from "../rules/file.js";
import { isKeyKind, KEY_KINDS, KEY_KIND_HELP, type KeyKind } from "../rules/keys.js";
import { AWS_LIMITS_OPTIONS, AWS_LIMITS_USAGE, catalogedErrorOf, cataloguedServices, closeErrorNames, explainAwsLimitsOptions, parseAwsLimitsOptions, servicesWithError, signingNameOf, type AwsLimitsOptions } from "../aws/index.js";

export const FAULT_EXAMPLE = "'~svc s3 => throttle p=0.3'";
const FAULT_OBJECT = { actionKey: "action", missingAction: "add action: throttle (or status, error, delay, bandwidth, reset, close, hang, truncate)", example: FAULT_EXAMPLE };

export const FAULT_ACTIONS = ["status", "throttle", "error", "delay", "bandwidth", "reset", "close", "hang", "truncate", "aws-limits"] as const;
export type FaultActionName = (typeof FAULT_ACTIONS)[number];

export type FaultAction =
  | { name: "status"; status: number }
  | { name: "throttle"; retryAfterSeconds: number | null }
  /** `error 500|503` (code null: the service's InternalError / ServiceUnavailable) or `error CODE [status=N]` by name. */
  | { name: "error"; status: number | null; code: string | null; retryAfterSeconds: number | null }
  | { name: "delay"; ms: number; jitterMs: number; dist: DelayDistribution; on: "request" | "response" }
  | { name: "bandwidth"; bytesPerSecond: number; on: "request" | "response" }
  | { name: "reset" }
  | { name: "close" }
  | { name: "hang" }
  | { name: "truncate"; bytes: number }
  | ({ name: "aws-limits" } & AwsLimitsOptions & { scale: number; depth: number });

export const DELAY_DISTRIBUTIONS = ["uniform", "normal", "exponential"] as const;
export type DelayDistribution = (typeof DELAY_DISTRIBUTIONS)[number];

export interface FaultTriggers {
  /** Chance that a matching request gets the fault (0..1); null: always. */
  probability: number | null;
  /** Only the first N matching requests. */
  first: number | null;
  /** Only every Nth matching request (N, 2N, …). */
  every: number | null;
  /** Only after N matching requests went through untouched. */
  after: number | null;
  /** Time window since the rule was loaded, in ms: [fromMs, untilMs). */
  fromMs: number | null;
  untilMs: number | null;
  /** Requests within this budget pass; the excess gets the fault. */
  rate: { perSecond: number; burst: number; per: KeyKind } | null;
}

export interface FaultRule {
  id: string;
  /** `name=`: the rule's identity across a fleet, for its rate= budgets (else its text is). */
  name: string | null;
  /** The rule as written (a spec string, or the equivalent of a rules-file mapping). */
  text: string;
  filterText: string;
  filter: FlowPredicate;
  action: FaultAction;
  triggers: FaultTriggers;
  enabled: boolean;
}

export class FaultRuleError extends Error {}

/** A rules-file entry: a spec string, or {filter, action, args, id, enabled, …options}. */
export type FaultRuleSource = RuleSource;

const TRIGGER_OPTIONS = ["p", "first", "every", "after", "window", "from", "until", "rate", "per", "burst"];
const COMMON_OPTIONS = ["id", "name", "enabled", ...TRIGGER_OPTIONS];
const ACTION_OPTIONS: Record<FaultActionName, string[]> = {
  status: [],
  throttle: ["retry-after"],
  error: ["retry-after", "status"],
  delay: ["jitter", "dist", "on"],
  bandwidth: ["on"],
  reset: [],
  close: [],
  hang: [],
  truncate: [],
  "aws-limits": [...AWS_LIMITS_OPTIONS],
};
const ACTION_USAGE: Record<FaultActionName, string> = {
  status: "status CODE (e.g. status 503): replace the status of the server's answer, keeping its body",
  throttle: "throttle [retry-after=SECONDS]: answer with the service's own throttling error",
  error: "error 500|503|CODE [status=N] [retry-after=SECONDS]: answer with the service's InternalError / ServiceUnavailable, or with any error its model names (error ProvisionedThroughputExceededException)",
  delay: "delay MS [jitter=MS] [dist=uniform|normal|exponential] [on=request|response], e.g. delay 200ms jitter=50ms",
  bandwidth: "bandwidth KBPS [on=response|request] (kilobytes per second; response paces the download, request the upload), e.g. bandwidth 64",
  reset: "reset: drop the connection with a TCP RST",
  close: "close: close the connection without answering",
  hang: "hang: never answer (until the client gives up)",
  truncate: "truncate BYTES: send only the first BYTES of the body, then close, e.g. truncate 100",
  "aws-limits": `${AWS_LIMITS_USAGE}: answer requests beyond AWS's documented limits with the operation's own throttling error (\`sluice limits\` lists them; scale=0.1 is ten times tighter, depth= the S3 prefix depth, partitions=/keys=/provisioned= DynamoDB's partitions, partition keys and provisioned tables, reserved= Lambda functions' reserved concurrency, lsi= DynamoDB local secondary indexes)`,
};

/** Parses one rule; `defaultId` is used unless the rule says id=…. */
export function parseFaultRule(source: FaultRuleSource, defaultId: string, compile: (expression: string) => FlowPredicate): FaultRule {
  let spec: RuleSpec;
  let enabledFromObject: boolean | null = null;
  try {
    // `--fault aws-limits` needs no filter: AWS's limits apply to the calls they name.
    if (typeof source === "string") spec = parseRuleSpec(/^\s*aws-limits\b/.test(source) && !source.includes("=>") ? `=> ${source.trim()}` : source, FAULT_EXAMPLE);
    else ({ spec, enabled: enabledFromObject } = specFromObject(source, FAULT_OBJECT));
  } catch (err) {
    throw new FaultRuleError(err instanceof RuleSpecError ? `fault ${err.message}` : (err as Error).message);
  }
  const fail = (msg: string): never => {
    throw new FaultRuleError(`fault rule ${JSON.stringify(spec.text)}: ${msg}`);
  };
  const actionName = spec.action.toLowerCase();
  if (!(FAULT_ACTIONS as readonly string[]).includes(actionName)) {
    fail(`unknown action ${JSON.stringify(spec.action)}; actions are ${FAULT_ACTIONS.join(", ")}, e.g. ${FAULT_EXAMPLE}`);
  }
  const name = actionName as FaultActionName;
  const o = spec.options;
  const allowed = [...COMMON_OPTIONS, ...ACTION_OPTIONS[name]];
  for (const key of Object.keys(o)) {
    if (!allowed.includes(key)) {
      const elsewhere = FAULT_ACTIONS.filter((a) => ACTION_OPTIONS[a].includes(key));
      fail(elsewhere.length
        ? `${key}= does not apply to ${name} (only to ${elsewhere.join(", ")})`
        : `unknown option ${key}=; options are ${allowed.map((k) => k + "=").join(" ")}`);
    }
  }
  const action = parseAction(name, spec.args, o, fail, spec.filter);
  const triggers = parseTriggers(o, fail);
  let filter: FlowPredicate;
  try {
    filter = compile(spec.filter);
  } catch (err) {
    return fail(`bad filter ${JSON.stringify(spec.filter)}: ${(err as Error).message}`);
  }
  const id = o.id ?? defaultId;
  if (!/^[\w.-]+$/.test(id)) fail(`id= must be letters, digits, '-', '_' or '.', got ${JSON.stringify(id)}`);
  const ruleName = o.name ?? null;
  if (ruleName !== null && !/^[\w.-]+$/.test(ruleName)) fail(`name= must be letters, digits, '-', '_' or '.', got ${JSON.stringify(ruleName)}`);
  let enabled = enabledFromObject ?? true;
  if (o.enabled !== undefined) enabled = parseBool(o.enabled) ?? fail(`enabled= expects true or false, got ${JSON.stringify(o.enabled)}`);
  return { id, name: ruleName, text: spec.text, filterText: spec.filter, filter, action, triggers, enabled };
}

/** Services a filter names with `~svc NAME` (not negated), as signing names. */
function servicesNamedBy(filterText: string): string[] {
  const out: string[] = [];
  for (const m of filterText.matchAll(/(!\s*)?~svc\s+["']?([\w-]+)/g)) {
    if (m[1]) continue;
    out.push(signingNameOf(m[2]!) ?? m[2]!.toLowerCase());
  }
  return [...new Set(out)];
}

/** `error CODE`: the code must be an error of the services the filter names (or of some service), unless status= says the status. */
function checkErrorName(code: string, status: number | null, filterText: string, fail: (msg: string) => never): void {
  if (status !== null) return;
  const named = servicesNamedBy(filterText);
  const known = new Set(cataloguedServices());
  const unknown = named.filter((s) => !known.has(s));
  if (unknown.length) fail(`error ${code}: sluice has no error list for ${unknown.join(", ")}; give the status yourself: error ${code} status=400`);
  const missing = named.length ? named.filter((s) => catalogedErrorOf(s, code) === null) : servicesWithError(code).length ? [] : [...known];
  if (missing.length === 0) return;
  const close = closeErrorNames(missing, code);
  const whose = named.length ? `${missing.join(" and ")}'s errors` : "no service's errors";
  fail(`error ${code}: ${whose} ${named.length ? "do not include" : "include"} ${JSON.stringify(code)}${close.length ? `; did you mean ${close.join(", ")}?` : ""} (or give the status yourself: error ${code} status=400)`);
}

function parseAction(name: FaultActionName, args: string[], o: Record<string, string>, fail: (msg: string) => never, filterText = ""): FaultAction {
  const usage = () => fail(`write ${ACTION_USAGE[name]}`);
  const maxArgs = name === "reset" || name === "close" || name === "hang" || name === "throttle" || name === "aws-limits" ? 0 : 1;
  if (args.length > maxArgs) fail(`unexpected ${JSON.stringify(args[maxArgs])}; write ${ACTION_USAGE[name]}`);
  const duration = (text: string, what: string): number => {
    try {
      return parseDuration(text);
    } catch (err) {
      return fail(`${what}: ${(err as Error).message}`);
    }
  };
  const retryAfter = (): number | null => {
    const v = o["retry-after"];
    if (v === undefined) return null;
    // Plain numbers are seconds, as in the Retry-After header itself.
    return /^\d+(\.\d+)?$/.test(v) ? Number(v) : duration(v, "retry-after") / 1000;
  };
  switch (name) {
    case "status": {
      const code = args[0];
      if (code === undefined) return usage();
      if (!/^\d{3}$/.test(code) || Number(code) < 100 || Number(code) > 599) fail(`status expects a code from 100 to 599, got ${JSON.stringify(code)}`);
      return { name, status: Number(code) };
    }
    case "throttle":
      return { name, retryAfterSeconds: retryAfter() };
    case "error": {
      const code = args[0] ?? "500";
      if (/^\d+$/.test(code)) {
        if (code !== "500" && code !== "503") fail(`error expects 500 (InternalError), 503 (ServiceUnavailable) or an error's name (error ThrottlingException), got ${JSON.stringify(code)}; for any other status use status CODE`);
        if (o.status !== undefined) fail(`status= goes with error CODE by name (error ThrottlingException status=400), not with error ${code}`);
        return { name, status: Number(code), code: null, retryAfterSeconds: retryAfter() };
      }
      if (!/^[A-Za-z][\w.:-]*$/.test(code)) fail(`error expects an error's name such as ThrottlingException, got ${JSON.stringify(code)}`);
      let status: number | null = null;
      if (o.status !== undefined) {
        if (!/^\d{3}$/.test(o.status) || Number(o.status) < 400 || Number(o.status) > 599) fail(`status= expects an error status from 400 to 599, got ${JSON.stringify(o.status)}`);
        status = Number(o.status);
      }
      checkErrorName(code, status, filterText, fail);
      return { name, status, code, retryAfterSeconds: retryAfter() };
    }
    case "delay": {
      if (args[0] === undefined) return usage();
      const ms = duration(args[0], "delay");
      const jitterMs = o.jitter === undefined ? 0 : duration(o.jitter, "jitter");
      const dist = (o.dist ?? "uniform").toLowerCase();
      if (!(DELAY_DISTRIBUTIONS as readonly string[]).includes(dist)) fail(`dist= expects one of ${DELAY_DISTRIBUTIONS.join(", ")}, got ${JSON.stringify(o.dist)}`);
      const on = (o.on ?? "request").toLowerCase();
      if (on !== "request" && on !== "response") fail(`on= expects request or response, got ${JSON.stringify(o.on)}`);
      return { name, ms, jitterMs, dist: dist as DelayDistribution, on };
    }
    case "bandwidth": {
      const v = args[0];
      if (v === undefined) return usage();
      if (!/^\d+(\.\d+)?$/.test(v) || !(Number(v) > 0)) fail(`bandwidth expects kilobytes per second (a number above 0), got ${JSON.stringify(v)}`);
      const on = (o.on ?? "response").toLowerCase();
      if (on !== "request" && on !== "response") fail(`on= expects request (pace the upload) or response (pace the download), got ${JSON.stringify(o.on)}`);
      return { name, bytesPerSecond: Math.max(1, Math.round(Number(v) * 1024)), on };
    }
    case "truncate": {
      const v = args[0];
      if (v === undefined) return usage();
      const bytes = parseSize(v);
      if (bytes === null) fail(`truncate expects a byte count such as 100 or 4k, got ${JSON.stringify(v)}`);
      return { name, bytes: bytes! };
    }
    case "reset":
    case "close":
    case "hang":
      return { name };
    case "aws-limits": {
      if (o.rate !== undefined || o.per !== undefined || o.burst !== undefined) fail("rate=, per= and burst= do not apply to aws-limits: its budgets are AWS's own (scale= makes them tighter or looser)");
      try {
        return { name, ...parseAwsLimitsOptions(o) };
      } catch (err) {
        return fail((err as Error).message);
      }
    }
  }
}

function parseTriggers(o: Record<string, string>, fail: (msg: string) => never): FaultTriggers {
  const count = (key: string, min: number): number | null => {
    const v = o[key];
    if (v === undefined) return null;
    if (!/^\d+$/.test(v) || Number(v) < min) fail(`${key}= expects a whole number of at least ${min}, got ${JSON.stringify(v)}`);
    return Number(v);
  };
  const duration = (key: string, text: string): number => {
    try {
      return parseDuration(text);
    } catch (err) {
      return fail(`${key}: ${(err as Error).message}`);
    }
  };
  let probability: number | null = null;
  if (o.p !== undefined) {
    const m = /^(\d+(?:\.\d+)?|\.\d+)(%?)$/.exec(o.p.trim());
    const value = m ? Number(m[1]) / (m[2] ? 100 : 1) : NaN;
    if (!(value >= 0 && value <= 1)) fail(`p= expects a probability from 0 to 1 (or 0% to 100%), got ${JSON.stringify(o.p)}`);
    probability = value;
  }
  let fromMs: number | null = null;
  let untilMs: number | null = null;
  if (o.window !== undefined) {
    if (o.from !== undefined || o.until !== undefined) fail("write either window=START-END or from=/until=, not both");
    const parts = o.window.split("-");
    if (parts.length !== 2) fail(`window= expects START-END durations since the rule was loaded, e.g. window=10s-30s, got ${JSON.stringify(o.window)}`);
    fromMs = parts[0]!.trim() === "" ? null : duration("window", parts[0]!);
    untilMs = parts[1]!.trim() === "" ? null : duration("window", parts[1]!);
  } else {
    if (o.from !== undefined) fromMs = duration("from", o.from);
    if (o.until !== undefined) untilMs = duration("until", o.until);
  }
  // from= defaults to the moment the rule is loaded: until=0s would be a window that never opens.
  if (untilMs !== null && untilMs <= (fromMs ?? 0)) fail(`the window ends (${untilMs}ms) before it starts (${fromMs ?? 0}ms)`);
  let rate: FaultTriggers["rate"] = null;
  if (o.rate !== undefined) {
    let perSecond: number;
    try {
      perSecond = parseRate(o.rate);
    } catch (err) {
      return fail(`rate: ${(err as Error).message}`);
    }
    const per = (o.per ?? "rule").toLowerCase();
    if (!isKeyKind(per)) return fail(`per= expects one of ${KEY_KINDS.join(", ")}, got ${JSON.stringify(o.per)}`);
    // Default burst: a tenth of a second's worth, so concurrent clients are not throttled for
    // arriving together, while a sustained excess is still throttled at the stated rate.
    const burst = count("burst", 1) ?? Math.max(1, Math.round(perSecond / 10));
    rate = { perSecond, burst, per };
  } else if (o.per !== undefined || o.burst !== undefined) {
    fail("per= and burst= only apply to a rate budget: add rate=N/s, e.g. rate=3500/s per=prefix");
  }
  return { probability, first: count("first", 1), every: count("every", 1), after: count("after", 0), fromMs, untilMs, rate };
}

/** Reads a YAML rules file: a list (or `faults:` / `rules:` holding a list) of strings or mappings. */
export function readFaultFile(path: string): FaultRuleSource[] {
  return readRulesFile(path, {
    flag: "--faults",
    listKey: "faults",
    example: 'e.g. - "~svc s3 => throttle p=0.3" (see examples/faults.yaml)',
    error: (message) => new FaultRuleError(message),
  });
}

/** When an action acts: before the request goes upstream, or once the server's answer is in. */
export function phaseOf(action: FaultAction): "request" | "response" {
  switch (action.name) {
    case "status":
    case "truncate":
      return "response";
    case "delay":
    case "bandwidth":
      return action.on;
    default:
      return "request";
  }
}

/** What an action does, in words: `fault.list` shows it under each rule. */
export function explainAction(action: FaultAction): string {
  const retryAfter = (s: number | null) => (s === null ? "" : ` with Retry-After ${s}s`);
  switch (action.name) {
    case "status":
      return `replace the status of the server's answer with ${action.status}, keeping its body`;
    case "throttle":
      return `answer with the service's own throttling error${retryAfter(action.retryAfterSeconds)}, without contacting the server`;
    case "error":
      if (action.code !== null) return `answer with the service's ${action.code} error${action.status === null ? " (its status from the service's model)" : ` (status ${action.status})`}${retryAfter(action.retryAfterSeconds)}, without contacting the server`;
      return `answer with the service's ${action.status === 503 ? "ServiceUnavailable (503)" : "InternalError (500)"}${retryAfter(action.retryAfterSeconds)}, without contacting the server`;
    case "delay": {
      const jitter = action.jitterMs ? ` ± ${formatDuration(action.jitterMs)} (${action.dist})` : action.dist === "exponential" ? " on average (exponential)" : "";
      return `delay the ${action.on === "request" ? "request before it goes to the server" : "server's answer before the client sees it"} by ${formatDuration(action.ms)}${jitter}`;
    }
    case "bandwidth":
      return `pace the ${action.on === "request" ? "upload" : "download"} to ${+(action.bytesPerSecond / 1024).toFixed(2)} KB/s`;
    case "reset":
      return "drop the client's connection with a TCP RST";
    case "close":
      return "close the client's connection without answering";
    case "hang":
      return "never answer, until the client gives up or the rule is disabled";
    case "truncate":
      return `send only the first ${action.bytes} bytes of the body, then close`;
    case "aws-limits":
      return `answer requests beyond AWS's documented limits${action.scale === 1 ? "" : ` × ${action.scale}`} with the operation's own throttling error, without contacting the server (S3 prefix depth ${action.depth}; ${explainAwsLimitsOptions(action)}; \`sluice limits\` lists them)`;
  }
}

/** When a matching request gets the fault, in words ("always" when no trigger limits it). */
export function explainTriggers(t: FaultTriggers): string {
  const parts: string[] = [];
  if (t.rate) parts.push(`beyond ${formatRate(t.rate.perSecond)} (burst ${t.rate.burst}) ${KEY_KIND_HELP[t.rate.per]}`);
  if (t.first !== null) parts.push(`the first ${t.first} matching requests`);
  if (t.after !== null) parts.push(`after ${t.after} matching requests`);
  if (t.every !== null) parts.push(`every ${t.every}${t.every === 1 ? "" : "th"} matching request`);
  if (t.fromMs !== null || t.untilMs !== null) {
    parts.push(`from ${formatDuration(t.fromMs ?? 0)} ${t.untilMs === null ? "on" : `until ${formatDuration(t.untilMs)}`} after the rule was loaded`);
  }
  if (t.probability !== null) parts.push(`with probability ${+(t.probability * 100).toFixed(2)}%`);
  return parts.length ? parts.join(", ") : "always";
}

/** A rule in words: what it does to which requests, and when. */
export function explainRule(rule: FaultRule): string {
  return `${explainAction(rule.action)}; ${explainTriggers(rule.triggers)}${rule.filterText === "~all" ? "" : `, for requests matching ${rule.filterText}`}`;
}
