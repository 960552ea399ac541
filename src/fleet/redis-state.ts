/**
 * Rate budgets and adaptive rates shared by a fleet through Redis (README "Running a fleet"),
 * behind the same SharedState interface as the in-process one, so shaping and fault budgets do not
 * know which they have.
 *
 * - Admission is one Lua script per take (fleet/scripts.ts) on Redis's clock: exact under any
 *   concurrency. A shaping queue may reserve its next tokens (`reserveMs`, `reserveTurns`): the
 *   script answers when each turn comes and the requests go then, without asking again — at most
 *   one round trip per admitted request (fewer when several are queued), never a polling loop.
 * - Leases: when a token is there and this process is busy on a key, the script hands out a small
 *   batch (what this process used in the last LEASE_DEMAND_MS, at most LEASE_SHARE of the rate's
 *   second), taking the tokens beyond the first ahead of time (the bucket goes into debt, so
 *   others wait for them); the batch is spent locally without round trips and dropped after
 *   LEASE_TTL_MS. Tokens are never created, so over a long window the fleet admits the rate;
 *   within a short one each process holds at most one lease per key, so the fleet exceeds a
 *   strict bucket by at most processes × (lease − 1) requests in any window.
 * - Redis unreachable: `local` — each budget falls back to this process's share (rate and burst
 *   divided by the live processes the heartbeat last counted, `FleetConnection.liveProcesses`); `closed` — takes wait until Redis is
 *   back. Either way nothing is refused or failed because of Redis.
 */
import { performance } from "node:perf_hooks";
import type { Logger } from "../core/addons.js";
import type { Redis } from "ioredis";
import { InProcessState, isPromise, type AdaptiveEvent, type AdaptiveSnapshot, type Grant, type MaybeAsync, type RateLimit, type SharedState, type SlotWait } from "../core/shared-state.js";
import { CUBIC_BETA, CUBIC_SCALE, MIN_RATE, type AdaptiveRateOptions } from "../core/adaptive-rate.js";
import type { FleetConnection } from "./connection.js";
import { ADAPTIVE_SCRIPT, CHARGE_SCRIPT, CLAIM_SCRIPT, SLOT_ENTER_SCRIPT, SLOT_LEAVE_SCRIPT, SLOT_RENEW_SCRIPT, TAKE_SCRIPT } from "./scripts.js";

/** A lease covers what this process used over this long (ms)… */
export const LEASE_DEMAND_MS = 20;
/** …and never more than this share of one second of the rate (2%: 20 tokens at 1,000/s; none below 100/s). */
export const LEASE_SHARE = 0.02;
/** Leased tokens not spent within this long are dropped (they were the fleet's; the fleet under-admits them). */
export const LEASE_TTL_MS = 100;
/** An adaptive rate is re-read from the fleet at most this often per key on successes. */
export const ADAPTIVE_SYNC_MS = 100;
/**
 * In `local` fallback, a command not answered within this long is answered locally (a Redis that
 * went silent without closing the connection). Long enough that a starved event loop does not
 * mistake a slow answer for a lost Redis; a killed Redis closes the connection and is seen at once.
 */
export const LOCAL_TIMEOUT_MS = 2000;
/** Rule names this process claimed are re-claimed this often. */
const CLAIM_REFRESH_MS = 2000;
/** A rule name claimed by a process is held this long after its last refresh. */
const CLAIM_TTL_MS = 30_000;

/**
 * A concurrency slot (a Lambda invocation in flight) is leased for this long and renewed every
 * third of it while held: a process killed while holding slots leaks them for at most this long.
 */
export const SLOT_LEASE_MS = 10_000;
/**
 * A request waiting for a slot is woken by the fleet's notice that one was freed; this is the
 * safety net — a notice lost (the subscriber reconnecting) or a slot freed by a lapsed lease,
 * which no one announces — so the head of a line asks again at most this often.
 */
export const SLOT_RECHECK_MS = 1000;
/** A key's subscription is kept this long after its line empties, so a busy key does not resubscribe per request. */
const SLOT_UNSUBSCRIBE_MS = 5000;

interface SlotWaiter {
  holder: string;
  max: number;
  resolve: (held: boolean) => void;
  done: boolean;
}

/** This process's requests waiting for a slot of one key, first come first served. */
interface SlotLine {
  waiters: SlotWaiter[];
  /** The waiter whose ask is in flight (only the head asks). */
  asking: SlotWaiter | null;
  /** A notice came while the head's ask was in flight: it may have missed the freed slot. */
  noticed: boolean;
  timer: ReturnType<typeof setTimeout> | null;
  subscribed: boolean;
}

interface Lease {
  tokens: number;
  expires: number;
  /** Takes asked of this key in the current and previous demand window. */
  windowStart: number;
  inWindow: number;
  lastWindow: number;
}

interface FleetAdaptive {
  snap: AdaptiveSnapshot | null;
  pendingSends: number;
  syncedAt: number;
  inflight: Promise<AdaptiveSnapshot> | null;
}

type Script = (key: string, ...args: (string | number)[]) => Promise<unknown>;

/** Round trips and where grants came from, for the benchmark and status. */
export interface FleetStateStats {
  roundTrips: number;
  takes: number;
  leased: number;
  reserved: number;
  local: number;
}

export class RedisSharedState implements SharedState {
  readonly stats: FleetStateStats = { roundTrips: 0, takes: 0, leased: 0, reserved: 0, local: 0 };
  private readonly leases = new Map<string, Lease>();
  private readonly adaptives = new Map<string, FleetAdaptive>();
  /** The fallback's budgets and rates, while Redis is away. */
  private local = new InProcessState();
  private readonly claims = new Map<string, string>();
  private readonly claimTimer: ReturnType<typeof setInterval>;
  private lastErrorLog = -Infinity;
  private readonly takeScript: Script;
  private readonly adaptiveScript: Script;
  private readonly claimScript: Script;
  private readonly chargeScript: Script;
  private readonly slotEnterScript: Script;
  private readonly slotRenewScript: Script;
  private readonly slotLeaveScript: Script;
  /** Requests of this process waiting for a slot, per key, and the connection their notices come on. */
  private readonly slotLines = new Map<string, SlotLine>();
  private slotSubscriber: Redis | null = null;
  /** Slots this process holds in Redis (renewed while held), and those it holds in the fallback. */
  private readonly slotsHeld = new Map<string, Set<string>>();
  private readonly slotsLocal = new Map<string, Set<string>>();
  /** Slots being asked for (key and holder), and whether the holder left meanwhile. */
  private readonly slotsEntering = new Map<string, boolean>();
  private readonly slotTimer: ReturnType<typeof setInterval>;

  constructor(
    private readonly conn: FleetConnection,
    private readonly log: Logger,
  ) {
    const r = conn.redis;
    r.defineCommand("sluiceTake", { numberOfKeys: 1, lua: TAKE_SCRIPT });
    r.defineCommand("sluiceAdaptive", { numberOfKeys: 1, lua: ADAPTIVE_SCRIPT });
    r.defineCommand("sluiceClaim", { numberOfKeys: 1, lua: CLAIM_SCRIPT });
    const commands = r as unknown as Record<string, Script>;
    this.takeScript = commands.sluiceTake!.bind(r);
    this.adaptiveScript = commands.sluiceAdaptive!.bind(r);
    this.claimScript = commands.sluiceClaim!.bind(r);
    r.defineCommand("sluiceCharge", { numberOfKeys: 1, lua: CHARGE_SCRIPT });
    r.defineCommand("sluiceSlotEnter", { numberOfKeys: 1, lua: SLOT_ENTER_SCRIPT });
    r.defineCommand("sluiceSlotRenew", { numberOfKeys: 1, lua: SLOT_RENEW_SCRIPT });
    r.defineCommand("sluiceSlotLeave", { numberOfKeys: 1, lua: SLOT_LEAVE_SCRIPT });
    this.slotLeaveScript = commands.sluiceSlotLeave!.bind(r);
    this.chargeScript = commands.sluiceCharge!.bind(r);
    this.slotEnterScript = commands.sluiceSlotEnter!.bind(r);
    this.slotRenewScript = commands.sluiceSlotRenew!.bind(r);
    this.slotTimer = setInterval(() => void this.renewSlots(), SLOT_LEASE_MS / 3);
    this.slotTimer.unref();
    conn.on("up", () => {
      // Back from a fallback: what was counted locally meanwhile is not the fleet's.
      this.local = new InProcessState();
      this.leases.clear();
      void this.refreshClaims();
      // Slots freed while the link was down were announced to no one.
      for (const key of this.slotLines.keys()) this.slotFreed(key);
    });
    this.claimTimer = setInterval(() => void this.refreshClaims(), CLAIM_REFRESH_MS);
    this.claimTimer.unref();
  }

  get description(): string {
    return this.conn.description;
  }

  take(key: string, limit: RateLimit, n: number, at: number, reserveMs = 0, reserveTurns = 1): MaybeAsync<Grant> {
    this.stats.takes++;
    const now = performance.now();
    const lease = this.leaseOf(key, now);
    if (lease.tokens >= n && now < lease.expires) {
      lease.tokens -= n;
      this.stats.leased++;
      return { granted: true, waitMs: 0 };
    }
    lease.tokens = 0;
    if (!this.conn.up) {
      if (this.conn.config.fallback === "local" || this.conn.state === "closed") return this.localTake(key, limit, n, at);
      return this.conn.whenUp().then(() => this.take(key, limit, n, performance.now(), reserveMs, reserveTurns));
    }
    const size = this.leaseSize(limit, lease, n);
    // Reserved turns are exact (each has its time from Redis); the cap keeps one process from booking far ahead of the others.
    const turns = Math.max(1, Math.min(reserveTurns, Math.floor(limit.rate * LEASE_SHARE)));
    const asked = this.call(() => this.takeScript("bucket:" + key, limit.rate, limit.burst, n, Math.max(0, Math.floor(reserveMs)), size, turns));
    return asked.then(
      (answer): MaybeAsync<Grant> => {
        if (answer === LOCAL) return this.localTake(key, limit, n, at);
        const [granted, wait] = answer as [number, string];
        const waitMs = Number(wait);
        if (granted >= n) {
          if (waitMs > 0) {
            const turns = Math.floor(granted / n);
            this.stats.reserved += turns;
            return { granted: true, waitMs, turns };
          }
          if (granted > n) {
            lease.tokens = granted - n;
            lease.expires = performance.now() + LEASE_TTL_MS;
          }
          return { granted: true, waitMs: 0 };
        }
        return { granted: false, waitMs };
      },
      (err: Error) => this.failed(err, () => this.localTake(key, limit, n, at)),
    );
  }

  adaptive(key: string, opts: AdaptiveRateOptions, event: AdaptiveEvent, at: number): MaybeAsync<AdaptiveSnapshot> {
    let a = this.adaptives.get(key);
    if (!a) {
      a = { snap: null, pendingSends: 0, syncedAt: -Infinity, inflight: null };
      this.adaptives.set(key, a);
    }
    if (!this.conn.up) {
      // The fallback learns on its own from the fleet's last rate (a fleet-level rate: takes divide it).
      return this.local.adaptive(key, { ...opts, start: a.snap?.rate ?? opts.start }, event, at);
    }
    const now = performance.now();
    const fresh = a.snap && now - a.syncedAt < ADAPTIVE_SYNC_MS;
    switch (event.kind) {
      case "send":
        a.pendingSends++;
        if (a.snap) {
          // Sends reach the fleet's measured rate in batches, with the next sync or at least every 250 ms.
          if (!a.inflight && now - a.syncedAt > 250) void this.syncAdaptive(key, a, opts, "read", 0).catch(() => {});
          return { ...a.snap, cut: false };
        }
        return this.syncAdaptive(key, a, opts, "read", 0);
      case "success":
        if (fresh) return { ...a.snap!, cut: false };
        return a.inflight ?? this.syncAdaptive(key, a, opts, "success", 0);
      case "throttle":
        return this.syncAdaptive(key, a, opts, "throttle", Math.max(0, at - event.sentAt));
      case "read":
        return a.inflight ?? this.syncAdaptive(key, a, opts, "read", 0);
    }
  }

  forget(prefix: string): void {
    // Other processes may still use the fleet's keys: only this process's leases and caches go
    // (Redis expires idle buckets by itself: a full bucket's key lives burst/rate + 1 s).
    for (const k of this.leases.keys()) if (k.startsWith(prefix)) this.leases.delete(k);
    for (const k of this.adaptives.keys()) if (k.startsWith(prefix)) this.adaptives.delete(k);
    this.local.forget(prefix);
  }

  async claimName(kind: "shape" | "fault", name: string, text: string): Promise<void> {
    const id = `rulename:${kind}:${name}`;
    if (!this.conn.up) {
      this.log.warn(`fleet: cannot check ${kind === "shape" ? "shaping" : "fault"} rule name=${name} against the fleet while its shared state is unreachable; using it as given`);
      this.claims.set(id, text);
      return;
    }
    this.stats.roundTrips++;
    const held = String(await this.claimScript(id, text, CLAIM_TTL_MS));
    if (held !== text) {
      const what = kind === "shape" ? "shaping" : "fault";
      throw new Error(`${what} rule name=${name} means ${JSON.stringify(held)} in fleet ${this.conn.config.fleet}, but here ${JSON.stringify(text)}: give one of them another name, or the same text`);
    }
    this.claims.set(id, text);
  }

  charge(key: string, limit: RateLimit, n: number, at: number): MaybeAsync<void> {
    if (!this.conn.up) return this.localCharge(key, limit, n, at);
    return this.call(() => this.chargeScript("bucket:" + key, limit.rate, limit.burst, n)).then(
      (answer) => {
        if (answer === LOCAL) this.localCharge(key, limit, n, at);
      },
      (err: Error) => this.failed(err, () => this.localCharge(key, limit, n, at)),
    );
  }

  enterSlot(key: string, holder: string, max: number): MaybeAsync<boolean> {
    if (!this.conn.up) {
      if (this.conn.config.fallback === "local" || this.conn.state === "closed") return this.localEnterSlot(key, holder, max);
      return this.conn.whenUp().then(() => this.enterSlot(key, holder, max));
    }
    const entering = `${key}\n${holder}`;
    this.slotsEntering.set(entering, false);
    return this.call(() => this.slotEnterScript("slots:" + key, holder, max, SLOT_LEASE_MS)).then(
      (answer): boolean => {
        if (answer === LOCAL) return this.localEnterSlot(key, holder, max);
        if (Number(answer) !== 1) return false;
        addTo(this.slotsHeld, key, holder);
        return true;
      },
      (err: Error) => this.failed(err, () => this.localEnterSlot(key, holder, max)),
    ).finally(() => {
      // Left while the script ran: the slot it got goes at once, not with its lease.
      const leftMeanwhile = this.slotsEntering.get(entering);
      this.slotsEntering.delete(entering);
      if (leftMeanwhile) void this.leaveSlot(key, holder);
    });
  }

  leaveSlot(key: string, holder: string): MaybeAsync<void> {
    const entering = `${key}\n${holder}`;
    if (this.slotsEntering.has(entering)) {
      this.slotsEntering.set(entering, true);
      return;
    }
    if (removeFrom(this.slotsLocal, key, holder)) {
      this.local.leaveSlot(key, holder);
      this.slotFreed(key);
    }
    if (!removeFrom(this.slotsHeld, key, holder) || !this.conn.up) return;
    // A leave Redis never hears of ends with the lease (SLOT_LEASE_MS).
    this.stats.roundTrips++;
    const left = this.slotLeaveScript("slots:" + key, holder, this.slotChannel(key)).then(() => {}, () => {});
    // This process's own waiters need no notice: their ask goes on the same connection after the
    // leave, so Redis runs it with the slot free.
    this.slotFreed(key);
    return left;
  }

  waitForSlot(key: string, holder: string, max: number): SlotWait {
    const line = this.slotLineOf(key);
    const waiter: SlotWaiter = { holder, max, resolve: () => {}, done: false };
    const granted = new Promise<boolean>((resolve) => (waiter.resolve = resolve));
    line.waiters.push(waiter);
    // A line already waiting is woken by notices; a newcomer behind it asks nothing.
    if (line.waiters.length === 1) this.askForSlot(key, line);
    const cancel = () => {
      if (waiter.done) return;
      waiter.done = true;
      waiter.resolve(false);
      // The head's ask in flight: a slot it gets goes back when the answer comes (askForSlot).
      if (line.asking === waiter) return;
      const at = line.waiters.indexOf(waiter);
      if (at >= 0) line.waiters.splice(at, 1);
      if (at === 0) this.askForSlot(key, line);
    };
    return { granted, cancel };
  }

  async close(): Promise<void> {
    for (const line of this.slotLines.values()) if (line.timer) clearTimeout(line.timer);
    clearInterval(this.slotTimer);
    clearInterval(this.claimTimer);
  }

  /** Notices of freed slots come on this channel (named in full: ioredis does not prefix channels). */
  private slotChannel(key: string): string {
    return this.conn.key("slotfree:" + key);
  }

  private slotLineOf(key: string): SlotLine {
    let line = this.slotLines.get(key);
    if (line) {
      if (line.timer && line.waiters.length === 0) {
        clearTimeout(line.timer);
        line.timer = null;
      }
      return line;
    }
    line = { waiters: [], asking: null, noticed: false, timer: null, subscribed: false };
    this.slotLines.set(key, line);
    if (!this.slotSubscriber) {
      const sub = this.conn.subscriber();
      this.slotSubscriber = sub;
      const prefix = this.slotChannel("");
      sub.on("message", (channel: string) => {
        if (channel.startsWith(prefix)) this.slotFreed(channel.slice(prefix.length));
      });
    }
    const subscribing = line;
    this.slotSubscriber.subscribe(this.slotChannel(key)).then(
      () => {
        subscribing.subscribed = true;
        if (this.slotLines.get(key) !== subscribing) {
          void this.slotSubscriber?.unsubscribe(this.slotChannel(key)).catch(() => {});
          return;
        }
        // A slot freed between the first ask and the subscription was announced to no one listening.
        this.slotFreed(key);
      },
      () => {}, // the re-check timer stands in for notices
    );
    return line;
  }

  /** A slot of `key` was freed (a notice, or this process's own leave): the head of its line asks again. */
  private slotFreed(key: string): void {
    const line = this.slotLines.get(key);
    if (!line || line.waiters.length === 0) return;
    if (line.asking) line.noticed = true;
    else this.askForSlot(key, line);
  }

  /**
   * The head of `key`'s line asks for a slot; given one, it leaves the line and the next asks at
   * once (several may be free); refused, the line waits for a notice or the re-check timer.
   */
  private askForSlot(key: string, line: SlotLine): void {
    if (line.asking) return;
    if (line.timer) clearTimeout(line.timer);
    line.timer = null;
    while (line.waiters[0]?.done) line.waiters.shift();
    const head = line.waiters[0];
    if (!head) return this.lineEmptied(key, line);
    line.asking = head;
    line.noticed = false;
    const answered = (held: boolean) => {
      line.asking = null;
      if (held) {
        line.waiters.shift();
        if (head.done) void this.leaveSlot(key, head.holder); // gave up while asking: the slot goes back
        else {
          head.done = true;
          head.resolve(true);
        }
        return this.askForSlot(key, line);
      }
      if (head.done || line.noticed) return this.askForSlot(key, line);
      line.timer = setTimeout(() => this.askForSlot(key, line), SLOT_RECHECK_MS);
      line.timer.unref();
    };
    let entered: MaybeAsync<boolean>;
    try {
      entered = this.enterSlot(key, head.holder, head.max);
    } catch {
      entered = false;
    }
    if (isPromise(entered)) entered.then(answered, () => answered(false));
    else answered(entered);
  }

  /** No one of this process waits for `key`: its subscription goes after a while. */
  private lineEmptied(key: string, line: SlotLine): void {
    line.timer = setTimeout(() => {
      if (line.waiters.length || this.slotLines.get(key) !== line) return;
      this.slotLines.delete(key);
      if (line.subscribed) void this.slotSubscriber?.unsubscribe(this.slotChannel(key)).catch(() => {});
    }, SLOT_UNSUBSCRIBE_MS);
    line.timer.unref();
  }

  /** Keeps this process's rule names held. */
  private async refreshClaims(): Promise<void> {
    if (!this.conn.up) return;
    try {
      for (const [id, text] of this.claims) {
        const held = String(await this.claimScript(id, text, CLAIM_TTL_MS));
        if (held !== text) this.log.error(`fleet: rule ${id.replace(/^rulename:(\w+):/, "$1 name=")} is held by a different rule in the fleet: ${JSON.stringify(held)}`);
      }
    } catch {
      // The connection reports loss itself; the next tick tries again.
    }
  }

  /** Keeps the leases of the slots this process holds (one round trip per key). */
  private async renewSlots(): Promise<void> {
    if (!this.conn.up) return;
    for (const [key, holders] of this.slotsHeld) {
      if (holders.size === 0) continue;
      try {
        this.stats.roundTrips++;
        await this.slotRenewScript("slots:" + key, SLOT_LEASE_MS, ...holders);
      } catch {
        // The connection reports loss itself; the next tick tries again.
      }
    }
  }

  private localCharge(key: string, limit: RateLimit, n: number, at: number): void {
    const share = this.conn.liveProcesses;
    this.local.charge(key, { rate: limit.rate / share, burst: Math.max(1, limit.burst / share) }, n, at);
  }

  /** While Redis is away, this process's share of the slots. */
  private localEnterSlot(key: string, holder: string, max: number): boolean {
    this.stats.local++;
    const granted = this.local.enterSlot(key, holder, Math.max(1, Math.floor(max / this.conn.liveProcesses)));
    if (granted) addTo(this.slotsLocal, key, holder);
    return granted;
  }

  private localTake(key: string, limit: RateLimit, n: number, at: number): Grant {
    this.stats.local++;
    const share = this.conn.liveProcesses;
    return this.local.take(key, { rate: limit.rate / share, burst: Math.max(1, limit.burst / share) }, n, at);
  }

  /** Runs one command; in `local` fallback a command that hangs (Redis just went away) is answered locally. */
  private call(run: () => Promise<unknown>): Promise<unknown> {
    this.stats.roundTrips++;
    const p = run();
    if (this.conn.config.fallback !== "local") return p;
    let timer: ReturnType<typeof setTimeout>;
    const timeout = new Promise<typeof LOCAL>((resolve) => (timer = setTimeout(() => resolve(LOCAL), LOCAL_TIMEOUT_MS)));
    return Promise.race([p, timeout]).finally(() => clearTimeout(timer));
  }

  private failed<T>(err: Error, local: () => T): T {
    if (this.conn.config.fallback !== "local") throw err;
    const now = performance.now();
    if (now - this.lastErrorLog > 10_000) {
      this.lastErrorLog = now;
      this.log.warn(`fleet: the shared state at ${this.conn.target.display} answered with an error (${err.message}); this process uses its share of the budget meanwhile`);
    }
    return local();
  }

  private leaseOf(key: string, now: number): Lease {
    let l = this.leases.get(key);
    if (!l) {
      l = { tokens: 0, expires: 0, windowStart: now, inWindow: 0, lastWindow: 0 };
      this.leases.set(key, l);
      if (this.leases.size > 10_000) this.sweepLeases(now);
    }
    if (now - l.windowStart >= LEASE_DEMAND_MS) {
      l.lastWindow = now - l.windowStart >= 2 * LEASE_DEMAND_MS ? 0 : l.inWindow;
      l.inWindow = 0;
      l.windowStart = now;
    }
    l.inWindow++;
    return l;
  }

  /** This process's demand over the last window, capped by the rate's share: 1 (no lease) when quiet. */
  private leaseSize(limit: RateLimit, l: Lease, n: number): number {
    const cap = Math.max(n, Math.floor(limit.rate * LEASE_SHARE));
    return Math.min(cap, Math.max(n, l.lastWindow, l.inWindow));
  }

  private sweepLeases(now: number): void {
    for (const [k, l] of this.leases) if (now - l.windowStart > 10_000) this.leases.delete(k);
  }

  private syncAdaptive(key: string, a: FleetAdaptive, opts: AdaptiveRateOptions, kind: "read" | "success" | "throttle", sentAgoMs: number): Promise<AdaptiveSnapshot> {
    const sends = a.pendingSends;
    a.pendingSends = 0;
    const args = [kind, opts.start, opts.min ?? MIN_RATE, Number.isFinite(opts.max ?? Infinity) ? opts.max! : -1, opts.beta ?? CUBIC_BETA, opts.scale ?? CUBIC_SCALE, sends, Math.round(sentAgoMs)];
    const p = this.call(() => this.adaptiveScript("adaptive:" + key, ...args)).then(
      (answer): AdaptiveSnapshot => {
        if (answer === LOCAL) {
          a.pendingSends += sends;
          return this.local.adaptive(key, { ...opts, start: a.snap?.rate ?? opts.start }, kind === "throttle" ? { kind: "throttle", sentAt: performance.now() - sentAgoMs } : { kind: kind === "success" ? "success" : "read" }, performance.now());
        }
        const [rate, cut, throttles, cuts] = answer as [string, number, number, number];
        const snap: AdaptiveSnapshot = { rate: Number(rate), cut: cut === 1, throttles: Number(throttles), cuts: Number(cuts) };
        a.snap = { ...snap, cut: false };
        a.syncedAt = performance.now();
        return snap;
      },
      (err: Error) => this.failed(err, () => this.local.adaptive(key, { ...opts, start: a.snap?.rate ?? opts.start }, { kind: "read" }, performance.now())),
    );
    if (kind !== "throttle") {
      a.inflight = p;
      void p.finally(() => {
        if (a.inflight === p) a.inflight = null;
      }).catch(() => {});
    }
    return p;
  }
}

function addTo(map: Map<string, Set<string>>, key: string, holder: string): void {
  const set = map.get(key);
  if (set) set.add(holder);
  else map.set(key, new Set([holder]));
}

/** Removes `holder` from `key`'s set; true when it was there. */
function removeFrom(map: Map<string, Set<string>>, key: string, holder: string): boolean {
  const set = map.get(key);
  if (!set?.delete(holder)) return false;
  if (set.size === 0) map.delete(key);
  return true;
}

/** The marker for "answered locally" (a command that did not come back in time). */
const LOCAL = Symbol("local");
