/**
 * `--proxyauth SPEC` (mitmproxy's proxyauth): clients must prove who they are with HTTP Basic
 * credentials before anything is forwarded.
 *
 * - SPEC is `user:pass`, `any` (any user and password, but some must be sent), or `@FILE` (an
 *   Apache htpasswd file). mitmproxy's LDAP form is refused in one line.
 * - Regular and upstream mode: credentials in `Proxy-Authorization`, a missing or wrong one is
 *   answered `407` with `Proxy-Authenticate: Basic realm="sluice"` — on plain requests and on
 *   CONNECT. A CONNECT with good credentials authenticates its connection: the requests inside the
 *   tunnel need none (as in mitmproxy, and as clients expect: they send them only on CONNECT).
 * - socks5 mode: the SOCKS5 user name and password (RFC 1929) authenticate the connection.
 * - Reverse mode: sluice looks like the server, so `Authorization`, `401` and `WWW-Authenticate`.
 * - Good credentials are removed from the request (never forwarded, never saved); the flow keeps
 *   the user name in `metadata.proxyauth`. A refused request never reaches the server.
 *
 * sluice's own client replays (which go in through the listener) are let through, as in mitmproxy.
 * Also warns once at start when the proxy listens beyond this machine without proxyauth.
 */
import { createHash, createHmac, randomBytes, timingSafeEqual } from "node:crypto";
import { homedir } from "node:os";
import { ConfigureError, type Addon, type AddonContext, type Socks5AuthData } from "../core/addons.js";
import { Response, type ClientConnection, type HTTPFlow } from "../core/flow.js";
import { isLoopbackHost } from "../core/address-scope.js";
import { declareOptions, type TypedOptions } from "../core/options.js";
import { Htpasswd } from "./htpasswd.js";
import { BLOCK_OPTIONS } from "./block.js";
import { dropReplayMarker, isOwnReplay } from "./client-replay.js";

const REALM = "sluice";
const PROXYAUTH_HELP =
  'Require proxy authentication: "user:pass", "any" (any user and password), or "@path" to an Apache htpasswd file (bcrypt, apr1 MD5 or SHA-1 hashes)';
/** The options this addon owns. */
export const PROXYAUTH_OPTIONS = declareOptions({
  proxyauth: { type: "optional-string", default: null, help: PROXYAUTH_HELP },
});
/** Verified credentials remembered (as keyed digests) so a bcrypt hash is not recomputed per request. */
const VERIFIED_CACHE_SIZE = 1024;

type Check = (user: string, password: string) => boolean | Promise<boolean>;

export class ProxyAuth implements Addon {
  name = "proxyauth";
  private ctx!: AddonContext;
  private opts!: TypedOptions<typeof PROXYAUTH_OPTIONS>;
  private check: Check | null = null;
  /** Connections authenticated by a CONNECT: their tunnels' requests carry no credentials. */
  private readonly authenticated = new WeakMap<ClientConnection, string>();
  private verified = new Set<string>();
  private readonly cacheKey = randomBytes(32);

  load(ctx: AddonContext): void {
    this.ctx = ctx;
    this.opts = ctx.options.register(PROXYAUTH_OPTIONS);
  }

  configure(updated: Set<string>): void {
    if (!updated.has("proxyauth")) return;
    this.check = validatorFor(this.opts.proxyauth);
    this.verified = new Set();
  }

  running(): void {
    if (this.check) return;
    // Every proxy listener (several --mode listeners may bind different addresses).
    const exposed = this.ctx.ownListeners.list().filter((l) => l.kind === "proxy" && !isLoopbackHost(l.address));
    if (exposed.length === 0) return;
    const where = exposed.map((l) => (l.address.includes(":") ? `[${l.address}]:${l.port}` : `${l.address}:${l.port}`)).join(", ");
    const blocked = this.ctx.options.lookup(BLOCK_OPTIONS)?.block_global === true;
    this.ctx.log.warn(
      `sluice listens on ${where}, beyond this machine, without --proxyauth: anyone who can reach it can use it` +
        `${blocked ? " (clients from public addresses are refused by block_global; private networks are not)" : ""}; set --proxyauth user:pass or @htpasswd-file, or listen on 127.0.0.1`,
    );
  }

  /** socks5 mode: the SOCKS5 handshake's user name and password authenticate the connection. */
  socks5Auth(data: Socks5AuthData): void | Promise<void> {
    if (!this.check) return;
    return then(this.check(data.username, data.password), (ok) => {
      if (!ok) return;
      data.valid = true;
      this.authenticated.set(data.clientConn, data.username);
    });
  }

  httpConnect(flow: HTTPFlow): void | Promise<void> {
    if (!this.check) return;
    if (isOwnReplay(flow.request.headers)) {
      // sluice's own client replay (-C, replay.client) re-sends what was already let in.
      dropReplayMarker(flow.request.headers);
      this.authenticated.set(flow.clientConn, "");
      return;
    }
    return then(this.authenticate(flow, true), (user) => {
      if (user === null) {
        this.ctx.log.info(`proxyauth: client ${peer(flow)} CONNECT ${flow.request.authority}: ${refusal(flow, "proxy-authorization")}: answered 407`);
        flow.response = authRequired(true);
      } else {
        this.authenticated.set(flow.clientConn, user);
      }
    });
  }

  requestHeaders(flow: HTTPFlow): void | Promise<void> {
    if (!this.check) return;
    const tunnelUser = this.authenticated.get(flow.clientConn);
    if (tunnelUser !== undefined) {
      flow.metadata.proxyauth = [tunnelUser, ""];
      return;
    }
    // sluice's own client replay: its marker is removed (and the flow marked) by client_replay.
    if (isOwnReplay(flow.request.headers)) return;
    const proxy = isHttpProxy(flow);
    return then(this.authenticate(flow, proxy), (user) => {
      if (user === null) {
        this.ctx.log.debug(`proxyauth: client ${peer(flow)} ${flow.request.method} ${flow.request.prettyUrl}: ${refusal(flow, proxy ? "proxy-authorization" : "authorization")}: answered ${proxy ? 407 : 401}`);
        flow.request.headers.delete(proxy ? "proxy-authorization" : "authorization");
        flow.response = authRequired(proxy);
      }
    });
  }

  /** The user name when the flow's credentials are good (and then removes them from the request); else null. */
  private authenticate(flow: HTTPFlow, proxy: boolean): string | null | Promise<string | null> {
    const header = proxy ? "proxy-authorization" : "authorization";
    const credentials = parseBasic(flow.request.headers.get(header));
    if (!credentials) return null;
    const [user, password] = credentials;
    const accept = () => {
      flow.request.headers.delete(header);
      flow.metadata.proxyauth = [user, ""];
      return user;
    };
    // The user's length first: no split of one string into user and password can match another's.
    const key = createHmac("sha256", this.cacheKey).update(`${Buffer.byteLength(user)}:${user}`).update(password).digest("base64");
    if (this.verified.has(key)) return accept();
    return then(this.check!(user, password), (ok) => {
      if (!ok) return null;
      if (this.verified.size >= VERIFIED_CACHE_SIZE) this.verified.clear();
      this.verified.add(key);
      return accept();
    });
  }
}

/** The validator for a proxyauth spec; throws (so the option is refused) on a bad one. */
export function validatorFor(spec: string | null): Check | null {
  if (spec === null || spec === "") return null;
  if (spec === "any") return () => true;
  if (spec.startsWith("@")) {
    const path = spec.slice(1).replace(/^~(?=$|\/)/, homedir());
    let file: Htpasswd;
    try {
      file = Htpasswd.fromFile(path);
    } catch (err) {
      throw new ConfigureError("proxyauth", err);
    }
    if (file.size === 0) throw new ConfigureError("proxyauth", `htpasswd file ${path} has no users; add one with htpasswd -B ${path} USER`);
    return (user, password) => file.check(user, password);
  }
  if (/^ldaps?:/.test(spec)) throw new ConfigureError("proxyauth", "LDAP authentication is not supported by sluice; use user:pass, any, or @path/to/htpasswd");
  const colon = spec.indexOf(":");
  if (colon <= 0) throw new ConfigureError("proxyauth", 'expected "user:pass", "any" or "@path/to/htpasswd"');
  const wantUser = digest(spec.slice(0, colon));
  const wantPassword = digest(spec.slice(colon + 1));
  // Both compared in full and in constant time: no early exit tells a user name from a password miss.
  return (user, password) => {
    const userOk = timingSafeEqual(digest(user), wantUser);
    const passwordOk = timingSafeEqual(digest(password), wantPassword);
    return userOk && passwordOk;
  };
}

function digest(s: string): Buffer {
  return createHash("sha256").update(s, "utf8").digest();
}

/** `Basic base64(user:pass)` → [user, pass]; null when absent or not Basic. The password may contain ':' (RFC 7617). */
export function parseBasic(value: string | undefined | null): [string, string] | null {
  if (!value) return null;
  const m = /^\s*basic\s+([A-Za-z0-9+/=_-]+)\s*$/i.exec(value);
  if (!m) return null;
  const decoded = Buffer.from(m[1]!, "base64").toString("utf8");
  const colon = decoded.indexOf(":");
  if (colon < 0) return null;
  return [decoded.slice(0, colon), decoded.slice(colon + 1)];
}

/** Regular and upstream mode authenticate as a proxy (407); reverse (and any other) as the server (401). */
function isHttpProxy(flow: HTTPFlow): boolean {
  const kind = flow.clientConn.proxyMode.split(/[:@]/, 1)[0];
  return kind === "regular" || kind === "upstream";
}

function authRequired(proxy: boolean): Response {
  const status = proxy ? 407 : 401;
  const r = Response.make(status, "", { [proxy ? "Proxy-Authenticate" : "WWW-Authenticate"]: `Basic realm="${REALM}"`, "Content-Type": "text/html" });
  const title = `${status} ${r.reason}`;
  r.content = Buffer.from(`<html><head><title>${title}</title></head><body><h1>${title}</h1></body></html>`);
  r.headers.set("content-length", String(r.content.length));
  return r;
}

function refusal(flow: HTTPFlow, header: string): string {
  const value = flow.request.headers.get(header);
  if (!value) return `no credentials (${header === "authorization" ? "Authorization" : "Proxy-Authorization"})`;
  return parseBasic(value) ? "wrong user or password" : "credentials that are not Basic user:pass";
}

function peer(flow: HTTPFlow): string {
  return flow.clientConn.peername?.join(":") ?? "?";
}

/** Applies `f` now when `v` is a value, after it settles when it is a promise: no promise turn on the fast path. */
function then<T, U>(v: T | Promise<T>, f: (t: T) => U): U | Promise<U> {
  return v instanceof Promise ? v.then(f) : f(v);
}
