/**
 * State that must agree across sluice processes — rate budgets (token buckets) and adaptive
 * rates — behind one small interface (DESIGN.md, "State that outlives one process"). Features
 * (faults' rate= budgets, shaping's queues) call it and never know which implementation they have:
 * `InProcessState` here, with no dependencies; a Redis one later, behind the same interface.
 *
 * Every operation is one atomic step on one key and may answer synchronously (in-process: no
 * promise on the hot path) or with a promise (a network store). Callers handle both.
 */
import { TokenBucket } from "./token-bucket.js";
import { AdaptiveRate, type AdaptiveRateOptions } from "./adaptive-rate.js";

export type MaybeAsync<T> = T | Promise<T>;

/** A token bucket's shape: `rate` tokens per second, up to `burst` saved up. */
export interface RateLimit {
  rate: number;
  burst: number;
}

/**
 * The answer to a take: granted, or how long until the tokens would be there. A take that allowed
 * a reservation (`reserveMs`) may be granted with `waitMs` > 0: the tokens are the caller's, and
 * its turn comes `waitMs` from now.
 */
export interface Grant {
  granted: boolean;
  /** Not granted: milliseconds until `n` tokens are available. Granted: 0, or when a reserved turn comes. */
  waitMs: number;
  /** A reservation of several turns (`reserveTurns`): how many, each `n` tokens, `n / rate` apart, the first after `waitMs`. */
  turns?: number;
}

/** A wait for a concurrency slot (`SharedState.waitForSlot`). */
export interface SlotWait {
  granted: Promise<boolean>;
  cancel(): void;
}

/** What happened to a request under an adaptive rate. */
export type AdaptiveEvent =
  /** A request was sent (the measured sending rate caps growth). */
  | { kind: "send" }
  /** The server throttled a request sent at `sentAt` (ms on the caller's clock). */
  | { kind: "throttle"; sentAt: number }
  /** A non-throttling answer: grow along the cubic. */
  | { kind: "success" }
  /** No event: just read the state. */
  | { kind: "read" };

export interface AdaptiveSnapshot {
  /** Requests per second to send at now. */
  rate: number;
  /** True when this event cut the rate. */
  cut: boolean;
  throttles: number;
  cuts: number;
}

export interface SharedState {
  /** "in-process", "redis://…": for status lines. */
  readonly description: string;
  /**
   * Takes `n` tokens from bucket `key` if they are all there, else none; the bucket is created full
   * on first use. `limit` is the bucket's shape as of now: a changed rate applies from now on,
   * keeping the tokens earned so far (adaptive rates move it). `at` is the caller's clock (ms) for
   * when the take happens — a timer that fired late asks for the token that was due — and an
   * implementation with a clock of its own may ignore it.
   *
   * `reserveMs` (a caller that can wait, like a shaping queue): an implementation where asking
   * again costs a round trip may grant tokens that are due up to `reserveMs` from now, answering
   * `{granted: true, waitMs}` — the caller then waits `waitMs` and goes without asking again. One
   * that answers at once (in-process) ignores it. `reserveTurns`: how many turns the caller could
   * use (requests queued); one round trip may reserve several (see `Grant.turns`).
   */
  take(key: string, limit: RateLimit, n: number, at: number, reserveMs?: number, reserveTurns?: number): MaybeAsync<Grant>;
  /**
   * Takes `n` tokens from bucket `key` whatever it holds: the bucket may go into debt, so takes
   * after it wait until it refills. For a cost known only after admission (a DynamoDB read is
   * charged by the size of its answer, as AWS does). A negative `n` gives tokens back (AWS
   * reported a lower cost than was charged), never above `limit.burst`.
   */
  charge(key: string, limit: RateLimit, n: number, at: number): MaybeAsync<void>;
  /**
   * Concurrency (Lambda's in-flight invocations): `holder` takes one of `max` slots of `key`, or
   * gets false when all are held. A slot is held until `leaveSlot`; a store shared by processes
   * also drops it when the process holding it stops renewing it (a killed process leaks nothing).
   */
  enterSlot(key: string, holder: string, max: number): MaybeAsync<boolean>;
  /** Ends `holder`'s slot of `key` (no-op when it holds none). */
  leaveSlot(key: string, holder: string): MaybeAsync<void>;
  /**
   * A caller that can wait (a shaping queue) gets `holder` a slot of `key` as soon as one is free
   * among everything sharing this state: `granted` resolves true once the slot is held (ended
   * with `leaveSlot`), or false after `cancel` (then no slot is left held). Waiters of one
   * process are served in arrival order. Absent when nothing else shares the state (in-process:
   * the caller keeps its own line).
   */
  waitForSlot?(key: string, holder: string, max: number): SlotWait;
  /** Applies `event` to the adaptive rate at `key` (created at `opts.start` on first use) and returns it. */
  adaptive(key: string, opts: AdaptiveRateOptions, event: AdaptiveEvent, at: number): MaybeAsync<AdaptiveSnapshot>;
  /** Drops the state at keys starting with `prefix` (rules removed or replaced). */
  forget(prefix: string): MaybeAsync<void>;
  /**
   * Claims rule `name` (`name=` in a rule) for rule `text` across everything sharing this state;
   * throws (or rejects) when another process holds the name for a different rule. Absent when
   * nothing else shares the state (in-process: names are checked within the process).
   */
  claimName?(kind: "shape" | "fault", name: string, text: string): MaybeAsync<void>;
}

/** True when a MaybeAsync answer is a promise. */
export function isPromise<T>(x: MaybeAsync<T>): x is Promise<T> {
  return typeof (x as Promise<T> | null)?.then === "function";
}

/**
 * The default: buckets and adaptive rates in this process's memory. Idle state is swept (a full
 * bucket after 10 s, an adaptive rate after 10 min without events) so millions of keys (S3
 * prefixes) stay bounded by the active ones.
 */
export class InProcessState implements SharedState {
  readonly description = "in-process";
  private readonly buckets = new Map<string, { bucket: TokenBucket; lastUsed: number }>();
  private readonly rates = new Map<string, { rate: AdaptiveRate; lastUsed: number }>();
  /** Concurrency slots: the holders of each key. */
  private readonly slots = new Map<string, Set<string>>();
  private lastSweep = -Infinity;

  constructor(
    private readonly bucketIdleMs = 10_000,
    private readonly adaptiveIdleMs = 600_000,
  ) {}

  take(key: string, limit: RateLimit, n: number, at: number): Grant {
    const b = this.bucketOf(key, limit, at);
    const available = b.available(at);
    if (available >= n) {
      for (let i = 0; i < n; i++) b.tryTake(at);
      return { granted: true, waitMs: 0 };
    }
    return { granted: false, waitMs: ((n - available) / b.rate) * 1000 };
  }

  charge(key: string, limit: RateLimit, n: number, at: number): void {
    this.bucketOf(key, limit, at).charge(n, at);
  }

  enterSlot(key: string, holder: string, max: number): boolean {
    let holders = this.slots.get(key);
    if (!holders) {
      holders = new Set();
      this.slots.set(key, holders);
    }
    if (holders.has(holder)) return true;
    if (holders.size >= max) return false;
    holders.add(holder);
    return true;
  }

  leaveSlot(key: string, holder: string): void {
    const holders = this.slots.get(key);
    if (!holders?.delete(holder)) return;
    if (holders.size === 0) this.slots.delete(key);
  }

  /** Slots held now, over every key (tests check that none leak). */
  get slotsHeld(): number {
    let n = 0;
    for (const h of this.slots.values()) n += h.size;
    return n;
  }

  adaptive(key: string, opts: AdaptiveRateOptions, event: AdaptiveEvent, at: number): AdaptiveSnapshot {
    let entry = this.rates.get(key);
    if (!entry) {
      entry = { rate: new AdaptiveRate(opts, at), lastUsed: at };
      this.rates.set(key, entry);
    }
    entry.lastUsed = at;
    const r = entry.rate;
    let cut = false;
    switch (event.kind) {
      case "send":
        r.recordSend(at);
        break;
      case "throttle":
        cut = r.onThrottle(at, event.sentAt);
        break;
      case "success":
        r.onSuccess(at);
        break;
      case "read":
        break;
    }
    return { rate: r.rate, cut, throttles: r.throttles, cuts: r.cuts };
  }

  private bucketOf(key: string, limit: RateLimit, at: number): TokenBucket {
    this.maybeSweep(at);
    let entry = this.buckets.get(key);
    if (!entry) {
      entry = { bucket: new TokenBucket(limit.rate, limit.burst, at), lastUsed: at };
      this.buckets.set(key, entry);
    }
    const b = entry.bucket;
    entry.lastUsed = at;
    b.burst = limit.burst;
    if (b.rate !== limit.rate) b.setRate(limit.rate, at);
    return b;
  }

  forget(prefix: string): void {
    for (const k of this.slots.keys()) if (k.startsWith(prefix)) this.slots.delete(k);
    for (const k of this.buckets.keys()) if (k.startsWith(prefix)) this.buckets.delete(k);
    for (const k of this.rates.keys()) if (k.startsWith(prefix)) this.rates.delete(k);
  }

  /** Keys held now (tests check that idle ones go). */
  get size(): { buckets: number; adaptive: number } {
    return { buckets: this.buckets.size, adaptive: this.rates.size };
  }

  private maybeSweep(now: number): void {
    if (now - this.lastSweep < this.bucketIdleMs) return;
    this.lastSweep = now;
    for (const [k, e] of this.buckets) {
      if (now - e.lastUsed > this.bucketIdleMs && e.bucket.available(now) >= e.bucket.burst) this.buckets.delete(k);
    }
    for (const [k, e] of this.rates) if (now - e.lastUsed > this.adaptiveIdleMs) this.rates.delete(k);
  }
}
