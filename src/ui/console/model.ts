/**
 * What the console shows, kept outside React: the shown flows (the view's flows through
 * `view_filter`, maintained incrementally so thousands of flows per second cost one filter call
 * each), the focus (the view's own, so `@focus` in commands is what the cursor is on), and a dirty
 * flag that the app polls at its frame rate instead of redrawing per event.
 */
import type { HTTPFlow } from "../../core/flow.js";
import type { Master } from "../../proxy/master.js";
import type { Intercept } from "../../addons/intercept.js";
import { attemptOf } from "./flow-row.js";
import { sortFlows, type ViewOrder } from "../../core/view.js";
import { FAULTS_OPTIONS } from "../../addons/faults.js";
import { SHAPING_OPTIONS } from "../../addons/shaping.js";

export class ConsoleModel {
  /** Set by anything that changes what is on screen; cleared by the app when it draws. */
  dirty = true;
  private filtered: HTTPFlow[] | null = null;
  private filteredIds = new Set<string>();
  private needsRebuild = false;
  private knownLength = 0;
  private unsubscribe: () => void;

  constructor(readonly master: Master) {
    const view = master.view;
    this.unsubscribe = view.onChange((event, flow) => this.onViewEvent(event, flow));
    (master.addons.get("intercept") as Intercept | undefined)?.onPause?.(() => this.touch());
    master.options.onChange(() => this.touch());
    this.rebuild();
  }

  touch(): void {
    this.dirty = true;
  }

  close(): void {
    this.unsubscribe();
  }

  private hasFilter(): boolean {
    return !!this.master.view.options.view_filter;
  }

  private onViewEvent(event: "add" | "update" | "remove" | "clear", flow: HTTPFlow | null): void {
    this.dirty = true;
    this.orderStale = true;
    if (event === "remove" || event === "clear") this.ordered = null;
    const view = this.master.view;
    if (event === "clear") return void (this.needsRebuild = true);
    // The view trims its oldest flows without an event: a length that did not grow by one means a trim.
    if (event === "add" && view.all.length !== this.knownLength + 1) this.needsRebuild = true;
    this.knownLength = view.all.length;
    if (!this.filtered || !flow || this.needsRebuild) return;
    const shown = view.isShown(flow);
    const listed = this.filteredIds.has(flow.id);
    if (event === "add" && shown) {
      this.filtered.push(flow);
      this.filteredIds.add(flow.id);
    } else if (event === "remove" && listed) this.needsRebuild = true;
    else if (event === "update" && shown !== listed) this.needsRebuild = true;
  }

  private rebuild(): void {
    const view = this.master.view;
    this.needsRebuild = false;
    this.knownLength = view.all.length;
    if (!this.hasFilter()) {
      this.filtered = null;
      this.filteredIds.clear();
      return;
    }
    this.filtered = view.all.filter((f) => view.isShown(f));
    this.filteredIds = new Set(this.filtered.map((f) => f.id));
  }

  /** The flows the list shows, in view_order. In arrival order without a filter, this is the view's own array. */
  get shown(): readonly HTTPFlow[] {
    if (this.needsRebuild || (this.filtered === null) === this.hasFilter()) {
      this.rebuild();
      this.ordered = null;
    }
    const flows = this.filtered ?? this.master.view.all;
    const { view_order: order, view_order_reversed: reversed } = this.master.view.options;
    if (order === "time" && !reversed) return flows;
    const key = `${order} ${reversed}`;
    if (this.ordered && this.orderedBy === key && this.orderStale) {
      // A busy proxy changes sizes and adds flows constantly: re-sort at most twice a second,
      // and keep drawing until the list is sorted again.
      if (Date.now() - this.orderedAt < 500) this.dirty = true;
      else this.ordered = null;
    }
    if (!this.ordered || this.orderedBy !== key) {
      this.ordered = sortFlows(flows, order as ViewOrder, reversed);
      this.orderedBy = key;
      this.orderedAt = Date.now();
      this.orderStale = false;
    }
    return this.ordered;
  }
  private ordered: HTTPFlow[] | null = null;
  private orderedBy = "";
  private orderedAt = 0;
  private orderStale = false;

  get focus(): HTTPFlow | undefined {
    return this.master.view.focus;
  }

  /** Index of the focused flow in `shown`, moving the focus onto a shown flow if it is hidden. */
  focusIndex(): number {
    let shown = this.shown;
    const focused = this.master.view.focus;
    // A flow that just took the focus (console_focus_follow) may not be in a list whose re-sort is
    // still throttled: sort now rather than move the focus off it.
    if (focused && this.ordered === shown && this.master.view.isShown(focused) && !shown.includes(focused)) {
      this.ordered = null;
      shown = this.shown;
    }
    if (shown.length === 0) return -1;
    const id = this.master.view.focusId;
    // The focus is usually near the end or where it was last time: look there first.
    if (id !== null) {
      if (this.lastFocusIndex < shown.length && shown[this.lastFocusIndex]?.id === id) return this.lastFocusIndex;
      const i = shown.findIndex((f) => f.id === id);
      if (i >= 0) return (this.lastFocusIndex = i);
    }
    const i = Math.min(this.lastFocusIndex, shown.length - 1);
    this.master.view.focusId = shown[i]!.id;
    return (this.lastFocusIndex = i);
  }
  private lastFocusIndex = 0;

  setFocusIndex(i: number): void {
    const shown = this.shown;
    if (shown.length === 0) return;
    const j = Math.max(0, Math.min(shown.length - 1, i));
    this.master.view.focusId = shown[j]!.id;
    this.lastFocusIndex = j;
    this.dirty = true;
  }

  moveFocus(delta: number): void {
    this.setFocusIndex(this.focusIndex() + delta);
  }

  get interceptedCount(): number {
    const intercept = this.master.addons.get("intercept") as Intercept | undefined;
    return intercept?.paused.size ?? 0;
  }

  /** The retry addon's tracker, when it is loaded (it sees every flow, even ones the view forgot). */
  private retryTracker(): { totals(): { retries: number } } | null {
    const addon = this.master.addons.get("retries") as { invocations?: { totals?: () => { retries: number } } } | undefined;
    const tracker = addon?.invocations;
    return tracker && typeof tracker.totals === "function" ? (tracker as { totals(): { retries: number } }) : null;
  }

  /** Flows that are a second or later attempt of an SDK call. */
  retriesSeen(): number {
    const tracker = this.retryTracker();
    if (tracker) return tracker.totals().retries;
    let n = 0;
    for (const f of this.master.view.all) {
      const a = attemptOf(f);
      if (a && a.attempt > 1) n++;
    }
    return n;
  }

  /** Enabled fault rules: the faults addon's own list (options, file and runtime rules) when loaded. */
  faultRuleCount(): number | null {
    const faults = this.master.addons.get("faults") as { list?: () => { enabled?: boolean }[] } | undefined;
    if (faults && typeof faults.list === "function") return faults.list().filter((r) => r.enabled !== false).length;
    return this.master.options.lookup(FAULTS_OPTIONS)?.fault_rules.length ?? null;
  }

  /** Shaping rules given as options, and the shaping file, or null when shaping is not loaded. */
  shapingOptions(): { rules: number; file: string | null } | null {
    const o = this.master.options.lookup(SHAPING_OPTIONS);
    return o && { rules: o.shape_rules.length, file: o.shape_file };
  }
}
