/** Real origin servers for tests on 127.0.0.1, port 0: HTTP/1.1, HTTPS, HTTP/2 and WebSocket echo. */
import http from "node:http";
import https from "node:https";
import http2 from "node:http2";
import type net from "node:net";
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { WebSocketServer } from "ws";
import { CertificateAuthority } from "../../src/proxy/tls/ca.js";

export interface SeenRequest {
  method: string;
  url: string;
  httpVersion: string;
  headers: http.IncomingHttpHeaders;
  body: Buffer;
}

export type Handler = (req: http.IncomingMessage | http2.Http2ServerRequest, res: http.ServerResponse | http2.Http2ServerResponse, body: Buffer) => void;

export interface Origin {
  url: string;
  port: number;
  requests: SeenRequest[];
  close(): Promise<void>;
}

/** An echo handler: answers JSON describing what it received. */
export const echo: Handler = (req, res, body) => {
  const payload = JSON.stringify({ method: req.method, url: req.url, httpVersion: req.httpVersion, headers: req.headers, bodyLength: body.length, body: body.toString("utf8").slice(0, 1000) });
  (res as http.ServerResponse).writeHead(200, { "content-type": "application/json", "x-origin": "test" });
  res.end(payload);
};

let originCa: CertificateAuthority | null = null;
/** A CA for test origins, separate from the proxy's, so tests prove upstream verification. */
export function testOriginCa(): CertificateAuthority {
  originCa ??= CertificateAuthority.loadOrCreate(mkdtempSync(join(tmpdir(), "sluice-origin-ca-")));
  return originCa;
}

export async function startOrigin(opts: { tls?: boolean; h2?: boolean; handler?: Handler; host?: string; websocket?: boolean } = {}): Promise<Origin> {
  const handler = opts.handler ?? echo;
  const requests: SeenRequest[] = [];
  const onRequest = (req: http.IncomingMessage | http2.Http2ServerRequest, res: http.ServerResponse | http2.Http2ServerResponse) => {
    const chunks: Buffer[] = [];
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("end", () => {
      const body = Buffer.concat(chunks);
      requests.push({ method: req.method ?? "", url: req.url ?? "", httpVersion: req.httpVersion, headers: req.headers as http.IncomingHttpHeaders, body });
      handler(req, res, body);
    });
  };
  let server: http.Server | https.Server | http2.Http2SecureServer;
  if (opts.tls || opts.h2) {
    const ca = testOriginCa();
    const host = opts.host ?? "127.0.0.1";
    const creds = { key: ca.leafKeyPem, cert: ca.leafCertFor(host) };
    server = opts.h2 ? http2.createSecureServer({ ...creds, allowHTTP1: true }, onRequest) : https.createServer(creds, onRequest);
  } else {
    server = http.createServer(onRequest);
  }
  if (opts.websocket) {
    const wss = new WebSocketServer({ server: server as http.Server, handleProtocols: (protocols) => (protocols.has("echo") ? "echo" : false) });
    wss.on("connection", (ws) => {
      ws.on("message", (data, isBinary) => {
        if (!isBinary && data.toString() === "close-please") ws.close(4000, "asked to");
        else ws.send(data, { binary: isBinary });
      });
    });
  }
  const sockets = new Set<net.Socket>();
  server.on("connection", (s: net.Socket) => {
    sockets.add(s);
    s.on("close", () => sockets.delete(s));
  });
  server.on("secureConnection", (s: net.Socket) => {
    sockets.add(s);
    s.on("close", () => sockets.delete(s));
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const port = (server.address() as net.AddressInfo).port;
  const scheme = opts.tls || opts.h2 ? "https" : "http";
  return {
    url: `${scheme}://127.0.0.1:${port}`,
    port,
    requests,
    close: () =>
      new Promise<void>((resolve) => {
        for (const s of sockets) s.destroy();
        server.close(() => resolve());
      }),
  };
}

export function originCaFile(): string {
  return testOriginCa().files.certPem;
}
