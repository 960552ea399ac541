/**
 * One row of the flow list, and how a flow is classified for colour: an injected fault
 * (magenta), a throttle (429 or an AWS throttling code such as S3's 503 SlowDown: yellow), an
 * error (red, a plain 503 included: clients retry it, but it is not throttling), a retry
 * attempt shown as 3/5. Classification is cached per response so a busy list stays cheap.
 */
import type { HTTPFlow, Response } from "../../core/flow.js";
import { awsInfoOf, throttlingCodeOf } from "../../aws/index.js";
import { humanDuration, humanSize } from "../../addons/dump.js";
import { fit, seg, type Colour, type Line } from "./lines.js";
import type { FlowKind } from "../flow-kind.js";
export type { FlowKind } from "../flow-kind.js";


interface RetryMeta {
  attempt?: number;
  maxAttempts?: number | null;
}

const throttleCache = new WeakMap<Response, { status: number; length: number; code: string | null }>();

/**
 * The throttling code of a flow's response ("SlowDown", "429", …) or null: the same judgement as
 * `~throttled`, the retries addon and the metrics, so the list's colours and the counts agree.
 */
export function throttleCodeOf(flow: HTTPFlow): string | null {
  const r = flow.response;
  if (!r) return null;
  const cached = throttleCache.get(r);
  // Keyed on status and size too: `flow.set` and the editor change responses in place.
  if (cached && cached.status === r.statusCode && cached.length === r.contentLength) return cached.code;
  const code = throttlingCodeOf(r, awsInfoOf(flow));
  throttleCache.set(r, { status: r.statusCode, length: r.contentLength, code });
  return code;
}

export function faultOf(flow: HTTPFlow): { rule?: string; action?: string } | null {
  const f = flow.metadata.fault as { rule?: string; action?: string } | undefined;
  return f && typeof f === "object" ? f : null;
}

/** Attempt and maximum from the retry addon's metadata, else from the SDK's own header. */
export function attemptOf(flow: HTTPFlow): { attempt: number; max: number | null } | null {
  const meta = flow.metadata.retry as RetryMeta | undefined;
  if (meta && typeof meta.attempt === "number") return { attempt: meta.attempt, max: meta.maxAttempts ?? null };
  const info = awsInfoOf(flow);
  if (info?.attempt) return { attempt: info.attempt, max: info.maxAttempts };
  return null;
}

export function kindOf(flow: HTTPFlow): FlowKind {
  if (faultOf(flow)?.action) return "fault";
  if (flow.response && throttleCodeOf(flow)) return "throttle";
  if (flow.error || (flow.response && flow.response.statusCode >= 500)) return "error";
  if (flow.response && flow.response.statusCode >= 400) return "client-error";
  return flow.response ? "ok" : "pending";
}

export const KIND_COLOUR: Record<FlowKind, Colour | undefined> = {
  fault: "magenta",
  throttle: "yellow",
  error: "red",
  "client-error": "yellow",
  ok: undefined,
  pending: "gray",
};

function clock(seconds: number): string {
  const d = new Date(seconds * 1000);
  return `${String(d.getHours()).padStart(2, "0")}:${String(d.getMinutes()).padStart(2, "0")}:${String(d.getSeconds()).padStart(2, "0")}`;
}

function bodySize(r: Response): number {
  return r.streamed ? r.contentLength : (r.content?.length ?? r.contentLength);
}

/**
 * A URL in `width` columns: without its scheme if that is enough, else cut in the middle so both
 * the host and the end of the path stay readable on a narrow terminal.
 */
export function fitUrl(url: string, width: number): string {
  if (url.length <= width) return url.padEnd(width);
  const bare = url.replace(/^https?:\/\//, "");
  if (bare.length <= width) return bare.padEnd(width);
  const head = Math.ceil((width - 1) * 0.4);
  return bare.slice(0, head) + "…" + bare.slice(bare.length - (width - 1 - head));
}

/** Columns of a row other than the URL: focus, marker, time, method, status, type, size, duration. */
const FIXED_COLUMNS = 1 + 2 + 9 + 8 + 1 + 4 + 11 + 8 + 7;

/** The column titles above the list, aligned with `flowRow`. */
export function listHeader(width: number): string {
  return `   ${fit("time", 9)}${fit("method", 8)}${fit("url", Math.max(10, width - FIXED_COLUMNS))} ${fit("st", 3, true)} ${fit("type", 10)} ${fit("size", 7, true)} ${fit("time", 7, true)}`;
}

/**
 * A list row `width` columns wide:
 * `» ● 12:03:04 GET    https://host/path…   200 json      1.2k   31ms 3/5 fault:throttle`
 */
export function flowRow(flow: HTTPFlow, width: number, focused: boolean): Line {
  const r = flow.response;
  const kind = kindOf(flow);
  const colour = KIND_COLOUR[kind];
  const marker = flow.intercepted ? "⏸" : flow.marked ? "●" : flow.isReplay ? "↻" : " ";
  const status = r ? String(r.statusCode) : flow.error ? "ERR" : flow.intercepted ? "…" : "";
  const type = r?.headers.get("content-type")?.split(";")[0]?.replace(/^(application|text)\//, "") ?? "";
  const size = r ? humanSize(bodySize(r)) : "";
  const dur = flow.duration;
  const attempt = attemptOf(flow);
  const fault = faultOf(flow);
  let tail = "";
  if (attempt && (attempt.attempt > 1 || (attempt.max ?? 0) > 1)) tail += ` ${attempt.attempt}/${attempt.max ?? "?"}`;
  if (fault?.action) tail += ` fault:${fault.action}`;
  else if (kind === "throttle") tail += ` ${throttleCodeOf(flow)}`;
  if (flow.error && !r) tail += ` ${flow.error.msg}`;
  const urlWidth = Math.max(10, width - FIXED_COLUMNS - Math.min(tail.length, 24));
  const line: Line = [
    seg(focused ? "»" : " ", { bold: true }),
    seg(marker + " ", { colour: flow.intercepted ? "yellow" : flow.marked ? "cyan" : undefined }),
    seg(clock(flow.timestampCreated) + " ", { dim: true }),
    seg(fit(flow.request.method, 7) + " ", { bold: true }),
    seg(fitUrl(flow.request.prettyUrl, urlWidth) + " "),
    seg(fit(status, 3, true) + " ", { colour, bold: kind !== "ok" }),
    seg(fit(type, 10) + " ", { dim: true }),
    seg(fit(size, 7, true) + " "),
    seg(fit(dur === null ? (flow.intercepted ? "paused" : "…") : humanDuration(dur), 7, true)),
  ];
  if (tail) line.push(seg(tail.slice(0, Math.max(0, width - FIXED_COLUMNS - urlWidth)), { colour: kind === "pending" || kind === "ok" ? (attempt && attempt.attempt > 1 ? "yellow" : undefined) : colour }));
  if (focused) for (const s of line) s.inverse = true;
  return line;
}
