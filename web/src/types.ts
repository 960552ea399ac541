// The shapes the server sends (src/ui/web/flow-json.ts, live-view.ts, pages.ts).
export type FlowKind = "fault" | "throttle" | "error" | "client-error" | "ok" | "pending";

export interface FlowMarks {
  attempt?: number;
  maxAttempts?: number | null;
  inferred?: boolean;
  fault?: string;
  throttle?: string;
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
  size: number | null;
  duration: number | null;
  time: number;
  kind: FlowKind;
  marks: FlowMarks;
  highlight?: boolean;
  v?: number;
}

export interface FilterProblem {
  message: string;
  position: number | null;
}

export interface RowsMessage {
  type: "rows";
  total: number;
  all: number;
  offset: number;
  rows: FlowSummary[];
  focusIndex: number;
  progress: { done: number; of: number } | null;
  filterError: FilterProblem | null;
  highlightError: FilterProblem | null;
}

export interface MessageDetail {
  httpVersion: string;
  headers: [string, string][];
  trailers: [string, string][] | null;
  contentType: string;
  contentEncoding: string | null;
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

export interface OperationStats {
  service: string;
  operation: string;
  requests: number;
  retries: number;
  inferredRetries: number;
  throttles: number;
  retryableErrors: number;
  backoffSeconds: number;
  invocations: number;
  outcomes: Record<"ok" | "retried" | "gave-up" | "failed", number>;
  statuses: Record<string, number>;
}

export interface SeriesBucket {
  requests: number;
  throttles: number;
  retries: number;
  errors: number;
  giveups: number;
  backoff: number;
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
  outcome: "ok" | "failing" | "pending";
}

export interface RetriesPage {
  loaded: boolean;
  totals: OperationStats | null;
  operations: OperationStats[];
  series: { start: number; bucketSeconds: number; buckets: SeriesBucket[] } | null;
  open: number;
  calls: SdkCall[];
}

export interface FaultRuleInfo {
  id: string;
  rule: string;
  filter: string;
  action: string;
  enabled: boolean;
  source: "option" | "file" | "runtime";
  matched: number;
  injected: number;
}

export interface OptionRow {
  name: string;
  type: string;
  value: string;
  default: string;
  help: string;
  choices: string[] | null;
}

export interface LogEntry {
  level: "debug" | "info" | "warn" | "error";
  message: string;
  timestamp: number;
}

/** One shaping rule with its keys (the server's ShapingRuleStatus, addons/shaping.ts). */
export interface ShapingRuleStatus {
  id: string;
  text: string;
  explain: string;
  adaptive: boolean;
  keys: { key: string; rate: number; queued: number; longestWaitMs: number; released: number; rejected: number; cuts: number | null; throttles: number | null }[];
}
