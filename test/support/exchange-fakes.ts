/**
 * Socket-free doubles for driving one exchange: a client request and response, and an undici
 * dispatcher whose answer the test plays step by step. Everything that happens — hooks, dispatch,
 * controller calls, what the client receives — goes into one ordered log, as in mitmproxy's playbooks.
 */
import { EventEmitter } from "node:events";
import { Readable } from "node:stream";
import type { IncomingHttpHeaders } from "node:http";
import type { Dispatcher } from "undici";
import { AddonManager, type Addon } from "../../src/core/addons.js";
import { registerCoreOptions } from "../../src/core/builtin-options.js";
import { newClientConnection, newServerConnection, type HTTPFlow } from "../../src/core/flow.js";
import { LineLogger } from "../../src/core/log.js";
import { Options } from "../../src/core/options.js";
import type { ProxyContext } from "../../src/proxy/context.js";
import { handleExchange, type ConnectionContext, type Upstreams } from "../../src/proxy/exchange.js";
import type { ClientRequest, ClientResponse } from "../../src/proxy/client-response.js";

export type Log = string[];

/** A client's HTTP/1.1 request: a readable body plus the fields Node's IncomingMessage has. */
export function fakeRequest(method: string, url: string, headers: string[] = [], body?: string): ClientRequest {
  const chunks = body === undefined ? [] : [Buffer.from(body)];
  const req = Readable.from(chunks, { objectMode: false }) as Readable & Record<string, unknown>;
  const all = body === undefined ? headers : [...headers, "content-length", String(Buffer.byteLength(body))];
  const lower: Record<string, string> = {};
  for (let i = 0; i < all.length; i += 2) lower[all[i]!.toLowerCase()] = all[i + 1]!;
  Object.assign(req, { method, url, httpVersion: "1.1", httpVersionMajor: 1, rawHeaders: ["Host", "origin.test", ...all], headers: { host: "origin.test", ...lower } });
  return req as unknown as ClientRequest;
}

/** A client's response: records the head, body bytes and how the connection ended. */
export class FakeResponse extends EventEmitter {
  headersSent = false;
  writableEnded = false;
  writableFinished = false;
  destroyed = false;
  writableLength = 0;
  status = 0;
  headers: string[] = [];
  body = "";
  /** What `write` answers; false with writableLength set plays a client that reads slowly. */
  writeReturns = true;
  readonly socket = {
    destroyed: false,
    destroy: () => this.destroyConnection(),
    write: (_data: string, cb?: () => void) => void setImmediate(() => cb?.()),
  };

  constructor(private readonly log: Log) {
    super();
  }

  writeHead(status: number, _reason: string | Record<string, unknown>, headers?: string[]): this {
    this.headersSent = true;
    this.status = status;
    this.headers = headers ?? [];
    this.log.push(`client: head ${status}`);
    return this;
  }

  flushHeaders(): void {}

  write(chunk: Buffer | string, cb?: () => void): boolean {
    this.body += chunk.toString();
    this.log.push(`client: body ${JSON.stringify(chunk.toString())}`);
    if (cb) setImmediate(cb);
    return this.writeReturns;
  }

  end(chunk?: Buffer | string): this {
    if (chunk !== undefined && chunk.length) this.write(chunk);
    this.writableEnded = true;
    this.log.push("client: end");
    setImmediate(() => {
      this.writableFinished = true;
      this.emit("finish");
      this.emit("close");
    });
    return this;
  }

  /** The client drops its connection before the answer is complete. */
  leave(): void {
    this.log.push("client: leaves");
    this.destroyConnection(false);
  }

  private destroyConnection(bySluice = true): void {
    if (this.socket.destroyed) return;
    if (bySluice) this.log.push("client: connection closed by sluice");
    this.socket.destroyed = true;
    this.destroyed = true;
    setImmediate(() => this.emit("close"));
  }
}

/** undici's controller: records pause/resume/abort; abort reports the error back as undici does. */
export class FakeController implements Dispatcher.DispatchController {
  paused = false;
  aborted = false;
  reason: Error | null = null;
  rawHeaders: Buffer[] | null = null;
  rawTrailers: Buffer[] | null = null;

  constructor(
    private readonly log: Log,
    private readonly handler: Dispatcher.DispatchHandler,
  ) {}

  pause(): void {
    if (!this.paused) this.log.push("upstream: pause");
    this.paused = true;
  }

  resume(): void {
    if (this.paused) this.log.push("upstream: resume");
    this.paused = false;
  }

  abort(reason: Error): void {
    if (this.aborted) return;
    this.aborted = true;
    this.reason = reason;
    this.log.push(`upstream: abort (${reason.message})`);
    this.handler.onResponseError?.(this, reason);
  }
}

/** One dispatched request, answered by the test one step at a time. */
export class FakeDispatch {
  readonly controller: FakeController;

  constructor(
    readonly opts: Dispatcher.DispatchOptions,
    readonly handler: Dispatcher.DispatchHandler,
    log: Log,
  ) {
    this.controller = new FakeController(log, handler);
  }

  /** undici took the request onto a connection. */
  start(): this {
    this.handler.onRequestStart?.(this.controller, {});
    return this;
  }

  head(status: number, headers: string[] = []): this {
    this.controller.rawHeaders = headers.map((h) => Buffer.from(h, "latin1"));
    const parsed: IncomingHttpHeaders = {};
    for (let i = 0; i < headers.length; i += 2) parsed[headers[i]!.toLowerCase()] = headers[i + 1]!;
    this.handler.onResponseStart?.(this.controller, status, parsed, "");
    return this;
  }

  data(text: string): this {
    this.handler.onResponseData?.(this.controller, Buffer.from(text));
    return this;
  }

  end(trailers: string[] = []): this {
    this.controller.rawTrailers = trailers.map((h) => Buffer.from(h, "latin1"));
    this.handler.onResponseEnd?.(this.controller, {});
    return this;
  }

  error(err: Error): this {
    this.handler.onResponseError?.(this.controller, err);
    return this;
  }
}

/** A dispatcher the test drives: it records each dispatch and answers nothing by itself. */
export class FakeDispatcher {
  readonly dispatched: FakeDispatch[] = [];
  constructor(private readonly log: Log) {}

  dispatch(opts: Dispatcher.DispatchOptions, handler: Dispatcher.DispatchHandler): boolean {
    this.log.push(`upstream: ${opts.method} ${opts.path}`);
    this.dispatched.push(new FakeDispatch(opts, handler, this.log));
    return true;
  }

  get last(): FakeDispatch {
    const d = this.dispatched.at(-1);
    if (!d) throw new Error("nothing was dispatched upstream");
    return d;
  }
}

type FlowHookName = "requestHeaders" | "request" | "responseHeaders" | "response" | "error";
export type Hooks = Partial<Record<FlowHookName, (flow: HTTPFlow) => void | Promise<void>>>;

/** A proxy context with core options, one addon that logs every flow hook and runs `hooks`. */
export function exchangeHarness(hooks: Hooks = {}, options: Record<string, string> = {}) {
  const log: Log = [];
  const opts = new Options();
  const core = registerCoreOptions(opts);
  for (const [k, v] of Object.entries(options)) opts.set(k, v);
  const addons = new AddonManager(new LineLogger("silent"));
  const flows: HTTPFlow[] = [];
  const recorder: Addon = { name: "recorder" };
  for (const name of ["requestHeaders", "request", "responseHeaders", "response", "error"] as const) {
    (recorder as Record<string, unknown>)[name] = (flow: HTTPFlow) => {
      if (name === "requestHeaders") flows.push(flow);
      log.push(`hook: ${name}${name === "error" ? ` (${flow.error?.msg})` : ""}`);
      return hooks[name]?.(flow);
    };
  }
  addons.add(recorder);
  const ctx = { options: opts, core, addons, log: new LineLogger("silent"), ca: undefined } as unknown as ProxyContext;
  const dispatcher = new FakeDispatcher(log);
  const serverConn = newServerConnection();
  const upstreams: Upstreams = { entryFor: () => ({ client: dispatcher, serverConn }), usesAbsoluteForm: () => false };
  const cc: ConnectionContext<Upstreams> = {
    clientConn: newClientConnection("reverse:http://origin.test"),
    clientTls: false,
    target: { scheme: "http", host: "origin.test", port: 80 },
    absoluteForm: false,
    upstreams,
    rewriteHost: false,
  };
  return {
    log,
    dispatcher,
    flows,
    /** Starts an exchange; `done` settles once it ended and its last hook ran. */
    exchange(req: ClientRequest = fakeRequest("GET", "/x")) {
      const res = new FakeResponse(log);
      const done = handleExchange(ctx, cc, req, res as unknown as ClientResponse);
      return { res, done, get flow() { return flows.at(-1)!; } };
    },
  };
}

/** Lets queued callbacks (hooks' promises, setImmediate) run. */
export function settle(): Promise<void> {
  return new Promise((r) => setImmediate(r));
}
