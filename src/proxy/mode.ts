/** Proxy mode specs in mitmproxy's syntax: `regular`, `reverse:URL`, `upstream:URL`. */
export type ProxyMode =
  | { kind: "regular"; spec: string }
  | { kind: "reverse"; spec: string; scheme: "http" | "https"; host: string; port: number }
  | { kind: "upstream"; spec: string; scheme: "http" | "https"; host: string; port: number };

export class ModeError extends Error {}

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
  let url: URL;
  try {
    url = new URL(target.includes("://") ? target : `http://${target}`);
  } catch {
    throw new ModeError(`mode ${kind}: ${JSON.stringify(target)} is not a URL; expected e.g. ${kind}:http://host:port`);
  }
  if (url.protocol !== "http:" && url.protocol !== "https:") {
    throw new ModeError(`mode ${kind}: scheme ${url.protocol.replace(":", "")} is not supported; use http or https`);
  }
  const scheme = url.protocol === "https:" ? "https" : "http";
  const port = url.port ? Number(url.port) : scheme === "https" ? 443 : 80;
  return { kind, spec: s, scheme, host: url.hostname.replace(/^\[|\]$/g, ""), port };
}
