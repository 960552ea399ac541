/**
 * One chaos switch for a fleet: fault rules added, removed, enabled or disabled on any process
 * (`fault.*` commands from the console, a script or the admin API) reach every process of the
 * fleet, and a process that starts later gets the current rules.
 *
 * Redis holds the fleet's rules in the hash `faults` (field: rule id; value: the last change to
 * it, a JSON entry `{seq, op, id, text, enabled, by}`; a removed rule stays as a tombstone with
 * `op: "remove"`) and a counter `faults:seq`. A change is one Lua script — INCR the counter, write
 * the hash, PUBLISH the entry on `faults:changes` — so every process sees the changes in one
 * order, the counter's. A process applies entries in that order and idempotently (a put that
 * matches the rule as it is changes nothing), which makes it loop-free: applying a change never
 * publishes one, and a process's own echo finds its rule already as it says. A gap in the
 * sequence (messages missed while the link was down) or a reconnect reloads the whole hash; a
 * new `faults:epoch` (a Redis that restarted empty) makes every process offer its rules again.
 *
 * Rules given at start (`--fault`, `--faults FILE`) are published when their id is absent from
 * the fleet. If the fleet already has that id: the same rule joins the fleet's (its on/off state
 * is the fleet's); a tombstone for the same rule means the fleet removed it, so it is not
 * revived; a different rule under the same id is refused at start ("give it its own id=NAME").
 */
import { randomUUID } from "node:crypto";
import type { Logger } from "../core/addons.js";
import type { Faults, FaultRuleChange } from "../addons/faults.js";
import type { FleetConnection } from "./connection.js";

/** What the hash holds per rule id, and what is published. */
export interface FleetRuleEntry {
  seq: number;
  op: "put" | "remove";
  id: string;
  /** The rule as written; kept in tombstones too, so a start-up rule the fleet removed stays removed. */
  text: string;
  enabled: boolean;
  /** The instance that made the change. */
  by: string;
}

export const RULES_KEY = "faults";
export const RULES_SEQ_KEY = "faults:seq";
export const RULES_CHANNEL = "faults:changes";
export const RULES_EPOCH_KEY = "faults:epoch";

/**
 * KEYS[1] the hash, KEYS[2] the counter; ARGV[1] the channel, ARGV[2] the id, ARGV[3] the entry as
 * JSON without its seq (`{"op":…}`), ARGV[4] "1" to write only if the id is absent. Returns the
 * existing entry when it did not write, else nothing.
 */
const CHANGE_SCRIPT = `
if ARGV[4] == "1" then
  local existing = redis.call("HGET", KEYS[1], ARGV[2])
  if existing then return existing end
end
local seq = redis.call("INCR", KEYS[2])
local entry = '{"seq":' .. seq .. ',' .. string.sub(ARGV[3], 2)
redis.call("HSET", KEYS[1], ARGV[2], entry)
redis.call("PUBLISH", ARGV[1], entry)
return false
`;

export class RulesClashError extends Error {}

export class FleetRulesSync {
  /** Highest sequence number applied. */
  private lastSeq = 0;
  /** The fleet's rules epoch as last read: a different one means Redis lost them. */
  private epoch: string | null = null;
  private resyncing: Promise<void> | null = null;
  /** Messages that arrived while the hash was being loaded: applied after it. */
  private pending: FleetRuleEntry[] = [];
  private readonly unsubscribeFaults: () => void;
  private subscriber: ReturnType<FleetConnection["subscriber"]> | null = null;
  private stopped = false;

  constructor(
    private readonly conn: FleetConnection,
    private readonly faults: Faults,
    private readonly log: Logger,
  ) {
    this.unsubscribeFaults = faults.onChange((change) => void this.publish(change).catch((err: Error) => this.log.error(`fleet: cannot share fault rule ${change.id} with the fleet: ${err.message}`)));
  }

  get instance(): string {
    return this.conn.config.instance;
  }

  /**
   * Joins the fleet's rules: subscribes, offers the start-up rules, loads the current ones. Throws
   * RulesClashError when a start-up rule has an id the fleet uses for another rule.
   */
  async start(): Promise<void> {
    const sub = this.conn.subscriber();
    this.subscriber = sub;
    sub.on("message", (_channel: string, message: string) => this.onMessage(message));
    // After a reconnect the subscription is renewed by ioredis; what was said meanwhile is reloaded.
    let first = true;
    sub.on("ready", () => {
      if (first) first = false;
      else void this.resync();
    });
    await sub.subscribe(this.conn.key(RULES_CHANNEL));
    await this.offerStartupRules();
    await this.resync();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    this.unsubscribeFaults();
    this.subscriber?.disconnect();
  }

  /** Publishes the rules given at start whose ids the fleet does not have; reconciles the others. */
  async offerStartupRules(): Promise<void> {
    const clashes: string[] = [];
    for (const rule of this.faults.configuredRules()) {
      const existing = await this.change({ op: "put", ...rule }, true);
      if (existing === null) continue;
      if (existing.text === rule.text) {
        if (existing.op === "remove") this.log.info(`fleet: fault rule ${rule.id} (${rule.text}) was removed from fleet ${this.conn.config.fleet} by ${existing.by}; not applied`);
        continue;
      }
      if (existing.op === "remove") {
        await this.change({ op: "put", ...rule }, false);
        continue;
      }
      clashes.push(`fault rule ${rule.id} (${rule.text}) clashes with the fleet's rule ${rule.id} (${existing.text}, from ${existing.by})`);
    }
    if (clashes.length) throw new RulesClashError(`${clashes.join("; ")}: give it its own id=NAME, or remove the fleet's with fault.remove ${clashes.length === 1 ? "ID" : "IDS"}`);
  }

  /** Loads every rule of the fleet and applies them in order (start, reconnect, a gap in the sequence). */
  resync(): Promise<void> {
    this.resyncing ??= this.loadAll().finally(() => {
      this.resyncing = null;
      const pending = this.pending;
      this.pending = [];
      for (const e of pending) this.apply(e);
    });
    return this.resyncing;
  }

  private async loadAll(): Promise<void> {
    let { epoch, all, seq } = await this.readAll();
    if (this.epoch !== null && epoch !== this.epoch) {
      // A new epoch: Redis restarted without its data (or it was flushed). The fleet's rules live
      // on in its processes; each offers its own again (the first to arrive wins an id, as at start).
      this.log.warn(`fleet: the shared state at ${this.conn.target.display} lost the fleet's fault rules (restarted?); offering this process's ${this.faults.list().length} again`);
      this.lastSeq = 0;
      for (const f of this.faults.list()) await this.change({ op: "put", id: f.id, text: f.rule, enabled: f.enabled }, true);
      ({ epoch, all, seq } = await this.readAll());
    }
    this.epoch = epoch;
    const entries = Object.values(all ?? {}).map(parseEntry).filter((e): e is FleetRuleEntry => e !== null).sort((a, b) => a.seq - b.seq);
    for (const e of entries) this.applyEntry(e);
    this.lastSeq = Math.max(this.lastSeq, Number(seq ?? 0));
  }

  /** The hash, the counter and the epoch (made here if Redis has none: a fresh or restarted Redis). */
  private async readAll(): Promise<{ epoch: string; all: Record<string, string>; seq: number }> {
    const replies = (await this.conn.redis.multi().set(RULES_EPOCH_KEY, randomUUID(), "NX").get(RULES_EPOCH_KEY).hgetall(RULES_KEY).get(RULES_SEQ_KEY).exec()) ?? [];
    for (const [err] of replies) if (err) throw err;
    return { epoch: String(replies[1]?.[1]), all: (replies[2]?.[1] ?? {}) as Record<string, string>, seq: Number(replies[3]?.[1] ?? 0) };
  }

  private onMessage(message: string): void {
    if (this.stopped) return;
    const entry = parseEntry(message);
    if (!entry) return this.log.warn(`fleet: ignored a fault rule change that is not sluice's: ${message.slice(0, 200)}`);
    if (this.resyncing) this.pending.push(entry);
    else this.apply(entry);
  }

  private apply(entry: FleetRuleEntry): void {
    if (entry.seq <= this.lastSeq) return; // already in a loaded hash
    if (entry.seq > this.lastSeq + 1) {
      // Changes were missed: the hash has them all.
      void this.resync();
      return;
    }
    this.lastSeq = entry.seq;
    this.applyEntry(entry);
  }

  private applyEntry(entry: FleetRuleEntry): void {
    const change: FaultRuleChange = entry.op === "remove" ? { op: "remove", id: entry.id } : { op: "put", id: entry.id, text: entry.text, enabled: entry.enabled };
    try {
      this.faults.applyChange(change, entry.by === this.instance ? "this process, via the fleet" : `${entry.by} in fleet ${this.conn.config.fleet}`);
    } catch (err) {
      this.log.error(`fleet: cannot apply fault rule ${entry.id} (${entry.text}) from ${entry.by}: ${(err as Error).message}`);
    }
  }

  private async publish(change: FaultRuleChange): Promise<void> {
    if (this.stopped) return;
    if (change.op === "remove") {
      // Keep the text in the tombstone, so a start-up rule the fleet removed is recognized.
      const existing = parseEntry((await this.conn.redis.hget(RULES_KEY, change.id)) ?? "");
      await this.change({ op: "remove", id: change.id, text: existing?.text ?? "", enabled: false }, false);
    } else {
      await this.change(change, false);
    }
  }

  /** Runs the change script; returns the existing entry when `ifAbsent` found one. */
  private async change(c: { op: "put" | "remove"; id: string; text: string; enabled: boolean }, ifAbsent: boolean): Promise<FleetRuleEntry | null> {
    const body = JSON.stringify({ op: c.op, id: c.id, text: c.text, enabled: c.enabled, by: this.instance });
    const existing = (await this.conn.redis.eval(CHANGE_SCRIPT, 2, RULES_KEY, RULES_SEQ_KEY, this.conn.key(RULES_CHANNEL), c.id, body, ifAbsent ? "1" : "0")) as string | null;
    return existing ? parseEntry(existing) : null;
  }
}

export function parseEntry(text: string): FleetRuleEntry | null {
  try {
    const e = JSON.parse(text) as Partial<FleetRuleEntry>;
    if (typeof e.seq !== "number" || (e.op !== "put" && e.op !== "remove") || typeof e.id !== "string" || typeof e.text !== "string") return null;
    return { seq: e.seq, op: e.op, id: e.id, text: e.text, enabled: e.enabled !== false, by: typeof e.by === "string" ? e.by : "?" };
  } catch {
    return null;
  }
}
