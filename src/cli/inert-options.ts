/**
 * Options that act only beside another one: `--set server_replay_reuse` without `-S`, `--set
 * statsd_prefix=…` without `statsd`. Given on the command line without it they would do nothing,
 * unseen; each such option gets one warning line at start naming what it needs. Only for `sluice
 * dump` and `sluice run`: in the console and the web UI the other option can still be set later.
 */
import type { Options } from "../core/options.js";

interface Dependency {
  options: readonly string[];
  /** Whether what these options act on is there (the config file counts). */
  present(options: Options, rfile: boolean): boolean;
  /** What to add, as the user writes it. */
  needs: string;
}

const value = <T>(options: Options, name: string): T | undefined => (options.has(name) ? options.get<T>(name) : undefined);
const nonEmpty = (options: Options, name: string) => {
  const v = value<unknown>(options, name);
  return Array.isArray(v) ? v.length > 0 : v !== undefined && v !== null && v !== "";
};
const modes = (options: Options) => value<string[]>(options, "mode") ?? [];

const DEPENDENCIES: readonly Dependency[] = [
  {
    options: ["server_replay_extra", "server_replay_ignore_content", "server_replay_ignore_host", "server_replay_ignore_params", "server_replay_ignore_payload_params", "server_replay_reuse", "server_replay_use_headers"],
    present: (o) => nonEmpty(o, "server_replay"),
    needs: "-S FILE (server replay)",
  },
  { options: ["client_replay_concurrency"], present: (o) => nonEmpty(o, "client_replay"), needs: "-C FILE (client replay)" },
  { options: ["save_flush_interval", "save_max_backlog"], present: (o) => nonEmpty(o, "save_stream_file"), needs: "-w FILE" },
  { options: ["save_stream_filter"], present: (o) => nonEmpty(o, "save_stream_file") || nonEmpty(o, "hardump"), needs: "-w FILE or --set hardump=FILE" },
  { options: ["readfile_filter"], present: (_o, rfile) => rfile, needs: "-r FILE" },
  { options: ["statsd_prefix", "statsd_tags"], present: (o) => nonEmpty(o, "statsd"), needs: "--set statsd=HOST:PORT" },
  { options: ["fleet", "shared_state_fallback"], present: (o) => nonEmpty(o, "shared_state"), needs: "--set shared_state=redis://HOST:PORT" },
  { options: ["intercept_active", "intercept_timeout"], present: (o) => nonEmpty(o, "intercept"), needs: "--intercept FILTER" },
  { options: ["admin_token"], present: (o) => (value<number>(o, "admin_port") ?? -1) >= 0, needs: "--set admin_port=PORT (the admin API)" },
  // In sluice dump the view serves only the admin API's commands (@shown, @marked, …); lines are printed by FILTER.
  {
    options: ["view_filter", "view_order", "view_order_reversed", "console_focus_follow"],
    present: (o) => (value<number>(o, "admin_port") ?? -1) >= 0,
    needs: "the console or the web UI, which list flows by it (sluice dump prints by its FILTER argument)",
  },
  { options: ["keep_host_header"], present: (o) => modes(o).some((m) => m.startsWith("reverse:")), needs: "--mode reverse:URL" },
  { options: ["upstream_auth"], present: (o) => modes(o).some((m) => m.startsWith("reverse:") || m.startsWith("upstream:")), needs: "--mode upstream:URL or --mode reverse:URL" },
];

/** One line per option in `given` (the names set on the command line) that does nothing without another. */
export function inertOptionWarnings(options: Options, given: Iterable<string>, rfile: boolean): string[] {
  const names = new Set(given);
  const lines: string[] = [];
  for (const dep of DEPENDENCIES) {
    const inert = dep.options.filter((name) => names.has(name));
    if (!inert.length || dep.present(options, rfile)) continue;
    lines.push(`--set ${inert.join(", --set ")} ${inert.length > 1 ? "do" : "does"} nothing without ${dep.needs}; add it, or drop ${inert.length > 1 ? "them" : "it"}`);
  }
  return lines;
}
