/**
 * One HTTP exchange, from the client's request to the response it gets, for HTTP/1.1 and HTTP/2
 * clients alike: build the flow, run the hooks, forward upstream (or not), stream or keep bodies.
 *
 * An exchange moves through named phases, as mitmproxy's HttpStream does:
 *
 *   request → awaitingHead → buffering → streaming → done
 *                        ↘ answering (a kept body, or an addon's response) → done
 *
 * and ends early as truncated (a fault cut the body), killed, clientGone or failed. Every step asks
 * one `checkKilled()`; upstream events that arrive after the exchange ended are ignored. The
 * upstream side is an undici dispatch handler on the controller API (`onRequestStart`,
 * `onResponseStart`, `onResponseData`, `onResponseEnd`, `onResponseError`); a streamed body goes
 * through wrappers that own their concern (truncation, pacing, see body-handlers.ts).
 */
import type { IncomingHttpHeaders } from "node:http";
import { Readable } from "node:stream";
import type { Dispatcher } from "undici";
import { Headers } from "../core/headers.js";
import { HTTPFlow, Response, now, newServerConnection, reasonPhrase, type ClientConnection, type Request, type ServerConnection } from "../core/flow.js";
import type { ProxyContext } from "./context.js";
import { Hold, PaceBody, TruncateBody, UpstreamGate, paced, type BodyHandler, type Controller } from "./body-handlers.js";
import { bodyStream, hasNoBody, readUpTo, requestFromClient } from "./client-request.js";
import {
  HOP_BY_HOP, abandoned, clientWritable, destroyClient, sendComplete, sendPlain, writeHead, writeThenCut,
  type ClientRequest, type ClientResponse,
} from "./client-response.js";
import { statusForUpstreamError } from "./guards.js";
import { MAX_HEADER_FIELDS } from "./client-limits.js";
import { parseSize } from "../core/options.js";
import { describeUpstreamError, hostHeaderFor, type ClientUpstreams, type UpstreamTarget } from "./upstream.js";

export type { ClientRequest, ClientResponse } from "./client-response.js";

/** Where one origin's requests go: an undici dispatcher and the server connection it uses now. */
export interface UpstreamEntry {
  client: Pick<Dispatcher, "dispatch">;
  serverConn: ServerConnection;
}

/** The upstream connections of one client connection (see ClientUpstreams). */
export interface Upstreams {
  entryFor(target: UpstreamTarget): UpstreamEntry;
  /** Whether plain-HTTP requests to `target` must carry an absolute-form URL (upstream proxy). */
  usesAbsoluteForm(target: UpstreamTarget): boolean;
  /** upstream_auth as a Proxy-Authorization value for an upstream proxy, if set. */
  proxyAuthorization?(): string | null;
}

/** Per client connection: who it is and where its requests go by default (tests pass fake upstreams). */
export interface ConnectionContext<U extends Upstreams = ClientUpstreams> {
  clientConn: ClientConnection;
  /** Scheme of the client's side of the connection (TLS terminated by sluice or not). */
  clientTls: boolean;
  /** Target given by CONNECT or reverse mode; null for absolute-form requests. */
  target: UpstreamTarget | null;
  /** True when requests may use absolute form (regular/upstream mode, outside a tunnel). */
  absoluteForm: boolean;
  upstreams: U;
  /** Reverse mode: rewrite Host to the target unless keep_host_header. */
  rewriteHost: boolean;
}

export type Phase =
  | "request" | "awaitingHead" | "buffering" | "streaming" | "answering"
  | "done" | "truncated" | "killed" | "clientGone" | "failed";

function isFinal(phase: Phase): boolean {
  return phase === "done" || phase === "truncated" || phase === "killed" || phase === "clientGone" || phase === "failed";
}

/**
 * Bytes a streamed response may queue towards a slow client before upstream is paused. Measured on
 * 1 GiB downloads: 256 KiB relays ~1.7x faster than 4 MiB, because a deeper queue keeps more 64 KiB
 * read buffers alive at once and the allocator then returns and refaults their pages per chunk.
 */
const STREAM_BUFFER = 256 * 1024;

/** Handles one request end to end. Never throws: failures become responses or errors on the flow. */
export async function handleExchange(ctx: ProxyContext, cc: ConnectionContext<Upstreams>, req: ClientRequest, res: ClientResponse): Promise<void> {
  let request: Request;
  try {
    request = requestFromClient(req, cc);
  } catch (err) {
    sendPlain(res, 400, `sluice: bad request: ${(err as Error).message}\n`);
    return;
  }
  return new Exchange(ctx, cc, req, res, request).run();
}

type FlowHook = "requestHeaders" | "request" | "responseHeaders" | "response" | "error";

let sizeLimitText: string | null = null;
let sizeLimitBytes: number | null = null;

/** `body_size_limit` in bytes, or null for none; parsed once per distinct value. */
function bodySizeLimit(ctx: ProxyContext): number | null {
  const text = ctx.core.body_size_limit;
  if (!text) return null;
  if (text !== sizeLimitText) {
    const n = parseSize(text);
    if (n === null) throw new Error(`body_size_limit expects a size such as 512k or 10m, got ${JSON.stringify(text)}`);
    sizeLimitText = text;
    sizeLimitBytes = n;
  }
  return sizeLimitBytes;
}

export class Exchange implements Dispatcher.DispatchHandler {
  phase: Phase = "request";
  readonly flow: HTTPFlow;
  private readonly limit: number;
  private entry: UpstreamEntry | null = null;
  private controller: Controller | null = null;
  private gate: UpstreamGate | null = null;
  /** The server's response, to tell it from one an addon put in its place. */
  private serverResponse: Response | null = null;
  private declaredLength = NaN;
  /** body_size_limit in bytes, or null. */
  private readonly sizeLimit: number | null;
  /** The body kept so far while buffering (and while a responseHeaders hook runs). */
  private chunks: Buffer[] = [];
  private size = 0;
  /** Upstream finished while a responseHeaders hook was still running: trailers to finish with. */
  private endedEarly: IncomingHttpHeaders | null = null;
  /** Where streamed body bytes go: the client writer, wrapped by truncation and pacing as needed. */
  private body: BodyHandler | null = null;
  private settled = false;
  private whenDone: Promise<void> | null = null;
  private resolveDone: (() => void) | null = null;

  constructor(
    private readonly ctx: ProxyContext,
    private readonly cc: ConnectionContext<Upstreams>,
    private readonly req: ClientRequest,
    private readonly res: ClientResponse,
    request: Request,
  ) {
    this.flow = new HTTPFlow(cc.clientConn, newServerConnection(), request);
    this.flow.live = true;
    this.limit = ctx.core.stream_large_bodies;
    this.sizeLimit = bodySizeLimit(ctx);
    res.once("close", () => this.onClientClose());
  }

  /** Runs the exchange; resolves once it has ended and its last hook has run. */
  async run(): Promise<void> {
    const { flow, req } = this;
    const request = flow.request;
    const headersHooked = this.hook("requestHeaders");
    if (headersHooked) await headersHooked;
    if (this.checkKilled()) return this.done();

    // Body: kept up to the limit, streamed past it.
    let streamedBody: AsyncIterable<Buffer> | null = null;
    const sizeLimit = this.sizeLimit;
    if (hasNoBody(req)) {
      request.content = Buffer.alloc(0);
      req.resume();
    } else {
      const declared = Number(request.headers.get("content-length") ?? NaN);
      // mitmproxy's body_size_limit: judged by Content-Length, or by what is buffered before streaming.
      if (sizeLimit !== null && declared > sizeLimit) {
        this.fail(413, `request body exceeds body_size_limit (${declared} > ${sizeLimit} bytes)`);
        return this.done();
      }
      try {
        if (declared > this.limit) {
          streamedBody = bodyStream(req, [], request);
        } else {
          const got = await readUpTo(req, sizeLimit !== null && sizeLimit < this.limit ? sizeLimit : this.limit);
          if (!got.ended && sizeLimit !== null && got.size > sizeLimit) {
            req.resume(); // read and drop the rest, so the client can take its answer
            this.fail(413, `request body exceeds body_size_limit (more than ${sizeLimit} bytes)`);
            return this.done();
          }
          if (got.ended) {
            request.content = got.chunks.length === 1 ? got.chunks[0]! : Buffer.concat(got.chunks, got.size);
            request.contentLength = got.size;
          } else {
            streamedBody = bodyStream(req, got.chunks, request);
          }
        }
      } catch (err) {
        this.fail(400, (err as Error).message);
        return this.done();
      }
      if (streamedBody) {
        request.streamed = true;
        request.content = null;
      }
    }
    if (!streamedBody) request.timestampEnd = now();

    const requestHooked = this.hook("request");
    if (requestHooked) await requestHooked;
    if (this.checkKilled()) return this.done();

    if (flow.response) {
      // Answered by an addon (fault, replay, script): the server is never contacted.
      if (streamedBody) drain(streamedBody);
      this.phase = "answering";
      const hooked = this.hook("responseHeaders");
      if (hooked) await hooked;
      if (!this.checkKilled() && !isFinal(this.phase)) this.answer();
      return this.done();
    }
    if (flow.clientGone) {
      this.end("clientGone");
      flow.error = { msg: "client disconnected before the request was sent", timestamp: now() };
      this.settleAfter(this.hook("error"));
      return this.done();
    }
    this.forward(streamedBody);
    return this.done();
  }

  /**
   * The one kill check: a killed flow ends the exchange at whatever phase it is in — upstream
   * aborted, the client's connection closed (or reset), the error hook run. True when killed.
   */
  checkKilled(): boolean {
    if (!this.flow.isKilled) return false;
    const phase = this.phase;
    if (isFinal(phase)) return true;
    this.end("killed");
    if (phase === "awaitingHead" || phase === "buffering" || phase === "streaming") this.controller?.abort(new Error("flow killed"));
    destroyClient(this.res, this.flow.killMode);
    this.settleAfter(this.hook("error"));
    return true;
  }

  /** Sends the request upstream; the answer comes back through the handler methods below. */
  private forward(streamedBody: AsyncIterable<Buffer> | null): void {
    const request = this.flow.request;
    const target: UpstreamTarget = { scheme: request.scheme, host: request.host, port: request.port };
    const upstreams = this.cc.upstreams;
    const entry = (this.entry = upstreams.entryFor(target));
    const headers: string[] = [];
    const raw = request.headers.raw;
    let hasHost = false;
    for (let i = 0; i < raw.length; i += 2) {
      const lower = raw[i]!.toLowerCase();
      if (HOP_BY_HOP.has(lower)) continue;
      if (lower === "host") hasHost = true;
      headers.push(raw[i]!, raw[i + 1]!);
    }
    if (!hasHost) headers.push("host", request.authority || hostHeaderFor(target));
    const viaProxy = upstreams.usesAbsoluteForm(target);
    // Towards another proxy, this instance's Via token: a chain that leads back here is answered 508.
    if (viaProxy) headers.push("via", this.ctx.ownListeners.viaEntry());
    const proxyAuthorization = viaProxy ? (upstreams.proxyAuthorization?.() ?? null) : null;
    if (proxyAuthorization) headers.push("proxy-authorization", proxyAuthorization);
    const kept = request.content && request.content.length ? request.content : null;
    const upload = request.bandwidthLimit ? paced(streamedBody ?? (kept ? [kept] : []), request.bandwidthLimit) : streamedBody;
    this.phase = "awaitingHead";
    try {
      entry.client.dispatch(
        {
          path: viaProxy ? request.url : request.path,
          method: request.method,
          headers,
          body: upload ? Readable.from(upload, { objectMode: false }) : kept,
          // Idempotency is the client's business; never let undici replay a request on its own.
          idempotent: false,
          blocking: false,
          upgrade: null,
        } as Dispatcher.DispatchOptions,
        this,
      );
    } catch (err) {
      this.fail(502, `could not send the request upstream: ${(err as Error).message}`);
    }
  }

  // ---- undici's controller API -------------------------------------------------------------

  onRequestStart(controller: Controller): void {
    this.attach(controller);
    // Killed, or the client left, while the request waited for a connection: do not send it.
    if (isFinal(this.phase)) controller.abort(new Error(`exchange already ended (${this.phase})`));
  }

  onResponseStart(controller: Controller, statusCode: number, headers: IncomingHttpHeaders, statusMessage?: string): void {
    if (this.phase !== "awaitingHead") return;
    this.attach(controller);
    const flow = this.flow;
    flow.serverConn = this.entry!.serverConn;
    if (statusCode < 200 && statusCode !== 101) return; // interim (100/103): not relayed
    const fields = headerList(controller.rawHeaders, headers);
    if (fields.length / 2 > MAX_HEADER_FIELDS) {
      // Never relay a head with fields cut off: say so instead.
      const request = flow.request;
      this.fail(502, `${request.host}:${request.port} answered with ${(fields.length / 2).toLocaleString("en")} header fields, more than the ${MAX_HEADER_FIELDS.toLocaleString("en")} sluice forwards`);
      controller.abort(new Error("too many response header fields"));
      return;
    }
    const response = new Response({
      statusCode,
      reason: statusMessage || reasonPhrase(statusCode),
      httpVersion: this.entry!.serverConn.alpn === "h2" ? "HTTP/2.0" : "HTTP/1.1",
      headers: new Headers(fields),
      content: null,
      timestampStart: now(),
    });
    this.serverResponse = response;
    flow.response = response;
    this.declaredLength = Number(response.headers.get("content-length") ?? NaN);
    const hooked = this.hook("responseHeaders");
    if (!hooked) return this.afterResponseHeaders();
    this.gate!.hold(Hold.Hook);
    void hooked.then(() => {
      this.afterResponseHeaders();
      this.gate!.release(Hold.Hook);
    });
  }

  onResponseData(controller: Controller, chunk: Buffer): void {
    const phase = this.phase;
    if (phase === "streaming") {
      this.size += chunk.length;
      if (this.checkKilled()) return;
      this.body!.onResponseData(controller, chunk);
    } else if (phase === "buffering" || phase === "awaitingHead") {
      this.size += chunk.length;
      if (this.sizeLimit !== null && this.size > this.sizeLimit) return this.refuseResponse(`response body exceeds body_size_limit (more than ${this.sizeLimit} bytes)`);
      this.chunks.push(chunk);
      if (phase === "buffering" && this.size > this.limit) this.startStreaming(controller);
    }
  }

  onResponseEnd(controller: Controller, trailers: IncomingHttpHeaders): void {
    if (this.checkKilled()) return;
    const phase = this.phase;
    if (phase === "awaitingHead" && this.serverResponse) {
      this.endedEarly = trailers;
      return;
    }
    if (phase !== "buffering" && phase !== "streaming") return;
    const response = this.serverResponse!;
    response.contentLength = this.size;
    response.timestampEnd = now();
    const list = headerList(controller.rawTrailers, trailers);
    if (list.length) response.trailers = new Headers(list);
    if (phase === "streaming") return this.body!.onResponseEnd(controller);
    response.content = this.chunks.length === 1 ? this.chunks[0]! : Buffer.concat(this.chunks, this.size);
    this.chunks = [];
    this.answer();
  }

  onResponseError(_controller: Controller, err: Error): void {
    if (isFinal(this.phase) || this.phase === "answering") return;
    if (this.checkKilled()) return;
    const flow = this.flow;
    const request = flow.request;
    const serverConnErr = (err as { sluiceServerConn?: ServerConnection }).sluiceServerConn;
    flow.serverConn = serverConnErr ?? this.entry!.serverConn;
    const msg = serverConnErr
      ? err.message
      : describeUpstreamError(err as NodeJS.ErrnoException, { scheme: request.scheme, host: request.host, port: request.port });
    if (this.phase === "streaming") {
      // The head is on the wire: all that is left is to cut the client off.
      this.end("failed");
      flow.error = { msg, timestamp: now() };
      destroyClient(this.res);
      this.settleAfter(this.hook("error"));
      return;
    }
    this.fail(statusForUpstreamError(err), msg);
  }

  // ---- phases --------------------------------------------------------------------------------

  private afterResponseHeaders(): void {
    if (this.checkKilled() || this.phase !== "awaitingHead") return;
    if (this.flow.response !== this.serverResponse) {
      // An addon replaced the response: it wins, the server's body is dropped.
      this.phase = "answering";
      this.chunks = [];
      this.controller?.abort(new Error("response replaced by an addon"));
      this.answer();
      return;
    }
    if (this.sizeLimit !== null && this.declaredLength > this.sizeLimit) return this.refuseResponse(`response body exceeds body_size_limit (${this.declaredLength} > ${this.sizeLimit} bytes)`);
    this.phase = "buffering";
    if (this.declaredLength > this.limit || this.size > this.limit) this.startStreaming(this.controller!);
    if (this.endedEarly) this.onResponseEnd(this.controller!, this.endedEarly);
  }

  /** Past the body limit: send the head, then what was kept, then the rest as it comes. */
  private startStreaming(controller: Controller): void {
    this.phase = "streaming";
    const response = this.serverResponse!;
    response.streamed = true;
    response.content = null;
    writeHead(this.res, response);
    let body: BodyHandler = new ClientWriter(this.res, this.gate!, this);
    if (response.truncateAt !== null) body = new TruncateBody(response.truncateAt, body);
    if (response.bandwidthLimit) body = new PaceBody(response.bandwidthLimit, body, this.gate!);
    this.body = body;
    const kept = this.chunks;
    this.chunks = [];
    for (const chunk of kept) {
      if (this.phase !== "streaming") break;
      body.onResponseData(controller, chunk);
    }
  }

  /** The whole response is in memory (kept body, or an addon's): run `response`, then send it. */
  private answer(): void {
    this.phase = "answering";
    const hooked = this.hook("response");
    if (hooked) void hooked.then(() => this.sendAnswer());
    else this.sendAnswer();
  }

  private sendAnswer(): void {
    if (this.checkKilled() || isFinal(this.phase)) return;
    this.end("done");
    const response = this.flow.response;
    if (response && clientWritable(this.res)) sendComplete(this.res, response, this.flow.request.method);
    this.settle();
  }

  /** The streamed body was written whole. */
  streamEnded(): void {
    this.end("done");
    this.settleAfter(this.hook("response"));
  }

  /** A truncation fault cut the streamed body: the client's connection closes after `tail`. */
  streamTruncated(tail: Buffer): void {
    this.end("truncated");
    writeThenCut(this.res, tail);
    this.controller?.abort(new Error("response truncated by an addon"));
    const response = this.serverResponse!;
    response.contentLength = this.size;
    response.timestampEnd = now();
    this.settleAfter(this.hook("response"));
  }

  private onClientClose(): void {
    if (!abandoned(this.res)) return;
    this.flow.markClientGone();
    // While the request hooks run, leaving is noticed when they return (the request is not sent).
    if (this.phase === "request" || isFinal(this.phase)) return;
    this.end("clientGone");
    this.controller?.abort(new Error("client disconnected"));
    if (!this.flow.error) this.flow.error = { msg: "client disconnected before the response was complete", timestamp: now() };
    this.settleAfter(this.hook("error"));
  }

  /** Records `msg` as the flow's error, runs `error`, then answers `status` if nothing was sent yet. */
  /** body_size_limit refused the server's response: the client gets 502, as from mitmproxy. */
  private refuseResponse(msg: string): void {
    this.chunks = [];
    this.controller?.abort(new Error(msg));
    this.fail(502, msg);
  }

  private fail(status: number, msg: string): void {
    this.end("failed");
    this.flow.error = { msg, timestamp: now() };
    const respond = () => {
      if (clientWritable(this.res) && !this.res.headersSent) sendPlain(this.res, status, `sluice: ${msg}\n`);
      this.settle();
    };
    const hooked = this.hook("error");
    if (hooked) void hooked.then(respond);
    else respond();
  }

  // ---- bookkeeping ---------------------------------------------------------------------------

  private attach(controller: Controller): void {
    if (this.controller === controller) return;
    this.controller = controller;
    this.gate = new UpstreamGate(controller);
  }

  private end(phase: Phase): void {
    this.phase = phase;
    this.chunks = [];
    this.gate?.close();
  }

  /** A promise only when some addon was asynchronous, so callers can skip the await. */
  private hook(hook: FlowHook): Promise<void> | void {
    return this.ctx.addons.trigger(hook, this.flow);
  }

  private settleAfter(hooked: Promise<void> | void): void {
    if (hooked) void hooked.then(() => this.settle());
    else this.settle();
  }

  private settle(): void {
    if (this.settled) return;
    this.settled = true;
    this.flow.live = false;
    this.resolveDone?.();
  }

  private done(): Promise<void> {
    if (this.settled) return Promise.resolve();
    return (this.whenDone ??= new Promise((resolve) => (this.resolveDone = resolve)));
  }
}

/** The innermost body handler: writes to the client, and holds upstream while the client is full. */
class ClientWriter implements BodyHandler {
  constructor(
    private readonly res: ClientResponse,
    private readonly gate: UpstreamGate,
    private readonly exchange: Exchange,
  ) {
    res.on("drain", () => gate.release(Hold.Client));
  }

  onResponseData(_controller: Controller, chunk: Buffer): void {
    const res = this.res as NodeJS.WritableStream & { writableLength: number };
    // Letting up to STREAM_BUFFER bytes queue before pausing avoids a pause/resume round trip per
    // chunk; pausing past it bounds memory for any body size.
    if (!res.write(chunk) && res.writableLength >= STREAM_BUFFER) this.gate.hold(Hold.Client);
  }

  onResponseEnd(): void {
    this.res.end();
    this.exchange.streamEnded();
  }

  onResponseTruncated(_controller: Controller, tail: Buffer): void {
    this.exchange.streamTruncated(tail);
  }
}

/** Header name/value pairs as strings, from undici's raw list when it has one (names keep their case). */
function headerList(raw: Dispatcher.DispatchController["rawHeaders"], parsed: IncomingHttpHeaders | null | undefined): string[] {
  if (Array.isArray(raw)) {
    const list: string[] = new Array(raw.length);
    for (let i = 0; i < raw.length; i++) {
      const v = raw[i]!;
      list[i] = typeof v === "string" ? v : v.toString("latin1");
    }
    return list;
  }
  const source = raw ?? parsed;
  const list: string[] = [];
  if (!source) return list;
  for (const [name, value] of Object.entries(source)) {
    if (Array.isArray(value)) for (const v of value) list.push(name, v);
    else if (value !== undefined) list.push(name, String(value));
  }
  return list;
}

function drain(body: AsyncIterable<Buffer>): void {
  (async () => {
    for await (const _ of body) {
      // discard: the answer did not need it
    }
  })().catch(() => {});
}
