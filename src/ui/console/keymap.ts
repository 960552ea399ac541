/**
 * The console's keys, mitmproxy's where mitmproxy has one. Each key either runs a command line
 * through the command registry (the same language as the `:` prompt, the admin API and scripts)
 * or opens a prompt or screen. The help screen is generated from this table.
 */
export interface KeyBinding {
  key: string;
  help: string;
  /** The command it runs, when it is one: shown in help so users learn the `:` language. */
  command?: string;
  screens: ("list" | "flow" | "any")[];
}

export const KEYS: KeyBinding[] = [
  { key: "↑ ↓ j k", help: "move the focus (PgUp PgDn g G: page, first, last; mouse wheel and click)", screens: ["list"] },
  { key: "Enter", help: "open the focused flow", screens: ["list"] },
  { key: "Tab ← →", help: "switch tabs: Request, Response, Detail", screens: ["flow"] },
  { key: "↑ ↓ j k", help: "scroll (PgUp PgDn g G)", screens: ["flow"] },
  { key: "f", help: "set the view filter (empty shows everything)", command: "set view_filter=…", screens: ["any"] },
  { key: "i", help: "set the intercept filter (empty stops intercepting)", command: "set intercept=…", screens: ["any"] },
  { key: "e", help: "edit the flow: method, URL, path, status, reason, header, body, or all in $EDITOR", screens: ["list", "flow"] },
  { key: "a", help: "resume the focused flow", command: "flow.resume @focus", screens: ["list", "flow"] },
  { key: "A", help: "resume every intercepted flow", command: "flow.resume @all", screens: ["any"] },
  { key: "x", help: "export the focused flow (curl, httpie, raw, raw_request, raw_response, har) to a file or the clipboard", command: "export.file FORMAT @focus PATH", screens: ["list", "flow"] },
  { key: "X", help: "kill the focused flow", command: "flow.kill @focus", screens: ["list", "flow"] },
  { key: "d", help: "delete the focused flow from the view", command: "flow.delete @focus", screens: ["list", "flow"] },
  { key: "D", help: "duplicate the focused flow", command: "flow.duplicate @focus", screens: ["list", "flow"] },
  { key: "r", help: "replay the focused request through the proxy", command: "replay.client @focus", screens: ["list", "flow"] },
  { key: "m", help: "mark or unmark the focused flow", command: "flow.mark.toggle @focus", screens: ["list", "flow"] },
  { key: "w", help: "save the shown flows to a file (.mitm, .har or .sqlite)", command: "save.file @shown PATH", screens: ["any"] },
  { key: "z", help: "clear the flow list", command: "view.clear", screens: ["list"] },
  { key: "o", help: "order the list by time, method, url or size", command: "set view_order=…", screens: ["list"] },
  { key: "v", help: "reverse the list's order", command: "set view_order_reversed=…", screens: ["list"] },
  { key: "F", help: "focus follows new flows (on or off)", command: "set console_focus_follow=…", screens: ["list"] },
  { key: ":", help: "command prompt, Tab completes (e.g. :flow.set @focus status_code 429)", screens: ["any"] },
  { key: "R", help: "retries and throttles per service and operation", screens: ["any"] },
  { key: "E", help: "event log", screens: ["any"] },
  { key: "O", help: "options and their values", screens: ["any"] },
  { key: "?", help: "this help", screens: ["any"] },
  { key: "q", help: "back; from the flow list, asks before quitting", screens: ["any"] },
  { key: "Q", help: "quit at once (so does Ctrl-C)", screens: ["any"] },
];

export function helpLines(): string[] {
  const lines = ["sluice console — keys", ""];
  for (const screen of ["list", "flow", "any"] as const) {
    lines.push(screen === "list" ? "Flow list" : screen === "flow" ? "Flow details" : "Everywhere");
    for (const k of KEYS.filter((b) => b.screens.includes(screen))) {
      lines.push(`  ${k.key.padEnd(9)} ${k.help}${k.command ? `   [${k.command}]` : ""}`);
    }
    lines.push("");
  }
  lines.push(
    "Colours: red errors, yellow throttles (429, AWS throttling codes), magenta injected",
    "faults; 3/5 is the SDK's attempt 3 of 5; ⏸ intercepted, ● marked, ↻ replayed.",
    "",
    "Filters use mitmproxy's language plus ~svc ~op ~region ~bucket ~attempt ~retry ~throttled",
    "(`sluice filters` lists them). Commands: `sluice commands` or :commands.",
  );
  return lines;
}
