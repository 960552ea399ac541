/**
 * A fair rate queue: requests wait here until a token bucket lets them go.
 *
 * One queue holds any number of budgets (one token bucket each: per host, per service, …); inside
 * a budget, waiting requests sit in lanes (per operation, per client, …) that are served
 * round-robin, so one hot lane cannot starve the others while they share a budget. No sockets:
 * waiting is a promise, releasing is a timer, callers pass the limits, and the tokens themselves
 * live in the shared state (core/shared-state.ts), so processes sharing it share the rate.
 */
import { isPromise, type Grant, type MaybeAsync } from "./shared-state.js";

export type RejectReason = "queue-full" | "max-wait";

export interface RateQueueLimits {
  /** Requests per second each budget lets through. */
  rate: number;
  /** Requests that may leave back to back after an idle period. */
  burst: number;
  /** Most requests waiting in one budget; more are rejected. */
  maxQueue: number;
  /** Longest a request may wait (ms); one expected to wait longer is rejected at once. */
  maxWaitMs: number;
}

/** How a request left the queue. */
export type Admission =
  | { admitted: true; waitMs: number }
  | { admitted: false; reason: RejectReason | "cancelled"; waitMs: number; /** expected wait, for the error message */ expectedWaitMs: number; depth: number };

export interface Ticket {
  /** Settles when the request may go (or is refused). Already settled for immediate answers. */
  result: Admission | Promise<Admission>;
  /** Gives up waiting (the client went away); resolves the promise with reason "cancelled". */
  cancel(): void;
}

interface Waiter {
  enqueuedAt: number;
  resolve: (a: Admission) => void;
  deadline: ReturnType<typeof setTimeout> | null;
  lane: Lane;
  done: boolean;
  /** Its token is reserved: it leaves when this timer fires (no longer in its lane). */
  reserved: ReturnType<typeof setTimeout> | null;
}

/** A FIFO that does not copy on shift. */
class Lane {
  items: (Waiter | undefined)[] = [];
  head = 0;
  constructor(readonly key: string) {}
  get length(): number {
    return this.items.length - this.head;
  }
  push(w: Waiter): void {
    this.items.push(w);
  }
  shift(): Waiter | undefined {
    const w = this.items[this.head];
    this.items[this.head++] = undefined;
    if (this.head > 1024 && this.head * 2 > this.items.length) {
      this.items = this.items.slice(this.head);
      this.head = 0;
    }
    return w;
  }
}

/**
 * Asks the shared state for one token of this budget at time `at` (ms). `reserveMs`: the request
 * can still wait this long, so a token due within it may be reserved (see SharedState.take).
 */
export type TakeToken = (limits: RateQueueLimits, at: number, reserveMs: number, reserveTurns: number) => MaybeAsync<Grant>;

/**
 * One token bucket (kept in the shared state, see core/shared-state.ts) and the requests waiting
 * for it. The bucket may answer synchronously (in-process) or with a promise (a network store);
 * while an answer is pending no other take is asked for, so releases stay in order.
 */
export class Budget {
  private readonly lanes = new Map<string, Lane>();
  /** Lanes with waiters, in round-robin order; `next` is where the next release looks first. */
  private ring: Lane[] = [];
  private next = 0;
  private timer: ReturnType<typeof setTimeout> | null = null;
  private dueAt = 0;
  /** A take is in flight (an async shared state). */
  private taking = false;
  /** Waiters holding a reserved token, leaving when their turn comes. */
  private readonly reserved = new Set<Waiter>();
  depth = 0;
  released = 0;
  rejected = 0;
  /** Last time anything happened here, for forgetting idle budgets. */
  lastActive: number;
  /** Last time a token was taken (or asked for): the bucket is full again burst/rate seconds later. */
  private lastTake: number;
  /** Called for every request that leaves (immediately or after waiting), e.g. to measure the sending rate. */
  onRelease: ((now: number) => void) | null = null;

  constructor(
    readonly key: string,
    private limits: RateQueueLimits,
    private readonly clock: () => number,
    private readonly takeToken: TakeToken,
    /** Gives `n` reserved tokens nobody used back to the bucket (null: they go unused, under-admitting). */
    private readonly returnTokens: ((limits: RateQueueLimits, n: number, at: number) => void) | null = null,
  ) {
    if (!(limits.rate > 0)) throw new RangeError(`rate must be positive, got ${limits.rate}`);
    if (!(limits.burst >= 1)) throw new RangeError(`burst must be at least 1, got ${limits.burst}`);
    const now = clock();
    this.lastActive = now;
    this.lastTake = -Infinity;
  }

  get rate(): number {
    return this.limits.rate;
  }

  /** The longest wait among the requests queued now (ms). */
  oldestWaitMs(now = this.clock()): number {
    let oldest = Infinity;
    for (const lane of this.ring) {
      const w = lane.items[lane.head];
      if (w && w.enqueuedAt < oldest) oldest = w.enqueuedAt;
    }
    return oldest === Infinity ? 0 : now - oldest;
  }

  /** Queued requests per lane (lanes with none are left out). */
  laneDepths(): Map<string, number> {
    const out = new Map<string, number>();
    for (const lane of this.ring) out.set(lane.key, lane.length);
    return out;
  }

  get idle(): boolean {
    const now = this.clock();
    return this.depth === 0 && !this.taking && this.reserved.size === 0 && ((now - this.lastTake) / 1000) * this.limits.rate >= this.limits.burst;
  }

  /**
   * Expected wait for a request joining `laneKey` now (ms): its turn in the round-robin, at the
   * rate. `firstMs` is the wait for the next token when the caller just learned it.
   */
  expectedWaitMs(laneKey: string, now = this.clock(), firstMs?: number): number {
    const inLane = this.lanes.get(laneKey)?.length ?? 0;
    const activeLanes = this.ring.length + (inLane === 0 ? 1 : 0);
    // With round-robin, the request goes after its own lane's waiters, each of which waits for one
    // turn of every active lane; never more than everybody queued ahead.
    const ahead = Math.min(this.depth, (inLane + 1) * activeLanes - 1);
    // While a release is scheduled, its due time is the answer.
    const first = firstMs ?? (this.timer ? Math.max(0, this.dueAt - now) : 0);
    return first + (ahead / this.limits.rate) * 1000;
  }

  enqueue(laneKey: string): Ticket {
    const now = this.clock();
    this.lastActive = now;
    let firstMs: number | undefined;
    let pending: Promise<Grant> | null = null;
    if (this.depth === 0 && !this.timer && !this.taking) {
      const g = this.take(now, this.limits.maxWaitMs);
      if (isPromise(g)) pending = g;
      else if (g.granted) {
        this.released++;
        this.onRelease?.(now);
        return { result: { admitted: true, waitMs: 0 }, cancel: noop };
      } else firstMs = g.waitMs;
    }
    const expected = this.expectedWaitMs(laneKey, now, firstMs);
    const refuse = (reason: RejectReason): Ticket => {
      this.rejected++;
      // An answer still on its way is settled like any other (its token, if granted, goes unused).
      pending?.then((g) => this.onGrant(g), (err: unknown) => this.onTakeError(err));
      return { result: { admitted: false, reason, waitMs: 0, expectedWaitMs: expected, depth: this.depth }, cancel: noop };
    };
    if (this.depth >= this.limits.maxQueue) return refuse("queue-full");
    if (expected > this.limits.maxWaitMs) return refuse("max-wait");

    let lane = this.lanes.get(laneKey);
    if (!lane) {
      lane = new Lane(laneKey);
      this.lanes.set(laneKey, lane);
    }
    if (lane.length === 0) this.ring.push(lane);
    let resolve!: (a: Admission) => void;
    const promise = new Promise<Admission>((r) => (resolve = r));
    const waiter: Waiter = { enqueuedAt: now, resolve, deadline: null, lane, done: false, reserved: null };
    lane.push(waiter);
    this.depth++;
    if (Number.isFinite(this.limits.maxWaitMs)) {
      // The estimate can be wrong (an adaptive rate drops, other lanes join): the deadline holds anyway.
      waiter.deadline = setTimeout(() => this.drop(waiter, "max-wait"), Math.max(1, this.limits.maxWaitMs));
      waiter.deadline.unref?.();
    }
    if (pending) pending.then((g) => this.onGrant(g), (err: unknown) => this.onTakeError(err));
    else if (firstMs !== undefined) this.scheduleIn(now, firstMs);
    return { result: promise, cancel: () => this.drop(waiter, "cancelled") };
  }

  /** New limits (a rule changed, or an adaptive rate moved); asks again for the next release. */
  update(limits: RateQueueLimits): void {
    this.limits = limits;
    if (this.depth > 0 && !this.taking) {
      this.clearTimer();
      this.pump(this.clock());
    }
  }

  /** Lets every waiter go at once (rules replaced, proxy stopping). */
  releaseAll(): void {
    this.clearTimer();
    const now = this.clock();
    for (const lane of this.ring) {
      for (let w = lane.shift(); w; w = lane.shift()) this.settle(w, { admitted: true, waitMs: now - w.enqueuedAt });
    }
    for (const w of this.reserved) this.settle(w, { admitted: true, waitMs: now - w.enqueuedAt });
    this.reserved.clear();
    this.ring = [];
    this.lanes.clear();
    this.depth = 0;
  }

  private take(at: number, reserveMs: number, reserveTurns = 1): MaybeAsync<Grant> {
    this.lastTake = at;
    const g = this.takeToken(this.limits, at, reserveMs, reserveTurns);
    if (isPromise(g)) this.taking = true;
    return g;
  }

  private drop(w: Waiter, reason: RejectReason | "cancelled"): void {
    if (w.done) return;
    if (w.reserved) {
      // Its reserved token goes back to the bucket (or, with nowhere to return it, unused: the
      // shared budget under-admits by one, never over).
      this.reserved.delete(w);
      this.returnTokens?.(this.limits, 1, this.clock());
      if (reason !== "cancelled") this.rejected++;
      const now = this.clock();
      this.settle(w, { admitted: false, reason, waitMs: now - w.enqueuedAt, expectedWaitMs: 0, depth: this.depth });
      return;
    }
    const lane = w.lane;
    const i = lane.items.indexOf(w, lane.head);
    if (i >= 0) lane.items.splice(i, 1);
    this.depth--;
    if (lane.length === 0) this.removeFromRing(lane);
    if (reason !== "cancelled") this.rejected++;
    const now = this.clock();
    this.settle(w, { admitted: false, reason, waitMs: now - w.enqueuedAt, expectedWaitMs: this.expectedWaitMs(lane.key, now), depth: this.depth });
    if (this.depth === 0) this.clearTimer();
  }

  private settle(w: Waiter, a: Admission): void {
    w.done = true;
    if (w.deadline) clearTimeout(w.deadline);
    if (w.reserved) clearTimeout(w.reserved);
    w.resolve(a);
  }

  private removeFromRing(lane: Lane): void {
    const i = this.ring.indexOf(lane);
    if (i < 0) return;
    this.ring.splice(i, 1);
    if (i < this.next) this.next--;
    if (this.next >= this.ring.length) this.next = 0;
    this.lanes.delete(lane.key);
  }

  /** Sleeps until `waitMs` after `from` (the time the bucket was asked about). */
  private scheduleIn(from: number, waitMs: number): void {
    if (this.timer || this.depth === 0) return;
    this.dueAt = from + waitMs;
    this.timer = setTimeout(() => this.onTimer(), Math.max(0, Math.ceil(this.dueAt - this.clock())));
  }

  private clearTimer(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
  }

  private onTimer(): void {
    this.timer = null;
    // Judge the bucket at the moment the token was due, not when the timer got round to firing:
    // a late timer then does not lose the token, and the long-run rate stays on schedule.
    this.pump(Math.min(this.clock(), this.dueAt + 0.001));
  }

  /** Releases what the bucket allows, round-robin across lanes, then sleeps until the next token. */
  private pump(at: number): void {
    while (this.depth > 0) {
      const g = this.take(at, this.reserveHorizon(at), this.depth);
      if (isPromise(g)) {
        g.then((r) => this.onGrant(r), (err: unknown) => this.onTakeError(err));
        return;
      }
      if (!g.granted) return this.scheduleIn(at, g.waitMs);
      this.releaseOne();
      at = this.clock();
    }
  }

  /** An asynchronous take answered. */
  private onGrant(g: Grant): void {
    this.taking = false;
    if (!g.granted) return this.scheduleIn(this.clock(), g.waitMs);
    // Reserved turns, one rate interval apart; an immediate grant is one turn.
    const turns = g.waitMs > 0 ? (g.turns ?? 1) : 1;
    let used = 0;
    for (; used < turns && this.depth > 0; used++) {
      if (g.waitMs > 0) this.reserveOne(g.waitMs + (used * 1000) / this.limits.rate);
      else this.releaseOne();
    }
    // Turns whose waiters left (or were refused) while the take was in flight go back.
    if (used < turns) this.returnTokens?.(this.limits, turns - used, this.clock());
    this.pump(this.clock());
  }

  /** How long the waiter released next can still wait (its max-wait left): the most a reservation may be ahead. */
  private reserveHorizon(now: number): number {
    const w = this.ring[this.next]?.items[this.ring[this.next]!.head];
    return w ? Math.max(0, this.limits.maxWaitMs - (now - w.enqueuedAt)) : this.limits.maxWaitMs;
  }

  /** The next waiter's token is reserved `waitMs` ahead: it leaves its lane now and goes when its turn comes. */
  private reserveOne(waitMs: number): void {
    const w = this.dequeue();
    if (w.deadline) clearTimeout(w.deadline);
    w.deadline = null;
    this.reserved.add(w);
    w.reserved = setTimeout(() => {
      w.reserved = null;
      this.reserved.delete(w);
      if (w.done) return;
      const now = this.clock();
      this.released++;
      this.lastActive = now;
      this.onRelease?.(now);
      this.settle(w, { admitted: true, waitMs: now - w.enqueuedAt });
    }, Math.ceil(waitMs));
  }

  /** The shared state failed: nobody should wait forever on it, so the waiters go unshaped. */
  private onTakeError(err: unknown): void {
    this.taking = false;
    this.takeError = err instanceof Error ? err : new Error(String(err));
    this.releaseAll();
  }

  /** The last failure of the shared state, for status lines. */
  takeError: Error | null = null;

  /** Takes the next waiter out of its lane, round-robin. */
  private dequeue(): Waiter {
    const lane = this.ring[this.next]!;
    const w = lane.shift()!;
    this.depth--;
    if (lane.length === 0) {
      this.removeFromRing(lane);
    } else {
      this.next = (this.next + 1) % this.ring.length;
    }
    return w;
  }

  private releaseOne(): void {
    const now = this.clock();
    const w = this.dequeue();
    this.released++;
    this.lastActive = now;
    this.onRelease?.(now);
    this.settle(w, { admitted: true, waitMs: now - w.enqueuedAt });
  }
}

/** Budgets by key, created on first use and forgotten when idle. */
export class RateQueue {
  private readonly budgets = new Map<string, Budget>();
  private lastSweep: number;

  constructor(
    private limits: RateQueueLimits,
    /** Takes a token of budget `key` (from the shared state). */
    private readonly takeToken: (key: string, limits: RateQueueLimits, at: number, reserveMs: number, reserveTurns: number) => MaybeAsync<Grant>,
    private readonly clock: () => number = () => performance.now(),
    /** Called when a budget is created, e.g. to attach an adaptive rate. */
    private readonly onCreate: ((budget: Budget) => void) | null = null,
    private readonly sweepEveryMs = 10_000,
  ) {
    this.lastSweep = clock();
  }

  budget(key: string): Budget {
    let b = this.budgets.get(key);
    if (!b) {
      const returnTokens = this.returnTokens;
      b = new Budget(key, this.limits, this.clock, (limits, at, reserveMs, reserveTurns) => this.takeToken(key, limits, at, reserveMs, reserveTurns), returnTokens && ((limits, n, at) => returnTokens(key, limits, n, at)));
      this.budgets.set(key, b);
      this.onCreate?.(b);
    }
    return b;
  }

  /** Joins budget `key` in lane `lane` (use the same string for both when lanes do not matter). */
  enqueue(key: string, lane: string): Ticket {
    const now = this.clock();
    if (now - this.lastSweep > this.sweepEveryMs) this.sweep(now, key);
    return this.budget(key).enqueue(lane);
  }

  get(key: string): Budget | undefined {
    return this.budgets.get(key);
  }

  all(): IterableIterator<Budget> {
    return this.budgets.values();
  }

  get depth(): number {
    let n = 0;
    for (const b of this.budgets.values()) n += b.depth;
    return n;
  }

  /** Applies new limits to every budget (an adaptive budget keeps its own rate: see `keepRate`). */
  update(limits: RateQueueLimits, keepRate = false): void {
    this.limits = limits;
    for (const b of this.budgets.values()) b.update(keepRate ? { ...limits, rate: b.rate } : limits);
  }

  releaseAll(): void {
    for (const b of this.budgets.values()) b.releaseAll();
  }

  /**
   * Gives `n` tokens of budget `key` back to the shared state: reserved tokens (a store that
   * reserves, see SharedState.take) whose waiter left before its turn came. Set before the first
   * enqueue; null leaves them unused.
   */
  returnTokens: ((key: string, limits: RateQueueLimits, n: number, at: number) => void) | null = null;

  /** Budgets idle for a while are dropped; `onForget` lets the caller drop their metrics too. */
  onForget: ((budget: Budget) => void) | null = null;

  private sweep(now: number, keep: string): void {
    this.lastSweep = now;
    for (const [k, b] of this.budgets) {
      if (k !== keep && b.idle && now - b.lastActive > this.sweepEveryMs) {
        this.budgets.delete(k);
        this.onForget?.(b);
      }
    }
  }
}

function noop(): void {}
