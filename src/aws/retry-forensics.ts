/**
 * Retry forensics for `sluice report`: from the attempts and back-off gaps of each SDK call, which
 * retry mode each client was in (legacy, standard, adaptive) and with how many attempts, whether
 * its back-off fits that mode's formula, when the standard-mode retry quota ran out; and, per
 * operation, what other client settings would have done against the same throttling.
 *
 * The SDKs' rules (botocore, and the JS SDK's standard strategy): legacy makes 5 attempts and waits
 * rand × 2^(n−1) s before attempt n+1; standard and adaptive make 3 and wait
 * min(rand × 2^(n−1), 20) s; standard and adaptive retries spend a 500-token quota (5 a retry, 10
 * after a timeout) that successes refill (the cost of a successful retry back, 1 for a success
 * without retries); adaptive also paces first attempts with a client-side rate after throttling.
 */
import type { HTTPFlow } from "../core/flow.js";
import { awsInfoOf } from "./recognize.js";
import { labelsOf, flowEnd } from "./invocations.js";
import { throttlingCodeOf } from "./errors.js";

const QUOTA = 500;
const RETRY_COST = 5;
const NO_RETRY_INCREMENT = 1;
const STANDARD_CAP_S = 20;
/** Calls kept in memory; beyond, the report says it looked at the first ones only. */
export const MAX_FORENSIC_CALLS = 200_000;

interface Attempt {
  n: number;
  start: number;
  end: number;
  throttled: boolean;
  failed: boolean;
}

interface Call {
  client: string;
  operation: string;
  maxAttempts: number | null;
  mode: string | null;
  attempts: Attempt[];
}

export interface ClientRetryMode {
  client: string;
  sdk: string | null;
  calls: number;
  /** The mode: as the User-Agent states it, else inferred. */
  mode: string;
  /** "user-agent" or "inferred from …". */
  how: string;
  maxAttempts: number | null;
  /** Retry gaps within the mode's formula, of those measured. */
  gapsWithinFormula: number;
  gaps: number;
  /** Calls that gave up before their attempts ran out (what an empty retry quota does). */
  quotaGiveUps: number;
  /** When the simulated quota first could not pay a retry (seconds since the epoch), or null. */
  quotaEmptyAt: number | null;
}

export interface WhatIf {
  service: string;
  operation: string;
  calls: number;
  /** Share of attempts throttled, the model's per-attempt chance. */
  throttleRate: number;
  observedGiveUps: number;
  observedBackoffSeconds: number;
  settings: { setting: string; giveUps: number; backoffSeconds: number }[];
}

export interface RetryForensicsReport {
  clients: ClientRetryMode[];
  whatIf: WhatIf[];
  model: string;
  truncated: boolean;
}

export const WHAT_IF_MODEL =
  "each attempt of an operation is throttled independently with the share of its attempts that were throttled in the capture; back-off is the mode's mean wait (rand × 2^(n−1) s, capped at 20 s for standard); the retry quota is not modelled; max_attempts counts every attempt, first included, as AWS_MAX_ATTEMPTS and the config file do (boto3's Config(retries={'max_attempts': N}) counts retries: N + 1 attempts)";

/** Feeds SDK attempts (flows with amz-sdk-invocation-id) in; `report()` says what they show. */
export class RetryForensics {
  private readonly calls = new Map<string, Call>();
  private readonly sdks = new Map<string, string | null>();
  private truncated = false;

  add(flow: HTTPFlow): void {
    const info = awsInfoOf(flow);
    if (!info?.invocationId) return;
    const ua = flow.request.headers.get("user-agent") ?? "";
    // One client: one address, SDK and retry configuration (two clients of one process may differ).
    const client = `${flow.clientConn.peername?.[0] ?? "-"} ${info.sdk ?? ua.split(" ")[0] ?? ""}${info.retryMode ? ` (${info.retryMode})` : ""}`.trim();
    let call = this.calls.get(info.invocationId);
    if (!call) {
      if (this.calls.size >= MAX_FORENSIC_CALLS) {
        this.truncated = true;
        return;
      }
      const { service, operation } = labelsOf(flow);
      call = { client, operation: `${service} ${operation}`, maxAttempts: null, mode: info.retryMode, attempts: [] };
      this.calls.set(info.invocationId, call);
      this.sdks.set(client, info.sdk);
    }
    if (info.maxAttempts !== null) call.maxAttempts = Math.max(call.maxAttempts ?? 0, info.maxAttempts);
    const throttled = flow.response !== null && throttlingCodeOf(flow.response, info) !== null;
    const failed = flow.response === null || flow.response.statusCode >= 500 || flow.response.statusCode === 429 || throttled;
    call.attempts.push({ n: info.attempt ?? call.attempts.length + 1, start: flow.request.timestampStart, end: flowEnd(flow), throttled, failed });
  }

  report(): RetryForensicsReport {
    const byClient = new Map<string, Call[]>();
    const byOperation = new Map<string, Call[]>();
    for (const c of this.calls.values()) {
      c.attempts.sort((a, b) => a.n - b.n);
      (byClient.get(c.client) ?? byClient.set(c.client, []).get(c.client)!).push(c);
      (byOperation.get(c.operation) ?? byOperation.set(c.operation, []).get(c.operation)!).push(c);
    }
    const clients = [...byClient].map(([client, calls]) => this.clientMode(client, calls));
    const whatIf = [...byOperation].map(([op, calls]) => whatIfOf(op, calls)).filter((w) => w.throttleRate > 0).sort((a, b) => b.observedGiveUps - a.observedGiveUps || b.calls - a.calls);
    return { clients, whatIf, model: WHAT_IF_MODEL, truncated: this.truncated };
  }

  private clientMode(client: string, calls: Call[]): ClientRetryMode {
    const stated = mostCommon(calls.map((c) => c.mode).filter((m): m is string => m !== null));
    const maxSeen = Math.max(0, ...calls.map((c) => c.maxAttempts ?? 0));
    const attemptsSeen = Math.max(...calls.map((c) => c.attempts.length));
    const maxAttempts = maxSeen || null;
    let mode: string;
    let how: string;
    if (stated) {
      mode = stated;
      how = "User-Agent (cfg/retry-mode)";
    } else if (maxAttempts === 5) {
      mode = "legacy";
      how = "inferred from 5 attempts (legacy's default; standard and adaptive make 3)";
    } else if (maxAttempts === 3) {
      mode = "standard or adaptive";
      how = "inferred from 3 attempts (their default; the User-Agent does not say which)";
    } else {
      mode = "unknown";
      how = maxAttempts === null ? `no amz-sdk-request max= seen (at most ${attemptsSeen} attempt${attemptsSeen === 1 ? "" : "s"} per call)` : `max_attempts=${maxAttempts} is no mode's default`;
    }
    const capped = mode !== "legacy";
    let gaps = 0;
    let within = 0;
    for (const c of calls) {
      for (let i = 1; i < c.attempts.length; i++) {
        const prev = c.attempts[i - 1]!;
        const gap = c.attempts[i]!.start - prev.end;
        const bound = Math.min(2 ** (prev.n - 1), capped ? STANDARD_CAP_S : Infinity);
        gaps++;
        // A little slack for the client's own work between the answer and the next send.
        if (gap >= -0.05 && gap <= bound + 0.25) within++;
      }
    }
    const quotaGiveUps = maxAttempts === null ? 0 : calls.filter((c) => c.attempts.length < maxAttempts && c.attempts.at(-1)!.failed).length;
    return { client, sdk: this.sdks.get(client) ?? null, calls: calls.length, mode, how, maxAttempts, gapsWithinFormula: within, gaps, quotaGiveUps, quotaEmptyAt: mode === "legacy" ? null : quotaEmptyAt(calls) };
  }
}

/** Replays the client's attempts in time order against botocore's retry quota. */
function quotaEmptyAt(calls: Call[]): number | null {
  const events: { t: number; kind: "retry" | "success"; retried: boolean }[] = [];
  for (const c of calls) {
    for (let i = 1; i < c.attempts.length; i++) events.push({ t: c.attempts[i]!.start, kind: "retry", retried: true });
    const last = c.attempts.at(-1)!;
    if (!last.failed) events.push({ t: last.end, kind: "success", retried: c.attempts.length > 1 });
  }
  events.sort((a, b) => a.t - b.t);
  let tokens = QUOTA;
  for (const e of events) {
    if (e.kind === "retry") {
      if (tokens < RETRY_COST) return e.t;
      tokens -= RETRY_COST;
    } else {
      tokens = Math.min(QUOTA, tokens + (e.retried ? RETRY_COST : NO_RETRY_INCREMENT));
    }
  }
  // A call that gave up early with attempts left is the quota's doing even when this replay (which
  // cannot see timeouts, 10 tokens each) kept tokens.
  return null;
}

/** Mean of min(U × base, cap) for U uniform in [0, 1). */
function meanWait(base: number, cap: number): number {
  return base <= cap ? base / 2 : cap - (cap * cap) / (2 * base);
}

function expected(calls: number, p: number, maxAttempts: number, cap: number): { giveUps: number; backoffSeconds: number } {
  let backoff = 0;
  // Attempt n+1 happens when the first n were all throttled: chance p^n, after waiting for retry n.
  for (let n = 1; n < maxAttempts; n++) backoff += p ** n * meanWait(2 ** (n - 1), cap);
  return { giveUps: calls * p ** maxAttempts, backoffSeconds: calls * backoff };
}

function whatIfOf(operation: string, calls: Call[]): WhatIf {
  let attempts = 0;
  let throttled = 0;
  let backoff = 0;
  let giveUps = 0;
  for (const c of calls) {
    attempts += c.attempts.length;
    for (let i = 0; i < c.attempts.length; i++) {
      const a = c.attempts[i]!;
      if (a.throttled) throttled++;
      if (i > 0) backoff += Math.max(0, a.start - c.attempts[i - 1]!.end);
    }
    if (c.attempts.at(-1)!.failed) giveUps++;
  }
  const p = attempts ? throttled / attempts : 0;
  const [service, op] = operation.split(" ");
  const settings = [
    { setting: "legacy, max_attempts=5", ...expected(calls.length, p, 5, Infinity) },
    { setting: "standard, max_attempts=3", ...expected(calls.length, p, 3, STANDARD_CAP_S) },
    { setting: "standard, max_attempts=5", ...expected(calls.length, p, 5, STANDARD_CAP_S) },
    { setting: "standard, max_attempts=10", ...expected(calls.length, p, 10, STANDARD_CAP_S) },
  ];
  return { service: service!, operation: op ?? "", calls: calls.length, throttleRate: p, observedGiveUps: giveUps, observedBackoffSeconds: backoff, settings };
}

function mostCommon(values: string[]): string | null {
  const counts = new Map<string, number>();
  for (const v of values) counts.set(v, (counts.get(v) ?? 0) + 1);
  let best: string | null = null;
  for (const [v, n] of counts) if (best === null || n > counts.get(best)!) best = v;
  return best;
}

/** The back-off formula of a mode, as the report writes it. */
export function backoffFormula(mode: string): string {
  return mode === "legacy" ? "rand×2^(n−1) s" : "min(rand×2^(n−1), 20) s";
}

/**
 * Whether a client's observed back-off fits its mode's formula: "matches" when at least 90% of
 * its gaps do (a few gaps run long when the client was busy), "does not match" otherwise.
 */
export function backoffVerdict(c: ClientRetryMode): "matches" | "does not match" | "no back-off measured" {
  if (c.gaps === 0) return "no back-off measured";
  return c.gapsWithinFormula >= 0.9 * c.gaps ? "matches" : "does not match";
}

/** "with standard mode and max_attempts=10, PutObject would have had 0 give-ups and 31 s more back-off" */
export function whatIfSentence(w: WhatIf, s: WhatIf["settings"][number]): string {
  const [mode, attempts] = s.setting.split(", ");
  const more = s.backoffSeconds - w.observedBackoffSeconds;
  const seconds = Math.abs(more) >= 10 ? Math.abs(more).toFixed(0) : Math.abs(more).toFixed(1);
  return `with ${mode} mode and ${attempts}, ${w.operation} would have had ${fmt(s.giveUps)} give-up${s.giveUps === 1 ? "" : "s"} and ${seconds} s ${more >= 0 ? "more" : "less"} back-off`;
}

/** The report's "Retry modes" and "What if" sections. */
export function retryForensicsText(r: RetryForensicsReport, top = 10): string {
  if (r.clients.length === 0) return "";
  const lines = ["", "Retry modes (per client: address and SDK)"];
  for (const c of r.clients.slice(0, top)) {
    const max = c.maxAttempts === null ? "" : `, max ${c.maxAttempts} attempts`;
    const gaps = c.gaps ? `; back-off ${c.gapsWithinFormula}/${c.gaps} gaps within ${backoffFormula(c.mode)}` : "";
    const quota = c.quotaEmptyAt !== null ? `; retry quota (500) ran out at ${new Date(c.quotaEmptyAt * 1000).toISOString()}` : "";
    const early = c.quotaGiveUps ? `; ${c.quotaGiveUps} call${c.quotaGiveUps === 1 ? "" : "s"} gave up with attempts left (retry quota)` : "";
    lines.push(`  ${c.client}: ${c.mode}${max} (${c.how}), ${c.calls} calls${gaps}${quota}${early}`);
  }
  if (r.whatIf.length) {
    lines.push("", `What if (model: ${r.model})`);
    for (const w of r.whatIf.slice(0, top)) {
      lines.push(`  ${w.service} ${w.operation}: ${w.calls} calls, ${(w.throttleRate * 100).toFixed(0)}% of attempts throttled; observed ${w.observedGiveUps} gave up, ${w.observedBackoffSeconds.toFixed(1)} s back-off`);
      for (const s of w.settings) {
        const more = s.backoffSeconds - w.observedBackoffSeconds;
        lines.push(`    with ${s.setting}: ${fmt(s.giveUps)} give-ups, ${Math.abs(more).toFixed(1)} s ${more >= 0 ? "more" : "less"} back-off`);
      }
    }
  }
  if (r.truncated) lines.push(`  (only the first ${MAX_FORENSIC_CALLS.toLocaleString("en")} SDK calls were looked at)`);
  return lines.join("\n") + "\n";
}

function fmt(n: number): string {
  return n >= 10 ? n.toFixed(0) : n >= 0.05 ? n.toFixed(1) : n === 0 ? "0" : "<0.1";
}
