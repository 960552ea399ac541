/**
 * The addresses sluice itself listens on — the proxy, the admin API, the metrics endpoint, the web
 * UI — so that the proxy can refuse to forward requests to them (a page or a client going through
 * the proxy must not reach a control surface, and a request to the proxy's own port is a loop).
 * Every listener registers its address here once it listens and unregisters when it closes.
 *
 * Also this instance's loop token: sent in `Via` towards an upstream proxy, and recognised when a
 * request comes back carrying it.
 */
import { randomBytes } from "node:crypto";
import { isIP } from "node:net";
import { networkInterfaces } from "node:os";

/** "proxy" for sluice's proxy listeners (a request to one is a loop); anything else is a control surface. */
export type ListenerKind = "proxy" | "admin" | "metrics" | "web" | (string & {});

export interface OwnListener {
  kind: ListenerKind;
  /** The address as bound: an IP, or 0.0.0.0 / :: for every address. */
  address: string;
  port: number;
}

export class OwnListeners {
  private readonly entries = new Set<OwnListener>();
  /** This process's Via pseudonym (RFC 9110 §7.6.3): `sluice-` and 8 hex digits. */
  readonly viaToken = `sluice-${randomBytes(4).toString("hex")}`;

  /** Records a listener; returns the function that removes it again. */
  register(kind: ListenerKind, address: { address: string; port: number }): () => void {
    const entry: OwnListener = { kind, address: normalizeIp(address.address), port: address.port };
    this.entries.add(entry);
    return () => void this.entries.delete(entry);
  }

  list(): OwnListener[] {
    return [...this.entries];
  }

  /** The own listener that a connection to `ip`:`port` would reach, or null. `ip` must be an IP address. */
  match(ip: string, port: number): OwnListener | null {
    let local: Set<string> | null = null;
    const target = normalizeIp(ip);
    for (const l of this.entries) {
      if (l.port !== port) continue;
      // Connecting to 0.0.0.0 or :: reaches this machine, so it reaches every listener on the port.
      if (isUnspecified(target) || l.address === target) return l;
      if (isUnspecified(l.address)) {
        if (isLoopback(target)) return l;
        local ??= localAddresses();
        if (local.has(target)) return l;
      }
    }
    return null;
  }

  /** Whether a `Via` header value names this instance: the request has been through this proxy already. */
  seenIn(via: string | undefined): boolean {
    return !!via && via.includes(this.viaToken);
  }

  /** The `Via` entry this instance adds when it forwards to another proxy. */
  viaEntry(): string {
    return `1.1 ${this.viaToken}`;
  }
}

/** An IP without IPv4-mapped IPv6 prefix, zone id or brackets, IPv6 lower-cased. */
export function normalizeIp(ip: string): string {
  let s = ip.replace(/^\[|\]$/g, "");
  const zone = s.indexOf("%");
  if (zone >= 0) s = s.slice(0, zone);
  s = s.toLowerCase();
  const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/.exec(s);
  return mapped ? mapped[1]! : s;
}

function isUnspecified(ip: string): boolean {
  return ip === "0.0.0.0" || ip === "::" || ip === "0:0:0:0:0:0:0:0";
}

export function isLoopback(ip: string): boolean {
  const s = normalizeIp(ip);
  if (isIP(s) === 4) return s.startsWith("127.");
  return s === "::1" || s === "0:0:0:0:0:0:0:1";
}

function localAddresses(): Set<string> {
  const out = new Set<string>();
  for (const list of Object.values(networkInterfaces())) for (const a of list ?? []) out.add(normalizeIp(a.address));
  return out;
}
