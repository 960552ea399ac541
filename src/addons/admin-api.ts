/**
 * A small JSON HTTP API on 127.0.0.1 for test harnesses and scripts, as Toxiproxy has: list, add,
 * remove, enable and disable fault rules mid-run, and run any command. Off unless `admin_port`
 * is set (0 picks a free port; the address is logged).
 *
 *   GET    /faults                 → {faults: [rule…]}
 *   POST   /faults  {"rule": SPEC} → 201 {fault: rule}   (SPEC: a string or a rules-file mapping)
 *   GET    /faults/ID              → {fault: rule}
 *   DELETE /faults/ID              → {removed: rule}
 *   POST   /faults/ID/enable|disable → {fault: rule}
 *   POST   /commands {"command": "fault.list"} → {result}
 *   GET/POST/PATCH/DELETE /_localstack/chaos/faults, GET/POST /_localstack/chaos/effects:
 *          LocalStack's Chaos API (localstack-chaos.ts)
 *
 * Errors are {error: "…"} with a 4xx status. Every request needs `Authorization: Bearer TOKEN`
 * (`admin_token`, random unless set, printed at start). Requests from web pages (with an Origin
 * header) and for other host names (DNS rebinding) are refused, so a browser cannot drive the
 * API, and the proxy refuses to forward anything to it.
 */
import http from "node:http";
import { randomBytes, timingSafeEqual } from "node:crypto";
import type { AddressInfo } from "node:net";
import type { Addon, AddonContext } from "../core/addons.js";
import { CommandError } from "../core/commands.js";
import { FaultNotFoundError, FaultRuleError, type Faults } from "./faults.js";
import { ChaosRequestError, LocalStackChaos } from "./localstack-chaos.js";
import { declareOptions, type TypedOptions } from "../core/options.js";

const MAX_BODY = 1024 * 1024;

class ApiError extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
  }
}

/** The options this addon owns, declared once (names, types, defaults, help). */
export const ADMIN_API_OPTIONS = declareOptions({
  admin_port: { type: "int", default: -1, help: "Serve the JSON admin API (fault rules, commands) on 127.0.0.1 at this port; -1 off, 0 picks a free port" },
  admin_token: { type: "string", default: "", help: "Bearer token the admin API requires (Authorization: Bearer TOKEN); empty makes up a random one, printed at start" },
});

export class AdminApi implements Addon {
  name = "admin_api";
  private ctx!: AddonContext;
  private opts!: TypedOptions<typeof ADMIN_API_OPTIONS>;
  private server: http.Server | null = null;
  private isRunning = false;
  /** Where the API listens, once it does. */
  address: AddressInfo | null = null;
  /** The bearer token requests must carry: `admin_token`, or one made up at start. */
  token = "";
  private unregister: (() => void) | null = null;

  load(ctx: AddonContext): void {
    this.ctx = ctx;
    this.opts = ctx.options.register(ADMIN_API_OPTIONS);
  }

  async configure(updated: Set<string>): Promise<void> {
    const port = this.opts.admin_port;
    if (updated.has("admin_port") && (port < -1 || port > 65535)) throw new Error(`option admin_port expects a port from 0 to 65535 (or -1 for off), got ${port}`);
    if (updated.has("admin_token")) {
      const given = this.opts.admin_token;
      if (given && !/^[\x21-\x7e]{16,}$/.test(given)) throw new Error("option admin_token must be at least 16 printable characters without spaces (or empty for a random one)");
      this.token = given || this.token || randomBytes(24).toString("base64url");
    }
    if (updated.has("admin_port") && this.isRunning) {
      await this.close();
      await this.listen();
    }
  }

  async running(): Promise<void> {
    this.isRunning = true;
    await this.listen();
  }

  async done(): Promise<void> {
    this.isRunning = false;
    await this.close();
  }

  private async listen(): Promise<void> {
    const port = this.opts.admin_port;
    if (port < 0) return;
    const server = http.createServer((req, res) => void this.handle(req, res));
    try {
      await new Promise<void>((resolve, reject) => {
        server.once("error", reject);
        server.listen(port, "127.0.0.1", () => {
          server.removeListener("error", reject);
          resolve();
        });
      });
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      const why = code === "EADDRINUSE" ? `port ${port} is in use` : code === "EACCES" ? `no permission to use port ${port}` : (err as Error).message;
      this.ctx.log.error(`admin API not started: ${why}; pick another with --set admin_port=PORT (0 picks a free one)`);
      return;
    }
    this.server = server;
    this.address = server.address() as AddressInfo;
    this.unregister = this.ctx.ownListeners.register("admin", this.address);
    // Not "listening at": scripts read the proxy's own port from that line.
    this.ctx.log.info(`admin API at http://127.0.0.1:${this.address.port} (GET /faults, POST /faults, POST /commands)`);
    this.ctx.log.info(`admin API token: ${this.token}  (send Authorization: Bearer TOKEN; --set admin_token=… fixes it)`);
  }

  private async close(): Promise<void> {
    const server = this.server;
    this.server = null;
    this.address = null;
    this.unregister?.();
    this.unregister = null;
    if (!server) return;
    await new Promise<void>((resolve) => {
      server.close(() => resolve());
      server.closeAllConnections();
    });
  }

  private async handle(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    try {
      const { status, body } = await this.route(req);
      send(res, status, body);
    } catch (err) {
      if (err instanceof ApiError) send(res, err.status, { error: err.message }, err.status === 401 ? { "www-authenticate": 'Bearer realm="sluice admin API"' } : {});
      else if (err instanceof FaultRuleError || err instanceof CommandError || err instanceof ChaosRequestError) send(res, 400, { error: err.message });
      else if (err instanceof FaultNotFoundError) send(res, 404, { error: err.message });
      else {
        this.ctx.log.error(`admin API: ${req.method} ${req.url} failed: ${(err as Error).message}`);
        send(res, 500, { error: (err as Error).message });
      }
    }
  }

  private async route(req: http.IncomingMessage): Promise<{ status: number; body: unknown }> {
    const host = (req.headers.host ?? "").replace(/:\d+$/, "");
    if (!["127.0.0.1", "localhost", "[::1]"].includes(host)) throw new ApiError(403, `the admin API answers only requests for 127.0.0.1 or localhost, not ${JSON.stringify(host)}`);
    if (req.headers.origin !== undefined) throw new ApiError(403, "the admin API does not answer web pages (requests with an Origin header)");
    if (!this.authorized(req.headers.authorization)) {
      throw new ApiError(401, "the admin API needs Authorization: Bearer TOKEN; the token is printed at start (admin API token: …) or fixed with --set admin_token=…");
    }
    const method = req.method ?? "GET";
    const path = new URL(req.url ?? "/", "http://127.0.0.1").pathname.replace(/\/+$/, "") || "/";
    const parts = path.split("/").filter(Boolean).map(decodeURIComponent);
    const allow = (...methods: string[]) => {
      if (!methods.includes(method)) throw new ApiError(405, `${method} is not supported on ${path}; use ${methods.join(" or ")}`);
    };
    if (parts[0] === "_localstack" && parts[1] === "chaos" && parts.length === 3) {
      return await this.chaos.handle(method, parts[2]!, () => readJsonValue(req));
    }
    if (parts[0] === "commands" && parts.length === 1) {
      allow("POST");
      const body = await readJson(req);
      const command = body.command;
      if (typeof command !== "string" || !command.trim()) throw new ApiError(400, 'send {"command": "fault.list"}: a command line as a string');
      const result = await this.ctx.commands.execute(command);
      return { status: 200, body: { result: toJson(result) } };
    }
    if (parts[0] !== "faults" || parts.length > 3) {
      throw new ApiError(404, `no such endpoint ${path}; endpoints are /faults, /faults/ID, /faults/ID/enable, /faults/ID/disable, /commands and /_localstack/chaos/faults|effects`);
    }
    const faults = this.faults();
    if (parts.length === 1) {
      allow("GET", "POST");
      if (method === "GET") return { status: 200, body: { faults: faults.list() } };
      const body = await readJson(req);
      const rule = body.rule;
      if (typeof rule !== "string" && (typeof rule !== "object" || rule === null || Array.isArray(rule))) {
        throw new ApiError(400, 'send {"rule": "FILTER => ACTION [k=v …]"}, e.g. {"rule": "~svc s3 => throttle p=0.5"}');
      }
      return { status: 201, body: { fault: faults.add(rule as string | Record<string, unknown>) } };
    }
    const id = parts[1]!;
    if (parts.length === 2) {
      allow("GET", "DELETE");
      return method === "GET" ? { status: 200, body: { fault: faults.get(id) } } : { status: 200, body: { removed: faults.remove(id) } };
    }
    const verb = parts[2];
    if (verb !== "enable" && verb !== "disable") throw new ApiError(404, `no such endpoint ${path}; use /faults/${id}/enable or /faults/${id}/disable`);
    allow("POST");
    return { status: 200, body: { fault: faults.setEnabled(id, verb === "enable") } };
  }

  private authorized(header: string | undefined): boolean {
    const m = /^Bearer\s+(\S+)\s*$/i.exec(header ?? "");
    if (!m || !this.token) return false;
    const given = Buffer.from(m[1]!);
    const expected = Buffer.from(this.token);
    return given.length === expected.length && timingSafeEqual(given, expected);
  }

  /** LocalStack's chaos API, kept as fault rules. */
  private readonly chaos = new LocalStackChaos(() => this.faults());

  private faults(): Faults {
    const addon = this.ctx.addons.get("faults") as Faults | undefined;
    if (!addon) throw new ApiError(404, "fault injection is not loaded in this front end");
    return addon;
  }
}

async function readJson(req: http.IncomingMessage): Promise<Record<string, unknown>> {
  const parsed = await readJsonValue(req);
  if (typeof parsed !== "object" || parsed === null || Array.isArray(parsed)) throw new ApiError(400, "the body must be a JSON object");
  return parsed as Record<string, unknown>;
}

async function readJsonValue(req: http.IncomingMessage): Promise<unknown> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const c of req as AsyncIterable<Buffer>) {
    size += c.length;
    if (size > MAX_BODY) throw new ApiError(413, "request body is larger than 1 MiB");
    chunks.push(c);
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(Buffer.concat(chunks).toString("utf8"));
  } catch (err) {
    throw new ApiError(400, `the body is not valid JSON: ${(err as Error).message}`);
  }
  return parsed;
}

function send(res: http.ServerResponse, status: number, body: unknown, extra: Record<string, string> = {}): void {
  const text = JSON.stringify(body) + "\n";
  res.writeHead(status, { "content-type": "application/json; charset=utf-8", "content-length": Buffer.byteLength(text), "cache-control": "no-store", ...extra });
  res.end(text);
}

/** A command's result as JSON: text and plain data as they are, flows by id, cycles cut. */
function toJson(value: unknown): unknown {
  if (value === undefined) return null;
  const seen = new WeakSet<object>();
  try {
    return JSON.parse(
      JSON.stringify(value, (_key, v: unknown) => {
        if (typeof v === "bigint") return String(v);
        if (Buffer.isBuffer(v)) return v.toString("base64");
        if (v && typeof v === "object") {
          if ((v as { type?: unknown }).type === "http" && "request" in v && "id" in v) return { flow: (v as { id: string }).id };
          if (seen.has(v)) return undefined;
          seen.add(v);
        }
        return v;
      }),
    );
  } catch {
    return String(value);
  }
}
