/**
 * Proxy mode specs in mitmproxy's syntax: `MODE[:DATA][@[HOST:]PORT]`, e.g. `regular`, `socks5`,
 * `reverse:https://example.com@9000`, `upstream:https://proxy:3128@127.0.0.1:8081`. Like
 * mitmproxy (mode_specs.py), the listen address is what follows the *last* `@`.
 */
interface ModeBase {
  /** The spec as the user wrote it; flows record it as their client connection's proxy mode. */
  spec: string;
  /** `@HOST:PORT`: where this mode listens, overriding listen_host. */
  listenHost: string | null;
  /** `@PORT`: overriding listen_port (and the mode's default port). */
  listenPort: number | null;
}

interface ServerSpec {
  scheme: "http" | "https";
  host: string;
  port: number;
}

export type ProxyMode =
  | (ModeBase & { kind: "regular" })
  | (ModeBase & { kind: "socks5" })
  | (ModeBase & ServerSpec & { kind: "reverse" })
  | (ModeBase & ServerSpec & { kind: "upstream" });

export type ModeKind = ProxyMode["kind"];

export class ModeError extends Error {}

/**
 * The scheme a server spec without one gets, as in mitmproxy's mode_specs.py: a reverse proxy
 * speaks https to its server, an upstream proxy is reached over http.
 */
export const DEFAULT_SCHEME = { reverse: "https", upstream: "http" } as const;

const USAGE = "use regular, socks5, reverse:https://host[:port] or upstream:http[s]://host:port, optionally followed by @PORT or @HOST:PORT";

export function parseMode(spec: string): ProxyMode {
  const s = spec.trim();
  const at = s.lastIndexOf("@");
  const head = at < 0 ? s : s.slice(0, at);
  const { listenHost, listenPort } = at < 0 ? { listenHost: null, listenPort: null } : parseListenAt(s, s.slice(at + 1));
  const colon = head.indexOf(":");
  const kind = (colon < 0 ? head : head.slice(0, colon)).toLowerCase();
  const data = colon < 0 ? "" : head.slice(colon + 1);
  const base: ModeBase = { spec: s, listenHost, listenPort };
  if (kind === "regular" || kind === "socks5") {
    if (data) throw new ModeError(`mode ${JSON.stringify(spec)}: ${kind} takes no argument (${USAGE})`);
    return { ...base, kind };
  }
  if (kind !== "reverse" && kind !== "upstream") throw new ModeError(`unknown mode ${JSON.stringify(spec)}: ${USAGE}`);
  if (!data) {
    throw new ModeError(`mode ${kind} needs a URL, e.g. ${kind}:${kind === "reverse" ? "https://example.com" : "http://127.0.0.1:3128"}`);
  }
  const explicit = /^([a-z][a-z0-9+.-]*):\/\//i.exec(data);
  let url: URL;
  try {
    url = new URL(explicit ? data : `${DEFAULT_SCHEME[kind]}://${data}`);
  } catch {
    const hint = listenHost !== null ? " (an @ in a mode starts its listen address: credentials go in --set upstream_auth=USER:PASS)" : "";
    throw new ModeError(`mode ${kind}: ${JSON.stringify(data)} is not a URL; expected e.g. ${kind}:http://host:port${hint}`);
  }
  if (url.protocol !== "http:" && url.protocol !== "https:") {
    throw new ModeError(`mode ${kind}: scheme ${url.protocol.replace(":", "")} is not supported; use http or https`);
  }
  if (url.username || url.password) {
    throw new ModeError(`mode ${kind}: put credentials in --set upstream_auth=USER:PASS, not in the URL`);
  }
  // mitmproxy refuses a path too: every request keeps its own path, so one here would be ignored.
  if ((url.pathname !== "/" && url.pathname !== "") || url.search || url.hash) {
    throw new ModeError(`mode ${kind}: ${JSON.stringify(data)} has a path; give only scheme://host[:port] (requests keep their own paths)`);
  }
  const scheme = url.protocol === "https:" ? "https" : "http";
  const port = url.port ? Number(url.port) : scheme === "https" ? 443 : 80;
  return { ...base, kind, scheme, host: url.hostname.replace(/^\[|\]$/g, ""), port };
}

function parseListenAt(spec: string, listenAt: string): { listenHost: string | null; listenPort: number } {
  const colon = listenAt.lastIndexOf(":");
  const host = colon < 0 ? null : listenAt.slice(0, colon).replace(/^\[|\]$/g, "");
  const portText = colon < 0 ? listenAt : listenAt.slice(colon + 1);
  const port = Number(portText);
  if (!/^\d+$/.test(portText) || port > 65535) {
    throw new ModeError(`mode ${JSON.stringify(spec)}: invalid listen port ${JSON.stringify(portText)} after @ (expected @PORT or @HOST:PORT, PORT 0–65535)`);
  }
  if (host === "") throw new ModeError(`mode ${JSON.stringify(spec)}: empty listen host before :${portText} (expected @PORT or @HOST:PORT)`);
  return { listenHost: host, listenPort: port };
}

/** mitmproxy's default listen ports: 1080 for SOCKS5, the listen_port option for the rest. */
export function defaultPort(mode: ProxyMode): number | null {
  return mode.kind === "socks5" ? 1080 : null;
}

/**
 * Where each mode listens: its own `@HOST:PORT`, else listen_host and — when the user set it —
 * listen_port, else the mode's default port. Two modes on one address is an error, as in mitmproxy.
 */
export function listenAddresses(modes: readonly ProxyMode[], listenHost: string, listenPort: number, listenPortSet: boolean): { mode: ProxyMode; host: string; port: number }[] {
  const out = modes.map((mode) => ({
    mode,
    host: mode.listenHost ?? listenHost,
    port: mode.listenPort ?? (listenPortSet ? listenPort : defaultPort(mode) ?? listenPort),
  }));
  const seen = new Map<string, ProxyMode>();
  for (const { mode, host, port } of out) {
    if (port === 0) continue; // each gets a free port of its own
    const key = `${host}|${port}`;
    const other = seen.get(key);
    if (other) {
      throw new ModeError(`modes ${JSON.stringify(other.spec)} and ${JSON.stringify(mode.spec)} would both listen on ${host.includes(":") ? `[${host}]` : host}:${port}: give one its own port with @PORT (e.g. --mode ${mode.spec.replace(/@.*$/, "")}@${port + 1})`);
    }
    seen.set(key, mode);
  }
  return out;
}

/** Parses every `--mode` value; at least one. */
export function parseModes(specs: readonly string[]): ProxyMode[] {
  if (!specs.length) throw new ModeError(`no proxy mode given: ${USAGE}`);
  return specs.map(parseMode);
}

/** The mode for the "listening" line: the spec as given, plus the server it resolved to when a scheme was filled in. */
export function describeMode(spec: string): string {
  const mode = parseMode(spec);
  if (mode.kind === "regular" || mode.kind === "socks5") return mode.spec;
  const host = mode.host.includes(":") ? `[${mode.host}]` : mode.host;
  const resolved = `${mode.scheme}://${host}:${mode.port}`;
  return mode.spec.slice(mode.kind.length + 1).includes("://") ? mode.spec : `${mode.spec} (${mode.kind} to ${resolved})`;
}
