/**
 * mitmproxy's flow state: HTTPFlow ⇄ the dict that a flow file stores as one tnetstring record.
 *
 * Reading: any version mitmproxy ever wrote (0.11 … 21) is migrated step by step to version 21,
 * following mitmproxy's own `io/compat.py`, then turned into an HTTPFlow.
 *
 * Writing: version 17, with exactly the keys mitmproxy 8.1.1 writes. 8.1.1 (Debian bookworm)
 * refuses any version newer than 17 and rejects unexpected keys, while current mitmproxy migrates
 * 17 → 21 itself; version 17 is the newest format both can read.
 *
 * What sluice knows but version 17 has no field for (the proxy mode, streamed-body lengths, an
 * upstream spec that does not fit mitmproxy's (scheme, address) shape) travels in
 * `metadata._sluice`, so it round-trips through mitmproxy untouched.
 */
import { randomUUID } from "node:crypto";
import { Headers } from "../core/headers.js";
import {
  HTTPFlow,
  Request,
  Response,
  type Address,
  type ClientConnection,
  type ServerConnection,
  type WebSocketData,
} from "../core/flow.js";
import { TnetBytes, TnetFloat, type TnetDict, type TnetValue } from "./tnetstring.js";

/** The metadata key holding sluice-only fields. */
export const SLUICE_METADATA_KEY = "_sluice";

/** The version sluice writes: the newest that mitmproxy 8.1.1 reads; current mitmproxy migrates it. */
export const FLOW_FORMAT_WRITTEN = 17;
/** The newest version sluice reads (what mitmproxy 10 and later write). */
export const FLOW_FORMAT_CURRENT = 21;

export type FlowFormatErrorKind = "newer-version" | "unknown-version" | "unsupported-type" | "invalid";

/** A flow state sluice cannot turn into an HTTPFlow; `kind` says why. */
export class FlowFormatError extends Error {
  constructor(
    message: string,
    readonly kind: FlowFormatErrorKind,
    /** The flow type for "unsupported-type", the version for the version kinds. */
    readonly detail?: string,
  ) {
    super(message);
    this.name = "FlowFormatError";
  }
}

/** Cross-record state some old migrations need; use one per file, as mitmproxy does per process. */
export interface MigrationContext {
  clientConnections: Map<string, string>;
  serverConnections: Map<string, string>;
  websocketHandshakes: Map<string, TnetDict>;
}

export function newMigrationContext(): MigrationContext {
  return { clientConnections: new Map(), serverConnections: new Map(), websocketHandshakes: new Map() };
}

/** The state's format version as mitmproxy names it: 17, or "0.11" for the old tuple versions. */
export function stateVersion(state: TnetDict): number | string {
  const v = state.version;
  if (typeof v === "number" && Number.isInteger(v)) return v;
  if (typeof v === "bigint") return Number(v);
  if (Array.isArray(v) && v.length >= 2 && typeof v[0] === "number" && typeof v[1] === "number") return `${v[0]}.${v[1]}`;
  throw new FlowFormatError(`version: expected an integer or a version tuple, got ${v === undefined ? "nothing" : JSON.stringify(String(v))}`, "invalid");
}

/**
 * Migrates a flow state in place, step by step, from its version to `target` (default: 21), as
 * mitmproxy's `compat.migrate_flow` does. May return a different dict (old WebSocket flows are
 * merged into their handshake flow).
 */
export function migrateState(state: TnetDict, ctx: MigrationContext = newMigrationContext(), target: number = FLOW_FORMAT_CURRENT): TnetDict {
  let data: D = state;
  for (;;) {
    const version = stateVersion(data);
    if (version === target) return data;
    rejectNewerVersion(version);
    const step = MIGRATIONS.get(version);
    if (!step) throw new FlowFormatError(`cannot read flow format version ${version}`, "unknown-version", String(version));
    data = step(data, ctx);
  }
}

function rejectNewerVersion(version: number | string): void {
  if (typeof version === "number" && version > FLOW_FORMAT_CURRENT) {
    throw new FlowFormatError(`flow format version ${version} is newer than this sluice understands (up to ${FLOW_FORMAT_CURRENT}); update sluice to read it`, "newer-version", String(version));
  }
}

// The steps below mirror mitmproxy's io/compat.py one for one; keys and shapes are mitmproxy's.
type D = Record<string, any>;
type Step = (d: D, ctx: MigrationContext) => D;

function pop(d: D | null | undefined, key: string): TnetValue | undefined {
  if (!d) return undefined;
  const v = d[key];
  delete d[key];
  return v;
}

function convertUnicode(d: D): D {
  // Dict keys are already strings here (the decoder turns bytes keys into strings).
  const toStr = (v: unknown) => (Buffer.isBuffer(v) ? v.toString("utf8") : v);
  d.type = toStr(d.type);
  d.id = toStr(d.id);
  if (d.request && "first_line_format" in d.request) d.request.first_line_format = toStr(d.request.first_line_format);
  if (d.error && "msg" in d.error) d.error.msg = toStr(d.error.msg);
  return d;
}

function httpVersionBytes(v: unknown): Buffer {
  return Buffer.from("HTTP/" + (Array.isArray(v) ? v.join(".") : "1.1"), "latin1");
}

function eachServerConn(d: D, f: (conn: D) => void): void {
  f(d.server_conn);
  if (d.server_conn.via) f(d.server_conn.via);
}

function connectionKey(timestamp: unknown, address: unknown): string {
  return JSON.stringify([timestamp ?? null, ...(Array.isArray(address) ? address.map((x) => (Buffer.isBuffer(x) ? x.toString("latin1") : x)) : [])]);
}

const MIGRATIONS = new Map<number | string, Step>([
  ["0.11", (d) => ((d.version = [0, 12]), d)],
  ["0.12", (d) => ((d.version = [0, 13]), d)],
  [
    "0.13",
    (d) => {
      d.request.first_line_format = pop(d.request, "form_in");
      d.request.http_version = httpVersionBytes(pop(d.request, "httpversion"));
      d.response.http_version = httpVersionBytes(pop(d.response, "httpversion"));
      d.response.status_code = pop(d.response, "code");
      d.response.body = pop(d.response, "content");
      pop(d.server_conn, "state");
      d.server_conn.via = null;
      d.version = [0, 14];
      return d;
    },
  ],
  ["0.14", (d) => ((d.version = [0, 15]), d)],
  [
    "0.15",
    (d) => {
      for (const m of ["request", "response"]) if (d[m] && "body" in d[m]) d[m].content = pop(d[m], "body");
      if (d.response && "msg" in d.response) d.response.reason = pop(d.response, "msg");
      pop(d.request, "form_out");
      d.version = [0, 16];
      return d;
    },
  ],
  ["0.16", (d) => ((d.server_conn.peer_address = null), (d.version = [0, 17]), d)],
  [
    "0.17",
    (d) => {
      convertUnicode(d);
      d.server_conn.ip_address = pop(d.server_conn, "peer_address") ?? null;
      d.marked = false;
      d.version = [0, 18];
      return d;
    },
  ],
  [
    "0.18",
    (d) => {
      convertUnicode(d);
      pop(d.request, "stickyauth");
      pop(d.request, "stickycookie");
      Object.assign(d.client_conn, { sni: null, alpn_proto_negotiated: null, cipher_name: null, tls_version: null });
      eachServerConn(d, (c) => (c.alpn_proto_negotiated = null));
      d.mode = "regular";
      d.metadata = {};
      d.version = [0, 19];
      return d;
    },
  ],
  ["0.19", (d) => (convertUnicode(d), (d.version = [1, 0, 0]), d)],
  [
    "1.0",
    (d) => {
      d.version = [2, 0, 0];
      d.client_conn.address = d.client_conn.address.address;
      eachServerConn(d, (c) => {
        c.address = c.address.address;
        c.source_address = c.source_address.address;
        if (c.ip_address) c.ip_address = c.ip_address.address;
      });
      return d;
    },
  ],
  [
    "2.0",
    (d) => {
      d.version = [3, 0, 0];
      d.client_conn.mitmcert = null;
      eachServerConn(d, (c) => (c.tls_version = null));
      return d;
    },
  ],
  ["3.0", (d) => ((d.version = 4), d)],
  [
    4,
    (d, ctx) => {
      d.version = 5;
      const newId = (map: Map<string, string>, key: string) => {
        let id = map.get(key);
        if (!id) map.set(key, (id = randomUUID()));
        return id;
      };
      d.client_conn.id = newId(ctx.clientConnections, connectionKey(d.client_conn.timestamp_start, d.client_conn.address));
      eachServerConn(d, (c) => (c.id = newId(ctx.serverConnections, connectionKey(c.timestamp_start, c.source_address))));
      return d;
    },
  ],
  [
    5,
    (d) => {
      d.version = 6;
      for (const c of [d.client_conn, d.server_conn, d.server_conn.via]) {
        if (!c) continue;
        c.tls_established = pop(c, "ssl_established");
        c.timestamp_tls_setup = pop(c, "timestamp_ssl_setup");
      }
      return d;
    },
  ],
  [6, (d) => ((d.version = 7), (d.client_conn.tls_extensions = null), d)],
  [
    7,
    (d) => {
      d.version = 8;
      if (d.request) d.request.trailers = null;
      if (d.response) d.response.trailers = null;
      return d;
    },
  ],
  [
    8,
    (d) => {
      d.version = 9;
      let requestReplay = false;
      if (d.request) {
        pop(d.request, "first_line_format");
        d.request.authority = Buffer.alloc(0);
        requestReplay = pop(d.request, "is_replay") === true;
      }
      const responseReplay = d.response ? pop(d.response, "is_replay") === true : false;
      d.is_replay = requestReplay ? "request" : responseReplay ? "response" : null;
      return d;
    },
  ],
  [
    9,
    (d) => {
      d.version = 10;
      const conv = (c: D) => {
        c.state = 0;
        c.error = null;
        c.tls = c.tls_established;
        const alpn = c.alpn_proto_negotiated;
        c.alpn_offers = alpn ? [alpn] : null;
        const cipher = c.cipher_name;
        c.cipher_list = cipher ? [cipher] : null;
      };
      const client = d.client_conn;
      client.sockname = ["", 0];
      const cc = pop(client, "clientcert");
      client.certificate_list = cc ? [cc] : [];
      conv(client);
      eachServerConn(d, (c) => {
        const crt = pop(c, "cert");
        c.certificate_list = crt ? [crt] : [];
        c.cipher_name = null;
        c.via2 = null;
        conv(c);
      });
      return d;
    },
  ],
  [
    10,
    (d) => {
      d.version = 11;
      const conv = (c: D) => {
        if (Buffer.isBuffer(c.sni)) c.sni = c.sni.toString("latin1");
        c.alpn = pop(c, "alpn_proto_negotiated");
        c.alpn_offers = c.alpn_offers || [];
        c.cipher_list = c.cipher_list || [];
      };
      conv(d.client_conn);
      eachServerConn(d, conv);
      return d;
    },
  ],
  [11, migrateWebSocketFlows],
  [
    12,
    (d) => {
      d.version = 13;
      d.marked = d.marked ? ":default:" : "";
      return d;
    },
  ],
  [
    13,
    (d) => {
      d.version = 14;
      d.comment = "";
      // mitmproxy issue #4576: responses without a start time.
      if (d.response && (d.response.timestamp_start === null || d.response.timestamp_start === undefined)) {
        d.response.timestamp_start = d.request.timestamp_end;
        d.response.timestamp_end = d.request.timestamp_end + 1;
      }
      return d;
    },
  ],
  [
    14,
    (d) => {
      d.version = 15;
      if (d.websocket) d.websocket.messages = d.websocket.messages.map((m: TnetValue[]) => [...m, false]);
      return d;
    },
  ],
  [
    15,
    (d) => {
      d.version = 16;
      d.timestamp_created = (d.request ?? d.client_conn).timestamp_start;
      return d;
    },
  ],
  [16, (d) => ((d.version = 17), pop(d, "mode"), d)],
  [17, (d) => ((d.version = 18), (d.client_conn.proxy_mode = "regular"), d)],
  [
    18,
    (d) => {
      d.version = 19;
      const client = d.client_conn;
      const server = d.server_conn;
      client.peername = pop(client, "address") ?? null;
      if (client.timestamp_start === null || client.timestamp_start === undefined) client.timestamp_start = 0.0;
      pop(client, "tls_extensions");
      server.peername = pop(server, "ip_address") ?? null;
      server.sockname = pop(server, "source_address") ?? null;
      server.via = pop(server, "via2") ?? null;
      for (const c of [client, server]) {
        pop(c, "tls_established");
        c.cipher = pop(c, "cipher_name") ?? null;
        if (!("transport_protocol" in c)) c.transport_protocol = "tcp";
        for (const name of ["peername", "sockname", "address"]) {
          const a = c[name];
          if (Array.isArray(a) && Buffer.isBuffer(a[0])) a[0] = a[0].toString("utf8");
        }
      }
      if (server.sni === true) server.sni = server.address[0];
      return d;
    },
  ],
  [
    19,
    (d) => {
      d.version = 20;
      pop(d.client_conn, "state");
      pop(d.server_conn, "state");
      return d;
    },
  ],
  [
    20,
    (d) => {
      d.version = 21;
      for (const c of [d.client_conn, d.server_conn]) if (c.tls_version === "QUIC") c.tls_version = "QUICv1";
      return d;
    },
  ],
]);

/**
 * Version 11 → 12: WebSocket connections stopped being flows of their own and became the
 * `websocket` field of their handshake flow. The handshake flow comes first in the file; when its
 * WebSocket flow follows, the handshake is emitted again with the messages (mitmproxy marks it
 * "may appear duplicated").
 */
function migrateWebSocketFlows(d: D, ctx: MigrationContext): D {
  d.version = 12;
  const meta = d.metadata ?? {};
  if ("websocket" in meta) ctx.websocketHandshakes.set(String(d.id), d);
  if (!("websocket_handshake" in meta)) {
    d.websocket = null;
    return d;
  }
  const ws = d;
  const handshakeId = String(meta.websocket_handshake);
  let data = ctx.websocketHandshakes.get(handshakeId);
  ctx.websocketHandshakes.delete(handshakeId);
  if (!data) {
    // The handshake flow is missing; mitmproxy makes up a placeholder, and so do we.
    data = {
      client_conn: ws.client_conn,
      error: ws.error,
      id: ws.id,
      intercepted: ws.intercepted,
      is_replay: ws.is_replay,
      marked: ws.marked,
      metadata: {},
      mode: "transparent",
      request: {
        authority: Buffer.alloc(0),
        content: null,
        headers: [],
        host: Buffer.from("unknown"),
        http_version: Buffer.from("HTTP/1.1"),
        method: Buffer.from("GET"),
        path: Buffer.from("/"),
        port: 80,
        scheme: Buffer.from("http"),
        timestamp_end: 0,
        timestamp_start: 0,
        trailers: null,
      },
      response: null,
      server_conn: ws.server_conn,
      type: "http",
      version: 12,
    };
  }
  const h = data as D;
  h.metadata.duplicated = "This WebSocket flow has been migrated from an old file format version and may appear duplicated.";
  h.websocket = {
    messages: ws.messages,
    closed_by_client: text(ws.close_sender) === "client",
    close_code: ws.close_code,
    close_reason: ws.close_reason,
    timestamp_end: h.server_conn?.timestamp_end ?? null,
  };
  return h;
}

// ---------------------------------------------------------------------------------------------
// HTTPFlow → state (version 17)

/** The flow as mitmproxy 8.1.1 would store it (format version 17). */
export function flowToState(flow: HTTPFlow): TnetDict {
  const extra: TnetDict = {};
  const client = flow.clientConn;
  const server = flow.serverConn;
  if (client.proxyMode && client.proxyMode !== "regular") extra.proxy_mode = client.proxyMode;
  const via = server.via ? viaToState(server.via) : null;
  if (server.via && (!via || viaFromState(via) !== server.via)) extra.via = server.via;
  messageExtra(extra, "request", flow.request);
  // Rare: an HTTP/1 authority that is not the Host header (there was none) is kept here.
  const r = flow.request;
  if (r.authority && authorityIsHostHeader(r) && r.authority !== r.headers.get("host")) extra.request_authority = r.authority;
  if (flow.response) messageExtra(extra, "response", flow.response);

  const metadata = metadataToState(flow.metadata);
  if (Object.keys(extra).length > 0) metadata[SLUICE_METADATA_KEY] = extra;

  return {
    version: FLOW_FORMAT_WRITTEN,
    type: "http",
    id: flow.id,
    error: flow.error ? { msg: flow.error.msg, timestamp: new TnetFloat(flow.error.timestamp) } : null,
    client_conn: clientToState(client),
    server_conn: serverToState(server, via),
    intercepted: flow.intercepted,
    is_replay: flow.isReplay,
    marked: flow.marked,
    metadata,
    comment: flow.comment,
    timestamp_created: new TnetFloat(flow.timestampCreated),
    request: requestToState(flow.request),
    response: flow.response ? responseToState(flow.response) : null,
    websocket: flow.websocket ? websocketToState(flow.websocket) : null,
  };
}

function messageExtra(extra: TnetDict, side: "request" | "response", m: Request | Response): void {
  if (m.streamed) extra[`${side}_streamed`] = true;
  if (m.contentLength !== (m.content?.length ?? 0)) extra[`${side}_content_length`] = m.contentLength;
}

/**
 * The authority as mitmproxy records it: the request-target's authority for HTTP/1 CONNECT,
 * :authority for HTTP/2, and empty for every other HTTP/1 request (mitmproxy drops the
 * absolute-form authority of a proxied request), so `mitmdump -C` replays origin-form requests
 * that any server understands. The Host header still says where the request went.
 */
function recordedAuthority(r: Request): string {
  return authorityIsHostHeader(r) ? "" : r.authority;
}

/** HTTP/1 requests other than CONNECT: sluice's `authority` there is the Host header. */
function authorityIsHostHeader(r: Request): boolean {
  return r.httpVersion.startsWith("HTTP/1") && r.method !== "CONNECT";
}

function requestToState(r: Request): TnetDict {
  return {
    host: r.host,
    port: r.port,
    method: wire(r.method),
    scheme: wire(r.scheme),
    authority: wire(recordedAuthority(r)),
    path: wire(r.path),
    http_version: wire(r.httpVersion),
    headers: headersToState(r.headers),
    content: r.content,
    trailers: r.trailers ? headersToState(r.trailers) : null,
    timestamp_start: new TnetFloat(r.timestampStart),
    timestamp_end: float(r.timestampEnd),
  };
}

function responseToState(r: Response): TnetDict {
  return {
    http_version: wire(r.httpVersion),
    status_code: r.statusCode,
    reason: wire(r.reason),
    headers: headersToState(r.headers),
    content: r.content,
    trailers: r.trailers ? headersToState(r.trailers) : null,
    timestamp_start: new TnetFloat(r.timestampStart),
    timestamp_end: float(r.timestampEnd),
  };
}

function headersToState(h: Headers): TnetValue[] {
  const raw = h.raw;
  const out: TnetValue[] = new Array(raw.length >> 1);
  for (let i = 0; i < raw.length; i += 2) out[i >> 1] = [wire(raw[i]!), wire(raw[i + 1]!)];
  return out;
}

// Both connection dicts are written as full literals: object spread here costs ~15 µs per flow.

function clientToState(c: ClientConnection): TnetDict {
  // sluice keeps the certificate it presented to the client; mitmproxy calls that `mitmcert`.
  const mitmcert = c.certificateList[0];
  return {
    id: c.id,
    address: address(c.peername),
    sockname: address(c.sockname),
    alpn: c.alpn === null ? null : wire(c.alpn),
    alpn_offers: c.alpnOffers.map(wire),
    cipher_name: c.cipher,
    cipher_list: [],
    sni: c.sni,
    tls_version: c.tlsVersion,
    tls: c.tls,
    tls_established: c.timestampTlsSetup !== null,
    tls_extensions: [],
    certificate_list: [],
    mitmcert: mitmcert ? wire(mitmcert) : null,
    error: c.error,
    // A stored connection is never open; 0 is mitmproxy's ConnectionState.CLOSED.
    state: 0,
    timestamp_start: float(c.timestampStart),
    timestamp_end: float(c.timestampEnd),
    timestamp_tls_setup: float(c.timestampTlsSetup),
  };
}

function serverToState(c: ServerConnection, via: TnetValue[] | null): TnetDict {
  return {
    id: c.id,
    address: address(c.address),
    ip_address: address(c.peername),
    source_address: address(c.sockname),
    alpn: c.alpn === null ? null : wire(c.alpn),
    alpn_offers: c.alpnOffers.map(wire),
    cipher_name: c.cipher,
    cipher_list: [],
    sni: c.sni,
    tls_version: c.tlsVersion,
    tls: c.tls,
    tls_established: c.timestampTlsSetup !== null,
    certificate_list: c.certificateList.map(wire),
    error: c.error,
    state: 0,
    timestamp_start: float(c.timestampStart),
    timestamp_end: float(c.timestampEnd),
    timestamp_tcp_setup: float(c.timestampTcpSetup),
    timestamp_tls_setup: float(c.timestampTlsSetup),
    via: null,
    via2: via,
  };
}

function websocketToState(ws: WebSocketData): TnetDict {
  return {
    messages: ws.messages.map((m) => [m.type, m.fromClient, m.content, new TnetFloat(m.timestamp), m.dropped, m.injected]),
    closed_by_client: ws.closedByClient,
    close_code: ws.closeCode,
    close_reason: ws.closeReason,
    timestamp_end: float(ws.timestampEnd),
  };
}

/** mitmproxy's upstream proxy spec: (scheme, (host, port)). sluice keeps "upstream:URL" or "URL". */
function viaToState(spec: string): TnetValue[] | null {
  try {
    const u = new URL(spec.replace(/^upstream:/, ""));
    const scheme = u.protocol.slice(0, -1);
    const port = u.port ? Number(u.port) : scheme === "https" ? 443 : 80;
    return [scheme, [u.hostname.replace(/^\[|\]$/g, ""), port]];
  } catch {
    return null;
  }
}

function viaFromState(v: TnetValue): string | null {
  if (!Array.isArray(v) || v.length !== 2 || !Array.isArray(v[1])) return null;
  const [host, port] = v[1];
  const h = text(host);
  return `upstream:${text(v[0])}://${h.includes(":") ? `[${h}]` : h}:${Number(port)}`;
}

function address(a: Address | null): TnetValue {
  return a ? [a[0], a[1]] : null;
}

function float(n: number | null): TnetValue {
  return n === null ? null : new TnetFloat(n);
}

/**
 * Header names and values, methods, paths and reasons as wire bytes: Node gives them to us as
 * one-char-per-byte strings, so latin1 restores the exact bytes.
 */
function wire(s: string): TnetBytes {
  return new TnetBytes(s);
}

/** Metadata must be JSON-like for mitmproxy (it checks with json.dumps); bytes become {"$bytes": base64}. */
function metadataToState(meta: Record<string, unknown>): TnetDict {
  const out = jsonLike(meta, new Set());
  return isDict(out) ? out : {};
}

/** Objects become dicts (class instances too), Maps dicts, Sets lists; cycles are cut. */
function jsonLike(v: unknown, seen: Set<object>): TnetValue | undefined {
  if (v === null) return null;
  switch (typeof v) {
    case "string":
    case "boolean":
    case "bigint":
    case "number":
      return v;
    case "undefined":
    case "function":
    case "symbol":
      return undefined;
  }
  const o = v as object;
  if (Buffer.isBuffer(o) || o instanceof Uint8Array) return { $bytes: Buffer.from(o.buffer, o.byteOffset, o.byteLength).toString("base64") };
  if (seen.has(o)) return "[circular]";
  if (typeof (o as { toJSON?: unknown }).toJSON === "function") return jsonLike((o as { toJSON(): unknown }).toJSON(), seen);
  seen.add(o);
  try {
    if (Array.isArray(o)) return o.map((x) => jsonLike(x, seen) ?? null);
    if (o instanceof Map) return jsonLike(Object.fromEntries(o), seen);
    if (o instanceof Set) return jsonLike([...o], seen);
    const out: TnetDict = {};
    for (const [k, x] of Object.entries(o)) {
      const y = jsonLike(x, seen);
      if (y !== undefined) setKey(out, k, y);
    }
    return out;
  } finally {
    seen.delete(o);
  }
}

function setKey(d: Record<string, unknown>, key: string, value: unknown): void {
  if (key === "__proto__") Object.defineProperty(d, key, { value, enumerable: true, writable: true, configurable: true });
  else d[key] = value;
}

// ---------------------------------------------------------------------------------------------
// state (any version) → HTTPFlow

/**
 * Builds an HTTPFlow from a flow state of any known version. Throws FlowFormatError for newer
 * versions, non-HTTP flows (`kind: "unsupported-type"`) and states missing required fields.
 * Pass one MigrationContext per file: very old files pair flows across records.
 */
export function flowFromState(state: TnetDict, ctx: MigrationContext = newMigrationContext()): HTTPFlow {
  const s = migrateHttpState(state, ctx);

  const extra = dictOrEmpty(asDict(s.metadata ?? {}, "metadata")[SLUICE_METADATA_KEY]);
  const request = requestFromState(asDict(s.request, "request"), extra);
  const client = clientFromState(asDict(s.client_conn, "client_conn"), extra);
  const server = serverFromState(asDict(s.server_conn, "server_conn"), extra);
  const flow = new HTTPFlow(client, server, request, str(s.id, "id"));
  if (s.response !== null && s.response !== undefined) flow.response = responseFromState(asDict(s.response, "response"), extra, request);
  if (s.error !== null && s.error !== undefined) {
    const e = asDict(s.error, "error");
    flow.error = { msg: str(e.msg, "error.msg"), timestamp: num(e.timestamp, "error.timestamp") };
  }
  flow.intercepted = s.intercepted === true;
  flow.isReplay = s.is_replay === "request" || s.is_replay === "response" ? s.is_replay : null;
  flow.marked = typeof s.marked === "string" ? s.marked : s.marked === true ? ":default:" : "";
  flow.comment = typeof s.comment === "string" ? s.comment : "";
  flow.timestampCreated = numOr(s.timestamp_created, request.timestampStart);
  flow.metadata = metadataFromState(s.metadata);
  if (s.websocket !== null && s.websocket !== undefined) flow.websocket = websocketFromState(asDict(s.websocket, "websocket"));
  return flow;
}

function migrateHttpState(state: TnetDict, ctx: MigrationContext): TnetDict {
  const version = stateVersion(state);
  const type = text(state.type);
  // Versions up to 11 stored WebSocket connections as flows of their own type.
  if (type !== "http" && type !== "websocket") {
    rejectNewerVersion(version);
    throw new FlowFormatError(`a ${type || "typeless"} flow; sluice reads HTTP flows only`, "unsupported-type", type);
  }
  let s: TnetDict;
  try {
    s = migrateState(state, ctx);
  } catch (err) {
    if (err instanceof FlowFormatError) throw err;
    throw new FlowFormatError(`cannot migrate flow format version ${version}: ${(err as Error).message}`, "invalid", String(version));
  }
  const migratedType = text(s.type);
  if (migratedType !== "http") throw new FlowFormatError(`a ${migratedType} flow; sluice reads HTTP flows only`, "unsupported-type", migratedType);
  return s;
}

function requestFromState(r: TnetDict, extra: TnetDict): Request {
  const scheme = wireText(r.scheme, "request.scheme");
  const req = new Request({
    method: wireText(r.method, "request.method"),
    scheme: scheme === "https" ? "https" : "http",
    host: text(r.host),
    port: int(r.port, "request.port"),
    path: wireText(r.path, "request.path"),
    authority: r.authority === undefined || r.authority === null ? "" : wireText(r.authority, "request.authority"),
    httpVersion: wireText(r.http_version, "request.http_version"),
    headers: headersFromState(r.headers, "request.headers"),
    content: bytesOrNull(r.content, "request.content"),
    timestampStart: numOr(r.timestamp_start, 0),
  });
  req.timestampEnd = numOrNull(r.timestamp_end);
  req.trailers = r.trailers ? headersFromState(r.trailers, "request.trailers") : null;
  applyMessageExtra(req, "request", extra);
  // mitmproxy records no authority for HTTP/1; sluice's is the Host header (or what it kept).
  if (!req.authority && authorityIsHostHeader(req)) req.authority = typeof extra.request_authority === "string" ? extra.request_authority : (req.headers.get("host") ?? "");
  return req;
}

function responseFromState(r: TnetDict, extra: TnetDict, request: Request): Response {
  const resp = new Response({
    statusCode: int(r.status_code, "response.status_code"),
    reason: r.reason === null || r.reason === undefined ? "" : wireText(r.reason, "response.reason"),
    httpVersion: wireText(r.http_version, "response.http_version"),
    headers: headersFromState(r.headers, "response.headers"),
    content: bytesOrNull(r.content, "response.content"),
    timestampStart: numOr(r.timestamp_start, request.timestampEnd ?? request.timestampStart),
  });
  resp.timestampEnd = numOrNull(r.timestamp_end);
  resp.trailers = r.trailers ? headersFromState(r.trailers, "response.trailers") : null;
  applyMessageExtra(resp, "response", extra);
  return resp;
}

function applyMessageExtra(m: Request | Response, side: string, extra: TnetDict): void {
  if (extra[`${side}_streamed`] === true) m.streamed = true;
  const length = extra[`${side}_content_length`];
  if (typeof length === "number") m.contentLength = length;
}

function headersFromState(v: TnetValue | undefined, where: string): Headers {
  if (!Array.isArray(v)) throw invalid(where, "a list of [name, value] pairs", v);
  const raw: string[] = new Array(v.length * 2);
  for (let i = 0; i < v.length; i++) {
    const pair = v[i];
    if (!Array.isArray(pair) || pair.length !== 2) throw invalid(`${where}[${i}]`, "a [name, value] pair", pair);
    raw[2 * i] = wireText(pair[0], `${where}[${i}] name`);
    raw[2 * i + 1] = wireText(pair[1], `${where}[${i}] value`);
  }
  return new Headers(raw);
}

// Connections are built as complete literals rather than with newClientConnection() and friends:
// their object spread and fresh UUID cost more than decoding the whole record.

function clientFromState(c: TnetDict, extra: TnetDict): ClientConnection {
  return {
    id: typeof c.id === "string" ? c.id : randomUUID(),
    peername: addressFromState(c.peername),
    sockname: addressFromState(c.sockname),
    tls: c.tls === true,
    tlsVersion: textOrNull(c.tls_version),
    sni: textOrNull(c.sni),
    alpn: c.alpn === null || c.alpn === undefined ? null : wireText(c.alpn, "client_conn.alpn"),
    alpnOffers: wireList(c.alpn_offers, "client_conn.alpn_offers"),
    cipher: textOrNull(c.cipher),
    certificateList: c.mitmcert ? [text(c.mitmcert)] : [],
    timestampStart: numOrNull(c.timestamp_start),
    timestampTlsSetup: numOrNull(c.timestamp_tls_setup),
    timestampEnd: numOrNull(c.timestamp_end),
    error: textOrNull(c.error),
    proxyMode: typeof extra.proxy_mode === "string" ? extra.proxy_mode : textOrNull(c.proxy_mode) ?? "regular",
  };
}

function serverFromState(c: TnetDict, extra: TnetDict): ServerConnection {
  return {
    id: typeof c.id === "string" ? c.id : randomUUID(),
    peername: addressFromState(c.peername),
    sockname: addressFromState(c.sockname),
    tls: c.tls === true,
    tlsVersion: textOrNull(c.tls_version),
    sni: textOrNull(c.sni),
    alpn: c.alpn === null || c.alpn === undefined ? null : wireText(c.alpn, "server_conn.alpn"),
    alpnOffers: wireList(c.alpn_offers, "server_conn.alpn_offers"),
    cipher: textOrNull(c.cipher),
    certificateList: Array.isArray(c.certificate_list) ? c.certificate_list.map(text) : [],
    timestampStart: numOrNull(c.timestamp_start),
    timestampTlsSetup: numOrNull(c.timestamp_tls_setup),
    timestampEnd: numOrNull(c.timestamp_end),
    error: textOrNull(c.error),
    address: addressFromState(c.address),
    timestampTcpSetup: numOrNull(c.timestamp_tcp_setup),
    via: typeof extra.via === "string" ? extra.via : c.via ? viaFromState(c.via) : null,
  };
}

function wireList(v: TnetValue | undefined, where: string): string[] {
  return Array.isArray(v) ? v.map((x, i) => wireText(x, `${where}[${i}]`)) : [];
}

function websocketFromState(w: TnetDict): WebSocketData {
  const messages = Array.isArray(w.messages) ? w.messages : [];
  return {
    messages: messages.map((m, i) => {
      if (!Array.isArray(m) || m.length < 4) throw invalid(`websocket.messages[${i}]`, "[type, from_client, content, timestamp, dropped, injected]", m);
      const content = m[2];
      return {
        type: m[0] === 1 ? 1 : 2,
        fromClient: m[1] === true,
        content: Buffer.isBuffer(content) ? content : Buffer.from(text(content), "utf8"),
        timestamp: numOr(m[3], 0),
        dropped: m[4] === true,
        injected: m[5] === true,
      };
    }),
    closedByClient: typeof w.closed_by_client === "boolean" ? w.closed_by_client : null,
    closeCode: typeof w.close_code === "number" ? w.close_code : null,
    closeReason: textOrNull(w.close_reason),
    timestampEnd: numOrNull(w.timestamp_end),
  };
}

function metadataFromState(v: TnetValue | undefined): Record<string, unknown> {
  if (!isDict(v)) return {};
  const out: Record<string, unknown> = {};
  for (const [k, x] of Object.entries(v)) if (k !== SLUICE_METADATA_KEY) setKey(out, k, fromJsonLike(x));
  return out;
}

function fromJsonLike(v: TnetValue): unknown {
  if (Array.isArray(v)) return v.map(fromJsonLike);
  if (isDict(v)) {
    const keys = Object.keys(v);
    if (keys.length === 1 && keys[0] === "$bytes" && typeof v.$bytes === "string") return Buffer.from(v.$bytes, "base64");
    const out: Record<string, unknown> = {};
    for (const k of keys) setKey(out, k, fromJsonLike(v[k]!));
    return out;
  }
  return v;
}

function addressFromState(v: TnetValue | undefined): Address | null {
  if (!Array.isArray(v) || v.length < 2) return null;
  return [text(v[0]), Number(v[1])];
}

// ---------------------------------------------------------------------------------------------
// Field readers: lenient about str vs bytes (files from Python 2 era mitmproxy mix them), strict
// about what cannot be recovered.

function isDict(v: TnetValue | undefined): v is TnetDict {
  return v !== null && typeof v === "object" && !Array.isArray(v) && !Buffer.isBuffer(v) && !(v instanceof TnetFloat) && !(v instanceof TnetBytes);
}

function asDict(v: TnetValue | undefined, where: string): TnetDict {
  if (!isDict(v)) throw invalid(where, "a dict", v);
  return v;
}

function dictOrEmpty(v: TnetValue | undefined): TnetDict {
  return isDict(v) ? v : {};
}

function wireText(v: TnetValue | undefined, where: string): string {
  if (Buffer.isBuffer(v)) return v.toString("latin1");
  if (typeof v === "string") return v;
  throw invalid(where, "bytes", v);
}

function str(v: TnetValue | undefined, where: string): string {
  if (typeof v === "string") return v;
  if (Buffer.isBuffer(v)) return v.toString("utf8");
  throw invalid(where, "a string", v);
}

function text(v: TnetValue | undefined): string {
  if (typeof v === "string") return v;
  if (Buffer.isBuffer(v)) return v.toString("utf8");
  return v === null || v === undefined ? "" : String(v);
}

function textOrNull(v: TnetValue | undefined): string | null {
  return v === null || v === undefined ? null : text(v);
}

function bytesOrNull(v: TnetValue | undefined, where: string): Buffer | null {
  if (v === null || v === undefined) return null;
  if (Buffer.isBuffer(v)) return v;
  if (typeof v === "string") return Buffer.from(v, "utf8");
  throw invalid(where, "bytes or null", v);
}

function int(v: TnetValue | undefined, where: string): number {
  if (typeof v === "number" && Number.isInteger(v)) return v;
  throw invalid(where, "an integer", v);
}

function num(v: TnetValue | undefined, where: string): number {
  if (typeof v === "number") return v;
  throw invalid(where, "a number", v);
}

function numOr(v: TnetValue | undefined, fallback: number): number {
  return typeof v === "number" ? v : fallback;
}

function numOrNull(v: TnetValue | undefined): number | null {
  return typeof v === "number" ? v : null;
}

function invalid(where: string, expected: string, got: TnetValue | undefined): FlowFormatError {
  const kind = got === undefined ? "missing" : got === null ? "null" : Array.isArray(got) ? "a list" : Buffer.isBuffer(got) ? "bytes" : isDict(got) ? "a dict" : JSON.stringify(typeof got === "bigint" ? String(got) : got);
  return new FlowFormatError(`${where}: expected ${expected}, got ${kind}`, "invalid");
}
