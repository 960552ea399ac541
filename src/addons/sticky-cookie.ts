/**
 * `--set stickycookie=FILTER` (mitmproxy's stickycookie): keep the cookies servers set, per
 * (domain, port, path), and send them on matching requests to that domain — so a client that
 * does not keep cookies (curl, a script) stays logged in. Expired cookies leave the jar.
 */
import type { Addon, AddonContext } from "../core/addons.js";
import type { HTTPFlow } from "../core/flow.js";
import type { FlowPredicate } from "../core/filter.js";
import { compileOrThrow } from "./sticky-auth.js";
import { declareOptions, type TypedOptions } from "../core/options.js";

interface SetCookie {
  name: string;
  value: string;
  /** Attribute names lower-cased. */
  attrs: Map<string, string>;
}

/** The options this addon owns, declared once (names, types, defaults, help). */
export const STICKY_COOKIE_OPTIONS = declareOptions({
  stickycookie: { type: "optional-string", default: null, help: "Filter: matching requests get the cookies servers set earlier (a cookie jar in the proxy)" },
});

export class StickyCookie implements Addon {
  name = "stickycookie";
  private filter: FlowPredicate | null = null;
  /** "domain\0port\0path" → cookie name → value, in the order they were set. */
  private readonly jar = new Map<string, { domain: string; port: number; path: string; cookies: Map<string, string> }>();
  private ctx!: AddonContext;
  private opts!: TypedOptions<typeof STICKY_COOKIE_OPTIONS>;

  load(ctx: AddonContext): void {
    this.ctx = ctx;
    this.opts = ctx.options.register(STICKY_COOKIE_OPTIONS);
  }

  configure(updated: Set<string>): void {
    if (!updated.has("stickycookie")) return;
    const expr = this.opts.stickycookie;
    this.filter = expr ? compileOrThrow(this.ctx, expr, "stickycookie") : null;
  }

  response(flow: HTTPFlow): void {
    if (!this.filter || !flow.response) return;
    for (const header of flow.response.headers.getAll("set-cookie")) {
      const cookie = parseSetCookie(header);
      if (!cookie) continue;
      const domain = cookie.attrs.get("domain") ?? flow.request.host;
      const path = cookie.attrs.get("path") ?? "/";
      if (!domainMatch(flow.request.host, domain)) continue;
      const key = `${domain}\0${flow.request.port}\0${path}`;
      if (isExpired(cookie.attrs)) {
        const entry = this.jar.get(key);
        entry?.cookies.delete(cookie.name);
        if (entry && entry.cookies.size === 0) this.jar.delete(key);
      } else {
        let entry = this.jar.get(key);
        if (!entry) this.jar.set(key, (entry = { domain, port: flow.request.port, path, cookies: new Map() }));
        entry.cookies.set(cookie.name, cookie.value);
      }
    }
  }

  request(flow: HTTPFlow): void {
    if (!this.filter || !this.filter(flow)) return;
    const pairs: string[] = [];
    const req = flow.request;
    for (const entry of this.jar.values()) {
      if (domainMatch(req.host, entry.domain) && req.port === entry.port && req.path.startsWith(entry.path)) {
        for (const [name, value] of entry.cookies) pairs.push(`${name}=${value}`);
      }
    }
    if (pairs.length === 0) return;
    flow.metadata.stickycookie = true;
    req.headers.set("cookie", pairs.join("; "));
  }
}

function parseSetCookie(header: string): SetCookie | null {
  const [first, ...rest] = header.split(";");
  const eq = first!.indexOf("=");
  if (eq <= 0) return null;
  const attrs = new Map<string, string>();
  for (const part of rest) {
    const i = part.indexOf("=");
    const name = (i < 0 ? part : part.slice(0, i)).trim().toLowerCase();
    if (name) attrs.set(name, i < 0 ? "" : part.slice(i + 1).trim());
  }
  return { name: first!.slice(0, eq).trim(), value: first!.slice(eq + 1).trim(), attrs };
}

/** mitmproxy's is_expired: Expires in the past, or Max-Age of zero or less. */
function isExpired(attrs: Map<string, string>): boolean {
  const expires = attrs.get("expires");
  if (expires !== undefined) {
    const t = Date.parse(expires);
    if (!Number.isNaN(t) && t < Date.now()) return true;
  }
  const maxAge = attrs.get("max-age");
  return maxAge !== undefined && /^-?\d+$/.test(maxAge.trim()) && Number(maxAge) <= 0;
}

/** http.cookiejar's domain_match, also tried with B's leading dot stripped (mitmproxy's rule). */
function domainMatch(a: string, b: string): boolean {
  return cookiejarDomainMatch(a, b) || cookiejarDomainMatch(a, b.replace(/^\.+|\.+$/g, ""));
}

function cookiejarDomainMatch(a: string, b: string): boolean {
  a = a.toLowerCase();
  b = b.toLowerCase();
  if (a === b) return true;
  if (!isHostDomainName(a)) return false;
  const i = a.lastIndexOf(b);
  if (i <= 0) return false;
  if (!b.startsWith(".")) return false;
  return isHostDomainName(b.slice(1));
}

function isHostDomainName(text: string): boolean {
  if (/^\d+\.\d+\.\d+\.\d+$/.test(text) || text.includes(":")) return false;
  return text !== "" && !text.startsWith(".") && !text.endsWith(".");
}
