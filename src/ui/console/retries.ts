/**
 * The retries screen (key R): per AWS service and operation (host and method for other traffic),
 * how many requests, how many were retries (attempt > 1, from the retry addon's metadata or the
 * SDK's amz-sdk-request header), how many answers were throttles (429 or an AWS throttling code,
 * judged as `~throttled` and the retries addon judge them) or injected faults, and the back-off
 * the retry addon measured.
 */
import type { HTTPFlow } from "../../core/flow.js";
import { labelsOf } from "../../aws/index.js";
import { attemptOf, faultOf, throttleCodeOf } from "./flow-row.js";
import { fit } from "./lines.js";

export interface RetryRow {
  service: string;
  operation: string;
  requests: number;
  retries: number;
  throttled: number;
  faults: number;
  maxAttempt: number;
  backoffMs: number;
}

export function retrySummary(flows: readonly HTTPFlow[]): RetryRow[] {
  const rows = new Map<string, RetryRow>();
  for (const f of flows) {
    const attempt = attemptOf(f);
    // The same labels as the retries addon and its metrics: AWS names, else host and method.
    const { service, operation } = labelsOf(f);
    const key = `${service}\0${operation}`;
    let row = rows.get(key);
    if (!row) rows.set(key, (row = { service, operation, requests: 0, retries: 0, throttled: 0, faults: 0, maxAttempt: 0, backoffMs: 0 }));
    row.requests++;
    if (attempt && attempt.attempt > 1) row.retries++;
    if (attempt) row.maxAttempt = Math.max(row.maxAttempt, attempt.attempt);
    if (throttleCodeOf(f)) row.throttled++;
    if (faultOf(f)?.action) row.faults++;
    const backoff = (f.metadata.retry as { backoffMs?: number } | undefined)?.backoffMs;
    if (typeof backoff === "number") row.backoffMs += backoff;
  }
  return [...rows.values()].sort((a, b) => b.retries - a.retries || b.requests - a.requests);
}

/**
 * The screen: the retry addon's table (every SDK call it tracked, with give-ups and back-off)
 * when it is loaded, then the same questions answered from the flows in the view.
 */
export function retryScreenLines(flows: readonly HTTPFlow[], addonTable: string | null): string[] {
  const fromView = retryLines(flows);
  if (addonTable === null) return fromView;
  return ["Retries per service and operation (retries addon: every call since start)", "", ...addonTable.split("\n"), "", "", ...fromView.map((l, i) => (i === 0 ? "In the flow view" : l))];
}

export function retryLines(flows: readonly HTTPFlow[]): string[] {
  const rows = retrySummary(flows);
  const header = `${fit("service", 14)} ${fit("operation", 28)} ${fit("requests", 9, true)} ${fit("retries", 8, true)} ${fit("throttled", 10, true)} ${fit("faults", 7, true)} ${fit("max att.", 9, true)} ${fit("back-off", 10, true)}`;
  if (rows.length === 0) return ["Retries per service and operation", "", "No requests seen yet."];
  return [
    "Retries per service and operation",
    "",
    header,
    ...rows.map((r) => `${fit(r.service, 14)} ${fit(r.operation, 28)} ${fit(String(r.requests), 9, true)} ${fit(String(r.retries), 8, true)} ${fit(String(r.throttled), 10, true)} ${fit(String(r.faults), 7, true)} ${fit(String(r.maxAttempt || "-"), 9, true)} ${fit(r.backoffMs ? `${(r.backoffMs / 1000).toFixed(2)}s` : "-", 10, true)}`),
  ];
}
