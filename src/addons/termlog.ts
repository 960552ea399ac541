/**
 * `--set termlog_verbosity=error|warn|info|alert|debug` (mitmproxy's termlog): how much of the
 * event log reaches the terminal. `-q` means error, `-v` debug; mitmproxy's "alert" shows as info.
 */
import type { Addon, AddonContext } from "../core/addons.js";
import type { LogLevel } from "../core/log.js";
import { declareOptions, type TypedOptions } from "../core/options.js";

const LEVELS: Record<string, LogLevel> = { error: "error", warn: "warn", info: "info", alert: "info", debug: "debug" };

/** The options this addon owns, declared once (names, types, defaults, help). */
export const TERMLOG_OPTIONS = declareOptions({
  termlog_verbosity: { type: "string", default: "info", choices: ["error", "warn", "info", "alert", "debug"], help: "Log verbosity on the terminal: error, warn, info, alert or debug" },
});

export class TermLog implements Addon {
  name = "termlog";
  private ctx!: AddonContext;
  private opts!: TypedOptions<typeof TERMLOG_OPTIONS>;

  load(ctx: AddonContext): void {
    this.ctx = ctx;
    this.opts = ctx.options.register(TERMLOG_OPTIONS);
  }

  configure(updated: Set<string>): void {
    if (!updated.has("termlog_verbosity")) return;
    const log = this.ctx.log as { level?: LogLevel };
    if ("level" in log) log.level = LEVELS[this.opts.termlog_verbosity]!;
  }
}
