/** Command-line parsing for the proxy front ends, with mitmproxy's flag names. */
import { parseArgs, type ParseArgsConfig } from "node:util";
import { sameFile } from "../core/same-file.js";
import { OMITTED_VALUE } from "../core/options.js";

export class UsageError extends Error {}

export const PROXY_FLAGS = {
  mode: { type: "string", short: "m", multiple: true },
  "listen-port": { type: "string", short: "p" },
  "listen-host": { type: "string" },
  set: { type: "string", multiple: true },
  "ssl-insecure": { type: "boolean", short: "k" },
  "ignore-hosts": { type: "string", multiple: true },
  "allow-hosts": { type: "string", multiple: true },
  "map-remote": { type: "string", short: "M", multiple: true },
  "map-local": { type: "string", multiple: true },
  "modify-headers": { type: "string", short: "H", multiple: true },
  "modify-body": { type: "string", short: "B", multiple: true },
  anticache: { type: "boolean" },
  anticomp: { type: "boolean" },
  showhost: { type: "boolean" },
  proxyauth: { type: "string" },
  certs: { type: "string", multiple: true },
  "no-http2": { type: "boolean" },
  cut: { type: "string" },
  "cut-format": { type: "string" },
  scripts: { type: "string", short: "s", multiple: true },
  "save-stream-file": { type: "string", short: "w" },
  rfile: { type: "string", short: "r", multiple: true },
  "no-server": { type: "boolean", short: "n" },
  intercept: { type: "string" },
  fault: { type: "string", multiple: true },
  faults: { type: "string" },
  shape: { type: "string", multiple: true },
  shapes: { type: "string" },
  "client-replay": { type: "string", short: "C", multiple: true },
  "server-replay": { type: "string", short: "S", multiple: true },
  confdir: { type: "string" },
  "flow-detail": { type: "string" },
  quiet: { type: "boolean", short: "q" },
  verbose: { type: "boolean", short: "v" },
  help: { type: "boolean", short: "h" },
} as const satisfies ParseArgsConfig["options"];

export interface ProxyArgs {
  /** Option values as strings, as if given with --set. */
  set: Record<string, string>;
  quiet: boolean;
  verbose: boolean;
  help: boolean;
  positionals: string[];
  /** `-r FILE`: flows to load (and print) before the proxy starts. */
  rfile: string | null;
  /** `-n`: read only, start no proxy. */
  noServer: boolean;
}

/**
 * `-p -1` and `--set-like --flag -5`: a value that looks like a negative number belongs to the flag
 * before it (node's parseArgs would call it ambiguous), so it reaches the option's own range check.
 */
function attachNegativeValues(argv: string[]): string[] {
  const takesValue = new Map<string, string>();
  for (const [name, spec] of Object.entries(PROXY_FLAGS)) {
    if (spec.type !== "string") continue;
    takesValue.set(`--${name}`, name);
    if ("short" in spec) takesValue.set(`-${spec.short}`, name);
  }
  const out: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const name = takesValue.get(argv[i]!);
    const next = argv[i + 1];
    if (name && next !== undefined && /^-\d/.test(next)) {
      out.push(`--${name}=${next}`);
      i++;
    } else out.push(argv[i]!);
  }
  return out;
}

export function parseProxyArgs(argv: string[]): ProxyArgs {
  let parsed;
  try {
    parsed = parseArgs({ args: attachNegativeValues(argv), options: PROXY_FLAGS, allowPositionals: true, strict: true });
  } catch (err) {
    throw new UsageError(cleanParseError((err as Error).message));
  }
  const v = parsed.values;
  const set: Record<string, string> = {};
  for (const item of v.set ?? []) {
    const eq = item.indexOf("=");
    if (eq === 0 || !item.trim()) throw new UsageError(`--set expects name=value, got ${JSON.stringify(item)}`);
    // `--set ssl_insecure` (no value) is read by the option's type, as in mitmproxy.
    const name = (eq < 0 ? item : item.slice(0, eq)).trim();
    const value = eq < 0 ? OMITTED_VALUE : item.slice(eq + 1);
    // Repeated list options accumulate, as they do in mitmproxy.
    const before = set[name];
    set[name] = before !== undefined && before !== OMITTED_VALUE && value !== OMITTED_VALUE && LIST_OPTIONS.has(name) ? `${before},${value}` : value;
  }
  refuseContradictions(v, set);
  // The confdir is read before options are parsed (it holds config.yaml), so it is checked here.
  if (set.confdir === OMITTED_VALUE) throw new UsageError("option confdir needs a value: --set confdir=DIR");
  if (v["listen-port"] !== undefined) set.listen_port = v["listen-port"];
  if (v["listen-host"] !== undefined) set.listen_host = v["listen-host"];
  if (v["ssl-insecure"]) set.ssl_insecure = "true";
  if (v.confdir !== undefined) set.confdir = v.confdir;
  if (v["flow-detail"] !== undefined) set.flow_detail = v["flow-detail"];
  if (v.quiet) set.flow_detail = "0";
  if (v.quiet && set.termlog_verbosity === undefined) set.termlog_verbosity = "error";
  if (v.verbose && set.termlog_verbosity === undefined) set.termlog_verbosity = "debug";
  if (v["no-http2"]) set.http2 = "false";
  if (v.cut !== undefined) {
    set.cut = v.cut;
    set.flow_detail = "0"; // the cut rows replace dump's lines
  }
  if (v["cut-format"] !== undefined) set.cut_format = v["cut-format"];
  // Regexes and specs may contain commas: these lists are passed whole, not split.
  const lists: Record<string, string[]> = {};
  // Several --mode flags run several listeners, as in mitmproxy 10+.
  if (v.mode) lists.mode = v.mode;
  if (v["ignore-hosts"]) lists.ignore_hosts = v["ignore-hosts"];
  if (v["allow-hosts"]) lists.allow_hosts = v["allow-hosts"];
  if (v["map-remote"]) lists.map_remote = v["map-remote"];
  if (v.certs) lists.certs = v.certs;
  if (v["map-local"]) lists.map_local = v["map-local"];
  if (v["modify-headers"]) lists.modify_headers = v["modify-headers"];
  if (v["modify-body"]) lists.modify_body = v["modify-body"];
  if (v.anticache) set.anticache = "true";
  if (v.anticomp) set.anticomp = "true";
  if (v.showhost) set.showhost = "true";
  if (v.proxyauth !== undefined) set.proxyauth = v.proxyauth;
  if (v.scripts) lists.scripts = v.scripts;
  // Feature addons register these options in their `load`; values wait there until then.
  if (v.fault) lists.fault_rules = v.fault;
  if (v.faults !== undefined) set.fault_file = v.faults;
  if (v.shape) lists.shape_rules = v.shape;
  if (v.shapes !== undefined) set.shape_file = v.shapes;
  if (v["client-replay"]) lists.client_replay = v["client-replay"];
  if (v["server-replay"]) lists.server_replay = v["server-replay"];
  if (v.intercept !== undefined) set.intercept = v.intercept;
  if (v["save-stream-file"] !== undefined) set.save_stream_file = v["save-stream-file"];
  for (const [name, values] of Object.entries(lists)) set[name] = JSON.stringify(values);
  // parseArgs keeps only the last of a repeated string option: a first -r would be dropped unseen.
  const rfiles = v.rfile ?? [];
  if (rfiles.length > 1) throw new UsageError(`-r reads one file, got ${rfiles.length} (${rfiles.join(", ")}); give one (\`sluice report A B\` reads several captures at once)`);
  const rfile = rfiles[0] ?? null;
  // -w FILE empties FILE when it opens, before -r has read it.
  const wfile = set.save_stream_file;
  if (rfile && wfile && !wfile.startsWith("+") && sameFile(wfile, rfile)) {
    throw new UsageError(`-r and -w name the same file ${rfile}: writing would empty it before it is read; write to another file, or append with -w +${rfile}`);
  }
  // hardump replaces FILE with a HAR file on exit: the capture that was read would be gone.
  const hardump = set.hardump;
  if (rfile && hardump && hardump !== "-" && hardump !== OMITTED_VALUE && sameFile(hardump, rfile)) {
    throw new UsageError(`-r and hardump name the same file ${rfile}: the HAR written on exit would replace the capture read; give hardump another file`);
  }
  if (v["no-server"] && !rfile && !v["client-replay"]) throw new UsageError("-n (no server) needs -r FILE or -C FILE: there is nothing else to do");
  return { set, quiet: !!v.quiet, verbose: !!v.verbose, help: !!v.help, positionals: parsed.positionals, rfile, noServer: !!v["no-server"] };
}

/**
 * Flags on one command line that cancel each other: one of them would be quietly dropped, so the
 * user is asked to choose (values from config.yaml are preferences and never counted here).
 */
function refuseContradictions(v: Partial<Record<keyof typeof PROXY_FLAGS, unknown>>, set: Record<string, string>): void {
  // flow_detail=0 agrees with both -q and --cut: only a level that prints something contradicts them.
  const detail = v["flow-detail"] !== undefined ? String(v["flow-detail"]) : set.flow_detail;
  const flowDetail = detail === undefined || detail.trim() === "0" ? null : v["flow-detail"] !== undefined ? `--flow-detail ${detail}` : `--set flow_detail=${detail}`;
  if (v.quiet && v.verbose) throw new UsageError("-q (only errors) and -v (debug logging) contradict each other: give one");
  if (v.quiet && flowDetail) throw new UsageError(`-q prints no flows, so ${flowDetail} would do nothing: give one`);
  const cut = v.cut !== undefined ? "--cut" : set.cut !== undefined ? "--set cut" : null;
  if (cut && flowDetail) throw new UsageError(`${cut} prints its fields in place of flow lines, so ${flowDetail} would do nothing: give one`);
  const cutFormat = v["cut-format"] !== undefined ? "--cut-format" : set.cut_format !== undefined ? "--set cut_format" : null;
  if (cutFormat && !cut) throw new UsageError(`${cutFormat} formats the rows of --cut FIELDS, which is not given: add --cut, e.g. --cut request.method,response.status_code`);
}

const LIST_OPTIONS = new Set(["ignore_hosts", "allow_hosts", "map_remote", "map_local", "modify_headers", "modify_body", "certs", "scripts", "fault_rules", "shape_rules", "client_replay", "server_replay"]);

function cleanParseError(message: string): string {
  const m = /Unknown option '([^']+)'/.exec(message);
  if (m) return `unknown option ${m[1]}: see \`sluice --help\``;
  const missing = /Option '([^']+)' argument missing/.exec(message);
  if (missing) return `option ${missing[1]} needs a value`;
  const ambiguous = /Option '([^']+)' argument is ambiguous/.exec(message);
  if (ambiguous) {
    const flag = ambiguous[1]!;
    const long = flag.startsWith("--") ? flag : `--${Object.entries(PROXY_FLAGS).find(([, spec]) => "short" in spec && `-${spec.short}` === flag)?.[0] ?? flag.slice(1)}`;
    return `option ${flag} is followed by something that looks like another option; to give it a value starting with a dash, write ${long}=VALUE`;
  }
  // node's parseArgs explains in several lines; the first one says what is wrong.
  return message.replace(/\. To specify a positional argument.*$/s, "").split("\n")[0]!;
}
