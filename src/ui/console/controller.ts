/**
 * The console's behaviour without React: which screen is open, key handling, and the lines each
 * screen draws into a window of a given size. Keys run command lines through the command
 * registry (`flow.resume @focus`, `set intercept=…`), so the console does nothing a `:` command,
 * a script or the web UI could not do the same way.
 */
import type { Key } from "ink";
import { compileFilter } from "../../core/filter.js";
import { formatOptionValue } from "../../core/options.js";
import { INTERCEPT_OPTIONS } from "../../addons/intercept.js";
import { VIEW_ORDERS } from "../../core/view.js";
import type { ExportFormat } from "../../core/export.js";
import type { LineLogger } from "../../core/log.js";
import type { HTTPFlow } from "../../core/flow.js";
import type { ConsoleModel } from "./model.js";
import { flowRow, listHeader } from "./flow-row.js";
import { TABS, tabLines } from "./flow-details.js";
import { helpLines } from "./keymap.js";
import { retryScreenLines } from "./retries.js";
import { statusLine, type StatusInfo } from "./status-bar.js";
import { commandCompleter, newPrompt, promptKey, type PromptState } from "./prompt.js";
import { applyMessageText, configuredEditor, messageAsText, runEditor, type EditPart } from "./editor.js";
import { clipLine, fit, plainLine, seg, type Line } from "./lines.js";

export type Screen = "list" | "flow" | "help" | "events" | "options" | "retries";

/**
 * A one-key question on the bottom line (mitmproxy's status_prompt_onekey): each choice has a
 * key; any other key cancels.
 */
export interface ChoiceMenu {
  label: string;
  choices: { key: string; label: string; pick(): void }[];
}

/** Export formats on the `x` menu, by key (mitmproxy's export.formats). */
const EXPORT_KEYS: { key: string; format: ExportFormat; file: string }[] = [
  { key: "c", format: "curl", file: "flow.curl.sh" },
  { key: "h", format: "httpie", file: "flow.httpie.sh" },
  { key: "r", format: "raw", file: "flow.http" },
  { key: "q", format: "raw_request", file: "flow.request.http" },
  { key: "s", format: "raw_response", file: "flow.response.http" },
  { key: "a", format: "har", file: "flow.har" },
];

export interface ControllerHooks {
  listen: string;
  quit(): void;
  /** Hands the terminal to `fn` (an editor), then takes it back and repaints. */
  suspend<T>(fn: () => T): T;
  env?: NodeJS.ProcessEnv;
}

/** Quotes a value as one word for the command language, keeping quotes and spaces inside it. */
export function quoteWord(value: string): string {
  return `"${value.replace(/\\/g, "\\\\").replace(/"/g, '\\"')}"`;
}

const MOUSE_REPORT = /^\[<(\d+);(\d+);(\d+)([Mm])$/;

/** The ink Key for one raw character of a multi-key chunk. */
export function keyOf(ch: string): Key {
  const code = ch.charCodeAt(0);
  const key: Key = {
    upArrow: false, downArrow: false, leftArrow: false, rightArrow: false, pageDown: false, pageUp: false, home: false, end: false,
    return: ch === "\r" || ch === "\n", escape: ch === "\x1b", ctrl: false, shift: /^[A-Z]$/.test(ch), tab: ch === "\t",
    backspace: ch === "\x7f" || ch === "\b", delete: false, meta: false, super: false, hyper: false, capsLock: false, numLock: false,
  };
  if (code < 32 && !key.return && !key.tab && !key.escape && !key.backspace) key.ctrl = true;
  return key;
}

/** The input ink reports with a control key: Ctrl-U is "u". */
export function inputOf(ch: string): string {
  const code = ch.charCodeAt(0);
  return code > 0 && code < 27 && !"\r\n\t\b".includes(ch) ? String.fromCharCode(code + 96) : ch;
}

export class ConsoleController {
  screen: Screen = "list";
  private previous: Screen[] = [];
  tab = 0;
  scroll = 0;
  private listTop = 0;
  prompt: PromptState | null = null;
  editMenu: EditPart | null = null;
  choice: ChoiceMenu | null = null;
  message: { text: string; error: boolean; at: number } | null = null;
  private retries = { count: 0, at: 0 };
  private listHeight = 10;
  private pageHeight = 10;

  constructor(
    readonly model: ConsoleModel,
    private readonly hooks: ControllerHooks,
  ) {}

  private get master() {
    return this.model.master;
  }

  say(text: string, error = false): void {
    this.message = { text, error, at: Date.now() };
    this.model.touch();
  }

  /** Runs a command line and reports its result (or error) on the message line. */
  run(line: string): Promise<void> {
    return this.master.commands
      .execute(line)
      .then((result) => {
        if (typeof result === "string" && result.includes("\n")) {
          this.openScreen("events");
          for (const l of result.split("\n")) this.master.log.info(l);
        } else this.say(result === undefined || result === null ? `ran ${line}` : String(result));
      })
      .catch((err: Error) => this.say(err.message, true));
  }

  private openScreen(screen: Screen): void {
    if (this.screen === screen) return;
    this.previous.push(this.screen);
    this.screen = screen;
    this.scroll = screen === "events" ? Number.MAX_SAFE_INTEGER : 0;
  }

  private back(): void {
    const prev = this.previous.pop();
    if (prev === undefined) return this.confirmQuit();
    this.screen = prev;
    this.scroll = 0;
  }

  private focusFlow(): HTTPFlow | undefined {
    this.model.focusIndex();
    return this.model.focus;
  }

  /**
   * Keys typed faster than the console reads them (or sent by tmux in one write) arrive as one
   * string: they are handled one by one, as typed. Mouse reports stay whole.
   */
  handleInput(input: string, key: Key): void {
    if (input.length > 1 && !MOUSE_REPORT.test(input) && !/[\x1b]/.test(input)) {
      for (const ch of input) this.handleKey(inputOf(ch), keyOf(ch));
    } else this.handleKey(input, key);
  }

  handleKey(input: string, key: Key): void {
    this.model.touch();
    if (this.prompt) return this.promptInput(input, key);
    if (key.ctrl && input === "c") return this.hooks.quit();
    if (this.choice) return this.choiceKey(input);
    if (this.editMenu) return this.editMenuKey(input, key);
    const mouse = MOUSE_REPORT.exec(input);
    if (mouse) return this.mouse(Number(mouse[1]), Number(mouse[3]), mouse[4] === "M");
    if (this.message && !key.return) this.message = null;
    if (this.screen === "list" && this.listKey(input, key)) return;
    if (this.screen === "flow" && this.flowKey(input, key)) return;
    if (this.screen !== "list" && this.screen !== "flow" && this.scrollKey(input, key)) return;
    this.globalKey(input, key);
  }

  private globalKey(input: string, key: Key): void {
    const flow = this.screen === "list" || this.screen === "flow" ? this.focusFlow() : undefined;
    const on = (command: string) => (flow ? void this.run(command.replace("@focus", flow.id)) : this.say("no flow selected", true));
    switch (input) {
      case "q":
        return this.back();
      case "Q":
        // mitmproxy's console.exit: quit at once, from anywhere.
        return this.hooks.quit();
      case "?":
        return this.openScreen("help");
      case "E":
        return this.openScreen("events");
      case "O":
        return this.openScreen("options");
      case "R":
        return this.openScreen("retries");
      case ":":
        this.prompt = newPrompt(":", "", (text) => void this.run(text), commandCompleter(this.master.commands, this.master.options));
        return;
      case "f":
        return this.filterPrompt("view_filter", "filter: ");
      case "i":
        return this.filterPrompt("intercept", "intercept: ");
      case "A":
        return void this.run("flow.resume @all");
      case "w":
        this.prompt = newPrompt("save shown flows to (.mitm, .har, .sqlite): ", "flows.mitm", (path) => void this.run(`save.file @shown ${quoteWord(path)}`));
        return;
    }
    if (this.screen !== "list" && this.screen !== "flow") return;
    switch (input) {
      case "a":
        return on("flow.resume @focus");
      case "X":
        return on("flow.kill @focus");
      case "x":
        if (!flow) return this.say("no flow selected", true);
        return this.exportMenu(flow);
      case "d": {
        if (this.screen === "flow") this.back();
        // Like mitmproxy, the focus moves to the next flow rather than jumping to the last one.
        const index = this.model.focusIndex();
        if (!flow) return this.say("no flow selected", true);
        void this.run(`flow.delete ${flow.id}`).then(() => this.model.setFocusIndex(index));
        return;
      }
      case "D":
        return on("flow.duplicate @focus");
      case "r":
        return on("replay.client @focus");
      case "m":
        return on("flow.mark.toggle @focus");
      case "e":
        if (!flow) return this.say("no flow selected", true);
        this.editMenu = this.screen === "flow" && TABS[this.tab] === "Response" ? "response" : flow.response && flow.intercepted ? "response" : "request";
        if (this.editMenu === "response" && !flow.response) {
          this.editMenu = null;
          return this.say("this flow has no response yet: edit its request, or resume it and intercept the response", true);
        }
        return;
      case "z":
        if (this.screen === "list") return void this.run("view.clear");
        return;
    }
    if (this.screen !== "list") return;
    switch (input) {
      case "o":
        this.choice = {
          label: "order flows by",
          choices: VIEW_ORDERS.map((order) => ({ key: order === "size" ? "z" : order[0]!, label: order, pick: () => void this.run(`set view_order=${order}`) })),
        };
        return;
      case "v":
        return void this.run(`set view_order_reversed=${!this.master.view.options.view_order_reversed}`);
      case "F":
        return void this.run(`set console_focus_follow=${!this.master.view.options.console_focus_follow}`);
    }
  }

  /** `x`: which format, then where to (mitmproxy's export.file; export.clip for the clipboard). */
  private exportMenu(flow: HTTPFlow): void {
    this.choice = {
      label: "export as",
      choices: EXPORT_KEYS.map(({ key, format, file }) => ({
        key,
        label: format,
        pick: () => {
          this.choice = {
            label: `${format} to`,
            choices: [
              { key: "f", label: "file", pick: () => void (this.prompt = newPrompt(`export ${format} to file: `, file, (path) => void this.run(`export.file ${format} ${flow.id} ${path.trim()}`))) },
              { key: "c", label: "clipboard", pick: () => void this.run(`export.clip ${format} ${flow.id}`) },
            ],
          };
        },
      })),
    };
  }

  /** `q` at the top: mitmproxy asks before it quits (`Q` does not). */
  private confirmQuit(): void {
    this.choice = { label: "Quit sluice? (y/n)", choices: [{ key: "y", label: "", pick: () => this.hooks.quit() }, { key: "n", label: "", pick: () => {} }] };
  }

  private choiceKey(input: string): void {
    const menu = this.choice!;
    this.choice = null;
    menu.choices.find((c) => c.key === input)?.pick();
  }

  private filterPrompt(option: "view_filter" | "intercept", label: string): void {
    const current = (option === "view_filter" ? this.master.view.options.view_filter : this.master.options.lookup(INTERCEPT_OPTIONS)?.intercept) ?? "";
    this.prompt = newPrompt(label, current, (expr) => {
      const trimmed = expr.trim();
      if (trimmed) {
        try {
          compileFilter(trimmed);
        } catch (err) {
          return this.say((err as Error).message, true);
        }
      }
      void this.run(`set ${quoteWord(`${option}=${trimmed}`)}`);
    });
  }

  private promptInput(input: string, key: Key): void {
    const p = this.prompt!;
    const outcome = promptKey(p, input, key);
    if (outcome === "cancel") this.prompt = null;
    else if (outcome === "submit") {
      this.prompt = null;
      p.submit(p.text);
    }
  }

  private editMenuKey(input: string, key: Key): void {
    const part = this.editMenu!;
    this.editMenu = null;
    const flow = this.focusFlow();
    if (!flow || key.escape || input === "q") return;
    const prefix = part === "request" ? "request" : "response";
    const field = (label: string, attr: string, value: string) => {
      this.prompt = newPrompt(label, value, (v) => void this.run(`flow.set ${flow.id} ${attr} ${quoteWord(v)}`));
    };
    if (key.return) return this.editInEditor(flow, part);
    switch (input) {
      case "m":
        if (part === "request") return field("method: ", "method", flow.request.method);
        break;
      case "u":
        if (part === "request") return field("url: ", "url", flow.request.url);
        break;
      case "p":
        if (part === "request") return field("path: ", "path", flow.request.path);
        break;
      case "s":
        if (part === "response") return field("status code: ", "status_code", String(flow.response!.statusCode));
        break;
      case "r":
        if (part === "response") return field("reason: ", "reason", flow.response!.reason);
        break;
      case "h":
        this.prompt = newPrompt(`${prefix} header (Name: value): `, "", (text) => {
          const colon = text.indexOf(":");
          if (colon <= 0) return this.say("write the header as Name: value", true);
          void this.run(`flow.set ${flow.id} ${prefix}.header.${text.slice(0, colon).trim()} ${quoteWord(text.slice(colon + 1).trim())}`);
        });
        return;
      case "b": {
        if (configuredEditor(this.hooks.env)) return this.editInEditor(flow, part);
        const m = part === "request" ? flow.request : flow.response!;
        return field(`${prefix} body: `, `${prefix}.body`, m.text.length < 2000 ? m.text : "");
      }
    }
    this.say(`no such field to edit: ${JSON.stringify(input)}`, true);
  }

  private editInEditor(flow: HTTPFlow, part: EditPart): void {
    const editor = configuredEditor(this.hooks.env);
    if (!editor) return this.say("set $EDITOR (or $VISUAL) to edit a whole message; or use the single fields (e then m, u, p, s, r, h, b)", true);
    const original = messageAsText(flow, part);
    const result = this.hooks.suspend(() => runEditor(editor, original));
    if (result.text === null) return this.say(result.error ?? "edit cancelled", true);
    try {
      const changed = applyMessageText(flow, part, original, result.text);
      this.master.view.update(flow);
      this.say(changed.length ? `edited ${part} ${changed.join(", ")} of ${flow.request.method} ${flow.request.prettyUrl}` : `${part} unchanged`);
    } catch (err) {
      this.say(`edit not applied: ${(err as Error).message}`, true);
    }
  }

  private listKey(input: string, key: Key): boolean {
    const page = Math.max(1, this.listHeight - 1);
    if (key.upArrow || input === "k") this.model.moveFocus(-1);
    else if (key.downArrow || input === "j") this.model.moveFocus(1);
    else if (key.pageUp) this.model.moveFocus(-page);
    else if (key.pageDown || input === " ") this.model.moveFocus(page);
    else if (key.home || input === "g") this.model.setFocusIndex(0);
    else if (key.end || input === "G") this.model.setFocusIndex(Number.MAX_SAFE_INTEGER);
    else if (key.return || key.rightArrow || input === "l") {
      if (this.focusFlow()) {
        this.openScreen("flow");
        this.tab = 0;
      }
    } else return false;
    return true;
  }

  private flowKey(input: string, key: Key): boolean {
    if (key.tab || key.rightArrow || input === "l") this.tab = (this.tab + (key.shift ? TABS.length - 1 : 1)) % TABS.length;
    else if (key.leftArrow || input === "h") this.tab = (this.tab + TABS.length - 1) % TABS.length;
    else if (input === "n" || input === "p") this.model.moveFocus(input === "n" ? 1 : -1);
    else return this.scrollKey(input, key);
    this.scroll = 0;
    return true;
  }

  private scrollKey(input: string, key: Key): boolean {
    const page = Math.max(1, this.pageHeight - 1);
    if (key.upArrow || input === "k") this.scroll = Math.max(0, this.scroll - 1);
    else if (key.downArrow || input === "j") this.scroll++;
    else if (key.pageUp) this.scroll = Math.max(0, this.scroll - page);
    else if (key.pageDown || input === " ") this.scroll += page;
    else if (key.home || input === "g") this.scroll = 0;
    else if (key.end || input === "G") this.scroll = Number.MAX_SAFE_INTEGER;
    else if (key.escape) this.back();
    else return false;
    return true;
  }

  /** SGR mouse report: wheel scrolls, a click in the list focuses (a second click opens). */
  private mouse(button: number, row: number, press: boolean): void {
    if (!press) return;
    const down = button === 65, up = button === 64;
    if (up || down) {
      if (this.screen === "list") this.model.moveFocus(up ? -3 : 3);
      else this.scroll = Math.max(0, this.scroll + (up ? -3 : 3));
      return;
    }
    if (button !== 0 || this.screen !== "list") return;
    const index = this.listTop + row - 3; // row 1 is the title, row 2 the column header
    if (index < this.listTop || index >= this.model.shown.length) return;
    if (index === this.model.focusIndex()) {
      this.openScreen("flow");
      this.tab = 0;
    } else this.model.setFocusIndex(index);
  }

  /** Exactly `height` lines of `width` columns: title, the screen, status bar, prompt/message. */
  draw(width: number, height: number): Line[] {
    const body = Math.max(1, height - 3);
    let lines: Line[];
    let title: Line;
    if (this.screen === "flow" && !this.focusFlow()) this.back();
    switch (this.screen) {
      case "list":
        title = [seg(" Flows ", { bold: true, inverse: true }), seg(" ? help · Enter open · f filter · i intercept · e edit · a resume · x export · : command · q quit", { dim: true })];
        lines = this.listLines(width, body);
        break;
      case "flow": {
        const flow = this.focusFlow()!;
        title = [seg(" Flow ", { bold: true, inverse: true }), seg(" ")];
        TABS.forEach((t, i) => title.push(seg(` ${t} `, i === this.tab ? { bold: true, inverse: true, colour: "cyan" } : { dim: true }), seg(" ")));
        title.push(seg(`${flow.request.method} ${flow.request.prettyUrl}`, { dim: true }));
        lines = this.page(tabLines(flow, TABS[this.tab]!), body);
        break;
      }
      case "help":
        title = [seg(" Help ", { bold: true, inverse: true }), seg(" q back", { dim: true })];
        lines = this.page(helpLines().map((l) => plainLine(l)), body);
        break;
      case "events":
        title = [seg(" Event log ", { bold: true, inverse: true }), seg(" q back", { dim: true })];
        lines = this.page(this.eventLines(), body);
        break;
      case "options":
        title = [seg(" Options ", { bold: true, inverse: true }), seg(" change one with :set NAME=VALUE · q back", { dim: true })];
        lines = this.page(this.optionLines(), body);
        break;
      case "retries":
        title = [seg(" Retries ", { bold: true, inverse: true }), seg(" q back", { dim: true })];
        lines = this.page(retryScreenLines(this.master.view.all, this.retriesAddonTable()).map((l) => plainLine(l, /^(service|Retries|In the flow view)/.test(l) ? { bold: true } : {})), body);
        break;
    }
    const now = Date.now();
    if (now - this.retries.at > 1000) this.retries = { count: this.model.retriesSeen(), at: now };
    const status: StatusInfo = { listen: this.hooks.listen, retries: this.retries.count };
    while (lines.length < body) lines.push([]);
    return [title, ...lines, statusLine(this.model, status, width), this.bottomLine(width)].map((l) => clipLine(l, width));
  }

  private listLines(width: number, height: number): Line[] {
    const shown = this.model.shown;
    this.listHeight = height - 1;
    const header: Line = [seg(listHeader(width), { dim: true })];
    if (shown.length === 0) {
      const total = this.master.view.all.length;
      return [header, [], plainLine(total ? `No flow matches the filter (${total} hidden): f changes it.` : `Waiting for flows: point a client at http://${this.hooks.listen} (HTTPS_PROXY) and trust the CA (\`sluice ca\`).`, { dim: true })];
    }
    const focus = this.model.focusIndex();
    const h = this.listHeight;
    if (focus < this.listTop) this.listTop = focus;
    if (focus >= this.listTop + h) this.listTop = focus - h + 1;
    this.listTop = Math.max(0, Math.min(this.listTop, shown.length - h));
    const lines: Line[] = [header];
    // Only the visible rows are formatted: the list costs the same with 10 flows or 50,000.
    for (let i = this.listTop; i < Math.min(shown.length, this.listTop + h); i++) lines.push(flowRow(shown[i]!, width, i === focus));
    return lines;
  }

  private page(all: Line[], height: number): Line[] {
    this.pageHeight = height;
    if (all.length <= height) {
      this.scroll = 0;
      return all;
    }
    // The last row says where we are; the content gets the rest.
    const rows = Math.max(1, height - 1);
    this.scroll = Math.min(this.scroll, all.length - rows);
    const lines = all.slice(this.scroll, this.scroll + rows);
    lines.push(plainLine(`── lines ${this.scroll + 1}-${this.scroll + lines.length} of ${all.length} · j k PgUp PgDn g G scroll ──`, { dim: true }));
    return lines;
  }

  /** `retries.summary` of the retry addon, when that addon is loaded. */
  private retriesAddonTable(): string | null {
    const command = this.master.commands.get("retries.summary");
    if (!command) return null;
    try {
      const table = command.run();
      return typeof table === "string" ? table : null;
    } catch (err) {
      return `retries.summary failed: ${(err as Error).message}`;
    }
  }

  private eventLines(): Line[] {
    const log = this.master.log as LineLogger;
    const lines = log.recent.map((e): Line => {
      const t = new Date(e.timestamp).toTimeString().slice(0, 8);
      const colour = e.level === "error" ? "red" : e.level === "warn" ? "yellow" : undefined;
      return [seg(t + " ", { dim: true }), seg(e.level.padEnd(5) + " ", { colour, dim: e.level === "debug" }), seg(e.message.split("\n")[0]!, { colour })];
    });
    return lines.length ? lines : [plainLine("No events yet.", { dim: true })];
  }

  private optionLines(): Line[] {
    const o = this.master.options;
    return o.all().map((spec): Line => {
      const value = formatOptionValue(o.get(spec.name));
      const changed = value !== formatOptionValue(spec.default);
      return [seg(spec.name.padEnd(32), { bold: changed, colour: changed ? "cyan" : undefined }), seg(fit(value === "" ? '""' : value, 30) + " "), seg(spec.help, { dim: true })];
    });
  }

  private bottomLine(width: number): Line {
    if (this.prompt) {
      const p = this.prompt;
      const before = p.label + p.text.slice(0, p.cursor);
      const at = p.text[p.cursor] ?? " ";
      const after = p.text.slice(p.cursor + 1);
      // Keep the cursor visible on a long line: show its tail.
      const overflow = Math.max(0, before.length + 2 - width);
      const line: Line = [seg(before.slice(overflow)), seg(at, { inverse: true }), seg(after)];
      if (p.completions.length > 1) line.push(seg(`   ${p.completions.slice(0, 8).join(" ")}${p.completions.length > 8 ? " …" : ""}`, { dim: true }));
      return line;
    }
    if (this.choice) {
      const c = this.choice;
      const keys = c.choices.filter((x) => x.label).map((x) => `${x.key} ${x.label}`).join(" · ");
      return [seg(`${c.label}${keys ? ": " : ""}`, { bold: true }), seg(keys ? `${keys} · Esc cancel` : "")];
    }
    if (this.editMenu) {
      const fields = this.editMenu === "request" ? "m method · u url · p path · h header · b body" : "s status · r reason · h header · b body";
      return [seg(`edit ${this.editMenu}: `, { bold: true }), seg(`${fields} · Enter all in ${configuredEditor(this.hooks.env) ?? "$EDITOR"} · Esc cancel`)];
    }
    if (this.message) return plainLine(this.message.text, this.message.error ? { colour: "red", bold: true } : {});
    return [];
  }
}
