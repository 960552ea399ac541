/**
 * Message bodies for the detail tabs: decoded (Content-Encoding undone by core/encoding.ts) and
 * pretty-printed by content type — JSON, XML, HTML, form, text — or a hex dump for binary.
 * Large bodies are cut before formatting so opening a 1 GB download never freezes the console:
 * the screen pages over the formatted lines, which are cached per message.
 */
import type { Message } from "../../core/flow.js";
import { decodeBody } from "../../core/encoding.js";
import { bodyKind, hexDump, prettyMarkup } from "../body-format.js";

/** Bytes formatted at most (beyond this the view says how much was left out). */
export const MAX_FORMATTED_BYTES = 256 * 1024;
/** Bytes shown as hex at most (16 per line). */
export const MAX_HEX_BYTES = 64 * 1024;
const MAX_LINE = 2000;

export interface FormattedBody {
  /** "json", "xml", "html", "form", "text", "hex", or "none". */
  kind: string;
  lines: string[];
  /** A note shown above the body: decode failures, truncation, streaming. */
  note: string | null;
}

const cache = new WeakMap<Message, { key: string; content: Buffer | null; body: FormattedBody }>();

export function formatBody(message: Message): FormattedBody {
  const key = `${message.contentLength}:${message.content?.length ?? -1}:${message.headers.get("content-type") ?? ""}:${message.headers.get("content-encoding") ?? ""}`;
  const hit = cache.get(message);
  // The buffer itself is part of the key: an edit replaces it, possibly with one of the same size.
  if (hit && hit.key === key && hit.content === message.content) return hit.body;
  const body = format(message);
  cache.set(message, { key, content: message.content, body });
  return body;
}

function format(message: Message): FormattedBody {
  if (message.streamed) return { kind: "none", lines: [], note: `body streamed through without being kept (${message.contentLength} bytes; raise stream_large_bodies to keep it)` };
  const raw = message.content;
  if (!raw) return { kind: "none", lines: [], note: message.timestampEnd === null ? "body not complete yet" : null };
  if (raw.length === 0) return { kind: "none", lines: [], note: "no body" };
  let body = raw;
  let note: string | null = null;
  const encoding = message.headers.get("content-encoding");
  if (encoding && encoding !== "identity") {
    try {
      body = decodeBody(raw, encoding);
      note = `decoded from ${encoding}: ${raw.length} → ${body.length} bytes`;
    } catch (err) {
      note = `cannot decode ${encoding} (${(err as Error).message}); raw bytes shown`;
    }
  }
  const type = (message.headers.get("content-type") ?? "").toLowerCase();
  // Images are bytes to a terminal.
  const sniffed = bodyKind(type, body);
  const kind = sniffed === "binary" || sniffed === "image" ? "hex" : sniffed;
  if (kind === "hex") {
    const shown = body.subarray(0, MAX_HEX_BYTES);
    const cut = body.length > shown.length ? ` (first ${shown.length} of ${body.length} bytes)` : "";
    return { kind, lines: hexDump(shown), note: join(note, `binary, ${body.length} bytes${cut}`) };
  }
  const shown = body.subarray(0, MAX_FORMATTED_BYTES);
  const cut = body.length > shown.length ? `showing the first ${shown.length} of ${body.length} bytes, unformatted` : null;
  const text = shown.toString("utf8");
  let lines: string[];
  if (cut) lines = text.split("\n");
  else if (kind === "json") lines = prettyJson(text);
  else if (kind === "xml" || kind === "html") lines = prettyMarkup(text, kind === "html");
  else if (kind === "form") lines = prettyForm(text);
  else lines = text.split("\n");
  return { kind, lines: lines.map((l) => (l.length > MAX_LINE ? l.slice(0, MAX_LINE) + "…" : l.replace(/\r$/, ""))), note: join(note, cut) };
}

function join(a: string | null, b: string | null): string | null {
  return a && b ? `${a}; ${b}` : (a ?? b);
}



export function prettyJson(text: string): string[] {
  try {
    return JSON.stringify(JSON.parse(text), null, 2).split("\n");
  } catch {
    return text.split("\n");
  }
}


export function prettyForm(text: string): string[] {
  const params = new URLSearchParams(text.trim());
  const lines: string[] = [];
  for (const [k, v] of params) lines.push(`${k}: ${v}`);
  return lines.length ? lines : [text];
}

