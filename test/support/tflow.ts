/**
 * One flow factory for every test, as mitmproxy's `tflow`: a finished-looking HTTPFlow built in
 * memory, without sockets. Defaults: GET https://example.com/index.html from 127.0.0.1:50123,
 * no response (pass `status` for one).
 */
import { HTTPFlow, Request, Response, newClientConnection, newServerConnection } from "../../src/core/flow.js";
import { Headers } from "../../src/core/headers.js";

export interface TFlowInit {
  method?: string;
  /** Absolute URL; sets scheme, host, port and path at once. */
  url?: string;
  scheme?: "http" | "https";
  host?: string;
  port?: number;
  path?: string;
  /** The request's authority (HTTP/2 :authority, or the CONNECT target); default none. */
  authority?: string;
  /** Request headers: [name, value, name, value, …] or a record. Default: Host and a curl User-Agent. */
  reqHeaders?: string[] | Record<string, string>;
  reqBody?: Buffer | string | null;
  /** Response status; undefined or null: no response yet. */
  status?: number | null;
  reason?: string;
  resHeaders?: string[] | Record<string, string>;
  resBody?: Buffer | string | null;
  /** Client IP address, or address and port (default port 50123). */
  client?: string | [string, number];
  /** When the request started (seconds since the epoch) and how long the exchange took. */
  start?: number;
  took?: number;
  /** A connection error instead of a response. */
  error?: string;
}

export function tflow(init: TFlowInit = {}): HTTPFlow {
  const url = init.url ? new URL(init.url) : null;
  const scheme = init.scheme ?? (url ? (url.protocol.slice(0, -1) as "http" | "https") : "https");
  const host = init.host ?? url?.hostname ?? "example.com";
  const port = init.port ?? (url?.port ? Number(url.port) : scheme === "https" ? 443 : 80);
  const start = init.start ?? 1_700_000_000;
  const req = new Request({
    method: init.method ?? "GET",
    scheme,
    host,
    port,
    path: init.path ?? (url ? url.pathname + url.search : "/index.html"),
    ...(init.authority !== undefined ? { authority: init.authority } : {}),
    httpVersion: "HTTP/1.1",
    // As a client writes it: the port only when it is not the scheme's default.
    headers: new Headers(init.reqHeaders ?? ["Host", port === (scheme === "https" ? 443 : 80) ? host : `${host}:${port}`, "User-Agent", "curl/8.0"]),
    content: init.reqBody == null ? null : Buffer.from(init.reqBody),
    timestampStart: start,
  });
  req.timestampEnd = start;
  const client = newClientConnection();
  client.peername = Array.isArray(init.client) ? init.client : [init.client ?? "127.0.0.1", 50123];
  client.timestampStart = start;
  const f = new HTTPFlow(client, newServerConnection(), req);
  f.serverConn.address = [host, port];
  const end = start + (init.took ?? 0.01);
  if (init.status != null) {
    const r = new Response({
      statusCode: init.status,
      reason: init.reason ?? "",
      headers: new Headers(init.resHeaders ?? ["Content-Type", "text/html; charset=utf-8"]),
      content: init.resBody == null ? null : Buffer.from(init.resBody),
      timestampStart: end,
    });
    r.timestampEnd = end;
    f.response = r;
  }
  if (init.error) f.error = { msg: init.error, timestamp: end };
  return f;
}
