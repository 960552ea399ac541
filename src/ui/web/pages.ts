/**
 * The data behind the web UI's pages other than the flow list: Retries (per service and
 * operation from the retries addon, a time series for the live plot, and SDK calls grouped from
 * the flows in the view with their attempts), Faults, Shaping, Options and the event log. Each
 * comes from the addon that owns the feature; nothing here counts on its own.
 */
import type { ShapingRuleStatus } from "../../addons/shaping-status.js";
import type { FaultRuleInfo } from "../../addons/fault-info.js";
import type { HTTPFlow } from "../../core/flow.js";
import type { AddonContext } from "../../core/addons.js";
import type { LineLogger, LogEntry } from "../../core/log.js";
import { formatOptionValue } from "../../core/options.js";
import { labelsOf, type InvocationTracker, type OperationStats, type Series } from "../../aws/index.js";
import { attemptOf, throttleCodeOf } from "../console/flow-row.js";
import type { CallAttempt, FaultsPage, OptionRow, RetriesPage, SdkCall, ShapingPage } from "./protocol.js";
export type { CallAttempt, FaultsPage, OptionRow, RetriesPage, SdkCall, ShapingPage } from "./protocol.js";

/** SDK calls shown at most: the ones with the most attempts, then the newest. */
const MAX_CALLS = 200;

function trackerOf(master: AddonContext): InvocationTracker | null {
  const addon = master.addons.get("retries") as { invocations?: InvocationTracker } | undefined;
  return addon?.invocations ?? null;
}

export function retriesPage(master: AddonContext): RetriesPage {
  const tracker = trackerOf(master);
  return {
    loaded: tracker !== null,
    totals: tracker?.totals() ?? null,
    operations: tracker?.stats() ?? [],
    series: tracker?.series() ?? null,
    open: tracker?.openInvocations ?? 0,
    calls: sdkCalls(master.view.all),
  };
}

/** Flows of the view grouped into SDK calls by the retries addon's invocation id (or the SDK's header). */
export function sdkCalls(flows: readonly HTTPFlow[]): SdkCall[] {
  const calls = new Map<string, SdkCall>();
  for (const f of flows) {
    const retry = f.metadata.retry as { invocationId?: string; inferred?: boolean; backoffMs?: number | null; maxAttempts?: number | null } | undefined;
    const a = attemptOf(f);
    const id = retry?.invocationId;
    if (!id || !a) continue;
    let call = calls.get(id);
    if (!call) {
      const { service, operation } = labelsOf(f);
      calls.set(id, (call = { id, service, operation, inferred: !!retry.inferred, maxAttempts: a.max, attempts: [], outcome: "pending" }));
    }
    const fault = f.metadata.fault as { action?: string } | undefined;
    call.attempts.push({
      flowId: f.id,
      attempt: a.attempt,
      status: f.response?.statusCode ?? null,
      error: f.error?.msg ?? null,
      throttle: throttleCodeOf(f),
      fault: fault?.action ?? null,
      start: f.request.timestampStart,
      end: f.response?.timestampEnd ?? f.error?.timestamp ?? null,
      backoffMs: retry.backoffMs ?? null,
    });
  }
  const list = [...calls.values()];
  for (const c of list) {
    c.attempts.sort((x, y) => x.attempt - y.attempt || x.start - y.start);
    const last = c.attempts.at(-1)!;
    c.outcome = last.status === null && last.error === null ? "pending" : last.status !== null && last.status < 400 && !last.throttle ? "ok" : "failing";
  }
  list.sort((x, y) => y.attempts.length - x.attempts.length || y.attempts[0]!.start - x.attempts[0]!.start);
  return list.slice(0, MAX_CALLS);
}

export function faultsPage(master: AddonContext): FaultsPage {
  const faults = master.addons.get("faults") as { list?: () => FaultRuleInfo[] } | undefined;
  return { loaded: typeof faults?.list === "function", rules: faults?.list?.() ?? [] };
}

export function shapingPage(master: AddonContext): ShapingPage {
  const shaping = master.addons.get("shaping") as { status?: () => ShapingRuleStatus[] } | undefined;
  return { loaded: typeof shaping?.status === "function", rules: shaping?.status?.() ?? [] };
}

export function optionsPage(master: AddonContext): OptionRow[] {
  const o = master.options;
  return o.all().map((spec) => ({ name: spec.name, type: spec.type, value: formatOptionValue(o.get(spec.name)), default: formatOptionValue(spec.default), help: spec.help, choices: spec.choices ?? null }));
}

/** Log entries after the `seen`-th, by the logger's running count (it keeps only the last 1,000). */
export function newEvents(master: AddonContext, seen: number): { entries: LogEntry[]; count: number } {
  const log = master.log as LineLogger;
  const fresh = Math.min(log.recent.length, Math.max(0, log.count - seen));
  return { entries: log.recent.slice(log.recent.length - fresh), count: log.count };
}
