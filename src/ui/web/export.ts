/**
 * A flow's request as a curl command, an HTTPie command or raw HTTP, for "copy as …" in the web
 * UI — mitmproxy's `export` formats: the body decoded, the headers the tool sets itself
 * (Content-Length, HTTP/2 pseudo-headers) left out, every argument quoted for a POSIX shell.
 */
import type { HTTPFlow } from "../../core/flow.js";

export const EXPORT_FORMATS = ["curl", "httpie", "raw"] as const;
export type ExportFormat = (typeof EXPORT_FORMATS)[number];

/** Quotes one argument for sh: '…' with embedded single quotes spelled '"'"'. */
export function shellQuote(arg: string): string {
  if (/^[\w@%+=:,./-]+$/.test(arg)) return arg;
  return `'${arg.replace(/'/g, `'"'"'`)}'`;
}

function headersToSend(flow: HTTPFlow): [string, string][] {
  return [...flow.request.headers].filter(([k]) => !k.startsWith(":") && k.toLowerCase() !== "content-length" && k.toLowerCase() !== "proxy-connection" && k.toLowerCase() !== "transfer-encoding");
}

function bodyOf(flow: HTTPFlow): Buffer | null {
  if (flow.request.streamed) throw new Error(`the request body streamed through without being kept (${flow.request.contentLength} bytes), so no command can repeat it; raise stream_large_bodies`);
  const body = flow.request.decodedContent;
  return body && body.length ? body : null;
}

function requireText(body: Buffer, format: string): string {
  const text = body.toString("utf8");
  if (Buffer.from(text, "utf8").equals(body)) return text;
  throw new Error(`the request body is binary: ${format} cannot carry it on a command line; export as raw HTTP or save the flow instead`);
}

export function exportFlow(flow: HTTPFlow, format: ExportFormat): string {
  const q = flow.request;
  const body = bodyOf(flow);
  switch (format) {
    case "curl": {
      const args = ["curl"];
      // curl sends GET, or POST with a body; anything else is named.
      if (!(q.method === "GET" && !body) && !(q.method === "POST" && body)) args.push("-X", q.method);
      for (const [k, v] of headersToSend(flow)) {
        if (k.toLowerCase() === "accept-encoding") args.push("--compressed");
        else args.push("-H", `${k}: ${v}`);
      }
      args.push(q.url);
      if (body) args.push("--data-binary", requireText(body, "curl"));
      return args.map(shellQuote).join(" ");
    }
    case "httpie": {
      const args = ["http", q.method, q.url];
      for (const [k, v] of headersToSend(flow)) args.push(`${k}:${v}`);
      let cmd = args.map(shellQuote).join(" ");
      if (body) cmd += ` <<< ${shellQuote(requireText(body, "HTTPie"))}`;
      return cmd;
    }
    case "raw": {
      const version = q.httpVersion.startsWith("HTTP/2") ? "HTTP/1.1" : q.httpVersion;
      const headers = [...q.headers].filter(([k]) => !k.startsWith(":"));
      if (!q.headers.has("host")) headers.unshift(["Host", q.authority || `${q.host}${q.port === (q.scheme === "https" ? 443 : 80) ? "" : `:${q.port}`}`]);
      const content = flow.request.content ?? Buffer.alloc(0);
      return `${q.method} ${q.path} ${version}\r\n${headers.map(([k, v]) => `${k}: ${v}`).join("\r\n")}\r\n\r\n${content.toString("latin1")}`;
    }
  }
}
