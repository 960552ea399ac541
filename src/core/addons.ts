/**
 * The addon manager: ordered hooks, sync or async.
 *
 * Every feature of sluice is an addon. The proxy calls `trigger(hook, …)`; a hook that returns a
 * promise makes only its own flow wait. Errors thrown by an addon are reported and swallowed so a
 * broken script never breaks the flow it was looking at.
 */
import type { HTTPFlow, ClientConnection, ServerConnection } from "./flow.js";

export interface ClientHelloData {
  clientConn: ClientConnection;
  sni: string | null;
  alpnProtocols: string[];
  /** Set to true to pass this connection through without interception. */
  ignoreConnection: boolean;
}

export interface ServerConnectData {
  clientConn: ClientConnection;
  serverConn: ServerConnection;
}

/** mitmproxy's Socks5AuthData: set `valid` to accept the SOCKS5 client's user name and password. */
export interface Socks5AuthData {
  clientConn: ClientConnection;
  username: string;
  password: string;
  valid: boolean;
}

type MaybePromise = void | Promise<void>;

/** Every hook is optional. Names follow mitmproxy's event names in camelCase. */
export interface Addon {
  /** Shown in errors and `sluice addons`. */
  name?: string;
  load?(ctx: AddonContext): MaybePromise;
  /** Options changed (all option names on first call). */
  configure?(updated: Set<string>): MaybePromise;
  running?(): MaybePromise;
  done?(): MaybePromise;
  clientConnected?(client: ClientConnection): MaybePromise;
  clientDisconnected?(client: ClientConnection): MaybePromise;
  serverConnect?(data: ServerConnectData): MaybePromise;
  serverConnected?(data: ServerConnectData): MaybePromise;
  serverDisconnected?(data: ServerConnectData): MaybePromise;
  tlsClientHello?(data: ClientHelloData): MaybePromise;
  /**
   * A SOCKS5 client sent a user name and password (socks5 mode, when the proxyauth option is
   * set); the addon that checks proxy credentials sets `valid`. No answer means refused.
   */
  socks5Auth?(data: Socks5AuthData): MaybePromise;
  /** Request line and headers are in; the body is not (it may stream). */
  requestHeaders?(flow: HTTPFlow): MaybePromise;
  /** Full request; set `flow.response` to answer without contacting the server. */
  request?(flow: HTTPFlow): MaybePromise;
  responseHeaders?(flow: HTTPFlow): MaybePromise;
  response?(flow: HTTPFlow): MaybePromise;
  error?(flow: HTTPFlow): MaybePromise;
  /** An HTTP CONNECT request arrived (regular mode). */
  httpConnect?(flow: HTTPFlow): MaybePromise;
  websocketStart?(flow: HTTPFlow): MaybePromise;
  websocketMessage?(flow: HTTPFlow): MaybePromise;
  websocketEnd?(flow: HTTPFlow): MaybePromise;
}

export type HookName = Exclude<keyof Addon, "name">;

export const HOOK_NAMES: readonly HookName[] = [
  "load", "configure", "running", "done", "clientConnected", "clientDisconnected", "serverConnect",
  "serverConnected", "serverDisconnected", "tlsClientHello", "socks5Auth", "requestHeaders", "request",
  "responseHeaders", "response", "error", "httpConnect", "websocketStart", "websocketMessage", "websocketEnd",
];

type HookArgs<H extends HookName> = Parameters<NonNullable<Addon[H]>>;

/** What an addon gets in `load`: the shared registries. Filled in by whoever owns them. */
export interface AddonContext {
  // Declared loosely here to keep core/addons free of import cycles; see core/options.ts, core/commands.ts.
  options: import("./options.js").Options;
  /** Typed reads of the options every front end has: `ctx.core.confdir`, `ctx.core.mode`. */
  core: import("./builtin-options.js").CoreOptions;
  log: Logger;
  addons: AddonManager;
  commands: import("./commands.js").CommandManager;
  view: import("./view.js").FlowView;
  /** Compiles a filter expression (throws FilterSyntaxError on a bad one). */
  filter: (expression: string) => import("./filter.js").FlowPredicate;
  /**
   * One Prometheus registry per proxy: addons register their counters and gauges here (prefix
   * `sluice_`), and the metrics addon serves it. Registering never opens a socket.
   */
  metrics: import("prom-client").Registry;
  /**
   * State shared by every sluice process that uses the same store (rate budgets, adaptive rates):
   * in-process by default. Features use it and never know which implementation it is.
   */
  state: import("./shared-state.js").SharedState;
  /** The proxy's own listener, for addons that talk to it (client replay); null until it listens. */
  listener(): ProxyListener | null;
  /** sluice's own listening addresses: a listener registers here so the proxy refuses to forward to it. */
  ownListeners: import("./own-listeners.js").OwnListeners;
}

/** Where the proxy listens and the CA certificate its clients must trust. */
export interface ProxyListener {
  address: string;
  port: number;
  caCertFile: string;
}

export interface Logger {
  info(msg: string): void;
  warn(msg: string): void;
  error(msg: string): void;
  debug(msg: string): void;
}

export class AddonManager {
  private addons: Addon[] = [];
  /** Per hook, the bound handlers in addon order; rebuilt on add/remove so dispatch does no lookups. */
  private handlers = new Map<HookName, { addon: Addon; fn: (...a: unknown[]) => MaybePromise }[]>();
  constructor(private readonly log: Logger) {}

  get list(): readonly Addon[] {
    return this.addons;
  }

  add(...addons: Addon[]): void {
    this.addons.push(...addons);
    this.rebuild();
  }

  /** Inserts before the addon named `before` (or at the end if absent). */
  insertBefore(before: string, ...addons: Addon[]): void {
    const i = this.addons.findIndex((a) => a.name === before);
    if (i < 0) this.addons.push(...addons);
    else this.addons.splice(i, 0, ...addons);
    this.rebuild();
  }

  /** Inserts right after `anchor` (or at the end if it is not in the chain). */
  insertAfter(anchor: Addon, ...addons: Addon[]): void {
    const i = this.addons.indexOf(anchor);
    if (i < 0) this.addons.push(...addons);
    else this.addons.splice(i + 1, 0, ...addons);
    this.rebuild();
  }

  remove(addon: Addon): void {
    this.addons = this.addons.filter((a) => a !== addon);
    this.rebuild();
  }

  get(name: string): Addon | undefined {
    return this.addons.find((a) => a.name === name);
  }

  /** Does any addon implement `hook`? Lets the proxy skip work (e.g. buffering) nobody needs. */
  has(hook: HookName): boolean {
    return (this.handlers.get(hook)?.length ?? 0) > 0;
  }

  private rebuild(): void {
    this.handlers.clear();
    for (const hook of HOOK_NAMES) {
      const list: { addon: Addon; fn: (...a: unknown[]) => MaybePromise }[] = [];
      for (const addon of this.addons) {
        const fn = addon[hook];
        if (typeof fn === "function") list.push({ addon, fn: fn as (...a: unknown[]) => MaybePromise });
      }
      this.handlers.set(hook, list);
    }
  }

  /**
   * Runs `hook` on every addon in order. Returns undefined when every handler was synchronous,
   * so the hot path pays for promises only when an addon is actually async.
   * For flow hooks, stops early once the flow is killed, and waits while it is intercepted.
   */
  trigger<H extends HookName>(hook: H, ...args: HookArgs<H>): void | Promise<void> {
    const list = this.handlers.get(hook);
    if (!list || list.length === 0) return;
    // A killed flow stops the chain, except in `error`: every addon should see how a flow ended.
    const flow = hook !== "error" && isFlow(args[0]) ? args[0] : null;
    for (let i = 0; i < list.length; i++) {
      const { addon, fn } = list[i]!;
      let result: MaybePromise;
      try {
        result = fn.apply(addon, args);
      } catch (err) {
        this.reportError(addon, hook, err);
        continue;
      }
      if (result && typeof (result as Promise<void>).then === "function") {
        return this.continueAsync(list, i, result as Promise<void>, hook, args, flow);
      }
      if (flow) {
        if (flow.isKilled) return;
        if (flow.intercepted) return this.continueAsync(list, i, flow.waitForResume(), hook, args, flow);
      }
    }
  }

  private async continueAsync(
    list: { addon: Addon; fn: (...a: unknown[]) => MaybePromise }[],
    index: number,
    pending: Promise<void>,
    hook: HookName,
    args: unknown[],
    flow: HTTPFlow | null,
  ): Promise<void> {
    try {
      await pending;
    } catch (err) {
      this.reportError(list[index]!.addon, hook, err);
    }
    if (flow) {
      if (flow.isKilled) return;
      if (flow.intercepted) await flow.waitForResume();
      if (flow.isKilled) return;
    }
    for (let i = index + 1; i < list.length; i++) {
      const { addon, fn } = list[i]!;
      try {
        await fn.apply(addon, args);
      } catch (err) {
        this.reportError(addon, hook, err);
      }
      if (flow) {
        if (flow.isKilled) return;
        if (flow.intercepted) await flow.waitForResume();
        if (flow.isKilled) return;
      }
    }
  }

  /**
   * Tells every addon in order that options changed. Unlike flow hooks, a refusal is not swallowed:
   * the first addon that throws (or rejects) stops the round and its error, naming the addon,
   * goes to the caller — Options then rolls the values back. Synchronous unless an addon is async.
   */
  configure(updated: Set<string>): void | Promise<void> {
    const list = [...this.addons];
    for (let i = 0; i < list.length; i++) {
      const addon = list[i]!;
      let r: MaybePromise;
      try {
        r = addon.configure?.(updated);
      } catch (err) {
        throw refusal(addon, err);
      }
      if (r && typeof r.then === "function") return this.configureAsync(list, i, r, updated);
    }
  }

  private async configureAsync(list: Addon[], index: number, pending: Promise<void>, updated: Set<string>): Promise<void> {
    try {
      await pending;
    } catch (err) {
      throw refusal(list[index]!, err);
    }
    for (const addon of list.slice(index + 1)) {
      try {
        await addon.configure?.(updated);
      } catch (err) {
        throw refusal(addon, err);
      }
    }
  }

  private reportError(addon: Addon, hook: HookName, err: unknown): void {
    const name = addon.name ?? addon.constructor?.name ?? "addon";
    const detail = err instanceof Error ? (err.stack ?? err.message) : String(err);
    this.log.error(`addon ${name} failed in ${hook}: ${detail}`);
  }
}

/** The error an addon's configure threw, as the user sees it: which addon, and why. */
export class ConfigureError extends Error {
  constructor(
    readonly addon: string,
    reason: unknown,
  ) {
    super(`${addon}: ${reason instanceof Error ? reason.message : String(reason)}`, { cause: reason });
    this.name = "ConfigureError";
  }
}

function refusal(addon: Addon, err: unknown): Error {
  return err instanceof ConfigureError ? err : new ConfigureError(addon.name ?? addon.constructor?.name ?? "addon", err);
}

function isFlow(x: unknown): x is HTTPFlow {
  return typeof x === "object" && x !== null && (x as { type?: unknown }).type === "http" && "request" in x;
}
