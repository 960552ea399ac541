/**
 * What each fault action does to a flow. Request-phase actions run in the `request` hook (the
 * server is not contacted when they answer); response-phase ones in `responseHeaders`, once the
 * server's status and headers are in but before the client has seen anything.
 */
import type { HTTPFlow } from "../core/flow.js";
import { now, reasonPhrase, Response } from "../core/flow.js";
import { randomUUID } from "node:crypto";
import { awsErrorResponse, awsInfoOf, catalogedErrorOf, serviceErrorResponse, servicesWithError, throttleResponse, throttlingErrorOf, type AwsError, type AwsLimitRefusal, type AwsRequestInfo } from "../aws/index.js";
import type { DelayDistribution, FaultAction } from "./fault-rules.js";

/** How a wait ended: its time ran out, it was let go (rule disabled), or it was cut short. */
export type WaitOutcome = "elapsed" | "released" | "client-gone" | "stopped";

interface Waiting {
  flow: HTTPFlow;
  ruleId: string;
  finish: (outcome: WaitOutcome) => void;
}

/**
 * Flows held by `delay` and `hang`, so that nothing outlives its client or the proxy: a client that
 * leaves (its connection, or just its HTTP/2 stream) or a proxy that stops ends the wait at once.
 */
export class FlowWaits {
  private waiting = new Set<Waiting>();

  /** Waits `ms` (null: until released). */
  wait(flow: HTTPFlow, ruleId: string, ms: number | null): Promise<WaitOutcome> {
    return new Promise((resolve) => {
      let timer: ReturnType<typeof setTimeout> | null = null;
      let unwatch: (() => void) | null = null;
      const entry: Waiting = {
        flow,
        ruleId,
        finish: (outcome) => {
          if (!this.waiting.delete(entry)) return;
          if (timer) clearTimeout(timer);
          unwatch?.();
          resolve(outcome);
        },
      };
      this.waiting.add(entry);
      if (ms !== null) timer = setTimeout(() => entry.finish("elapsed"), ms);
      unwatch = flow.onClientGone(() => entry.finish("client-gone"));
    });
  }

  /** Lets the flows a rule holds go on (the rule was disabled or removed). */
  releaseRule(ruleId: string): number {
    let n = 0;
    for (const w of [...this.waiting]) {
      if (w.ruleId === ruleId) {
        w.finish("released");
        n++;
      }
    }
    return n;
  }

  /** The proxy stops: every wait ends. */
  stopAll(): void {
    for (const w of [...this.waiting]) w.finish("stopped");
  }

  /** Flows waiting right now (tests check that none leak). */
  get size(): number {
    return this.waiting.size;
  }
}

/** A delay drawn from the action's distribution, never negative. */
export function delayOf(action: { ms: number; jitterMs: number; dist: DelayDistribution }, random: () => number = Math.random): number {
  let ms: number;
  switch (action.dist) {
    case "uniform":
      ms = action.ms + (random() * 2 - 1) * action.jitterMs;
      break;
    case "normal": {
      // Box–Muller: jitter is the standard deviation.
      const u = 1 - random();
      const v = random();
      ms = action.ms + Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * v) * action.jitterMs;
      break;
    }
    case "exponential":
      // Mean ms: many short delays and a long tail, like a congested network.
      ms = -Math.log(1 - random()) * action.ms + (random() * 2 - 1) * action.jitterMs;
      break;
  }
  return Math.max(0, ms);
}

/**
 * Applies an action in its phase (see phaseOf): request-phase actions answer, kill, wait or pace
 * the upload; response-phase ones change the answer in `flow.response` (the server's, or a local
 * one). Returns a promise only for actions that wait (delay, hang). The switch names every action
 * and has no fallback: a new action that is not handled here does not compile.
 */
export function applyFaultAction(flow: HTTPFlow, ruleId: string, action: FaultAction, waits: FlowWaits): void | Promise<void> {
  switch (action.name) {
    case "throttle":
      flow.response = throttleResponse(awsInfoOf(flow), action.retryAfterSeconds === null ? {} : { retryAfterSeconds: action.retryAfterSeconds });
      return;
    case "error": {
      const opts = action.retryAfterSeconds === null ? {} : { retryAfterSeconds: action.retryAfterSeconds };
      const info = awsInfoOf(flow);
      flow.response = action.code === null
        ? serviceErrorResponse(action.status === 503 ? 503 : 500, info, opts)
        : awsErrorResponse(info, namedErrorOf(info, action.code, action.status, ruleId), opts);
      return;
    }
    case "reset":
    case "close":
      flow.error = { msg: `connection ${action.name === "reset" ? "reset" : "closed"} by fault rule ${ruleId}`, timestamp: now() };
      flow.kill(action.name);
      return;
    case "delay":
      return waits.wait(flow, ruleId, delayOf(action)).then((outcome) => endWait(flow, ruleId, outcome, "delayed"));
    case "hang":
      return waits.wait(flow, ruleId, null).then((outcome) => endWait(flow, ruleId, outcome, "hung"));
    case "bandwidth":
      // on=request: the proxy paces the request body it sends upstream; on=response, the answer.
      if (action.on === "request") flow.request.bandwidthLimit = action.bytesPerSecond;
      else if (flow.response) flow.response.bandwidthLimit = action.bytesPerSecond;
      return;
    case "status":
      if (!flow.response) return;
      flow.response.statusCode = action.status;
      flow.response.reason = reasonPhrase(action.status);
      return;
    case "truncate":
      if (flow.response) flow.response.truncateAt = action.bytes;
      return;
    case "aws-limits": {
      // The rule admitted the flow only when a limit refused it (faults.ts), and said which.
      const refused = flow.metadata.aws_limit as AwsLimitRefusal | undefined;
      if (!refused) return;
      const info = awsInfoOf(flow);
      flow.response = refused.failedRecords !== undefined
        ? failedRecordsResponse(refused.failedRecords, refused.code, refused.message, info)
        : awsErrorResponse(info, { status: refused.status, code: refused.code, message: refused.message, ...(refused.fields ? { fields: refused.fields } : {}) });
      return;
    }
    default:
      return unhandled(action);
  }
}

/**
 * `error CODE`: the error as the request's service models it (status and wire code); a code the
 * service does not list takes its status from a service that does (or status=). The service's own
 * throttling error keeps its message and members (Lambda's Reason).
 */
function namedErrorOf(info: AwsRequestInfo | null, code: string, status: number | null, ruleId: string): AwsError {
  const service = info?.service ?? null;
  const entry = (service ? catalogedErrorOf(service, code) : null) ?? servicesWithError(code).map((s) => catalogedErrorOf(s, code)).find((e) => e !== null) ?? null;
  const wire = entry?.code ?? code;
  const throttle = throttlingErrorOf(info);
  if (throttle.code === wire) return { ...throttle, status: status ?? throttle.status };
  return { status: status ?? entry?.status ?? 400, code: wire, message: `${wire} (injected by sluice fault rule ${ruleId})` };
}

/** Kinesis PutRecords beyond the shard: 200, every record failed with its error code, as AWS reports partial failures. */
function failedRecordsResponse(count: number, code: string, message: string, info: AwsRequestInfo | null): Response {
  const records = Array.from({ length: count }, () => ({ ErrorCode: code, ErrorMessage: message }));
  return Response.make(200, JSON.stringify({ FailedRecordCount: count, Records: records, EncryptionType: "NONE" }), {
    "content-type": `application/x-amz-json-${info?.jsonVersion ?? "1.1"}`,
    "x-amzn-RequestId": randomUUID(),
  });
}

function unhandled(action: never): never {
  throw new Error(`fault action ${JSON.stringify((action as { name?: unknown }).name)} has no implementation`);
}

/** A wait cut short by the client or the proxy leaves nobody to answer: the flow ends in an error. */
function endWait(flow: HTTPFlow, ruleId: string, outcome: WaitOutcome, what: string): void {
  if (outcome === "elapsed" || outcome === "released") return;
  const why = outcome === "client-gone" ? "the client disconnected" : "the proxy stopped";
  flow.error = { msg: `${why} while the request was ${what} by fault rule ${ruleId}`, timestamp: now() };
  flow.kill("close");
}
