/**
 * Writing to the client: response heads without hop-by-hop headers, kept bodies (shaped or not),
 * plain-text errors, and ending a client's connection (HTTP/1) or stream (HTTP/2).
 */
import type { ServerResponse } from "node:http";
import type { Http2ServerRequest, Http2ServerResponse } from "node:http2";
import type { IncomingMessage } from "node:http";
import net from "node:net";
import tls from "node:tls";
import { reasonPhrase, type Response } from "../core/flow.js";

export type ClientRequest = IncomingMessage | Http2ServerRequest;
export type ClientResponse = ServerResponse | Http2ServerResponse;

/** Hop-by-hop headers (RFC 9110 §7.6.1) and ones undici frames itself: never forwarded. */
export const HOP_BY_HOP = new Set([
  "connection", "keep-alive", "proxy-connection", "proxy-authorization", "te", "trailer",
  "transfer-encoding", "upgrade", "expect", "http2-settings",
]);

export function clientWritable(res: ClientResponse): boolean {
  return !res.writableEnded && !(res as ServerResponse).destroyed && !(res.socket?.destroyed ?? false);
}

export function isHttp2(res: ClientResponse): res is Http2ServerResponse {
  return "stream" in res && !!res.stream;
}

/**
 * Whether a response's "close" means the client left before the answer was complete. HTTP/2's
 * compatibility response reports itself finished even when its stream was reset, so ask whether
 * it was ended instead.
 */
export function abandoned(res: ClientResponse): boolean {
  if (isHttp2(res)) return !res.writableEnded;
  return !res.writableFinished;
}

/** Ends the client's connection (HTTP/1) or stream (HTTP/2); `reset` sends a TCP RST. */
export function destroyClient(res: ClientResponse, mode: "close" | "reset" = "close"): void {
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

/**
 * Response headers for the client: hop-by-hop removed; an object for HTTP/2. `contentLength`,
 * when given, is the framing sluice sends instead of the recorded Content-Length: the flow keeps
 * the headers the server sent (a chunked answer stays chunked in a saved flow).
 */
export function writeHead(res: ClientResponse, response: Response, contentLength: string | null = null): void {
  const raw = response.headers.raw;
  if (isHttp2(res)) {
    const obj: Record<string, string | string[]> = {};
    for (let i = 0; i < raw.length; i += 2) {
      const name = raw[i]!.toLowerCase();
      if (HOP_BY_HOP.has(name) || name === "host") continue;
      if (contentLength !== null && name === "content-length") continue;
      const prev = obj[name];
      if (prev === undefined) obj[name] = raw[i + 1]!;
      else if (Array.isArray(prev)) prev.push(raw[i + 1]!);
      else obj[name] = [prev, raw[i + 1]!];
    }
    if (contentLength !== null) obj["content-length"] = contentLength;
    res.writeHead(response.statusCode, obj);
    return;
  }
  const list: string[] = [];
  for (let i = 0; i < raw.length; i += 2) {
    const lower = raw[i]!.toLowerCase();
    if (lower === "connection" || lower === "keep-alive" || lower === "proxy-connection" || lower === "transfer-encoding" || lower === "upgrade" || lower === "trailer") continue;
    if (contentLength !== null && lower === "content-length") continue;
    list.push(raw[i]!, raw[i + 1]!);
  }
  if (contentLength !== null) list.push("content-length", contentLength);
  (res as ServerResponse).writeHead(response.statusCode, response.reason || reasonPhrase(response.statusCode) || "Unknown", list);
}

/** Sends a response whose body is in memory; Content-Length follows the body actually sent. */
export function sendComplete(res: ClientResponse, response: Response, method: string): void {
  if (!clientWritable(res) || res.headersSent) return;
  const body = response.content ?? Buffer.alloc(0);
  const bodyless = method === "HEAD" || response.statusCode === 204 || response.statusCode === 304 || response.statusCode < 200;
  // Framing for this send only; the flow's headers stay as the server (or a hook) set them.
  let contentLength: string | null = null;
  if (!bodyless) {
    const declared = response.headers.get("content-length");
    if (declared !== String(body.length)) contentLength = String(body.length);
  }
  try {
    writeHead(res, response, contentLength);
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
export function writeThenCut(res: ClientResponse, chunk: Buffer): void {
  const cut = () => setImmediate(() => destroyClient(res));
  if (chunk.length > 0) return void (res as ServerResponse).write(chunk, cut);
  (res as ServerResponse).flushHeaders();
  const socket = (res as ServerResponse).socket;
  if (socket && !isHttp2(res)) socket.write("", cut);
  else cut();
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

/** An addon's response as HTTP/1.1 bytes that close the connection: its headers (framing replaced) and body. */
export function completeResponse(r: Response): Buffer {
  const body = r.content ?? Buffer.alloc(0);
  let head = `HTTP/1.1 ${r.statusCode} ${r.reason || reasonPhrase(r.statusCode)}\r\n`;
  for (const [name, value] of r.headers) {
    const lower = name.toLowerCase();
    if (HOP_BY_HOP.has(lower) || lower === "content-length") continue;
    head += `${name}: ${value.replace(/[\r\n]+/g, " ")}\r\n`;
  }
  head += `content-length: ${body.length}\r\nconnection: close\r\n\r\n`;
  return Buffer.concat([Buffer.from(head, "latin1"), body]);
}
