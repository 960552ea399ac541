/**
 * `--intercept FILTER`: pause matching flows at request time (and at response time once they have
 * one) until a command resumes, edits or kills them. A flow left paused longer than
 * `intercept_timeout` is answered with a 504 that says so, instead of hanging its client forever.
 */
import type { Addon, AddonContext } from "../core/addons.js";
import { compileFilter, type FlowPredicate } from "../core/filter.js";
import { Response, type HTTPFlow } from "../core/flow.js";
import { declareOptions, type TypedOptions } from "../core/options.js";

/** The options this addon owns, declared once (names, types, defaults, help). */
export const INTERCEPT_OPTIONS = declareOptions({
  intercept: { type: "optional-string", default: null, help: "Pause flows matching this filter until resumed (`flow.resume`)" },
  intercept_active: { type: "bool", default: true, help: "Whether the intercept filter is applied" },
  intercept_timeout: { type: "int", default: 300, min: 1, help: "Seconds a flow may stay paused before it is answered with 504" },
});

export class Intercept implements Addon {
  name = "intercept";
  private filter: FlowPredicate | null = null;
  private ctx!: AddonContext;
  private opts!: TypedOptions<typeof INTERCEPT_OPTIONS>;
  /** Flows currently paused, for front ends and `@intercepted`-style listings. */
  readonly paused = new Set<HTTPFlow>();
  private listeners: ((flow: HTTPFlow) => void)[] = [];
  /** Flows this addon answered with its timeout 504: that answer is sluice's own, not to be paused again. */
  private readonly timedOut = new WeakSet<HTTPFlow>();

  load(ctx: AddonContext): void {
    this.ctx = ctx;
    this.opts = ctx.options.register(INTERCEPT_OPTIONS);
  }

  configure(updated: Set<string>): void {
    if (updated.has("intercept")) {
      const expr = this.opts.intercept;
      this.filter = expr ? compileFilter(expr) : null;
    }
  }

  /** Called whenever a flow is paused (the console highlights it). */
  onPause(listener: (flow: HTTPFlow) => void): void {
    this.listeners.push(listener);
  }

  private matches(flow: HTTPFlow): boolean {
    return !!this.filter && this.opts.intercept_active && this.filter(flow);
  }

  request(flow: HTTPFlow): void {
    if (!flow.response && this.matches(flow)) this.pause(flow, "request");
  }

  response(flow: HTTPFlow): void {
    if (flow.response && !flow.response.streamed && !this.timedOut.has(flow) && this.matches(flow)) this.pause(flow, "response");
  }

  private pause(flow: HTTPFlow, phase: "request" | "response"): void {
    flow.intercept();
    this.paused.add(flow);
    flow.metadata.intercepted_at = phase;
    const seconds = this.opts.intercept_timeout;
    const timer = setTimeout(() => {
      if (!flow.intercepted) return;
      const msg = `intercepted flow was not resumed within ${seconds}s (intercept_timeout); sluice answered 504`;
      this.ctx.log.warn(`${flow.request.method} ${flow.request.prettyUrl}: ${msg}`);
      flow.response = Response.make(504, `sluice: ${msg}\n`, { "content-type": "text/plain; charset=utf-8" });
      flow.error = { msg, timestamp: Date.now() / 1000 };
      this.timedOut.add(flow);
      flow.resume();
    }, seconds * 1000);
    timer.unref();
    // Nobody is left to answer: end the flow now rather than keep it paused until the timeout.
    const unwatch = flow.onClientGone(() => {
      if (!flow.intercepted) return;
      flow.error = { msg: `the client disconnected while the flow was intercepted (at ${phase})`, timestamp: Date.now() / 1000 };
      flow.kill();
    });
    void flow.waitForResume().then(() => {
      clearTimeout(timer);
      unwatch();
      this.paused.delete(flow);
    });
    for (const l of this.listeners) l(flow);
  }
}
