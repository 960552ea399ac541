/**
 * Client timeouts and the connection cap, as nginx and Envoy have them, so that slow or silent
 * clients (slowloris, a bare CONNECT, half a ClientHello, only the HTTP/2 preface) cannot hold
 * connections forever while everyone else is served:
 *
 * - `client_header_timeout`: time to a complete request head. Node's HTTP/1 server times the head
 *   itself once it has the socket; before that (the first request line, after CONNECT, the TLS
 *   ClientHello and handshake, the HTTP/2 preface until the first stream) a deadline here does.
 * - `client_body_timeout`: the longest pause between two reads of a request body (nginx's meaning).
 * - `client_keepalive_timeout`: how long an idle keep-alive connection (HTTP/1 or HTTP/2) stays.
 * - `max_client_connections`: new connections beyond it are closed at once, with a log line.
 */
import type http from "node:http";
import type http2 from "node:http2";
import type { Duplex } from "node:stream";
import type { Logger } from "../core/addons.js";
import { declareOptions, type Options, type TypedOptions } from "../core/options.js";
import { sendPlain, type ClientRequest, type ClientResponse } from "./client-response.js";

/**
 * The most header fields sluice forwards in one request or response head (besides the 256 KiB
 * bound on a head's size). Above it a request is answered 431 and a response 502, saying so:
 * never forwarded with the rest silently dropped, as Node's default of ~1,000 did.
 */
export const MAX_HEADER_FIELDS = 10_000;

/** Why a request head with too many fields is refused, or null when it is within the limit. */
export function tooManyRequestHeaders(req: ClientRequest): string | null {
  const fields = req.rawHeaders.length / 2;
  if (fields <= MAX_HEADER_FIELDS) return null;
  // Node stops counting at the limit it was given (MAX_HEADER_FIELDS + 1): "more than" is all it knows.
  return `the request has more than ${MAX_HEADER_FIELDS.toLocaleString("en")} header fields, the most sluice forwards`;
}

/** The client limits, declared once (names, types, defaults, help). */
export const CLIENT_LIMIT_OPTIONS = declareOptions({
  client_header_timeout: { type: "int", default: 60, help: "Seconds a client has to send a complete request head, TLS handshake, CONNECT and HTTP/2 preface included (nginx's client_header_timeout); 0 off" },
  client_body_timeout: { type: "int", default: 60, help: "Seconds a request body may pause between two reads before the request is answered 408 and closed; 0 off" },
  client_keepalive_timeout: { type: "int", default: 75, help: "Seconds an idle keep-alive client connection (HTTP/1.1 or HTTP/2) is kept open; 0 off" },
  max_client_connections: { type: "int", default: 10_000, help: "Most client connections open at once; further ones are closed at once, with a log line; 0 no limit" },
});

export type ClientLimitOptions = TypedOptions<typeof CLIENT_LIMIT_OPTIONS>;

export function registerClientLimitOptions(options: Options): ClientLimitOptions {
  return options.register(CLIENT_LIMIT_OPTIONS);
}

export interface ClientLimits {
  headerMs: number;
  bodyMs: number;
  keepAliveMs: number;
  maxConnections: number;
}

export function clientLimits(options: ClientLimitOptions): ClientLimits {
  const seconds = (name: "client_header_timeout" | "client_body_timeout" | "client_keepalive_timeout") => {
    const v = options[name];
    if (!(v >= 0)) throw new Error(`option ${name} expects seconds (0 for off), got ${v}`);
    return v * 1000;
  };
  const max = options.max_client_connections;
  if (!(max >= 0)) throw new Error(`option max_client_connections expects a count (0 for no limit), got ${max}`);
  return { headerMs: seconds("client_header_timeout"), bodyMs: seconds("client_body_timeout"), keepAliveMs: seconds("client_keepalive_timeout"), maxConnections: max };
}

/**
 * Closes `socket` unless the returned function is called within `ms` (0: never), after writing
 * what `onExpire` returns, if anything. For the phases before Node's HTTP server has the socket,
 * where nothing else would ever time out.
 */
export function armDeadline(socket: Duplex, ms: number, onExpire: () => string | void): () => void {
  if (!(ms > 0)) return () => {};
  const timer = setTimeout(() => {
    if (socket.destroyed) return;
    const answer = onExpire();
    if (!answer) return void socket.destroy();
    // A last word for a client that speaks plain HTTP, then the connection goes either way.
    socket.end(answer);
    setTimeout(() => socket.destroy(), 1000).unref();
  }, ms);
  timer.unref();
  const disarm = () => clearTimeout(timer);
  socket.once("close", disarm);
  return disarm;
}

/**
 * Answers 408 and closes a request whose body pauses longer than `ms` between two reads. HTTP/1:
 * the socket's idle timer, which Node refreshes on every read, runs while the body is expected
 * only; HTTP/2: the stream's own idle timer.
 */
export function watchRequestBody(req: ClientRequest, res: ClientResponse, ms: number, log: Logger, who: string): void {
  if (!(ms > 0) || req.complete || req.readableEnded) return;
  // An HTTP/1 request without Content-Length or Transfer-Encoding has no body (RFC 9112 6.3), nor
  // one of Content-Length 0: nothing to time (most requests; arming a timer each was wasted work).
  if (req.httpVersionMajor === 1 && !req.headers["transfer-encoding"] && (req.headers["content-length"] === undefined || req.headers["content-length"] === "0")) return;
  const onTimeout = () => {
    log.info(`${who}: request body stalled for ${ms / 1000}s (client_body_timeout): answered 408 and closed`);
    if (!res.headersSent) {
      if ("shouldKeepAlive" in res) (res as http.ServerResponse).shouldKeepAlive = false;
      sendPlain(res, 408, `sluice: the request body stalled for ${ms / 1000}s (client_body_timeout)\n`);
    }
    if (req.httpVersionMajor === 2) {
      (req as http2.Http2ServerRequest).stream.close(0x8 /* CANCEL */);
    } else {
      const socket = (req as http.IncomingMessage).socket;
      // Let the 408 reach the client before closing.
      if (res.writableFinished || res.headersSent) setImmediate(() => socket.destroy());
      else socket.destroy();
    }
  };
  if (req.httpVersionMajor === 2) {
    const stream = (req as http2.Http2ServerRequest).stream;
    stream.setTimeout(ms, onTimeout);
    req.once("end", () => stream.setTimeout(0));
    return;
  }
  const socket = (req as http.IncomingMessage).socket;
  socket.setTimeout(ms);
  req.once("timeout", onTimeout);
  req.once("end", () => {
    req.removeListener("timeout", onTimeout);
    // Waiting for the server is not the client's delay; Node sets the keep-alive timer itself
    // once the response is written, so leave it alone if that already happened.
    if (!res.writableFinished) socket.setTimeout(0);
  });
}

/**
 * An HTTP/2 session: until its first stream the header deadline runs (`disarmHead`); after that
 * it is closed once idle with no open stream for the keep-alive timeout.
 */
export function watchH2Session(session: http2.ServerHttp2Session, keepAliveMs: number, disarmHead: () => void, log: Logger, who: string): void {
  let open = 0;
  session.on("stream", (stream: http2.ServerHttp2Stream) => {
    disarmHead();
    open++;
    stream.once("close", () => open--);
  });
  if (!(keepAliveMs > 0)) return;
  session.setTimeout(keepAliveMs, () => {
    // Streams still waiting for their server are not idle clients; their activity re-arms the timer.
    if (open > 0) return;
    log.debug(`${who}: HTTP/2 connection idle for ${keepAliveMs / 1000}s (client_keepalive_timeout): closed`);
    session.close();
    setTimeout(() => session.destroy(), 1000).unref();
  });
}

/** Whether a connection's first bytes are an HTTP/0.9 request line (`GET /` with no version); "incomplete" until a line ends. */
export function http09RequestLine(buffered: Buffer): boolean | "incomplete" {
  const end = buffered.indexOf(0x0a);
  if (end < 0) return buffered.length > 8192 ? false : "incomplete";
  const line = buffered.subarray(0, end).toString("latin1").replace(/\r$/, "");
  return /^[A-Z]+ \S+$/.test(line);
}

/** Tells in one line, at most every 10 s, that the connection cap turned clients away. */
export class ConnectionCapLog {
  private refused = 0;
  private last = 0;
  constructor(private readonly log: Logger) {}

  dropped(limit: number, from: string | undefined): void {
    this.refused++;
    const t = Date.now();
    if (t - this.last < 10_000) return;
    this.last = t;
    this.log.warn(
      `client connection limit reached (max_client_connections=${limit}): closing new connections (latest from ${from ?? "?"}, ${this.refused} so far); raise it with --set max_client_connections=N`,
    );
  }
}
