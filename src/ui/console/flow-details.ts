/**
 * The three tabs of the flow screen: Request, Response and Detail (connections, TLS, server
 * certificate, timing, and what sluice's addons recorded: fault, retry, shaping, AWS operation).
 */
import { X509Certificate } from "node:crypto";
import type { ClientConnection, Connection, HTTPFlow, Message, ServerConnection } from "../../core/flow.js";
import { awsInfoOf } from "../../aws/index.js";
import { formatBody } from "./body.js";
import { attemptOf, faultOf, throttleCodeOf } from "./flow-row.js";
import { plainLine, seg, type Line } from "./lines.js";

export const TABS = ["Request", "Response", "Detail"] as const;
export type Tab = (typeof TABS)[number];

export function tabLines(flow: HTTPFlow, tab: Tab): Line[] {
  if (tab === "Request") return requestLines(flow);
  if (tab === "Response") return responseLines(flow);
  return detailLines(flow);
}

function headerLines(message: Message): Line[] {
  const lines: Line[] = [];
  for (const [name, value] of message.headers) lines.push([seg(name + ": ", { bold: true, colour: "cyan" }), seg(value)]);
  return lines;
}

function bodyLines(message: Message): Line[] {
  const body = formatBody(message);
  const lines: Line[] = [[]];
  if (body.note) lines.push(plainLine(`[${body.note}]`, { dim: true }));
  for (const l of body.lines) lines.push(plainLine(l));
  return lines;
}

function requestLines(flow: HTTPFlow): Line[] {
  const r = flow.request;
  const lines: Line[] = [[seg(r.method, { bold: true }), seg(" " + r.prettyUrl + " "), seg(r.httpVersion, { dim: true })]];
  if (flow.intercepted && !flow.response) lines.push(plainLine("⏸ intercepted: e to edit, a to resume, x to kill", { colour: "yellow" }));
  lines.push(...headerLines(r), ...bodyLines(r));
  return lines;
}

function responseLines(flow: HTTPFlow): Line[] {
  const r = flow.response;
  if (!r) {
    if (flow.error) return [plainLine(`no response: ${flow.error.msg}`, { colour: "red" })];
    return [plainLine(flow.intercepted ? "no response yet: the request is intercepted (a resumes it)" : "waiting for the response…", { dim: true })];
  }
  const code = throttleCodeOf(flow);
  const lines: Line[] = [[seg(r.httpVersion + " ", { dim: true }), seg(`${r.statusCode} ${r.reason}`, { bold: true, colour: code ? "yellow" : r.statusCode >= 500 ? "red" : undefined })]];
  if (code) lines.push(plainLine(`throttled: ${code}`, { colour: "yellow" }));
  if (flow.intercepted) lines.push(plainLine("⏸ intercepted: e to edit, a to resume, x to kill", { colour: "yellow" }));
  if (flow.error) lines.push(plainLine(`error: ${flow.error.msg}`, { colour: "red" }));
  lines.push(...headerLines(r), ...bodyLines(r));
  return lines;
}

const addr = (a: [string, number] | null) => (a ? `${a[0]}:${a[1]}` : "-");

function field(name: string, value: string | null | undefined): Line {
  return [seg(("  " + name).padEnd(24), { dim: true }), seg(value || "-")];
}

function connectionLines(title: string, c: Connection, server: boolean, httpVersion: string | undefined): Line[] {
  const lines: Line[] = [plainLine(title, { bold: true })];
  if (server) {
    const s = c as ServerConnection;
    lines.push(field("address", addr(s.address)), field("peer", addr(s.peername)));
    if (s.via) lines.push(field("via", s.via));
  } else lines.push(field("address", addr(c.peername)), field("listening on", addr(c.sockname)), field("proxy mode", (c as ClientConnection).proxyMode));
  lines.push(field("HTTP version", httpVersion ?? null));
  if (c.tls) {
    lines.push(field("TLS version", c.tlsVersion), field("SNI", c.sni), field("cipher", c.cipher), field("ALPN", c.alpn));
    if (!server && c.alpnOffers.length) lines.push(field("ALPN offered", c.alpnOffers.join(", ")));
  } else lines.push(field("TLS", "no"));
  if (c.error) lines.push([seg("  error".padEnd(24), { dim: true }), seg(c.error, { colour: "red" })]);
  if (server && c.certificateList[0]) lines.push(...certificateLines(c.certificateList[0]));
  return lines;
}

function certificateLines(pem: string): Line[] {
  try {
    const cert = new X509Certificate(pem);
    return [
      plainLine("  server certificate", { bold: true }),
      field("  subject", cert.subject.replace(/\n/g, ", ")),
      field("  issuer", cert.issuer.replace(/\n/g, ", ")),
      field("  valid from", cert.validFrom),
      field("  valid to", cert.validTo),
      field("  alt names", cert.subjectAltName ?? null),
    ];
  } catch (err) {
    return [field("certificate", `unreadable: ${(err as Error).message}`)];
  }
}

function timingLines(flow: HTTPFlow): Line[] {
  const c = flow.clientConn, s = flow.serverConn, q = flow.request, r = flow.response;
  const events: [string, number | null][] = [
    ["client conn. established", c.timestampStart],
    ["client TLS established", c.tls ? c.timestampTlsSetup : null],
    ["first request byte", q.timestampStart],
    ["request complete", q.timestampEnd],
    ["server conn. initiated", s.timestampStart],
    ["server TCP handshake", s.timestampTcpSetup],
    ["server TLS handshake", s.tls ? s.timestampTlsSetup : null],
    ["first response byte", r?.timestampStart ?? null],
    ["response complete", r?.timestampEnd ?? null],
    ["client conn. closed", c.timestampEnd],
  ];
  const t0 = Math.min(...events.map(([, t]) => t ?? Infinity));
  const lines: Line[] = [plainLine("Timing", { bold: true })];
  for (const [name, t] of events) {
    if (t === null) continue;
    const iso = new Date(t * 1000).toISOString().replace("T", " ").slice(0, 23);
    lines.push([seg(("  " + name).padEnd(28), { dim: true }), seg(iso), seg(`  +${((t - t0) * 1000).toFixed(1)}ms`, { dim: true })]);
  }
  return lines;
}

function metadataLines(flow: HTTPFlow): Line[] {
  const lines: Line[] = [];
  const info = awsInfoOf(flow);
  if (info) {
    lines.push(plainLine("AWS", { bold: true }));
    lines.push(field("service", info.service), field("operation", info.operation), field("region", info.region));
    if (info.bucket) lines.push(field("bucket", info.bucket), field("key", info.key));
    if (info.sdk) lines.push(field("SDK", `${info.sdk}${info.retryMode ? ` (retry mode ${info.retryMode})` : ""}`));
    if (info.invocationId) lines.push(field("invocation id", info.invocationId));
  }
  const attempt = attemptOf(flow);
  if (attempt) {
    const retry = flow.metadata.retry as { backoffMs?: number; inferred?: boolean } | undefined;
    const extra = retry?.backoffMs != null ? `, back-off ${Math.round(retry.backoffMs)}ms` : "";
    lines.push([seg("  attempt".padEnd(24), { dim: true }), seg(`${attempt.attempt}/${attempt.max ?? "?"}${retry?.inferred ? " (inferred)" : ""}${extra}`, { colour: attempt.attempt > 1 ? "yellow" : undefined })]);
  }
  const fault = faultOf(flow);
  if (fault) lines.push([seg("  injected fault".padEnd(24), { dim: true }), seg(`${fault.action ?? "?"} (rule ${fault.rule ?? "?"})`, { colour: "magenta" })]);
  const shaping = flow.metadata.shaping as { rule?: string; key?: string; waitMs?: number } | undefined;
  if (shaping) lines.push(field("shaping", `rule ${shaping.rule ?? "?"}, key ${shaping.key ?? "-"}, queued ${Math.round(shaping.waitMs ?? 0)}ms`));
  if (flow.comment) lines.push(field("comment", flow.comment));
  if (flow.marked) lines.push(field("marked", flow.marked));
  if (flow.isReplay) lines.push(field("replay", flow.isReplay));
  if (flow.error) lines.push([seg("  error".padEnd(24), { dim: true }), seg(flow.error.msg, { colour: "red" })]);
  return lines.length ? [plainLine("Flow", { bold: true }), field("id", flow.id), ...lines] : [plainLine("Flow", { bold: true }), field("id", flow.id)];
}

function detailLines(flow: HTTPFlow): Line[] {
  // Timing and what addons recorded first: they fit an 80×24 screen; connections follow.
  return [
    ...timingLines(flow),
    [],
    ...metadataLines(flow),
    [],
    ...connectionLines("Client connection", flow.clientConn, false, flow.request.httpVersion),
    [],
    ...connectionLines("Server connection", flow.serverConn, true, flow.response?.httpVersion),
  ];
}
