/** Command-line parsing for the proxy front ends, with mitmproxy's flag names. */
import { parseArgs, type ParseArgsConfig } from "node:util";
import { statSync } from "node:fs";
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
    parsed = parseArgs({ args: attachNegativeValues(argv), options: PROXY_FLAGS, allowPositionals: true, strict: true, tokens: true });
  } catch (err) {
    throw new UsageError(cleanParseError((err as Error).message));
  }
  refuseEmptyFlagValues(parsed.tokens);
  refuseRepeatedFlags(parsed.tokens);
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
  // An empty one would put the CA (and its private key) in the working directory.
  if (set.confdir === OMITTED_VALUE || set.confdir?.trim() === "") throw new UsageError("option confdir needs a value: --set confdir=DIR");
  const givenWithSet = { ...set };
  /** A flag's value for an option; the same option given another value with --set is refused, not overwritten. */
  const fromFlag = (name: string, value: string, flag: string) => {
    const other = givenWithSet[name];
    const same = other === value || (other === OMITTED_VALUE && value === "true");
    if (other !== undefined && !same) throw new UsageError(`${flag} and --set ${name}${other === OMITTED_VALUE ? "" : `=${other}`} disagree: give one`);
    set[name] = value;
  };
  if (v["listen-port"] !== undefined) fromFlag("listen_port", v["listen-port"], `-p ${v["listen-port"]}`);
  if (v["listen-host"] !== undefined) fromFlag("listen_host", v["listen-host"], `--listen-host ${v["listen-host"]}`);
  if (v["ssl-insecure"]) fromFlag("ssl_insecure", "true", "-k");
  if (v.confdir !== undefined) fromFlag("confdir", v.confdir, `--confdir ${v.confdir}`);
  if (v["flow-detail"] !== undefined) fromFlag("flow_detail", v["flow-detail"], `--flow-detail ${v["flow-detail"]}`);
  if (v.quiet) set.flow_detail = "0";
  if (v.quiet && set.termlog_verbosity === undefined) set.termlog_verbosity = "error";
  if (v.verbose && set.termlog_verbosity === undefined) set.termlog_verbosity = "debug";
  if (v["no-http2"]) fromFlag("http2", "false", "--no-http2");
  if (v.cut !== undefined) {
    fromFlag("cut", v.cut, `--cut ${v.cut}`);
    set.flow_detail = "0"; // the cut rows replace dump's lines
  }
  if (v["cut-format"] !== undefined) fromFlag("cut_format", v["cut-format"], `--cut-format ${v["cut-format"]}`);
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
  if (v.anticache) fromFlag("anticache", "true", "--anticache");
  if (v.anticomp) fromFlag("anticomp", "true", "--anticomp");
  if (v.showhost) fromFlag("showhost", "true", "--showhost");
  if (v.proxyauth !== undefined) fromFlag("proxyauth", v.proxyauth, "--proxyauth");
  if (v.scripts) lists.scripts = v.scripts;
  // Feature addons register these options in their `load`; values wait there until then.
  if (v.fault) lists.fault_rules = v.fault;
  if (v.faults !== undefined) fromFlag("fault_file", v.faults, `--faults ${v.faults}`);
  if (v.shape) lists.shape_rules = v.shape;
  if (v.shapes !== undefined) fromFlag("shape_file", v.shapes, `--shapes ${v.shapes}`);
  if (v["client-replay"]) lists.client_replay = v["client-replay"];
  if (v["server-replay"]) lists.server_replay = v["server-replay"];
  if (v.intercept !== undefined) fromFlag("intercept", v.intercept, `--intercept ${v.intercept}`);
  if (v["save-stream-file"] !== undefined) fromFlag("save_stream_file", v["save-stream-file"], `-w ${v["save-stream-file"]}`);
  // A list given both ways keeps both: `--set scripts=a.js -s b.js` loads a.js and b.js.
  refuseUnusedListenAddress(lists.mode, set);
  for (const [name, values] of Object.entries(lists)) {
    const withSet = givenWithSet[name] === undefined ? [] : setListItems(givenWithSet[name]!);
    // An unreadable --set value is left alone, so that the option's own parser says what is wrong with it.
    set[name] = withSet === null ? givenWithSet[name]! : JSON.stringify([...withSet, ...values]);
  }
  // parseArgs keeps only the last of a repeated string option: a first -r would be dropped unseen.
  const rfiles = v.rfile ?? [];
  if (rfiles.length > 1) throw new UsageError(`-r reads one file, got ${rfiles.length} (${rfiles.join(", ")}); give one (\`sluice report A B\` reads several captures at once)`);
  const rfile = rfiles[0] ?? null;
  // -w FILE empties FILE when it opens, before -r has read it.
  const wfile = set.save_stream_file;
  if (rfile && wfile && !wfile.startsWith("+") && sameFile(wfile, rfile)) {
    throw new UsageError(`-r and -w name the same file ${rfile}: writing would empty it before it is read; write to another file, or append with -w +${rfile}`);
  }
  // -S/-C read their files at start and -w then empties its own: a recording replayed and re-written in place is lost.
  for (const [flag, files] of [["-S", v["server-replay"]], ["-C", v["client-replay"]]] as const) {
    const same = wfile && !wfile.startsWith("+") ? files?.find((f) => sameFile(f, wfile)) : undefined;
    if (same) throw new UsageError(`${flag} and -w name the same file ${same}: -w would empty the recording being replayed; write to another file, or append with -w +${same}`);
  }
  // hardump replaces FILE with a HAR file on exit: the capture that was read would be gone.
  const hardump = set.hardump;
  if (rfile && hardump && hardump !== "-" && hardump !== OMITTED_VALUE && sameFile(hardump, rfile)) {
    throw new UsageError(`-r and hardump name the same file ${rfile}: the HAR written on exit would replace the capture read; give hardump another file`);
  }
  refuseCaptureAsFilter(parsed.positionals, rfile);
  refuseTwoFilters(parsed.positionals, set, "dumper_filter");
  if (v["no-server"] && !rfile && !v["client-replay"]) throw new UsageError("-n (no server) needs -r FILE or -C FILE: there is nothing else to do");
  return { set, quiet: !!v.quiet, verbose: !!v.verbose, help: !!v.help, positionals: parsed.positionals, rfile, noServer: !!v["no-server"] };
}

/**
 * `sluice dump capture.mitm` (without -r) would read the file name as a filter on live traffic and
 * print nothing from the capture: a FILTER word naming an existing capture file is refused, with the
 * flag that reads it.
 */
function refuseCaptureAsFilter(positionals: string[], rfile: string | null): void {
  for (const [i, word] of positionals.entries()) {
    // `~u capture.har` is an operator's argument, written on purpose.
    if (!/\.(mitm|flows|har|sqlite3?|db)$/i.test(word) || positionals[i - 1]?.startsWith("~")) continue;
    let isFile = false;
    try {
      isFile = statSync(word).isFile();
    } catch {
      continue;
    }
    if (!isFile) continue;
    const read = rfile ? "-r reads one file (`sluice report A B` reads several)" : `to read it, give -r ${word}`;
    throw new UsageError(`${word} is a capture file, but here it is a FILTER (flows whose URL contains that text), not a file to read; ${read}; to filter on that text, write ~u ${word.replace(/[.]/g, "\\.")}`);
  }
}

/**
 * `-p 9000 --mode regular@8081`: a mode's own @PORT (or @HOST:PORT) wins, so when every mode has
 * one, -p (or --listen-host) is used by none of them and was ignored unseen.
 */
function refuseUnusedListenAddress(modes: string[] | undefined, set: Record<string, string>): void {
  if (!modes?.length) return;
  const listenAt = modes.map((spec) => (spec.includes("@") ? spec.slice(spec.lastIndexOf("@") + 1) : null));
  // A malformed @… is the mode parser's to explain.
  if (listenAt.some((at) => at !== null && !(/^(?:(\[[^\]]*\]|[^:]+):)?\d{1,5}$/.test(at) && Number(at.split(":").pop()) <= 65535))) return;
  if (set.listen_port !== undefined && listenAt.every((at) => at !== null)) {
    throw new UsageError(`-p ${set.listen_port} is used by no listener: every --mode has its own @PORT (${modes.join(", ")}); drop -p, or the @PORT of the mode that should use it`);
  }
  // @HOST:PORT (an IPv6 host in brackets) names the address too.
  if (set.listen_host !== undefined && listenAt.every((at) => at !== null && /^(\[[^\]]*\]|[^:]+):\d+$/.test(at))) {
    throw new UsageError(`--listen-host ${set.listen_host} is used by no listener: every --mode has its own @HOST:PORT (${modes.join(", ")}); drop --listen-host, or the HOST of the mode that should use it`);
  }
}

/**
 * The FILTER argument sets dump's (and run's) dumper_filter, the console's and web UI's view_filter:
 * the same option given with --set as well would be dropped unseen.
 */
export function refuseTwoFilters(positionals: string[], set: Record<string, string>, option: "dumper_filter" | "view_filter"): void {
  const filter = positionals.join(" ");
  if (positionals.length && set[option] !== undefined && set[option] !== filter) {
    throw new UsageError(`the FILTER argument ${JSON.stringify(filter)} and --set ${option}=${set[option]} both choose the flows shown, and one would be dropped: give one`);
  }
}

/** The items of a list option's --set value, read as the option parser reads it (a JSON array, or split on commas); null when unreadable. */
function setListItems(raw: string): string[] | null {
  if (raw === OMITTED_VALUE || raw === "") return [];
  if (!raw.trim().startsWith("[")) return raw.split(",").map((item) => item.trim());
  try {
    const list: unknown = JSON.parse(raw);
    return Array.isArray(list) && list.every((item) => typeof item === "string") ? list : null;
  } catch {
    return null;
  }
}

/**
 * `-w "$OUT"` or `--proxyauth "$CREDS"` with the variable unset: an empty value would quietly mean
 * "none" (no capture, no authentication, the CA made in the working directory), so it is refused.
 * `--listen-host ""` keeps mitmproxy's meaning, every interface (and sluice warns about it).
 */
export function refuseEmptyFlagValues(tokens: ReturnType<typeof parseArgs>["tokens"]): void {
  for (const token of tokens ?? []) {
    if (token.kind !== "option" || token.value === undefined || token.value.trim() !== "" || token.name === "listen-host" || token.name === "set") continue;
    throw new UsageError(`${token.rawName} was given an empty value (an unset shell variable?); give it a value, or leave ${token.rawName} out`);
  }
}

/**
 * A flag that takes one value, given twice with different values: parseArgs keeps the last, so the
 * first (`-w a.mitm -w b.mitm`) would be dropped unseen.
 */
export function refuseRepeatedFlags(tokens: ReturnType<typeof parseArgs>["tokens"], flags: NonNullable<ParseArgsConfig["options"]> = PROXY_FLAGS): void {
  const seen = new Map<string, { flag: string; value: string }>();
  for (const token of tokens ?? []) {
    if (token.kind !== "option" || token.value === undefined) continue;
    const spec = flags[token.name];
    if (!spec || spec.type !== "string" || ("multiple" in spec && spec.multiple)) continue;
    const before = seen.get(token.name);
    if (before && before.value !== token.value) {
      throw new UsageError(`${token.rawName} is given twice (${before.flag} ${before.value} and ${token.rawName} ${token.value}) and takes one value: give it once`);
    }
    seen.set(token.name, { flag: token.rawName, value: token.value });
  }
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
  const verbosity = set.termlog_verbosity;
  if (v.quiet && verbosity !== undefined && verbosity !== "error") throw new UsageError(`-q (only errors) and --set termlog_verbosity=${verbosity} contradict each other: give one`);
  if (v.verbose && verbosity !== undefined && verbosity !== "debug") throw new UsageError(`-v (debug logging) and --set termlog_verbosity=${verbosity} contradict each other: give one`);
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
