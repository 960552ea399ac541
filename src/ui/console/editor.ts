/**
 * `e` in the console: a request or response as text in $VISUAL/$EDITOR (start line, headers,
 * blank line, body), parsed back and applied to the flow. Start-line fields go through
 * `setFlowAttribute`, the code `flow.set` uses, so an edit means the same thing either way.
 */
import { spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { setFlowAttribute } from "../../core/commands.js";
import { Headers } from "../../core/headers.js";
import type { HTTPFlow, Message } from "../../core/flow.js";
import { forgetAwsInfo } from "../../aws/index.js";
import { formatBody } from "./body.js";

export type EditPart = "request" | "response";

/** The editor the user configured, or null (the console then edits inline). */
export function configuredEditor(env: NodeJS.ProcessEnv = process.env): string | null {
  return env.VISUAL?.trim() || env.EDITOR?.trim() || null;
}

function bodyText(message: Message): { text: string; editable: boolean } {
  const content = message.content;
  if (!content || content.length === 0) return { text: "", editable: true };
  const body = formatBody(message);
  if (body.kind === "hex" || message.streamed || body.note?.includes("showing the first")) {
    return { text: `<${message.contentLength} bytes ${body.kind === "hex" ? "binary" : "large"} body: not editable as text>`, editable: false };
  }
  return { text: message.text, editable: true };
}

/** The part as editable text. */
export function messageAsText(flow: HTTPFlow, part: EditPart): string {
  const m = part === "request" ? flow.request : flow.response!;
  const start = part === "request" ? `${flow.request.method} ${flow.request.url} ${m.httpVersion}` : `${m.httpVersion} ${flow.response!.statusCode} ${flow.response!.reason}`;
  return `${start}\n${[...m.headers].map(([k, v]) => `${k}: ${v}`).join("\n")}\n\n${bodyText(m).text}`;
}

/** Applies edited text to the flow. Throws with a message that says what is wrong. */
export function applyMessageText(flow: HTTPFlow, part: EditPart, original: string, edited: string): string[] {
  if (edited === original) return [];
  const m = part === "request" ? flow.request : flow.response;
  if (!m) throw new Error("the flow has no response to edit");
  const text = edited.replace(/\r\n/g, "\n");
  const blank = text.indexOf("\n\n");
  const head = blank < 0 ? text.replace(/\n$/, "") : text.slice(0, blank);
  const body = blank < 0 ? "" : text.slice(blank + 2);
  const [startLine = "", ...headerLines] = head.split("\n");
  const changed: string[] = [];
  const words = startLine.trim().split(/\s+/);
  if (part === "request") {
    const [method, url] = words;
    if (!method || !url) throw new Error(`the first line must be METHOD URL [HTTP/VERSION], got ${JSON.stringify(startLine)}`);
    if (method !== flow.request.method) (setFlowAttribute(flow, "method", method), changed.push("method"));
    if (url !== flow.request.url) (setFlowAttribute(flow, url.startsWith("/") ? "path" : "url", url), changed.push("url"));
  } else {
    const status = words[1];
    if (!status) throw new Error(`the first line must be HTTP/VERSION STATUS REASON, got ${JSON.stringify(startLine)}`);
    const reason = words.slice(2).join(" ");
    if (Number(status) !== flow.response!.statusCode) (setFlowAttribute(flow, "status_code", status), changed.push("status"));
    if (reason !== flow.response!.reason) (setFlowAttribute(flow, "reason", reason), changed.push("reason"));
  }
  const headers = new Headers();
  for (const line of headerLines) {
    if (!line.trim()) continue;
    const colon = line.indexOf(":");
    if (colon <= 0) throw new Error(`header line without a colon: ${JSON.stringify(line)}`);
    headers.add(line.slice(0, colon).trim(), line.slice(colon + 1).trim());
  }
  const before = [...m.headers].map(([k, v]) => `${k}: ${v}`).join("\n");
  const after = [...headers].map(([k, v]) => `${k}: ${v}`).join("\n");
  if (before !== after) {
    m.headers = headers;
    changed.push("headers");
  }
  const old = bodyText(m);
  const originalBody = original.slice(original.indexOf("\n\n") + 2);
  // Editors add a final newline on save: that alone is not an edit of the body.
  if (body.replace(/\n$/, "") !== originalBody.replace(/\n$/, "")) {
    if (!old.editable) throw new Error("this body is binary or too large to edit as text");
    m.text = body;
    changed.push("body");
  }
  if (part === "request") forgetAwsInfo(flow);
  return changed;
}

/**
 * Runs the editor on a temporary file holding `text` and returns what the user saved, or null
 * when the editor failed. The terminal belongs to the editor meanwhile (the caller suspends the UI).
 */
export function runEditor(editor: string, text: string, suffix = ".http"): { text: string | null; error: string | null } {
  const dir = mkdtempSync(join(tmpdir(), "sluice-edit-"));
  const file = join(dir, `flow${suffix}`);
  try {
    writeFileSync(file, text);
    // Through the shell, so EDITOR may carry arguments ("code --wait", "vim -u NONE").
    const r = spawnSync("/bin/sh", ["-c", `${editor} "$1"`, "sh", file], { stdio: "inherit" });
    if (r.error) return { text: null, error: `cannot run ${editor}: ${r.error.message}` };
    if (r.status !== 0) return { text: null, error: `${editor} exited with ${r.status ?? r.signal}; nothing changed` };
    return { text: readFileSync(file, "utf8"), error: null };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
