/**
 * The client's side of a request: its flow Request built from what the client sent, and its body
 * read into memory up to a limit or streamed past it.
 */
import type { IncomingMessage } from "node:http";
import type { Http2ServerRequest } from "node:http2";
import { Headers } from "../core/headers.js";
import { Request, now } from "../core/flow.js";
import type { ClientRequest } from "./client-response.js";
import type { ConnectionContext, Upstreams } from "./exchange.js";

export class BadRequestError extends Error {}

/** Builds the flow's Request from what the client sent. Throws BadRequestError for unusable ones. */
export function requestFromClient(req: ClientRequest, cc: ConnectionContext<Upstreams>): Request {
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
    const target = absoluteTarget(url);
    scheme = target.scheme;
    host = target.host;
    port = target.port;
    path = target.path;
    // RFC 9112 §3.2.2: the request-target's host wins over any Host the client sent, and a proxy
    // forwards a Host made from it.
    authority = target.authority;
    const sent = headers.get("host");
    if (sent !== undefined && sent !== authority) headers.set("host", authority);
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

/** Scheme, host, port and authority of an absolute-form URL's origin, as WHATWG URL parses them. */
interface ParsedOrigin {
  scheme: "http" | "https";
  host: string;
  port: number;
  /** host[:port] as URL's `host` gives it (default port dropped, IPv6 in brackets). */
  authority: string;
}

/**
 * Origins of absolute-form URLs seen lately, by their `scheme://authority` text: a proxied client
 * sends the same few origins over and over, and parsing each whole URL with WHATWG URL was the
 * largest cost regular mode had over reverse mode. Cleared when full, so any number of distinct
 * origins stays bounded.
 */
const parsedOrigins = new Map<string, ParsedOrigin>();
const MAX_PARSED_ORIGINS = 1024;

/** An authority with nothing WHATWG URL would need to decode: no userinfo, percent-escapes or odd characters. */
const PLAIN_AUTHORITY = /^[A-Za-z0-9.\-:[\]]+$/;

/**
 * A path and query WHATWG URL leaves exactly as sent: no characters it percent-encodes (quote,
 * backtick, braces, caret, pipe, backslash, spaces…), no fragment, and (checked apart) no dot
 * segment, plain or percent-encoded, and no empty query.
 */
const VERBATIM_PATH = /^\/[A-Za-z0-9\-._~!$&()*+,;=:@/%?]*$/;

/** The request-target of an absolute-form request. Throws BadRequestError for a malformed one. */
export function absoluteTarget(url: string): ParsedOrigin & { path: string } {
  const slash = url.indexOf("/", url.indexOf("//") + 2);
  if (slash > 0) {
    const prefix = url.slice(0, slash);
    const path = url.slice(slash);
    if (
      VERBATIM_PATH.test(path) && !path.endsWith("?") && !path.includes("/.") && !/%2e/i.test(path) &&
      PLAIN_AUTHORITY.test(prefix.slice(prefix.indexOf("//") + 2))
    ) {
      let origin = parsedOrigins.get(prefix);
      if (!origin) {
        origin = parseOrigin(prefix + "/", url);
        if (parsedOrigins.size >= MAX_PARSED_ORIGINS) parsedOrigins.clear();
        parsedOrigins.set(prefix, origin);
      }
      return { scheme: origin.scheme, host: origin.host, port: origin.port, authority: origin.authority, path };
    }
  }
  const u = parseUrl(url, url);
  return { ...originOf(u), path: u.pathname + u.search };
}

function parseUrl(text: string, asSent: string): URL {
  try {
    return new URL(text);
  } catch {
    throw new BadRequestError(`malformed absolute URL ${JSON.stringify(asSent)}`);
  }
}

function parseOrigin(text: string, asSent: string): ParsedOrigin {
  return originOf(parseUrl(text, asSent));
}

function originOf(u: URL): ParsedOrigin {
  const scheme = u.protocol === "https:" ? "https" : "http";
  return {
    scheme,
    host: u.hostname.replace(/^\[|\]$/g, ""),
    port: u.port ? Number(u.port) : scheme === "https" ? 443 : 80,
    authority: u.host,
  };
}

export function defaultPortFor(scheme: string): number {
  return scheme === "https" ? 443 : 80;
}

/** Reads a body into memory up to `limit` bytes; past that, hands back what it has and the rest stays unread. */
export async function readUpTo(stream: ClientRequest, limit: number): Promise<{ chunks: Buffer[]; size: number; ended: boolean }> {
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

export function hasNoBody(req: ClientRequest): boolean {
  if (req.httpVersionMajor === 2) return (req as Http2ServerRequest).stream.readableEnded || (req as Http2ServerRequest).stream.endAfterHeaders;
  const h = (req as IncomingMessage).headers;
  return h["content-length"] === undefined && h["transfer-encoding"] === undefined;
}

/** A request body that streams: first the chunks already read, then the rest as it arrives. */
export async function* bodyStream(req: ClientRequest, first: Buffer[], request: Request): AsyncGenerator<Buffer> {
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

