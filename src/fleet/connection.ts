/**
 * The process's one connection to the fleet's Redis (README "Running a fleet"). Every fleet
 * feature — shared budgets (fleet/redis-state.ts), rule sync, heartbeats — goes through the
 * connection `fleetConnection()` returns, so a process holds one socket for commands (plus one per
 * subscriber, which Redis requires for pub/sub) and reports a lost Redis once, not once per feature.
 *
 * Keys: the command connection has ioredis's `keyPrefix` set to `sluice:{FLEET}:`, so callers name
 * keys without it (`bucket:…`, `instances:ID`). ioredis does NOT apply the prefix to SCAN/KEYS
 * patterns (nor to their results) nor to pub/sub channel names: use `conn.key(name)` there.
 *
 * Loss and recovery: ioredis reconnects by itself with the back-off below; this module turns its
 * events into one log line on loss, one on recovery, and the `state` / "up" / "down" events that
 * features watch to choose their fallback (`shared_state_fallback`). Commands sent while the link
 * is down wait in ioredis's offline queue until it is back (never rejected for retries): a caller
 * that must not wait (fallback local) checks `up` first or races its own timeout.
 */
import { EventEmitter } from "node:events";
import type { Redis, RedisOptions } from "ioredis";
import { lazyModule } from "../core/lazy-module.js";
import type { Logger } from "../core/addons.js";

const ioredis = lazyModule<typeof import("ioredis")>("ioredis");
/** ioredis's client class, loaded when a fleet is joined (see core/lazy-module). */
export function redisClass(): typeof import("ioredis").Redis {
  return ioredis().Redis;
}

export type FleetFallback = "local" | "closed";
export type FleetLinkState = "connecting" | "up" | "down" | "closed";

export interface FleetConfig {
  /** redis://[:PASSWORD@]HOST:PORT[/DB] or rediss://… */
  url: string;
  fleet: string;
  instance: string;
  fallback: FleetFallback;
}

/** What a shared_state URL names, checked before anything connects. */
export interface RedisTarget {
  tls: boolean;
  host: string;
  port: number;
  db: number;
  /** The URL without its password, for log lines and status. */
  display: string;
}

export function parseRedisUrl(url: string): RedisTarget {
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    throw new Error(`shared_state=${JSON.stringify(url)} is not a URL: write redis://HOST:PORT[/DB] (or rediss:// for TLS)`);
  }
  if (u.protocol !== "redis:" && u.protocol !== "rediss:") throw new Error(`shared_state=${JSON.stringify(redact(u))}: only redis:// and rediss:// are supported`);
  if (!u.hostname) throw new Error(`shared_state=${JSON.stringify(redact(u))} names no host: write redis://HOST:PORT[/DB]`);
  const port = u.port ? Number(u.port) : 6379;
  const dbText = u.pathname.replace(/^\//, "");
  if (dbText !== "" && !/^\d+$/.test(dbText)) throw new Error(`shared_state=${JSON.stringify(redact(u))}: the path must be a database number (/0 … /15), got /${dbText}`);
  return { tls: u.protocol === "rediss:", host: u.hostname, port, db: dbText ? Number(dbText) : 0, display: redact(u) };
}

function redact(u: URL): string {
  const copy = new URL(u.href);
  if (copy.password) copy.password = "***";
  return copy.href.replace(/\/$/, "");
}

/** Back-off between reconnection attempts: 100 ms doubling to 2 s, with jitter so a fleet does not reconnect in step. */
export function reconnectDelayMs(attempt: number): number {
  const base = Math.min(2000, 100 * 2 ** Math.min(attempt - 1, 5));
  return Math.round(base * (0.8 + Math.random() * 0.4));
}

export class FleetConnection extends EventEmitter {
  readonly redis: Redis;
  /** `sluice:{FLEET}:`: the prefix of every key of this fleet. */
  readonly prefix: string;
  readonly target: RedisTarget;
  state: FleetLinkState = "connecting";
  /** When the link went down (Date.now()), or null while up. */
  downSince: number | null = null;
  lastError: Error | null = null;
  /**
   * Live processes in the fleet (at least this one), as the heartbeat last counted them
   * (fleet/heartbeat.ts): what a budget is divided by while the shared state is away.
   */
  liveProcesses = 1;
  private readonly subscribers: Redis[] = [];
  private warnedUnreachable = false;

  constructor(
    readonly config: FleetConfig,
    private readonly log: Logger,
  ) {
    super();
    this.target = parseRedisUrl(config.url);
    this.prefix = `sluice:{${config.fleet}}:`;
    this.redis = new (redisClass())(config.url, { ...this.redisOptions(), keyPrefix: this.prefix });
    this.redis.on("error", (err: Error) => (this.lastError = err));
    this.redis.on("ready", () => this.onUp());
    this.redis.on("close", () => this.onDown());
  }

  get description(): string {
    return `${this.target.display} (fleet ${this.config.fleet})`;
  }

  get up(): boolean {
    return this.state === "up";
  }

  /** A key's full name, for the places ioredis does not prefix (SCAN patterns, pub/sub channels). */
  key(name: string): string {
    return this.prefix + name;
  }

  /** A new connection for SUBSCRIBE (no key prefix: channels are named with `key()`); closed with this one. */
  subscriber(): Redis {
    const sub = new (redisClass())(this.config.url, this.redisOptions());
    sub.on("error", () => {}); // the command connection reports loss and recovery once for all
    this.subscribers.push(sub);
    return sub;
  }

  /** Resolves when the link is up (at once if it is), or after `timeoutMs` with false. */
  whenUp(timeoutMs = Infinity): Promise<boolean> {
    if (this.up) return Promise.resolve(true);
    if (this.state === "closed") return Promise.resolve(false);
    return new Promise((resolve) => {
      const onUp = () => {
        if (timer) clearTimeout(timer);
        resolve(true);
      };
      const timer = Number.isFinite(timeoutMs)
        ? setTimeout(() => {
            this.off("up", onUp);
            resolve(false);
          }, timeoutMs)
        : null;
      this.once("up", onUp);
    });
  }

  async close(): Promise<void> {
    if (this.state === "closed") return;
    this.state = "closed";
    for (const s of this.subscribers) s.disconnect();
    try {
      await this.redis.quit();
    } catch {
      this.redis.disconnect();
    }
  }

  /**
   * Logs the join line once the process has started (so a refused start prints only its error);
   * a link that comes up later logs it then.
   */
  announce(): void {
    if (this.announced) return;
    this.announced = true;
    if (this.up) this.logJoined();
  }

  private announced = false;

  private logJoined(): void {
    this.log.info(`fleet: sharing state at ${this.target.display} as fleet ${this.config.fleet}, instance ${this.config.instance}`);
  }

  private redisOptions(): RedisOptions {
    return {
      retryStrategy: (attempt) => (this.state === "closed" ? null : reconnectDelayMs(attempt)),
      // Commands wait for the link to come back rather than fail after N retries: whether a caller
      // waits (fallback closed) or not (fallback local) is the caller's choice, see `up`.
      maxRetriesPerRequest: null,
      connectTimeout: 2000,
      enableReadyCheck: true,
    };
  }

  private onUp(): void {
    const was = this.state;
    this.state = "up";
    if (was === "down" && this.downSince !== null) {
      const s = ((Date.now() - this.downSince) / 1000).toFixed(1);
      this.log.info(`fleet: the shared state at ${this.target.display} is back after ${s}s: sharing budgets with the fleet again`);
    } else if (this.announced) {
      this.logJoined();
    }
    this.downSince = null;
    this.warnedUnreachable = false;
    this.emit("up");
  }

  private onDown(): void {
    if (this.state === "closed") return;
    const was = this.state;
    this.state = "down";
    if (was === "up" || !this.warnedUnreachable) {
      this.downSince ??= Date.now();
      this.warnedUnreachable = true;
      const why = this.lastError?.message ?? "connection closed";
      const verb = was === "up" ? "lost" : "cannot reach";
      this.log.warn(`fleet: ${verb} the shared state at ${this.target.display} (${why}); ${fallbackText(this.config.fallback)}; reconnecting with back-off`);
    }
    if (was === "up") this.emit("down");
  }
}

function fallbackText(f: FleetFallback): string {
  return f === "local" ? "each budget falls back to this process's share of it (shared_state_fallback=local)" : "shaped requests wait for it (shared_state_fallback=closed)";
}

let current: FleetConnection | null = null;

/** Opens the process's fleet connection (replacing none: one per process). */
export function openFleetConnection(config: FleetConfig, log: Logger): FleetConnection {
  if (current && current.state !== "closed") throw new Error(`this process is already in fleet ${current.config.fleet} at ${current.target.display}`);
  current = new FleetConnection(config, log);
  return current;
}

/** The process's fleet connection, or null when shared_state is not set. */
export function fleetConnection(): FleetConnection | null {
  return current && current.state !== "closed" ? current : null;
}

export async function closeFleetConnection(): Promise<void> {
  const c = current;
  current = null;
  await c?.close();
}
