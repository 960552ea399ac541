/**
 * Reconstructs SDK calls ("invocations") and their retries from finished flows, without sockets.
 *
 * Attempts of one call share `amz-sdk-invocation-id`; `amz-sdk-request: attempt=N; max=M` numbers
 * them. Clients that send neither get *inferred* retries: the same client address, operation
 * (`X-Amz-Target`, `Action=`, S3's REST shape), method, URL and body again within `inferWindow`
 * seconds after a retryable failure; among several such open calls the one on the same client
 * connection wins. Feed flows in the order they finish (live, or from a file); the tracker's clock
 * is the latest end time it has seen, so the same code answers live and offline.
 *
 * Standard and adaptive SDKs also stop retrying when their retry quota (500 tokens, 5 a retry,
 * refunded on success) runs out. The tracker keeps the same books per client (address and
 * User-Agent) and, when a call's failure could not have been paid for and the client's connection
 * carries on with another call, closes it as given up at once instead of after `idleWindow`.
 *
 * Memory stays bounded over millions of flows: an invocation is kept only while it may still get
 * another attempt, then folded into counters per service/operation, a time series whose bucket
 * width doubles whenever it would exceed `maxBuckets`, an attempts-per-invocation histogram and a
 * short list of the worst invocations.
 */
import { createHash } from "node:crypto";
import type { HTTPFlow } from "../core/flow.js";
import { awsInfoOf } from "./recognize.js";
import { errorCodeOf, isBareS3Head503, throttlingCodeOf } from "./errors.js";
import type { OperationStats, Outcome, Series, SeriesBucket } from "./retry-stats.js";
export type { OperationStats, Outcome, Series, SeriesBucket } from "./retry-stats.js";


export const OUTCOMES: readonly Outcome[] = ["ok", "retried", "gave-up", "failed"];

/** What the retries addon records on a flow as `flow.metadata.retry`. */
export interface RetryMetadata {
  invocationId: string;
  attempt: number;
  maxAttempts: number | null;
  /** True when the attempt was recognized by repetition, not by SDK headers. */
  inferred: boolean;
  /** Time between the previous attempt's response and this request (null for a first attempt or an unseen predecessor). */
  backoffMs: number | null;
}

export interface AttemptRecord {
  attempt: number;
  /** HTTP status, or null when the flow ended without a response (connection error, kill). */
  status: number | null;
  error: string | null;
  /** Throttling error code (SlowDown, ThrottlingException, 429, …) or null. */
  throttle: string | null;
  /** Worth retrying: throttled, 5xx, connection failure or a transient error code. */
  retryable: boolean;
  /** Seconds since the epoch. */
  start: number;
  end: number;
  /** Seconds waited before this attempt, null when unknown. */
  backoff: number | null;
  inferred: boolean;
  /** A bodiless 503 to an S3 HEAD (see isBareS3Head503): a throttle the client could not tell apart. */
  bareHead503?: boolean;
}

export interface InvocationRecord {
  id: string;
  inferred: boolean;
  service: string;
  operation: string;
  client: string;
  maxAttempts: number | null;
  attempts: AttemptRecord[];
  start: number;
  end: number;
  backoff: number;
  outcome: Outcome | null;
}




/** Everything seen about one attempt, for live consumers such as Prometheus counters. */
export interface AttemptEvent {
  service: string;
  operation: string;
  /** "200", "503", … or "error" for a flow without a response. */
  status: string;
  attempt: AttemptRecord;
  retry: RetryMetadata | null;
}

/** Everything a report needs, as plain JSON-able data. */
export interface TrackerSnapshot {
  flows: number;
  /** Earliest request start and latest end seen (seconds since the epoch; 0 when no flows). */
  firstStart: number;
  lastEnd: number;
  totals: OperationStats;
  operations: OperationStats[];
  series: Series;
  attemptsHistogram: [attempts: number, invocations: number][];
  worstInvocations: InvocationRecord[];
  /** Invocations still waiting for another attempt when the snapshot was taken. */
  open: number;
}

export interface TrackerOptions {
  /** Seconds after a retryable failure within which an identical request is an inferred retry (default 30). */
  inferWindow?: number;
  /** Seconds an invocation waits for its next attempt before it counts as given up (default 60). */
  idleWindow?: number;
  /** Invocations kept open at most; beyond that the longest idle is closed early (default 100,000). */
  maxOpen?: number;
  /** Time-series buckets at most; the bucket width doubles to stay under it (default 3,600). */
  maxBuckets?: number;
  /** How many of the worst invocations (most attempts, then most back-off) to keep (default 10). */
  topInvocations?: number;
  /** Distinct service/operation pairs at most; more are counted under "other" (default 2,000). */
  maxOperations?: number;
  onAttempt?: (event: AttemptEvent) => void;
  onInvocationEnd?: (invocation: InvocationRecord) => void;
}

/** Error codes SDKs retry although they are neither throttling nor 5xx. */
const TRANSIENT_CODES = new Set(["RequestTimeout", "RequestTimeoutException", "PriorRequestNotComplete", "IDPCommunicationError", "TransactionInProgressException"]);

/** Service and operation labels for a flow: AWS's names when recognized, else host and method. */
export function labelsOf(flow: HTTPFlow): { service: string; operation: string } {
  const info = awsInfoOf(flow);
  return { service: info?.service ?? flow.request.prettyHost, operation: info?.operation ?? flow.request.method };
}

/** The time a flow finished: response end, error time, or its start when neither is known. */
export function flowEnd(flow: HTTPFlow): number {
  return flow.response?.timestampEnd ?? flow.error?.timestamp ?? flow.response?.timestampStart ?? flow.request.timestampEnd ?? flow.request.timestampStart;
}

function emptyStats(service: string, operation: string): OperationStats {
  return {
    service, operation, requests: 0, retries: 0, inferredRetries: 0, throttles: 0, retryableErrors: 0, backoffSeconds: 0,
    invocations: 0, outcomes: { ok: 0, retried: 0, "gave-up": 0, failed: 0 }, statuses: {}, bareHead503s: 0,
  };
}

function emptyBucket(): SeriesBucket {
  return { requests: 0, throttles: 0, retries: 0, errors: 0, giveups: 0, backoff: 0 };
}

interface OpenInvocation extends InvocationRecord {
  /** Inferred invocations: the repetition key and the body hash it was opened with. */
  key: string;
  /** The client connection (address:port) of the latest attempt. */
  connection: string;
  /** Retry-quota tokens the client spent on this call's latest retry (refunded if it succeeds). */
  quotaSpent: number;
}

/** The standard retry mode's quota, as botocore (retries/quota.py, standard.py) and the JS SDK v3 keep it. */
const RETRY_QUOTA = 500;
const RETRY_COST = 5;
const NO_RETRY_INCREMENT = 1;

/** A client's retry quota as sluice reckons it from the traffic it saw. */
interface RetryQuota {
  available: number;
}

/** Bodies up to this size tell calls apart by their hash; larger ones by their length. */
const SMALL_BODY = 64 * 1024;

export class InvocationTracker {
  private readonly inferWindow: number;
  private readonly idleWindow: number;
  private readonly maxOpen: number;
  private readonly maxBuckets: number;
  private readonly topCount: number;
  private readonly maxOperations: number;
  /** Open invocations by SDK invocation id, least recently active first (re-inserted on activity). */
  private readonly byId = new Map<string, OpenInvocation>();
  /** Inferred invocations waiting for a repetition, by client/operation/method/URL/body key, oldest first. */
  private readonly byRepetition = new Map<string, OpenInvocation[]>();
  private repetitionCount = 0;
  /** How many open inferred invocations share a client/method/URL: lets most flows skip hashing their body. */
  private readonly repetitionUrls = new Map<string, number>();
  private readonly operations = new Map<string, OperationStats>();
  /** The same rows as `operations`, by service and operation (what the per-flow lookup uses). */
  private readonly operationsByService = new Map<string, Map<string, OperationStats>>();
  private readonly histogram = new Map<number, number>();
  /** Retry quotas of standard/adaptive SDK clients, by address and User-Agent. */
  private readonly quotas = new Map<string, RetryQuota>();
  /**
   * SDK calls whose last failure the client's quota could not pay for, by client connection: the
   * next call on that connection proves the client moved on.
   */
  private readonly unaffordable = new Map<string, OpenInvocation>();
  private readonly top: InvocationRecord[] = [];
  private seriesStart = 0;
  private bucketSeconds = 1;
  private buckets: SeriesBucket[] = [];
  private inferredIds = 0;
  private lastSweep = 0;
  /** Latest end time seen: the tracker's notion of "now". */
  clock = 0;
  /** Earliest request start seen. */
  firstStart = Infinity;
  flows = 0;

  constructor(private readonly opts: TrackerOptions = {}) {
    this.inferWindow = opts.inferWindow ?? 30;
    this.idleWindow = opts.idleWindow ?? 60;
    this.maxOpen = opts.maxOpen ?? 100_000;
    this.maxBuckets = Math.max(2, opts.maxBuckets ?? 3600);
    this.topCount = opts.topInvocations ?? 10;
    this.maxOperations = opts.maxOperations ?? 2000;
  }

  /** Records a finished flow; returns its retry metadata when it belongs to an SDK call or is an inferred retry. */
  add(flow: HTTPFlow): RetryMetadata | null {
    this.flows++;
    const info = awsInfoOf(flow);
    const service = info?.service ?? flow.request.prettyHost;
    const operation = info?.operation ?? flow.request.method;
    const start = flow.request.timestampStart;
    const end = Math.max(start, flowEnd(flow));
    const response = flow.response;
    const status = response ? response.statusCode : null;
    const throttle = response ? throttlingCodeOf(response, info) : null;
    const retryable = isRetryable(flow, status, throttle);
    const attempt: AttemptRecord = { attempt: 1, status, error: response ? null : (flow.error?.msg ?? "no response"), throttle, retryable, start, end, backoff: null, inferred: false };
    if (response && isBareS3Head503(response, info)) attempt.bareHead503 = true;

    if (!retryable && !info?.invocationId && this.repetitionUrls.size === 0 && this.unaffordable.size === 0) {
      // The common case, and all of plain (non-AWS) traffic that succeeds: no SDK call to join, no
      // failed request it could repeat, no stranded call its connection could end. It is a
      // finished one-attempt call; skip building the keys and the open record the general path needs.
      this.finishSingle(service, operation, flow, attempt);
      this.count(service, operation, status, attempt, null);
      this.advanceClock(start, end);
      return null;
    }

    let retry: RetryMetadata | null = null;
    let inv: OpenInvocation | undefined;
    const connection = connectionOf(flow);
    const stranded = this.unaffordable.get(connection);
    if (stranded && stranded.id !== info?.invocationId && start >= stranded.end - 0.001) {
      // Another call on the connection of a call the client could not afford to retry: it gave up.
      this.unaffordable.delete(connection);
      if (this.byId.get(stranded.id) === stranded) this.close(stranded, this.byId);
    }
    if (info?.invocationId) {
      inv = this.byId.get(info.invocationId);
      const previous = inv?.attempts.at(-1);
      attempt.attempt = info.attempt ?? (previous ? previous.attempt + 1 : 1);
      if (previous && attempt.attempt > 1) attempt.backoff = Math.max(0, start - previous.end);
      if (!inv) {
        inv = this.open(info.invocationId, false, service, operation, flow, start, "");
        this.byId.set(inv.id, inv);
      } else {
        this.byId.delete(inv.id); // re-inserted below: most recently active last
        this.byId.set(inv.id, inv);
      }
      if (info.maxAttempts) inv.maxAttempts = info.maxAttempts;
      if (this.unaffordable.get(inv.connection) === inv) {
        // It retried after all: the client had more quota than reckoned (a new process, say).
        this.unaffordable.delete(inv.connection);
        const quota = this.quotaOf(flow, info.retryMode, inv.maxAttempts);
        if (quota) quota.available = RETRY_QUOTA;
      }
      inv.connection = connection;
      this.append(inv, attempt);
      retry = { invocationId: inv.id, attempt: attempt.attempt, maxAttempts: inv.maxAttempts, inferred: false, backoffMs: attempt.backoff === null ? null : Math.round(attempt.backoff * 1000) };
      const quota = this.quotaOf(flow, info.retryMode, inv.maxAttempts);
      if (!retryable || (inv.maxAttempts !== null && attempt.attempt >= inv.maxAttempts)) {
        if (quota && status !== null && status >= 200 && status < 300) quota.available = Math.min(RETRY_QUOTA, quota.available + (attempt.attempt > 1 ? inv.quotaSpent : NO_RETRY_INCREMENT));
        this.close(inv, this.byId);
      } else if (quota) {
        if (quota.available >= RETRY_COST) {
          quota.available -= RETRY_COST;
          inv.quotaSpent = RETRY_COST;
        } else {
          this.unaffordable.set(connection, inv);
        }
      }
    } else {
      const urlKey = `${clientOf(flow)}\0${operation}\0${flow.request.method}\0${flow.request.url}`;
      let key: string | null = null;
      if (this.repetitionUrls.has(urlKey)) {
        key = `${urlKey}\0${bodyHashOf(flow)}`;
        inv = this.repetitionOf(key, connection, start);
        if (inv) {
          const previous = inv.attempts.at(-1)!;
          this.dropRepetition(inv);
          attempt.attempt = previous.attempt + 1;
          attempt.backoff = Math.max(0, start - previous.end);
          attempt.inferred = true;
          this.append(inv, attempt);
          retry = { invocationId: inv.id, attempt: attempt.attempt, maxAttempts: null, inferred: true, backoffMs: Math.round(attempt.backoff * 1000) };
        }
      }
      if (!inv) {
        inv = this.open(`inferred-${++this.inferredIds}`, true, service, operation, flow, start, "");
        this.append(inv, attempt);
      }
      inv.connection = connection;
      if (retryable) {
        key ??= `${urlKey}\0${bodyHashOf(flow)}`;
        inv.key = key;
        const waiting = this.byRepetition.get(key);
        if (waiting) waiting.push(inv);
        else this.byRepetition.set(key, [inv]);
        this.repetitionCount++;
        this.repetitionUrls.set(urlKey, (this.repetitionUrls.get(urlKey) ?? 0) + 1);
      } else {
        this.finish(inv);
      }
    }

    this.count(service, operation, status, attempt, retry);
    this.advanceClock(start, end);
    return retry;
  }

  private advanceClock(start: number, end: number): void {
    if (end > this.clock) this.clock = end;
    if (start < this.firstStart) this.firstStart = start;
    if (this.clock - this.lastSweep >= 1 || this.byId.size > this.maxOpen || this.repetitionCount > this.maxOpen) this.sweep(this.clock);
  }

  /** finish() for a call of one attempt that nothing can join: what open/append/finish would record, without the keys. */
  private finishSingle(service: string, operation: string, flow: HTTPFlow, attempt: AttemptRecord): void {
    const outcome: Outcome = attempt.status !== null && attempt.status < 400 ? "ok" : "failed";
    const stats = this.statsFor(service, operation);
    stats.invocations++;
    stats.outcomes[outcome]++;
    this.histogram.set(1, (this.histogram.get(1) ?? 0) + 1);
    const id = ++this.inferredIds;
    const onEnd = this.opts.onInvocationEnd;
    if (onEnd) onEnd({ id: `inferred-${id}`, inferred: true, service, operation, client: clientOf(flow), maxAttempts: null, attempts: [attempt], start: attempt.start, end: attempt.end, backoff: 0, outcome });
  }

  /**
   * The open inferred call `key` may repeat: it failed before `start`, recently enough; among
   * several (identical calls in parallel), the one on the same client connection, else the oldest.
   */
  private repetitionOf(key: string, connection: string, start: number): OpenInvocation | undefined {
    const waiting = this.byRepetition.get(key);
    if (!waiting) return undefined;
    let best: OpenInvocation | undefined;
    for (const inv of waiting) {
      const end = inv.attempts.at(-1)!.end;
      if (start < end - 0.001 || start - end > this.inferWindow) continue;
      if (inv.connection === connection) return inv;
      best ??= inv;
    }
    return best;
  }

  /** The retry quota of the client that sent `flow`, when it is an SDK in a mode that keeps one. */
  private quotaOf(flow: HTTPFlow, mode: string | null, maxAttempts: number | null): RetryQuota | null {
    // Legacy mode has no quota; without the mode in the User-Agent, 3 attempts says "standard".
    if (mode === "legacy" || (mode === null && maxAttempts !== 3)) return null;
    if (mode !== null && mode !== "standard" && mode !== "adaptive") return null;
    const key = `${clientOf(flow)}\0${flow.request.headers.get("user-agent") ?? ""}`;
    let quota = this.quotas.get(key);
    if (!quota) {
      if (this.quotas.size >= this.maxOpen) this.quotas.delete(this.quotas.keys().next().value!);
      this.quotas.set(key, (quota = { available: RETRY_QUOTA }));
    }
    return quota;
  }

  /** Closes invocations idle for longer than their window at time `now` (seconds since the epoch). */
  sweep(now: number): void {
    this.lastSweep = now;
    this.closeIdle(this.byId, now - this.idleWindow, this.maxOpen);
    this.closeIdleRepetitions(now - this.inferWindow, this.maxOpen);
  }

  /** Closes every open invocation (end of a file, or shutdown). */
  finishAll(): void {
    this.closeIdle(this.byId, Infinity, 0);
    this.closeIdleRepetitions(Infinity, 0);
  }

  get openInvocations(): number {
    return this.byId.size + this.repetitionCount;
  }

  /** Per service/operation counters, most retried first. */
  stats(): OperationStats[] {
    return [...this.operations.values()].sort((a, b) => b.retries - a.retries || b.throttles - a.throttles || b.requests - a.requests || a.service.localeCompare(b.service) || a.operation.localeCompare(b.operation));
  }

  /** Sum over all operations. */
  totals(): OperationStats {
    const t = emptyStats("all", "all");
    for (const s of this.operations.values()) {
      t.requests += s.requests;
      t.retries += s.retries;
      t.inferredRetries += s.inferredRetries;
      t.throttles += s.throttles;
      t.retryableErrors += s.retryableErrors;
      t.backoffSeconds += s.backoffSeconds;
      t.invocations += s.invocations;
      for (const o of OUTCOMES) t.outcomes[o] += s.outcomes[o];
      for (const [k, v] of Object.entries(s.statuses)) t.statuses[k] = (t.statuses[k] ?? 0) + v;
      t.bareHead503s += s.bareHead503s;
    }
    return t;
  }

  series(): Series {
    return { start: this.seriesStart, bucketSeconds: this.bucketSeconds, buckets: this.buckets.map((b) => ({ ...b })) };
  }

  /** [attempts, invocations] pairs, ascending. */
  attemptsHistogram(): [attempts: number, invocations: number][] {
    return [...this.histogram.entries()].sort((a, b) => a[0] - b[0]);
  }

  /** The worst closed invocations: most attempts, then most back-off. */
  topInvocations(): InvocationRecord[] {
    return this.top.slice();
  }

  snapshot(): TrackerSnapshot {
    return {
      flows: this.flows,
      firstStart: this.flows ? this.firstStart : 0,
      lastEnd: this.clock,
      totals: this.totals(),
      operations: this.stats(),
      series: this.series(),
      attemptsHistogram: this.attemptsHistogram(),
      worstInvocations: this.topInvocations(),
      open: this.openInvocations,
    };
  }

  private open(id: string, inferred: boolean, service: string, operation: string, flow: HTTPFlow, start: number, key: string): OpenInvocation {
    return { id, inferred, service, operation, client: clientOf(flow), maxAttempts: null, attempts: [], start, end: start, backoff: 0, outcome: null, key, connection: connectionOf(flow), quotaSpent: 0 };
  }

  private append(inv: OpenInvocation, attempt: AttemptRecord): void {
    inv.attempts.push(attempt);
    if (attempt.start < inv.start) inv.start = attempt.start;
    if (attempt.end > inv.end) inv.end = attempt.end;
    if (attempt.backoff !== null) inv.backoff += attempt.backoff;
  }

  private dropRepetition(inv: OpenInvocation): void {
    const waiting = this.byRepetition.get(inv.key);
    const at = waiting ? waiting.indexOf(inv) : -1;
    if (at < 0) return;
    if (waiting!.length === 1) this.byRepetition.delete(inv.key);
    else waiting!.splice(at, 1);
    this.repetitionCount--;
    const urlKey = inv.key.slice(0, inv.key.lastIndexOf("\0"));
    const n = (this.repetitionUrls.get(urlKey) ?? 1) - 1;
    if (n <= 0) this.repetitionUrls.delete(urlKey);
    else this.repetitionUrls.set(urlKey, n);
  }

  private close(inv: OpenInvocation, from: Map<string, OpenInvocation> | null): void {
    if (from === null) this.dropRepetition(inv);
    else from.delete(inv.id);
    if (this.unaffordable.get(inv.connection) === inv) this.unaffordable.delete(inv.connection);
    this.finish(inv);
  }

  /** closeIdle for the inferred calls waiting for a repetition (several may share a key). */
  private closeIdleRepetitions(before: number, keep: number): void {
    for (const waiting of this.byRepetition.values()) {
      if (waiting[0]!.end >= before && this.repetitionCount <= keep) break;
      for (const inv of waiting.slice()) if (inv.end < before || this.repetitionCount > keep) this.close(inv, null);
    }
  }

  /** Closes the least recently active invocations that ended before `before`, and any beyond `keep`. */
  private closeIdle(map: Map<string, OpenInvocation>, before: number, keep: number): void {
    for (const inv of map.values()) {
      if (inv.end >= before && map.size <= keep) break;
      this.close(inv, map);
    }
  }

  private finish(inv: OpenInvocation): void {
    const last = inv.attempts.at(-1)!;
    const retried = inv.attempts.length > 1 || last.attempt > 1;
    // An SDK call (it has an invocation id) that stopped after a retryable failure gave up: out of
    // attempts, or out of retry quota. A plain client that never repeated the request just failed.
    inv.outcome = !last.retryable
      ? last.status !== null && last.status < 400 ? (retried ? "retried" : "ok") : "failed"
      : retried || !inv.inferred ? "gave-up" : "failed";
    const stats = this.statsFor(inv.service, inv.operation);
    stats.invocations++;
    stats.outcomes[inv.outcome]++;
    const n = inv.attempts.length;
    this.histogram.set(n, (this.histogram.get(n) ?? 0) + 1);
    if (inv.outcome === "gave-up") this.bucketAt(inv.end).giveups++;
    this.rememberIfWorst(inv);
    this.opts.onInvocationEnd?.(inv);
  }

  private rememberIfWorst(inv: InvocationRecord): void {
    if (inv.attempts.length < 2 || this.topCount === 0) return;
    const worse = (a: InvocationRecord, b: InvocationRecord) => a.attempts.length - b.attempts.length || a.backoff - b.backoff;
    if (this.top.length >= this.topCount && worse(inv, this.top.at(-1)!) <= 0) return;
    const { key: _key, connection: _connection, quotaSpent: _quotaSpent, ...record } = inv as OpenInvocation;
    let i = this.top.findIndex((t) => worse(inv, t) > 0);
    if (i < 0) i = this.top.length;
    this.top.splice(i, 0, record);
    if (this.top.length > this.topCount) this.top.pop();
  }

  private count(service: string, operation: string, status: number | null, attempt: AttemptRecord, retry: RetryMetadata | null): void {
    const stats = this.statsFor(service, operation);
    const statusLabel = status === null ? "error" : String(status);
    stats.requests++;
    stats.statuses[statusLabel] = (stats.statuses[statusLabel] ?? 0) + 1;
    const isRetry = attempt.attempt > 1;
    if (isRetry) stats.retries++;
    if (attempt.inferred) stats.inferredRetries++;
    if (attempt.throttle) stats.throttles++;
    if (attempt.retryable) stats.retryableErrors++;
    if (attempt.bareHead503) stats.bareHead503s++;
    if (attempt.backoff !== null) stats.backoffSeconds += attempt.backoff;
    const bucket = this.bucketAt(attempt.start);
    bucket.requests++;
    if (isRetry) bucket.retries++;
    if (attempt.throttle) bucket.throttles++;
    if (attempt.retryable) bucket.errors++;
    if (attempt.backoff) this.addBackoff(attempt.start - attempt.backoff, attempt.start);
    this.opts.onAttempt?.({ service: stats.service, operation: stats.operation, status: statusLabel, attempt, retry });
  }

  private statsFor(service: string, operation: string): OperationStats {
    // By service, then operation: no key string to build per flow.
    let ofService = this.operationsByService.get(service);
    let s = ofService?.get(operation);
    if (!s) {
      if (this.operations.size >= this.maxOperations) return service === "other" && operation === "other" ? this.otherStats() : this.statsFor("other", "other");
      s = emptyStats(service, operation);
      this.operations.set(`${service}\0${operation}`, s);
      if (!ofService) this.operationsByService.set(service, (ofService = new Map()));
      ofService.set(operation, s);
    }
    return s;
  }

  /** The "other" row once maxOperations is reached (kept even if the cap is 0). */
  private otherStats(): OperationStats {
    const key = "other\0other";
    let s = this.operations.get(key);
    if (!s) this.operations.set(key, (s = emptyStats("other", "other")));
    return s;
  }

  private bucketAt(t: number): SeriesBucket {
    if (this.buckets.length === 0) this.seriesStart = Math.floor(t);
    const indexOf = () => Math.floor((t - this.seriesStart) / this.bucketSeconds);
    let i = indexOf();
    // Too far before the start or past the end for the cap: widen the buckets first.
    while ((i < 0 && this.buckets.length - i > this.maxBuckets) || i >= this.maxBuckets) {
      this.coarsen();
      i = indexOf();
    }
    if (i < 0) {
      // A request that started before the first one seen finished: grow the series backwards.
      this.buckets.unshift(...Array.from({ length: -i }, emptyBucket));
      this.seriesStart += i * this.bucketSeconds;
      i = 0;
    }
    while (i >= this.buckets.length) this.buckets.push(emptyBucket());
    return this.buckets[i]!;
  }

  /** Spreads a back-off interval over the buckets it covers, so the series shows clients asleep at once. */
  private addBackoff(from: number, to: number): void {
    let t = from;
    while (to - t > 1e-9) {
      const bucket = this.bucketAt(t);
      const i = Math.floor((t - this.seriesStart) / this.bucketSeconds);
      const bucketEnd = this.seriesStart + (i + 1) * this.bucketSeconds;
      const until = Math.min(to, Math.max(bucketEnd, t + 1e-6));
      bucket.backoff += until - t;
      t = until;
    }
  }

  /** Doubles the bucket width, merging neighbours. */
  private coarsen(): void {
    const merged: SeriesBucket[] = [];
    for (let i = 0; i < this.buckets.length; i += 2) {
      const a = this.buckets[i]!;
      const b = this.buckets[i + 1];
      if (b) {
        a.requests += b.requests;
        a.throttles += b.throttles;
        a.retries += b.retries;
        a.errors += b.errors;
        a.giveups += b.giveups;
        a.backoff += b.backoff;
      }
      merged.push(a);
    }
    this.buckets = merged;
    this.bucketSeconds *= 2;
  }
}

function isRetryable(flow: HTTPFlow, status: number | null, throttle: string | null): boolean {
  if (throttle) return true;
  if (status === null) return flow.error !== null;
  if ((status >= 500 && status !== 501) || status === 429) return true;
  if (status >= 400) {
    const code = errorCodeOf(flow.response!);
    return code !== null && TRANSIENT_CODES.has(code);
  }
  return false;
}

function clientOf(flow: HTTPFlow): string {
  return flow.clientConn.peername?.[0] ?? "-";
}

/** The client connection: address and port (a connection carries one call at a time over HTTP/1). */
function connectionOf(flow: HTTPFlow): string {
  const peer = flow.clientConn.peername;
  return peer ? `${peer[0]}:${peer[1]}` : `conn:${flow.clientConn.id}`;
}

function bodyHashOf(flow: HTTPFlow): string {
  const req = flow.request;
  if (!req.content) return req.streamed ? `streamed:${req.contentLength}` : "empty";
  if (req.content.length === 0) return "empty";
  if (req.content.length > SMALL_BODY) return `length:${req.content.length}`;
  return createHash("sha1").update(req.content).digest("base64");
}
