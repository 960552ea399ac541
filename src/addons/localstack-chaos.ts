/**
 * LocalStack's Chaos API mapped onto sluice's fault rules, so test suites written for LocalStack's
 * chaos run unchanged against sluice in front of real AWS or any fake
 * (https://docs.localstack.cloud/aws/capabilities/chaos-engineering/chaos-api/):
 *
 *   GET    /_localstack/chaos/faults           → the rules
 *   POST   /_localstack/chaos/faults  [rule…]  → replaces them ([] ends every fault)
 *   PATCH  /_localstack/chaos/faults  [rule…]  → adds rules
 *   DELETE /_localstack/chaos/faults  [rule…]  → removes the rules exactly equal to these
 *   GET/POST /_localstack/chaos/effects {"latency": MS}
 *
 * A rule {service, region, operation, probability, error: {statusCode, code}} (every field
 * optional; 503 ServiceUnavailable by default) becomes the fault rule
 * `~svc S & ~region ^R$ & ~op ^O$ => error CODE status=N p=P id=localstack-chaos-N`; latency becomes
 * `delay MS on=response`. Each answer is the current configuration, as LocalStack answers.
 */
import type { Faults } from "./faults.js";

export class ChaosRequestError extends Error {}

interface ChaosRule {
  service?: string;
  region?: string;
  operation?: string;
  probability?: number;
  error?: { statusCode?: number; code?: string };
}

const ID_PREFIX = "localstack-chaos-";
const LATENCY_ID = "localstack-chaos-latency";

export class LocalStackChaos {
  /** The rules as given, each with the id of the fault rule that carries it. */
  private rules: { rule: ChaosRule; id: string }[] = [];
  private latencyMs = 0;
  private next = 1;

  constructor(private readonly faults: () => Faults) {}

  /** Answers one request to /_localstack/chaos/{faults,effects}. */
  handle(method: string, what: string, body: () => Promise<unknown>): Promise<{ status: number; body: unknown }> | { status: number; body: unknown } {
    if (what === "faults") {
      switch (method) {
        case "GET": return this.current();
        case "POST": return body().then((b) => this.replace(rulesOf(b)));
        case "PATCH": return body().then((b) => this.append(rulesOf(b)));
        case "DELETE": return body().then((b) => this.remove(rulesOf(b)));
      }
      throw new ChaosRequestError(`${method} is not supported on /_localstack/chaos/faults; use GET, POST, PATCH or DELETE`);
    }
    if (what === "effects") {
      if (method === "GET") return { status: 200, body: { latency: this.latencyMs } };
      if (method === "POST") return body().then((b) => this.setEffects(b));
      throw new ChaosRequestError(`${method} is not supported on /_localstack/chaos/effects; use GET or POST`);
    }
    throw new ChaosRequestError(`no such endpoint /_localstack/chaos/${what}; LocalStack's chaos endpoints are /_localstack/chaos/faults and /_localstack/chaos/effects`);
  }

  private current(): { status: number; body: unknown } {
    return { status: 200, body: this.rules.map((r) => r.rule) };
  }

  private replace(rules: ChaosRule[]): { status: number; body: unknown } {
    // Check every rule before touching the configuration: a bad one leaves it as it was.
    const specs = rules.map((r) => specOf(r));
    for (const r of this.rules) this.faults().remove(r.id);
    this.rules = [];
    this.add(rules, specs);
    return this.current();
  }

  private append(rules: ChaosRule[]): { status: number; body: unknown } {
    this.add(rules, rules.map((r) => specOf(r)));
    return this.current();
  }

  private add(rules: ChaosRule[], specs: string[]): void {
    const added: string[] = [];
    try {
      rules.forEach((rule, i) => {
        const id = `${ID_PREFIX}${this.next++}`;
        this.faults().add(`${specs[i]} id=${id}`);
        added.push(id);
        this.rules.push({ rule, id });
      });
    } catch (err) {
      // All or nothing, as the configuration is one document.
      for (const id of added) this.faults().remove(id);
      this.rules = this.rules.filter((r) => !added.includes(r.id));
      throw new ChaosRequestError((err as Error).message);
    }
  }

  private remove(rules: ChaosRule[]): { status: number; body: unknown } {
    const wanted = rules.map((r) => canonical(r));
    const keep: typeof this.rules = [];
    for (const r of this.rules) {
      if (wanted.includes(canonical(r.rule))) this.faults().remove(r.id);
      else keep.push(r);
    }
    this.rules = keep;
    return this.current();
  }

  private setEffects(body: unknown): { status: number; body: unknown } {
    if (typeof body !== "object" || body === null || Array.isArray(body)) throw new ChaosRequestError('send {"latency": MILLISECONDS}');
    const latency = (body as { latency?: unknown }).latency ?? 0;
    if (typeof latency !== "number" || !Number.isInteger(latency) || latency < 0) throw new ChaosRequestError(`latency must be a whole number of milliseconds, got ${JSON.stringify(latency)}`);
    const faults = this.faults();
    if (faults.list().some((r) => r.id === LATENCY_ID)) faults.remove(LATENCY_ID);
    if (latency > 0) faults.add(`~all => delay ${latency}ms on=response id=${LATENCY_ID}`);
    this.latencyMs = latency;
    return { status: 200, body: { latency } };
  }
}

function rulesOf(body: unknown): ChaosRule[] {
  if (!Array.isArray(body)) throw new ChaosRequestError('send a JSON array of rules, e.g. [{"service": "s3", "region": "us-east-1"}] ([] clears them)');
  return body.map((r, i) => {
    if (typeof r !== "object" || r === null || Array.isArray(r)) throw new ChaosRequestError(`rule ${i + 1} is not an object`);
    const known = ["service", "region", "operation", "probability", "error"];
    const extra = Object.keys(r).filter((k) => !known.includes(k));
    if (extra.length) throw new ChaosRequestError(`rule ${i + 1}: unknown field ${extra.join(", ")}; LocalStack's fields are ${known.join(", ")}`);
    return r as ChaosRule;
  });
}

/** The fault rule spec (without id=) a chaos rule stands for; a bad field is one error line. */
function specOf(r: ChaosRule): string {
  const where = (field: string, value: unknown) => new ChaosRequestError(`${field} ${JSON.stringify(value)} is not valid`);
  const filter: string[] = [];
  if (r.service !== undefined) {
    if (typeof r.service !== "string" || !/^[a-z0-9-]+$/i.test(r.service)) throw where("service", r.service);
    filter.push(`~svc ${r.service}`);
  }
  if (r.region !== undefined) {
    if (typeof r.region !== "string" || !/^[a-z0-9-]+$/.test(r.region)) throw where("region", r.region);
    filter.push(`~region ^${r.region}$`);
  }
  if (r.operation !== undefined) {
    if (typeof r.operation !== "string" || !/^[A-Za-z0-9]+$/.test(r.operation)) throw where("operation", r.operation);
    filter.push(`~op ^${r.operation}$`);
  }
  const status = r.error?.statusCode ?? 503;
  if (!Number.isInteger(status) || status < 400 || status > 599) throw where("error.statusCode", r.error?.statusCode);
  const code = r.error?.code ?? "ServiceUnavailable";
  if (typeof code !== "string" || !/^[A-Za-z][\w.:-]*$/.test(code)) throw where("error.code", r.error?.code);
  let p = "";
  if (r.probability !== undefined) {
    if (typeof r.probability !== "number" || r.probability < 0 || r.probability > 1) throw where("probability", r.probability);
    if (r.probability < 1) p = ` p=${r.probability}`;
  }
  return `${filter.length ? filter.join(" & ") : "~all"} => error ${code} status=${status}${p}`;
}

/** A rule in a form where two equal rules compare equal (key order does not matter). */
function canonical(r: ChaosRule): string {
  const sorted = (o: unknown): unknown => (o && typeof o === "object" && !Array.isArray(o) ? Object.fromEntries(Object.entries(o).sort(([a], [b]) => a.localeCompare(b)).map(([k, v]) => [k, sorted(v)])) : o);
  return JSON.stringify(sorted(r));
}
