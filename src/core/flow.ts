/**
 * The flow model: what one HTTP exchange is, independent of any socket.
 *
 * Field meanings and timestamps follow mitmproxy's (seconds since the epoch, as floats) so that
 * flow files round-trip with mitmproxy and its users find what they expect.
 */
import { randomUUID } from "node:crypto";
import { Headers } from "./headers.js";
import { decodeBody } from "./encoding.js";
import { installMitmproxyNames } from "./mitmproxy-names.js";

/** Seconds since the epoch with sub-millisecond precision. */
export function now(): number {
  return (performance.timeOrigin + performance.now()) / 1000;
}

export type Address = [host: string, port: number];

export interface Connection {
  id: string;
  peername: Address | null;
  sockname: Address | null;
  tls: boolean;
  /** "TLSv1.2", "TLSv1.3", … */
  tlsVersion: string | null;
  sni: string | null;
  alpn: string | null;
  alpnOffers: string[];
  cipher: string | null;
  /** PEM certificates: for the server side the chain it presented, for the client side ours. */
  certificateList: string[];
  timestampStart: number | null;
  timestampTlsSetup: number | null;
  timestampEnd: number | null;
  error: string | null;
}

export interface ClientConnection extends Connection {
  /** The proxy mode spec that accepted this client, e.g. "regular" or "reverse:https://a:443". */
  proxyMode: string;
}

export interface ServerConnection extends Connection {
  /** Where we meant to connect (host, port), before any upstream proxy. */
  address: Address | null;
  timestampTcpSetup: number | null;
  /** Upstream proxy spec this connection goes through, if any. */
  via: string | null;
}

/**
 * Ids for flows and connections: UUID-shaped like mitmproxy's, made of a random prefix drawn once
 * per process and a counter, so unique across runs and processes without drawing randomness (and
 * refilling the entropy pool) for every flow.
 */
const ID_PREFIX = randomUUID().slice(0, 24);
let idCounter = 0;

export function newId(): string {
  return ID_PREFIX + (idCounter++).toString(16).padStart(12, "0");
}

function baseConnection(): Connection {
  return {
    id: newId(),
    peername: null,
    sockname: null,
    tls: false,
    tlsVersion: null,
    sni: null,
    alpn: null,
    alpnOffers: [],
    cipher: null,
    certificateList: [],
    timestampStart: null,
    timestampTlsSetup: null,
    timestampEnd: null,
    error: null,
  };
}

// Built field by field (no spread) so every connection object has one hidden class: one is made
// per request on the hot path.
export function newClientConnection(proxyMode = "regular"): ClientConnection {
  const c = baseConnection() as ClientConnection;
  c.proxyMode = proxyMode;
  return c;
}

export function newServerConnection(): ServerConnection {
  const c = baseConnection() as ServerConnection;
  c.address = null;
  c.timestampTcpSetup = null;
  c.via = null;
  return c;
}

/** Shared by Request and Response: headers, body and its decoded view. */
export abstract class Message {
  httpVersion: string;
  headers: Headers;
  /**
   * The body as on the wire (still content-encoded), or null when it was not kept
   * (streamed because larger than `stream_large_bodies`, or not finished yet).
   */
  content: Buffer | null;
  /** Body bytes seen on the wire, kept or not. */
  contentLength = 0;
  /** True when the body streamed through without being kept on the flow. */
  streamed = false;
  /**
   * Bytes per second at which the proxy sends this body on (null: as fast as possible). Set it in
   * a hook (e.g. a bandwidth fault); the proxy paces its writes, whether the body is kept or streamed.
   */
  bandwidthLimit: number | null = null;
  trailers: Headers | null = null;
  timestampStart: number;
  timestampEnd: number | null = null;

  constructor(httpVersion: string, headers: Headers, content: Buffer | null, timestampStart: number) {
    this.httpVersion = httpVersion;
    this.headers = headers;
    this.content = content;
    if (content) this.contentLength = content.length;
    this.timestampStart = timestampStart;
  }

  /** Body with Content-Encoding undone (gzip, deflate, br, zstd where Node has it). */
  get decodedContent(): Buffer | null {
    if (!this.content) return this.content;
    const enc = this.headers.get("content-encoding");
    if (!enc || enc === "identity") return this.content;
    try {
      return decodeBody(this.content, enc);
    } catch {
      return this.content;
    }
  }

  /** Decoded body as UTF-8 text ("" when absent). */
  get text(): string {
    return this.decodedContent?.toString("utf8") ?? "";
  }

  /** Replace the body with `value` (unencoded) and fix Content-Length / Content-Encoding. */
  set text(value: string) {
    this.setContent(Buffer.from(value, "utf8"));
  }

  /** Replaces the body with raw (not content-encoded) bytes and fixes the framing headers. */
  setContent(body: Buffer): void {
    this.content = body;
    this.contentLength = body.length;
    this.streamed = false;
    this.headers.delete("content-encoding");
    if (this.headers.has("transfer-encoding")) this.headers.delete("transfer-encoding");
    this.headers.set("content-length", String(body.length));
  }
}

export class Request extends Message {
  method: string;
  scheme: "http" | "https";
  host: string;
  port: number;
  /** Origin-form path with query, e.g. "/bucket/key?x=1". */
  path: string;
  /** The Host header / :authority as sent by the client ("" if none). */
  authority: string;

  constructor(init: {
    method: string;
    scheme: "http" | "https";
    host: string;
    port: number;
    path: string;
    authority?: string;
    httpVersion?: string;
    headers?: Headers;
    content?: Buffer | null;
    timestampStart?: number;
  }) {
    super(init.httpVersion ?? "HTTP/1.1", init.headers ?? new Headers(), init.content ?? null, init.timestampStart ?? now());
    this.method = init.method;
    this.scheme = init.scheme;
    this.host = init.host;
    this.port = init.port;
    this.path = init.path;
    this.authority = init.authority ?? "";
  }

  /** Host as the user knows it: the Host header's name if any, else the connection host. */
  get prettyHost(): string {
    const h = this.authority || this.headers.get("host");
    if (h) return stripPort(h);
    return this.host;
  }

  /** Full URL from scheme, host, port and path (default ports omitted). */
  get url(): string {
    const defaultPort = this.scheme === "https" ? 443 : 80;
    const host = this.host.includes(":") ? `[${this.host}]` : this.host;
    return `${this.scheme}://${host}${this.port === defaultPort ? "" : ":" + this.port}${this.path}`;
  }

  /**
   * Like `url` but with the host and port the Host header (or :authority) names — what the client
   * asked for; a Host without a port means the scheme's default port, as in mitmproxy's pretty_url.
   */
  get prettyUrl(): string {
    const h = this.authority || this.headers.get("host");
    if (!h) return this.url;
    const defaultPort = this.scheme === "https" ? 443 : 80;
    const m = /^(?:\[([^\]]*)\]|([^:]*))(?::(\d+))?$/.exec(h);
    if (!m) return this.url;
    const name = m[1] ?? m[2]!;
    const port = m[3] ? Number(m[3]) : defaultPort;
    const host = name.includes(":") ? `[${name}]` : name;
    return `${this.scheme}://${host}${port === defaultPort ? "" : ":" + port}${this.path}`;
  }

  /** Sets scheme, host, port and path from an absolute URL; keeps the Host header in step. */
  set url(value: string) {
    const u = new URL(value);
    this.scheme = u.protocol === "https:" ? "https" : "http";
    this.host = u.hostname.replace(/^\[|\]$/g, "");
    this.port = u.port ? Number(u.port) : this.scheme === "https" ? 443 : 80;
    this.path = (u.pathname || "/") + u.search;
    this.authority = u.host;
    if (this.headers.has("host")) this.headers.set("host", u.host);
  }

  /** Path without the query string. */
  get pathname(): string {
    const q = this.path.indexOf("?");
    return q < 0 ? this.path : this.path.slice(0, q);
  }

  /** Parsed query string. */
  get query(): URLSearchParams {
    const q = this.path.indexOf("?");
    return new URLSearchParams(q < 0 ? "" : this.path.slice(q + 1));
  }

  /** A request made by a script or command, as mitmproxy's `Request.make(method, url, content, headers)`. */
  static make(method: string, url: string, content: string | Buffer = "", headers: HeaderInit = {}): Request {
    const u = new URL(url);
    const scheme = u.protocol === "https:" ? "https" : "http";
    const h = toHeaders(headers);
    if (!h.has("host")) h.add("host", u.host);
    const body = typeof content === "string" ? Buffer.from(content, "utf8") : content;
    if (body.length && !h.has("content-length")) h.set("content-length", String(body.length));
    const r = new Request({ method: method.toUpperCase(), scheme, host: u.hostname.replace(/^\[|\]$/g, ""), port: u.port ? Number(u.port) : scheme === "https" ? 443 : 80, path: (u.pathname || "/") + u.search, headers: h, content: body });
    r.timestampEnd = r.timestampStart;
    return r;
  }
}

/** Headers as a `Headers`, a `{name: value}` object or `[name, value]` pairs (mitmproxy's tuples). */
export type HeaderInit = Headers | Record<string, string> | [string, string][];

function toHeaders(init: HeaderInit): Headers {
  return init instanceof Headers ? init : new Headers(init);
}

export class Response extends Message {
  statusCode: number;
  reason: string;
  /**
   * Send the headers as they are but only this many body bytes, then close the connection: the
   * client sees an incomplete body (a truncate fault). Null sends the whole body.
   */
  truncateAt: number | null = null;

  constructor(init: {
    statusCode: number;
    reason?: string;
    httpVersion?: string;
    headers?: Headers;
    content?: Buffer | null;
    timestampStart?: number;
  }) {
    super(init.httpVersion ?? "HTTP/1.1", init.headers ?? new Headers(), init.content ?? null, init.timestampStart ?? now());
    this.statusCode = init.statusCode;
    this.reason = init.reason ?? "";
  }

  /** A complete response made by sluice itself (faults, replay, errors), framed by Content-Length. */
  static make(statusCode: number, body: string | Buffer = "", headers: HeaderInit = {}): Response {
    const h = toHeaders(headers);
    const content = typeof body === "string" ? Buffer.from(body, "utf8") : body;
    if (!h.has("content-length")) h.set("content-length", String(content.length));
    const t = now();
    const r = new Response({ statusCode, reason: reasonPhrase(statusCode), headers: h, content, timestampStart: t });
    r.timestampEnd = t;
    return r;
  }
}

export interface FlowError {
  msg: string;
  timestamp: number;
}

export interface WebSocketMessage {
  /** 1 text, 2 binary (mitmproxy's opcodes). */
  type: 1 | 2;
  fromClient: boolean;
  content: Buffer;
  timestamp: number;
  dropped: boolean;
  injected: boolean;
}

export interface WebSocketData {
  messages: WebSocketMessage[];
  closedByClient: boolean | null;
  closeCode: number | null;
  closeReason: string | null;
  timestampEnd: number | null;
}

export class HTTPFlow {
  readonly type = "http" as const;
  id: string;
  request: Request;
  response: Response | null = null;
  error: FlowError | null = null;
  clientConn: ClientConnection;
  serverConn: ServerConnection;
  /** mitmproxy semantics: "" unmarked, otherwise the marker (":default:" or an emoji name). */
  marked = "";
  comment = "";
  metadata: Record<string, unknown> = {};
  isReplay: "request" | "response" | null = null;
  websocket: WebSocketData | null = null;
  timestampCreated: number;
  /** True while the proxy is still working on this flow. */
  live = false;
  intercepted = false;
  private resumeWaiters: (() => void)[] = [];
  private goneWatchers: Set<() => void> | null = null;
  private gone = false;
  private killed = false;
  /** How a kill ends the client connection: a normal close, or a TCP reset (RST). */
  killMode: "close" | "reset" = "close";

  constructor(clientConn: ClientConnection, serverConn: ServerConnection, request: Request, id: string = newId()) {
    this.clientConn = clientConn;
    this.serverConn = serverConn;
    this.request = request;
    this.id = id;
    this.timestampCreated = request.timestampStart;
  }

  /**
   * Drop the connection instead of answering; takes effect at the next step of the flow.
   * `"reset"` ends it with a TCP RST (the client sees "connection reset by peer").
   */
  kill(mode: "close" | "reset" = "close"): void {
    this.killed = true;
    this.killMode = mode;
    if (!this.error) this.error = { msg: "Connection killed.", timestamp: now() };
    this.resume();
  }

  get isKilled(): boolean {
    return this.killed;
  }

  /** True once the client abandoned this exchange before it was answered. */
  get clientGone(): boolean {
    return this.gone;
  }

  /**
   * Calls `fn` once if the client abandons this exchange before its answer is complete: its
   * connection closes, or (HTTP/2) just its stream is reset. Addons that hold a flow (a delay, a
   * queue) use it to let go at once. Returns a function that stops watching.
   */
  onClientGone(fn: () => void): () => void {
    if (this.gone) {
      fn();
      return () => {};
    }
    (this.goneWatchers ??= new Set()).add(fn);
    return () => void this.goneWatchers?.delete(fn);
  }

  /** Called by the proxy when the client abandons the exchange. */
  markClientGone(): void {
    if (this.gone) return;
    this.gone = true;
    const watchers = this.goneWatchers;
    this.goneWatchers = null;
    if (watchers) for (const fn of watchers) fn();
  }

  /** Pause the flow at its current hook until `resume()` (or `kill()`). */
  intercept(): void {
    this.intercepted = true;
  }

  resume(): void {
    this.intercepted = false;
    const waiters = this.resumeWaiters;
    this.resumeWaiters = [];
    for (const w of waiters) w();
  }

  /** Resolves when the flow is no longer intercepted. */
  waitForResume(): Promise<void> {
    if (!this.intercepted) return Promise.resolve();
    return new Promise((resolve) => this.resumeWaiters.push(resolve));
  }

  /** Total duration from first request byte to last response byte (seconds), if finished. */
  get duration(): number | null {
    const end = this.response?.timestampEnd ?? this.error?.timestamp;
    return end == null ? null : end - this.request.timestampStart;
  }

  /** A detached copy (not live, not intercepted) with a new id, for duplicate and replay. */
  copy(): HTTPFlow {
    const req = this.request;
    const r = new Request({
      method: req.method,
      scheme: req.scheme,
      host: req.host,
      port: req.port,
      path: req.path,
      authority: req.authority,
      httpVersion: req.httpVersion,
      headers: req.headers.clone(),
      content: req.content,
      timestampStart: req.timestampStart,
    });
    r.timestampEnd = req.timestampEnd;
    r.contentLength = req.contentLength;
    r.streamed = req.streamed;
    const f = new HTTPFlow({ ...this.clientConn }, { ...this.serverConn }, r);
    if (this.response) {
      const s = this.response;
      const resp = new Response({ statusCode: s.statusCode, reason: s.reason, httpVersion: s.httpVersion, headers: s.headers.clone(), content: s.content, timestampStart: s.timestampStart });
      resp.timestampEnd = s.timestampEnd;
      resp.contentLength = s.contentLength;
      resp.streamed = s.streamed;
      f.response = resp;
    }
    f.error = this.error ? { ...this.error } : null;
    f.marked = this.marked;
    f.comment = this.comment;
    f.metadata = { ...this.metadata };
    f.isReplay = this.isReplay;
    f.timestampCreated = this.timestampCreated;
    return f;
  }
}

function stripPort(hostHeader: string): string {
  if (hostHeader.startsWith("[")) {
    const end = hostHeader.indexOf("]");
    return end > 0 ? hostHeader.slice(1, end) : hostHeader;
  }
  const colon = hostHeader.lastIndexOf(":");
  return colon > 0 && hostHeader.indexOf(":") === colon ? hostHeader.slice(0, colon) : hostHeader;
}

const REASONS: Record<number, string> = {
  100: "Continue", 101: "Switching Protocols", 200: "OK", 201: "Created", 202: "Accepted", 204: "No Content",
  206: "Partial Content", 301: "Moved Permanently", 302: "Found", 304: "Not Modified", 307: "Temporary Redirect",
  308: "Permanent Redirect", 400: "Bad Request", 401: "Unauthorized", 403: "Forbidden", 404: "Not Found",
  405: "Method Not Allowed", 407: "Proxy Authentication Required", 408: "Request Timeout", 409: "Conflict", 413: "Payload Too Large", 418: "I'm a teapot", 429: "Too Many Requests",
  500: "Internal Server Error", 501: "Not Implemented", 502: "Bad Gateway", 503: "Service Unavailable",
  504: "Gateway Timeout", 431: "Request Header Fields Too Large", 508: "Loop Detected",
};

export function reasonPhrase(status: number): string {
  return REASONS[status] ?? "";
}

installMitmproxyNames({ Message, Request, Response, HTTPFlow, Headers });
