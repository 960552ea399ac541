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

/** How much the view keeps by default. */
export interface ViewLimits {
  maxFlows: number;
  maxBytes: number;
}

/** The console and web UI browse history: they keep a lot (~5 KB per small flow, ~230 MB at 50,000). */
export const BROWSING_VIEW: ViewLimits = { maxFlows: 50_000, maxBytes: 256 * 1024 * 1024 };

/**
 * `sluice dump` prints each flow as it ends; its view only serves commands on recent flows (the
 * admin API, replay), so it stays sidecar-sized (README "Memory").
 */
export const DUMP_VIEW: ViewLimits = { maxFlows: 1000, maxBytes: 16 * 1024 * 1024 };

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
  private ctx: AddonContext | null = null;
  focusId: string | null = null;

  constructor(private readonly defaults: ViewLimits = BROWSING_VIEW) {
    this.max = defaults.maxFlows;
    this.maxBytes = defaults.maxBytes;
  }

  load(ctx: AddonContext): void {
    this.ctx = ctx;
    ctx.options.add({ name: "view_filter", type: "optional-string", default: null, help: "Show only flows matching this filter in the console and web views" });
    ctx.options.add({ name: "view_max_flows", type: "int", default: this.defaults.maxFlows, help: "Flows kept in the view; the oldest finished ones are dropped past this (default 100000 in the web UI, 50000 in the console, 1000 in sluice dump)" });
    ctx.options.add({ name: "view_max_bytes", type: "size", default: this.defaults.maxBytes, help: "Body bytes kept in the view (e.g. 256m, 2g); the oldest finished flows are dropped past this (default 256m in the console and web UI, 16m in sluice dump)" });
  }

  configure(updated: Set<string>): void {
    if (!this.ctx) return;
    if (updated.has("view_filter")) {
      const expr = this.ctx.options.get<string | null>("view_filter");
      this.shownFilter = expr ? compileFilter(expr) : null;
      this.emit("clear", null);
    }
    if (updated.has("view_max_flows")) this.max = Math.max(1, this.ctx.options.get<number>("view_max_flows"));
    if (updated.has("view_max_bytes")) this.maxBytes = Math.max(1, this.ctx.options.get<number>("view_max_bytes"));
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
