/**
 * The flow view: the flows a front end knows about, in arrival order, with a focus, and the
 * selectors commands use (`@all`, `@focus`, `@shown`, `@hidden`, `@marked`, `@unmarked`, or a filter).
 * Bounded: past `view_max_flows` flows, or `view_max_bytes` of kept bodies, the oldest finished
 * flows are forgotten so memory stays flat (a long `sluice dump` in front of S3 downloads would
 * otherwise keep every body it saw).
 */
import type { Addon, AddonContext } from "./addons.js";
import type { HTTPFlow } from "./flow.js";
import { compileFilter, type FlowPredicate } from "./filter.js";
import { declareOptions, type TypedOptions } from "./options.js";

/** How much the view keeps by default. */
export interface ViewLimits {
  maxFlows: number;
  maxBytes: number;
}

/** The console and web UI browse history: they keep a lot (~5 KB per small flow, ~230 MB at 50,000). */
export const BROWSING_VIEW: ViewLimits = { maxFlows: 50_000, maxBytes: 256 * 1024 * 1024 };

/**
 * `sluice dump` prints each flow as it ends; its view only serves commands on recent flows (the
 * admin API, replay), so it stays sidecar-sized (README "Memory"). 100 rather than 1,000: a flow
 * kept past a couple of young-generation collections is promoted and collected in old space,
 * which cost more CPU per request than the view saved and ~20 MB of RSS under load.
 */
export const DUMP_VIEW: ViewLimits = { maxFlows: 100, maxBytes: 16 * 1024 * 1024 };

/** mitmproxy's view orders (its `view.order.options`). */
export const VIEW_ORDERS = ["time", "method", "url", "size"] as const;
export type ViewOrder = (typeof VIEW_ORDERS)[number];

/** Each order's key, as mitmproxy's View computes it. */
export const VIEW_ORDER_KEYS: Record<ViewOrder, (f: HTTPFlow) => string | number> = {
  time: (f) => f.request.timestampStart,
  method: (f) => f.request.method,
  url: (f) => f.request.url,
  // Request plus response body, as recorded (mitmproxy's OrderKeySize: raw_content lengths).
  size: (f) => (f.request.content?.length ?? 0) + (f.response?.content?.length ?? 0),
};

/**
 * `flows` sorted by a view order: keys computed once per flow, ties kept in arrival order,
 * reversed as a whole when asked (mitmproxy's view_order_reversed).
 */
export function sortFlows(flows: readonly HTTPFlow[], order: ViewOrder, reversed: boolean): HTTPFlow[] {
  const key = VIEW_ORDER_KEYS[order];
  const keyed = flows.map((f, i) => ({ f, k: key(f), i }));
  keyed.sort((a, b) => (a.k < b.k ? -1 : a.k > b.k ? 1 : a.i - b.i));
  const out = keyed.map((x) => x.f);
  return reversed ? out.reverse() : out;
}

/** The view's options, declared once; front ends read them through `FlowView.options`. */
export const VIEW_OPTIONS = declareOptions({
  view_filter: { type: "optional-string", default: null, help: "Show only flows matching this filter in the console and web views" },
  view_order: { type: "string", default: "time", choices: VIEW_ORDERS, help: "Order of the flow list in the console and web UI: time, method, url or size (request plus response body)" },
  view_order_reversed: { type: "bool", default: false, help: "Reverse the order of the flow list" },
  console_focus_follow: { type: "bool", default: false, help: "The focus follows new flows: each new flow the list shows gets the focus (console and web UI)" },
  view_max_flows: { type: "int", default: BROWSING_VIEW.maxFlows, min: 1, help: "Flows kept in the view; the oldest finished ones are dropped past this (default 100000 in the web UI, 50000 in the console, 100 in sluice dump)" },
  view_max_bytes: { type: "size", default: BROWSING_VIEW.maxBytes, help: "Body bytes kept in the view (e.g. 256m, 2g); the oldest finished flows are dropped past this (default 256m in the console and web UI, 16m in sluice dump)" },
});
export type ViewOptions = TypedOptions<typeof VIEW_OPTIONS>;

export type ViewListener = (event: "add" | "update" | "remove" | "clear", flow: HTTPFlow | null) => void;

export class FlowView implements Addon {
  name = "view";
  private flows: HTTPFlow[] = [];
  private byId = new Map<string, HTTPFlow>();
  private listeners: ViewListener[] = [];
  private shownFilter: FlowPredicate | null = null;
  private max: number;
  private maxBytes: number;
  /** Body bytes of the flows in the view, as counted when each flow last changed. */
  private bytes = 0;
  /** Per flow id, its body bytes as counted: a plain map, cleared as flows leave (no WeakMap per flow). */
  private counted = new Map<string, number>();
  private opts: ViewOptions | null = null;
  focusId: string | null = null;

  constructor(private readonly defaults: ViewLimits = BROWSING_VIEW) {
    this.max = defaults.maxFlows;
    this.maxBytes = defaults.maxBytes;
  }

  load(ctx: AddonContext): void {
    this.opts = ctx.options.register({
      ...VIEW_OPTIONS,
      view_max_flows: { ...VIEW_OPTIONS.view_max_flows, default: this.defaults.maxFlows },
      view_max_bytes: { ...VIEW_OPTIONS.view_max_bytes, default: this.defaults.maxBytes },
    });
  }

  /** The view's options (view_filter, view_order, …), typed. */
  get options(): ViewOptions {
    if (!this.opts) throw new Error("the flow view's options are read before the view was loaded");
    return this.opts;
  }

  configure(updated: Set<string>): void {
    const o = this.opts;
    if (!o) return;
    if (updated.has("view_filter")) {
      this.shownFilter = o.view_filter ? compileFilter(o.view_filter) : null;
      this.emit("clear", null);
    }
    if (updated.has("view_order") || updated.has("view_order_reversed")) this.emit("clear", null);
    if (updated.has("view_max_flows")) this.max = o.view_max_flows;
    if (updated.has("view_max_bytes")) this.maxBytes = Math.max(1, o.view_max_bytes);
  }

  requestHeaders(flow: HTTPFlow): void {
    this.add(flow);
  }
  response(flow: HTTPFlow): void {
    this.update(flow);
  }
  error(flow: HTTPFlow): void {
    this.update(flow);
  }

  onChange(listener: ViewListener): () => void {
    this.listeners.push(listener);
    return () => {
      this.listeners = this.listeners.filter((l) => l !== listener);
    };
  }

  private emit(event: Parameters<ViewListener>[0], flow: HTTPFlow | null): void {
    for (const l of this.listeners) l(event, flow);
  }

  add(flow: HTTPFlow): void {
    if (this.byId.has(flow.id)) return this.update(flow);
    this.flows.push(flow);
    this.byId.set(flow.id, flow);
    this.focusId ??= flow.id;
    // mitmproxy's console_focus_follow: a new flow the list shows takes the focus.
    if (this.opts?.console_focus_follow && this.isShown(flow)) this.focusId = flow.id;
    if (this.flows.length > this.max) this.trim();
    this.count(flow);
    this.emit("add", flow);
  }

  update(flow: HTTPFlow): void {
    if (!this.byId.has(flow.id)) return this.add(flow);
    this.count(flow);
    this.emit("update", flow);
  }

  /** Re-counts a flow's body bytes; trims when the view holds too many. */
  private count(flow: HTTPFlow): void {
    const size = (flow.request.content?.length ?? 0) + (flow.response?.content?.length ?? 0);
    this.bytes += size - (this.counted.get(flow.id) ?? 0);
    this.counted.set(flow.id, size);
    if (this.bytes > this.maxBytes) this.trimBytes(flow);
  }

  private uncount(flow: HTTPFlow): void {
    this.bytes -= this.counted.get(flow.id) ?? 0;
    this.counted.delete(flow.id);
  }

  /** Drops the oldest finished flows until the kept bodies are down to 90% of the byte cap. */
  private trimBytes(keep: HTTPFlow): void {
    const target = Math.floor(this.maxBytes * 0.9);
    this.flows = this.flows.filter((f) => {
      if (this.bytes > target && f !== keep && !f.live && !f.intercepted && !f.marked && (this.counted.get(f.id) ?? 0) > 0) {
        this.uncount(f);
        this.byId.delete(f.id);
        return false;
      }
      return true;
    });
    if (this.focusId !== null && !this.byId.has(this.focusId)) this.focusId = this.flows.at(-1)?.id ?? null;
  }

  remove(flow: HTTPFlow): void {
    if (!this.byId.delete(flow.id)) return;
    this.uncount(flow);
    this.flows.splice(this.flows.indexOf(flow), 1);
    if (this.focusId === flow.id) this.focusId = this.flows.at(-1)?.id ?? null;
    this.emit("remove", flow);
  }

  clear(): void {
    this.flows = [];
    this.byId.clear();
    this.bytes = 0;
    this.counted.clear();
    this.focusId = null;
    this.emit("clear", null);
  }

  /** Drops the oldest finished flows down to 90% of the cap, so a full view trims once per max/10 flows, not per flow. */
  private trim(): void {
    const excess = this.flows.length - this.max + Math.floor(this.max / 10);
    let removed = 0;
    this.flows = this.flows.filter((f) => {
      if (removed < excess && !f.live && !f.intercepted && !f.marked) {
        removed++;
        this.uncount(f);
        this.byId.delete(f.id);
        return false;
      }
      return true;
    });
    if (this.focusId !== null && !this.byId.has(this.focusId)) this.focusId = this.flows[0]?.id ?? null;
  }

  get all(): readonly HTTPFlow[] {
    return this.flows;
  }

  get(id: string): HTTPFlow | undefined {
    return this.byId.get(id);
  }

  get focus(): HTTPFlow | undefined {
    return this.focusId ? this.byId.get(this.focusId) : undefined;
  }

  isShown(flow: HTTPFlow): boolean {
    return !this.shownFilter || this.shownFilter(flow);
  }

  get shown(): HTTPFlow[] {
    return this.shownFilter ? this.flows.filter(this.shownFilter) : this.flows.slice();
  }

  /** Resolves a selector to flows. Throws (with the filter's message) on a bad expression. */
  resolve(selector: string): HTTPFlow[] {
    switch (selector) {
      case "@all":
        return this.flows.slice();
      case "@focus": {
        const f = this.focus;
        return f ? [f] : [];
      }
      case "@shown":
        return this.shown;
      case "@hidden":
        return this.shownFilter ? this.flows.filter((f) => !this.shownFilter!(f)) : [];
      case "@marked":
        return this.flows.filter((f) => f.marked);
      case "@unmarked":
        return this.flows.filter((f) => !f.marked);
      default: {
        if (selector.startsWith("@")) throw new Error(`unknown selector ${selector}: use @all, @focus, @shown, @hidden, @marked, @unmarked or a filter expression`);
        const byId = this.byId.get(selector);
        if (byId) return [byId];
        const filter = compileFilter(selector);
        return this.flows.filter(filter);
      }
    }
  }
}
