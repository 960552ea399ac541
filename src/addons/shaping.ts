/**
 * `--shape 'FILTER => RATE [k=v …]'` and `--shapes FILE`: matching requests wait in a queue and
 * leave at RATE (a token bucket with burst), round-robin across lanes so one hot operation does
 * not starve the others; or at an `adaptive` rate that learns the server's limit from its
 * throttling answers. Too long a wait or too full a queue is answered locally with a clear error
 * (or passed through unshaped with overflow=pass) — never dropped silently.
 */
import { Counter, Gauge, Histogram } from "prom-client";
import type { Addon, AddonContext } from "../core/addons.js";
import type { HTTPFlow } from "../core/flow.js";
import { Response, now as flowNow } from "../core/flow.js";
import type { FlowPredicate } from "../core/filter.js";
import { parseRuleSpec, RuleSpecError, type RuleSpec } from "../core/rule-spec.js";
import { readRulesFile, type RuleSource } from "./rules-file.js";
import { parseDuration, parseRate } from "../core/token-bucket.js";
import { RateQueue, type Admission, type Budget, type RateQueueLimits } from "../core/rate-queue.js";
import { AdaptiveRate, MIN_RATE } from "../core/adaptive-rate.js";
import { awsInfoOf, keyPrefixOf, throttlingCodeOf } from "../aws/index.js";

export const KEY_KINDS = ["rule", "host", "service", "operation", "prefix", "client"] as const;
export type KeyKind = (typeof KEY_KINDS)[number];

const EXAMPLE = "'~svc ec2 => 20/s burst=5 per=operation'";
const OPTION_NAMES = ["burst", "per", "fair", "max-queue", "max-wait", "overflow", "status", "start", "min", "max", "id"];
const DEFAULT_MAX_QUEUE = 10_000;
const DEFAULT_MAX_WAIT_MS = 60_000;
const DEFAULT_ADAPTIVE_START = 10;
const STATUS_EVERY_MS = 5_000;

export interface ShapeRule {
  id: string;
  text: string;
  filter: FlowPredicate;
  /** Fixed rate (requests/s), or the starting rate of an adaptive rule. */
  rate: number;
  adaptive: { min: number; max: number } | null;
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
    spec = typeof source === "string" ? parseRuleSpec(source, EXAMPLE) : specFromObject(source);
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
  let base: number;
  if (adaptive) {
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
    if (!(KEY_KINDS as readonly string[]).includes(v)) fail(`${name}= expects one of ${KEY_KINDS.join(", ")}, got ${JSON.stringify(o[name])}`);
    return v as KeyKind;
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
    text: spec.text,
    filter,
    rate: base,
    adaptive: adaptive ? { min, max } : null,
    burst: int("burst", 1, 1),
    per,
    fair: kind("fair", per === "rule" || per === "host" || per === "service" ? "operation" : per),
    maxQueue: o["max-queue"] === undefined ? DEFAULT_MAX_QUEUE : int("max-queue", DEFAULT_MAX_QUEUE, 0),
    maxWaitMs,
    overflow: overflow as "reject" | "pass",
    status: status as 429 | 503,
  };
}

/** A rules-file entry written as a mapping: {filter, rate, burst, per, …} (max_queue = max-queue). */
function specFromObject(obj: Record<string, unknown>): RuleSpec {
  const { filter, match, rate, ...rest } = obj;
  const options: Record<string, string> = {};
  for (const [k, v] of Object.entries(rest)) options[k.replace(/_/g, "-")] = String(v);
  const f = String(filter ?? match ?? "~all");
  const action = rate === undefined ? "" : String(rate);
  const text = `${f} => ${action}${Object.entries(options).map(([k, v]) => ` ${k}=${v}`).join("")}`;
  if (!action) throw new ShapeRuleError(`shaping rule ${JSON.stringify(text)} has no rate: add rate: 20/s (or rate: adaptive)`);
  return { text, filter: f, action, args: [], options };
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

/** What request a flow's key is for: see KEY_KINDS. AWS keys fall back to the host for other traffic. */
export function shapingKeyOf(kind: KeyKind, flow: HTTPFlow): string {
  switch (kind) {
    case "rule":
      return "all";
    case "host":
      return hostOf(flow);
    case "client":
      return flow.clientConn.peername?.[0] ?? "unknown";
    case "service":
      return awsInfoOf(flow)?.service ?? hostOf(flow);
    case "operation": {
      const info = awsInfoOf(flow);
      if (info?.service && info.operation) return `${info.service}.${info.operation}`;
      return info?.service ?? hostOf(flow);
    }
    case "prefix": {
      const info = awsInfoOf(flow);
      return (info && keyPrefixOf(info)) ?? hostOf(flow);
    }
  }
}

/** host:port the client asked for, before any map-remote. */
function hostOf(flow: HTTPFlow): string {
  const mapped = flow.metadata.map_remote as { from?: unknown } | undefined;
  if (typeof mapped?.from === "string") {
    try {
      const u = new URL(mapped.from);
      return u.host;
    } catch {
      // fall through to the request's own host
    }
  }
  const r = flow.request;
  return `${r.prettyHost}:${r.port}`;
}

interface ActiveRule {
  rule: ShapeRule;
  queue: RateQueue;
  controllers: Map<string, AdaptiveRate>;
}

interface Sent {
  active: ActiveRule;
  key: string;
  sentAt: number;
}

export class Shaping implements Addon {
  name = "shaping";
  private ctx!: AddonContext;
  private rules: ActiveRule[] = [];
  /** Requests that left a queue, for adaptive rules to learn from their answers. */
  private sent = new WeakMap<HTTPFlow, Sent>();
  private statusTimer: ReturnType<typeof setInterval> | null = null;
  private waitHistogram!: Histogram<"rule">;
  private rejectedCounter!: Counter<"rule" | "reason" | "outcome">;

  load(ctx: AddonContext): void {
    this.ctx = ctx;
    ctx.options.add({ name: "shape_rules", type: "strings", default: [] as string[], help: "Shaping rules 'FILTER => RATE [burst=N] [per=…] [fair=…] [max-queue=N] [max-wait=DURATION] [overflow=reject|pass]' or 'FILTER => adaptive start=RATE' (repeatable with --shape)" });
    ctx.options.add({ name: "shape_file", type: "optional-string", default: null, help: "YAML file with a list of shaping rules (strings or mappings), as with --shapes" });
    ctx.commands.add({
      name: "shaping.status",
      help: "Shaping rules with, per key, the current rate, queue depth and longest wait",
      params: [],
      run: () => this.statusText(),
    });
    this.registerMetrics(ctx);
  }

  private registerMetrics(ctx: AddonContext): void {
    const registers = [ctx.metrics];
    const each = (fn: (a: ActiveRule, b: Budget) => void) => {
      for (const a of this.rules) for (const b of a.queue.all()) fn(a, b);
    };
    new Gauge({
      name: "sluice_shaping_queue_depth",
      help: "Requests waiting in a shaping queue",
      labelNames: ["rule", "key"],
      registers,
      collect() {
        this.reset();
        each((a, b) => this.set({ rule: a.rule.id, key: b.key }, b.depth));
      },
    });
    new Gauge({
      name: "sluice_shaping_rate",
      help: "Current shaping rate (requests per second); adaptive rules move it",
      labelNames: ["rule", "key"],
      registers,
      collect() {
        this.reset();
        each((a, b) => this.set({ rule: a.rule.id, key: b.key }, b.rate));
      },
    });
    this.waitHistogram = new Histogram({
      name: "sluice_shaping_wait_seconds",
      help: "Time requests waited in a shaping queue",
      labelNames: ["rule"],
      buckets: [0.001, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60],
      registers,
    });
    this.rejectedCounter = new Counter({
      name: "sluice_shaping_rejected_total",
      help: "Requests a shaping queue would not hold (queue-full, max-wait): answered with an error, or passed through with overflow=pass",
      labelNames: ["rule", "reason", "outcome"],
      registers,
    });
  }

  configure(updated: Set<string>): void {
    if (!updated.has("shape_rules") && !updated.has("shape_file")) return;
    const sources: (string | Record<string, unknown>)[] = [...this.ctx.options.get<string[]>("shape_rules")];
    const file = this.ctx.options.get<string | null>("shape_file");
    if (file) sources.push(...readShapeFile(file));
    const rules = sources.map((s, i) => parseShapeRule(s, i, this.ctx.filter));
    const ids = new Set<string>();
    for (const r of rules) {
      if (ids.has(r.id)) throw new ShapeRuleError(`shaping rule ${JSON.stringify(r.text)}: id ${r.id} is used by another rule`);
      ids.add(r.id);
    }
    // Requests waiting under the old rules go now rather than wait for rules that no longer exist.
    for (const old of this.rules) old.queue.releaseAll();
    this.rules = rules.map((rule) => this.activate(rule));
    if (rules.length) this.ctx.log.debug(`shaping: ${rules.length} rule${rules.length === 1 ? "" : "s"}: ${rules.map((r) => r.text).join("; ")}`);
  }

  private activate(rule: ShapeRule): ActiveRule {
    const limits: RateQueueLimits = { rate: rule.rate, burst: rule.burst, maxQueue: rule.maxQueue, maxWaitMs: rule.maxWaitMs };
    const controllers = new Map<string, AdaptiveRate>();
    const onCreate = rule.adaptive
      ? (b: Budget) => {
          const c = new AdaptiveRate({ start: rule.rate, min: rule.adaptive!.min, max: rule.adaptive!.max }, performance.now());
          controllers.set(b.key, c);
          b.onRelease = (t) => c.recordSend(t);
        }
      : null;
    // An adaptive budget keeps what it learned through idle spells; fixed ones are cheap to recreate.
    const queue = new RateQueue(limits, () => performance.now(), onCreate, rule.adaptive ? 600_000 : 10_000);
    queue.onForget = (b) => controllers.delete(b.key);
    return { rule, queue, controllers };
  }

  running(): void {
    this.statusTimer = setInterval(() => this.logStatus(), STATUS_EVERY_MS);
    this.statusTimer.unref();
  }

  done(): void {
    if (this.statusTimer) clearInterval(this.statusTimer);
    this.statusTimer = null;
    for (const a of this.rules) a.queue.releaseAll();
  }

  request(flow: HTTPFlow): void | Promise<void> {
    if (this.rules.length === 0 || flow.response || flow.metadata.shaping) return;
    for (const active of this.rules) {
      if (active.rule.filter(flow)) return this.shape(active, flow);
    }
  }

  private shape(active: ActiveRule, flow: HTTPFlow): void | Promise<void> {
    const { rule } = active;
    const key = shapingKeyOf(rule.per, flow);
    const lane = rule.fair === rule.per ? key : shapingKeyOf(rule.fair, flow);
    const ticket = active.queue.enqueue(key, lane);
    const result = ticket.result;
    if (!(result instanceof Promise)) return this.settle(active, flow, key, result);
    // A client that leaves (its connection, or just its HTTP/2 stream) leaves the queue at once.
    const unwatch = flow.onClientGone(ticket.cancel);
    return result.then((admission) => {
      unwatch();
      this.settle(active, flow, key, admission);
    });
  }

  private settle(active: ActiveRule, flow: HTTPFlow, key: string, a: Admission): void {
    const { rule } = active;
    const record: Record<string, unknown> = { rule: rule.id, key, waitMs: Math.round(a.waitMs) };
    flow.metadata.shaping = record;
    if (a.admitted) {
      this.waitHistogram.observe({ rule: rule.id }, a.waitMs / 1000);
      if (rule.adaptive) this.sent.set(flow, { active, key, sentAt: performance.now() });
      return;
    }
    if (a.reason === "cancelled") {
      record.cancelled = true;
      flow.error = { msg: "client disconnected while its request waited in a shaping queue", timestamp: flowNow() };
      flow.kill();
      return;
    }
    const outcome = rule.overflow === "pass" ? "passed" : "answered";
    this.rejectedCounter.inc({ rule: rule.id, reason: a.reason, outcome });
    record.rejected = a.reason;
    if (rule.overflow === "pass") {
      record.overflow = "passed";
      return;
    }
    flow.response = this.rejection(active, key, a);
  }

  /** The local answer for a request the queue would not hold: what happened, the limit, what to do. */
  private rejection(active: ActiveRule, key: string, a: Extract<Admission, { admitted: false }>): Response {
    const { rule } = active;
    const rate = active.queue.get(key)?.rate ?? rule.rate;
    const retryAfter = Math.max(1, Math.ceil(a.expectedWaitMs / 1000));
    const why =
      a.reason === "queue-full"
        ? `its queue for key "${key}" already holds ${a.depth} requests (max-queue=${rule.maxQueue})`
        : a.waitMs > 0
          ? `it waited ${fmtSeconds(a.waitMs)} for key "${key}" without its turn coming (max-wait=${fmtSeconds(rule.maxWaitMs)})`
          : `it would wait about ${fmtSeconds(a.expectedWaitMs)} for key "${key}" (max-wait=${fmtSeconds(rule.maxWaitMs)})`;
    const body =
      `sluice shaping rejected this request: rule ${rule.id} (${rule.text}) limits it to ${fmtRate(rate)}${rule.adaptive ? " (adaptive)" : ""} and ${why}.\n` +
      `What to do: retry after ${retryAfter}s or send fewer requests at once; raise max-wait= or max-queue= on the rule; or add overflow=pass to let excess requests through unshaped.\n`;
    return Response.make(rule.status, body, {
      "content-type": "text/plain; charset=utf-8",
      "x-sluice-shaping": "rejected",
      "x-sluice-shaping-rule": rule.id,
      "x-sluice-shaping-reason": a.reason,
      "retry-after": String(retryAfter),
    });
  }

  /** Adaptive rules learn from the answer: throttled → cut the rate, otherwise grow it. */
  response(flow: HTTPFlow): void {
    const sent = this.sent.get(flow);
    if (!sent || !flow.response) return;
    this.sent.delete(flow);
    const controller = sent.active.controllers.get(sent.key);
    const budget = sent.active.queue.get(sent.key);
    if (!controller || !budget) return;
    const t = performance.now();
    const before = controller.rate;
    const code = throttlingCodeOf(flow.response, awsInfoOf(flow));
    if (code !== null) {
      if (controller.onThrottle(t, sent.sentAt)) {
        (flow.metadata.shaping as Record<string, unknown>).throttled = code;
        this.ctx.log.debug(`shaping: rule ${sent.active.rule.id} key ${sent.key}: ${code}, rate ${fmtRate(before)} → ${fmtRate(controller.rate)}`);
      }
    } else if (flow.response.statusCode < 500) {
      controller.onSuccess(t);
    } else {
      return;
    }
    // Re-timing the queue on every answer is wasted work; 1% moves are enough to track the curve.
    if (Math.abs(controller.rate - budget.rate) > budget.rate * 0.01 || code !== null) {
      budget.update({ rate: controller.rate, burst: sent.active.rule.burst, maxQueue: sent.active.rule.maxQueue, maxWaitMs: sent.active.rule.maxWaitMs });
    }
  }

  /** One line per rule and key: what `shaping.status` shows. */
  statusText(): string {
    if (this.rules.length === 0) return "no shaping rules (add one with --shape 'FILTER => RATE', e.g. --shape '~svc ec2 => 20/s')";
    const lines: string[] = [];
    const t = performance.now();
    for (const a of this.rules) {
      const r = a.rule;
      const mode = r.adaptive ? `adaptive from ${fmtRate(r.rate)}` : fmtRate(r.rate);
      lines.push(`rule ${r.id}: ${r.text}  [${mode}, burst ${r.burst}, per ${r.per}, fair by ${r.fair}, max-queue ${r.maxQueue}, max-wait ${fmtSeconds(r.maxWaitMs)}, overflow ${r.overflow}]`);
      let any = false;
      for (const b of a.queue.all()) {
        any = true;
        const c = a.controllers.get(b.key);
        const learned = c ? `, ${c.cuts} cut${c.cuts === 1 ? "" : "s"} on ${c.throttles} throttle${c.throttles === 1 ? "" : "s"}` : "";
        lines.push(`  ${b.key}: rate ${fmtRate(b.rate)}, queued ${b.depth}, longest wait ${fmtSeconds(b.oldestWaitMs(t))}, released ${b.released}, rejected ${b.rejected}${learned}`);
      }
      if (!any) lines.push("  (no requests yet)");
    }
    return lines.join("\n");
  }

  /** A status line while anything is queued, for `sluice dump` (at most every 5 s). */
  private logStatus(): void {
    const parts: string[] = [];
    const t = performance.now();
    for (const a of this.rules) {
      const busy = [...a.queue.all()].filter((b) => b.depth > 0).sort((x, y) => y.depth - x.depth);
      for (const b of busy.slice(0, 5)) parts.push(`rule ${a.rule.id} ${b.key}: ${b.depth} queued at ${fmtRate(b.rate)}, longest wait ${fmtSeconds(b.oldestWaitMs(t))}`);
      if (busy.length > 5) parts.push(`rule ${a.rule.id}: ${busy.length - 5} more keys queued`);
    }
    if (parts.length) this.ctx.log.info(`shaping: ${parts.join("; ")}`);
  }
}

function fmtRate(r: number): string {
  return `${r >= 100 ? r.toFixed(0) : r >= 10 ? r.toFixed(1) : r.toFixed(2)}/s`;
}

function fmtSeconds(ms: number): string {
  if (!Number.isFinite(ms)) return "none";
  return ms < 1000 ? `${Math.round(ms)}ms` : `${(ms / 1000).toFixed(1)}s`;
}
