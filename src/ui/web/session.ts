/**
 * One browser tab over the WebSocket. Everything it does goes through the master: view and
 * intercept filters are the `view_filter` and `intercept` options (set with the `set` command),
 * actions are command lines, edits use the console editor's own parser. The tab only receives
 * what it shows: its page of the flow list, the flow it has open, and the pages it is on.
 */
import type { WebSocket } from "ws";
import type { HTTPFlow } from "../../core/flow.js";
import type { AddonContext } from "../../core/addons.js";
import type { LineLogger, LogEntry } from "../../core/log.js";
import { LiveView, checkFilter, type FilterProblem } from "./live-view.js";
import { detailOf } from "./flow-json.js";
import { bumpVersion, flowVersions } from "./versions.js";
import { faultsPage, optionsPage, retriesPage, shapingPage } from "./pages.js";
import { applyMessageText, messageAsText } from "../console/editor.js";
import { quoteWord } from "../console/controller.js";
import { exportFlow, exportsDirBodyFile } from "../../addons/export.js";
import type { StateMessage } from "./protocol.js";
import { INTERCEPT_OPTIONS } from "../../addons/intercept.js";

export type PageName = "retries" | "faults" | "shaping" | "options" | "events";

/** What a tab may send. */
type Incoming =
  | { type: "view"; filter?: string; highlight?: string; sort?: string; desc?: boolean; offset?: number; limit?: number }
  | { type: "intercept"; expr: string }
  | { type: "focus"; id?: string; index?: number }
  | { type: "detail"; id: string | null }
  | { type: "command"; reqId: number; line: string }
  | { type: "editText"; reqId: number; id: string; part: "request" | "response" }
  | { type: "edit"; reqId: number; id: string; part: "request" | "response"; original: string; text: string }
  | { type: "export"; reqId: number; id: string; format: string }
  | { type: "pages"; pages: PageName[] };


export class Session {
  readonly live: LiveView;
  private detailId: string | null = null;
  private detailSent = -1;
  private pages = new Set<PageName>();
  private eventsSeen = 0;
  private interceptError: FilterProblem | null = null;
  private stateSent = "";
  private unsubscribe: (() => void)[] = [];
  private closed = false;

  constructor(
    private readonly master: AddonContext,
    private readonly socket: WebSocket,
    private readonly info: { proxy: string; web: string },
  ) {
    this.live = new LiveView(master.view);
    this.live.configure({ filter: master.view.options.view_filter ?? "", ...this.viewOrder() }, () => this.flush());
    this.unsubscribe.push(master.view.onChange((event, flow) => this.live.onViewEvent(event, flow)));
    this.unsubscribe.push(
      master.options.onChange((changed) => {
        if (changed.has("view_filter")) this.live.configure({ filter: master.view.options.view_filter ?? "" }, () => this.flush());
        if (changed.has("view_order") || changed.has("view_order_reversed")) this.live.configure(this.viewOrder(), () => this.flush());
        this.stateSent = "";
      }),
    );
    this.unsubscribe.push((master.log as LineLogger).onEntry((e) => this.onLog(e)));
    socket.on("message", (data) => {
      let msg: Incoming;
      try {
        msg = JSON.parse(String(data)) as Incoming;
      } catch {
        return this.send({ type: "error", message: "messages must be JSON" });
      }
      this.handle(msg).catch((err: Error) => this.send({ type: "error", message: err.message }));
    });
  }

  close(): void {
    this.closed = true;
    for (const u of this.unsubscribe) u();
  }

  private send(message: unknown): void {
    if (this.closed || this.socket.readyState !== this.socket.OPEN) return;
    this.socket.send(JSON.stringify(message));
  }

  /** Whether the socket can take more: a tab that cannot keep up gets fewer, not queued, updates. */
  private get congested(): boolean {
    return this.socket.bufferedAmount > 4 * 1024 * 1024;
  }

  private onLog(entry: LogEntry): void {
    if (this.pages.has("events")) this.logDirty = true;
    if (entry.level === "error" || entry.level === "warn") this.stateSent = "";
  }
  private logDirty = false;

  private async handle(msg: Incoming): Promise<void> {
    switch (msg.type) {
      case "view": {
        const { filter, ...rest } = msg;
        this.live.configure(rest, () => this.flush());
        if (filter !== undefined && filter.trim() !== (this.master.view.options.view_filter ?? "")) {
          const { problem } = checkFilter(filter);
          // A bad expression keeps the last good filter and says where it is wrong.
          if (problem) this.live.configure({ filter }, () => this.flush());
          else {
            await this.master.commands.execute(`set ${quoteWord(`view_filter=${filter.trim()}`)}`);
            this.send({ type: "notice", text: filter.trim() ? `showing ${filter.trim()}` : "view filter cleared" });
          }
        } else if (filter !== undefined) this.live.configure({ filter }, () => this.flush());
        break;
      }
      case "intercept": {
        const { problem } = checkFilter(msg.expr);
        this.interceptError = problem;
        if (!problem) {
          await this.master.commands.execute(`set ${quoteWord(`intercept=${msg.expr.trim()}`)}`);
          this.send({ type: "notice", text: msg.expr.trim() ? `intercepting ${msg.expr.trim()}` : "intercept filter cleared" });
        }
        this.stateSent = "";
        break;
      }
      case "focus": {
        const flow = msg.id !== undefined ? this.master.view.get(msg.id) : msg.index !== undefined ? this.live.at(msg.index) : undefined;
        if (flow) this.master.view.focusId = flow.id;
        this.live.dirty = true;
        break;
      }
      case "detail":
        this.detailId = msg.id;
        this.detailSent = -1;
        break;
      case "command": {
        try {
          const result = await this.master.commands.execute(msg.line);
          this.send({ type: "result", reqId: msg.reqId, ok: true, text: result === undefined || result === null ? `ran ${msg.line}` : String(result) });
        } catch (err) {
          this.send({ type: "result", reqId: msg.reqId, ok: false, text: (err as Error).message });
        }
        this.live.dirty = true;
        this.detailSent = -1;
        break;
      }
      case "editText": {
        const flow = this.master.view.get(msg.id);
        if (!flow) return this.send({ type: "result", reqId: msg.reqId, ok: false, text: "no such flow: it was deleted or dropped from the view" });
        if (msg.part === "response" && !flow.response) return this.send({ type: "result", reqId: msg.reqId, ok: false, text: "this flow has no response yet: edit its request, or resume it and intercept the response" });
        this.send({ type: "result", reqId: msg.reqId, ok: true, text: messageAsText(flow, msg.part) });
        break;
      }
      case "edit": {
        const flow = this.master.view.get(msg.id);
        if (!flow) return this.send({ type: "result", reqId: msg.reqId, ok: false, text: "no such flow: it was deleted or dropped from the view" });
        try {
          const changed = applyMessageText(flow, msg.part, msg.original, msg.text);
          this.master.view.update(flow);
          bumpVersion(flow);
          this.send({ type: "result", reqId: msg.reqId, ok: true, text: changed.length ? `changed ${changed.join(", ")}` : "nothing changed" });
        } catch (err) {
          this.send({ type: "result", reqId: msg.reqId, ok: false, text: (err as Error).message });
        }
        break;
      }
      case "export": {
        const flow = this.master.view.get(msg.id);
        if (!flow) return this.send({ type: "result", reqId: msg.reqId, ok: false, text: "no such flow: it was deleted or dropped from the view" });
                try {
          // The `export` command's own code: what the page copies is what `:export curl @focus` shows.
          this.send({ type: "result", reqId: msg.reqId, ok: true, text: exportFlow(msg.format, flow, exportsDirBodyFile(this.master.core.confdir, flow)).toString("utf8").replace(/\n$/, "") });
        } catch (err) {
          this.send({ type: "result", reqId: msg.reqId, ok: false, text: (err as Error).message });
        }
        break;
      }
      case "pages":
        this.pages = new Set(msg.pages);
        if (this.pages.has("events")) {
          this.eventsSeen = 0;
          this.logDirty = true;
        }
        await this.sendPages();
        break;
      default:
        this.send({ type: "error", message: `unknown message type ${JSON.stringify((msg as { type?: unknown }).type)}` });
    }
    this.flush();
  }

  /** Sends what changed: the list page, the open flow, the state line, the event log. */
  flush(): void {
    if (this.closed || this.congested) return;
    if (this.live.dirty) this.send(this.live.rows(this.master.view.focusId));
    if (this.detailId !== null) {
      const flow = this.master.view.get(this.detailId);
      const version = flow ? (flowVersions.get(flow) ?? 0) : -2;
      if (version !== this.detailSent) {
        this.detailSent = version;
        this.send({ type: "detail", id: this.detailId, flow: flow ? detailOf(flow) : null });
      }
    }
    const state = this.state();
    const text = JSON.stringify(state);
    if (text !== this.stateSent) {
      this.stateSent = text;
      this.send(state);
    }
    if (this.logDirty) {
      this.logDirty = false;
      const log = this.master.log as LineLogger;
      const fresh = Math.min(log.recent.length, Math.max(0, log.count - this.eventsSeen));
      this.eventsSeen = log.count;
      if (fresh) this.send({ type: "events", entries: log.recent.slice(log.recent.length - fresh) });
    }
  }

  private state(): StateMessage {
    const interceptOptions = this.master.options.lookup(INTERCEPT_OPTIONS);
    const intercept = this.master.addons.get("intercept") as { paused?: Set<HTTPFlow> } | undefined;
    return {
      type: "state",
      proxy: this.info.proxy,
      mode: this.master.core.mode.join(", "),
      viewFilter: this.master.view.options.view_filter ?? "",
      intercept: interceptOptions?.intercept ?? "",
      interceptError: this.interceptError,
      paused: intercept?.paused?.size ?? 0,
      focusId: this.master.view.focusId,
    };
  }

  /** The list order the view_order options ask for; a tab may then sort by any column of its own. */
  private viewOrder(): { sort: string; desc: boolean } {
    const o = this.master.view.options;
    return { sort: o.view_order, desc: o.view_order_reversed };
  }

  /** Pages refresh once a second while a tab shows them, and at once when it opens one. */
  async sendPages(): Promise<void> {
    if (this.closed || this.congested) return;
    if (this.pages.has("retries")) this.send({ type: "retries", data: retriesPage(this.master) });
    if (this.pages.has("faults")) this.send({ type: "faults", data: faultsPage(this.master) });
    if (this.pages.has("shaping")) this.send({ type: "shaping", data: shapingPage(this.master) });
    if (this.pages.has("options")) this.send({ type: "options", data: optionsPage(this.master) });
  }
}
