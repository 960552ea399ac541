/** Proxy mode specs in mitmproxy's syntax: `regular`, `reverse:URL`, `upstream:URL`. */
export type ProxyMode =
  | { kind: "regular"; spec: string }
  | { kind: "reverse"; spec: string; scheme: "http" | "https"; host: string; port: number }
  | { kind: "upstream"; spec: string; scheme: "http" | "https"; host: string; port: number };

export class ModeError extends Error {}

/**
 * The scheme a server spec without one gets, as in mitmproxy's mode_specs.py: a reverse proxy
 * speaks https to its server, an upstream proxy is reached over http.
 */
export const DEFAULT_SCHEME = { reverse: "https", upstream: "http" } as const;

export function parseMode(spec: string): ProxyMode {
  const s = spec.trim();
  if (s === "regular") return { kind: "regular", spec: s };
  const colon = s.indexOf(":");
  const kind = colon < 0 ? s : s.slice(0, colon);
  if (kind !== "reverse" && kind !== "upstream") {
    throw new ModeError(`unknown mode ${JSON.stringify(spec)}: use regular, reverse:https://host[:port] or upstream:http://host:port`);
  }
  if (colon < 0 || colon === s.length - 1) {
    throw new ModeError(`mode ${kind} needs a URL, e.g. ${kind}:${kind === "reverse" ? "https://example.com" : "http://127.0.0.1:3128"}`);
  }
  const target = s.slice(colon + 1);
  const explicit = /^([a-z][a-z0-9+.-]*):\/\//i.exec(target);
  let url: URL;
  try {
    url = new URL(explicit ? target : `${DEFAULT_SCHEME[kind]}://${target}`);
  } catch {
    throw new ModeError(`mode ${kind}: ${JSON.stringify(target)} is not a URL; expected e.g. ${kind}:http://host:port`);
  }
  if (url.protocol !== "http:" && url.protocol !== "https:") {
    throw new ModeError(`mode ${kind}: scheme ${url.protocol.replace(":", "")} is not supported; use http or https`);
  }
  if (url.username || url.password) {
    throw new ModeError(`mode ${kind}: put credentials in --set upstream_auth=USER:PASS, not in the URL`);
  }
  // mitmproxy refuses a path too: every request keeps its own path, so one here would be ignored.
  if ((url.pathname !== "/" && url.pathname !== "") || url.search || url.hash) {
    throw new ModeError(`mode ${kind}: ${JSON.stringify(target)} has a path; give only scheme://host[:port] (requests keep their own paths)`);
  }
  const scheme = url.protocol === "https:" ? "https" : "http";
  const port = url.port ? Number(url.port) : scheme === "https" ? 443 : 80;
  return { kind, spec: s, scheme, host: url.hostname.replace(/^\[|\]$/g, ""), port };
}

/** The mode for the "listening" line: the spec as given, plus the server it resolved to when a scheme was filled in. */
export function describeMode(spec: string): string {
  const mode = parseMode(spec);
  if (mode.kind === "regular") return mode.spec;
  const host = mode.host.includes(":") ? `[${mode.host}]` : mode.host;
  const resolved = `${mode.scheme}://${host}:${mode.port}`;
  return mode.spec.slice(mode.kind.length + 1).includes("://") ? mode.spec : `${mode.spec} (${mode.kind} to ${resolved})`;
}
