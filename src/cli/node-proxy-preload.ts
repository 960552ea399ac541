/**
 * Loaded into Node programs run by `sluice run` (NODE_OPTIONS=--import=…): on Node releases that
 * do not route traffic through HTTP(S)_PROXY themselves (NODE_USE_ENV_PROXY arrived in 22.21 and
 * 24.5), sends `fetch` through the proxy with undici's EnvHttpProxyAgent, and every http(s).Agent
 * (the global ones and those SDKs make, such as the AWS SDK's) through a CONNECT tunnel.
 * Hosts in NO_PROXY go direct.
 */
import http from "node:http";
import https from "node:https";
import net from "node:net";
import tls from "node:tls";
import type { Duplex } from "node:stream";
import { EnvHttpProxyAgent, setGlobalDispatcher } from "undici";

function honoursEnvProxy(): boolean {
  const [major, minor] = process.versions.node.split(".").map(Number) as [number, number];
  return major > 24 || (major === 24 && minor >= 5) || (major === 22 && minor >= 21);
}

function bypassed(host: string, noProxy: string): boolean {
  return noProxy.split(",").map((s) => s.trim().toLowerCase()).filter(Boolean).some((entry) => {
    if (entry === "*") return true;
    const name = entry.replace(/^\*?\./, "").replace(/:\d+$/, "");
    return host === name || host.endsWith(`.${name}`);
  });
}

/** Marks the preload's own CONNECT request, whose connection must not be tunnelled again. */
const TO_PROXY = Symbol("sluice.toProxy");

const proxyUrl = process.env.HTTPS_PROXY || process.env.https_proxy || process.env.HTTP_PROXY || process.env.http_proxy;

if (proxyUrl && !(process.env.NODE_USE_ENV_PROXY === "1" && honoursEnvProxy())) {
  setGlobalDispatcher(new EnvHttpProxyAgent());
  const proxy = new URL(proxyUrl);
  const noProxy = process.env.NO_PROXY ?? process.env.no_proxy ?? "";

  /** A socket to host:port through the proxy's CONNECT, then TLS on top when `secure`. */
  const tunnel = (options: https.RequestOptions & tls.ConnectionOptions, secure: boolean, callback: (err: Error | null, socket?: Duplex) => void): void => {
    const host = String(options.host ?? options.hostname ?? "localhost").replace(/^\[|\]$/g, "");
    const port = Number(options.port ?? (secure ? 443 : 80));
    const authority = `${net.isIPv6(host) ? `[${host}]` : host}:${port}`;
    const req = http.request({ host: proxy.hostname, port: Number(proxy.port || 80), method: "CONNECT", path: authority, headers: { host: authority }, agent: false, [TO_PROXY]: true } as http.RequestOptions);
    req.once("connect", (res, socket) => {
      if (res.statusCode !== 200) {
        socket.destroy();
        return callback(new Error(`proxy ${proxy.host} answered CONNECT ${authority} with ${res.statusCode}`));
      }
      if (!secure) return callback(null, socket);
      const servername = options.servername ?? (net.isIP(host) ? undefined : host);
      const secureSocket = tls.connect({ ...options, socket, host, servername });
      secureSocket.once("secureConnect", () => callback(null, secureSocket));
      secureSocket.once("error", (err) => callback(err));
    });
    req.once("error", (err) => callback(err));
    req.end();
  };

  for (const [Agent, secure] of [[http.Agent, false], [https.Agent, true]] as const) {
    const original = Agent.prototype.createConnection as (...args: unknown[]) => Duplex;
    Agent.prototype.createConnection = function (this: http.Agent, options: https.RequestOptions, callback?: (err: Error | null, socket: Duplex) => void) {
      const host = String(options.host ?? options.hostname ?? "");
      // The CONNECT to the proxy itself goes direct, as does everything NO_PROXY names.
      if ((options as Record<symbol, unknown>)[TO_PROXY] || bypassed(host.toLowerCase(), noProxy) || !callback) return original.call(this, options, callback);
      // https.Agent's own createConnection is what wraps TLS; for http a plain tunnel is enough:
      // sluice reads plain HTTP inside a CONNECT tunnel.
      tunnel(options as https.RequestOptions & tls.ConnectionOptions, secure, (err, socket) => callback(err, socket as Duplex));
      return undefined as unknown as Duplex;
    } as typeof Agent.prototype.createConnection;
  }
}
