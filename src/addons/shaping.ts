/**
 * `--shape 'FILTER => RATE [k=v …]'` and `--shapes FILE`: matching requests wait in a queue and
 * leave at RATE (a token bucket with burst), round-robin across lanes so one hot operation does
 * not starve the others; or at an `adaptive` rate that learns the server's limit from its
 * throttling answers. Too long a wait or too full a queue is answered locally with a clear error
 * (or passed through unshaped with overflow=pass) — never dropped silently.
 */
import { Counter, Gauge, Histogram } from "../core/prometheus.js";
import type { Addon, AddonContext } from "../core/addons.js";
import type { HTTPFlow } from "../core/flow.js";
import { Response, now as flowNow } from "../core/flow.js";
import { RateQueue, type Admission, type Budget, type RateQueueLimits } from "../core/rate-queue.js";
import { isPromise, type AdaptiveSnapshot, type MaybeAsync } from "../core/shared-state.js";
import { formatDuration as fmtSeconds, formatRate as fmtRate } from "../core/values.js";
import { AwsLimiter, awsInfoOf, throttlingCodeOf, type ApplicableLimit, type AwsLimit } from "../aws/index.js";
import { keyOf } from "../rules/keys.js";
import { explainShapeRule, parseShapeRule, readShapeFile, ShapeRuleError, type ShapeRule } from "./shaping-rules.js";
import type { ShapingRuleStatus } from "./shaping-status.js";
export type { ShapingRuleStatus } from "./shaping-status.js";
import { declareOptions, type TypedOptions } from "../core/options.js";

export { parseShapeRule, readShapeFile, ShapeRuleError, type ShapeRule } from "./shaping-rules.js";

const STATUS_EVERY_MS = 5_000;

interface ActiveRule {
  rule: ShapeRule;
  /** Prefix of this rule's keys in the shared state. */
  ns: string;
  queue: RateQueue;
  /** The latest adaptive rate per key, for status lines. */
  learned: Map<string, AdaptiveSnapshot>;
  /** aws-limits rules: AWS's limits, and one queue per limit (each has its own rate and burst). */
  limiter: AwsLimiter | null;
  limitQueues: Map<AwsLimit, RateQueue>;
}

/** How a request fared under an aws-limits rule: admitted after waiting, or refused by one limit. */
type AwsAdmission = { admitted: true } | { admitted: false; limit: AwsLimit; key: string; reason: "queue-full" | "max-wait" | "cancelled"; expectedWaitMs: number };

/**
 * Each rule's keys in the shared state: its `name=`, else its text, so the same rule in another
 * process of a fleet shares them; a rule repeated within one process gets keys of its own.
 */
function stateNamespaces(rules: ShapeRule[]): string[] {
  const seen = new Map<string, number>();
  return rules.map((rule) => {
    const base = rule.name !== null ? `shape/name=${rule.name}/` : `shape/${rule.text}/`;
    const n = (seen.get(base) ?? 0) + 1;
    seen.set(base, n);
    return n === 1 ? base : `${base}#${n}/`;
  });
}

/** Runs `then` on a MaybeAsync answer: at once when it is synchronous, else when it arrives. */
function settled<T>(answer: MaybeAsync<T>, then: (value: T) => void, failed: (err: unknown) => void): void | Promise<void> {
  if (!isPromise(answer)) return then(answer);
  return answer.then(then, failed);
}

function noop(): void {}


/**
 * The burst an aws-limits queue lets go at once: the limit's own, less 2% (at least one token)
 * kept in hand. Between leaving the queue and reaching the limit's bucket (the fault rule here, or
 * AWS), requests are delayed unevenly (a second limit's wait, the event loop, the network) and
 * can arrive bunched; with the bucket run down to its rate, one bunched request would be
 * refused. The rate is unchanged, so a long scan takes just as long.
 */
function burstInHand(burst: number): number {
  return burst >= 2 ? burst - Math.max(1, Math.ceil(burst * 0.02)) : burst;
}

interface Sent {
  active: ActiveRule;
  key: string;
  sentAt: number;
}

/** The options this addon owns, declared once (names, types, defaults, help). */
export const SHAPING_OPTIONS = declareOptions({
  shape_rules: { type: "strings", default: [], help: "Shaping rules 'FILTER => RATE [burst=N] [per=…] [fair=…] [max-queue=N] [max-wait=DURATION] [overflow=reject|pass]' or 'FILTER => adaptive start=RATE' (repeatable with --shape)" },
  shape_file: { type: "optional-string", default: null, help: "YAML file with a list of shaping rules (strings or mappings), as with --shapes" },
});

export class Shaping implements Addon {
  name = "shaping";
  private ctx!: AddonContext;
  private opts!: TypedOptions<typeof SHAPING_OPTIONS>;
  private rules: ActiveRule[] = [];
  /** Requests that left a queue, for adaptive rules to learn from their answers. */
  private sent = new WeakMap<HTTPFlow, Sent>();
  private statusTimer: ReturnType<typeof setInterval> | null = null;
  private waitHistogram!: Histogram<"rule">;
  private rejectedCounter!: Counter<"rule" | "reason" | "outcome">;

  load(ctx: AddonContext): void {
    this.ctx = ctx;
    this.opts = ctx.options.register(SHAPING_OPTIONS);
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

  configure(updated: Set<string>): void | Promise<void> {
    if (!updated.has("shape_rules") && !updated.has("shape_file")) return;
    const sources: (string | Record<string, unknown>)[] = [...this.opts.shape_rules];
    const file = this.opts.shape_file;
    if (file) {
      const fromFile = readShapeFile(file);
      if (!fromFile.length) this.ctx.log.warn(`--shapes ${file} holds no rules, so nothing is shaped by it; a rule looks like - "~svc ec2 => 20/s"`);
      sources.push(...fromFile);
    }
    const rules = sources.map((s, i) => parseShapeRule(s, i, this.ctx.filter));
    const ids = new Set<string>();
    for (const r of rules) {
      if (ids.has(r.id)) throw new ShapeRuleError(`shaping rule ${JSON.stringify(r.text)}: id ${r.id} is used by another rule`);
      ids.add(r.id);
    }
    const names = new Set<string>();
    for (const r of rules) {
      if (r.name === null) continue;
      if (names.has(r.name)) throw new ShapeRuleError(`shaping rule ${JSON.stringify(r.text)}: name=${r.name} is used by another rule`);
      names.add(r.name);
    }
    // In a fleet a name means one rule everywhere: another process holding it for other text refuses these rules.
    const state = this.ctx.state;
    const claims = state.claimName ? rules.filter((r) => r.name !== null).map((r) => state.claimName!("shape", r.name!, r.text)) : [];
    const pending = claims.filter(isPromise);
    if (pending.length) return Promise.all(pending).then(() => this.apply(rules));
    this.apply(rules);
  }

  private apply(rules: ShapeRule[]): void {
    // Requests waiting under the old rules go now rather than wait for rules that no longer exist.
    for (const old of this.rules) {
      old.queue.releaseAll();
      for (const q of old.limitQueues.values()) q.releaseAll();
    }
    // Budgets of rules that are gone are forgotten; a rule given again unchanged keeps its own.
    const namespaces = stateNamespaces(rules);
    const kept = new Set(namespaces);
    for (const old of this.rules) if (!kept.has(old.ns)) settled(this.ctx.state.forget(old.ns), noop, this.stateFailed);
    this.rules = rules.map((rule, i) => this.activate(rule, namespaces[i]!));
    if (rules.length) this.ctx.log.debug(`shaping: ${rules.length} rule${rules.length === 1 ? "" : "s"}: ${rules.map((r) => r.text).join("; ")}`);
  }

  private activate(rule: ShapeRule, ns: string): ActiveRule {
    const limits: RateQueueLimits = { rate: rule.rate, burst: rule.burst, maxQueue: rule.maxQueue, maxWaitMs: rule.maxWaitMs };
    const state = this.ctx.state;
    const learned = new Map<string, AdaptiveSnapshot>();
    const limiter = rule.awsLimits ? new AwsLimiter(rule.awsLimits) : null;
    const active: ActiveRule = { rule, ns, queue: null!, learned, limiter, limitQueues: new Map() };
    const opts = rule.adaptive ? { start: rule.rate, min: rule.adaptive.min, max: rule.adaptive.max } : null;
    const onCreate = opts
      ? (b: Budget) => {
          // Start from what is known already (another process, or before this budget went idle).
          settled(state.adaptive(ns + b.key, opts, { kind: "read" }, performance.now()), (snap) => this.learn(active, b.key, snap), this.stateFailed);
          b.onRelease = (t) => settled(state.adaptive(ns + b.key, opts, { kind: "send" }, t), noop, this.stateFailed);
        }
      : null;
    // An adaptive budget keeps what it learned through idle spells; fixed ones are cheap to recreate.
    active.queue = new RateQueue(limits, (key, l, at, reserveMs, reserveTurns) => state.take(ns + key, l, 1, at, reserveMs, reserveTurns), () => performance.now(), onCreate, rule.adaptive ? 600_000 : 10_000);
    active.queue.onForget = (b) => learned.delete(b.key);
    active.queue.returnTokens = this.tokenReturner(ns);
    return active;
  }

  /** Gives a queue's unused reserved tokens back to its bucket in the shared state (see RateQueue.returnTokens). */
  private tokenReturner(ns: string): (key: string, limits: RateQueueLimits, n: number, at: number) => void {
    return (key, limits, n, at) => settled(this.ctx.state.charge(ns + key, limits, -n, at), noop, this.stateFailed);
  }

  private readonly stateFailed = (err: unknown): void => {
    this.ctx.log.error(`shaping: the shared state (${this.ctx.state.description}) failed: ${(err as Error)?.message ?? String(err)}`);
  };

  /** A new adaptive rate for `key`: remember it for status and re-time the queue when it moved. */
  private learn(active: ActiveRule, key: string, snap: AdaptiveSnapshot): void {
    active.learned.set(key, snap);
    const budget = active.queue.get(key);
    if (!budget) return;
    const r = active.rule;
    // Re-timing the queue on every answer is wasted work; 1% moves are enough to track the curve.
    if (Math.abs(snap.rate - budget.rate) > budget.rate * 0.01 || snap.cut) {
      budget.update({ rate: snap.rate, burst: r.burst, maxQueue: r.maxQueue, maxWaitMs: r.maxWaitMs });
    }
  }

  running(): void {
    this.statusTimer = setInterval(() => this.logStatus(), STATUS_EVERY_MS);
    this.statusTimer.unref();
  }

  done(): void {
    if (this.statusTimer) clearInterval(this.statusTimer);
    this.statusTimer = null;
    for (const a of this.rules) {
      a.queue.releaseAll();
      for (const q of a.limitQueues.values()) q.releaseAll();
    }
  }

  request(flow: HTTPFlow): void | Promise<void> {
    if (this.rules.length === 0 || flow.response || flow.metadata.shaping) return;
    for (const active of this.rules) {
      if (!active.rule.filter(flow)) continue;
      if (active.limiter) {
        const applicable = active.limiter.applicable(flow);
        // Traffic no AWS limit covers goes on to the next rule.
        if (applicable.length) return this.shapeToLimits(active, flow, applicable);
        continue;
      }
      return this.shape(active, flow);
    }
  }

  /**
   * aws-limits: the request waits its turn under every limit it falls under, one after another,
   * each limit with its own rate, burst and key (the same buckets `--fault aws-limits` counts, so
   * a client shaped here is never refused there). Requests that cost more than one unit (records,
   * bytes, capacity units) wait for their units; Lambda invocations wait for a concurrency slot.
   * One refused by a later limit (or whose client left meanwhile) gives back what the earlier
   * limits' buckets gave it.
   */
  private async shapeToLimits(active: ActiveRule, flow: HTTPFlow, applicable: ApplicableLimit[]): Promise<void> {
    const { rule } = active;
    const started = performance.now();
    const record: Record<string, unknown> = { rule: rule.id, key: [...new Set(applicable.map((a) => a.limit.name))].join(" + "), waitMs: 0 };
    flow.metadata.shaping = record;
    const taken: ApplicableLimit[] = [];
    for (const a of applicable) {
      const admission = await this.waitForLimit(active, flow, a);
      if (admission.admitted) {
        taken.push(a);
        continue;
      }
      active.limiter!.release(flow);
      record.waitMs = Math.round(performance.now() - started);
      if (admission.reason !== "cancelled") record.limit = admission.limit.name;
      const answered = this.notHeld(rule, flow, record, admission.reason);
      // A request that never goes out spent nothing at AWS: what it took from the buckets it had
      // passed goes back, or they would hold back the requests after it for nothing. One passed
      // on unshaped (overflow=pass) does reach AWS, so it keeps what it took.
      if (answered || admission.reason === "cancelled") await this.giveBack(active, taken);
      if (answered) flow.response = this.limitRejection(active, admission);
      return;
    }
    for (const a of applicable) active.limiter!.charged(flow, a, active.ns, a.cost <= 1 && a.limit.kind !== "concurrency" ? burstInHand(a.burst) : a.burst);
    const waited = performance.now() - started;
    record.waitMs = Math.round(waited);
    this.waitHistogram.observe({ rule: rule.id }, waited / 1000);
  }

  /**
   * Returns to their buckets the tokens a request took under `taken` (the limits it had waited
   * for) before a later limit refused it. Each goes back as it was taken — one token through the
   * limit's queue (its bucket as the queue shapes it, see burstInHand), or the request's units —
   * in one atomic step of the shared state, never above the bucket's size. Concurrency slots are
   * not tokens: `AwsLimiter.release` frees them.
   */
  private async giveBack(active: ActiveRule, taken: ApplicableLimit[]): Promise<void> {
    const at = performance.now();
    const returns: Promise<void>[] = [];
    for (const a of taken) {
      if (a.limit.kind === "concurrency") continue;
      const queued = a.cost <= 1;
      const done = this.ctx.state.charge(active.ns + a.key, { rate: a.rate, burst: queued ? burstInHand(a.burst) : a.burst }, queued ? -1 : -a.cost, at);
      if (isPromise(done)) returns.push(done.catch(this.stateFailed));
    }
    if (returns.length) await Promise.all(returns);
  }

  private async waitForLimit(active: ActiveRule, flow: HTTPFlow, a: ApplicableLimit): Promise<AwsAdmission> {
    const { rule } = active;
    const refused = (reason: "queue-full" | "max-wait" | "cancelled", expectedWaitMs = 0): AwsAdmission => ({ admitted: false, limit: a.limit, key: a.key, reason, expectedWaitMs });
    if (a.limit.kind === "concurrency") {
      const slot = active.limiter!.acquire(flow, a, active.ns, this.ctx.state);
      const ready = slot.ready;
      if (!ready) return { admitted: true };
      return new Promise<AwsAdmission>((resolve) => {
        const timer = Number.isFinite(rule.maxWaitMs) ? setTimeout(() => finish(refused("max-wait", rule.maxWaitMs)), rule.maxWaitMs) : null;
        const unwatch = flow.onClientGone(() => finish(refused("cancelled")));
        let done = false;
        const finish = (x: AwsAdmission) => {
          if (done) return;
          done = true;
          if (timer) clearTimeout(timer);
          unwatch();
          if (!x.admitted) slot.cancel();
          resolve(x);
        };
        void ready.then(() => {
          // Woken after giving up: the slot it was handed goes back.
          if (done) active.limiter!.release(flow);
          else finish({ admitted: true });
        });
      });
    }
    if (a.cost <= 1) {
      // One unit per request: the fair queue (round-robin lanes by operation, max-queue, max-wait).
      let queue = active.limitQueues.get(a.limit);
      if (!queue) {
        const state = this.ctx.state;
        queue = new RateQueue({ rate: a.rate, burst: burstInHand(a.burst), maxQueue: rule.maxQueue, maxWaitMs: rule.maxWaitMs }, (key, l, at, reserveMs, reserveTurns) => state.take(active.ns + key, l, 1, at, reserveMs, reserveTurns));
        queue.returnTokens = this.tokenReturner(active.ns);
        active.limitQueues.set(a.limit, queue);
      }
      const ticket = queue.enqueue(a.key, keyOf(rule.fair, flow));
      const unwatch = flow.onClientGone(ticket.cancel);
      const admission = await ticket.result;
      unwatch();
      return admission.admitted ? { admitted: true } : refused(admission.reason, admission.expectedWaitMs);
    }
    // Several units (records, bytes, capacity units): wait until the bucket holds them all.
    const deadline = performance.now() + rule.maxWaitMs;
    let gone = false;
    const unwatch = flow.onClientGone(() => (gone = true));
    try {
      for (;;) {
        const grant = await this.ctx.state.take(active.ns + a.key, { rate: a.rate, burst: a.burst }, a.cost, performance.now());
        if (grant.granted) return { admitted: true };
        if (gone) return refused("cancelled");
        if (performance.now() + grant.waitMs > deadline) return refused("max-wait", grant.waitMs);
        await new Promise((r) => setTimeout(r, Math.max(1, grant.waitMs)));
      }
    } finally {
      unwatch();
    }
  }

  /** The local answer for a request an aws-limits rule would not hold. */
  private limitRejection(active: ActiveRule, a: Extract<AwsAdmission, { admitted: false }>): Response {
    const { rule } = active;
    const retryAfter = Math.max(1, Math.ceil(a.expectedWaitMs / 1000));
    const why = a.reason === "queue-full" ? `its queue already holds ${rule.maxQueue} requests (max-queue=${rule.maxQueue})` : `it would wait longer than max-wait=${fmtSeconds(rule.maxWaitMs)}`;
    const body =
      `sluice shaping rejected this request: rule ${rule.id} (${rule.text}) queues to AWS's limit "${a.limit.name}" (${a.limit.service}; sluice limits ${a.limit.service}) and ${why}.\n` +
      `What to do: retry after ${retryAfter}s or send fewer requests at once; raise max-wait= or max-queue= on the rule; or add overflow=pass to let excess requests through unshaped.\n`;
    return Response.make(rule.status, body, {
      "content-type": "text/plain; charset=utf-8",
      "x-sluice-shaping": "rejected",
      "x-sluice-shaping-rule": rule.id,
      "x-sluice-shaping-reason": a.reason,
      "retry-after": String(retryAfter),
    });
  }

  private shape(active: ActiveRule, flow: HTTPFlow): void | Promise<void> {
    const { rule } = active;
    const key = keyOf(rule.per, flow);
    const lane = rule.fair === rule.per ? key : keyOf(rule.fair, flow);
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
    if (this.notHeld(rule, flow, record, a.reason)) flow.response = this.rejection(active, key, a);
  }

  /**
   * A request a queue did not admit: killed when its client left, else counted, and passed on
   * unshaped (overflow=pass) or — when this returns true — answered locally by the caller.
   */
  private notHeld(rule: ShapeRule, flow: HTTPFlow, record: Record<string, unknown>, reason: "queue-full" | "max-wait" | "cancelled"): boolean {
    if (reason === "cancelled") {
      record.cancelled = true;
      flow.error = { msg: "client disconnected while its request waited in a shaping queue", timestamp: flowNow() };
      flow.kill();
      return false;
    }
    const outcome = rule.overflow === "pass" ? "passed" : "answered";
    this.rejectedCounter.inc({ rule: rule.id, reason, outcome });
    record.rejected = reason;
    if (rule.overflow === "pass") {
      record.overflow = "passed";
      return false;
    }
    return true;
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
  response(flow: HTTPFlow): void | Promise<void> {
    this.releaseSlots(flow);
    // aws-limits: a DynamoDB read costs what its answer holds (charged now, into debt if need be).
    for (const a of this.rules) if (a.limiter) settled(a.limiter.settle(flow, this.ctx.state, performance.now()), noop, this.stateFailed);
    const sent = this.sent.get(flow);
    if (!sent || !flow.response) return;
    this.sent.delete(flow);
    const { active, key } = sent;
    const r = active.rule;
    if (!r.adaptive || !active.queue.get(key)) return;
    const code = throttlingCodeOf(flow.response, awsInfoOf(flow));
    if (code === null && flow.response.statusCode >= 500) return;
    const before = active.queue.get(key)!.rate;
    const opts = { start: r.rate, min: r.adaptive.min, max: r.adaptive.max };
    const event = code !== null ? ({ kind: "throttle", sentAt: sent.sentAt } as const) : ({ kind: "success" } as const);
    const answer = this.ctx.state.adaptive(active.ns + key, opts, event, performance.now());
    return settled(
      answer,
      (snap) => {
        if (snap.cut) {
          (flow.metadata.shaping as Record<string, unknown>).throttled = code;
          this.ctx.log.debug(`shaping: rule ${r.id} key ${key}: ${code}, rate ${fmtRate(before)} → ${fmtRate(snap.rate)}`);
        }
        this.learn(active, key, snap);
      },
      this.stateFailed,
    );
  }

  /** Per rule and key: the current rate, the queue and what adaptive rules learned (the web UI's Shaping page). */
  status(): ShapingRuleStatus[] {
    const t = performance.now();
    return this.rules.map((a) => ({
      id: a.rule.id,
      text: a.rule.text,
      explain: explainShapeRule(a.rule),
      adaptive: !!a.rule.adaptive,
      keys: [...a.queue.all()].map((b) => {
        const learned = a.learned.get(b.key);
        return { key: b.key, rate: b.rate, queued: b.depth, longestWaitMs: b.oldestWaitMs(t), released: b.released, rejected: b.rejected, cuts: learned?.cuts ?? null, throttles: learned?.throttles ?? null };
      }),
    }));
  }

  error(flow: HTTPFlow): void {
    this.releaseSlots(flow);
  }

  /** Lambda's concurrency: an invocation holds its slot until its answer is complete or it failed. */
  private releaseSlots(flow: HTTPFlow): void {
    for (const a of this.rules) a.limiter?.release(flow);
  }

  /** One line per rule and key: what `shaping.status` shows. */
  statusText(): string {
    if (this.rules.length === 0) return "no shaping rules (add one with --shape 'FILTER => RATE', e.g. --shape '~svc ec2 => 20/s')";
    const lines: string[] = [];
    for (const r of this.status()) {
      lines.push(`rule ${r.id}: ${r.text}`, `  ${r.explain}`);
      for (const k of r.keys) {
        const learned = k.cuts !== null ? `, ${k.cuts} cut${k.cuts === 1 ? "" : "s"} on ${k.throttles} throttle${k.throttles === 1 ? "" : "s"}` : "";
        lines.push(`  ${k.key}: rate ${fmtRate(k.rate)}, queued ${k.queued}, longest wait ${fmtSeconds(k.longestWaitMs)}, released ${k.released}, rejected ${k.rejected}${learned}`);
      }
      if (r.keys.length === 0) lines.push("  (no requests yet)");
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
