/**
 * An addon harness like mitmproxy's `taddons`: load addons into a real (never listening) Master,
 * configure them, and drive their hooks with flows from `tflow()` — no sockets, no ports.
 *
 *   const tctx = await context(new Faults());
 *   await tctx.configure({ fault_rules: ["~all => status 503"] });
 *   const f = tflow();
 *   await tctx.trigger("request", f);
 */
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Addon, HookName } from "../../src/core/addons.js";
import type { SharedState } from "../../src/core/shared-state.js";
import { LineLogger } from "../../src/core/log.js";
import { Master } from "../../src/proxy/master.js";
import { CoreCommands } from "../../src/addons/core-commands.js";
import "../../src/aws/index.js";

export interface TContext {
  master: Master;
  /** Every log line, as written. */
  logs: string[];
  /** Sets typed option values as `set` would; rejects (after rolling back) when an addon refuses them. */
  configure(values: Record<string, unknown>): Promise<void>;
  /** Runs a hook on every loaded addon in order, as the proxy does. */
  trigger<H extends HookName>(hook: H, ...args: Parameters<NonNullable<Addon[H]>>): Promise<void>;
  /** Runs a command line (`fault.list`, `set x=1`). */
  command(line: string): Promise<unknown>;
}

let confdir: string | undefined;

/** Loads `addons` (after the built-in commands) and configures them with the defaults. */
export function context(...addons: Addon[]): Promise<TContext> {
  return contextWith({}, ...addons);
}

/** As `context`, with a shared state of the test's choosing (two contexts sharing one act as two processes). */
export async function contextWith(opts: { state?: SharedState }, ...addons: Addon[]): Promise<TContext> {
  confdir ??= mkdtempSync(join(tmpdir(), "sluice-taddons-"));
  const logs: string[] = [];
  const master = new Master({ set: { confdir }, addons: [new CoreCommands(), ...addons], log: new LineLogger("debug", (line) => logs.push(line)), state: opts.state });
  await master.configure();
  return {
    master,
    logs,
    configure: async (values) => {
      await master.options.update(values);
    },
    trigger: async (hook, ...args) => {
      await master.addons.trigger(hook, ...args);
    },
    command: (line) => master.commands.execute(line),
  };
}
