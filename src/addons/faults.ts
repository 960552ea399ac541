/**
 * `--fault 'FILTER => ACTION [k=v …]'` and `--faults FILE`: declared faults — protocol-correct AWS
 * throttling and errors, status overrides, latency, bandwidth limits and connection faults —
 * with triggers (probability, first/every/after N, a time window, rate budgets). Rules can be
 * listed, added, removed, enabled and disabled at runtime through the `fault.*` commands (and so
 * the admin API). Every injected fault is recorded on its flow and counted.
 */
import { Counter } from "../core/prometheus.js";
import type { Addon, AddonContext } from "../core/addons.js";
import { Response, type HTTPFlow } from "../core/flow.js";
import { CommandError } from "../core/commands.js";
import { isPromise, type MaybeAsync, type SharedState } from "../core/shared-state.js";
import { keyOf } from "../rules/keys.js";
import { AwsLimiter, refusalOf, type AwsLimitRefused } from "../aws/index.js";
import { explainRule, FaultRuleError, parseFaultRule, phaseOf, readFaultFile, type FaultRule, type FaultRuleSource } from "./fault-rules.js";
import { applyFaultAction, FlowWaits } from "./fault-actions.js";
import type { FaultRuleInfo } from "./fault-info.js";
export type { FaultRuleInfo } from "./fault-info.js";
import { declareOptions, type TypedOptions } from "../core/options.js";

export { FaultRuleError } from "./fault-rules.js";


/** The options this addon owns, declared once (names, types, defaults, help). */
export const FAULTS_OPTIONS = declareOptions({
  fault_rules: { type: "strings", default: [], help: "Fault rules 'FILTER => ACTION [args] [p=…] [first=N] [every=N] [after=N] [window=START-END] [rate=N/s per=… burst=N]' (repeatable with --fault)" },
  fault_file: { type: "optional-string", default: null, help: "YAML file with a list of fault rules (strings or mappings), as with --faults; see examples/faults.yaml" },
  fault_headers: { type: "bool", default: false, help: "Let a request ask for a fault with the header x-sluice-fault: ACTION (e.g. throttle, error 500, delay 200ms); the header is removed before forwarding. Off by default: traffic cannot trigger faults" },
});

export class FaultNotFoundError extends Error {}

/** The request header that asks for a fault when fault_headers is on (as Envoy's x-envoy-fault-*). */
export const FAULT_HEADER = "x-sluice-fault";
const MAX_HEADER_RULES = 256;

/**
 * A change to the rules, as fleet rule sync (fleet/rules-sync.ts) passes it between processes:
 * `put` makes rule `id` read `text` (re-parsed on arrival) and be on or off; `remove` drops it.
 */
export type FaultRuleChange = { op: "put"; id: string; text: string; enabled: boolean } | { op: "remove"; id: string };

class ActiveRule {
  matched = 0;
  injected = 0;
  /** When the rule was loaded (performance.now() ms): time windows count from here. */
  loadedAt = performance.now();
  readonly phase: "request" | "response";
  /** Prefix of this rule's budgets in the shared state: the same rule in another process shares them. */
  readonly ns: string;
  /** aws-limits rules: AWS's buckets (in the shared state too); the rule fires only for what they refuse. */
  readonly limiter: AwsLimiter | null;

  constructor(
    readonly rule: FaultRule,
    readonly source: FaultRuleInfo["source"],
    private readonly state: SharedState,
  ) {
    this.limiter = rule.action.name === "aws-limits" ? new AwsLimiter(rule.action) : null;
    this.phase = phaseOf(rule.action);
    // Its name, else its text: the same rule in every process of a fleet shares its budgets.
    this.ns = rule.name !== null ? `fault/name=${rule.name}/` : `fault/${rule.text}/`;
  }

  /** Counts a matching request and says whether it gets the fault (asynchronously only when the shared state is). */
  fires(flow: HTTPFlow, t: number): MaybeAsync<boolean> {
    const n = ++this.matched;
    const tr = this.rule.triggers;
    const elapsed = t - this.loadedAt;
    if (tr.fromMs !== null && elapsed < tr.fromMs) return false;
    if (tr.untilMs !== null && elapsed >= tr.untilMs) return false;
    if (tr.first !== null && n > tr.first) return false;
    if (tr.after !== null && n <= tr.after) return false;
    if (tr.every !== null && n % tr.every !== 0) return false;
    if (this.limiter) return this.limited(flow, t);
    if (!tr.rate) return this.chance();
    // Within the budget: admitted untouched. Only the excess is faulted.
    const grant = this.state.take(this.ns + keyOf(tr.rate.per, flow), { rate: tr.rate.perSecond, burst: tr.rate.burst }, 1, t);
    return isPromise(grant) ? grant.then((g) => !g.granted && this.chance()) : !grant.granted && this.chance();
  }

  /** aws-limits: fires for what AWS's buckets refuse, recording which limit on the flow. */
  private limited(flow: HTTPFlow, t: number): MaybeAsync<boolean> {
    const record = (refused: AwsLimitRefused | null): boolean => {
      if (!refused || !this.chance()) return false;
      flow.metadata.aws_limit = refusalOf(refused.limit, flow, refused.parts);
      return true;
    };
    const refused = this.limiter!.admit(flow, this.state, t, this.ns);
    return isPromise(refused) ? refused.then(record) : record(refused);
  }

  private chance(): boolean {
    const p = this.rule.triggers.probability;
    return p === null || Math.random() < p;
  }

  info(): FaultRuleInfo {
    const r = this.rule;
    return { id: r.id, rule: r.text, filter: r.filterText, action: r.action.name, enabled: r.enabled, source: this.source, matched: this.matched, injected: this.injected, explain: explainRule(r) };
  }
}

export class Faults implements Addon {
  name = "faults";
  private ctx!: AddonContext;
  private opts!: TypedOptions<typeof FAULTS_OPTIONS>;
  /** Rules from fault_rules and fault_file, then rules added at runtime; first firing rule wins. */
  private configured: ActiveRule[] = [];
  private runtime: ActiveRule[] = [];
  private readonly waits = new FlowWaits();
  private injectedCounter!: Counter<"rule" | "action">;
  /** Highest numeric id handed out, so runtime rules get fresh ones. */
  private lastNumericId = 0;
  /** fault_headers: rules parsed from `x-sluice-fault` values (kept so triggers such as first=/rate= count across requests). */
  private headerRules = new Map<string, ActiveRule>();
  /** Response-phase faults a request asked for with the header, applied when the answer comes. */
  private headerFaultsPending = new WeakMap<HTTPFlow, ActiveRule>();
  private warnedHeaderOff = false;
  /** Told of every change made here (not of those applied with applyChange). */
  private readonly changeListeners: ((change: FaultRuleChange) => void)[] = [];

  load(ctx: AddonContext): void {
    this.ctx = ctx;
    this.opts = ctx.options.register(FAULTS_OPTIONS);
    this.injectedCounter = new Counter({
      name: "sluice_faults_injected_total",
      help: "Faults injected, by rule id and action",
      labelNames: ["rule", "action"],
      registers: [ctx.metrics],
    });
    this.registerCommands(ctx);
  }

  private registerCommands(ctx: AddonContext): void {
    const attempt = <T>(fn: () => T): T => {
      try {
        return fn();
      } catch (err) {
        if (err instanceof FaultRuleError || err instanceof FaultNotFoundError) throw new CommandError(err.message);
        throw err;
      }
    };
    ctx.commands.add({
      name: "fault.list",
      help: "List fault rules: id, on/off, rule, requests matched and faults injected",
      params: [],
      run: () => this.listText(),
    });
    ctx.commands.add({
      name: "fault.add",
      help: "Add a fault rule, e.g. fault.add ~svc s3 => throttle p=0.5",
      params: [{ name: "spec", type: "rest" }],
      run: (spec: string) => attempt(() => `added fault rule ${formatInfo(this.add(spec))}`),
    });
    ctx.commands.add({
      name: "fault.remove",
      help: "Remove a fault rule by id",
      params: [{ name: "id", type: "string" }],
      run: (id: string) => attempt(() => `removed fault rule ${formatInfo(this.remove(id))}`),
    });
    ctx.commands.add({
      name: "fault.enable",
      help: "Enable a fault rule by id",
      params: [{ name: "id", type: "string" }],
      run: (id: string) => attempt(() => `enabled fault rule ${formatInfo(this.setEnabled(id, true))}`),
    });
    ctx.commands.add({
      name: "fault.disable",
      help: "Disable a fault rule by id (requests it holds with hang or delay go on)",
      params: [{ name: "id", type: "string" }],
      run: (id: string) => attempt(() => `disabled fault rule ${formatInfo(this.setEnabled(id, false))}`),
    });
  }

  configure(updated: Set<string>): void | Promise<void> {
    if (!updated.has("fault_rules") && !updated.has("fault_file")) return;
    const sources: { source: FaultRuleSource; from: "option" | "file" }[] = this.opts.fault_rules.map((s) => ({ source: s, from: "option" }));
    const file = this.opts.fault_file;
    if (file) {
      const fromFile = readFaultFile(file);
      // An empty file (or `faults:` with nothing under it) is most likely the wrong file: say so rather than inject nothing.
      if (!fromFile.length) this.ctx.log.warn(`--faults ${file} holds no rules, so no faults come from it; a rule looks like - "~svc s3 => throttle p=0.3" (see examples/faults.yaml)`);
      for (const s of fromFile) sources.push({ source: s, from: "file" });
    }
    const rules = sources.map(({ source, from }, i) => new ActiveRule(parseFaultRule(source, String(i + 1), this.ctx.filter), from, this.ctx.state));
    const ids = new Set<string>();
    for (const a of [...rules, ...this.runtime]) {
      if (ids.has(a.rule.id)) throw new FaultRuleError(`fault rule ${JSON.stringify(a.rule.text)}: id ${a.rule.id} is used by another rule; give it its own with id=NAME`);
      ids.add(a.rule.id);
    }
    // In a fleet a name means one rule everywhere: another process holding it for other text refuses these rules.
    const state = this.ctx.state;
    const claims = state.claimName ? rules.filter((a) => a.rule.name !== null).map((a) => state.claimName!("fault", a.rule.name!, a.rule.text)) : [];
    const pending = claims.filter(isPromise);
    if (pending.length) return Promise.all(pending).then(() => this.apply(rules));
    this.apply(rules);
  }

  private apply(rules: ActiveRule[]): void {
    for (const old of this.configured) this.waits.releaseRule(old.rule.id);
    // Budgets of rules that are gone are forgotten; a rule given again unchanged keeps its own.
    const kept = new Set(rules.map((a) => a.ns));
    for (const old of this.configured) if (!kept.has(old.ns)) this.forgetState(old);
    this.configured = rules;
    this.lastNumericId = Math.max(this.lastNumericId, rules.length);
    if (rules.length) this.ctx.log.debug(`faults: ${rules.length} rule${rules.length === 1 ? "" : "s"}: ${rules.map((a) => `${a.rule.id}: ${a.rule.text}`).join("; ")}`);
  }

  running(): void {
    // Time windows of rules given at start-up count from when the proxy starts listening.
    const t = performance.now();
    for (const a of this.configured) a.loadedAt = t;
  }

  done(): void {
    this.waits.stopAll();
  }

  request(flow: HTTPFlow): void | Promise<void> {
    const asked = flow.request.headers.get(FAULT_HEADER);
    if (asked !== undefined) {
      const handled = this.headerFault(flow, asked);
      if (handled !== null) return handled;
    }
    // Already answered (shaping, a script) or faulted: leave it alone.
    if (flow.response || flow.metadata.fault) return;
    return this.evaluate(flow, "request");
  }

  /**
   * fault_headers: a request that asks for a fault with the header gets it (the header never
   * reaches the server). Returns null when the request goes on to the rules as usual.
   */
  private headerFault(flow: HTTPFlow, asked: string): void | Promise<void> | null {
    if (!this.opts.fault_headers) {
      if (!this.warnedHeaderOff) {
        this.warnedHeaderOff = true;
        this.ctx.log.warn(`faults: a request carries ${FAULT_HEADER}: ${asked} but fault_headers is off, so it is forwarded unchanged and no fault is injected (--set fault_headers=true to allow it)`);
      }
      return null;
    }
    flow.request.headers.delete(FAULT_HEADER);
    if (flow.response || flow.metadata.fault) return null;
    let active = this.headerRules.get(asked);
    if (!active) {
      let rule: FaultRule;
      try {
        rule = parseFaultRule(`=> ${asked}`, FAULT_HEADER, this.ctx.filter);
      } catch (err) {
        const why = (err as Error).message.replace(/^fault rule "=> [^"]*": /, "");
        flow.response = Response.make(400, `sluice: the ${FAULT_HEADER} header ${JSON.stringify(asked)} is not a fault action: ${why}\n`, { "content-type": "text/plain; charset=utf-8", "x-sluice-fault-error": "bad-action" });
        flow.metadata.fault = { rule: FAULT_HEADER, action: "refused" };
        return;
      }
      active = new ActiveRule(rule, "header", this.ctx.state);
      // Clients choose the values: keep a bounded number of them.
      if (this.headerRules.size >= MAX_HEADER_RULES) this.headerRules.delete(this.headerRules.keys().next().value!);
      this.headerRules.set(asked, active);
    }
    const a = active;
    const fires = a.fires(flow, performance.now());
    const go = (yes: boolean): void | Promise<void> => {
      if (!yes) return;
      if (a.phase === "response") {
        this.headerFaultsPending.set(flow, a);
        return;
      }
      return this.inject(a, flow);
    };
    return isPromise(fires) ? fires.then(go) : go(fires);
  }

  /**
   * Lambda's concurrency: an invocation is in flight until its answer is complete or it failed.
   * DynamoDB reads: the answer's size is what they cost (charged now, into debt if need be).
   */
  response(flow: HTTPFlow): void | Promise<void> {
    this.releaseLimits(flow);
    const t = performance.now();
    const settling: Promise<void>[] = [];
    for (const a of [...this.configured, ...this.runtime, ...this.headerRules.values()]) {
      const done = a.limiter?.settle(flow, this.ctx.state, t);
      if (done) settling.push(done.catch((err: Error) => this.ctx.log.error(`faults: the shared state (${this.ctx.state.description}) failed: ${err.message}`)));
    }
    if (settling.length) return Promise.all(settling).then(() => {});
  }

  error(flow: HTTPFlow): void {
    this.releaseLimits(flow);
  }

  private releaseLimits(flow: HTTPFlow): void {
    for (const a of this.configured) a.limiter?.release(flow);
    for (const a of this.runtime) a.limiter?.release(flow);
    for (const a of this.headerRules.values()) a.limiter?.release(flow);
  }

  responseHeaders(flow: HTTPFlow): void | Promise<void> {
    const asked = this.headerFaultsPending.get(flow);
    if (asked && flow.response && !flow.metadata.fault) {
      this.headerFaultsPending.delete(flow);
      return this.inject(asked, flow);
    }
    if (flow.metadata.fault || !flow.response) return;
    return this.evaluate(flow, "response");
  }

  private evaluate(flow: HTTPFlow, phase: "request" | "response"): void | Promise<void> {
    if (this.configured.length === 0 && this.runtime.length === 0) return;
    const t = performance.now();
    const a = firing([...this.configured, ...this.runtime], 0, flow, phase, t);
    return isPromise(a) ? a.then((x) => this.inject(x, flow)) : this.inject(a, flow);
  }

  private inject(a: ActiveRule | null, flow: HTTPFlow): void | Promise<void> {
    if (!a) return;
    a.injected++;
    const { id, action } = a.rule;
    flow.metadata.fault = { rule: id, action: action.name };
    this.injectedCounter.inc({ rule: id, action: action.name });
    return applyFaultAction(flow, id, action, this.waits);
  }

  /** Every rule, in the order they are tried. */
  list(): FaultRuleInfo[] {
    return [...this.configured, ...this.runtime].map((a) => a.info());
  }

  /** Adds a rule at runtime (after the configured ones); returns it with its id. */
  add(source: FaultRuleSource): FaultRuleInfo {
    const used = new Set([...this.configured, ...this.runtime].map((a) => a.rule.id));
    // Never reuse the id of a removed rule: metrics and logs would mix the two up.
    let next = Math.max(this.lastNumericId, used.size) + 1;
    while (used.has(String(next))) next++;
    const rule = parseFaultRule(source, String(next), this.ctx.filter);
    if (used.has(rule.id)) throw new FaultRuleError(`fault rule ${JSON.stringify(rule.text)}: id ${rule.id} is already used; pick another with id=NAME or remove that rule first`);
    const active = new ActiveRule(rule, "runtime", this.ctx.state);
    this.runtime.push(active);
    if (rule.id === String(next)) this.lastNumericId = next;
    this.ctx.log.info(`faults: added rule ${rule.id}: ${rule.text}${rule.enabled ? "" : " (disabled)"}`);
    this.changed({ op: "put", id: rule.id, text: rule.text, enabled: rule.enabled });
    return active.info();
  }

  remove(id: string): FaultRuleInfo {
    const a = this.find(id);
    this.configured = this.configured.filter((x) => x !== a);
    this.runtime = this.runtime.filter((x) => x !== a);
    this.waits.releaseRule(id);
    this.forgetState(a);
    this.ctx.log.info(`faults: removed rule ${id}: ${a.rule.text}`);
    this.changed({ op: "remove", id });
    return a.info();
  }

  setEnabled(id: string, enabled: boolean): FaultRuleInfo {
    const a = this.find(id);
    if (a.rule.enabled !== enabled) {
      a.rule.enabled = enabled;
      // Held requests go on to the server: disabling a hang ends the outage, as with Toxiproxy.
      if (!enabled) this.waits.releaseRule(id);
      this.ctx.log.info(`faults: rule ${id} ${enabled ? "enabled" : "disabled"}`);
      this.changed({ op: "put", id, text: a.rule.text, enabled });
    }
    return a.info();
  }

  /** Calls `listener` with each change made in this process (fault.add/remove/enable/disable); returns the unsubscribe. */
  onChange(listener: (change: FaultRuleChange) => void): () => void {
    this.changeListeners.push(listener);
    return () => {
      const i = this.changeListeners.indexOf(listener);
      if (i >= 0) this.changeListeners.splice(i, 1);
    };
  }

  /**
   * Applies a change made elsewhere (another process of the fleet) without telling the change
   * listeners, so it is not sent back. Idempotent: a put that matches the rule as it is changes
   * nothing (its counters and budgets stay). Returns whether anything changed.
   */
  applyChange(change: FaultRuleChange, from: string): boolean {
    const all = [...this.configured, ...this.runtime];
    const a = all.find((x) => x.rule.id === change.id);
    if (change.op === "remove") {
      if (!a) return false;
      this.configured = this.configured.filter((x) => x !== a);
      this.runtime = this.runtime.filter((x) => x !== a);
      this.waits.releaseRule(a.rule.id);
      this.forgetState(a);
      this.ctx.log.info(`faults: removed rule ${a.rule.id}: ${a.rule.text} (by ${from})`);
      return true;
    }
    if (a && a.rule.text === change.text) {
      if (a.rule.enabled === change.enabled) return false;
      a.rule.enabled = change.enabled;
      if (!change.enabled) this.waits.releaseRule(a.rule.id);
      this.ctx.log.info(`faults: rule ${a.rule.id} ${change.enabled ? "enabled" : "disabled"} (by ${from})`);
      return true;
    }
    const rule = parseFaultRule(change.text, change.id, this.ctx.filter);
    if (rule.id !== change.id) throw new FaultRuleError(`fault rule ${JSON.stringify(change.text)} from ${from} names id ${rule.id}, not ${change.id}`);
    rule.enabled = change.enabled;
    const active = new ActiveRule(rule, "fleet", this.ctx.state);
    if (a) {
      // Same id, other rule: it takes the old one's place in the order rules are tried.
      this.waits.releaseRule(a.rule.id);
      if (a.ns !== active.ns) this.forgetState(a);
      this.configured = this.configured.map((x) => (x === a ? active : x));
      this.runtime = this.runtime.map((x) => (x === a ? active : x));
    } else {
      this.runtime.push(active);
    }
    if (/^\d+$/.test(rule.id)) this.lastNumericId = Math.max(this.lastNumericId, Number(rule.id));
    this.ctx.log.info(`faults: ${a ? "replaced" : "added"} rule ${rule.id}: ${rule.text}${rule.enabled ? "" : " (disabled)"} (by ${from})`);
    return true;
  }

  /** Rules given at start (fault_rules, fault_file) as changes, for a fleet to take in. */
  configuredRules(): { id: string; text: string; enabled: boolean }[] {
    return this.configured.map((a) => ({ id: a.rule.id, text: a.rule.text, enabled: a.rule.enabled }));
  }

  private changed(change: FaultRuleChange): void {
    for (const l of this.changeListeners) l(change);
  }

  get(id: string): FaultRuleInfo {
    return this.find(id).info();
  }

  /** Requests held right now by delay or hang. */
  get waiting(): number {
    return this.waits.size;
  }

  private forgetState(a: ActiveRule): void {
    if (!a.rule.triggers.rate) return;
    const done = this.ctx.state.forget(a.ns);
    if (isPromise(done)) done.catch((err: Error) => this.ctx.log.error(`faults: the shared state (${this.ctx.state.description}) failed: ${err.message}`));
  }

  private find(id: string): ActiveRule {
    const a = [...this.configured, ...this.runtime].find((x) => x.rule.id === id);
    if (!a) {
      const ids = [...this.configured, ...this.runtime].map((x) => x.rule.id);
      throw new FaultNotFoundError(`no fault rule with id ${JSON.stringify(id)}; ${ids.length ? `rules are ${ids.join(", ")}` : "there are none"} (see fault.list)`);
    }
    return a;
  }

  private listText(): string {
    const all = this.list();
    if (all.length === 0) return "no fault rules (add one with --fault 'FILTER => ACTION' or fault.add, e.g. fault.add ~svc s3 => throttle p=0.3)";
    return all.map((i) => `${formatInfo(i)}\n    ${i.explain}`).join("\n");
  }
}

/** The first enabled rule of `phase` (from `start` on) whose filter matches and whose triggers fire. */
function firing(rules: ActiveRule[], start: number, flow: HTTPFlow, phase: "request" | "response", t: number): MaybeAsync<ActiveRule | null> {
  for (let i = start; i < rules.length; i++) {
    const a = rules[i]!;
    if (!a.rule.enabled || a.phase !== phase || !a.rule.filter(flow)) continue;
    const fires = a.fires(flow, t);
    if (isPromise(fires)) return fires.then((yes) => (yes ? a : firing(rules, i + 1, flow, phase, t)));
    if (fires) return a;
  }
  return null;
}

function formatInfo(i: FaultRuleInfo): string {
  return `${i.id} [${i.enabled ? "on" : "off"}] ${i.rule}  (matched ${i.matched}, injected ${i.injected}, from ${i.source})`;
}
