/**
 * Who may use the web UI. It can change traffic and shows secrets (Authorization headers, SigV4
 * credentials), so every request and the WebSocket upgrade must carry the token printed at start,
 * name the UI's own address in Host (a DNS-rebinding page names its own host), and, when it comes
 * from a page, come from the UI's own origin.
 */
import { timingSafeEqual } from "node:crypto";
import { isIP } from "node:net";
import type { IncomingMessage } from "node:http";

export interface GuardConfig {
  token: string;
  port: number;
  /** The host the UI was told to listen on (web_host). */
  host: string;
}

/** Why a request is refused, or null when it may go on. */
export function refusal(req: IncomingMessage, cfg: GuardConfig, opts: { needOrigin: boolean }): { status: number; message: string } | null {
  const host = req.headers.host ?? "";
  if (!hostIsOurs(host, cfg)) return { status: 403, message: `refused: the web UI answers only requests for its own address (Host ${JSON.stringify(host)} is not 127.0.0.1:${cfg.port}, localhost:${cfg.port} or ${cfg.host}:${cfg.port})` };
  const origin = req.headers.origin;
  // A page of any other site (or a sandboxed "null" one) is refused, whatever else it sends.
  if (origin !== undefined && origin !== `http://${host}`) return { status: 403, message: `refused: cross-origin request from ${origin}` };
  if (opts.needOrigin && origin === undefined && req.headers["sec-fetch-site"] !== undefined) return { status: 403, message: "refused: a browser request that changes state must carry its Origin" };
  if (!tokenMatches(tokenOf(req), cfg.token)) return { status: 401, message: "refused: missing or wrong token; open the URL with ?token=… that sluice printed when it started" };
  return null;
}

function tokenOf(req: IncomingMessage): string {
  const url = new URL(req.url ?? "/", "http://x");
  const q = url.searchParams.get("token");
  if (q) return q;
  const auth = req.headers.authorization;
  if (auth?.startsWith("Bearer ")) return auth.slice(7).trim();
  return "";
}

export function tokenMatches(given: string, token: string): boolean {
  const a = Buffer.from(given);
  const b = Buffer.from(token);
  return a.length === b.length && timingSafeEqual(a, b);
}

/** Host header names this UI: an IP literal or localhost (or the configured host), on our port. */
export function hostIsOurs(hostHeader: string, cfg: Pick<GuardConfig, "port" | "host">): boolean {
  const m = /^(\[[^\]]+\]|[^:]+):(\d+)$/.exec(hostHeader.trim().toLowerCase());
  if (!m || Number(m[2]) !== cfg.port) return false;
  const name = m[1]!.replace(/^\[|\]$/g, "");
  // An IP literal cannot be rebound by DNS; a name can, so only localhost and the configured one pass.
  return isIP(name) !== 0 || name === "localhost" || name === cfg.host.toLowerCase();
}
