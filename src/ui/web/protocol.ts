/**
 * What sluice's web UI sends the browser over its WebSocket and API: the one definition both
 * sides compile against. The front end (web/, a separate browser build) imports these types, so
 * this file and the ones it imports must stay plain data: no imports but types from files that
 * have none themselves (no Node modules, no values).
 */
import type { FlowKind } from "../flow-kind.js";
import type { FaultRuleInfo } from "../../addons/fault-info.js";
import type { ShapingRuleStatus } from "../../addons/shaping-status.js";
import type { OperationStats, Series } from "../../aws/retry-stats.js";

export type { FlowKind, FaultRuleInfo, ShapingRuleStatus, OperationStats, Series };
export type { SeriesBucket } from "../../aws/retry-stats.js";
export type { LogEntry } from "../../core/log-entry.js";

export interface FlowMarks {
  attempt?: number;
  maxAttempts?: number | null;
  inferred?: boolean;
  fault?: string;
  throttle?: string;
  /** Milliseconds spent in a shaping queue. */
  shapedMs?: number;
  intercepted?: "request" | "response";
  marked?: string;
  error?: string;
  replay?: string;
  websocket?: boolean;
  comment?: boolean;
}

export interface FlowSummary {
  id: string;
  method: string;
  scheme: string;
  host: string;
  path: string;
  status: number | null;
  reason: string;
  type: string;
  /** Response body bytes (on the wire). */
  size: number | null;
  /** Seconds, or null while unfinished. */
  duration: number | null;
  /** Seconds since the epoch. */
  time: number;
  kind: FlowKind;
  marks: FlowMarks;
  highlight?: boolean;
  /** Changes whenever the flow does: the page redraws a row only when this moves. */
  v?: number;
}

export interface MessageDetail {
  httpVersion: string;
  headers: [string, string][];
  trailers: [string, string][] | null;
  contentType: string;
  contentEncoding: string | null;
  /** Bytes on the wire; null when the body was not kept. */
  contentLength: number;
  kept: boolean;
  streamed: boolean;
  complete: boolean;
  timestampStart: number;
  timestampEnd: number | null;
}

export interface ConnectionDetail {
  address: string | null;
  peer: string | null;
  local: string | null;
  tls: boolean;
  tlsVersion: string | null;
  sni: string | null;
  alpn: string | null;
  alpnOffers: string[];
  cipher: string | null;
  via: string | null;
  error: string | null;
  certificates: { subject: string; issuer: string; validFrom: string; validTo: string; altNames: string | null; fingerprint256: string }[];
  timestampStart: number | null;
  timestampTlsSetup: number | null;
  timestampTcpSetup: number | null;
  timestampEnd: number | null;
}

export interface FlowDetail {
  summary: FlowSummary;
  request: MessageDetail & { method: string; url: string; prettyUrl: string; authority: string };
  response: (MessageDetail & { statusCode: number; reason: string }) | null;
  error: { msg: string; timestamp: number } | null;
  client: ConnectionDetail;
  server: ConnectionDetail;
  websocket: { messages: { fromClient: boolean; type: "text" | "binary"; text: string; size: number; timestamp: number; dropped: boolean; injected: boolean }[]; closeCode: number | null; closeReason: string | null; closedByClient: boolean | null } | null;
  comment: string;
  marked: string;
  aws: Record<string, string | number | null> | null;
  retry: Record<string, unknown> | null;
  fault: Record<string, unknown> | null;
  shaping: Record<string, unknown> | null;
  intercepted: boolean;
  live: boolean;
}

export interface FilterProblem {
  message: string;
  /** Character offset of the problem in the expression, when the parser knows it. */
  position: number | null;
}

export interface RowsMessage {
  type: "rows";
  /** Flows that pass the filter. */
  total: number;
  /** Flows in the view. */
  all: number;
  offset: number;
  rows: FlowSummary[];
  /** Index of the focused flow among the filtered ones, or -1. */
  focusIndex: number;
  /** Set while a filter is still running over a large view: flows checked so far / to check. */
  progress: { done: number; of: number } | null;
  filterError: FilterProblem | null;
  highlightError: FilterProblem | null;
}

export interface CallAttempt {
  flowId: string;
  attempt: number;
  status: number | null;
  error: string | null;
  throttle: string | null;
  fault: string | null;
  start: number;
  end: number | null;
  backoffMs: number | null;
}

export interface SdkCall {
  id: string;
  service: string;
  operation: string;
  inferred: boolean;
  maxAttempts: number | null;
  attempts: CallAttempt[];
  /** ok: last attempt succeeded; failing: the last one failed (the SDK may still retry or have given up). */
  outcome: "ok" | "failing" | "pending";
}

export interface RetriesPage {
  loaded: boolean;
  totals: OperationStats | null;
  operations: OperationStats[];
  series: Series | null;
  open: number;
  calls: SdkCall[];
}

export interface FaultsPage {
  loaded: boolean;
  rules: FaultRuleInfo[];
}

export interface ShapingPage {
  loaded: boolean;
  rules: ShapingRuleStatus[];
}

export interface OptionRow {
  name: string;
  type: string;
  value: string;
  default: string;
  help: string;
  choices: readonly string[] | null;
}

/** The status line's facts, sent whenever they change. */
export interface StateMessage {
  type: "state";
  proxy: string;
  mode: string;
  viewFilter: string;
  intercept: string;
  interceptError: FilterProblem | null;
  paused: number;
  focusId: string | null;
}
