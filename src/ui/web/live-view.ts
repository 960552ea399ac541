/**
 * One browser's window on the flow view: its view filter, highlight and sort, kept up to date
 * incrementally as flows arrive (one filter call per new flow), and paged, so the page only ever
 * receives the rows it shows. A new filter over a large view runs in slices between other work
 * and reports its progress; a newer filter cancels an older one still running.
 */
import type { HTTPFlow } from "../../core/flow.js";
import type { FlowView } from "../../core/view.js";
import { compileFilter, FilterSyntaxError, type FlowPredicate } from "../../core/filter.js";
import { summaryOf, type FlowSummary } from "./flow-json.js";
import { flowVersions } from "./versions.js";
import type { FilterProblem, RowsMessage } from "./protocol.js";
export type { FilterProblem, RowsMessage } from "./protocol.js";

export type SortColumn = "time" | "method" | "url" | "status" | "type" | "size" | "duration";
export const SORT_COLUMNS: readonly SortColumn[] = ["time", "method", "url", "status", "type", "size", "duration"];

/** Flows filtered per slice before yielding to the proxy. */
const SLICE = 5000;

/** Sorting keys: numbers sort numerically, missing values last. */
const SORT_KEYS: Record<Exclude<SortColumn, "time">, (f: HTTPFlow) => string | number> = {
  method: (f) => f.request.method,
  url: (f) => f.request.prettyUrl,
  status: (f) => f.response?.statusCode ?? (f.error ? 1000 : 1001),
  type: (f) => f.response?.headers.get("content-type") ?? "\uffff",
  size: (f) => (f.response ? (f.response.content?.length ?? f.response.contentLength) : -1),
  duration: (f) => f.duration ?? Number.MAX_VALUE,
};

/** Compiles an expression for the page: null when empty, else the predicate or a positioned problem. */
export function checkFilter(expr: string): { predicate: FlowPredicate | null; problem: FilterProblem | null } {
  const text = expr.trim();
  if (!text) return { predicate: null, problem: null };
  try {
    return { predicate: compileFilter(text), problem: null };
  } catch (err) {
    const position = err instanceof FilterSyntaxError ? err.position : null;
    return { predicate: null, problem: { message: (err as Error).message, position } };
  }
}

export class LiveView {
  private filterText = "";
  private filter: FlowPredicate | null = null;
  private filterError: FilterProblem | null = null;
  private highlight: FlowPredicate | null = null;
  private highlightError: FilterProblem | null = null;
  private sort: SortColumn = "time";
  private desc = false;
  offset = 0;
  limit = 100;
  /** Filtered (and sorted) flows; null means "the view's own array, in arrival order". */
  private list: HTTPFlow[] | null = null;
  private listed = new Set<HTTPFlow>();
  private rebuilding: { generation: number; done: number; of: number } | null = null;
  private generation = 0;
  private knownLength = 0;
  private needsRebuild = false;
  private needsSort = false;
  private lastSort = 0;
  /** Something the page shows changed since the last `rows()`. */
  dirty = true;

  constructor(private readonly view: FlowView) {
    this.knownLength = view.all.length;
  }

  /** Called for every change of the flow view. */
  onViewEvent(event: "add" | "update" | "remove" | "clear", flow: HTTPFlow | null): void {
    this.dirty = true;
    if (event === "clear") return void (this.needsRebuild = true);
    // The view trims its oldest flows without an event: a length that did not grow by one means a trim.
    if (event === "add" && this.view.all.length !== this.knownLength + 1) this.needsRebuild = true;
    this.knownLength = this.view.all.length;
    if (this.needsRebuild || !flow) return;
    if (event === "remove") {
      if (this.list === null || this.listed.has(flow)) this.needsRebuild = true;
      return;
    }
    if (this.list === null) return;
    if (this.rebuilding) {
      // The running rebuild reaches this flow later (add) or may have judged it already (update).
      if (event === "update") this.needsRebuild = true;
      return;
    }
    const shown = !this.filter || this.filter(flow);
    const listed = this.listed.has(flow);
    if (shown && !listed) {
      this.list.push(flow);
      this.listed.add(flow);
      if (this.sort !== "time" || this.desc) this.needsSort = true;
    } else if (!shown && listed) this.needsRebuild = true;
    else if (shown && this.sort !== "time") this.needsSort = true;
  }

  /** Applies the page's settings; a changed filter starts a rebuild. */
  configure(settings: { filter?: string; highlight?: string; sort?: string; desc?: boolean; offset?: number; limit?: number }, onProgress: () => void): void {
    this.dirty = true;
    if (settings.highlight !== undefined) {
      const h = checkFilter(settings.highlight);
      this.highlight = h.predicate;
      this.highlightError = h.problem;
    }
    if (typeof settings.offset === "number" && settings.offset >= 0) this.offset = Math.floor(settings.offset);
    if (typeof settings.limit === "number" && settings.limit > 0) this.limit = Math.min(500, Math.floor(settings.limit));
    let rebuild = false;
    if (settings.sort !== undefined && SORT_COLUMNS.includes(settings.sort as SortColumn) && settings.sort !== this.sort) {
      this.sort = settings.sort as SortColumn;
      rebuild = true;
    }
    if (settings.desc !== undefined && settings.desc !== this.desc) {
      this.desc = settings.desc;
      rebuild = true;
    }
    if (settings.filter !== undefined && settings.filter.trim() !== this.filterText) {
      const f = checkFilter(settings.filter);
      this.filterError = f.problem;
      // A bad expression keeps the last good filter, as mitmweb does, and says what is wrong.
      if (!f.problem) {
        this.filterText = settings.filter.trim();
        this.filter = f.predicate;
        rebuild = true;
      }
    } else if (settings.filter !== undefined) this.filterError = null;
    if (rebuild || this.needsRebuild) void this.rebuild(onProgress);
  }

  get filterExpression(): string {
    return this.filterText;
  }

  /** Re-filters the whole view in slices; the page sees progress while it runs. */
  async rebuild(onProgress: () => void): Promise<void> {
    const generation = ++this.generation;
    this.needsRebuild = false;
    this.needsSort = false;
    this.knownLength = this.view.all.length;
    if (!this.filter && this.sort === "time" && !this.desc) {
      this.list = null;
      this.listed = new Set();
      this.rebuilding = null;
      this.dirty = true;
      return;
    }
    const source = this.view.all.slice();
    const filter = this.filter;
    const out: HTTPFlow[] = [];
    this.rebuilding = { generation, done: 0, of: source.length };
    for (let i = 0; i < source.length; i += SLICE) {
      const end = Math.min(source.length, i + SLICE);
      for (let j = i; j < end; j++) if (!filter || filter(source[j]!)) out.push(source[j]!);
      if (end < source.length) {
        this.rebuilding = { generation, done: end, of: source.length };
        this.dirty = true;
        onProgress();
        await new Promise((r) => setImmediate(r));
        if (generation !== this.generation) return;
      }
    }
    // Flows that arrived while the slices ran.
    for (let j = source.length; j < this.view.all.length; j++) {
      const f = this.view.all[j]!;
      if (!filter || filter(f)) out.push(f);
    }
    this.knownLength = this.view.all.length;
    this.list = out;
    this.listed = new Set(out);
    this.sortList();
    this.rebuilding = null;
    this.dirty = true;
    onProgress();
  }

  private sortList(): void {
    if (!this.list) return;
    this.lastSort = Date.now();
    this.needsSort = false;
    if (this.sort === "time") {
      this.list.sort((a, b) => a.timestampCreated - b.timestampCreated);
    } else {
      const key = SORT_KEYS[this.sort];
      // Keys computed once per flow, not once per comparison.
      const keyed = this.list.map((f, i) => ({ f, k: key(f), i }));
      keyed.sort((a, b) => (a.k < b.k ? -1 : a.k > b.k ? 1 : a.i - b.i));
      this.list = keyed.map((x) => x.f);
    }
    if (this.desc) this.list.reverse();
  }

  private flows(): readonly HTTPFlow[] {
    if (this.needsRebuild && !this.rebuilding) void this.rebuild(() => {});
    // A busy proxy changes sizes and statuses constantly: re-sort at most twice a second.
    if (this.needsSort && Date.now() - this.lastSort > 500) this.sortList();
    return this.list ?? this.view.all;
  }

  /** The page's window: `limit` summaries from `offset`, with totals and any filter problem. */
  rows(focusId: string | null): RowsMessage {
    this.dirty = false;
    const flows = this.flows();
    const total = flows.length;
    const offset = Math.max(0, Math.min(this.offset, Math.max(0, total - 1)));
    const rows: FlowSummary[] = [];
    for (let i = offset; i < Math.min(total, offset + this.limit); i++) {
      const s = summaryOf(flows[i]!);
      s.v = flowVersions.get(flows[i]!) ?? 0;
      if (this.highlight?.(flows[i]!)) s.highlight = true;
      rows.push(s);
    }
    let focusIndex = -1;
    if (focusId) {
      // Usually on screen: look there first, then everywhere.
      const local = rows.findIndex((r) => r.id === focusId);
      focusIndex = local >= 0 ? offset + local : flows.findIndex((f) => f.id === focusId);
    }
    const r = this.rebuilding;
    return {
      type: "rows",
      total,
      all: this.view.all.length,
      offset,
      rows,
      focusIndex,
      progress: r ? { done: r.done, of: r.of } : null,
      filterError: this.filterError,
      highlightError: this.highlightError,
    };
  }

  /** The flow at an index of the filtered list (keyboard navigation past the loaded window). */
  at(index: number): HTTPFlow | undefined {
    return this.flows()[index];
  }

  /** The filtered flows, for "save the shown flows" and `@shown`-like selections. */
  shown(): readonly HTTPFlow[] {
    return this.flows();
  }
}
