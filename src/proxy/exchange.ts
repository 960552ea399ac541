/**
 * One HTTP exchange, from the client's request to the response it gets, for HTTP/1.1 and HTTP/2
 * clients alike: build the flow, run the hooks, forward upstream (or not), stream or keep bodies.
 */
import type { IncomingMessage, ServerResponse } from "node:http";
import type { Http2ServerRequest, Http2ServerResponse } from "node:http2";
import { Readable } from "node:stream";
import net from "node:net";
import tls from "node:tls";
import type { Dispatcher } from "undici";
import { Headers } from "../core/headers.js";
import { HTTPFlow, Request, Response, now, newServerConnection, reasonPhrase, type ClientConnection } from "../core/flow.js";
import type { ProxyContext } from "./context.js";
import type { ClientUpstreams, UpstreamTarget } from "./upstream.js";
import { describeConnectError } from "./upstream.js";
import { statusForUpstreamError } from "./guards.js";

export type ClientRequest = IncomingMessage | Http2ServerRequest;
export type ClientResponse = ServerResponse | Http2ServerResponse;

/** Per client connection: who it is and where its requests go by default. */
export interface ConnectionContext {
  clientConn: ClientConnection;
  /** Scheme of the client's side of the connection (TLS terminated by sluice or not). */
  clientTls: boolean;
  /** Target given by CONNECT or reverse mode; null for absolute-form requests. */
  target: UpstreamTarget | null;
  /** True when requests may use absolute form (regular/upstream mode, outside a tunnel). */
  absoluteForm: boolean;
  upstreams: ClientUpstreams;
  /** Reverse mode: rewrite Host to the target unless keep_host_header. */
  rewriteHost: boolean;
}

/** Hop-by-hop headers (RFC 9110 §7.6.1) and ones undici frames itself: never forwarded. */
const HOP_BY_HOP = new Set([
  "connection", "keep-alive", "proxy-connection", "proxy-authorization", "te", "trailer",
  "transfer-encoding", "upgrade", "expect", "http2-settings",
]);

export class BadRequestError extends Error {}

/** Builds the flow's Request from what the client sent. Throws BadRequestError for unusable ones. */
export function requestFromClient(req: ClientRequest, cc: ConnectionContext): Request {
  const isH2 = req.httpVersionMajor === 2;
  const raw = req.rawHeaders;
  let headers: Headers;
  let authority = "";
  if (isH2) {
    const list: string[] = [];
    for (let i = 0; i < raw.length; i += 2) {
      const name = raw[i]!;
      if (name.charCodeAt(0) === 58 /* ":" */) {
        if (name === ":authority") authority = raw[i + 1]!;
        continue;
      }
      list.push(name, raw[i + 1]!);
    }
    headers = new Headers(list);
  } else {
    headers = new Headers(raw.slice());
    authority = headers.get("host") ?? "";
  }
  const url = req.url ?? "/";
  let scheme: "http" | "https";
  let host: string;
  let port: number;
  let path: string;
  if (cc.target) {
    scheme = cc.target.scheme;
    host = cc.target.host;
    port = cc.target.port;
    path = url;
  } else if (url.startsWith("http://") || url.startsWith("https://")) {
    let u: URL;
    try {
      u = new URL(url);
    } catch {
      throw new BadRequestError(`malformed absolute URL ${JSON.stringify(url)}`);
    }
    scheme = u.protocol === "https:" ? "https" : "http";
    host = u.hostname.replace(/^\[|\]$/g, "");
    port = u.port ? Number(u.port) : scheme === "https" ? 443 : 80;
    path = u.pathname + u.search;
    if (!authority) authority = u.host;
  } else if (!cc.absoluteForm && authority) {
    scheme = cc.clientTls ? "https" : "http";
    const a = new URL(`${scheme}://${authority}`);
    host = a.hostname.replace(/^\[|\]$/g, "");
    port = a.port ? Number(a.port) : scheme === "https" ? 443 : 80;
    path = url;
  } else {
    throw new BadRequestError(
      `sluice is running as an HTTP proxy and got an origin-form request (${req.method} ${url}); ` +
        "configure your client to use sluice as its proxy (e.g. curl -x http://127.0.0.1:8080), or start sluice in reverse mode",
    );
  }
  if (!path.startsWith("/") && path !== "*") path = "/" + path;
  const request = new Request({
    method: req.method ?? "GET",
    scheme,
    host,
    port,
    path,
    authority,
    httpVersion: isH2 ? "HTTP/2.0" : `HTTP/${req.httpVersion}`,
    headers,
    content: null,
  });
  if (cc.target && cc.rewriteHost) {
    const hostValue = defaultPortFor(scheme) === port ? host : `${host}:${port}`;
    if (request.headers.has("host")) request.headers.set("host", hostValue);
    request.authority = hostValue;
  }
  return request;
}

function defaultPortFor(scheme: string): number {
  return scheme === "https" ? 443 : 80;
}

/** Reads a body into memory up to `limit` bytes; past that, hands back what it has and the rest stays unread. */
async function readUpTo(stream: ClientRequest, limit: number): Promise<{ chunks: Buffer[]; size: number; ended: boolean }> {
  const chunks: Buffer[] = [];
  let size = 0;
  return new Promise((resolve, reject) => {
    const onData = (chunk: Buffer) => {
      chunks.push(chunk);
      size += chunk.length;
      if (size > limit) {
        stream.pause();
        cleanup();
        resolve({ chunks, size, ended: false });
      }
    };
    const onEnd = () => {
      cleanup();
      resolve({ chunks, size, ended: true });
    };
    const onError = (err: Error) => {
      cleanup();
      reject(err);
    };
    const onAborted = () => {
      cleanup();
      reject(new Error("client closed the connection before the request body was complete"));
    };
    const cleanup = () => {
      stream.removeListener("data", onData);
      stream.removeListener("end", onEnd);
      stream.removeListener("error", onError);
      stream.removeListener("aborted", onAborted);
    };
    stream.on("data", onData);
    stream.once("end", onEnd);
    stream.once("error", onError);
    stream.once("aborted", onAborted);
    stream.resume();
  });
}

function hasNoBody(req: ClientRequest): boolean {
  if (req.httpVersionMajor === 2) return (req as Http2ServerRequest).stream.readableEnded || (req as Http2ServerRequest).stream.endAfterHeaders;
  const h = (req as IncomingMessage).headers;
  return h["content-length"] === undefined && h["transfer-encoding"] === undefined;
}

/** Handles one request end to end. Never throws: failures become responses or errors on the flow. */
export async function handleExchange(ctx: ProxyContext, cc: ConnectionContext, req: ClientRequest, res: ClientResponse): Promise<void> {
  let request: Request;
  try {
    request = requestFromClient(req, cc);
  } catch (err) {
    sendPlain(res, 400, `sluice: bad request: ${(err as Error).message}\n`);
    return;
  }
  const flow = new HTTPFlow(cc.clientConn, newServerConnection(), request);
  flow.live = true;
  let clientGone = false;
  res.once("close", () => {
    if (!abandoned(res)) return;
    clientGone = true;
    flow.markClientGone();
  });

  const headersHooked = run(ctx, "requestHeaders", flow);
  if (headersHooked) await headersHooked;
  if (flow.isKilled) return killClient(ctx, flow, req, res);

  // Body: kept up to the limit, streamed past it.
  const limit = ctx.options.get<number>("stream_large_bodies");
  let streamedBody: AsyncIterable<Buffer> | null = null;
  if (hasNoBody(req)) {
    request.content = Buffer.alloc(0);
    req.resume();
  } else {
    const declared = Number(request.headers.get("content-length") ?? NaN);
    try {
      if (declared > limit) {
        streamedBody = bodyStream(req, [], request);
      } else {
        const got = await readUpTo(req, limit);
        if (got.ended) {
          request.content = got.chunks.length === 1 ? got.chunks[0]! : Buffer.concat(got.chunks, got.size);
          request.contentLength = got.size;
        } else {
          streamedBody = bodyStream(req, got.chunks, request);
        }
      }
    } catch (err) {
      return failFlow(ctx, flow, res, 400, (err as Error).message);
    }
    if (streamedBody) {
      request.streamed = true;
      request.content = null;
    }
  }
  if (!streamedBody) request.timestampEnd = now();

  const requestHooked = run(ctx, "request", flow);
  if (requestHooked) await requestHooked;
  if (flow.isKilled) return killClient(ctx, flow, req, res);

  if (flow.response) {
    // Answered by an addon (fault, replay, script): the server is never contacted.
    if (streamedBody) drain(streamedBody);
    await run(ctx, "responseHeaders", flow);
    if (flow.isKilled) return killClient(ctx, flow, req, res);
    await run(ctx, "response", flow);
    if (flow.isKilled) return killClient(ctx, flow, req, res);
    sendComplete(res, flow.response, request.method);
    flow.live = false;
    return;
  }

  if (clientGone) return clientLeft(ctx, flow);
  await forward(ctx, cc, flow, req, res, streamedBody, limit);
}

/** A request body that streams: first the chunks already read, then the rest as it arrives. */
async function* bodyStream(req: ClientRequest, first: Buffer[], request: Request): AsyncGenerator<Buffer> {
  let n = 0;
  let ended = false;
  try {
    for (const c of first) {
      n += c.length;
      yield c;
    }
    // Not destroyed on return: when the server answers before the whole body is sent, undici
    // stops pulling, and the client's connection must stay usable rather than be reset.
    for await (const c of req.iterator({ destroyOnReturn: false }) as AsyncIterable<Buffer>) {
      n += c.length;
      yield c;
    }
    ended = true;
    request.contentLength = n;
    request.timestampEnd = now();
  } finally {
    // Stopped early (the server answered already, or failed): discard the rest as an origin server
    // would, so the client can finish sending and read its response. Otherwise it stalls until the
    // keep-alive timeout, its upload half sent.
    if (!ended && !req.destroyed) req.resume();
  }
}

function drain(body: AsyncIterable<Buffer>): void {
  (async () => {
    for await (const _ of body) {
      // discard: the answer did not need it
    }
  })().catch(() => {});
}

/** Runs a flow hook; a promise only when some addon was asynchronous, so callers can skip the await. */
function run(ctx: ProxyContext, hook: "requestHeaders" | "request" | "responseHeaders" | "response" | "error", flow: HTTPFlow): Promise<void> | void {
  return ctx.addons.trigger(hook, flow);
}

/** Runs a flow hook, then `next`: at once when every addon was synchronous (the common case), else when they finish. */
function runThen(ctx: ProxyContext, hook: "response" | "error", flow: HTTPFlow, next: () => void): void {
  const hooked = run(ctx, hook, flow);
  if (hooked) void hooked.then(next, next);
  else next();
}

/**
 * Bytes a streamed response may queue towards a slow client before upstream is paused. Measured on
 * 1 GiB downloads: 256 KiB relays ~1.7x faster than 4 MiB, because a deeper queue keeps more 64 KiB
 * read buffers alive at once and the allocator then returns and refaults their pages per chunk.
 */
const STREAM_BUFFER = 256 * 1024;

/** Sends the request upstream with undici and relays the answer, keeping or streaming its body. */
function forward(
  ctx: ProxyContext,
  cc: ConnectionContext,
  flow: HTTPFlow,
  req: ClientRequest,
  res: ClientResponse,
  streamedBody: AsyncIterable<Buffer> | null,
  limit: number,
): Promise<void> {
  const request = flow.request;
  const target: UpstreamTarget = { scheme: request.scheme, host: request.host, port: request.port };
  const entry = cc.upstreams.entryFor(target);
  const upstreamHeaders: string[] = [];
  const raw = request.headers.raw;
  let hasHost = false;
  for (let i = 0; i < raw.length; i += 2) {
    const lower = raw[i]!.toLowerCase();
    if (HOP_BY_HOP.has(lower)) continue;
    if (lower === "host") hasHost = true;
    upstreamHeaders.push(raw[i]!, raw[i + 1]!);
  }
  if (!hasHost) upstreamHeaders.push("host", request.authority || hostHeaderFor(target));
  const viaProxy = cc.upstreams.usesAbsoluteForm(target);
  // Towards another proxy, this instance's Via token: a chain that leads back here is answered 508.
  if (viaProxy) upstreamHeaders.push("via", ctx.ownListeners.viaEntry());
  const path = viaProxy ? request.url : request.path;
  const kept = request.content && request.content.length ? request.content : null;
  const upload = request.bandwidthLimit ? paced(streamedBody ?? (kept ? [kept] : []), request.bandwidthLimit) : streamedBody;
  const body: Dispatcher.DispatchOptions["body"] = upload ? Readable.from(upload, { objectMode: false }) : kept;

  return new Promise<void>((resolve) => {
    let abort: ((err?: Error) => void) | null = null;
    let response: Response | null = null;
    let chunks: Buffer[] = [];
    let size = 0;
    let streaming = false;
    let truncated = false; // a truncation fault cut the body: the abort that follows is not a failure
    let headSent = false;
    let resumeUpstream: (() => void) | null = null; // undici's resume, called when the client drains
    let settled = false;
    const finish = () => {
      if (!settled) {
        settled = true;
        flow.live = false;
        resolve();
      }
    };
    const onClientClose = () => {
      if (abandoned(res) && !settled && !truncated) {
        abort?.(new Error("client disconnected"));
        if (!flow.error) flow.error = { msg: "client disconnected before the response was complete", timestamp: now() };
        runThen(ctx, "error", flow, finish);
      }
    };
    res.once("close", onClientClose);
    res.on("drain", () => resumeUpstream?.());

    const startStreaming = () => {
      streaming = true;
      response!.streamed = true;
      response!.content = null;
      writeHead(res, response!);
      headSent = true;
      let offset = 0;
      for (const c of chunks) {
        offset += c.length;
        writeStreamed(c, offset);
        if (truncated) break;
      }
      chunks = [];
    };
    /** Writes a streamed chunk ending at body offset `end`; a truncation fault cuts it and the exchange. */
    const writeStreamed = (chunk: Buffer, end: number): boolean => {
      const cutAt = response!.truncateAt;
      if (cutAt !== null && end > cutAt) {
        truncated = true;
        writeThenCut(res, chunk.subarray(0, Math.max(0, chunk.length - (end - cutAt))));
        abort?.(new Error("response truncated by an addon"));
        return false;
      }
      return (res as ServerResponse).write(chunk);
    };

    const handler: Dispatcher.DispatchHandler = {
      onConnect(abortFn) {
        abort = abortFn as (err?: Error) => void;
      },
      onHeaders(statusCode, rawHeaders, resume, statusText) {
        flow.serverConn = entry.serverConn;
        resumeUpstream = resume;
        if (statusCode < 200 && statusCode !== 101) return true; // interim (100/103): not relayed
        const list: string[] = new Array(rawHeaders.length);
        for (let i = 0; i < rawHeaders.length; i++) list[i] = (rawHeaders[i] as Buffer).toString("latin1");
        response = new Response({
          statusCode,
          reason: statusText || reasonPhrase(statusCode),
          httpVersion: entry.serverConn.alpn === "h2" ? "HTTP/2.0" : "HTTP/1.1",
          headers: new Headers(list),
          content: null,
          timestampStart: now(),
        });
        flow.response = response;
        const declared = Number(response.headers.get("content-length") ?? NaN);
        const hooked = run(ctx, "responseHeaders", flow);
        const decide = () => {
          if (flow.isKilled) {
            abort?.(new Error("killed"));
            return;
          }
          if (flow.response !== response) {
            // An addon replaced the response: it wins, the server's body is dropped.
            abort?.(new Error("response replaced"));
            return;
          }
          if (declared > limit) startStreaming();
        };
        if (hooked) {
          hooked.then(() => {
            decide();
            resume();
          });
          return false;
        }
        decide();
        return true;
      },
      onData(chunk) {
        size += chunk.length;
        if (!streaming) {
          chunks.push(chunk);
          if (size > limit) startStreaming();
          return !truncated;
        }
        if (truncated) return false;
        const resp = response!;
        const ok = writeStreamed(chunk, size);
        if (truncated) return false;
        if (resp.bandwidthLimit) {
          // Pause upstream for as long as this chunk takes at the limit.
          setTimeout(() => resumeUpstream?.(), (chunk.length / resp.bandwidthLimit) * 1000);
          return false;
        }
        // Pausing undici until the client drains bounds memory for any body size; letting up to
        // STREAM_BUFFER bytes queue first avoids a pause/resume round trip per chunk.
        return ok || (res as ServerResponse).writableLength < STREAM_BUFFER;
      },
      onComplete(trailers) {
        const resp = response!;
        resp.contentLength = size;
        resp.timestampEnd = now();
        if (trailers && trailers.length) {
          const list: string[] = [];
          for (const t of trailers) list.push(Buffer.isBuffer(t) ? t.toString("latin1") : String(t));
          resp.trailers = new Headers(list);
        }
        if (streaming) {
          res.end();
          runThen(ctx, "response", flow, finish);
          return;
        }
        resp.content = chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks, size);
        chunks = [];
        runThen(ctx, "response", flow, () => {
          try {
            if (flow.isKilled) killClient(ctx, flow, req, res);
            else if (clientWritable(res)) sendComplete(res, flow.response!, request.method);
          } finally {
            finish();
          }
        });
      },
      onError(err) {
        if (truncated && !flow.isKilled) {
          response!.contentLength = size;
          response!.timestampEnd = now();
          runThen(ctx, "response", flow, finish);
          return;
        }
        if (flow.response && flow.response !== response && !flow.isKilled) {
          // Replaced by an addon in responseHeaders: answer with it.
          runThen(ctx, "response", flow, () => {
            try {
              sendComplete(res, flow.response!, request.method);
            } finally {
              finish();
            }
          });
          return;
        }
        if (flow.isKilled) {
          killClient(ctx, flow, req, res);
          finish();
          return;
        }
        if (settled) return;
        const serverConnErr = (err as { sluiceServerConn?: typeof flow.serverConn }).sluiceServerConn;
        if (serverConnErr) flow.serverConn = serverConnErr;
        else flow.serverConn = entry.serverConn;
        const msg = serverConnErr ? err.message : describeUpstreamError(err as NodeJS.ErrnoException, target);
        if (headSent) {
          flow.error = { msg, timestamp: now() };
          destroyClient(res);
          runThen(ctx, "error", flow, finish);
          return;
        }
        failFlow(ctx, flow, res, statusForUpstreamError(err), msg).finally(finish);
      },
    };
    try {
      entry.client.dispatch(
        {
          path,
          method: request.method,
          headers: upstreamHeaders,
          body,
          // Idempotency is the client's business; never let undici replay a request on its own.
          idempotent: false,
          blocking: false,
          upgrade: null,
        } as Dispatcher.DispatchOptions,
        handler,
      );
    } catch (err) {
      failFlow(ctx, flow, res, 502, `could not send the request upstream: ${(err as Error).message}`).finally(finish);
    }
  });
}

function hostHeaderFor(t: UpstreamTarget): string {
  const h = t.host.includes(":") ? `[${t.host}]` : t.host;
  return t.port === defaultPortFor(t.scheme) ? h : `${h}:${t.port}`;
}

function describeUpstreamError(err: NodeJS.ErrnoException, target: UpstreamTarget): string {
  const where = `${target.host}:${target.port}`;
  switch (err.code) {
    case "UND_ERR_HEADERS_TIMEOUT":
      return `${where} did not answer in time (read_timeout)`;
    case "UND_ERR_BODY_TIMEOUT":
      return `${where} stopped sending the response body (read_timeout)`;
    case "UND_ERR_SOCKET":
    case "ECONNRESET":
      return `connection to ${where} closed before the response was complete: ${err.message}`;
    case "UND_ERR_INVALID_ARG":
    case "UND_ERR_NOT_SUPPORTED":
      return `request cannot be forwarded to ${where}: ${err.message}`;
    default:
      // undici's parser errors: the server was reached but did not speak HTTP/1.1.
      if (err.name === "HTTPParserError") {
        const detail = /^Response does not match the HTTP\/1\.1 protocol \((.*)\)$/.exec(err.message)?.[1] ?? err.message;
        return `${where} answered with something that is not valid HTTP/1.1 (${detail})`;
      }
      return describeConnectError(err, target);
  }
}

function clientWritable(res: ClientResponse): boolean {
  return !res.writableEnded && !(res as ServerResponse).destroyed && !(res.socket?.destroyed ?? false);
}

async function failFlow(ctx: ProxyContext, flow: HTTPFlow, res: ClientResponse, status: number, msg: string): Promise<void> {
  flow.error = { msg, timestamp: now() };
  await run(ctx, "error", flow);
  flow.live = false;
  if (clientWritable(res) && !res.headersSent) sendPlain(res, status, `sluice: ${msg}\n`);
}

function clientLeft(ctx: ProxyContext, flow: HTTPFlow): Promise<void> | void {
  flow.error = { msg: "client disconnected before the request was sent", timestamp: now() };
  flow.live = false;
  return run(ctx, "error", flow);
}

function killClient(ctx: ProxyContext, flow: HTTPFlow, _req: ClientRequest, res: ClientResponse): void {
  flow.live = false;
  destroyClient(res, flow.killMode);
  void run(ctx, "error", flow);
}

function isHttp2(res: ClientResponse): res is Http2ServerResponse {
  return "stream" in res && !!res.stream;
}

/**
 * Whether a response's "close" means the client left before the answer was complete. HTTP/2's
 * compatibility response reports itself finished even when its stream was reset, so ask whether
 * it was ended instead.
 */
function abandoned(res: ClientResponse): boolean {
  if (isHttp2(res)) return !res.writableEnded;
  return !res.writableFinished;
}

/** Ends the client's connection (HTTP/1) or stream (HTTP/2); `reset` sends a TCP RST. */
function destroyClient(res: ClientResponse, mode: "close" | "reset" = "close"): void {
  if (isHttp2(res)) {
    // HTTP/2: reset just this stream, the connection's other streams go on.
    res.stream.close(0x2 /* INTERNAL_ERROR */);
    return;
  }
  const socket = (res as ServerResponse).socket as (net.Socket & { _parent?: net.Socket }) | null;
  if (!socket) return;
  if (mode === "reset") {
    // A TLS socket has no TCP handle of its own: reset the TCP socket under it.
    const tcp = socket instanceof tls.TLSSocket ? (socket as unknown as { _parent?: net.Socket })._parent : socket;
    if (tcp && typeof tcp.resetAndDestroy === "function") {
      try {
        tcp.resetAndDestroy();
        socket.destroy();
        return;
      } catch {
        // not a TCP handle (e.g. a test double): fall back to a plain close
      }
    }
  }
  socket.destroy();
}

/** Response headers for the client: hop-by-hop removed; an object for HTTP/2. */
function writeHead(res: ClientResponse, response: Response): void {
  const raw = response.headers.raw;
  if (isHttp2(res)) {
    const obj: Record<string, string | string[]> = {};
    for (let i = 0; i < raw.length; i += 2) {
      const name = raw[i]!.toLowerCase();
      if (HOP_BY_HOP.has(name) || name === "host") continue;
      const prev = obj[name];
      if (prev === undefined) obj[name] = raw[i + 1]!;
      else if (Array.isArray(prev)) prev.push(raw[i + 1]!);
      else obj[name] = [prev, raw[i + 1]!];
    }
    res.writeHead(response.statusCode, obj);
    return;
  }
  const list: string[] = [];
  for (let i = 0; i < raw.length; i += 2) {
    const lower = raw[i]!.toLowerCase();
    if (lower === "connection" || lower === "keep-alive" || lower === "proxy-connection" || lower === "transfer-encoding" || lower === "upgrade" || lower === "trailer") continue;
    list.push(raw[i]!, raw[i + 1]!);
  }
  (res as ServerResponse).writeHead(response.statusCode, response.reason || reasonPhrase(response.statusCode) || "Unknown", list);
}

/** Sends a response whose body is in memory; Content-Length follows the body actually sent. */
export function sendComplete(res: ClientResponse, response: Response, method: string): void {
  if (!clientWritable(res) || res.headersSent) return;
  const body = response.content ?? Buffer.alloc(0);
  const bodyless = method === "HEAD" || response.statusCode === 204 || response.statusCode === 304 || response.statusCode < 200;
  if (!bodyless) {
    const declared = response.headers.get("content-length");
    if (declared !== String(body.length)) response.headers.set("content-length", String(body.length));
  }
  try {
    writeHead(res, response);
  } catch (err) {
    sendPlain(res, 502, `sluice: cannot send the response to the client: ${(err as Error).message}\n`);
    return;
  }
  if (bodyless) return void res.end();
  if (response.truncateAt === null && response.bandwidthLimit === null) return void (res as ServerResponse).end(body);
  void writeShapedBody(res, body, response);
}

/** Writes a kept body at `bandwidthLimit` bytes/s and/or cut at `truncateAt` (then closes). */
async function writeShapedBody(res: ClientResponse, body: Buffer, response: Response): Promise<void> {
  const end = response.truncateAt === null ? body.length : Math.min(body.length, Math.max(0, response.truncateAt));
  const rate = response.bandwidthLimit;
  // Ten slices a second keeps the pace smooth without a timer per byte.
  const slice = rate ? Math.max(1, Math.floor(rate / 10)) : end;
  const cut = response.truncateAt !== null && end < body.length;
  for (let off = 0; off < end; off += slice) {
    if (!clientWritable(res)) return;
    const chunk = body.subarray(off, Math.min(end, off + slice));
    if (cut && off + slice >= end) return writeThenCut(res, chunk);
    const ok = (res as ServerResponse).write(chunk);
    if (rate) await sleep((chunk.length / rate) * 1000);
    else if (!ok) await new Promise((r) => res.once("drain", r));
  }
  if (cut) writeThenCut(res, Buffer.alloc(0));
  else res.end();
}

/**
 * Writes the last bytes of a truncated body, then closes the client's connection once they are
 * on the wire: destroying at once would drop the queued head and bytes, and the client would see
 * an empty reply instead of a short body.
 */
function writeThenCut(res: ClientResponse, chunk: Buffer): void {
  const cut = () => setImmediate(() => destroyClient(res));
  if (chunk.length > 0) return void (res as ServerResponse).write(chunk, cut);
  (res as ServerResponse).flushHeaders();
  const socket = (res as ServerResponse).socket;
  if (socket && !isHttp2(res)) socket.write("", cut);
  else cut();
}

/** Yields `chunks` again at `rate` bytes per second, in slices of a tenth of a second's worth. */
async function* paced(chunks: AsyncIterable<Buffer> | Iterable<Buffer>, rate: number): AsyncGenerator<Buffer> {
  const slice = Math.max(1, Math.floor(rate / 10));
  for await (const chunk of chunks) {
    for (let off = 0; off < chunk.length; off += slice) {
      const part = chunk.subarray(off, off + slice);
      yield part;
      await sleep((part.length / rate) * 1000);
    }
  }
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

export function sendPlain(res: ClientResponse, status: number, text: string): void {
  if (!clientWritable(res) || res.headersSent) return;
  const body = Buffer.from(text, "utf8");
  if (isHttp2(res)) {
    res.writeHead(status, { "content-type": "text/plain; charset=utf-8", "content-length": String(body.length) });
  } else {
    (res as ServerResponse).writeHead(status, reasonPhrase(status), ["content-type", "text/plain; charset=utf-8", "content-length", String(body.length)]);
  }
  (res as ServerResponse).end(body);
}
