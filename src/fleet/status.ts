/**
 * `sluice fleet status`: the live processes of a fleet, read from their heartbeat records
 * (fleet/heartbeat.ts), as a table or JSON. A short-lived Redis connection of its own: a status
 * query that cannot reach Redis fails in one line instead of retrying forever.
 */
import { parseRedisUrl, redisClass } from "./connection.js";
import { checkFleetName } from "./options.js";
import { INSTANCES_PREFIX, LIVE_INDEX, type InstanceRecord } from "./heartbeat.js";

export interface FleetStatus {
  url: string;
  fleet: string;
  instances: InstanceRecord[];
}

export async function readFleetStatus(url: string, fleet: string): Promise<FleetStatus> {
  const target = parseRedisUrl(url);
  checkFleetName(fleet);
  const prefix = `sluice:{${fleet}}:`;
  const redis = new (redisClass())(url, { lazyConnect: true, connectTimeout: 3000, maxRetriesPerRequest: 0, retryStrategy: () => null, enableOfflineQueue: false });
  redis.on("error", () => undefined);
  try {
    try {
      await redis.connect();
    } catch (err) {
      throw new Error(`cannot reach the shared state at ${target.display}: ${(err as Error).message}; is redis-server running there?`);
    }
    // The index lists every instance whose heartbeat has not expired (an entry of a process that
    // died lingers at most until its expiry; its record is gone with it, so it is skipped below).
    const names = await redis.zrange(prefix + LIVE_INDEX, 0, -1);
    const values = names.length ? await redis.mget(...names.map((n) => prefix + INSTANCES_PREFIX + n)) : [];
    const instances: InstanceRecord[] = [];
    for (const v of values) {
      if (!v) continue; // expired, or between the two reads
      try {
        instances.push(JSON.parse(v) as InstanceRecord);
      } catch {
        // Not a heartbeat sluice wrote: not a live sluice.
      }
    }
    instances.sort((a, b) => a.instance.localeCompare(b.instance));
    return { url: target.display, fleet, instances };
  } finally {
    redis.disconnect();
  }
}

/** The table `sluice fleet status` prints. */
export function fleetStatusText(s: FleetStatus, now = Date.now()): string {
  if (s.instances.length === 0) return `no live sluice processes in fleet ${s.fleet} at ${s.url} (a process shows up here within 2 s of starting with --set shared_state=${s.url}${s.fleet === "default" ? "" : ` --set fleet=${s.fleet}`})\n`;
  const rows = [["instance", "address", "mode", "req/s", "queued", "faults", "shapes", "seen"]];
  for (const i of s.instances) {
    const faults = i.faults.map((f) => `${f.id}${f.enabled ? "" : " (off)"}: ${f.rule}`).join("; ") || "-";
    const shapes = i.shapes.join("; ") || "-";
    rows.push([i.instance, i.address, i.mode, i.requestsPerSecond.toFixed(1), String(i.queueDepth), faults, shapes, `${Math.max(0, (now - i.updated) / 1000).toFixed(1)}s ago`]);
  }
  const widths = rows[0]!.map((_, c) => Math.max(...rows.map((r) => r[c]!.length)));
  const numeric = new Set([3, 4]);
  const lines = rows.map((r) => r.map((cell, c) => (c === r.length - 1 ? cell : numeric.has(c) ? cell.padStart(widths[c]!) : cell.padEnd(widths[c]!))).join("  ").trimEnd());
  return `fleet ${s.fleet} at ${s.url}: ${s.instances.length} live process${s.instances.length === 1 ? "" : "es"}\n${lines.join("\n")}\n`;
}
