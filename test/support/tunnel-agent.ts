/**
 * An https.Agent that reaches servers through an HTTP proxy with CONNECT, for Node clients that
 * have no proxy support of their own (the AWS SDK for JavaScript).
 */
import http from "node:http";
import https from "node:https";
import net from "node:net";
import tls from "node:tls";
import type { Duplex } from "node:stream";

export function tunnelAgent(proxyPort: number, ca: string): https.Agent {
  class TunnelAgent extends https.Agent {
    override createConnection(options: https.RequestOptions, callback?: (err: Error | null, stream: Duplex) => void): Duplex | undefined {
      const authority = `${options.host}:${options.port ?? 443}`;
      const req = http.request({ host: "127.0.0.1", port: proxyPort, method: "CONNECT", path: authority, headers: { host: authority }, agent: false });
      req.once("connect", (res, socket) => {
        if (res.statusCode !== 200) return callback?.(new Error(`proxy answered CONNECT with ${res.statusCode}`), socket);
        // No SNI for an IP address (RFC 6066; Node warns); the certificate is still checked against it.
        const name = options.servername || options.host || undefined;
        const secure = tls.connect({ socket, host: options.host ?? undefined, servername: name && !net.isIP(name) ? name : undefined, ca, ALPNProtocols: ["http/1.1"] });
        secure.once("secureConnect", () => callback?.(null, secure));
        secure.once("error", (err) => callback?.(err, secure));
      });
      req.once("error", (err) => callback?.(err, req.socket!));
      req.end();
      return undefined;
    }
  }
  return new TunnelAgent({ keepAlive: true });
}
