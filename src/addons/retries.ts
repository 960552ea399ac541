/**
 * Retry observability, live: every finished flow goes through an InvocationTracker, which groups
 * SDK attempts into invocations (or infers retries for clients without SDK headers). The flow gets
 * `flow.metadata.retry = { invocationId, attempt, maxAttempts, inferred, backoffMs }`, Prometheus
 * counters on the proxy's registry (served by the metrics addon) count requests, throttles,
 * retries, give-ups and back-off, and `retries.summary` prints the table per service/operation.
 */
import { Counter, type Registry } from "../core/prometheus.js";
import type { Addon, AddonContext } from "../core/addons.js";
import { now, type HTTPFlow } from "../core/flow.js";
import { InvocationTracker, type AttemptEvent, type InvocationRecord, type OperationStats } from "../aws/index.js";
import { declareOptions, type TypedOptions } from "../core/options.js";

type Op = "service" | "operation";

/** Set on a flow once the tracker has it (a symbol: invisible to scripts, files and copies' fields). */
const RECORDED = Symbol("sluice.retries.recorded");

/**
 * A Prometheus counter whose values are tallied in a plain map and handed to prom-client only when
 * scraped: prom-client's own inc() validates and hashes the labels on every call, which cost
 * several percent of the proxy's CPU at thousands of requests a second.
 */
class TalliedCounter<L extends string> {
  private readonly tally = new Map<string, { labels: Record<L, string>; value: number }>();

  constructor(registry: Registry, name: string, help: string, private readonly labelNames: L[]) {
    const tally = this.tally;
    new Counter<L>({
      name, help, labelNames, registers: [registry],
      collect() {
        this.reset();
        for (const { labels, value } of tally.values()) this.inc(labels, value);
      },
    });
  }

  /** Adds `value` to the series with these label values (in labelNames order). */
  inc(values: string[], value = 1): void {
    const key = values.join("\0");
    const entry = this.tally.get(key);
    if (entry) entry.value += value;
    else this.tally.set(key, { labels: Object.fromEntries(this.labelNames.map((n, i) => [n, values[i]!])) as Record<L, string>, value });
  }
}

interface RetryCounters {
  requests: TalliedCounter<Op | "status">;
  throttles: TalliedCounter<Op>;
  retries: TalliedCounter<Op>;
  giveups: TalliedCounter<Op>;
  backoff: TalliedCounter<Op>;
  invocations: TalliedCounter<Op | "outcome">;
}

/** The counters of each registry, made once (a second Retries on the same proxy shares them). */
const countersByRegistry = new WeakMap<Registry, RetryCounters>();

function countersOn(registry: Registry): RetryCounters {
  const known = countersByRegistry.get(registry);
  if (known) return known;
  const op: Op[] = ["service", "operation"];
  const counters: RetryCounters = {
    requests: new TalliedCounter(registry, "sluice_requests_total", "Requests (every attempt) by AWS service, operation and response status (\"error\": no response)", ["service", "operation", "status"]),
    throttles: new TalliedCounter(registry, "sluice_throttles_total", "Responses that were throttling (429, SlowDown, ThrottlingException, RequestLimitExceeded, …)", op),
    retries: new TalliedCounter(registry, "sluice_retries_total", "Attempts after the first of an SDK call (from amz-sdk-request, or inferred)", op),
    giveups: new TalliedCounter(registry, "sluice_giveups_total", "SDK calls whose last attempt failed with a retryable error", op),
    backoff: new TalliedCounter(registry, "sluice_backoff_seconds_total", "Seconds clients waited between a failed attempt's response and their retry", op),
    invocations: new TalliedCounter(registry, "sluice_invocations_total", "Finished SDK calls by outcome: ok, retried (succeeded after retries), gave-up, failed", ["service", "operation", "outcome"]),
  };
  countersByRegistry.set(registry, counters);
  return counters;
}

/** The options this addon owns, declared once (names, types, defaults, help). */
export const RETRIES_OPTIONS = declareOptions({
  retry_infer_window: { type: "int", default: 30, help: "Seconds after a retryable failure within which the same request from the same client counts as an inferred retry (clients without amz-sdk-* headers)" },
  retry_idle_window: { type: "int", default: 60, help: "Seconds an SDK call may wait for its next attempt; after that a call whose last attempt failed counts as given up" },
});

export class Retries implements Addon {
  name = "retries";
  private ctx!: AddonContext;
  private opts!: TypedOptions<typeof RETRIES_OPTIONS>;
  private tracker!: InvocationTracker;
  private counters!: RetryCounters;
  private timer: NodeJS.Timeout | null = null;

  load(ctx: AddonContext): void {
    this.ctx = ctx;
    this.opts = ctx.options.register(RETRIES_OPTIONS);
    this.counters = countersOn(ctx.metrics);
    ctx.commands.add({
      name: "retries.summary",
      help: "Requests, retries, throttles, give-ups and back-off time per service and operation",
      params: [],
      run: () => retrySummaryTable(this.tracker.stats()),
    });
  }

  configure(updated: Set<string>): void {
    if (!updated.has("retry_infer_window") && !updated.has("retry_idle_window") && this.tracker) return;
    const inferWindow = this.opts.retry_infer_window;
    const idleWindow = this.opts.retry_idle_window;
    if (inferWindow < 0 || idleWindow < 0) throw new Error("retry_infer_window and retry_idle_window must be 0 or more seconds");
    // A new tracker starts from scratch; the Prometheus counters keep counting.
    this.tracker?.finishAll();
    this.tracker = new InvocationTracker({
      inferWindow,
      idleWindow,
      onAttempt: (e) => this.countAttempt(e),
      onInvocationEnd: (inv) => this.countInvocation(inv),
    });
  }

  running(): void {
    // Calls whose client stopped retrying must become give-ups even when no more traffic comes.
    this.timer = setInterval(() => this.tracker.sweep(now()), 1000);
    this.timer.unref();
  }

  response(flow: HTTPFlow): void {
    this.record(flow);
  }

  error(flow: HTTPFlow): void {
    this.record(flow);
  }

  done(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
    this.tracker.finishAll();
  }

  /** The live tracker (for front ends that show more than the counters). */
  get invocations(): InvocationTracker {
    return this.tracker;
  }

  private record(flow: HTTPFlow): void {
    // A flow can reach both `response` and `error` (the client left after its answer): count it
    // once. A mark on the flow itself costs less than a WeakSet lookup per flow.
    const marked = flow as HTTPFlow & { [RECORDED]?: true };
    if (marked[RECORDED] || flow.websocket) return;
    marked[RECORDED] = true;
    const retry = this.tracker.add(flow);
    if (retry) flow.metadata.retry = retry;
  }

  private countAttempt(e: AttemptEvent): void {
    const labels = [e.service, e.operation];
    this.counters.requests.inc([e.service, e.operation, e.status]);
    if (e.attempt.throttle) this.counters.throttles.inc(labels);
    if (e.attempt.attempt > 1) this.counters.retries.inc(labels);
    if (e.attempt.backoff) this.counters.backoff.inc(labels, e.attempt.backoff);
  }

  private countInvocation(inv: InvocationRecord): void {
    if (inv.outcome === "gave-up") this.counters.giveups.inc([inv.service, inv.operation]);
    this.counters.invocations.inc([inv.service, inv.operation, inv.outcome ?? "failed"]);
  }
}

/** The per service/operation table of `retries.summary` and `sluice report`. */
export function retrySummaryTable(rows: OperationStats[], limit = Infinity): string {
  if (rows.length === 0) return "No requests seen yet.";
  const header = ["service", "operation", "requests", "retries", "throttled", "gave up", "back-off", "calls", "ok", "retried ok"];
  const body = rows.slice(0, limit).map((r) => [
    r.service,
    r.operation,
    String(r.requests),
    r.inferredRetries ? `${r.retries} (${r.inferredRetries} inferred)` : String(r.retries),
    r.throttles ? `${r.throttles} (${percent(r.throttles, r.requests)})` : "0",
    String(r.outcomes["gave-up"]),
    `${r.backoffSeconds.toFixed(2)}s`,
    String(r.invocations),
    String(r.outcomes.ok),
    String(r.outcomes.retried),
  ]);
  const widths = header.map((h, i) => Math.max(h.length, ...body.map((row) => row[i]!.length)));
  const line = (cells: string[]) => cells.map((c, i) => (i < 2 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join("  ").trimEnd();
  const more = rows.length > limit ? `\n… ${rows.length - limit} more operations` : "";
  return [line(header), ...body.map(line)].join("\n") + more;
}

export function percent(part: number, whole: number): string {
  if (whole === 0) return "0%";
  const p = (part / whole) * 100;
  return `${p < 10 && p > 0 ? p.toFixed(1) : p.toFixed(0)}%`;
}
