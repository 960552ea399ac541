/**
 * mitmproxy's `cut`: fields pulled from flows by attribute path (`request.method`,
 * `response.status_code`, `request.header[content-type]`, `client_conn.peername.host`), written
 * as CSV (Python's csv module's dialect) or JSON. Paths use mitmproxy's snake_case names.
 */
import type { HTTPFlow } from "./flow.js";
import { editDistance } from "./edit-distance.js";

export class CutError extends Error {}

export type CutValue = string | Buffer;

/** Splits "a,b,c" into cut specs, checking each. */
export function parseCuts(text: string): string[] {
  const cuts = text.split(",").map((c) => c.trim()).filter(Boolean);
  if (!cuts.length) throw new CutError(`no fields to cut in ${JSON.stringify(text)}: give e.g. request.method,response.status_code,request.url`);
  for (const c of cuts) {
    // mitmproxy prints an empty cell for a path that does not exist; a misspelt first name is
    // refused here instead, since every row would silently be empty.
    const first = c.split(".")[0]!;
    if (!FLOW_ATTRIBUTES.includes(first)) {
      const close = FLOW_ATTRIBUTES.filter((a) => editDistance(a, first) <= 2);
      throw new CutError(`cut ${JSON.stringify(c)}: a flow has no ${first}${close.length ? ` (did you mean ${close.join(" or ")}?)` : ""}; fields start with ${FLOW_ATTRIBUTES.join(", ")}`);
    }
    for (const part of c.split(".")) {
      if (part.startsWith("_")) throw new CutError(`cut ${JSON.stringify(c)}: can't access internal attribute ${part}`);
      if (part.startsWith("header[") && !part.endsWith("]")) throw new CutError(`cut ${JSON.stringify(c)}: invalid header spec ${part}; write header[NAME]`);
    }
  }
  return cuts;
}

/** What a cut path may start with: mitmproxy's HTTPFlow attributes. */
const FLOW_ATTRIBUTES = ["request", "response", "error", "client_conn", "server_conn", "websocket", "id", "type", "marked", "is_replay", "intercepted", "live", "timestamp_created", "comment", "metadata"];

const RENAMES: Record<string, string> = { status_code: "statusCode", content: "content", text: "text" };

function camel(name: string): string {
  return RENAMES[name] ?? name.replace(/_([a-z0-9])/g, (_, c: string) => c.toUpperCase());
}

function isAddress(v: unknown): v is [string, number] {
  return Array.isArray(v) && v.length === 2 && typeof v[0] === "string" && typeof v[1] === "number";
}

/** One field of one flow, as mitmproxy's extract(): bytes stay bytes, booleans are "true"/"false". */
export function extractCut(cut: string, flow: HTTPFlow): CutValue {
  const path = cut.split(".");
  let current: unknown = flow;
  for (let i = 0; i < path.length; i++) {
    const spec = path[i]!;
    const last = i === path.length - 1;
    if (last) {
      if (spec === "port" && isAddress(current)) return String(current[1]);
      if (spec === "host" && isAddress(current)) return current[0];
      if (spec.startsWith("header[")) {
        const name = spec.slice("header[".length, -1).trim();
        const headers = (current as { headers?: { get(n: string): string | undefined } } | null)?.headers;
        return headers?.get(name) ?? "";
      }
    }
    const part = current === null || current === undefined ? undefined : (current as Record<string, unknown>)[camel(spec)];
    if (last) {
      if (Buffer.isBuffer(part)) return part;
      if (typeof part === "boolean") return part ? "true" : "false";
      if (spec === "certificate_list" && Array.isArray(part)) return (part[0] as string | undefined) ?? "";
    }
    current = typeof part === "function" ? undefined : part;
  }
  if (current === null || current === undefined || current === "" || current === 0 || current === false) return "";
  if (typeof current === "object" && "toText" in (current as object)) return (current as { toText(): string }).toText();
  if (Array.isArray(current)) return current.length ? JSON.stringify(current) : "";
  return String(current);
}

/** Python's repr() of a bytes value, as mitmproxy writes bytes into CSV cells. */
export function pythonBytesRepr(b: Buffer): string {
  let body = "";
  const quote = b.includes(0x27) && !b.includes(0x22) ? '"' : "'";
  for (const byte of b) {
    if (byte === 0x5c) body += "\\\\";
    else if (byte === quote.charCodeAt(0)) body += "\\" + quote;
    else if (byte === 0x09) body += "\\t";
    else if (byte === 0x0a) body += "\\n";
    else if (byte === 0x0d) body += "\\r";
    else if (byte < 0x20 || byte >= 0x7f) body += "\\x" + byte.toString(16).padStart(2, "0");
    else body += String.fromCharCode(byte);
  }
  return `b${quote}${body}${quote}`;
}

/** One CSV row in Python csv.writer's default dialect: minimal quoting, CRLF line ends. */
export function csvRow(values: CutValue[]): string {
  const cells = values.map((v) => {
    const s = Buffer.isBuffer(v) ? pythonBytesRepr(v) : v;
    return /[",\r\n]/.test(s) ? `"${s.replace(/"/g, '""')}"` : s;
  });
  if (cells.length === 1 && cells[0] === "") return '""\r\n';
  return cells.join(",") + "\r\n";
}

/** A JSON object for one flow: cut → value; bytes as text when they are UTF-8, else as {base64}. */
export function jsonRow(cuts: string[], values: CutValue[]): Record<string, string | { base64: string }> {
  const out: Record<string, string | { base64: string }> = {};
  cuts.forEach((c, i) => {
    const v = values[i]!;
    if (!Buffer.isBuffer(v)) out[c] = v;
    else {
      const text = v.toString("utf8");
      out[c] = Buffer.from(text, "utf8").equals(v) ? text : { base64: v.toString("base64") };
    }
  });
  return out;
}
