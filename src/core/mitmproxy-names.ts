/**
 * mitmproxy's spellings on sluice's flow model, so an addon written against mitmproxy's
 * `http.HTTPFlow`, `Request`, `Response` and `Headers` works with the names its author knows:
 * `flow.response.status_code = 429`, `flow.request.pretty_url`, `Response.make(…)`,
 * `headers.get_all("x")`. (In scripts, `headers["x"]` indexing works too: see addons/script-view.)
 *
 * They are accessors on the prototypes, never instance fields, so flows keep the shape they have
 * on the hot path and cost nothing more to build.
 */
import type { HTTPFlow, Message, Request, Response } from "./flow.js";
import type { Headers } from "./headers.js";

declare module "./flow.js" {
  interface Message {
    /** mitmproxy: `http_version` (e.g. "HTTP/1.1"). */
    http_version: string;
    /** mitmproxy: `timestamp_start`, seconds since the epoch. */
    timestamp_start: number;
    /** mitmproxy: `timestamp_end`, seconds since the epoch (null while in progress). */
    timestamp_end: number | null;
    /** mitmproxy: `raw_content`, the body as on the wire (what sluice calls `content`). */
    raw_content: Buffer | null;
    /** mitmproxy: `get_content()`, the body with Content-Encoding undone. */
    get_content(): Buffer | null;
    /** mitmproxy: `set_content(bytes)`, replace the body (unencoded) and fix the framing headers. */
    set_content(body: Buffer | string | null): void;
    /** mitmproxy: `get_text()`, the decoded body as text. */
    get_text(): string;
    /** mitmproxy: `set_text(text)`. */
    set_text(text: string): void;
    /** mitmproxy: `json()`, the body parsed as JSON. */
    json(): unknown;
  }
  interface Request {
    /** mitmproxy: `pretty_host`, the host the client asked for (Host header or authority). */
    readonly pretty_host: string;
    /** mitmproxy: `pretty_url`. */
    readonly pretty_url: string;
    /** mitmproxy: `host_header`, the Host header (HTTP/1) or :authority (HTTP/2). */
    host_header: string | null;
    /** mitmproxy: `path_components`, the path's segments, decoded. */
    readonly path_components: string[];
  }
  interface Response {
    /** mitmproxy: `status_code`. */
    status_code: number;
  }
  interface HTTPFlow {
    /** mitmproxy: `client_conn`. */
    client_conn: import("./flow.js").ClientConnection;
    /** mitmproxy: `server_conn`. */
    server_conn: import("./flow.js").ServerConnection;
    /** mitmproxy: `is_replay` ("request", "response" or null). */
    is_replay: "request" | "response" | null;
    /** mitmproxy: `timestamp_created`. */
    timestamp_created: number;
    /** mitmproxy: `timestamp_start`, when the request started. */
    readonly timestamp_start: number;
    /** mitmproxy: `killable`, whether `kill()` can still stop this flow. */
    readonly killable: boolean;
  }
}

declare module "./headers.js" {
  interface Headers {
    /** mitmproxy: `get_all(name)`, every value of a repeated header. */
    get_all(name: string): string[];
    /** mitmproxy: `set_all(name, values)`, replace every `name` header by these values. */
    set_all(name: string, values: string[]): void;
    /** mitmproxy: `insert(index, name, value)`. */
    insert(index: number, name: string, value: string): void;
    /** mitmproxy: `keys()`, each name once, in order. */
    keys(): string[];
    /** mitmproxy: `values()`, each name's value (repeated headers joined by ", "). */
    values(): string[];
    /** mitmproxy: `items()`, `[name, value]` per name (repeated headers joined by ", "). */
    items(): [string, string][];
    /** mitmproxy: `fields`, every `[name, value]` as sent. */
    readonly fields: [string, string][];
  }
}

interface Classes {
  Message: abstract new (...args: never[]) => Message;
  Request: (abstract new (...args: never[]) => Request) & { make?: unknown };
  Response: abstract new (...args: never[]) => Response;
  HTTPFlow: abstract new (...args: never[]) => HTTPFlow;
  Headers: abstract new (...args: never[]) => Headers;
}

/** A plain accessor that reads and writes `target` under another name. */
function rename(proto: object, alias: string, target: string, writable = true): void {
  Object.defineProperty(proto, alias, {
    configurable: true,
    get(this: Record<string, unknown>) {
      return this[target];
    },
    ...(writable
      ? {
          set(this: Record<string, unknown>, value: unknown) {
            this[target] = value;
          },
        }
      : {}),
  });
}

function method(proto: object, name: string, fn: (...args: never[]) => unknown): void {
  Object.defineProperty(proto, name, { configurable: true, writable: true, value: fn });
}

/** Called once by core/flow.ts with its classes (a function, so there is no import cycle). */
export function installMitmproxyNames(c: Classes): void {
  const message = c.Message.prototype;
  rename(message, "http_version", "httpVersion");
  rename(message, "timestamp_start", "timestampStart");
  rename(message, "timestamp_end", "timestampEnd");
  rename(message, "raw_content", "content");
  method(message, "get_content", function (this: Message) {
    return this.decodedContent;
  });
  method(message, "set_content", function (this: Message, body: Buffer | string | null) {
    this.setContent(body === null ? Buffer.alloc(0) : typeof body === "string" ? Buffer.from(body, "utf8") : body);
  });
  method(message, "get_text", function (this: Message) {
    return this.text;
  });
  method(message, "set_text", function (this: Message, text: string) {
    this.text = text;
  });
  method(message, "json", function (this: Message) {
    return JSON.parse(this.text);
  });

  const request = c.Request.prototype;
  rename(request, "pretty_host", "prettyHost", false);
  rename(request, "pretty_url", "prettyUrl", false);
  Object.defineProperty(request, "host_header", {
    configurable: true,
    get(this: Request) {
      return this.headers.get("host") ?? (this.authority || null);
    },
    set(this: Request, value: string | null) {
      if (value === null) {
        this.headers.delete("host");
        this.authority = "";
      } else {
        if (this.headers.has("host") || this.httpVersion !== "HTTP/2.0") this.headers.set("host", value);
        if (this.authority) this.authority = value;
      }
    },
  });
  Object.defineProperty(request, "path_components", {
    configurable: true,
    get(this: Request) {
      return this.pathname.split("/").filter((s) => s !== "").map((s) => decodeURIComponent(s));
    },
  });

  rename(c.Response.prototype, "status_code", "statusCode");

  const flow = c.HTTPFlow.prototype;
  rename(flow, "client_conn", "clientConn");
  rename(flow, "server_conn", "serverConn");
  rename(flow, "is_replay", "isReplay");
  rename(flow, "timestamp_created", "timestampCreated");
  Object.defineProperty(flow, "timestamp_start", {
    configurable: true,
    get(this: HTTPFlow) {
      return this.request.timestampStart;
    },
  });
  Object.defineProperty(flow, "killable", {
    configurable: true,
    get(this: HTTPFlow) {
      return this.live && !this.isKilled;
    },
  });

  const headers = c.Headers.prototype;
  method(headers, "get_all", function (this: Headers, name: string) {
    return this.getAll(name);
  });
  method(headers, "set_all", function (this: Headers, name: string, values: string[]) {
    this.delete(name);
    for (const v of values) this.add(name, v);
  });
  method(headers, "insert", function (this: Headers, index: number, name: string, value: string) {
    this.raw.splice(Math.max(0, Math.min(index, this.length)) * 2, 0, name, value);
  });
  method(headers, "keys", function (this: Headers) {
    return uniqueNames(this);
  });
  method(headers, "values", function (this: Headers) {
    return uniqueNames(this).map((n) => this.getAll(n).join(", "));
  });
  method(headers, "items", function (this: Headers) {
    return uniqueNames(this).map((n): [string, string] => [n, this.getAll(n).join(", ")]);
  });
  Object.defineProperty(headers, "fields", {
    configurable: true,
    get(this: Headers) {
      return [...this];
    },
  });
}

function uniqueNames(headers: Headers): string[] {
  const seen = new Set<string>();
  const out: string[] = [];
  for (const [name] of headers) {
    const lower = name.toLowerCase();
    if (!seen.has(lower)) {
      seen.add(lower);
      out.push(name);
    }
  }
  return out;
}
