/**
 * Flows as the browser sees them: a compact summary per list row (with sluice's own marks —
 * attempt, fault, shaping, intercept, mark, error) and the full detail of one flow. Bodies are
 * not inlined: the detail says how big each is and the page fetches it decoded from
 * `/api/flows/ID/request|response/content`, so a list of 100,000 flows never carries a body.
 */
import { X509Certificate } from "node:crypto";
import type { Connection, HTTPFlow, Message } from "../../core/flow.js";
import { awsInfoOf } from "../../aws/index.js";
import { attemptOf, faultOf, kindOf, throttleCodeOf, type FlowKind } from "../console/flow-row.js";
import type { ConnectionDetail, FlowDetail, FlowMarks, FlowSummary, MessageDetail } from "./protocol.js";
export type { ConnectionDetail, FlowDetail, FlowMarks, FlowSummary, MessageDetail } from "./protocol.js";

function contentType(m: Message | null): string {
  return m?.headers.get("content-type")?.split(";")[0]?.trim() ?? "";
}

export function marksOf(flow: HTTPFlow): FlowMarks {
  const marks: FlowMarks = {};
  const attempt = attemptOf(flow);
  if (attempt && (attempt.attempt > 1 || (attempt.max ?? 0) > 1)) {
    marks.attempt = attempt.attempt;
    marks.maxAttempts = attempt.max;
    if ((flow.metadata.retry as { inferred?: boolean } | undefined)?.inferred) marks.inferred = true;
  }
  const fault = faultOf(flow);
  if (fault?.action) marks.fault = fault.action;
  const throttle = throttleCodeOf(flow);
  if (throttle) marks.throttle = throttle;
  const shaping = flow.metadata.shaping as { waitMs?: number } | undefined;
  if (shaping && typeof shaping.waitMs === "number") marks.shapedMs = Math.round(shaping.waitMs);
  if (flow.intercepted) marks.intercepted = flow.metadata.intercepted_at === "response" ? "response" : "request";
  if (flow.marked) marks.marked = flow.marked;
  if (flow.error) marks.error = flow.error.msg;
  if (flow.isReplay) marks.replay = flow.isReplay;
  if (flow.websocket) marks.websocket = true;
  if (flow.comment) marks.comment = true;
  return marks;
}

export function summaryOf(flow: HTTPFlow): FlowSummary {
  const q = flow.request;
  const r = flow.response;
  return {
    id: flow.id,
    method: q.method,
    scheme: q.scheme,
    host: q.prettyHost + ((q.scheme === "https" && q.port === 443) || (q.scheme === "http" && q.port === 80) ? "" : `:${q.port}`),
    path: q.path,
    status: r ? r.statusCode : null,
    reason: r?.reason ?? "",
    type: contentType(r),
    size: r ? (r.streamed ? r.contentLength : (r.content?.length ?? r.contentLength)) : null,
    duration: flow.duration,
    time: flow.timestampCreated,
    kind: kindOf(flow),
    marks: marksOf(flow),
  };
}

function messageDetail(m: Message): MessageDetail {
  return {
    httpVersion: m.httpVersion,
    headers: [...m.headers],
    trailers: m.trailers ? [...m.trailers] : null,
    contentType: m.headers.get("content-type") ?? "",
    contentEncoding: m.headers.get("content-encoding") ?? null,
    contentLength: m.contentLength,
    kept: m.content !== null,
    streamed: m.streamed,
    complete: m.timestampEnd !== null,
    timestampStart: m.timestampStart,
    timestampEnd: m.timestampEnd,
  };
}

const address = (a: [string, number] | null) => (a ? (a[0].includes(":") ? `[${a[0]}]:${a[1]}` : `${a[0]}:${a[1]}`) : null);

function certificates(pems: string[]): ConnectionDetail["certificates"] {
  const out: ConnectionDetail["certificates"] = [];
  for (const pem of pems) {
    try {
      const c = new X509Certificate(pem);
      out.push({ subject: c.subject.replace(/\n/g, ", "), issuer: c.issuer.replace(/\n/g, ", "), validFrom: c.validFrom, validTo: c.validTo, altNames: c.subjectAltName ?? null, fingerprint256: c.fingerprint256 });
    } catch (err) {
      out.push({ subject: `unreadable certificate: ${(err as Error).message}`, issuer: "", validFrom: "", validTo: "", altNames: null, fingerprint256: "" });
    }
  }
  return out;
}

function connectionDetail(c: Connection, server: boolean): ConnectionDetail {
  const s = c as Connection & { address?: [string, number] | null; via?: string | null; timestampTcpSetup?: number | null };
  return {
    address: server ? address(s.address ?? null) : address(c.peername),
    peer: address(c.peername),
    local: address(c.sockname),
    tls: c.tls,
    tlsVersion: c.tlsVersion,
    sni: c.sni,
    alpn: c.alpn,
    alpnOffers: c.alpnOffers,
    cipher: c.cipher,
    via: s.via ?? null,
    error: c.error,
    // The client side lists sluice's own leaf: only the server's chain is news to the user.
    certificates: server ? certificates(c.certificateList) : [],
    timestampStart: c.timestampStart,
    timestampTlsSetup: c.timestampTlsSetup,
    timestampTcpSetup: s.timestampTcpSetup ?? null,
    timestampEnd: c.timestampEnd,
  };
}

/** WebSocket messages shown at most (the newest); a long-lived socket can carry millions. */
const MAX_WS_MESSAGES = 2000;

export function detailOf(flow: HTTPFlow): FlowDetail {
  const q = flow.request;
  const r = flow.response;
  const info = awsInfoOf(flow);
  const ws = flow.websocket;
  const plain = (v: unknown) => (v && typeof v === "object" ? (JSON.parse(JSON.stringify(v)) as Record<string, unknown>) : null);
  return {
    summary: summaryOf(flow),
    request: { ...messageDetail(q), method: q.method, url: q.url, prettyUrl: q.prettyUrl, authority: q.authority },
    response: r ? { ...messageDetail(r), statusCode: r.statusCode, reason: r.reason } : null,
    error: flow.error ? { ...flow.error } : null,
    client: connectionDetail(flow.clientConn, false),
    server: connectionDetail(flow.serverConn, true),
    websocket: ws
      ? {
          messages: ws.messages.slice(-MAX_WS_MESSAGES).map((m) => ({
            fromClient: m.fromClient,
            type: m.type === 1 ? ("text" as const) : ("binary" as const),
            text: m.type === 1 ? m.content.toString("utf8").slice(0, 64 * 1024) : m.content.subarray(0, 4096).toString("hex"),
            size: m.content.length,
            timestamp: m.timestamp,
            dropped: m.dropped,
            injected: m.injected,
          })),
          closeCode: ws.closeCode,
          closeReason: ws.closeReason,
          closedByClient: ws.closedByClient,
        }
      : null,
    comment: flow.comment,
    marked: flow.marked,
    aws: info
      ? { service: info.service, operation: info.operation ?? null, region: info.region ?? null, bucket: info.bucket ?? null, key: info.key ?? null, sdk: info.sdk ?? null, retryMode: info.retryMode ?? null, invocationId: info.invocationId ?? null }
      : null,
    retry: plain(flow.metadata.retry),
    fault: plain(flow.metadata.fault),
    shaping: plain(flow.metadata.shaping),
    intercepted: flow.intercepted,
    live: flow.live,
  };
}

/** The throttle code, re-exported for the Retries page. */
export { throttleCodeOf };
