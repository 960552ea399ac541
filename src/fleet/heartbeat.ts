/**
 * Live processes of a fleet, in one registry: every HEARTBEAT_MS each process writes its record
 * `sluice:{FLEET}:instances:{INSTANCE}` and its entry in the index `sluice:{FLEET}:live`, both
 * expiring after HEARTBEAT_TTL_MS, in one script (fleet/scripts.ts), so a process that stops or
 * dies drops out within seconds. `sluice fleet status` (fleet/status.ts) lists the index's
 * records; the count the script returns is the local fallback's divisor (fleet/redis-state.ts).
 */
import { hostname } from "node:os";
import type { FleetConnection } from "./connection.js";
import { HEARTBEAT_SCRIPT } from "./scripts.js";

export const HEARTBEAT_MS = 1500;
export const HEARTBEAT_TTL_MS = 5000;
export const INSTANCES_PREFIX = "instances:";
/** The index of live instances (a sorted set: instance → expiry on Redis's clock). */
export const LIVE_INDEX = "live";

type HeartbeatScript = (index: string, record: string, instance: string, ttlMs: number, json: string) => Promise<[string | null, number]>;

/** What a process says about itself (version 1 of the shape; fields are only ever added). */
export interface InstanceRecord {
  v: 1;
  instance: string;
  host: string;
  pid: number;
  /** Where the proxy listens, host:port. */
  address: string;
  /** The proxy mode (regular, reverse:…, upstream:…, …). */
  mode: string;
  /** When the process joined, ms since the epoch. */
  started: number;
  /** When this record was written, ms since the epoch (the writer's clock). */
  updated: number;
  /** Requests received per second over the last heartbeat interval. */
  requestsPerSecond: number;
  /** Requests waiting in shaping queues now. */
  queueDepth: number;
  /** Fault rules in force here: id, rule text, on/off. */
  faults: { id: string; rule: string; enabled: boolean }[];
  /** Shaping rules here, as written. */
  shapes: string[];
}

/** What the heartbeat asks the process for at each beat. */
export interface InstanceFacts {
  address(): string;
  mode(): string;
  /** Requests received since the process started (the heartbeat takes differences). */
  requests(): number;
  queueDepth(): number;
  faults(): InstanceRecord["faults"];
  shapes(): string[];
}

export class Heartbeat {
  private timer: NodeJS.Timeout | null = null;
  private readonly started = Date.now();
  private lastBeat = performance.now();
  private lastRequests = 0;
  private writing = false;
  private warnedDuplicate = false;
  private readonly script: HeartbeatScript;

  constructor(
    private readonly conn: FleetConnection,
    private readonly facts: InstanceFacts,
    private readonly onError: (err: Error) => void,
    private readonly onDuplicate: (message: string) => void,
  ) {
    conn.redis.defineCommand("sluiceHeartbeat", { numberOfKeys: 2, lua: HEARTBEAT_SCRIPT });
    this.script = (conn.redis as unknown as Record<string, HeartbeatScript>).sluiceHeartbeat!.bind(conn.redis);
  }

  get key(): string {
    return INSTANCES_PREFIX + this.conn.config.instance;
  }

  start(): void {
    this.lastRequests = this.facts.requests();
    void this.beat();
    this.timer = setInterval(() => void this.beat(), HEARTBEAT_MS);
    this.timer.unref();
  }

  /** Stops beating and removes the record and index entry, so status drops this process at once. */
  async stop(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
    if (this.conn.up) await this.script(LIVE_INDEX, this.key, this.conn.config.instance, 0, "").catch(() => undefined);
  }

  record(): InstanceRecord {
    const now = performance.now();
    const requests = this.facts.requests();
    const seconds = (now - this.lastBeat) / 1000;
    const rps = seconds > 0 ? (requests - this.lastRequests) / seconds : 0;
    this.lastBeat = now;
    this.lastRequests = requests;
    return {
      v: 1,
      instance: this.conn.config.instance,
      host: hostname(),
      pid: process.pid,
      address: this.facts.address(),
      mode: this.facts.mode(),
      started: this.started,
      updated: Date.now(),
      requestsPerSecond: Math.round(rps * 10) / 10,
      queueDepth: this.facts.queueDepth(),
      faults: this.facts.faults(),
      shapes: this.facts.shapes(),
    };
  }

  /** Two processes under one instance label would overwrite each other's record: say so once. */
  private checkOwner(previous: string | null): void {
    if (!previous || this.warnedDuplicate) return;
    let other: Partial<InstanceRecord>;
    try {
      other = JSON.parse(previous) as Partial<InstanceRecord>;
    } catch {
      return;
    }
    // A record from before this process started is a predecessor's that did not stop cleanly.
    if ((other.pid === process.pid && other.host === hostname()) || (other.updated ?? 0) < this.started) return;
    this.warnedDuplicate = true;
    this.onDuplicate(`another sluice (${other.host ?? "?"} pid ${other.pid ?? "?"}, ${other.address ?? "?"}) uses the instance label ${this.conn.config.instance} in this fleet; give each process its own with --set instance=NAME, or fleet status and metrics mix them up`);
  }

  private async beat(): Promise<void> {
    // While Redis is away, beats would only pile up in the client's offline queue.
    if (!this.conn.up || this.writing) return;
    this.writing = true;
    try {
      const [previous, live] = await this.script(LIVE_INDEX, this.key, this.conn.config.instance, HEARTBEAT_TTL_MS, JSON.stringify(this.record()));
      this.conn.liveProcesses = Math.max(1, Number(live));
      this.checkOwner(previous);
    } catch (err) {
      this.onError(err as Error);
    } finally {
      this.writing = false;
    }
  }
}
