/**
 * Live processes of a fleet: every process writes `sluice:{FLEET}:instances:{INSTANCE}` every
 * HEARTBEAT_MS with a time to live of HEARTBEAT_TTL_MS, so a process that stops or dies drops out
 * within seconds and `sluice fleet status` (fleet/status.ts) lists only live ones. The value is the
 * JSON `InstanceRecord` below; other fleet features (the local fallback's share of a budget)
 * count the live processes from these keys.
 */
import { hostname } from "node:os";
import type { FleetConnection } from "./connection.js";

export const HEARTBEAT_MS = 1500;
export const HEARTBEAT_TTL_MS = 5000;
export const INSTANCES_PREFIX = "instances:";

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

  constructor(
    private readonly conn: FleetConnection,
    private readonly facts: InstanceFacts,
    private readonly onError: (err: Error) => void,
    private readonly onDuplicate: (message: string) => void,
  ) {}

  get key(): string {
    return INSTANCES_PREFIX + this.conn.config.instance;
  }

  start(): void {
    this.lastRequests = this.facts.requests();
    void this.beat();
    this.timer = setInterval(() => void this.beat(), HEARTBEAT_MS);
    this.timer.unref();
  }

  /** Stops beating and removes the record, so status drops this process at once. */
  async stop(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
    if (this.conn.up) await this.conn.redis.del(this.key).catch(() => undefined);
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
      const previous = await this.conn.redis.get(this.key);
      this.checkOwner(previous);
      await this.conn.redis.set(this.key, JSON.stringify(this.record()), "PX", HEARTBEAT_TTL_MS);
    } catch (err) {
      this.onError(err as Error);
    } finally {
      this.writing = false;
    }
  }
}
