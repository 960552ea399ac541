/**
 * Checks at the edges of the proxy that keep it safe to leave running: no forwarding to sluice's
 * own listeners (a loop, or a way into a control surface), loops through other proxies recognised
 * by this instance's Via token.
 */
import dns from "node:dns";
import net from "node:net";
import type { OwnListener, OwnListeners } from "../core/own-listeners.js";
import type { ProxyContext } from "./context.js";

/** An upstream connection sluice refuses to open; `status` is what the client gets (403 or 508). */
export class RefusedTargetError extends Error {
  readonly code = "ESLUICE_REFUSED";
  constructor(
    message: string,
    readonly status: number,
  ) {
    super(message);
  }
}

/** The refusal for a connection to one of sluice's own listeners. */
export function ownTargetError(listener: OwnListener, host: string, port: number): RefusedTargetError {
  const where = net.isIPv6(host) ? `[${host}]:${port}` : `${host}:${port}`;
  if (listener.kind === "proxy") {
    return new RefusedTargetError(`loop detected: ${where} is this sluice's own proxy listener; the request would come straight back (check the client's URL, map-remote rules or the upstream mode)`, 508);
  }
  return new RefusedTargetError(`${where} is this sluice's own ${listener.kind} listener; sluice does not forward requests to its own control surfaces (call it directly, not through the proxy)`, 403);
}

/** The refusal for connecting to `host:port` when `host` is an IP address of one of sluice's own listeners. */
export function ownLiteralTarget(own: OwnListeners, host: string, port: number): RefusedTargetError | null {
  if (!net.isIP(host)) return null;
  const mine = own.match(host, port);
  return mine ? ownTargetError(mine, host, port) : null;
}

/**
 * A DNS lookup for `net.connect` (and clients that pass `lookup` on to it) that fails when a name
 * resolves to one of sluice's own listeners, so no name can smuggle a request in.
 */
export function ownCheckingLookup(own: OwnListeners, port: number): net.LookupFunction {
  return (hostname, options, callback) => {
    const fail = callback as (e: Error) => void;
    dns.lookup(hostname, { ...options, all: true }, (err, addresses) => {
      if (err) return fail(err);
      const list = addresses as dns.LookupAddress[];
      for (const a of list) {
        const mine = own.match(a.address, port);
        if (mine) return fail(ownTargetError(mine, `${hostname} (${a.address})`, port));
      }
      if ((options as dns.LookupAllOptions).all) (callback as unknown as (e: null, a: dns.LookupAddress[]) => void)(null, list);
      else if (list.length) callback(null, list[0]!.address, list[0]!.family);
      else fail(Object.assign(new Error(`getaddrinfo ENOTFOUND ${hostname}`), { code: "ENOTFOUND" }));
    });
  };
}

/** Opens a TCP connection unless `host:port` is (or resolves to) one of sluice's own listeners; checked before connecting. */
export function guardedTcpConnect(own: OwnListeners, host: string, port: number): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const refused = ownLiteralTarget(own, host, port);
    if (refused) return reject(refused);
    const s = net.connect({ host, port, noDelay: true, lookup: ownCheckingLookup(own, port) });
    s.once("connect", () => {
      s.removeListener("error", reject);
      resolve(s);
    });
    s.once("error", reject);
  });
}

/** The status a failed upstream connection answers the client with: 502 unless it was refused on purpose. */
export function statusForUpstreamError(err: unknown): number {
  const status = (err as { sluiceStatus?: unknown } | null)?.sluiceStatus;
  return typeof status === "number" ? status : 502;
}

/** Why a request that already went through this instance (its Via names us) is refused with 508; null when it did not. */
export function refuseLoopedRequest(ctx: ProxyContext, via: string | string[] | undefined): string | null {
  const value = Array.isArray(via) ? via.join(", ") : via;
  if (!ctx.ownListeners.seenIn(value)) return null;
  ctx.log.warn(`loop detected: a request came back carrying this sluice's Via token (${ctx.ownListeners.viaToken}); answering 508 (check the upstream mode and the proxies it chains through)`);
  return `loop detected: this request has already been through this sluice (Via: ${value}); check the upstream mode and the proxies it chains through`;
}
