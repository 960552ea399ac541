// The page's one WebSocket to sluice, and a small store the components read with useStore.
import { useSyncExternalStore } from "react";
import type { FaultRuleInfo, FlowDetail, LogEntry, OptionRow, RetriesPage, RowsMessage, ShapingRuleStatus, StateMessage } from "./types";

export const token = new URLSearchParams(location.search).get("token") ?? "";

export interface Store {
  connected: boolean;
  closedReason: string | null;
  rows: RowsMessage | null;
  state: StateMessage | null;
  detail: { id: string; flow: FlowDetail | null } | null;
  retries: RetriesPage | null;
  faults: { loaded: boolean; rules: FaultRuleInfo[] } | null;
  shaping: { loaded: boolean; rules: ShapingRuleStatus[] } | null;
  options: OptionRow[] | null;
  events: LogEntry[];
  /** The last command's answer, shown in the status line. */
  message: { text: string; error: boolean; at: number } | null;
}

let store: Store = { connected: false, closedReason: null, rows: null, state: null, detail: null, retries: null, faults: null, shaping: null, options: null, events: [], message: null };
const listeners = new Set<() => void>();

function set(patch: Partial<Store>): void {
  store = { ...store, ...patch };
  for (const l of listeners) l();
}

export function useStore<T>(select: (s: Store) => T): T {
  return useSyncExternalStore(
    (l) => {
      listeners.add(l);
      return () => listeners.delete(l);
    },
    () => select(store),
  );
}

export function getStore(): Store {
  return store;
}

export function say(text: string, error = false): void {
  set({ message: { text, error, at: Date.now() } });
}

let socket: WebSocket | null = null;
let nextReq = 1;
const pending = new Map<number, (r: { ok: boolean; text: string }) => void>();
/** What the page asked for last: sent again after a reconnect. */
const sticky: Record<string, unknown> = {};

export function api(path: string, params: Record<string, string> = {}): string {
  const q = new URLSearchParams({ ...params, token });
  return `${path}?${q}`;
}

export function connect(): void {
  const ws = new WebSocket(`${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/updates?token=${encodeURIComponent(token)}`);
  socket = ws;
  ws.onopen = () => {
    set({ connected: true, closedReason: null });
    for (const m of Object.values(sticky)) ws.send(JSON.stringify(m));
  };
  ws.onclose = (e) => {
    set({ connected: false, closedReason: e.reason || (token ? "connection to sluice lost; retrying" : "no token in the URL: open the address sluice printed (…/?token=…)") });
    for (const [, resolve] of pending) resolve({ ok: false, text: "connection to sluice lost" });
    pending.clear();
    if (token) setTimeout(connect, 1000);
  };
  ws.onmessage = (e) => {
    const msg = JSON.parse(String(e.data)) as { type: string } & Record<string, unknown>;
    switch (msg.type) {
      case "rows":
        return set({ rows: msg as unknown as RowsMessage });
      case "state":
        return set({ state: msg as unknown as StateMessage });
      case "detail":
        return set({ detail: { id: msg.id as string, flow: msg.flow as FlowDetail | null } });
      case "result": {
        const resolve = pending.get(msg.reqId as number);
        pending.delete(msg.reqId as number);
        return resolve?.({ ok: msg.ok as boolean, text: msg.text as string });
      }
      case "retries":
        return set({ retries: msg.data as RetriesPage });
      case "faults":
        return set({ faults: msg.data as Store["faults"] });
      case "shaping":
        return set({ shaping: msg.data as Store["shaping"] });
      case "options":
        return set({ options: msg.data as OptionRow[] });
      case "events":
        return set({ events: [...store.events, ...(msg.entries as LogEntry[])].slice(-1000) });
      case "error":
        return say(String(msg.message), true);
      case "notice":
        return say(String(msg.text));
    }
  };
}

export function send(message: { type: string } & Record<string, unknown>, stickyKey?: string): void {
  if (stickyKey) sticky[stickyKey] = { ...(sticky[stickyKey] as object | undefined), ...message };
  if (socket?.readyState === WebSocket.OPEN) socket.send(JSON.stringify(message));
}

export function request(message: { type: string } & Record<string, unknown>): Promise<{ ok: boolean; text: string }> {
  const reqId = nextReq++;
  return new Promise((resolve) => {
    pending.set(reqId, resolve);
    if (socket?.readyState !== WebSocket.OPEN) {
      pending.delete(reqId);
      return resolve({ ok: false, text: "not connected to sluice" });
    }
    socket.send(JSON.stringify({ ...message, reqId }));
  });
}

/** Runs a command line (the same language as the console's `:` prompt) and reports its answer. */
export async function run(line: string, quiet = false): Promise<{ ok: boolean; text: string }> {
  const r = await request({ type: "command", line });
  if (!quiet || !r.ok) say(r.text, !r.ok);
  return r;
}

export function editText(id: string, part: "request" | "response") {
  return request({ type: "editText", id, part });
}

export function applyEdit(id: string, part: "request" | "response", original: string, text: string) {
  return request({ type: "edit", id, part, original, text });
}

/** Quotes a value as one word of the command language. */
export function quote(value: string): string {
  return `"${value.replace(/\\/g, "\\\\").replace(/"/g, '\\"')}"`;
}
