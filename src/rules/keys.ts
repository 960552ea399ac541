/**
 * What a rate budget or a shaping queue counts against: one key per flow, of a kind the rule
 * names with `per=` (and shaping's `fair=`). Faults and shaping share these kinds and this one
 * reading of them; AWS kinds fall back to the host for traffic that is not AWS.
 */
import type { HTTPFlow } from "../core/flow.js";
import { awsInfoOf, keyPrefixOf } from "../aws/index.js";

export const KEY_KINDS = ["rule", "host", "client", "service", "operation", "bucket", "prefix"] as const;
export type KeyKind = (typeof KEY_KINDS)[number];

/** What each kind means, for help and explain(). */
export const KEY_KIND_HELP: Record<KeyKind, string> = {
  rule: "one budget for the whole rule",
  host: "per host:port the client asked for",
  client: "per client IP address",
  service: "per AWS service (host for other traffic)",
  operation: "per AWS service.operation (host for other traffic)",
  bucket: "per S3 bucket (host for other traffic)",
  prefix: "per S3 bucket/key prefix, as S3 partitions its limits (host for other traffic)",
};

export function isKeyKind(text: string): text is KeyKind {
  return (KEY_KINDS as readonly string[]).includes(text);
}

/** The key of `flow` under `kind`. */
export function keyOf(kind: KeyKind, flow: HTTPFlow): string {
  switch (kind) {
    case "rule":
      return "all";
    case "host":
      return hostOf(flow);
    case "client":
      return flow.clientConn.peername?.[0] ?? "unknown";
    case "service":
      return awsInfoOf(flow)?.service ?? hostOf(flow);
    case "operation": {
      const info = awsInfoOf(flow);
      if (info?.service && info.operation) return `${info.service}.${info.operation}`;
      return info?.service ?? hostOf(flow);
    }
    case "bucket":
      return awsInfoOf(flow)?.bucket ?? hostOf(flow);
    case "prefix": {
      const info = awsInfoOf(flow);
      return (info && keyPrefixOf(info)) ?? hostOf(flow);
    }
  }
}

/** host:port the client asked for, before any map-remote rewrote it. */
export function hostOf(flow: HTTPFlow): string {
  const mapped = flow.metadata.map_remote as { from?: unknown } | undefined;
  if (typeof mapped?.from === "string") {
    try {
      return new URL(mapped.from).host;
    } catch {
      // fall through to the request's own host
    }
  }
  return `${flow.request.prettyHost}:${flow.request.port}`;
}
