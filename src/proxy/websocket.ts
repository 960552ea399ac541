/**
 * WebSocket: sluice completes the upgrade with the server first, then with the client using what
 * the server chose, and relays messages both ways, recording each on the flow.
 */
import type { IncomingMessage } from "node:http";
import type net from "node:net";
import type { ClientOptions, RawData, WebSocket } from "ws";
import { lazyModule } from "../core/lazy-module.js";
import { HTTPFlow, Response, newServerConnection, now, reasonPhrase } from "../core/flow.js";
import { Headers } from "../core/headers.js";
import type { ProxyContext } from "./context.js";
import { requestFromClient, BadRequestError } from "./client-request.js";
import type { ConnectionContext } from "./exchange.js";
import { completeResponse } from "./client-response.js";
import type { ClientUpstreams, UpstreamTlsSettings } from "./upstream.js";
import tls from "node:tls";
import { isIP } from "node:net";
import { RefusedTargetError, ownCheckingLookup, ownLiteralTarget } from "./guards.js";

/** ws, loaded at the first WebSocket upgrade (see core/lazy-module). */
const wsLib = lazyModule<typeof import("ws")>("ws");

/** Headers the ws client sets itself for the handshake; forwarding them would duplicate them. */
const HANDSHAKE_HEADERS = new Set([
  "host", "connection", "upgrade", "sec-websocket-key", "sec-websocket-version", "sec-websocket-extensions",
  "sec-websocket-protocol", "proxy-connection", "proxy-authorization",
]);

export function handleWebSocketUpgrade(
  ctx: ProxyContext,
  cc: ConnectionContext,
  req: IncomingMessage,
  socket: net.Socket,
  head: Buffer,
  tlsSettings: UpstreamTlsSettings,
): void {
  if ((req.headers.upgrade ?? "").toLowerCase() !== "websocket") {
    socket.end("HTTP/1.1 501 Not Implemented\r\nconnection: close\r\ncontent-length: 0\r\n\r\n");
    return;
  }
  let flow: HTTPFlow;
  try {
    flow = new HTTPFlow(cc.clientConn, newServerConnection(), requestFromClient(req, cc));
  } catch (err) {
    const msg = err instanceof BadRequestError ? err.message : String(err);
    socket.end(`HTTP/1.1 400 Bad Request\r\nconnection: close\r\ncontent-type: text/plain\r\n\r\nsluice: ${msg}\n`);
    return;
  }
  flow.live = true;
  flow.request.content = Buffer.alloc(0);
  flow.request.timestampEnd = now();
  void relay(ctx, flow, req, socket, head, tlsSettings, cc.upstreams);
}

/**
 * Upstream mode: the WebSocket goes through a CONNECT tunnel to the upstream proxy (for ws:// as
 * well, as browsers do: an upgrade is not a request a proxy can forward in absolute form), with
 * TLS to the server inside it for wss://.
 */
function throughUpstreamProxy(upstreams: ClientUpstreams, request: { scheme: string; host: string; port: number }, tlsSettings: UpstreamTlsSettings) {
  return (_opts: unknown, done: (err: Error | null, socket?: net.Socket) => void): undefined => {
    upstreams.openTunnel({ host: request.host, port: request.port }).then(
      (tunnel) => {
        if (request.scheme !== "https") return done(null, tunnel);
        const servername = isIP(request.host) ? undefined : request.host;
        done(null, tls.connect({ socket: tunnel, host: request.host, servername, ALPNProtocols: ["http/1.1"], rejectUnauthorized: tlsSettings.rejectUnauthorized, secureContext: tlsSettings.secureContext }));
      },
      (err: Error) => done(err),
    );
    return undefined;
  };
}

async function relay(ctx: ProxyContext, flow: HTTPFlow, req: IncomingMessage, socket: net.Socket, head: Buffer, tlsSettings: UpstreamTlsSettings, upstreams: ClientUpstreams): Promise<void> {
  await ctx.addons.trigger("requestHeaders", flow);
  await ctx.addons.trigger("request", flow);
  if (flow.isKilled) return void socket.destroy();
  if (flow.response) {
    // An addon answered the upgrade itself (e.g. a fault): no WebSocket.
    socket.end(completeResponse(flow.response));
    await ctx.addons.trigger("response", flow);
    flow.live = false;
    return;
  }

  const request = flow.request;
  const url = `${request.scheme === "https" ? "wss" : "ws"}://${request.host.includes(":") ? `[${request.host}]` : request.host}:${request.port}${request.path}`;
  const headers: Record<string, string> = {};
  for (const [name, value] of request.headers) if (!HANDSHAKE_HEADERS.has(name.toLowerCase())) headers[name] = value;
  const hostHeader = request.headers.get("host");
  if (hostHeader) headers["Host"] = hostHeader;
  const protocols = (request.headers.get("sec-websocket-protocol") ?? "").split(",").map((s) => s.trim()).filter(Boolean);
  const serverConn = flow.serverConn;
  serverConn.address = [request.host, request.port];
  serverConn.timestampStart = now();

  const refused = ownLiteralTarget(ctx.ownListeners, request.host, request.port);
  if (refused) {
    flow.error = { msg: refused.message, timestamp: now() };
    await ctx.addons.trigger("error", flow);
    flow.live = false;
    const body = `sluice: ${refused.message}\n`;
    socket.end(`HTTP/1.1 ${refused.status} ${reasonPhrase(refused.status)}\r\ncontent-type: text/plain\r\ncontent-length: ${Buffer.byteLength(body)}\r\nconnection: close\r\n\r\n${body}`);
    return;
  }
  const proxy = upstreams.upstreamProxy;
  if (proxy) serverConn.via = proxy.spec;
  const server = new (wsLib().WebSocket)(url, protocols, {
    lookup: ownCheckingLookup(ctx.ownListeners, request.port),
    ...(proxy ? { createConnection: throughUpstreamProxy(upstreams, request, tlsSettings) as unknown as ClientOptions["createConnection"] } : {}),
    headers,
    perMessageDeflate: false,
    rejectUnauthorized: tlsSettings.rejectUnauthorized,
    ca: tlsSettings.ca,
    handshakeTimeout: ctx.core.connect_timeout * 1000,
  });
  let upgraded = false;
  server.once("upgrade", (res) => {
    upgraded = true;
    const s = res.socket as net.Socket & { alpnProtocol?: string; getProtocol?: () => string | null };
    serverConn.peername = [s.remoteAddress ?? "", s.remotePort ?? 0];
    serverConn.timestampTcpSetup = serverConn.timestampStart;
    serverConn.tls = request.scheme === "https";
    if (s.getProtocol) serverConn.tlsVersion = s.getProtocol();
    flow.response = new Response({ statusCode: 101, reason: res.statusMessage ?? "Switching Protocols", headers: new Headers(res.rawHeaders.slice()), content: Buffer.alloc(0) });
    flow.response.timestampEnd = now();
  });
  server.once("unexpected-response", (_r, res) => {
    // The server refused the upgrade: relay its answer as a plain HTTP response.
    const chunks: Buffer[] = [];
    res.on("data", (c: Buffer) => chunks.push(c));
    res.on("end", async () => {
      const body = Buffer.concat(chunks);
      flow.response = new Response({ statusCode: res.statusCode ?? 502, reason: res.statusMessage ?? "", headers: new Headers(res.rawHeaders.slice()), content: body });
      flow.response.timestampEnd = now();
      await ctx.addons.trigger("response", flow);
      const head = `HTTP/1.1 ${flow.response.statusCode} ${flow.response.reason}\r\ncontent-length: ${body.length}\r\nconnection: close\r\n\r\n`;
      socket.end(Buffer.concat([Buffer.from(head), body]));
      flow.live = false;
    });
  });
  server.once("error", async (err: Error) => {
    if (upgraded) return;
    flow.error = { msg: `WebSocket connection to ${request.host}:${request.port} failed: ${err.message}`, timestamp: now() };
    await ctx.addons.trigger("error", flow);
    flow.live = false;
    const body = `sluice: ${flow.error.msg}\n`;
    const status = err instanceof RefusedTargetError ? err.status : 502;
    socket.end(`HTTP/1.1 ${status} ${reasonPhrase(status)}\r\ncontent-type: text/plain\r\ncontent-length: ${Buffer.byteLength(body)}\r\nconnection: close\r\n\r\n${body}`);
  });
  socket.once("close", () => {
    if (!upgraded) server.terminate();
  });

  server.once("open", () => {
    const chosen = server.protocol;
    const accept = new (wsLib().WebSocketServer)({
      noServer: true,
      perMessageDeflate: false,
      handleProtocols: () => chosen || false,
    });
    accept.handleUpgrade(req, socket, head, (client) => {
      flow.websocket = { messages: [], closedByClient: null, closeCode: null, closeReason: null, timestampEnd: null };
      void ctx.addons.trigger("response", flow);
      void ctx.addons.trigger("websocketStart", flow);
      const pipe = (from: WebSocket, to: WebSocket, fromClient: boolean) => {
        from.on("message", async (data: RawData, isBinary: boolean) => {
          const content = Array.isArray(data) ? Buffer.concat(data) : Buffer.isBuffer(data) ? data : Buffer.from(data as ArrayBuffer);
          const message = { type: (isBinary ? 2 : 1) as 1 | 2, fromClient, content, timestamp: now(), dropped: false, injected: false };
          flow.websocket!.messages.push(message);
          const pending = ctx.addons.trigger("websocketMessage", flow);
          if (pending) await pending;
          if (!message.dropped && to.readyState === wsLib().WebSocket.OPEN) to.send(message.content, { binary: message.type === 2 });
        });
        from.on("close", (code: number, reason: Buffer) => {
          const ws = flow.websocket!;
          if (ws.closedByClient === null) {
            ws.closedByClient = fromClient;
            ws.closeCode = code;
            ws.closeReason = reason.toString();
            ws.timestampEnd = now();
            serverConn.timestampEnd = now();
            flow.live = false;
            void ctx.addons.trigger("websocketEnd", flow);
          }
          const sendable = code >= 1000 && code < 5000 && code !== 1005 && code !== 1006 && code !== 1015;
          if (to.readyState === wsLib().WebSocket.OPEN) (sendable ? to.close(code, reason) : to.close());
        });
        from.on("error", () => to.terminate());
      };
      pipe(client, server, true);
      pipe(server, client, false);
    });
  });
}
