/**
 * HAR 1.2 (HTTP Archive) export and import.
 *
 * Bodies are stored decoded (the spec's `content.text`), as UTF-8 text when they are valid UTF-8
 * and as base64 otherwise. Timings come from the flow's timestamps: connect and ssl only on the
 * first flow of a server connection, -1 where unknown. Importing reverses all of that; a body whose
 * Content-Encoding sluice can apply is re-encoded so the flow again holds wire bytes.
 */
import { openSync } from "node:fs";
import { AppendFile } from "./append-file.js";
import { whyNotWritable } from "./write-errors.js";
import { Headers } from "../core/headers.js";
import { decodeBody, encodeBody } from "../core/encoding.js";
import { HTTPFlow, Request, Response, newClientConnection, newServerConnection, type ServerConnection } from "../core/flow.js";

export interface HarNameValue {
  name: string;
  value: string;
  comment?: string;
}

export interface HarCookie {
  name: string;
  value: string;
  path?: string;
  domain?: string;
  expires?: string;
  httpOnly?: boolean;
  secure?: boolean;
}

export interface HarPostData {
  mimeType: string;
  params: { name: string; value?: string }[];
  text: string;
  /** Not in HAR 1.2 (which has no binary request bodies): "base64" when `text` is base64. */
  _encoding?: "base64";
}

export interface HarContent {
  size: number;
  compression?: number;
  mimeType: string;
  text?: string;
  encoding?: "base64";
  comment?: string;
}

export interface HarRequest {
  method: string;
  url: string;
  httpVersion: string;
  cookies: HarCookie[];
  headers: HarNameValue[];
  queryString: HarNameValue[];
  postData?: HarPostData;
  headersSize: number;
  bodySize: number;
}

export interface HarResponse {
  status: number;
  statusText: string;
  httpVersion: string;
  cookies: HarCookie[];
  headers: HarNameValue[];
  content: HarContent;
  redirectURL: string;
  headersSize: number;
  bodySize: number;
  /** Why there is no response (status 0), as Chrome writes it. */
  _error?: string;
}

export interface HarTimings {
  blocked: number;
  dns: number;
  connect: number;
  ssl: number;
  send: number;
  wait: number;
  receive: number;
}

export interface HarEntry {
  startedDateTime: string;
  time: number;
  request: HarRequest;
  response: HarResponse;
  cache: Record<string, never>;
  timings: HarTimings;
  serverIPAddress?: string;
  connection?: string;
  comment?: string;
  /** sluice's extension: the flow's metadata (map-remote's record of what the client asked for, retries, …). */
  _metadata?: Record<string, unknown>;
}

export interface HarLog {
  log: {
    version: "1.2";
    creator: { name: string; version: string };
    pages: never[];
    entries: HarEntry[];
  };
}

export interface HarCreator {
  name: string;
  version: string;
}

const DEFAULT_CREATOR: HarCreator = { name: "sluice", version: "0.1.0" };

// ---------------------------------------------------------------------------------------------
// Export

/** A complete HAR document for `flows` (in memory; use HarWriter for many flows). */
export function flowsToHar(flows: Iterable<HTTPFlow>, creator: HarCreator = DEFAULT_CREATOR): HarLog {
  const exporter = new HarEntryExporter();
  const entries: HarEntry[] = [];
  for (const flow of flows) entries.push(exporter.entry(flow));
  return { log: { version: "1.2", creator: { ...creator }, pages: [], entries } };
}

/** Turns flows into HAR entries, remembering which server connections were already counted. */
export class HarEntryExporter {
  private readonly seenConnections = new Set<string>();

  entry(flow: HTTPFlow): HarEntry {
    const firstOnConnection = !this.seenConnections.has(flow.serverConn.id);
    this.seenConnections.add(flow.serverConn.id);
    const timings = harTimings(flow, firstOnConnection);
    const entry: HarEntry = {
      startedDateTime: new Date(flow.request.timestampStart * 1000).toISOString(),
      time: totalTime(timings),
      request: harRequest(flow.request),
      response: flow.response ? harResponse(flow.response) : noResponse(flow),
      cache: {},
      timings,
    };
    const ip = flow.serverConn.peername?.[0];
    if (ip) entry.serverIPAddress = ip;
    if (flow.serverConn.timestampStart !== null || flow.serverConn.peername) entry.connection = flow.serverConn.id;
    if (flow.comment) entry.comment = flow.comment;
    const metadata = jsonMetadata(flow.metadata);
    if (metadata) entry._metadata = metadata;
    return entry;
  }
}

/** Flow metadata as plain JSON (what JSON cannot hold, such as functions, is left out), or null when empty. */
function jsonMetadata(metadata: Record<string, unknown>): Record<string, unknown> | null {
  if (Object.keys(metadata).length === 0) return null;
  try {
    const json = JSON.parse(JSON.stringify(metadata)) as unknown;
    return json && typeof json === "object" && Object.keys(json).length > 0 ? (json as Record<string, unknown>) : null;
  } catch {
    return null;
  }
}

function harRequest(r: Request): HarRequest {
  const out: HarRequest = {
    method: r.method,
    url: r.prettyUrl,
    httpVersion: r.httpVersion,
    cookies: requestCookies(r.headers),
    headers: harHeaders(r.headers),
    queryString: [...r.query].map(([name, value]) => ({ name, value })),
    headersSize: headSize(r.httpVersion, `${r.method} ${r.path} ${r.httpVersion}`, r.headers),
    bodySize: r.content || r.streamed ? r.contentLength : 0,
  };
  const body = decodedBody(r);
  if (body && body.length > 0) {
    const mimeType = r.headers.get("content-type") ?? "";
    const { text, encoding } = bodyText(body);
    out.postData = { mimeType, params: encoding ? [] : formParams(mimeType, text), text };
    if (encoding) out.postData._encoding = encoding;
  }
  return out;
}

function harResponse(r: Response): HarResponse {
  const mimeType = r.headers.get("content-type") ?? "";
  const body = decodedBody(r);
  const content: HarContent = { size: body ? body.length : r.contentLength, mimeType };
  if (body) {
    const { text, encoding } = bodyText(body);
    content.text = text;
    if (encoding) content.encoding = encoding;
    if (r.content && r.content.length !== body.length) content.compression = body.length - r.content.length;
  } else if (r.contentLength > 0) {
    content.comment = "body not kept (streamed through sluice)";
  }
  return {
    status: r.statusCode,
    statusText: r.reason,
    httpVersion: r.httpVersion,
    cookies: responseCookies(r.headers),
    headers: harHeaders(r.headers),
    content,
    redirectURL: r.headers.get("location") ?? "",
    headersSize: headSize(r.httpVersion, `${r.httpVersion} ${r.statusCode} ${r.reason}`, r.headers),
    bodySize: r.content || r.streamed ? r.contentLength : 0,
  };
}

function noResponse(flow: HTTPFlow): HarResponse {
  return {
    status: 0,
    statusText: "",
    httpVersion: "",
    cookies: [],
    headers: [],
    content: { size: 0, mimeType: "" },
    redirectURL: "",
    headersSize: -1,
    bodySize: -1,
    _error: flow.error?.msg ?? "no response",
  };
}

/** HAR timings in milliseconds; see the module comment for which phases are counted. */
function harTimings(flow: HTTPFlow, firstOnConnection: boolean): HarTimings {
  const req = flow.request;
  const resp = flow.response;
  const server = flow.serverConn;
  const reqEnd = req.timestampEnd ?? req.timestampStart;
  let connect = -1;
  let ssl = -1;
  let connectAfterRequest = 0;
  if (firstOnConnection && server.timestampStart !== null && server.timestampTcpSetup !== null) {
    const connected = server.timestampTlsSetup ?? server.timestampTcpSetup;
    connect = ms(connected - server.timestampStart);
    if (server.timestampTlsSetup !== null) ssl = ms(server.timestampTlsSetup - server.timestampTcpSetup);
    // sluice connects upstream once the request is in, so that time sits between send and wait.
    connectAfterRequest = Math.max(0, connected - Math.max(server.timestampStart, reqEnd));
  }
  const send = ms(reqEnd - req.timestampStart);
  let wait = 0;
  let receive = 0;
  if (resp) {
    wait = ms(resp.timestampStart - reqEnd - connectAfterRequest);
    receive = ms((resp.timestampEnd ?? resp.timestampStart) - resp.timestampStart);
  }
  return { blocked: -1, dns: -1, connect, ssl, send, wait, receive };
}

/** The entry's total: every phase but ssl, which HAR counts inside connect. */
function totalTime(t: HarTimings): number {
  return round([t.blocked, t.dns, t.connect, t.send, t.wait, t.receive].reduce((sum, x) => (x > 0 ? sum + x : sum), 0));
}

function ms(seconds: number): number {
  return Math.max(0, round(seconds * 1000));
}

function round(n: number): number {
  return Math.round(n * 1000) / 1000;
}

function harHeaders(h: Headers): HarNameValue[] {
  const out: HarNameValue[] = [];
  for (const [name, value] of h) out.push({ name, value });
  return out;
}

/** Size of the HTTP/1 head as sent; HTTP/2 and later compress headers, so -1 (unknown). */
function headSize(httpVersion: string, firstLine: string, h: Headers): number {
  if (!httpVersion.startsWith("HTTP/1")) return -1;
  let n = firstLine.length + 4;
  for (const [name, value] of h) n += name.length + value.length + 4;
  return n;
}

function decodedBody(m: Request | Response): Buffer | null {
  const content = m.content;
  if (!content) return null;
  const enc = m.headers.get("content-encoding");
  if (!enc || enc === "identity") return content;
  try {
    return decodeBody(content, enc);
  } catch {
    return content;
  }
}

const UTF8 = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true });

function bodyText(body: Buffer): { text: string; encoding?: "base64" } {
  try {
    return { text: UTF8.decode(body) };
  } catch {
    return { text: body.toString("base64"), encoding: "base64" };
  }
}

function formParams(mimeType: string, text: string): { name: string; value: string }[] {
  if (!mimeType.toLowerCase().startsWith("application/x-www-form-urlencoded")) return [];
  return [...new URLSearchParams(text)].map(([name, value]) => ({ name, value }));
}

function requestCookies(h: Headers): HarCookie[] {
  const out: HarCookie[] = [];
  for (const header of h.getAll("cookie")) {
    for (const part of header.split(";")) {
      const eq = part.indexOf("=");
      if (eq <= 0) continue;
      out.push({ name: part.slice(0, eq).trim(), value: part.slice(eq + 1).trim() });
    }
  }
  return out;
}

function responseCookies(h: Headers): HarCookie[] {
  const out: HarCookie[] = [];
  for (const header of h.getAll("set-cookie")) {
    const [pair = "", ...attrs] = header.split(";");
    const eq = pair.indexOf("=");
    if (eq <= 0) continue;
    const cookie: HarCookie = { name: pair.slice(0, eq).trim(), value: pair.slice(eq + 1).trim() };
    for (const attr of attrs) {
      const [k = "", ...rest] = attr.split("=");
      const key = k.trim().toLowerCase();
      const value = rest.join("=").trim();
      if (key === "path") cookie.path = value;
      else if (key === "domain") cookie.domain = value;
      else if (key === "httponly") cookie.httpOnly = true;
      else if (key === "secure") cookie.secure = true;
      else if (key === "expires") {
        const t = Date.parse(value);
        if (!Number.isNaN(t)) cookie.expires = new Date(t).toISOString();
      }
    }
    out.push(cookie);
  }
  return out;
}

/**
 * Header names and values travel as ByteStrings (one char per byte), as in the Fetch standard
 * and browsers' own HAR files: exact both ways. Text from elsewhere with chars above U+00FF can
 * only be meant as UTF-8.
 */
function textToWire(s: string): string {
  return /[^\x00-\xff]/.test(s) ? Buffer.from(s, "utf8").toString("latin1") : s;
}

/**
 * Streams a HAR document to a file, one entry per line as flows are written, so exporting many
 * flows needs little memory. The closing `]}}` is written by close(): a capture cut short by a
 * crash lacks only that, and the reader recovers every complete entry from it.
 */
export class HarWriter {
  private readonly exporter = new HarEntryExporter();
  private entries = 0;
  private closed = false;
  private failure: Error | null = null;
  private readonly file: AppendFile;

  private constructor(
    fd: number,
    readonly path: string,
    syncIntervalMs: number,
  ) {
    this.file = new AppendFile(fd, syncIntervalMs, (err) => (this.failure ??= new Error(`${path}: writing the HAR file failed: ${err.message}`)));
  }

  static async open(path: string, options: { syncIntervalMs?: number; creator?: HarCreator } = {}): Promise<HarWriter> {
    let fd: number;
    try {
      fd = openSync(path, "w", 0o644);
    } catch (err) {
      throw new Error(`${path}: ${whyNotWritable(path, err)}`);
    }
    const writer = new HarWriter(fd, path, options.syncIntervalMs ?? 0);
    const header = JSON.stringify({ log: { version: "1.2", creator: options.creator ?? DEFAULT_CREATOR, pages: [], entries: [] } });
    // Everything up to the entries array, which stays open until close().
    writer.file.append([Buffer.from(header.slice(0, header.length - "]}}".length) + "\n")]);
    return writer;
  }

  get count(): number {
    return this.entries;
  }

  /** Bytes not yet accepted by the kernel. */
  get backlog(): number {
    return this.file.backlog;
  }

  write(flow: HTTPFlow): void {
    if (this.failure) throw this.failure;
    if (this.closed) throw new Error(`${this.path}: cannot write a flow: the HAR writer is closed`);
    this.file.append([Buffer.from((this.entries++ === 0 ? "" : ",\n") + JSON.stringify(this.exporter.entry(flow)))]);
  }

  async flush(): Promise<void> {
    await this.file.drained();
    if (this.failure) throw this.failure;
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.file.append([Buffer.from("\n]}}\n")]);
    await this.file.close();
    if (this.failure) throw this.failure;
  }
}

// ---------------------------------------------------------------------------------------------
// Import

/** Flows from a parsed HAR document. Throws an Error naming the entry when one is unusable. */
export function harToFlows(json: unknown): HTTPFlow[] {
  const log = (json as { log?: { entries?: unknown } } | null)?.log;
  if (!log || typeof log !== "object") throw new Error('no "log" object at the top level');
  if (!Array.isArray(log.entries)) throw new Error('"log.entries" is not a list');
  const connections = new Map<string, ServerConnection>();
  return log.entries.map((entry, i) => {
    try {
      return entryToFlow(entry as HarEntry, connections);
    } catch (err) {
      throw new Error(`log.entries[${i}]: ${(err as Error).message}`);
    }
  });
}

function entryToFlow(entry: HarEntry, connections: Map<string, ServerConnection>): HTTPFlow {
  if (!entry || typeof entry !== "object") throw new Error("not an object");
  const r = entry.request;
  if (!r || typeof r.url !== "string" || typeof r.method !== "string") throw new Error("request.method and request.url are required");
  let url: URL;
  try {
    url = new URL(r.url);
  } catch {
    throw new Error(`request.url ${JSON.stringify(r.url)} is not an absolute URL`);
  }
  const started = Date.parse(entry.startedDateTime);
  if (Number.isNaN(started)) throw new Error(`startedDateTime ${JSON.stringify(entry.startedDateTime)} is not a date`);
  const t = entry.timings ?? ({} as Partial<HarTimings>);
  const phase = (v: number | undefined) => (typeof v === "number" && v > 0 ? v / 1000 : 0);

  const scheme = url.protocol === "https:" ? "https" : "http";
  const host = url.hostname.replace(/^\[|\]$/g, "");
  const port = url.port ? Number(url.port) : scheme === "https" ? 443 : 80;
  const headers = headersFromHar(r.headers);
  const requestStart = started / 1000 + phase(t.blocked) + phase(t.dns);
  const request = new Request({
    method: r.method,
    scheme,
    host,
    port,
    path: (url.pathname || "/") + url.search,
    authority: headers.get("host") ?? url.host,
    httpVersion: httpVersion(r.httpVersion),
    headers,
    content: null,
    timestampStart: requestStart,
  });
  setBody(request, r.postData ? postDataBytes(r.postData) : Buffer.alloc(0), r.bodySize);
  request.timestampEnd = requestStart + phase(t.send);

  const { conn: server, connectSeconds } = serverConnection(entry, connections, url, request.timestampEnd, t);
  const client = newClientConnection();
  client.timestampStart = requestStart;
  const flow = new HTTPFlow(client, server, request);
  flow.timestampCreated = requestStart;
  if (typeof entry.comment === "string") flow.comment = entry.comment;
  if (entry._metadata && typeof entry._metadata === "object" && !Array.isArray(entry._metadata)) flow.metadata = { ...entry._metadata };

  const s = entry.response;
  if (s && typeof s.status === "number" && s.status > 0) {
    const responseStart = request.timestampEnd + connectSeconds + phase(t.wait);
    const response = new Response({
      statusCode: s.status,
      reason: textToWire(s.statusText ?? ""),
      httpVersion: httpVersion(s.httpVersion),
      headers: headersFromHar(s.headers),
      content: null,
      timestampStart: responseStart,
    });
    const c = s.content;
    const body = c && typeof c.text === "string" ? Buffer.from(c.text, c.encoding === "base64" ? "base64" : "utf8") : null;
    if (body) setBody(response, body, s.bodySize);
    else {
      response.contentLength = typeof s.bodySize === "number" && s.bodySize > 0 ? s.bodySize : typeof c?.size === "number" && c.size > 0 ? c.size : 0;
      response.streamed = response.contentLength > 0;
    }
    response.timestampEnd = responseStart + phase(t.receive);
    flow.response = response;
  } else {
    const msg = (s as HarResponse | undefined)?._error;
    flow.error = { msg: typeof msg === "string" && msg ? msg : "no response", timestamp: request.timestampEnd };
  }
  return flow;
}

/**
 * One ServerConnection per HAR `connection` id, set up (as sluice does) right after the first
 * request on it was received; `connectSeconds` is the setup time that entry spent on it.
 */
function serverConnection(
  entry: HarEntry,
  connections: Map<string, ServerConnection>,
  url: URL,
  requestEnd: number,
  t: Partial<HarTimings>,
): { conn: ServerConnection; connectSeconds: number } {
  const id = typeof entry.connection === "string" && entry.connection ? entry.connection : null;
  const known = id ? connections.get(id) : undefined;
  if (known) return { conn: known, connectSeconds: 0 };
  const conn = newServerConnection();
  if (id) {
    conn.id = id;
    connections.set(id, conn);
  }
  const host = url.hostname.replace(/^\[|\]$/g, "");
  const port = url.port ? Number(url.port) : url.protocol === "https:" ? 443 : 80;
  conn.address = [host, port];
  if (entry.serverIPAddress) conn.peername = [entry.serverIPAddress.replace(/^\[|\]$/g, ""), port];
  conn.tls = url.protocol === "https:";
  if (typeof t.connect !== "number" || t.connect < 0) return { conn, connectSeconds: 0 };
  const connect = t.connect / 1000;
  const ssl = typeof t.ssl === "number" && t.ssl >= 0 ? t.ssl / 1000 : null;
  conn.timestampStart = requestEnd;
  conn.timestampTcpSetup = requestEnd + connect - (ssl ?? 0);
  if (ssl !== null) conn.timestampTlsSetup = requestEnd + connect;
  return { conn, connectSeconds: connect };
}

function headersFromHar(list: unknown): Headers {
  const raw: string[] = [];
  if (Array.isArray(list)) {
    for (const h of list as HarNameValue[]) {
      if (!h || typeof h.name !== "string") continue;
      // HTTP/2 pseudo-headers (Chrome lists them) are not headers in the flow model.
      if (h.name.startsWith(":")) continue;
      raw.push(textToWire(h.name), textToWire(String(h.value ?? "")));
    }
  }
  return new Headers(raw);
}

function httpVersion(v: unknown): string {
  const s = typeof v === "string" ? v.trim() : "";
  const lower = s.toLowerCase();
  if (lower === "h2" || lower === "http/2" || lower === "http/2.0") return "HTTP/2.0";
  if (lower === "h3" || lower === "http/3" || lower === "http/3.0") return "HTTP/3";
  if (lower.startsWith("http/")) return "HTTP/" + s.slice(5);
  return "HTTP/1.1";
}

function postDataBytes(p: HarPostData & { encoding?: string }): Buffer {
  if (typeof p.text === "string") return Buffer.from(p.text, p._encoding === "base64" || p.encoding === "base64" ? "base64" : "utf8");
  if (Array.isArray(p.params)) return Buffer.from(new URLSearchParams(p.params.map((x): [string, string] => [String(x.name), String(x.value ?? "")])).toString(), "utf8");
  return Buffer.alloc(0);
}

/** Sets a decoded HAR body on the message, re-applying its Content-Encoding so content is wire bytes. */
function setBody(m: Request | Response, decoded: Buffer, bodySize: unknown): void {
  let content = decoded;
  const enc = m.headers.get("content-encoding");
  if (enc && enc !== "identity" && decoded.length > 0) {
    try {
      content = encodeBody(decoded, enc);
    } catch {
      // An encoding sluice cannot apply: keep the body decoded and say so in the headers.
      m.headers.delete("content-encoding");
    }
    const declared = m.headers.get("content-length");
    if (declared !== undefined && Number(declared) !== content.length) m.headers.set("content-length", String(content.length));
  }
  m.content = content;
  m.contentLength = content.length;
  if (decoded.length === 0 && typeof bodySize === "number" && bodySize > 0) {
    m.content = null;
    m.contentLength = bodySize;
    m.streamed = true;
  }
}
