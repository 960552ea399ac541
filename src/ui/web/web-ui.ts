/**
 * `sluice web`: the proxy with a browser UI. This addon is the web front end's place in the chain
 * (where `sluice dump` has its output): it notes which flows changed, and it runs the UI's own
 * listener — node:http for the page, its assets and flow bodies, and a `ws` WebSocket for the
 * live list, actions and pages. The listener is never the proxy's, binds 127.0.0.1 by default,
 * and refuses requests without the token, for a foreign Host, or from another origin.
 */
import http from "node:http";
import { randomBytes } from "node:crypto";
import { spawn } from "node:child_process";
import { createReadStream, mkdtempSync, rmSync, statSync, writeFileSync } from "node:fs";
import { readFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { dirname, extname, join, normalize, sep } from "node:path";
import { fileURLToPath } from "node:url";
import type { AddressInfo } from "node:net";
import { WebSocketServer, type WebSocket } from "ws";
import type { Addon, AddonContext } from "../../core/addons.js";
import type { HTTPFlow } from "../../core/flow.js";
import { decodeBody } from "../../core/encoding.js";
import { readFlowFile } from "../../store/index.js";
import { refusal, type GuardConfig } from "./guard.js";
import { Session } from "./session.js";
import { bumpVersion } from "./versions.js";
import { quoteWord } from "../console/controller.js";
import { declareOptions, type TypedOptions } from "../../core/options.js";

/** Where `vite build` puts the page: dist/web, beside the compiled dist/src. */
export const STATIC_DIR = join(dirname(fileURLToPath(import.meta.url)), "..", "..", "..", "web");

/** Updates per second a tab receives at most: smooth to the eye, cheap at thousands of flows a second. */
const UPDATES_PER_SECOND = 10;
/** The largest capture file a page may upload to open. */
const MAX_UPLOAD = 512 * 1024 * 1024;

const MIME: Record<string, string> = {
  ".html": "text/html; charset=utf-8",
  ".js": "text/javascript; charset=utf-8",
  ".css": "text/css; charset=utf-8",
  ".svg": "image/svg+xml",
  ".png": "image/png",
  ".ico": "image/x-icon",
  ".json": "application/json",
};

/** The options this addon owns, declared once (names, types, defaults, help). */
export const WEB_UI_OPTIONS = declareOptions({
  web_port: { type: "int", default: 8081, help: "Port of the web UI (sluice web); 0 picks a free one" },
  web_host: { type: "string", default: "127.0.0.1", help: "Address the web UI listens on (127.0.0.1 keeps it private to this machine)" },
  web_password: { type: "string", default: "", help: "Token for the web UI (?token=…); random per start when empty" },
  web_open_browser: { type: "bool", default: false, help: "Open the web UI in the system's browser when sluice web starts" },
});

export class WebStartError extends Error {}

export class WebUi implements Addon {
  name = "web";
  private ctx!: AddonContext;
  private opts!: TypedOptions<typeof WEB_UI_OPTIONS>;
  private server: http.Server | null = null;
  private wss: WebSocketServer | null = null;
  private sessions = new Set<Session>();
  private timer: NodeJS.Timeout | null = null;
  private pageTimer: NodeJS.Timeout | null = null;
  private guard: GuardConfig | null = null;
  private unregister: (() => void) | null = null;
  private proxyAddress = "";
  /** Where the UI listens, once it does. */
  address: AddressInfo | null = null;
  token = "";

  load(ctx: AddonContext): void {
    this.ctx = ctx;
    this.opts = ctx.options.register(WEB_UI_OPTIONS);
    // Commands (mark, comment, flow.set, …) change flows through the view: those count as changes too.
    ctx.view.onChange((_event, flow) => flow && bumpVersion(flow));
  }

  configure(updated: Set<string>): void {
    if (updated.has("web_port")) {
      const port = this.opts.web_port;
      if (port < 0 || port > 65535) throw new Error(`option web_port expects a port from 0 to 65535, got ${port}`);
    }
  }

  private get master(): AddonContext {
    return this.ctx;
  }

  // Every hook that changes what a row or an open flow shows bumps the flow's version.
  requestHeaders(flow: HTTPFlow): void {
    bumpVersion(flow);
  }
  request(flow: HTTPFlow): void {
    this.touch(flow);
  }
  responseHeaders(flow: HTTPFlow): void {
    this.touch(flow);
  }
  response(flow: HTTPFlow): void {
    bumpVersion(flow);
  }
  error(flow: HTTPFlow): void {
    bumpVersion(flow);
  }
  websocketMessage(flow: HTTPFlow): void {
    this.touch(flow);
  }
  websocketEnd(flow: HTTPFlow): void {
    this.touch(flow);
  }

  /** A change the view emits no event for (a pause, response headers, a WebSocket message). */
  private touch(flow: HTTPFlow): void {
    bumpVersion(flow);
    for (const s of this.sessions) s.live.dirty = true;
  }

  /**
   * Starts the UI's listener. Throws a WebStartError with a one-line message when it cannot
   * (port taken, the proxy's own port, no permission).
   */
  async start(proxy: AddressInfo): Promise<string> {
    const o = this.opts;
    const port = o.web_port;
    const host = o.web_host;
    if (port !== 0 && port === proxy.port) throw new WebStartError(`the web UI cannot share the proxy's port ${port}: pick another with --set web_port=PORT`);
    this.proxyAddress = `${proxy.address.includes(":") ? `[${proxy.address}]` : proxy.address}:${proxy.port}`;
    this.token = o.web_password || randomBytes(16).toString("hex");
    const server = http.createServer((req, res) => void this.handle(req, res));
    const wss = new WebSocketServer({ noServer: true, maxPayload: 16 * 1024 * 1024 });
    server.on("upgrade", (req, socket, head) => {
      const refused = this.guard ? refusal(req, this.guard, { needOrigin: true }) : { status: 503, message: "starting" };
      const path = new URL(req.url ?? "/", "http://x").pathname;
      if (refused || path !== "/updates") {
        const status = refused?.status ?? 404;
        const text = refused?.message ?? "no WebSocket here; the UI's is /updates";
        socket.end(`HTTP/1.1 ${status} ${http.STATUS_CODES[status]}\r\ncontent-type: text/plain; charset=utf-8\r\ncontent-length: ${Buffer.byteLength(text) + 1}\r\nconnection: close\r\n\r\n${text}\n`);
        return;
      }
      wss.handleUpgrade(req, socket, head, (ws) => this.connected(ws));
    });
    try {
      await new Promise<void>((resolve, reject) => {
        server.once("error", reject);
        server.listen(port, host, () => {
          server.removeListener("error", reject);
          resolve();
        });
      });
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      // The advice names the setting that is wrong: the port, or the address.
      const badHost = code === "EADDRNOTAVAIL" || code === "ENOTFOUND" || code === "EAI_AGAIN";
      const why =
        code === "EADDRINUSE" ? `port ${port} on ${host} is in use` :
        code === "EACCES" ? `no permission to listen on port ${port}` :
        badHost ? `${host} is not an address of this machine (${code})` :
        (err as Error).message;
      const advice = badHost ? "use --set web_host=127.0.0.1 (or ::1)" : "pick another with --set web_port=PORT (0 picks a free one)";
      throw new WebStartError(`web UI not started: ${why}; ${advice}`);
    }
    this.server = server;
    this.wss = wss;
    this.address = server.address() as AddressInfo;
    // The proxy refuses to forward requests to the UI: a page browsing through sluice cannot reach it.
    this.unregister = this.ctx.ownListeners.register("web", this.address);
    this.guard = { token: this.token, port: this.address.port, host };
    this.timer = setInterval(() => this.flush(), 1000 / UPDATES_PER_SECOND);
    this.timer.unref();
    this.pageTimer = setInterval(() => void this.refreshPages(), 1000);
    this.pageTimer.unref();
    const shownHost = host === "0.0.0.0" || host === "::" ? "127.0.0.1" : host.includes(":") ? `[${host}]` : host;
    const url = `http://${shownHost}:${this.address.port}/?token=${this.token}`;
    if (o.web_open_browser) this.openBrowser(url);
    return url;
  }

  private openBrowser(url: string): void {
    const command = process.platform === "darwin" ? "open" : process.platform === "win32" ? "explorer" : "xdg-open";
    try {
      const child = spawn(command, [url], { stdio: "ignore", detached: true });
      child.on("error", (err) => this.ctx.log.warn(`web_open_browser: cannot run ${command} (${err.message}); open the URL yourself`));
      child.unref();
    } catch (err) {
      this.ctx.log.warn(`web_open_browser: cannot run ${command} (${(err as Error).message}); open the URL yourself`);
    }
  }

  private flush(): void {
    for (const s of this.sessions) s.flush();
  }

  private async refreshPages(): Promise<void> {
    for (const s of this.sessions) await s.sendPages();
  }

  private connected(ws: WebSocket): void {
    const session = new Session(this.master, ws, { proxy: this.proxyAddress, web: `${this.address!.address}:${this.address!.port}` });
    this.sessions.add(session);
    ws.on("close", () => {
      session.close();
      this.sessions.delete(session);
    });
    ws.on("error", () => ws.terminate());
    session.flush();
  }

  async done(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    if (this.pageTimer) clearInterval(this.pageTimer);
    this.timer = this.pageTimer = null;
    this.unregister?.();
    this.unregister = null;
    for (const s of this.sessions) s.close();
    this.sessions.clear();
    for (const ws of this.wss?.clients ?? []) ws.terminate();
    this.wss?.close();
    const server = this.server;
    this.server = null;
    if (server) {
      await new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      });
    }
  }

  private async handle(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    try {
      const url = new URL(req.url ?? "/", "http://x");
      const mutating = req.method !== "GET" && req.method !== "HEAD";
      // Assets carry no secrets and are named by content hash; the page and every API need the token.
      const isAsset = url.pathname.startsWith("/assets/") || url.pathname === "/favicon.svg";
      const refused = isAsset ? (this.guard && !hostOk(req, this.guard) ? { status: 403, message: "refused: foreign Host header" } : null) : refusal(req, this.guard!, { needOrigin: mutating });
      if (refused) return text(res, refused.status, refused.message);
      if (url.pathname === "/" || url.pathname === "/index.html") return await this.serveStatic(res, "index.html");
      if (isAsset) return await this.serveStatic(res, url.pathname.slice(1));
      const content = /^\/api\/flows\/([^/]+)\/(request|response)\/content$/.exec(url.pathname);
      if (content && req.method === "GET") return this.serveBody(res, content[1]!, content[2] as "request" | "response", url.searchParams);
      if (url.pathname === "/api/save" && req.method === "GET") return await this.serveSave(res, url.searchParams);
      if (url.pathname === "/api/open" && req.method === "POST") return await this.openCapture(req, res, url.searchParams);
      text(res, 404, `no such page ${url.pathname}`);
    } catch (err) {
      this.ctx.log.error(`web UI: ${req.method} ${req.url?.replace(/token=[^&]*/, "token=…")} failed: ${(err as Error).message}`);
      if (!res.headersSent) text(res, 500, (err as Error).message);
      else res.destroy();
    }
  }

  private async serveStatic(res: http.ServerResponse, file: string): Promise<void> {
    const path = normalize(join(STATIC_DIR, file));
    if (!path.startsWith(STATIC_DIR + sep)) return text(res, 404, "no such file");
    let body: Buffer;
    try {
      body = await readFile(path);
    } catch {
      if (file === "index.html") return text(res, 500, `the web UI's page is missing (${path}): run \`npm run build\``);
      return text(res, 404, `no such file ${file}`);
    }
    res.writeHead(200, {
      "content-type": MIME[extname(path)] ?? "application/octet-stream",
      "content-length": body.length,
      // Hashed asset names never change content; the page itself is always fetched anew.
      "cache-control": file.startsWith("assets/") ? "max-age=31536000, immutable" : "no-store",
      "x-content-type-options": "nosniff",
      "referrer-policy": "no-referrer",
      // Nothing may load from elsewhere, and no other site may frame the UI.
      "content-security-policy": "default-src 'self'; img-src 'self' data: blob:; style-src 'self' 'unsafe-inline'; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'",
    });
    res.end(body);
  }

  /** A flow's body, Content-Encoding undone (unless raw=1), as its content type; download=1 saves it. */
  private serveBody(res: http.ServerResponse, id: string, part: "request" | "response", params: URLSearchParams): void {
    const flow = this.master.view.get(id);
    if (!flow) return text(res, 404, "no such flow: it was deleted or dropped from the view");
    const message = part === "request" ? flow.request : flow.response;
    if (!message) return text(res, 404, "this flow has no response");
    if (!message.content) return text(res, 404, message.streamed ? `the body streamed through without being kept (${message.contentLength} bytes; raise stream_large_bodies to keep it)` : "the body is not complete yet");
    let body = message.content;
    const encoding = message.headers.get("content-encoding");
    const headers: Record<string, string | number> = { "cache-control": "no-store", "x-content-type-options": "nosniff", "content-security-policy": "sandbox; default-src 'none'; img-src 'self' data:; style-src 'unsafe-inline'" };
    if (encoding && encoding !== "identity" && params.get("raw") !== "1") {
      try {
        body = decodeBody(body, encoding);
        headers["x-sluice-decoded-from"] = encoding;
      } catch (err) {
        headers["x-sluice-decode-error"] = (err as Error).message.replace(/[\r\n]/g, " ");
      }
    }
    const type = message.headers.get("content-type") ?? "application/octet-stream";
    // Text types are shown by the page itself; anything served inline stays inert (sandbox CSP, nosniff).
    headers["content-type"] = type;
    headers["content-length"] = body.length;
    if (params.get("download") === "1") {
      const name = `${flow.request.pathname.split("/").filter(Boolean).pop() || flow.request.prettyHost}-${part}${extensionFor(type)}`;
      headers["content-disposition"] = `attachment; filename="${name.replace(/[^\w.-]/g, "_")}"`;
    }
    res.writeHead(200, headers);
    res.end(body);
  }

  /** `save.file` into a temporary file, then to the browser: the same code as the console's `w`. */
  private async serveSave(res: http.ServerResponse, params: URLSearchParams): Promise<void> {
    const format = params.get("format") ?? "mitm";
    if (!["mitm", "har", "sqlite"].includes(format)) return text(res, 400, "format must be mitm, har or sqlite");
    const which = params.get("flows") ?? "@shown";
    const dir = mkdtempSync(join(tmpdir(), "sluice-web-save-"));
    const path = join(dir, `flows.${format}`);
    try {
      const result = await this.master.commands.execute(`save.file ${quoteWord(which)} ${quoteWord(path)}`);
      const size = statSync(path).size;
      res.writeHead(200, {
        "content-type": format === "har" ? "application/json" : "application/octet-stream",
        "content-length": size,
        "content-disposition": `attachment; filename="sluice-flows.${format}"`,
        "cache-control": "no-store",
        "x-sluice-result": String(result),
      });
      await new Promise<void>((resolve, reject) => createReadStream(path).on("error", reject).on("end", resolve).pipe(res));
    } catch (err) {
      if (!res.headersSent) text(res, 400, (err as Error).message);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }

  /** A capture file uploaded by the page (.mitm, .har, .sqlite): its flows join the view. */
  private async openCapture(req: http.IncomingMessage, res: http.ServerResponse, params: URLSearchParams): Promise<void> {
    const chunks: Buffer[] = [];
    let size = 0;
    for await (const c of req as AsyncIterable<Buffer>) {
      size += c.length;
      if (size > MAX_UPLOAD) return text(res, 413, `the file is larger than ${MAX_UPLOAD / 1024 / 1024} MiB; open it with sluice web -r FILE instead`);
      chunks.push(c);
    }
    const name = (params.get("name") ?? "capture").replace(/[^\w.-]/g, "_");
    const dir = mkdtempSync(join(tmpdir(), "sluice-web-open-"));
    const path = join(dir, name);
    try {
      writeFileSync(path, Buffer.concat(chunks));
      let count = 0;
      const warnings: string[] = [];
      for await (const flow of readFlowFile(path, { onWarning: (m) => warnings.push(m) })) {
        this.master.view.add(flow);
        count++;
      }
      for (const w of warnings) this.ctx.log.warn(`${name}: ${w}`);
      this.ctx.log.info(`loaded ${count} flow${count === 1 ? "" : "s"} from ${name}`);
      text(res, 200, `loaded ${count} flow${count === 1 ? "" : "s"} from ${name}`);
    } catch (err) {
      text(res, 400, `cannot open ${name}: ${(err as Error).message}`);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }
}

function hostOk(req: http.IncomingMessage, guard: GuardConfig): boolean {
  return refusal({ ...req, headers: { host: req.headers.host }, url: `/?token=${guard.token}` } as http.IncomingMessage, guard, { needOrigin: false }) === null;
}

function extensionFor(type: string): string {
  const t = type.split(";")[0]!.trim().toLowerCase();
  if (t.includes("json")) return ".json";
  if (t.includes("xml")) return ".xml";
  if (t.includes("html")) return ".html";
  if (t.startsWith("text/")) return ".txt";
  if (t.startsWith("image/")) return "." + t.slice(6).replace(/\+.*$/, "");
  return ".bin";
}

function text(res: http.ServerResponse, status: number, body: string): void {
  const data = body + "\n";
  res.writeHead(status, { "content-type": "text/plain; charset=utf-8", "content-length": Buffer.byteLength(data), "cache-control": "no-store", "x-content-type-options": "nosniff" });
  res.end(data);
}
