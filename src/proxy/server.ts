/**
 * The listener: accepts client connections and routes them by mode — explicit proxy requests and
 * CONNECT tunnels (regular, upstream) or server impersonation (reverse) — to HTTP/1.1 or HTTP/2,
 * intercepting TLS with leaf certificates from sluice's CA or passing it through untouched.
 */
import http from "node:http";
import http2 from "node:http2";
import net from "node:net";
import tls from "node:tls";
import { Duplex } from "node:stream";
import { HTTPFlow, Request, newClientConnection, newServerConnection, now, reasonPhrase, type ClientConnection } from "../core/flow.js";
import { Headers } from "../core/headers.js";
import type { ProxyContext } from "./context.js";
import { completeResponse, sendPlain } from "./client-response.js";
import { handleExchange, type ConnectionContext } from "./exchange.js";
import type { ProxyMode } from "./mode.js";
import { UNRECOGNIZED_NAME_ALERT, looksLikeTls, parseClientHello } from "./tls/client-hello.js";
import { HandshakeTurns } from "./tls/handshake-turns.js";
import { refuseLoopedRequest } from "./guards.js";
import { guardedTcpConnect } from "./guards.js";
import { ConnectionCapLog, MAX_HEADER_FIELDS, tooManyRequestHeaders, armDeadline, clientLimits, http09RequestLine, watchH2Session, watchRequestBody, type ClientLimits } from "./client-limits.js";
import { ClientUpstreams, upstreamTlsSettings, type UpstreamTarget, type UpstreamTlsSettings } from "./upstream.js";
import { handleWebSocketUpgrade } from "./websocket.js";
import { SocksReply, Socks5Refusal, socks5Handshake, socksReply } from "./socks5.js";
import { ServingCertificates } from "./tls/serving.js";
import { declareOptions } from "../core/options.js";

/** mitmproxy's proxyauth, as the addon that checks credentials declares it (absent when it is not loaded). */
const PROXYAUTH_OPTION = declareOptions({ proxyauth: { type: "optional-string", default: null, help: "Require proxy authentication" } });

const CONTEXT = Symbol("sluice.connection");
type WithContext = { [CONTEXT]?: ConnectionContext };

/** Reads the connection context from a socket (HTTP/2 hands out a proxy that forwards property reads). */
function contextOf(socket: unknown): ConnectionContext | undefined {
  return (socket as WithContext | null)?.[CONTEXT];
}

export class ProxyServer {
  readonly mode: ProxyMode;
  private readonly listener: net.Server;
  private readonly h1: http.Server;
  private readonly h2: http2.Http2Server;
  private readonly sockets = new Set<net.Socket>();
  private tlsSettings: UpstreamTlsSettings;
  private ignoreHosts: RegExp[] = [];
  private pendingH2Context: ConnectionContext | null = null;
  private readonly h2Contexts = new WeakMap<http2.Http2Session, ConnectionContext>();
  private allowHosts: RegExp[] = [];
  private unregister: (() => void) | null = null;
  private limits: ClientLimits;
  /** The header deadline of the connection whose HTTP/2 session is being created (see pendingH2Context). */
  private pendingH2Deadline: (() => void) | null = null;
  private readonly serving: ServingCertificates;
  /** New TLS handshakes, one per event-loop turn (see HandshakeTurns). */
  private readonly handshakeTurns = new HandshakeTurns();

  constructor(
    private readonly ctx: ProxyContext,
    mode: ProxyMode,
  ) {
    this.mode = mode;
    this.tlsSettings = upstreamTlsSettings(ctx);
    this.serving = new ServingCertificates(ctx.core, ctx.ca);
    this.compileHostPatterns();
    this.limits = clientLimits(ctx.core);
    ctx.options.onChange((changed) => {
      if (changed.has("ssl_insecure") || changed.has("ssl_verify_upstream_trusted_ca") || changed.has("tls_version_server_min") || changed.has("tls_version_server_max")) this.tlsSettings = upstreamTlsSettings(ctx);
      if (changed.has("certs") || changed.has("tls_version_client_min") || changed.has("tls_version_client_max")) this.serving.reload();
      if (changed.has("ignore_hosts") || changed.has("allow_hosts")) this.compileHostPatterns();
      if ([...changed].some((n) => n.startsWith("client_") || n === "max_client_connections")) this.applyLimits();
    });

    this.h1 = http.createServer({
      requestTimeout: 0, // uploads of any size; slow clients are the point of a debugging proxy
      headersTimeout: this.limits.headerMs,
      keepAliveTimeout: this.limits.keepAliveMs,
      // Node checks head deadlines on this tick; a second keeps the check cheap and the timeout close.
      connectionsCheckingInterval: 1000,
      maxHeaderSize: 256 * 1024,
      noDelay: true,
    });
    // One more than forwarded, so that a head over the limit is seen (and refused) rather than cut.
    this.h1.maxHeadersCount = MAX_HEADER_FIELDS + 1;
    // Node times request heads only on servers that emitted "listening"; sockets are handed to this
    // one, so it never would, and client_header_timeout would silently not apply.
    this.h1.emit("listening");
    this.h1.on("request", (req, res) => this.onRequest(req, res));
    this.h1.on("connect", (req: http.IncomingMessage, socket: net.Socket, head: Buffer) => this.onConnect(req, socket, head));
    this.h1.on("upgrade", (req: http.IncomingMessage, socket: net.Socket, head: Buffer) => {
      const cc = contextOf(socket);
      if (!cc) return socket.destroy();
      const loop = refuseLoopedRequest(this.ctx, req.headers.via);
      if (loop) return void socket.end(plainResponse(508, loop));
      handleWebSocketUpgrade(this.ctx, cc, req, socket, head, this.tlsSettings);
    });
    this.h1.on("clientError", (err: NodeJS.ErrnoException, socket: net.Socket) => this.onClientError(err, socket));

    this.h2 = http2.createServer({ maxSessionMemory: 64, maxHeaderListPairs: MAX_HEADER_FIELDS + 8 });
    this.h2.on("request", (req, res) => this.onRequest(req, res));
    this.h2.on("session", (session) => {
      if (this.pendingH2Context) this.h2Contexts.set(session, this.pendingH2Context);
      const who = this.pendingH2Context?.clientConn.peername?.join(":") ?? "client";
      watchH2Session(session, this.limits.keepAliveMs, this.pendingH2Deadline ?? (() => {}), ctx.log, who);
    });
    this.h2.on("sessionError", (err) => ctx.log.debug(`HTTP/2 session error: ${err.message}`));

    this.listener = net.createServer({ noDelay: true, pauseOnConnect: false }, (socket) => this.onConnection(socket));
    const capLog = new ConnectionCapLog(ctx.log);
    this.listener.on("drop", (data?: { remoteAddress?: string; remotePort?: number }) => capLog.dropped(this.limits.maxConnections, data ? `${data.remoteAddress}:${data.remotePort}` : undefined));
    this.applyLimits();
  }

  private applyLimits(): void {
    this.limits = clientLimits(this.ctx.core);
    this.h1.headersTimeout = this.limits.headerMs;
    this.h1.keepAliveTimeout = this.limits.keepAliveMs;
    this.listener.maxConnections = this.limits.maxConnections > 0 ? this.limits.maxConnections : Infinity;
  }

  /** Starts the header deadline for a connection Node's HTTP server does not have yet. */
  private headDeadline(socket: Duplex, clientConn: ClientConnection, phase: string, answer408 = false): () => void {
    const ms = this.limits.headerMs;
    return armDeadline(socket, ms, () => {
      this.ctx.log.info(`client ${clientConn.peername?.join(":") ?? "?"}: no complete request within ${ms / 1000}s (client_header_timeout, ${phase}): closed`);
      if (answer408) return plainResponse(408, `request timeout: no complete request head within ${ms / 1000}s (client_header_timeout)`);
    });
  }

  private compileHostPatterns(): void {
    const compile = (name: "ignore_hosts" | "allow_hosts") =>
      this.ctx.core[name].map((p) => {
        try {
          return new RegExp(p, "i");
        } catch (err) {
          throw new Error(`${name}: ${JSON.stringify(p)} is not a valid regular expression: ${(err as Error).message}`);
        }
      });
    // Which would win is a guess either way; mitmproxy refuses the pair too.
    if (this.ctx.core.ignore_hosts.length && this.ctx.core.allow_hosts.length) {
      throw new Error("ignore_hosts and allow_hosts cannot both be set: use --allow-hosts to intercept only the hosts it names, or --ignore-hosts to pass the hosts it names through");
    }
    this.ignoreHosts = compile("ignore_hosts");
    this.allowHosts = compile("allow_hosts");
  }

  listen(host: string, port: number): Promise<net.AddressInfo> {
    const backlog = this.ctx.core.backlog;
    if (!(backlog > 0)) return Promise.reject(new Error(`backlog must be a positive number of connections, got ${backlog}`));
    return new Promise((resolve, reject) => {
      const onError = (err: NodeJS.ErrnoException) => {
        const what = `cannot listen on ${host}:${port}`;
        if (err.code === "EADDRINUSE") reject(new Error(`${what}: the port is in use (mode ${this.mode.spec}); pick another with -p PORT or --mode ${this.mode.spec.replace(/@.*$/, "")}@PORT`));
        else if (err.code === "EACCES") reject(new Error(`${what}: permission denied (mode ${this.mode.spec}); use a port above 1023`));
        else if (err.code === "ENOTFOUND" || err.code === "EADDRNOTAVAIL" || err.code === "EAI_AGAIN") reject(new Error(`${what}: ${host} is not an address of this machine (${err.code}); use --listen-host 127.0.0.1, ::1 or 0.0.0.0`));
        else reject(new Error(`${what} (mode ${this.mode.spec}): ${err.message}`));
      };
      this.listener.once("error", onError);
      this.listener.listen(port, host, backlog, () => {
        this.listener.removeListener("error", onError);
        const address = this.listener.address() as net.AddressInfo;
        this.unregister = this.ctx.ownListeners.register("proxy", address);
        resolve(address);
      });
    });
  }

  address(): net.AddressInfo {
    return this.listener.address() as net.AddressInfo;
  }

  async close(): Promise<void> {
    this.unregister?.();
    this.unregister = null;
    await new Promise<void>((resolve) => {
      this.listener.close(() => resolve());
      for (const s of this.sockets) s.destroy();
    });
    this.h1.close();
    this.h2.close();
  }

  private onConnection(socket: net.Socket): void {
    this.sockets.add(socket);
    socket.setNoDelay(true);
    const clientConn = newClientConnection(this.mode.spec);
    clientConn.peername = [socket.remoteAddress ?? "", socket.remotePort ?? 0];
    clientConn.sockname = [socket.localAddress ?? "", socket.localPort ?? 0];
    clientConn.timestampStart = now();
    socket.on("error", (err) => this.ctx.log.debug(`client ${clientConn.peername?.join(":")}: ${err.message}`));
    const upstreams = new ClientUpstreams(this.ctx, clientConn, this.mode, () => this.tlsSettings, false);
    socket.once("close", () => {
      this.sockets.delete(socket);
      clientConn.timestampEnd = now();
      upstreams.close();
      this.ctx.addons.trigger("clientDisconnected", clientConn);
    });
    // An addon may refuse the client here (block_global, block_private) by setting its error.
    const admitting = this.ctx.addons.trigger("clientConnected", clientConn);
    if (admitting) void admitting.then(() => this.admit(socket, clientConn, upstreams));
    else this.admit(socket, clientConn, upstreams);
  }

  /** Routes a client the clientConnected hooks let in; closes one they refused, without a word (as mitmproxy). */
  private admit(socket: net.Socket, clientConn: ClientConnection, upstreams: ClientUpstreams): void {
    if (clientConn.error) {
      this.ctx.log.debug(`client ${clientConn.peername?.join(":") ?? "?"}: closed: ${clientConn.error}`);
      return void socket.destroy();
    }
    if (socket.destroyed) return;
    if (this.mode.kind === "reverse") {
      const target: UpstreamTarget = { scheme: this.mode.scheme, host: this.mode.host, port: this.mode.port };
      this.peekAndRoute(socket, clientConn, target, upstreams, this.mode.host);
      return;
    }
    if (this.mode.kind === "socks5") {
      void this.onSocks5Client(socket, clientConn, upstreams);
      return;
    }
    const cc: ConnectionContext = { clientConn, clientTls: false, target: null, absoluteForm: true, upstreams, rewriteHost: false };
    (socket as WithContext)[CONTEXT] = cc;
    this.awaitRequestLine(socket, clientConn, () => this.h1.emit("connection", socket));
  }

  /**
   * Reads until the first request line is complete, under the header deadline, then hands the
   * socket on. Node's parser would take `GET /` (HTTP/0.9, no version) as a request still
   * waiting for headers and hold the connection; it gets a 400 here instead.
   */
  private awaitRequestLine(socket: net.Socket, clientConn: ClientConnection, handOver: () => void): void {
    const disarm = this.headDeadline(socket, clientConn, "request line", true);
    let buffered: Buffer = Buffer.alloc(0);
    const onData = (chunk: Buffer) => {
      buffered = buffered.length ? Buffer.concat([buffered, chunk]) : chunk;
      const v09 = http09RequestLine(buffered);
      if (v09 === "incomplete") return;
      socket.removeListener("data", onData);
      disarm();
      if (v09) {
        this.ctx.log.info(`client ${clientConn.peername?.join(":") ?? "?"}: HTTP/0.9 request line ${JSON.stringify(buffered.subarray(0, buffered.indexOf(0x0a)).toString("latin1").trim().slice(0, 100))}: answered 400`);
        socket.end(plainResponse(400, "bad request: HTTP/0.9 request lines (no HTTP version) are not supported; send HTTP/1.0 or later"));
        return;
      }
      socket.pause();
      socket.unshift(buffered);
      handOver();
      socket.resume();
    };
    socket.on("data", onData);
  }

  /** HTTP/2 sessions are created synchronously on "connection": remember whose session it is. */
  private startH2Session(stream: Duplex, cc: ConnectionContext, disarmHead: () => void): void {
    this.pendingH2Context = cc;
    this.pendingH2Deadline = disarmHead;
    try {
      this.h2.emit("connection", stream);
    } finally {
      this.pendingH2Context = null;
      this.pendingH2Deadline = null;
    }
  }

  private onRequest(req: http.IncomingMessage | http2.Http2ServerRequest, res: http.ServerResponse | http2.Http2ServerResponse): void {
    const cc = "stream" in req ? this.h2Contexts.get(req.stream.session!) : contextOf(req.socket);
    if (!cc) {
      sendPlain(res, 500, "sluice: internal error: connection context missing\n");
      return;
    }
    const loop = refuseLoopedRequest(this.ctx, req.headers.via);
    if (loop) {
      req.resume();
      return sendPlain(res, 508, loop);
    }
    if (req.httpVersionMajor === 0) {
      if ("shouldKeepAlive" in res) res.shouldKeepAlive = false;
      return sendPlain(res, 400, "sluice: bad request: HTTP/0.9 request lines (no HTTP version) are not supported; send HTTP/1.0 or later\n");
    }
    const tooMany = tooManyRequestHeaders(req);
    if (tooMany) {
      this.ctx.log.info(`client ${cc.clientConn.peername?.join(":") ?? "?"}: ${req.method} ${req.url}: ${tooMany}: answered 431`);
      if ("shouldKeepAlive" in res) res.shouldKeepAlive = false;
      return sendPlain(res, 431, `sluice: ${tooMany}\n`);
    }
    watchRequestBody(req, res, this.limits.bodyMs, this.ctx.log, `client ${cc.clientConn.peername?.join(":") ?? "?"}`);
    handleExchange(this.ctx, cc, req, res).catch((err: Error) => {
      this.ctx.log.error(`internal error while handling ${req.method} ${req.url}: ${err.stack ?? err.message}`);
      sendPlain(res, 502, `sluice: internal error: ${err.message}\n`);
    });
  }

  /** Regular/upstream mode: CONNECT host:port. Answered at once; upstream is opened only when needed. */
  private async onConnect(req: http.IncomingMessage, socket: net.Socket, head: Buffer): Promise<void> {
    const outer = contextOf(socket);
    if (!outer) return void socket.destroy();
    const loop = refuseLoopedRequest(this.ctx, req.headers.via);
    if (loop) return void socket.end(plainResponse(508, loop));
    outer.upstreams.inboundVia = req.headers.via;
    const target = parseConnectTarget(req.url ?? "");
    if (!target) {
      socket.end(`HTTP/1.1 400 Bad Request\r\ncontent-type: text/plain\r\nconnection: close\r\n\r\nsluice: CONNECT needs host:port, got ${JSON.stringify(req.url)}\n`);
      return;
    }
    const flow = new HTTPFlow(
      outer.clientConn,
      newServerConnection(),
      new Request({ method: "CONNECT", scheme: "http", host: target.host, port: target.port, path: "", authority: req.url ?? "", httpVersion: `HTTP/${req.httpVersion}`, headers: new Headers(req.rawHeaders.slice()) }),
    );
    const pending = this.ctx.addons.trigger("httpConnect", flow);
    if (pending) await pending;
    if (flow.isKilled) return void socket.destroy();
    if (flow.response) {
      // Answered by an addon (a 407 from proxyauth, a script): the whole response, then close, as
      // the client would otherwise take the next bytes for the tunnel.
      socket.end(completeResponse(flow.response));
      return;
    }
    if (this.ctx.core.connection_strategy === "eager") {
      // mitmproxy's eager strategy: reach the server before telling the client the tunnel is up,
      // so an unreachable server fails the CONNECT itself; the connection is kept for the first request.
      try {
        await outer.upstreams.preconnect({ scheme: "https", host: target.host, port: target.port });
      } catch (err) {
        const body = `sluice: ${(err as Error).message}\n`;
        socket.end(`HTTP/1.1 502 Bad Gateway\r\ncontent-type: text/plain; charset=utf-8\r\ncontent-length: ${Buffer.byteLength(body)}\r\nconnection: close\r\n\r\n${body}`);
        return;
      }
    }
    socket.write("HTTP/1.1 200 Connection established\r\n\r\n");
    if (head.length) socket.unshift(head);
    this.peekAndRoute(socket, outer.clientConn, { scheme: "https", host: target.host, port: target.port }, outer.upstreams, target.host);
  }

  /**
   * socks5 mode: the SOCKS5 handshake names the destination, then the tunnel is routed exactly as
   * a CONNECT tunnel is (TLS intercepted or passed through, or plain HTTP).
   */
  private async onSocks5Client(socket: net.Socket, clientConn: ClientConnection, upstreams: ClientUpstreams): Promise<void> {
    const who = clientConn.peername?.join(":") ?? "client";
    const disarm = this.headDeadline(socket, clientConn, "SOCKS5 handshake");
    const options = this.ctx.options;
    // mitmproxy asks for credentials when its proxyauth option is set; the addon that owns that
    // option checks them in the socks5Auth hook.
    const authRequired = !!options.lookup(PROXYAUTH_OPTION)?.proxyauth;
    let request;
    try {
      request = await socks5Handshake(socket, {
        authRequired,
        authenticate: async (username, password) => {
          const data = { clientConn, username, password, valid: false };
          const pending = this.ctx.addons.trigger("socks5Auth", data);
          if (pending) await pending;
          return data.valid;
        },
      });
    } catch (err) {
      disarm();
      if (err instanceof Socks5Refusal) this.ctx.log.info(`client ${who}: ${err.message}`);
      else throw err;
      return;
    }
    disarm();
    const target: UpstreamTarget = { scheme: "https", host: request.host, port: request.port };
    if (this.ctx.core.connection_strategy === "eager") {
      try {
        await upstreams.preconnect(target);
      } catch (err) {
        this.ctx.log.info(`client ${who}: SOCKS5 CONNECT ${request.host}:${request.port}: ${(err as Error).message}: answered "host unreachable"`);
        return void socket.end(socksReply(SocksReply.hostUnreachable));
      }
    }
    if (socket.destroyed) return;
    socket.write(socksReply(SocksReply.succeeded));
    socket.pause();
    if (request.rest.length) socket.unshift(request.rest);
    this.peekAndRoute(socket, clientConn, target, upstreams, request.host);
    socket.resume();
  }

  /**
   * Looks at the first bytes of a connection (after CONNECT, or a reverse-mode client) and routes it:
   * TLS → intercept or pass through; otherwise plain HTTP/1.1 (or HTTP/2 with prior knowledge).
   */
  private peekAndRoute(socket: net.Socket, clientConn: ClientConnection, target: UpstreamTarget, upstreams: ClientUpstreams, fallbackSni: string): void {
    let buffered: Buffer = Buffer.alloc(0);
    const disarm = this.headDeadline(socket, clientConn, "TLS ClientHello or first request");
    const onData = (chunk: Buffer) => {
      buffered = buffered.length ? Buffer.concat([buffered, chunk]) : chunk;
      if (looksLikeTls(buffered)) {
        const hello = parseClientHello(buffered);
        if (hello === "incomplete") return;
        socket.removeListener("data", onData);
        if (hello?.badSni) {
          disarm();
          this.ctx.log.warn(
            `client ${clientConn.peername?.join(":") ?? "?"}: TLS ClientHello with server name ${hello.badSni}, which is not an ASCII host name (IDNA names are sent as xn--…): refused with alert unrecognized_name`,
          );
          socket.end(UNRECOGNIZED_NAME_ALERT);
          return;
        }
        socket.pause();
        socket.unshift(buffered);
        void this.onTlsClient(socket, clientConn, target, upstreams, hello?.sni ?? null, hello?.alpnProtocols ?? [], fallbackSni, hello?.acceptsEcdsa ?? false, disarm, hello?.malformedAlpn ?? null);
        return;
      }
      socket.removeListener("data", onData);
      socket.pause();
      socket.unshift(buffered);
      // Plain HTTP: in a tunnel the scheme is http; in reverse mode keep the configured server scheme.
      const plainTarget: UpstreamTarget = this.mode.kind === "reverse" ? target : { ...target, scheme: "http" };
      const cc: ConnectionContext = { clientConn, clientTls: false, target: plainTarget, absoluteForm: false, upstreams, rewriteHost: this.mode.kind === "reverse" && !this.ctx.core.keep_host_header };
      (socket as WithContext)[CONTEXT] = cc;
      if (buffered.subarray(0, 4).toString("latin1") === "PRI ") {
        // HTTP/2 with prior knowledge (h2c). The session takes over the socket's handle and reads
        // the unshifted bytes itself; resuming the JS stream now would steal its preface.
        this.startH2Session(socket, cc, disarm);
      } else {
        disarm();
        this.awaitRequestLine(socket, clientConn, () => this.h1.emit("connection", socket));
        socket.resume();
      }
    };
    socket.on("data", onData);
  }

  private async onTlsClient(
    socket: net.Socket,
    clientConn: ClientConnection,
    target: UpstreamTarget,
    upstreams: ClientUpstreams,
    sni: string | null,
    alpnOffers: string[],
    fallbackSni: string,
    acceptsEcdsa: boolean,
    disarmHead: () => void,
    malformedAlpn: string | null,
  ): Promise<void> {
    const hello = { clientConn, sni, alpnProtocols: alpnOffers, ignoreConnection: false };
    const host = sni ?? target.host;
    hello.ignoreConnection = this.shouldPassThrough(host);
    const pending = this.ctx.addons.trigger("tlsClientHello", hello);
    if (pending) await pending;
    if (hello.ignoreConnection) {
      disarmHead();
      return this.passThrough(socket, clientConn, { ...target, scheme: "https" }, upstreams);
    }

    const certHost = sni ?? fallbackSni;
    // upstream_cert, as mitmproxy: only when the server is reached before the client's handshake
    // (connection_strategy=eager); lazily, nothing is known of the server yet.
    let serverNames: string[] = [];
    if (this.ctx.core.upstream_cert && this.ctx.core.connection_strategy === "eager" && target.scheme === "https" && sni && !net.isIP(sni)) {
      try {
        serverNames = await upstreams.serverCertificateNames(target, sni);
      } catch (err) {
        this.ctx.log.info(`upstream_cert: could not learn ${target.host}:${target.port}'s certificate names (${(err as Error).message}); the certificate for the client names ${sni} only`);
      }
      if (socket.destroyed) return;
    }
    const served = this.ctx.core.http2 && alpnOffers.includes("h2") ? ["h2", "http/1.1"] : ["http/1.1"];
    const keyChoice = this.ctx.core.ssl_leaf_key_type;
    const keyType = keyChoice === "rsa" || (keyChoice === "auto" && !acceptsEcdsa) ? "rsa" : "ecdsa";
    let leaf: Awaited<ReturnType<ServingCertificates["certificateFor"]>>;
    try {
      leaf = await this.serving.certificateFor(certHost, keyType, serverNames);
    } catch (err) {
      this.ctx.log.error(`cannot make a certificate for ${certHost}: ${(err as Error).message}`);
      return void socket.destroy();
    }
    if (socket.destroyed) return;
    await this.handshakeTurns.next();
    if (socket.destroyed) return;
    // The context is taken as the TLS socket is made, in one turn: a new leaf's may be shared (see handshakeContext).
    const tlsSocket = new tls.TLSSocket(socket, {
      isServer: true,
      secureContext: leaf.handshakeContext(),
      ALPNProtocols: served,
    });
    // No socket.resume() here: the TLS socket reads the bytes we unshifted on its first tick,
    // and resuming the raw socket would flow them away to nobody first.
    tlsSocket.once("error", (err: NodeJS.ErrnoException) => {
      if (!clientConn.timestampTlsSetup) this.reportClientTlsFailure(err, clientConn, certHost, { malformedAlpn, offered: alpnOffers, served });
      else this.ctx.log.debug(`client ${clientConn.peername?.join(":")} TLS error: ${err.message}`);
    });
    tlsSocket.once("secure", () => {
      clientConn.tls = true;
      clientConn.sni = sni;
      clientConn.alpnOffers = alpnOffers;
      clientConn.alpn = tlsSocket.alpnProtocol || null;
      clientConn.tlsVersion = tlsSocket.getProtocol();
      clientConn.cipher = tlsSocket.getCipher()?.name ?? null;
      clientConn.timestampTlsSetup = now();
      clientConn.certificateList = [leaf.certPem];
      const isH2 = tlsSocket.alpnProtocol === "h2";
      // A fresh upstream set that knows whether to offer h2 to the server as this client speaks it.
      const scoped = isH2 ? new ClientUpstreams(this.ctx, clientConn, this.mode, () => this.tlsSettings, true) : upstreams;
      scoped.inboundVia = upstreams.inboundVia;
      if (isH2) tlsSocket.once("close", () => scoped.close());
      const cc: ConnectionContext = {
        clientConn,
        clientTls: true,
        target,
        absoluteForm: false,
        upstreams: scoped,
        rewriteHost: this.mode.kind === "reverse" && !this.ctx.core.keep_host_header,
      };
      (tlsSocket as WithContext)[CONTEXT] = cc;
      if (isH2) this.startH2Session(streamOver(tlsSocket), cc, disarmHead);
      else {
        // From here Node's HTTP server times the request head.
        disarmHead();
        this.h1.emit("connection", tlsSocket);
      }
    });
  }

  private shouldPassThrough(host: string): boolean {
    if (this.allowHosts.length) return !this.allowHosts.some((r) => r.test(host));
    return this.ignoreHosts.some((r) => r.test(host));
  }

  /** `--ignore-hosts`: splice the client to the server without looking inside. */
  private passThrough(socket: net.Socket, clientConn: ClientConnection, target: UpstreamTarget, upstreams: ClientUpstreams): void {
    const own = this.ctx.ownListeners;
    // Through an upstream proxy the tunnel carries upstream_auth and Via, as intercepted HTTPS does.
    const upstream = this.mode.kind === "upstream" ? upstreams.openTunnel(target) : guardedTcpConnect(own, target.host, target.port);
    upstream.then(
      (server) => {
        server.on("error", () => socket.destroy());
        socket.on("error", () => server.destroy());
        socket.pipe(server);
        server.pipe(socket);
        socket.resume();
      },
      (err: Error) => {
        this.ctx.log.warn(`pass-through to ${target.host}:${target.port} failed: ${err.message}`);
        socket.destroy();
      },
    );
    this.ctx.log.debug(`passing ${clientConn.peername?.join(":")} → ${target.host}:${target.port} through untouched`);
  }

  private reportClientTlsFailure(err: NodeJS.ErrnoException, clientConn: ClientConnection, host: string, alpn: { malformedAlpn: string | null; offered: string[]; served: string[] }): void {
    const who = clientConn.peername?.join(":") ?? "client";
    const alert = /alert (?:number )?\d*\s*|sslv3 alert |tlsv1 alert /i;
    const msg = err.message.trim();
    // A Python client racing itself (see URLLIB3_ALPN_RACE) sends freed heap bytes as its ALPN list:
    // mostly badly framed (decode_error), sometimes framed well but naming no protocol.
    if (alpn.malformedAlpn) {
      // The client's own bytes are broken, and no TLS server would take them: say so, not "failed".
      const openssl = /SSL routines:([^:]+):([^:]+)/.exec(msg);
      const refusal = openssl?.[1] === "tls_parse_ctos_alpn" ? "alert decode_error" : `OpenSSL's ${openssl ? `${openssl[1]}: ${openssl[2]}` : msg}`;
      this.ctx.log.warn(`client ${who} sent a malformed TLS ClientHello for ${host}: its ALPN extension holds ${alpn.malformedAlpn}; refused with ${refusal}, as any TLS server refuses it. ${URLLIB3_ALPN_RACE}`);
      return;
    }
    if (/no application protocol/i.test(msg)) {
      const garbled = alpn.offered.some((name) => !/^[\x21-\x7e]+$/.test(name));
      this.ctx.log.warn(
        `client ${who} offered the ALPN protocols ${alpn.offered.map((n) => JSON.stringify(n)).join(", ")} for ${host}, none of which sluice speaks here (${alpn.served.join(", ")}): refused with alert no_application_protocol` +
          (garbled ? `. Those are not protocol names: ${URLLIB3_ALPN_RACE}` : ""),
      );
      return;
    }
    const rejectedCert = /unknown ca|bad certificate|certificate unknown|unsupported certificate|access denied|decrypt error/i.test(msg);
    if (rejectedCert) {
      this.ctx.log.warn(
        `client ${who} rejected sluice's certificate for ${host} (${msg.replace(alert, "").trim()}): ` +
          `the client does not trust sluice's CA; trust ${this.ctx.ca.files.certPem} (see \`sluice ca\`) or pass ${host} through with --ignore-hosts`,
      );
    } else if (err.code === "ECONNRESET" || /socket hang up|EOF/i.test(msg)) {
      this.ctx.log.warn(
        `client ${who} closed the connection during the TLS handshake for ${host}: it probably does not trust sluice's CA; trust ${this.ctx.ca.files.certPem} (see \`sluice ca\`)`,
      );
    } else {
      this.ctx.log.warn(`TLS handshake with client ${who} for ${host} failed: ${msg}`);
    }
  }

  /** Malformed requests get a 400 that says why; the proxy keeps serving everyone else. */
  private onClientError(err: NodeJS.ErrnoException, socket: net.Socket): void {
    const who = contextOf(socket)?.clientConn.peername?.join(":") ?? "client";
    // ECONNRESET, or a connection closed mid-request (HPE_INVALID_EOF_STATE: e.g. a client that
    // stops uploading once it has its answer): the client left; nothing was malformed.
    if (err.code === "ECONNRESET" || err.code === "HPE_INVALID_EOF_STATE" || !socket.writable) {
      socket.destroy();
      return;
    }
    if (err.code === "ERR_HTTP_REQUEST_TIMEOUT") {
      const seconds = this.limits.headerMs / 1000;
      this.ctx.log.info(`${who}: no complete request head within ${seconds}s (client_header_timeout): answered 408 and closed`);
      socket.end(plainResponse(408, `request timeout: no complete request head within ${seconds}s (client_header_timeout)`));
      return;
    }
    const reason = err.code === "HPE_HEADER_OVERFLOW" ? "request headers too large" : `malformed HTTP request (${err.code ?? "parse error"}: ${err.message})`;
    this.ctx.log.info(`${who}: ${reason}`);
    const body = `sluice: bad request: ${reason}\n`;
    const status = err.code === "HPE_HEADER_OVERFLOW" ? "431 Request Header Fields Too Large" : "400 Bad Request";
    socket.end(`HTTP/1.1 ${status}\r\ncontent-type: text/plain; charset=utf-8\r\ncontent-length: ${Buffer.byteLength(body)}\r\nconnection: close\r\n\r\n${body}`);
  }
}

/**
 * A plain Duplex over a server-side TLS socket. Node's HTTP/2 session cannot take over the read
 * side of a TLS socket created by hand (the decrypted bytes stay in the socket's JS buffer), but
 * it reads any Duplex through JS streams.
 */
function streamOver(tlsSocket: tls.TLSSocket): Duplex {
  const duplex = new Duplex({
    read() {
      tlsSocket.resume();
    },
    write(chunk: Buffer, _enc, cb) {
      tlsSocket.write(chunk, cb);
    },
    final(cb) {
      tlsSocket.end(cb);
    },
    destroy(err, cb) {
      tlsSocket.destroy(err ?? undefined);
      cb(err);
    },
  });
  tlsSocket.on("data", (chunk: Buffer) => {
    if (!duplex.push(chunk)) tlsSocket.pause();
  });
  tlsSocket.once("end", () => duplex.push(null));
  tlsSocket.once("close", () => duplex.destroy());
  tlsSocket.on("error", (err) => duplex.destroy(err));
  return duplex;
}

/** Why a client's ClientHello carries a broken ALPN list, and what to do: the one cause seen so far. */
const URLLIB3_ALPN_RACE =
  "The client built a broken hello: Python clients on urllib3 (boto3, requests) that open connections from several threads at once do, rarely, as urllib3 sets ALPN on their shared SSLContext for every connection while another thread copies it; retry, or open connections from one thread";

/** A whole HTTP/1.1 answer that closes the connection, for sockets no response object owns. */
function plainResponse(status: number, text: string): string {
  const body = `sluice: ${text}\n`;
  return `HTTP/1.1 ${status} ${reasonPhrase(status)}\r\ncontent-type: text/plain; charset=utf-8\r\ncontent-length: ${Buffer.byteLength(body)}\r\nconnection: close\r\n\r\n${body}`;
}

function parseConnectTarget(authority: string): { host: string; port: number } | null {
  const m = /^\[([^\]]+)\]:(\d+)$/.exec(authority) ?? /^([^:]+):(\d+)$/.exec(authority);
  if (!m) return null;
  const port = Number(m[2]);
  if (!(port > 0 && port < 65536)) return null;
  return { host: m[1]!, port };
}
