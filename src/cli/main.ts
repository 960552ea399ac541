/** `sluice` — the one executable. Thin: parses arguments, wires addons, reports errors in one line. */
import type { AddressInfo } from "node:net";
import { Dump } from "../addons/dump.js";
import { MapRemote } from "../addons/map-remote.js";
import { Scripts } from "../addons/scripts.js";
import { Intercept } from "../addons/intercept.js";
import { Save } from "../addons/save.js";
import { ServerReplay } from "../addons/server-replay.js";
import { ClientReplay } from "../addons/client-replay.js";
import { Shaping } from "../addons/shaping.js";
import { Faults } from "../addons/faults.js";
import { AdminApi } from "../addons/admin-api.js";
import { Retries } from "../addons/retries.js";
import { Metrics } from "../addons/metrics.js";
import { Progress, REPORT_HELP, runReport } from "./report.js";
import { FLEET_HELP, runFleet } from "./fleet.js";
import { compileFilter } from "../core/filter.js";
import { stat } from "node:fs/promises";
import { assertFlowFileReadable, convertFile, readFlowFile } from "../store/index.js";
import { FlowFileError } from "../store/flowfile.js";
import { DEFAULT_CONFDIR } from "../core/builtin-options.js";
import { LineLogger } from "../core/log.js";
import { formatOptionValue } from "../core/options.js";
import { filterHelpText } from "../core/filter.js";
import { Master, listeningLines } from "../proxy/master.js";
import { BROWSING_VIEW, DUMP_VIEW } from "../core/view.js";
import { caFilesIn, CertificateAuthority } from "../proxy/tls/ca.js";
import { parseProxyArgs, refuseTwoFilters, UsageError } from "./args.js";
import { AWS_LIMITS_OPTIONS, DEFAULT_DYNAMODB_PARTITIONS, limitsTable, LIMITED_SERVICES, parseAwsLimitsOptions } from "../aws/index.js";
import { signingNameOf } from "../aws/services.js";
import type { Addon } from "../core/addons.js";
import { frontEndAddons } from "./wiring.js";
import type { ReadFile } from "../addons/readfile.js";
import type { CutOutput } from "../addons/cut-output.js";
import { ENV_HELP, RUN_HELP, runEnv, runRun } from "./run.js";
import { inertOptionWarnings } from "./inert-options.js";

const VERSION = "0.1.0";

const MAIN_HELP = `sluice ${VERSION} — see, shape and break the HTTP traffic of your programs

Usage: sluice [console] [options] [FILTER]   the proxy with the interactive console (like mitmproxy)
       sluice COMMAND [options]

Commands:
  console   the default: run the proxy with the interactive console; same options as dump
  dump      run the proxy and print one line per flow (like mitmdump)
  web       run the proxy with a browser UI on http://127.0.0.1:8081 (like mitmweb); same options as dump
  run       run a program behind sluice: sluice run [options] -- COMMAND … (exits with its status)
  env       print the variables that put programs behind sluice: eval "$(sluice env)"
  ca        show where sluice's CA certificate is and how to make clients trust it
  convert   convert flow files: sluice convert IN OUT [FILTER] (.mitm/.flows ⇄ .har ⇄ .sqlite, by extension)
  report    retries, throttles and back-off in captures: sluice report FILE... [--html OUT.html] [FILTER]
  fleet     the live processes of a fleet sharing Redis: sluice fleet status --set shared_state=redis://HOST:PORT
  options   list every option with its type, default and help
  commands  list the commands (for the console's : prompt, the admin API and scripts)
  filters   list the filter expression operators (mitmproxy's, plus ~svc ~op ~retry ~throttled …)
  limits    AWS's documented request limits that --fault aws-limits emulates, with sources: sluice limits [SERVICE] [scale=F] [depth=N] [partitions=N] [provisioned=…] [reserved=…]
  addons    list the addons in the order their hooks run (user scripts come first)
  help      show this help, or \`sluice help COMMAND\`

Run \`sluice COMMAND --help\` for the options of a command.
`;

const DUMP_HELP = `Usage: sluice dump [options] [FILTER]

Runs the proxy (regular mode on 127.0.0.1:8080 unless told otherwise) and prints one line per
finished flow: client, method, URL, status, content type, size, duration. FILTER is a
mitmproxy filter expression; only matching flows are printed.

Proxy:
  -m, --mode SPEC            regular (default) | socks5 | reverse:http[s]://host[:port] | upstream:http[s]://host:port,
                             each optionally @PORT or @HOST:PORT; repeat for several listeners at once
  -p, --listen-port PORT     port to listen on (default 8080, socks5 1080; 0 picks a free one)
      --listen-host HOST     address to listen on (default 127.0.0.1)
  -k, --ssl-insecure         do not verify upstream server certificates
      --certs [DOMAIN=]PEM   serve this certificate (chain, optional key) for DOMAIN (*.example.com; all hosts without DOMAIN) (repeatable)
      --no-http2             speak HTTP/1.1 only, to clients and servers (also --set http2=false)
      --set client_certs=FILE|DIR        present a client certificate to servers (DIR: one HOST.pem per server)
      --set tls_version_client_min=V     TLS versions towards clients / servers: TLS1, TLS1_1, TLS1_2, TLS1_3, UNBOUNDED
      --set tls_version_server_min=V     (also _max; defaults TLS1_2 … UNBOUNDED)
      --set upstream_auth=USER:PASS      Basic auth to the upstream proxy (upstream mode) or the server (reverse mode)
      --set connection_strategy=eager    reach the server when a client CONNECTs (default lazy: when a request needs it)
      --set body_size_limit=SIZE         refuse larger bodies: requests 413, responses 502
      --proxyauth SPEC       require credentials: USER:PASS, any, or @FILE (Apache htpasswd; bcrypt, apr1, SHA-1);
                             407 in regular/upstream mode, 401 in reverse mode
      --set block_global=false       serve clients from public addresses (default: refused; loopback always served)
      --set block_private=true       refuse clients from private networks (10/8, 192.168/16, …)
      --ignore-hosts REGEX   pass TLS to matching hosts through untouched (repeatable)
      --allow-hosts REGEX    intercept only matching hosts (repeatable)
  -M, --map-remote SPEC      |filter|url-regex|replacement: send matching requests elsewhere (repeatable)
      --map-local SPEC       |filter|url-regex|file-or-dir: answer matching requests from local files (repeatable)
  -H, --modify-headers SPEC  |filter|name|value: set a header (empty value removes, @FILE reads it) (repeatable)
  -B, --modify-body SPEC     |filter|regex|replacement: replace in request and response bodies (repeatable)
      --anticache            strip If-None-Match / If-Modified-Since so servers answer in full
      --anticomp             ask servers for uncompressed bodies (Accept-Encoding: identity)
      --set stickycookie=FILTER   keep cookies servers set and send them on matching requests
      --set stickyauth=FILTER     send a host's last Authorization header on matching requests
  -s, --scripts FILE         load a script (.ts or .js exporting an addon); reloaded on change (repeatable)
      --intercept FILTER     pause matching flows until resumed (flow.resume) or intercept_timeout
      --confdir DIR          where the CA lives (default ~/.sluice)
      --set NAME=VALUE       set any option (see \`sluice options\`), repeatable; --set NAME sets a true/false one to true

Faults and shaping:
      --fault 'FILTER => ACTION [k=v …]'  inject a fault (throttle, status, error, delay, reset, …) (repeatable)
      --faults FILE          fault rules from a YAML file (see examples/faults.yaml)
      --set admin_port=PORT  JSON admin API on 127.0.0.1 to add/remove/enable/disable faults at runtime (0: any free port);
                             requests need Authorization: Bearer TOKEN (printed at start; --set admin_token=… fixes it)
      --shape 'FILTER => RATE [k=v …]'    queue matching requests to leave at RATE, or at an adaptive
                             rate ('FILTER => adaptive start=20/s') that learns from throttling (repeatable)
      --shapes FILE          shaping rules from a YAML file

Flow files:
  -w, --save-stream-file FILE  write finished flows to FILE as they complete (+FILE appends; .har for HAR, .sqlite for SQLite)
  -r, --rfile FILE           read flows from FILE (mitmproxy flow file, HAR or SQLite) and print them
  -n, --no-server            with -r: read and print only; with -C: replay, then exit (no proxy for others)
  -C, --client-replay FILE   re-send the requests recorded in FILE (repeatable)
  -S, --server-replay FILE   answer requests from the responses recorded in FILE (repeatable)

Retries and metrics (see also \`sluice report\`):
      --set metrics_port=PORT    serve Prometheus metrics at http://127.0.0.1:PORT/metrics (0: any free port, logged)
      --set statsd=HOST:PORT     send the same counters as StatsD lines over UDP

Output:
      --set termlog_verbosity=LEVEL  error, warn, info (default), alert or debug (-q: error, -v: debug)
      --set readfile_filter=FILTER   with -r, load only matching flows
      --set hardump=FILE     write every flow to a HAR file on exit (- prints it)
      --cut FIELDS           print fields of each flow as CSV instead, e.g. request.method,response.status_code,request.url
      --cut-format csv|json  --cut as CSV rows (default) or one JSON object per line
      --showhost             show URLs with the Host header's name instead of the address connected to
      --flow-detail N        0 nothing, 1 one line per flow (default), 2 +headers, 3 +bodies, 4 full bodies
  -q, --quiet                print no flows and only errors
  -v, --verbose              debug logging
  -h, --help                 this help
`;

function fail(message: string, code = 2): never {
  process.stderr.write(`sluice: ${message}\n`);
  process.exit(code);
}

async function runDump(argv: string[]): Promise<void> {
  const args = parseProxyArgs(argv);
  if (args.help) {
    process.stdout.write(DUMP_HELP);
    return;
  }
  const given = Object.keys(args.set);
  // As in mitmdump, FILTER selects what is printed, what is saved (-w) and what is read (-r).
  const filter = args.positionals.length ? args.positionals.join(" ") : undefined;
  if (filter !== undefined) {
    args.set.dumper_filter = filter;
    args.set.save_stream_filter ??= filter;
  }
  // A missing or unreadable -r file is refused before anything is set up (no CA made, nothing printed).
  if (args.rfile) await assertFlowFileReadable(args.rfile);
  const log = new LineLogger(args.quiet ? "error" : args.verbose ? "debug" : "info");
  const dump = new Dump();
  const addons: Addon[] = frontEndAddons(dump);
  // -n -C FILE: replay through a private listener on a free port, then exit.
  const replayOnly = args.noServer && !!args.set.client_replay;
  if (args.noServer && !replayOnly) {
    const live = given.filter((name) => LIVE_TRAFFIC_FLAGS[name] !== undefined).map((name) => LIVE_TRAFFIC_FLAGS[name]!);
    if (live.length) fail(`-n prints the flows of -r FILE as they were recorded, with no proxy: ${live.join(", ")} act${live.length === 1 ? "s" : ""} on live traffic and would do nothing here; drop ${live.length === 1 ? "it" : "them"}, or leave out -n`);
  }
  if (replayOnly) Object.assign(args.set, { listen_host: "127.0.0.1", listen_port: "0" });
  const master = new Master({ set: args.set, addons, log, view: DUMP_VIEW });
  try {
    await master.configure();
  } catch (err) {
    fail((err as Error).message);
  }
  for (const line of inertOptionWarnings(master.options, given, !!args.rfile)) log.warn(line);
  // The HAR and dump's lines would share stdout: what a user redirects to a file would not be HAR.
  if (master.options.get<string | null>("hardump") === "-") {
    const printing = master.options.get<string | null>("cut") ? "--cut rows" : master.options.get<number>("flow_detail") > 0 ? "flow lines" : null;
    if (printing) fail(`--set hardump=- prints the HAR on stdout, where sluice dump prints its ${printing} too, so stdout would not be valid HAR; ${printing === "flow lines" ? "add -q" : "drop --cut"} to print only the HAR, or give hardump a file`);
  }
  // Without a front end or the admin API nothing can resume an intercepted flow: its client
  // would wait intercept_timeout for a 504 with no hint why.
  if (master.options.get<string>("intercept") && master.options.get<number>("admin_port") < 0) {
    log.warn(`--intercept in sluice dump pauses matching flows with nothing here to resume them: each gets a 504 after intercept_timeout (${master.options.get<number>("intercept_timeout")} s); use sluice console or sluice web to resume them, or --set admin_port=0 to resume them through the admin API (flow.resume)`);
  }
  if (args.rfile) {
    const save = addons.find((a): a is Save => a instanceof Save) ?? null;
    try {
      await loadFlows(args.rfile, master, { dump, save, log, filter, progress: args.noServer });
    } catch (err) {
      // What was read before the damage is printed and saved; then the one error line.
      dump.flush();
      await master.addons.trigger("done");
      fail((err as Error).message, 1);
    }
    if (args.noServer && !replayOnly) {
      dump.flush();
      await master.addons.trigger("done");
      return;
    }
  }
  let address;
  try {
    address = await master.start();
  } catch (err) {
    fail((err as Error).message, 1);
  }
  if (replayOnly) {
    await addons.find((a): a is ClientReplay => a instanceof ClientReplay)!.finished;
    await master.stop();
    dump.flush();
    return;
  }
  for (const line of listeningLines(master)) log.info(line);
  if (!args.quiet) log.info(`CA certificate for clients: ${master.ca.files.certPem}  (\`sluice ca\` shows how to trust it)`);
  // -q hides info lines, but whoever asked for the admin API cannot use it without its token.
  const admin = addons.find((a): a is AdminApi => a instanceof AdminApi);
  if (args.quiet && admin?.address) process.stderr.write(`sluice: admin API at http://127.0.0.1:${admin.address.port}, token: ${admin.token}\n`);
  // Likewise the metrics endpoint: with metrics_port=0 its port is known only from this line.
  const metrics = addons.find((a): a is Metrics => a instanceof Metrics);
  if (args.quiet && metrics?.port) process.stderr.write(`sluice: Prometheus metrics at http://127.0.0.1:${metrics.port}/metrics\n`);
  let stopping = false;
  const stop = async () => {
    if (stopping) process.exit(130);
    stopping = true;
    await master.stop();
    dump.flush();
    process.exit(0);
  };
  process.on("SIGINT", () => void stop());
  process.on("SIGTERM", () => void stop());
}

/** Options (by the flag that usually sets them) that act only on traffic through a listening proxy. */
const LIVE_TRAFFIC_FLAGS: Record<string, string> = {
  mode: "--mode", listen_port: "-p", listen_host: "--listen-host", ssl_insecure: "-k", certs: "--certs", ignore_hosts: "--ignore-hosts", allow_hosts: "--allow-hosts",
  map_remote: "-M", map_local: "--map-local", modify_headers: "-H", modify_body: "-B", anticache: "--anticache", anticomp: "--anticomp",
  stickycookie: "--set stickycookie", stickyauth: "--set stickyauth", upstream_auth: "--set upstream_auth", proxyauth: "--proxyauth",
  fault_rules: "--fault", fault_file: "--faults", shape_rules: "--shape", shape_file: "--shapes", server_replay: "-S", intercept: "--intercept",
};

/**
 * `-r FILE`: flows matching `filter` go into the view, through the dump output and to `-w`.
 * Throws when the file cannot be read to its end.
 */
async function loadFlows(path: string, master: Master, how: { dump: Dump | null; save: Save | null; log: LineLogger; filter?: string; progress?: boolean }): Promise<number> {
  const { dump, save, log, filter } = how;
  const matches = filter ? compileFilter(filter) : null;
  const progress = how.progress ? new Progress(path, await fileSize(path), true) : null;
  let count = 0;
  try {
    const readfile = master.addons.get("readfile") as ReadFile | undefined;
    const cut = master.addons.get("cut_output") as CutOutput | undefined;
    // An SQLite capture answers FILTER from its indexes; other formats are filtered here.
    for await (const flow of readFlowFile(path, { onWarning: (m) => log.warn(m), filter, onProgress: progress ? (read, total) => progress.bytes(read, total) : undefined })) {
      progress?.flow();
      if (matches && !matches(flow)) continue;
      if (readfile && !readfile.accepts(flow)) continue;
      master.view.add(flow);
      dump?.show(flow);
      cut?.show(flow);
      const saving = save?.saveLoaded(flow);
      if (saving) await saving;
      count++;
    }
  } finally {
    progress?.done(count);
  }
  log.info(`loaded ${count} flow${count === 1 ? "" : "s"} from ${path}${filter ? ` matching ${filter}` : ""}`);
  return count;
}

async function fileSize(path: string): Promise<number> {
  try {
    return (await stat(path)).size;
  } catch {
    return 0;
  }
}

const CONSOLE_HELP = `Usage: sluice [console] [options] [FILTER]

Runs the proxy with the interactive console: the flow list, flow details (Request, Response,
Detail), intercept, edit, resume, replay and save. FILTER sets the view filter. It takes the same
options as \`sluice dump\` (see \`sluice dump --help\`); press ? in the console for its keys.
It needs a terminal: without one, use \`sluice dump\`.
`;

/**
 * `--flow-detail` sets how much sluice dump prints per flow; the console and the web UI show every
 * detail and print no flow lines, so it was dropped unseen there (0, which -q and --cut set, is
 * harmless). `--cut` rows would be drawn over the console's screen.
 */
function refuseDumpOutputOptions(args: ReturnType<typeof parseProxyArgs>, frontEnd: string, terminal: boolean): void {
  const detail = args.set.flow_detail;
  if (detail !== undefined && detail.trim() !== "0") fail(`--flow-detail sets what sluice dump prints per flow; ${frontEnd} shows every flow in full, so it would do nothing: drop it, or use sluice dump`);
  if (terminal && args.set.cut !== undefined) fail(`--cut prints rows on the terminal ${frontEnd} draws on; use \`sluice dump --cut FIELDS\` (or sluice web) for them`);
}

/** `sluice` with no command: the proxy with the console as its front end instead of dump output. */
async function runConsole(argv: string[]): Promise<void> {
  const args = parseProxyArgs(argv);
  if (args.help) return void process.stdout.write(CONSOLE_HELP);
  refuseDumpOutputOptions(args, "the console", true);
  if (!process.stdin.isTTY || !process.stdout.isTTY) {
    fail(`the console needs a terminal, but ${process.stdin.isTTY ? "stdout" : "stdin"} is not one; run \`sluice dump\` (same options) to print flows instead`);
  }
  if (args.noServer) fail("-n does not apply to the console; use `sluice dump -n -r FILE` to print flows without a proxy");
  // Dump's options mean nothing here (and dump is not loaded to register them).
  delete args.set.flow_detail;
  refuseTwoFilters(args.positionals, args.set, "view_filter");
  if (args.positionals.length) args.set.view_filter = args.positionals.join(" ");
  // Log lines go to the console's event log (E), not over the screen.
  const log = new LineLogger(args.verbose ? "debug" : "info", () => {});
  // Loaded only here: the console's React and ink would cost sluice dump ~20 MB it never uses.
  const { ConsoleAddon } = await import("../ui/console/console-addon.js");
  const output = new ConsoleAddon();
  const master = new Master({ set: args.set, addons: frontEndAddons(output), log });
  const address = await startFrontEnd(master, args.rfile, log);
  const { runConsoleUi } = await import("../ui/console/index.js");
  const host = address.address.includes(":") ? `[${address.address}]` : address.address;
  await runConsoleUi(master, output, `${host}:${address.port}`);
  await master.stop();
  process.exit(0);
}

/** The console's and web UI's start: configure, load `-r FILE` into the view, listen; a failure is one line. */
async function startFrontEnd(master: Master, rfile: string | null, log: LineLogger): Promise<AddressInfo> {
  try {
    if (rfile) await assertFlowFileReadable(rfile);
    await master.configure();
  } catch (err) {
    fail((err as Error).message, err instanceof FlowFileError ? 1 : 2);
  }
  if (rfile) {
    try {
      await loadFlows(rfile, master, { dump: null, save: master.addons.list.find((a): a is Save => a instanceof Save) ?? null, log });
    } catch (err) {
      fail((err as Error).message, 1);
    }
  }
  try {
    return await master.start();
  } catch (err) {
    fail((err as Error).message, 1);
  }
}

const WEB_HELP = `Usage: sluice web [options] [FILTER]

Runs the proxy with a browser UI (like mitmweb): the live flow list, flow details, intercept, edit,
replay, export and save, and the Retries, Faults, Shaping, Options and Events pages. FILTER sets
the view filter. It takes the same options as \`sluice dump\` (see \`sluice dump --help\`), plus:

      --set web_port=PORT        the UI's port (default 8081; 0 picks a free one; never the proxy's)
      --set web_host=HOST        the UI's address (default 127.0.0.1)
      --set web_password=TOKEN   the access token (default: random per start)
      --set web_open_browser=true  open the UI in the system's browser

It prints the UI's URL with its token (?token=…): the page, its API and its WebSocket refuse
requests without it, for another Host, or from another origin.
`;

/** The web UI's default view: 100,000 flows stay fluid in the page (the README says what memory it costs). */
const WEB_VIEW = { ...BROWSING_VIEW, maxFlows: 100_000 };

/** \`sluice web\`: the proxy with the browser UI as its front end. */
async function runWeb(argv: string[]): Promise<void> {
  const args = parseProxyArgs(argv);
  if (args.help) return void process.stdout.write(WEB_HELP);
  if (args.noServer) fail("-n does not apply to the web UI; use `sluice dump -n -r FILE` to print flows without a proxy");
  refuseDumpOutputOptions(args, "the web UI", false);
  delete args.set.flow_detail;
  refuseTwoFilters(args.positionals, args.set, "view_filter");
  if (args.positionals.length) args.set.view_filter = args.positionals.join(" ");
  const log = new LineLogger(args.quiet ? "error" : args.verbose ? "debug" : "info");
  const { WebUi } = await import("../ui/web/web-ui.js");
  const web = new WebUi();
  const master = new Master({ set: args.set, addons: frontEndAddons(web), log, view: WEB_VIEW });
  const address = await startFrontEnd(master, args.rfile, log);
  let url: string;
  try {
    url = await web.start(address);
  } catch (err) {
    await master.stop();
    fail((err as Error).message, 1);
  }
  for (const line of listeningLines(master)) log.info(line);
  // -q hides info lines, but the UI cannot be opened without its URL and token.
  if (args.quiet) process.stderr.write(`sluice: web UI at ${url}\n`);
  else log.info(`web UI at ${url}`);
  if (!args.quiet) log.info(`CA certificate for clients: ${master.ca.files.certPem}  (\`sluice ca\` shows how to trust it)`);
  let stopping = false;
  const stop = async () => {
    if (stopping) process.exit(130);
    stopping = true;
    await master.stop();
    process.exit(0);
  };
  process.on("SIGINT", () => void stop());
  process.on("SIGTERM", () => void stop());
}

const CONVERT_HELP = `Usage: sluice convert IN OUT [FILTER]

Converts between mitmproxy flow files (.mitm, .flows, anything else), HAR (.har) and SQLite
(.sqlite, .db). The input format is recognised by content, the output format by OUT's extension.
FILTER (a filter expression, as for sluice dump) keeps only the flows it matches.
`;

async function runConvert(argv: string[]): Promise<void> {
  if (argv.includes("-h") || argv.includes("--help")) return void process.stdout.write(CONVERT_HELP);
  // A flag here would otherwise be read as a FILTER word and quietly match nothing.
  const flag = argv.find((a) => a.startsWith("-") && a !== "-");
  if (flag) fail(`unknown option ${flag} for \`sluice convert\`: it takes IN OUT [FILTER] (see \`sluice convert --help\`)`);
  if (argv.length < 2) fail("convert needs IN and OUT: sluice convert capture.mitm capture.har [FILTER]");
  const [input, output] = argv as [string, string];
  const expression = argv.length > 2 ? argv.slice(2).join(" ") : undefined;
  const filter = expression ? { expression, matches: compileFilter(expression) } : undefined;
  const tty = process.stderr.isTTY;
  const result = await convertFile(input, output, {
    filter,
    onWarning: (m) => process.stderr.write(`sluice: warning: ${m}\n`),
    onProgress: (p) => {
      if (!tty || p.done) return;
      const pct = p.bytesTotal ? ` ${((p.bytesRead / p.bytesTotal) * 100).toFixed(0)}%` : "";
      process.stderr.write(`\r${p.flows} flows${pct}`);
    },
  });
  if (tty) process.stderr.write("\r");
  process.stderr.write(`converted ${result.flows} flow${result.flows === 1 ? "" : "s"}${expression ? ` matching ${expression}` : ""}: ${input} → ${output}\n`);
}

const CA_HELP = "Usage: sluice ca [--confdir DIR]\n\nCreates the CA on first use and prints where its files are and how to trust it.\n";

function runCa(argv: string[]): void {
  let confdir = DEFAULT_CONFDIR;
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (a === "--confdir") confdir = argv[++i] ?? fail("--confdir needs a folder");
    else if (a.startsWith("--confdir=")) confdir = a.slice("--confdir=".length);
    else if (a === "-h" || a === "--help") {
      process.stdout.write(CA_HELP);
      return;
    } else fail(`unknown argument ${a} for \`sluice ca\``);
  }
  // An empty one (an unset shell variable) would put the CA's private key in the working directory.
  if (!confdir.trim()) fail("--confdir was given an empty value (an unset shell variable?); give a folder, or leave --confdir out");
  let ca: CertificateAuthority;
  try {
    ca = CertificateAuthority.loadOrCreate(confdir, (m) => process.stderr.write(m + "\n"));
  } catch (err) {
    fail((err as Error).message, 1);
  }
  const files = caFilesIn(confdir);
  const d = ca.describe();
  process.stdout.write(`sluice CA in ${confdir}
  ${files.keyAndCert}   key + certificate (private: mode 0600, never share it)
  ${files.certPem}   certificate (PEM) — give this to clients
  ${files.certCer}   certificate (DER) — Windows, Android
  ${files.p12}   certificate (PKCS#12) — Windows, Java keystores
  ${files.keyP12}   KEY + certificate (PKCS#12, no password, mode 0600) — the CA's private key: never hand it out

  subject      ${d.subject}
  sha256       ${d.fingerprint256}
  valid until  ${d.validTo}

Trust it:
  curl           curl --cacert ${files.certPem} -x http://127.0.0.1:8080 https://…
  boto3, AWS CLI export AWS_CA_BUNDLE=${files.certPem} HTTPS_PROXY=http://127.0.0.1:8080
  requests       export REQUESTS_CA_BUNDLE=${files.certPem}
  Node.js        export NODE_EXTRA_CA_CERTS=${files.certPem}
  Debian system  cp ${files.certPem} /usr/local/share/ca-certificates/sluice.crt && update-ca-certificates
`);
}

async function runOptions(): Promise<void> {
  // Every front end's options, the web UI's (web_port, …) included.
  const { WebUi } = await import("../ui/web/web-ui.js");
  const master = new Master({ addons: [...frontEndAddons(new Dump()), new WebUi()], log: new LineLogger("error") });
  await master.configure();
  for (const o of master.options.all()) {
    const def = formatOptionValue(o.default);
    process.stdout.write(`${o.name}  (${o.type}, default: ${def === "" ? '""' : def})\n    ${o.help}\n`);
  }
}

/** What each built-in addon does to traffic, for \`sluice addons\`. */
const ADDON_ROLES: Record<string, string> = {
  view: "keeps the flows that commands and the console work on",
  core_commands: "the flow.* commands",
  block: "closes clients from public (block_global) or private (block_private) addresses",
  proxyauth: "answers 407/401 until a client sends the --proxyauth credentials",
  client_replay: "re-sends recorded requests (-C)",
  scripts: "user scripts (-s), in the order given: they run here, before everything below",
  anticache: "changes: strips caching headers (--anticache)",
  anticomp: "changes: asks servers not to compress (--anticomp)",
  map_remote: "changes: sends requests elsewhere (-M)",
  map_local: "changes: answers from local files (--map-local)",
  modify_body: "changes: rewrites bodies (-B)",
  modify_headers: "changes: rewrites headers (-H)",
  stickyauth: "changes: replays the last Authorization header (--stickyauth)",
  stickycookie: "changes: replays cookies (--stickycookie)",
  shaping: "changes: queues requests to leave at a rate (--shape)",
  faults: "changes: answers or breaks matching requests (--fault)",
  admin_api: "the JSON admin API for faults and commands",
  fleet: "shares fault rules with the fleet and writes its heartbeat (shared_state)",
  server_replay: "changes: answers from recorded responses (-S)",
  intercept: "changes: pauses matching flows for editing (--intercept)",
  retries: "observes: groups attempts into SDK calls",
  metrics: "observes: Prometheus and StatsD counters",
  save: "observes: writes finished flows (-w)",
  dump: "observes: prints one line per flow",
  console: "observes: the interactive console",
  web: "observes: the browser UI (sluice web)",
};

async function runAddons(): Promise<void> {
  const master = new Master({ addons: frontEndAddons(new Dump()), log: new LineLogger("error") });
  await master.configure();
  process.stdout.write("Addons in the order their hooks run (sluice console has the console in place of dump):\n");
  master.addons.list.forEach((a, i) => process.stdout.write(`${String(i + 1).padStart(3)}. ${(a.name ?? "?").padEnd(15)} ${ADDON_ROLES[a.name ?? ""] ?? ""}\n`));
}

async function runCommands(): Promise<void> {
  const master = new Master({ addons: frontEndAddons(new Dump()), log: new LineLogger("error") });
  await master.configure();
  for (const c of master.commands.list()) process.stdout.write(`${master.commands.usage(c)}\n    ${c.help}\n`);
}

/** `sluice help [COMMAND]`: the same text as `sluice COMMAND --help`. */
function showHelp(command: string | undefined): void {
  const texts: Record<string, string> = {
    dump: DUMP_HELP,
    console: CONSOLE_HELP,
    web: WEB_HELP,
    run: RUN_HELP,
    env: ENV_HELP,
    report: REPORT_HELP,
    fleet: FLEET_HELP,
    convert: CONVERT_HELP,
    ca: CA_HELP,
    options: "Usage: sluice options\n\nLists every option with its type, default and help; set one with --set NAME=VALUE or in ~/.sluice/config.yaml.\n",
    commands: "Usage: sluice commands\n\nLists the commands of the console's : prompt, the admin API (POST /commands) and scripts, with their parameters.\n",
    filters: "Usage: sluice filters\n\nLists the filter expression operators: mitmproxy's, plus sluice's AWS operators (~svc, ~op, ~retry, ~throttled, …).\n",
    addons: "Usage: sluice addons\n\nLists the addons in the order their hooks run: user scripts, then the addons that change traffic, then those that observe it.\n",
    limits: LIMITS_HELP,
    help: MAIN_HELP,
  };
  if (command === undefined) return void process.stdout.write(MAIN_HELP);
  const text = texts[command];
  if (!text) fail(`no command ${JSON.stringify(command)}; \`sluice help\` lists them: ${Object.keys(texts).join(", ")}`);
  process.stdout.write(text);
}

/**
 * A reader that stops early (`sluice addons | head`, `sluice dump | head`) closes the pipe: that
 * ends sluice quietly, as SIGPIPE ends other Unix tools, instead of an unhandled EPIPE and a stack.
 */
function endQuietlyWhenOutputCloses(stream: NodeJS.WriteStream, name: string): void {
  stream.on("error", (err: NodeJS.ErrnoException) => {
    if (err.code === "EPIPE") process.exit(0);
    process.stderr.write(`sluice: cannot write to ${name}: ${err.message}\n`);
    process.exit(1);
  });
}

export async function main(argv: string[]): Promise<void> {
  endQuietlyWhenOutputCloses(process.stdout, "standard output");
  const [command, ...rest] = argv;
  try {
    switch (command) {
      case "dump":
        return await runDump(rest);
      case "web":
        return await runWeb(rest);
      case "ca":
        return runCa(rest);
      case "convert":
        return await runConvert(rest);
      case "run":
        return process.exit(await runRun(rest));
      case "env":
        return await runEnv(rest);
      case "report":
        return await runReport(rest);
      case "fleet":
        return await runFleet(rest);
      case "options":
      case "commands":
      case "addons":
      case "filters":
        // These list things and take no arguments: anything else is a mistake, not something to ignore.
        if (rest.length === 1 && (rest[0] === "-h" || rest[0] === "--help")) return showHelp(command);
        if (rest.length) throw new UsageError(`\`sluice ${command}\` takes no arguments, got ${JSON.stringify(rest.join(" "))}; see \`sluice help ${command}\``);
        if (command === "options") return await runOptions();
        if (command === "commands") return await runCommands();
        if (command === "addons") return await runAddons();
        process.stdout.write(`Filter expressions (mitmproxy's language, plus AWS operators):\n\n${filterHelpText()}\n\nRegexes are searched and case-insensitive; quote arguments with spaces: ~h 'x-amz-target: .*GetItem'.\n`);
        return;
      case "limits":
        if (rest.includes("-h") || rest.includes("--help")) return showHelp("limits");
        return runLimits(rest);
      case "help":
        if (rest.length > 1) throw new UsageError(`help takes one command, got ${JSON.stringify(rest.join(" "))}: sluice help COMMAND`);
        return showHelp(rest[0]);
      case "-h":
      case "--help":
        // `sluice --help dump` reads as `sluice help dump`, as in git.
        if (rest.length > 1) throw new UsageError(`${command} takes at most one command, got ${JSON.stringify(rest.join(" "))}: sluice help COMMAND`);
        return showHelp(rest[0]);
      case "--version":
      case "-V":
        // An argument after it is a mistake (a flag meant for a command?), not something to ignore.
        if (rest.length) throw new UsageError(`${command} takes no arguments, got ${JSON.stringify(rest.join(" "))}; to run a command, give it without ${command}`);
        process.stdout.write(`sluice ${VERSION}\n`);
        return;
      case undefined:
      case "console":
        return await runConsole(rest);
      default:
        // `sluice -p 8081 --intercept …`: flags without a command are the console's, as with mitmproxy.
        if (command.startsWith("-")) return await runConsole(argv);
        fail(`unknown command ${JSON.stringify(command)}; commands are console, dump, web, run, env, ca, convert, report, fleet, options, commands, filters, limits, addons, help (see \`sluice --help\`)`);
    }
  } catch (err) {
    if (err instanceof UsageError) fail(err.message);
    fail((err as Error).message, 1);
  }
}

const LIMITS_HELP = `Usage: sluice limits [SERVICE] [scale=F] [depth=N] [partitions=N] [keys=TABLE:ATTR,…] [provisioned=TABLE:RCU/WCU,…] [reserved=FUNCTION:N,…] [lsi=TABLE:INDEX,…] [gsi=TABLE:INDEX:PK[/SK][:KEYS_ONLY],…]

Prints AWS's documented request limits that \`--fault 'FILTER => aws-limits'\` emulates, with their
sources: every profile, or one SERVICE's. The options are those of the aws-limits rule: scale=
multiplies AWS's rates (0.1 for a tenth); depth= sets how many levels of an S3 key make a prefix
(default 1); partitions= the DynamoDB partitions per table (default ${DEFAULT_DYNAMODB_PARTITIONS}); keys= tables' partition
key attributes; provisioned= provisioned tables' capacity (with 300 s of burst capacity);
reserved= Lambda functions' reserved concurrency; lsi= local secondary indexes (they share their
table's capacity; a Query or Scan of any other index is charged to that global index's own); gsi=
global secondary indexes and their key attributes (a write to the table is charged to each index
whose key attributes the item has).
`;

/** The one service each service-specific aws-limits option tunes (scale= tunes all). */
const LIMITS_OPTION_SERVICE: Record<string, string> = { depth: "s3", partitions: "dynamodb", keys: "dynamodb", provisioned: "dynamodb", lsi: "dynamodb", gsi: "dynamodb", reserved: "lambda" };

/** `sluice limits [SERVICE] [OPTION=VALUE …]`: the limit profiles, with their sources. */
function runLimits(args: string[]): void {
  let service: string | null = null;
  const given: Record<string, string> = {};
  for (const a of args) {
    const m = /^([a-z]+)=(.*)$/.exec(a);
    if (m) {
      if (!(AWS_LIMITS_OPTIONS as readonly string[]).includes(m[1]!)) throw new UsageError(`limits: unknown option ${m[1]}=; options are ${AWS_LIMITS_OPTIONS.map((o) => o + "=").join(" ")}`);
      given[m[1]!] = given[m[1]!] === undefined ? m[2]! : `${given[m[1]!]},${m[2]}`;
      continue;
    }
    if (service !== null) throw new UsageError(`limits takes one service, got ${JSON.stringify(service)} and ${JSON.stringify(a)}: sluice limits [SERVICE] [scale=F] [depth=N]`);
    const signing = signingNameOf(a) ?? a.toLowerCase();
    if (!LIMITED_SERVICES.includes(signing)) throw new UsageError(`limits: no limit profile for ${JSON.stringify(a)}; profiles exist for ${LIMITED_SERVICES.join(", ")}`);
    service = signing;
  }
  // `sluice limits s3 partitions=5`: an option of another service's profile would change nothing shown.
  if (service !== null) {
    const foreign = Object.keys(given).filter((name) => LIMITS_OPTION_SERVICE[name] !== undefined && LIMITS_OPTION_SERVICE[name] !== service);
    if (foreign.length) throw new UsageError(`limits: ${foreign.map((n) => `${n}= applies to ${LIMITS_OPTION_SERVICE[n]}`).join(", ")}, not ${service}, so it would change nothing here; drop it, or ask for that service`);
  }
  let opts;
  try {
    opts = parseAwsLimitsOptions(given);
  } catch (err) {
    throw new UsageError(`limits: ${(err as Error).message}`);
  }
  process.stdout.write(limitsTable(service, opts));
}
