/**
 * One flow as something to paste or run: mitmproxy's export formats (curl, httpie, raw,
 * raw_request, raw_response) plus HAR. Unlike mitmproxy's, the curl and httpie commands reproduce
 * the request byte for byte when run: the body is sent as recorded (still content-encoded, with
 * its Content-Encoding header), a body that is not plain text goes through a file
 * (`--data-binary @FILE`), and headers curl would add on its own (User-Agent, Accept,
 * Content-Type) are suppressed when the original had none.
 */
import type { HTTPFlow, Message } from "./flow.js";
import { Headers } from "./headers.js";

export const EXPORT_FORMATS = ["curl", "har", "httpie", "raw", "raw_request", "raw_response"] as const;
export type ExportFormat = (typeof EXPORT_FORMATS)[number];

export class ExportError extends Error {}

/** Where a body that cannot be written inline goes; returns the file's path. */
export type BodyFileWriter = (body: Buffer) => string;

/** POSIX shell quoting, as Python's shlex.quote. */
export function shellQuote(arg: string): string {
  if (arg !== "" && /^[\w@%+=:,./-]+$/.test(arg)) return arg;
  return `'${arg.replace(/'/g, `'"'"'`)}'`;
}

/** A body a shell can carry in single quotes: UTF-8 text without control characters other than tab and newlines. */
function inlineText(body: Buffer): string | null {
  const text = body.toString("utf8");
  if (!Buffer.from(text, "utf8").equals(body)) return null;
  return /[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]/.test(text) ? null : text;
}

/** Headers worth sending again: no pseudo or framing headers, no Host that only repeats the URL's. */
function replayHeaders(flow: HTTPFlow): [string, string][] {
  const r = flow.request;
  const out: [string, string][] = [];
  for (const [name, value] of r.headers) {
    const lower = name.toLowerCase();
    if (lower.startsWith(":") || lower === "content-length" || lower === "transfer-encoding" || lower === "connection" || lower === "proxy-connection" || lower === "keep-alive") continue;
    if (lower === "host" && hostMatchesUrl(value, flow)) continue;
    out.push([name, value]);
  }
  return out;
}

function hostMatchesUrl(value: string, flow: HTTPFlow): boolean {
  return value === new URL(flow.request.prettyUrl).host;
}

function requestBody(flow: HTTPFlow): Buffer | null {
  const r = flow.request;
  if (r.streamed) throw new ExportError(`the request body of ${r.method} ${r.prettyUrl} streamed through without being kept (larger than stream_large_bodies): it cannot be exported`);
  return r.content && r.content.length ? r.content : null;
}

export function curlCommand(flow: HTTPFlow, bodyFile: BodyFileWriter): string {
  const r = flow.request;
  const args = ["curl"];
  const headers = replayHeaders(flow);
  const has = (name: string) => headers.some(([n]) => n.toLowerCase() === name);
  if (r.httpVersion === "HTTP/2.0" && r.scheme === "https") args.push("--http2");
  if (r.method === "HEAD") args.push("--head");
  else if (r.method !== "GET") args.push("-X", r.method);
  for (const [name, value] of headers) args.push("-H", `${name}: ${value}`);
  // curl adds these itself when they are missing; an empty value tells it not to.
  if (!has("user-agent")) args.push("-H", "User-Agent:");
  if (!has("accept")) args.push("-H", "Accept:");
  if (has("accept-encoding")) args.push("--compressed");
  const body = requestBody(flow);
  if (body) {
    if (!has("content-type")) args.push("-H", "Content-Type:");
    const text = inlineText(body);
    args.push("--data-binary", text !== null && !text.startsWith("@") ? text : `@${bodyFile(body)}`);
  }
  args.push("--path-as-is", r.prettyUrl);
  return args.map(shellQuote).join(" ");
}

export function httpieCommand(flow: HTTPFlow, bodyFile: BodyFileWriter): string {
  const r = flow.request;
  const body = requestBody(flow);
  const text = body ? inlineText(body) : null;
  const args = ["http"];
  // The body comes from --raw or from a file on stdin; a terminal or pipe left on stdin must not count.
  if (!body || text !== null) args.push("--ignore-stdin");
  if (body && text !== null) args.push("--raw", text);
  args.push(r.method, r.prettyUrl);
  const headers = replayHeaders(flow);
  const has = (name: string) => headers.some(([n]) => n.toLowerCase() === name);
  // httpie's own defaults, switched off when the original did not send them (`Name:` removes).
  for (const name of ["User-Agent", "Accept", "Accept-Encoding", "Connection", ...(body ? ["Content-Type"] : [])]) if (!has(name.toLowerCase())) args.push(`${name}:`);
  for (const [name, value] of headers) args.push(value === "" ? `${name};` : `${name}:${value}`);
  let cmd = args.map(shellQuote).join(" ");
  if (body && text === null) cmd += ` < ${shellQuote(bodyFile(body))}`;
  return cmd;
}

/** A message's head and decoded body, as mitmproxy's assemble_* write them (Content-Encoding undone). */
function assemble(firstLine: string, message: Message, what: string): Buffer {
  if (message.content === null) throw new ExportError(`${what} content missing${message.streamed ? " (it streamed through without being kept)" : ""}`);
  const body = message.decodedContent ?? Buffer.alloc(0);
  const headers = message.headers.clone();
  if (body !== message.content) {
    headers.delete("content-encoding");
    if (headers.has("content-length")) headers.set("content-length", String(body.length));
  }
  let head = firstLine + "\r\n";
  for (const [name, value] of headers) head += `${name}: ${value}\r\n`;
  return Buffer.concat([Buffer.from(head + "\r\n", "latin1"), body]);
}

export function rawRequest(flow: HTTPFlow): Buffer {
  const r = flow.request;
  const head = new Headers(r.headers.raw.slice());
  if (r.httpVersion === "HTTP/2.0" && !head.has("host") && r.authority) head.raw.unshift("host", r.authority);
  const copy = Object.assign(Object.create(Object.getPrototypeOf(r)), r, { headers: head }) as Message;
  return assemble(`${r.method} ${r.path} ${r.httpVersion}`, copy, "request");
}

export function rawResponse(flow: HTTPFlow): Buffer {
  const s = flow.response;
  if (!s) throw new ExportError("the flow has no response");
  return assemble(`${s.httpVersion} ${s.statusCode} ${s.reason}`.trimEnd(), s, "response");
}

/** The request, the response, or both separated by a blank line. */
export function rawFlow(flow: HTTPFlow): Buffer {
  const req = flow.request.content !== null;
  const resp = !!flow.response && flow.response.content !== null;
  if (req && resp) return Buffer.concat([rawRequest(flow), Buffer.from("\r\n\r\n"), rawResponse(flow)]);
  if (req) return rawRequest(flow);
  if (resp) return rawResponse(flow);
  throw new ExportError("the flow has neither a request nor a response body to export");
}
