/**
 * What a user script sees of a flow: the flow itself behind a Proxy that
 *
 * - refuses an assignment to a property the object does not have, naming the one meant
 *   (`flow.response.status = 429` → "did you mean status_code?") — in JavaScript such an
 *   assignment would otherwise add a property nobody reads, a silent no-op;
 * - refuses an assignment to a read-only one (`pretty_url`), saying what to set instead;
 * - lets headers be indexed as in mitmproxy: `headers["x-a"]` (case-insensitive, repeated values
 *   joined by ", "), `headers["x-a"] = "1"`, `delete headers["x-a"]`, `"x-a" in headers`.
 *
 * Only scripts get these views: sluice's own addons work on the objects themselves, so the hot
 * path pays nothing for them.
 */
import { HTTPFlow, Message, Request, Response } from "../core/flow.js";
import { Headers } from "../core/headers.js";
import { editDistance } from "../core/edit-distance.js";

const viewOf = new WeakMap<object, object>();
const targetOf = new WeakMap<object, object>();

/** The script's view of a flow, request, response or headers (other values as they are). */
export function scriptView<T>(value: T): T {
  if (typeof value !== "object" || value === null) return value;
  const known = viewOf.get(value);
  if (known) return known as T;
  let handler: ProxyHandler<object> | null = null;
  if (value instanceof HTTPFlow) handler = strictHandler("flow");
  else if (value instanceof Request) handler = strictHandler("flow.request");
  else if (value instanceof Response) handler = strictHandler("flow.response");
  else if (value instanceof Headers) handler = headersHandler;
  if (!handler) return value;
  const view = new Proxy(value, handler);
  viewOf.set(value, view);
  targetOf.set(view, value);
  return view as T;
}

/** The object behind a script view (what gets stored on a flow when a script assigns one). */
export function unwrap<T>(value: T): T {
  return (typeof value === "object" && value !== null ? (targetOf.get(value) as T | undefined) : undefined) ?? value;
}

/** Likely slips, by the name written: what it is called here. */
const HINTS: Record<string, Record<string, string>> = {
  "flow.response": { status: "status_code", code: "status_code", statusText: "reason", status_text: "reason", reason_phrase: "reason", body: "text (or content, the bytes as on the wire)", data: "text" },
  "flow.request": { body: "text (or content, the bytes as on the wire)", data: "text", uri: "url", hostname: "host", verb: "method", query_string: "path" },
  flow: { killed: "kill()", mark: "marked", replay: "is_replay", meta: "metadata", client: "client_conn", server: "server_conn" },
};

function strictHandler(label: string): ProxyHandler<object> {
  return {
    get(target, prop) {
      const value = Reflect.get(target, prop, target);
      // Methods run on the object itself (sluice's own code is not held to a script's rules);
      // what they return is viewed again.
      if (typeof value === "function") return (...args: unknown[]) => scriptView(value.apply(target, args.map(unwrap)));
      return typeof value === "object" && value !== null ? scriptView(value) : value;
    },
    set(target, prop, value) {
      assign(label, target, prop, unwrap(value));
      return true;
    },
    defineProperty(target, prop, descriptor) {
      if (!("value" in descriptor)) throw new TypeError(`${label}: define accessors on your own objects, not on sluice's`);
      assign(label, target, prop, unwrap(descriptor.value));
      return true;
    },
  };
}

function assign(label: string, target: object, prop: string | symbol, value: unknown): void {
  if (typeof prop === "symbol") {
    Reflect.set(target, prop, value);
    return;
  }
  const descriptor = findDescriptor(target, prop);
  if (!descriptor) throw new TypeError(`${label}.${prop} does not exist, so setting it would change nothing${suggestion(label, target, prop)}`);
  if (!("value" in descriptor) && !descriptor.set) {
    throw new TypeError(`${label}.${prop} is read-only${READ_ONLY_HINTS[prop] ?? ""}`);
  }
  if (typeof descriptor.value === "function") throw new TypeError(`${label}.${prop} is a method: call it, do not assign it`);
  if (prop === "content" && target instanceof Message && value !== null && encoded(target)) {
    throw new TypeError(`${label}.content is the body as on the wire, and this one is ${target.headers.get("content-encoding")}-encoded: use ${label}.set_content(bytes) or ${label}.text = "…" to replace it with a plain body`);
  }
  (target as Record<string, unknown>)[prop] = value;
}

const READ_ONLY_HINTS: Record<string, string> = {
  pretty_url: ": set url (or host, port, path)",
  prettyUrl: ": set url (or host, port, path)",
  pretty_host: ": set host, or the Host header with host_header",
  prettyHost: ": set host, or the Host header with host_header",
  timestamp_start: " on a flow: set request.timestamp_start",
  killable: ": call kill() to stop the flow",
  isKilled: ": call kill() to stop the flow",
  type: "",
  id: "",
};

function encoded(message: Message): boolean {
  const enc = message.headers.get("content-encoding");
  return !!enc && enc.toLowerCase() !== "identity";
}

function findDescriptor(target: object, prop: string): PropertyDescriptor | undefined {
  for (let o: object | null = target; o && o !== Object.prototype; o = Object.getPrototypeOf(o)) {
    const d = Object.getOwnPropertyDescriptor(o, prop);
    if (d) return d;
  }
  return undefined;
}

function propertyNames(target: object): string[] {
  const names = new Set<string>();
  for (let o: object | null = target; o && o !== Object.prototype; o = Object.getPrototypeOf(o)) {
    for (const n of Object.getOwnPropertyNames(o)) if (n !== "constructor" && !n.startsWith("_")) names.add(n);
  }
  return [...names];
}

function suggestion(label: string, target: object, prop: string): string {
  const hinted = HINTS[label]?.[prop];
  if (hinted) return `; did you mean ${hinted}?`;
  const lower = prop.toLowerCase();
  let best = "";
  let bestDistance = Infinity;
  for (const name of propertyNames(target)) {
    const d = editDistance(lower, name.toLowerCase());
    if (d < bestDistance) {
      best = name;
      bestDistance = d;
    }
  }
  if (best && bestDistance <= Math.max(2, Math.floor(prop.length / 3))) return `; did you mean ${best}?`;
  return " (see the README's table of mitmproxy names)";
}

const headersHandler: ProxyHandler<Headers> = {
  get(target, prop) {
    if (typeof prop === "symbol" || prop in target) return Reflect.get(target, prop, target);
    const values = target.getAll(prop);
    return values.length ? values.join(", ") : undefined;
  },
  set(target, prop, value) {
    if (typeof prop === "symbol" || prop in target) throw new TypeError(`headers.${String(prop)} is part of the headers object; use headers.set(${JSON.stringify(String(prop))}, value) for a header of that name`);
    if (value === undefined || value === null) target.delete(prop);
    else target.set(prop, String(value));
    return true;
  },
  deleteProperty(target, prop) {
    if (typeof prop !== "symbol") target.delete(prop);
    return true;
  },
  has(target, prop) {
    return prop in target || (typeof prop === "string" && target.has(prop));
  },
};
