/**
 * Body formatting shared by the console (ui/console/body.ts) and the web UI (web/src/Body.tsx):
 * what kind a body is, whether it looks binary, a hex dump, and markup indented one tag per line.
 * Pure and platform-free (Uint8Array and TextDecoder, no Buffer, no DOM) because the web UI is a
 * separate TypeScript project bundled by Vite for the browser: it imports this file by path, as it
 * does ui/web/protocol.ts, so both front ends show a body the same way.
 */

export type BodyKind = "json" | "xml" | "html" | "form" | "image" | "text" | "binary";

const utf8 = new TextDecoder();

/** The kind by Content-Type, then by sniffing: declared text stays text unless it is binary. */
export function bodyKind(contentType: string, body: Uint8Array): BodyKind {
  const type = contentType.toLowerCase();
  if (type.startsWith("image/")) return "image";
  if (/json/.test(type)) return "json";
  if (/x-www-form-urlencoded/.test(type)) return "form";
  if (/html/.test(type)) return "html";
  if (/xml/.test(type)) return "xml";
  if (/^text\/|javascript|css|csv|yaml|graphql/.test(type)) return looksBinary(body) ? "binary" : "text";
  if (looksBinary(body)) return "binary";
  const first = utf8.decode(body.subarray(0, 64)).trimStart()[0];
  if (first === "{" || first === "[") return "json";
  if (first === "<") return "xml";
  return "text";
}

/** NUL bytes or many control characters in the first 1 KiB, or invalid UTF-8. */
export function looksBinary(body: Uint8Array): boolean {
  const head = body.subarray(0, 1024);
  let control = 0;
  for (const b of head) {
    if (b === 0) return true;
    if (b < 9 || (b > 13 && b < 32)) control++;
  }
  if (control > head.length / 10) return true;
  return utf8.decode(head).includes("\ufffd");
}

/** 16 bytes a line: offset, hex, and the printable ASCII. */
export function hexDump(bytes: Uint8Array): string[] {
  const lines: string[] = [];
  for (let off = 0; off < bytes.length; off += 16) {
    const row = bytes.subarray(off, off + 16);
    const hex = [...row].map((b) => b.toString(16).padStart(2, "0")).join(" ");
    const ascii = [...row].map((b) => (b >= 32 && b < 127 ? String.fromCharCode(b) : ".")).join("");
    lines.push(`${off.toString(16).padStart(8, "0")}  ${hex.padEnd(47)}  ${ascii}`);
  }
  return lines;
}

const VOID_HTML = new Set(["area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "track", "wbr", "!doctype"]);

/** One tag per line, indented by nesting; text between tags on its own line, short text kept between its tags. */
export function prettyMarkup(text: string, html: boolean): string[] {
  const lines: string[] = [];
  let depth = 0;
  const re = /(<!--[\s\S]*?-->|<!\[CDATA\[[\s\S]*?\]\]>|<[^>]+>)|([^<]+)/g;
  let m: RegExpExecArray | null;
  while ((m = re.exec(text))) {
    if (m[2] !== undefined) {
      const t = m[2].trim();
      if (t) lines.push("  ".repeat(depth) + t.replace(/\s*\n\s*/g, " "));
      continue;
    }
    const tag = m[1]!;
    const name = /^<\/?\s*([!\w:-]+)/.exec(tag)?.[1]?.toLowerCase() ?? "";
    if (tag.startsWith("</")) {
      depth = Math.max(0, depth - 1);
      lines.push("  ".repeat(depth) + tag);
    } else {
      lines.push("  ".repeat(depth) + tag);
      const selfClosing = tag.endsWith("/>") || tag.startsWith("<?") || tag.startsWith("<!") || (html && VOID_HTML.has(name));
      if (!selfClosing) depth++;
    }
  }
  // Put short text back between its tags: <Code>SlowDown</Code> reads better on one line.
  const out: string[] = [];
  for (let i = 0; i < lines.length; i++) {
    const open = lines[i]!, inner = lines[i + 1], close = lines[i + 2];
    if (inner !== undefined && close !== undefined && /^\s*<[^/!?][^>]*[^/]>$|^\s*<\w>$/.test(open) && !/^\s*</.test(inner) && /^\s*<\//.test(close) && inner.trim().length < 80) {
      out.push(open + inner.trim() + close.trim());
      i += 2;
    } else out.push(open);
  }
  return out;
}
