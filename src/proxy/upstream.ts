/**
 * Server-side connections. Each client connection gets its own upstream connections, opened lazily
 * when a request first needs one (so faults, map-remote and replay work with the real host
 * unreachable), and reused for its later requests, as mitmproxy does; that keeps every flow's
 * `serverConn` and timings true to the socket that carried it.
 *
 * undici drives HTTP/1.1 and HTTP/2 (chosen by ALPN, as the server supports); sluice's own
 * connector opens the sockets so it can record timings and TLS details and go through an
 * upstream proxy.
 */
import http from "node:http";
import net from "node:net";
import tls from "node:tls";
import { readFileSync } from "node:fs";
import { createRequire } from "node:module";
import type { Client as UndiciClient } from "undici";
import { newServerConnection, now, type ClientConnection, type ServerConnection } from "../core/flow.js";
import { clientCertFileFor, tlsVersionBounds, type VersionBounds } from "./tls/serving.js";
import type { ProxyContext } from "./context.js";
import type { ProxyMode } from "./mode.js";
import { guardedTcpConnect } from "./guards.js";
import type { OwnListeners } from "../core/own-listeners.js";

/**
 * undici's Client from its own file, not the package's index: the index also loads fetch, the
 * WebSocket and EventSource clients, the cache and mock agents and every interceptor (~110 files,
 * ~8 MB of RSS at start; issue 20: idle RSS ≤ 70 MB), none of which the proxy uses. The Client is
 * the same class the index exports; its HTTP/1.1 parser (llhttp, WebAssembly) is compiled on the
 * first upstream connection, as before.
 */
const Client = createRequire(import.meta.url)("undici/lib/dispatcher/client.js") as typeof UndiciClient;
type Client = UndiciClient;

export interface UpstreamTarget {
  scheme: "http" | "https";
  host: string;
  port: number;
}

interface Entry {
  client: Client;
  /** The connection currently serving this origin for this client (replaced on reconnect). */
  serverConn: ServerConnection;
}

/** Upstream TLS settings derived from options; rebuilt on `configure`. */
export interface UpstreamTlsSettings {
  rejectUnauthorized: boolean;
  /** The extra CA (plus the system roots), kept for clients that take CA lists (WebSocket). */
  ca: string[] | undefined;
  /**
   * Built once: a context with ~150 root certificates costs ~20 ms of CPU to build, far too much
   * to pay on every upstream connection.
   */
  secureContext: tls.SecureContext | undefined;
  /** tls_version_server_min/max. */
  bounds: VersionBounds;
  /** Contexts that present a client certificate (client_certs), by PEM file. */
  clientCertContexts: Map<string, tls.SecureContext>;
}

export function upstreamTlsSettings(ctx: ProxyContext): UpstreamTlsSettings {
  const insecure = ctx.core.ssl_insecure;
  const extra = ctx.core.ssl_verify_upstream_trusted_ca;
  let ca: string[] | undefined;
  if (extra) {
    let pem: string;
    try {
      pem = readFileSync(extra, "utf8");
    } catch (err) {
      throw new Error(`ssl_verify_upstream_trusted_ca: cannot read ${extra}: ${(err as Error).message}; give a PEM file of the CA certificates to trust`);
    }
    // An empty or DER file would add no CA, and the server's certificate would then be refused as
    // untrusted with advice to set this very option: refused here instead, as OpenSSL refuses it in mitmproxy.
    const certificates = pem.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g);
    if (!certificates) throw new Error(`ssl_verify_upstream_trusted_ca: ${extra} holds no PEM certificate (-----BEGIN CERTIFICATE-----); give a PEM file of the CA certificates to trust (DER: openssl x509 -inform der -in FILE -out FILE.pem)`);
    ca = [...tls.rootCertificates, ...certificates];
  }
  const bounds = tlsVersionBounds(ctx.core, "server");
  const custom = ca || bounds.minVersion || bounds.maxVersion;
  return { rejectUnauthorized: !insecure, ca, secureContext: custom ? tls.createSecureContext({ ca, ...bounds }) : undefined, bounds, clientCertContexts: new Map() };
}

/** A context that presents the client certificate in `pemFile` (certificate and key), cached. */
function clientCertContext(settings: UpstreamTlsSettings, pemFile: string): tls.SecureContext {
  let context = settings.clientCertContexts.get(pemFile);
  if (context) return context;
  let pem: string;
  try {
    pem = readFileSync(pemFile, "utf8");
  } catch (err) {
    throw new Error(`client_certs: cannot read ${pemFile}: ${(err as Error).message}`);
  }
  try {
    context = tls.createSecureContext({ ca: settings.ca, cert: pem, key: pem, ...settings.bounds });
  } catch (err) {
    throw new Error(`client_certs: ${pemFile} must hold a certificate and its private key in PEM: ${(err as Error).message}`);
  }
  settings.clientCertContexts.set(pemFile, context);
  return context;
}

/**
 * What closing a client's upstream connections hands undici: the error it would make itself, made
 * once. Made per close, its stack trace was captured, then formatted when Node's stream
 * destroy read it: ~4% of the CPU when every client connection carries one request.
 */
const { ClientDestroyedError } = createRequire(import.meta.url)("undici/lib/core/errors.js") as typeof import("undici").errors;
const CLIENT_GONE = new ClientDestroyedError();
void CLIENT_GONE.stack;

/** The upstream connections of one client connection. */
export class ClientUpstreams {
  private entries = new Map<string, Entry>();
  private closed = false;
  /**
   * The Via of the CONNECT that opened this tunnel, if any: carried on in the CONNECTs this
   * tunnel's requests make to an upstream proxy, so a loop of proxies is seen however it passes TLS.
   */
  inboundVia: string | undefined;
  /** Sockets opened ahead of the first request (connection_strategy=eager), by target. */
  private readonly preopened = new Map<string, net.Socket>();

  constructor(
    private readonly ctx: ProxyContext,
    private readonly clientConn: ClientConnection,
    private readonly mode: ProxyMode,
    private readonly tlsSettings: () => UpstreamTlsSettings,
    private readonly clientSpeaksH2: boolean,
  ) {}

  /** The undici client and current server connection for `target`, created on first use. */
  entryFor(target: UpstreamTarget): Entry {
    const key = `${target.scheme}://${target.host}:${target.port}`;
    let entry = this.entries.get(key);
    if (entry) return entry;
    const hostForUrl = net.isIPv6(target.host) ? `[${target.host}]` : target.host;
    const viaHttpProxy = this.mode.kind === "upstream" && target.scheme === "http";
    // Through an upstream proxy, plain HTTP goes to the proxy in absolute form; HTTPS is tunnelled.
    const origin = viaHttpProxy ? `http://${this.mode.host}:${this.mode.port}` : `${target.scheme}://${hostForUrl}:${target.port}`;
    const connectTimeout = this.ctx.core.connect_timeout * 1000;
    const newEntry: Entry = { client: undefined as unknown as Client, serverConn: newServerConnection() };
    newEntry.client = new Client(origin, {
      connect: (_opts, callback) => {
        this.connect(target, newEntry, connectTimeout).then(
          (socket) => callback(null, socket),
          (err: Error) => callback(err, null),
        );
      },
      allowH2: this.clientSpeaksH2 && target.scheme === "https" && this.ctx.core.http2,
      pipelining: 1,
      keepAliveTimeout: 30_000,
      headersTimeout: this.ctx.core.read_timeout * 1000,
      bodyTimeout: this.ctx.core.read_timeout * 1000,
      strictContentLength: false,
      maxHeaderSize: 256 * 1024,
    });
    this.entries.set(key, newEntry);
    entry = newEntry;
    return entry;
  }

  /**
   * connection_strategy=eager: open the TCP connection to `target` (through the upstream proxy in
   * upstream mode) now; the first request to it uses this socket. Throws a sentence on failure.
   */
  async preconnect(target: UpstreamTarget): Promise<void> {
    const key = `${target.scheme}://${target.host}:${target.port}`;
    if (this.preopened.has(key) || this.entries.has(key)) return;
    const timeoutMs = this.ctx.core.connect_timeout * 1000;
    try {
      const socket = await withTimeout(this.openRaw(target), timeoutMs, `connect to ${target.host}:${target.port} timed out after ${timeoutMs / 1000}s`);
      socket.once("close", () => this.preopened.get(key) === socket && this.preopened.delete(key));
      if (this.closed) socket.destroy();
      else this.preopened.set(key, socket);
    } catch (err) {
      throw new Error(describeConnectError(err as NodeJS.ErrnoException, target));
    }
  }

  private openRaw(target: UpstreamTarget): Promise<net.Socket> {
    const own = this.ctx.ownListeners;
    if (this.mode.kind === "upstream") {
      const mode = this.mode;
      return target.scheme === "https" ? this.openTunnel(target) : connectToProxy(mode, own, this.tlsSettings()).catch((err: NodeJS.ErrnoException) => {
        throw upstreamProxyError(err, mode, target);
      });
    }
    return guardedTcpConnect(own, target.host, target.port);
  }

  /**
   * Upstream mode: a CONNECT tunnel to `target` through the upstream proxy, carrying upstream_auth
   * and the Via loop token. Used for HTTPS, TLS passed through (ignore_hosts) and WebSockets.
   */
  openTunnel(target: { host: string; port: number }): Promise<net.Socket> {
    const mode = this.mode;
    if (mode.kind !== "upstream") return Promise.reject(new Error("a CONNECT tunnel needs upstream mode"));
    return tunnelThroughProxy(mode, target, this.ctx.ownListeners, this.inboundVia, this.proxyAuthorization(), this.tlsSettings()).catch((err: NodeJS.ErrnoException) => {
      throw upstreamProxyError(err, mode, { scheme: "https", ...target });
    });
  }

  /** The upstream proxy, when this client's listener chains through one. */
  get upstreamProxy(): Extract<ProxyMode, { kind: "upstream" }> | null {
    return this.mode.kind === "upstream" ? this.mode : null;
  }

  /**
   * upstream_cert: the DNS names (CN and subjectAltName) of the certificate `target` presents for
   * `servername`, learned on a short TLS connection of their own (verified as any upstream
   * connection is) before the client's handshake is answered. Throws a sentence on failure.
   */
  async serverCertificateNames(target: UpstreamTarget, servername: string): Promise<string[]> {
    const timeoutMs = this.ctx.core.connect_timeout * 1000;
    const settings = this.tlsSettings();
    const learn = async () => {
      const raw = await this.openRaw(target);
      const secure = tls.connect({ socket: raw, host: target.host, servername, ALPNProtocols: ["http/1.1"], rejectUnauthorized: settings.rejectUnauthorized, secureContext: settings.secureContext });
      try {
        await new Promise<void>((resolve, reject) => {
          secure.once("secureConnect", resolve);
          secure.once("error", reject);
        });
        return certificateDnsNames(secure.getPeerCertificate());
      } finally {
        secure.destroy();
      }
    };
    try {
      return await withTimeout(learn(), timeoutMs, `connect to ${target.host}:${target.port} timed out after ${timeoutMs / 1000}s`);
    } catch (err) {
      throw new Error(describeConnectError(err as NodeJS.ErrnoException, target));
    }
  }

  /** `upstream_auth=user:pass` as a Basic Proxy-Authorization value, for the upstream proxy. */
  proxyAuthorization(): string | null {
    if (this.mode.kind !== "upstream") return null;
    const auth = this.ctx.core.upstream_auth;
    return auth ? `Basic ${Buffer.from(auth, "utf8").toString("base64")}` : null;
  }

  /** Whether plain-HTTP requests to `target` must carry an absolute-form URL (upstream proxy). */
  usesAbsoluteForm(target: UpstreamTarget): boolean {
    return this.mode.kind === "upstream" && target.scheme === "http";
  }

  private async connect(target: UpstreamTarget, entry: Entry, timeoutMs: number): Promise<net.Socket> {
    if (this.closed) throw new Error("client connection closed");
    const conn = newServerConnection();
    conn.address = [target.host, target.port];
    conn.timestampStart = now();
    if (this.mode.kind === "upstream") conn.via = this.mode.spec;
    entry.serverConn = conn;
    const hookData = { clientConn: this.clientConn, serverConn: conn };
    const pending = this.ctx.addons.trigger("serverConnect", hookData);
    if (pending) await pending;
    if (conn.error) throw new Error(conn.error);

    let socket: net.Socket;
    try {
      socket = await withTimeout(this.openSocket(target, conn), timeoutMs, `connect to ${target.host}:${target.port}${this.mode.kind === "upstream" ? ` through the upstream proxy ${this.mode.host}:${this.mode.port}` : ""} timed out after ${timeoutMs / 1000}s`);
    } catch (err) {
      conn.error = describeConnectError(err as NodeJS.ErrnoException, target);
      conn.timestampEnd = now();
      // A refusal (sluice's own listener, a loop) keeps its status: 403 or 508 rather than 502.
      throw Object.assign(new Error(conn.error), { code: (err as NodeJS.ErrnoException).code, sluiceServerConn: conn, sluiceStatus: (err as { status?: number }).status });
    }
    socket.once("close", () => {
      conn.timestampEnd = now();
      this.ctx.addons.trigger("serverDisconnected", hookData);
    });
    const connected = this.ctx.addons.trigger("serverConnected", hookData);
    if (connected) await connected;
    return socket;
  }

  private async openSocket(target: UpstreamTarget, conn: ServerConnection): Promise<net.Socket> {
    const key = `${target.scheme}://${target.host}:${target.port}`;
    const early = this.preopened.get(key);
    this.preopened.delete(key);
    const raw = early && !early.destroyed ? early : await this.openRaw(target);
    conn.timestampTcpSetup = now();
    conn.peername = raw.remoteAddress ? [raw.remoteAddress, raw.remotePort ?? 0] : null;
    conn.sockname = raw.localAddress ? [raw.localAddress, raw.localPort ?? 0] : null;
    if (target.scheme === "http") return raw;

    const settings = this.tlsSettings();
    const alpn = this.clientSpeaksH2 && this.ctx.core.http2 ? ["h2", "http/1.1"] : ["http/1.1"];
    const servername = net.isIP(target.host) ? undefined : target.host;
    const clientCert = clientCertFileFor(this.ctx.core, servername ?? target.host);
    const secure = tls.connect({
      socket: raw,
      host: target.host, // what the certificate is checked against (an IP needs its IP SAN)
      servername,
      ALPNProtocols: alpn,
      rejectUnauthorized: settings.rejectUnauthorized,
      secureContext: clientCert ? clientCertContext(settings, clientCert) : settings.secureContext,
    });
    await new Promise<void>((resolve, reject) => {
      secure.once("secureConnect", resolve);
      secure.once("error", reject);
    });
    conn.tls = true;
    conn.sni = servername ?? null;
    conn.alpnOffers = alpn;
    conn.alpn = secure.alpnProtocol || null;
    conn.tlsVersion = secure.getProtocol();
    conn.cipher = secure.getCipher()?.name ?? null;
    conn.timestampTlsSetup = now();
    const peer = secure.getPeerCertificate(true);
    conn.certificateList = certificateChainPem(peer);
    return secure;
  }

  /** Closes every upstream connection of this client (client went away). */
  close(): void {
    this.closed = true;
    for (const socket of this.preopened.values()) socket.destroy();
    this.preopened.clear();
    for (const entry of this.entries.values()) entry.client.destroy(CLIENT_GONE).catch(() => {});
    this.entries.clear();
  }
}

/**
 * HTTP CONNECT through the upstream proxy, using Node's own client. The CONNECT carries this
 * instance's Via token, so a chain that leads back here is answered 508 instead of looping.
 */
export async function tunnelThroughProxy(mode: Extract<ProxyMode, { kind: "upstream" }>, target: { host: string; port: number }, own: OwnListeners, inboundVia: string | undefined, proxyAuthorization: string | null, tlsSettings: UpstreamTlsSettings): Promise<net.Socket> {
  const authority = `${net.isIPv6(target.host) ? `[${target.host}]` : target.host}:${target.port}`;
  const proxySocket = await connectToProxy(mode, own, tlsSettings);
  return new Promise((resolve, reject) => {
    // No `agent: false`: with an agent, Node ignores createConnection and dials a connection of its
    // own (plain TCP: no TLS to an https upstream proxy, and no own-listener check).
    const req = http.request({ host: mode.host, port: mode.port, method: "CONNECT", path: authority, headers: { host: authority, via: inboundVia ? `${inboundVia}, ${own.viaEntry()}` : own.viaEntry(), ...(proxyAuthorization ? { "proxy-authorization": proxyAuthorization } : {}) }, createConnection: () => proxySocket });
    req.once("connect", (res, socket, head) => {
      if (res.statusCode !== 200) {
        socket.destroy();
        // A loop found further down the chain stays a 508 for the client.
        const loop = res.statusCode === 508;
        const what = `upstream proxy ${mode.host}:${mode.port} refused CONNECT ${authority}: ${res.statusCode} ${res.statusMessage}`;
        reject(Object.assign(new Error(loop ? `loop detected: ${what} (the chain of proxies leads back to one it already passed)` : what), { code: "EPROXY", status: loop ? 508 : undefined }));
        return;
      }
      if (head.length) socket.unshift(head);
      socket.setNoDelay(true);
      resolve(socket);
    });
    req.once("response", (res) => {
      res.resume();
      reject(Object.assign(new Error(`upstream proxy ${mode.host}:${mode.port} answered CONNECT with ${res.statusCode}`), { code: "EPROXY" }));
    });
    req.once("error", reject);
    req.end();
  });
}

/**
 * A connection to the upstream proxy itself: TCP, and TLS for `upstream:https://…`, verified like
 * any server (ssl_insecure, ssl_verify_upstream_trusted_ca, tls_version_server_min/max).
 */
export async function connectToProxy(mode: Extract<ProxyMode, { kind: "upstream" }>, own: OwnListeners, settings: UpstreamTlsSettings): Promise<net.Socket> {
  const raw = await guardedTcpConnect(own, mode.host, mode.port);
  if (mode.scheme === "http") return raw;
  const servername = net.isIP(mode.host) ? undefined : mode.host;
  const secure = tls.connect({
    socket: raw,
    host: mode.host,
    servername,
    ALPNProtocols: ["http/1.1"],
    rejectUnauthorized: settings.rejectUnauthorized,
    secureContext: settings.secureContext,
  });
  try {
    await new Promise<void>((resolve, reject) => {
      secure.once("secureConnect", resolve);
      secure.once("error", reject);
    });
  } catch (err) {
    secure.destroy();
    const message = describeConnectError(err as NodeJS.ErrnoException, { scheme: "https", host: mode.host, port: mode.port }).replace(/^TLS handshake with /, "TLS handshake with the upstream proxy ");
    throw Object.assign(new Error(message), { code: "EPROXY" });
  }
  secure.setNoDelay(true);
  return secure;
}

function withTimeout<T>(p: Promise<T>, ms: number, message: string): Promise<T> {
  if (!(ms > 0)) return p;
  return new Promise((resolve, reject) => {
    const t = setTimeout(() => reject(Object.assign(new Error(message), { code: "ETIMEDOUT" })), ms);
    p.then(
      (v) => {
        clearTimeout(t);
        resolve(v);
      },
      (e) => {
        clearTimeout(t);
        reject(e);
      },
    );
  });
}

/** The DNS names a certificate is valid for: its CN (when it is a host name) and subjectAltName DNS entries. */
function certificateDnsNames(cert: tls.PeerCertificate): string[] {
  const names: string[] = [];
  const cn = typeof cert.subject?.CN === "string" ? cert.subject.CN : undefined;
  if (cn && /^(\*\.)?[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)*$/.test(cn) && !net.isIP(cn)) names.push(cn);
  for (const entry of (cert.subjectaltname ?? "").split(/,\s*/)) {
    if (entry.startsWith("DNS:")) names.push(entry.slice(4));
  }
  return names;
}

function certificateChainPem(peer: tls.DetailedPeerCertificate): string[] {
  const out: string[] = [];
  const seen = new Set<string>();
  let c: tls.DetailedPeerCertificate | undefined = peer;
  while (c && c.raw && !seen.has(c.fingerprint256)) {
    seen.add(c.fingerprint256);
    out.push(`-----BEGIN CERTIFICATE-----\n${c.raw.toString("base64").replace(/.{64}/g, "$&\n").replace(/\n?$/, "\n")}-----END CERTIFICATE-----\n`);
    c = c.issuerCertificate;
  }
  return out;
}

const TLS_TRUST_CODES = new Set([
  "UNABLE_TO_VERIFY_LEAF_SIGNATURE", "DEPTH_ZERO_SELF_SIGNED_CERT", "SELF_SIGNED_CERT_IN_CHAIN",
  "UNABLE_TO_GET_ISSUER_CERT_LOCALLY", "UNABLE_TO_GET_ISSUER_CERT", "CERT_UNTRUSTED", "CERT_HAS_EXPIRED",
  "CERT_NOT_YET_VALID", "ERR_TLS_CERT_ALTNAME_INVALID", "CERT_SIGNATURE_FAILURE",
]);

/** One sentence a user can act on, for the 502 body and the flow's error. */
export function describeConnectError(err: NodeJS.ErrnoException, target: UpstreamTarget): string {
  const where = `${target.host}:${target.port}`;
  const code = err.code ?? "";
  if (code === "ECONNREFUSED") return `could not connect to ${where}: connection refused (is the server running?)`;
  if (code === "ENOTFOUND" || code === "EAI_AGAIN") return `could not resolve ${target.host}: DNS lookup failed (${code})`;
  if (code === "ETIMEDOUT" || code === "UND_ERR_CONNECT_TIMEOUT") return err.message.startsWith("connect to") ? err.message : `connect to ${where} timed out`;
  if (code === "ECONNRESET") return `connection to ${where} was reset during set-up`;
  if (code === "EHOSTUNREACH" || code === "ENETUNREACH") return `could not connect to ${where}: host unreachable`;
  if (code === "EPROXY" || code === "ESLUICE_REFUSED") return err.message;
  if (TLS_TRUST_CODES.has(code)) {
    return `TLS handshake with ${where} failed: the server's certificate is not trusted (${code}: ${err.message}); trust its CA with --set ssl_verify_upstream_trusted_ca=FILE or skip verification with --ssl-insecure`;
  }
  const versionMismatch = /(?:^|:)\s*([^:]*(?:protocol version|unsupported protocol|no protocols available|wrong version number)[^:]*)/i.exec(err.message);
  if (versionMismatch) {
    return `TLS handshake with ${where} failed: no TLS version in common with the server (${versionMismatch[1]!.trim()}); sluice offers the versions between tls_version_server_min and tls_version_server_max (--set tls_version_server_min=…)`;
  }
  if (code.startsWith("ERR_SSL") || code.startsWith("ERR_TLS") || /ssl|tls/i.test(err.message)) {
    return `TLS handshake with ${where} failed: ${err.message}`;
  }
  return `could not connect to ${where}: ${err.message}${code ? ` (${code})` : ""}`;
}

/**
 * A failure to reach the upstream proxy itself names that proxy, not the origin the client asked
 * for: "connection refused" about the origin would send the user to the wrong machine.
 */
function upstreamProxyError(err: NodeJS.ErrnoException, mode: Extract<ProxyMode, { kind: "upstream" }>, target: UpstreamTarget): Error {
  // Answers from the proxy (EPROXY) already name it; refusals (ESLUICE_REFUSED) keep their own status.
  if (err.code === "EPROXY" || err.code === "ESLUICE_REFUSED") return err;
  const proxy = `${mode.host}:${mode.port}`;
  const code = err.code ?? "";
  const reason =
    code === "ECONNREFUSED" ? "connection refused (is the proxy running there? check --mode)" :
    code === "ENOTFOUND" || code === "EAI_AGAIN" ? `its name does not resolve (${code})` :
    code === "EHOSTUNREACH" || code === "ENETUNREACH" ? "host unreachable" :
    code === "ECONNRESET" ? "the connection was reset" :
    `${err.message}${code ? ` (${code})` : ""}`;
  return Object.assign(new Error(`could not connect to the upstream proxy ${proxy}: ${reason}; the request was for ${target.host}:${target.port}`), { code: "EPROXY" });
}

/** The Host header for a request to `t` that came without one. */
export function hostHeaderFor(t: UpstreamTarget): string {
  const h = t.host.includes(":") ? `[${t.host}]` : t.host;
  return t.port === (t.scheme === "https" ? 443 : 80) ? h : `${h}:${t.port}`;
}

/** One sentence a user can act on for a failure after the request was handed to undici. */
export function describeUpstreamError(err: NodeJS.ErrnoException, target: UpstreamTarget): string {
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

