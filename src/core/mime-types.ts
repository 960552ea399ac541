/**
 * Content type from a file name's extension, as Python's `mimetypes.guess_type` answers it for
 * mitmproxy's map_local: a built-in table, overridden by the system's /etc/mime.types when present.
 */
import { readFileSync } from "node:fs";
import { extname } from "node:path";

const BUILT_IN: Record<string, string> = {
  ".html": "text/html", ".htm": "text/html", ".css": "text/css", ".js": "text/javascript", ".mjs": "text/javascript",
  ".json": "application/json", ".xml": "text/xml", ".txt": "text/plain", ".csv": "text/csv", ".md": "text/markdown",
  ".png": "image/png", ".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".gif": "image/gif", ".svg": "image/svg+xml",
  ".webp": "image/webp", ".ico": "image/vnd.microsoft.icon", ".bmp": "image/bmp", ".pdf": "application/pdf",
  ".zip": "application/zip", ".gz": "application/gzip", ".tar": "application/x-tar", ".wasm": "application/wasm",
  ".mp3": "audio/mpeg", ".mp4": "video/mp4", ".webm": "video/webm", ".woff": "font/woff", ".woff2": "font/woff2",
  ".ttf": "font/ttf", ".otf": "font/otf", ".bin": "application/octet-stream",
};

let table: Map<string, string> | null = null;

function load(): Map<string, string> {
  const map = new Map(Object.entries(BUILT_IN));
  let text = "";
  try {
    text = readFileSync("/etc/mime.types", "utf8");
  } catch {
    return map; // no system table: the built-in one answers
  }
  for (const line of text.split("\n")) {
    const words = line.replace(/#.*/, "").trim().split(/\s+/);
    if (words.length < 2) continue;
    for (const ext of words.slice(1)) map.set(`.${ext.toLowerCase()}`, words[0]!);
  }
  return map;
}

/** "text/html" for "index.html"; null when the extension is unknown. */
export function contentTypeFor(fileName: string): string | null {
  table ??= load();
  const ext = extname(fileName).toLowerCase();
  return table.get(ext) ?? null;
}
