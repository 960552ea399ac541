/**
 * `sluice run [options] -- COMMAND …` and `sluice env [--shell bash|fish|powershell]`: put any
 * program behind sluice in one step. `run` starts the proxy (or, with `--attach HOST:PORT`, uses
 * one already running), runs the command with the client environment (client-env.ts), prints
 * its flows as `dump` does (on stderr, so the command's stdout stays its own), and exits with the
 * command's status. Every `dump` option applies (-w, --fault, --shape, -M, …).
 */
import { spawn } from "node:child_process";
import { accessSync, constants, existsSync, statSync } from "node:fs";
import net from "node:net";
import { delimiter, join } from "node:path";
import { Dump } from "../addons/dump.js";
import { LineLogger } from "../core/log.js";
import { DEFAULT_CONFDIR } from "../core/builtin-options.js";
import { Master, listeningLines } from "../proxy/master.js";
import { CertificateAuthority, caFilesIn } from "../proxy/tls/ca.js";
import { parseProxyArgs, UsageError } from "./args.js";
import { inertOptionWarnings } from "./inert-options.js";
import { CutOutput } from "../addons/cut-output.js";
import { frontEndAddons } from "./wiring.js";
import { clientEnv, formatEnv, writeCaBundle, type Shell } from "./client-env.js";

export const RUN_HELP = `Usage: sluice run [options] [--attach HOST:PORT] -- COMMAND [ARGS…]

Runs COMMAND behind sluice: starts the proxy on a free port (or uses the one at --attach), sets
every variable that makes common clients use it and trust sluice's CA (HTTP(S)_PROXY, AWS_CA_BUNDLE,
REQUESTS_CA_BUNDLE, SSL_CERT_FILE, CURL_CA_BUNDLE, NODE_EXTRA_CA_CERTS, NODE_USE_ENV_PROXY and a
preload for older Node, GIT_SSL_CAINFO, CARGO_HTTP_CAINFO, DENO_CERT, JAVA_TOOL_OPTIONS; see
\`sluice env\`), prints its flows on stderr as \`sluice dump\` does and exits with its status.
Every option of \`sluice dump\` applies (-M, -w, --fault, --shape, -q, …).
`;

export const ENV_HELP = `Usage: sluice env [--shell bash|fish|powershell] [--attach HOST:PORT] [--confdir DIR]

Prints the variables \`sluice run\` sets, for a proxy at HOST:PORT (default 127.0.0.1:8080), as
commands to eval:  eval "$(sluice env)"   ·   sluice env --shell fish | source
`;

function takeFlag(argv: string[], name: string): string | undefined {
  const i = argv.findIndex((a) => a === name || a.startsWith(`${name}=`));
  if (i < 0) return undefined;
  const a = argv[i]!;
  const value = a.includes("=") ? a.slice(name.length + 1) : argv[i + 1];
  if (value === undefined) throw new UsageError(`${name} needs a value`);
  // `--attach "$PROXY"` with the variable unset was read as no --attach at all.
  if (!value.trim()) throw new UsageError(`${name} was given an empty value (an unset shell variable?); give it a value, or leave ${name} out`);
  argv.splice(i, a.includes("=") ? 1 : 2);
  return value;
}

function parseAttach(text: string): string {
  const m = /^(?:\[([^\]]+)\]|([^:]+)):(\d+)$/.exec(text);
  if (!m) throw new UsageError(`--attach expects HOST:PORT (e.g. 127.0.0.1:8080), got ${JSON.stringify(text)}`);
  const host = m[1] ?? m[2]!;
  const port = Number(m[3]);
  if (!(port >= 1 && port <= 65535)) throw new UsageError(`--attach expects a port from 1 to 65535, got ${m[3]} in ${JSON.stringify(text)}`);
  return `http://${host.includes(":") ? `[${host}]` : host}:${port}`;
}

/**
 * `run --attach` hands the command a proxy it does not start: when nothing listens there, every
 * request of the command would fail with a refused connection that names no one.
 */
async function assertListening(proxyUrl: string, attach: string): Promise<void> {
  const url = new URL(proxyUrl);
  const host = url.hostname.replace(/^\[|\]$/g, "");
  const problem = await new Promise<string | null>((resolve) => {
    const socket = net.connect({ host, port: Number(url.port) });
    socket.setTimeout(5000, () => (socket.destroy(), resolve("no answer within 5 s")));
    socket.once("connect", () => (socket.destroy(), resolve(null)));
    socket.once("error", (err: NodeJS.ErrnoException) => resolve(err.code ?? err.message));
  });
  if (problem) throw new UsageError(`--attach ${attach}: nothing answers there (${problem}); start sluice there first (e.g. sluice dump -p ${url.port}) or leave out --attach to start one for the command`);
}

/** The environment for a child: the caller's, with the client variables on top. */
function childEnv(proxyUrl: string, confdir: string, ca: CertificateAuthority): NodeJS.ProcessEnv {
  const { bundle, javaTrustStore } = writeCaBundle(confdir, ca.files.certPem);
  const env: NodeJS.ProcessEnv = { ...process.env };
  for (const [name, value] of clientEnv({ proxyUrl, caCertPem: ca.files.certPem, caBundle: bundle, javaTrustStore, nodeOptions: process.env.NODE_OPTIONS })) env[name] = value;
  return env;
}

export async function runEnv(argv: string[]): Promise<void> {
  const args = [...argv];
  if (args.includes("-h") || args.includes("--help")) return void process.stdout.write(ENV_HELP);
  const shell = (takeFlag(args, "--shell") ?? "bash") as Shell;
  if (!["bash", "fish", "powershell"].includes(shell)) throw new UsageError(`--shell expects bash, fish or powershell, got ${JSON.stringify(shell)}`);
  const attach = takeFlag(args, "--attach");
  const confdir = takeFlag(args, "--confdir") ?? DEFAULT_CONFDIR;
  if (args.length) throw new UsageError(`unknown argument ${args[0]} for \`sluice env\`; see \`sluice env --help\``);
  const proxyUrl = attach ? parseAttach(attach) : "http://127.0.0.1:8080";
  const ca = CertificateAuthority.loadOrCreate(confdir, (m) => process.stderr.write(m + "\n"));
  const { bundle, javaTrustStore } = writeCaBundle(confdir, caFilesIn(confdir).certPem);
  process.stdout.write(formatEnv(clientEnv({ proxyUrl, caCertPem: ca.files.certPem, caBundle: bundle, javaTrustStore, nodeOptions: process.env.NODE_OPTIONS }), shell));
}

export async function runRun(argv: string[]): Promise<number> {
  const dash = argv.indexOf("--");
  if (argv.includes("-h") && (dash < 0 || argv.indexOf("-h") < dash)) return void process.stdout.write(RUN_HELP), 0;
  if (argv.includes("--help") && (dash < 0 || argv.indexOf("--help") < dash)) return void process.stdout.write(RUN_HELP), 0;
  if (dash < 0 || dash === argv.length - 1) throw new UsageError("sluice run needs a command after --, e.g. sluice run -- python3 job.py");
  const options = argv.slice(0, dash);
  const command = argv.slice(dash + 1);
  const attach = takeFlag(options, "--attach");
  const args = parseProxyArgs(options);
  if (args.noServer || args.rfile) throw new UsageError("-n and -r do not apply to sluice run: it runs a live proxy for the command");
  // With --attach the running sluice does the work: its own options would be ignored here, unseen.
  if (attach) {
    const ignored = proxyFlagsBesidesConfdir(options);
    if (args.positionals.length) ignored.push(`the filter ${JSON.stringify(args.positionals.join(" "))}`);
    if (ignored.length) throw new UsageError(`--attach uses the sluice already running at ${attach}, so ${ignored.join(", ")} would do nothing here; give ${ignored.length > 1 ? "them" : "it"} to that sluice, or drop --attach to start one for the command`);
  }
  const given = Object.keys(args.set);
  if (args.positionals.length) args.set.dumper_filter = args.positionals.join(" ");

  // A command that cannot run is refused before a proxy starts for it, with the shells' status 127.
  const missing = missingProgram(command[0]!);
  if (missing) {
    process.stderr.write(`sluice: cannot run ${command[0]}: ${missing}\n`);
    return 127;
  }

  let master: Master | null = null;
  let dump: Dump | null = null;
  let proxyUrl: string;
  let confdir: string;
  let ca: CertificateAuthority;
  if (attach) {
    proxyUrl = parseAttach(attach);
    await assertListening(proxyUrl, attach);
    confdir = args.set.confdir ?? DEFAULT_CONFDIR;
    ca = CertificateAuthority.loadOrCreate(confdir, (m) => process.stderr.write(m + "\n"));
  } else {
    args.set.listen_port ??= "0";
    const log = new LineLogger(args.quiet ? "error" : args.verbose ? "debug" : "info");
    dump = new Dump({ write: (t) => process.stderr.write(t), color: !!process.stderr.isTTY && !process.env.NO_COLOR });
    // The command's stdout stays its own: --cut rows go to stderr with the flow lines.
    const cut = new CutOutput((t) => void process.stderr.write(t));
    master = new Master({ set: args.set, addons: frontEndAddons(dump, cut), log });
    await master.configure();
    // Checked before anything listens, and without stopping the master: its stop would print the HAR.
    if (master.options.get<string | null>("hardump") === "-") {
      throw new UsageError("--set hardump=- would print the HAR on the command's stdout: sluice run keeps stdout for the command; give hardump a file");
    }
    for (const line of inertOptionWarnings(master.options, given, false)) log.warn(line);
    await master.start();
    // The variables name an HTTP proxy: a regular or upstream listener, never a SOCKS5 or reverse one.
    const httpProxy = master.servers.find((s) => s.mode.kind === "regular" || s.mode.kind === "upstream");
    if (!httpProxy) {
      await master.stop();
      throw new UsageError(`sluice run points the command at an HTTP proxy: add --mode regular (or upstream:URL) beside ${master.servers.map((s) => s.mode.spec).join(", ")}`);
    }
    const address = httpProxy.address();
    const host = address.address.includes(":") ? `[${address.address}]` : address.address;
    proxyUrl = `http://${host}:${address.port}`;
    confdir = master.options.get<string>("confdir");
    ca = master.ca;
    for (const line of listeningLines(master)) log.info(line);
    log.info(`running ${command.join(" ")} with the proxy ${host}:${address.port}`);
  }

  const child = spawn(command[0]!, command.slice(1), { stdio: "inherit", env: childEnv(proxyUrl, confdir, ca) });
  // The terminal's Ctrl-C reaches the child directly (same process group); sluice waits for it.
  const ignore = () => {};
  process.on("SIGINT", ignore);
  process.on("SIGTERM", () => child.kill("SIGTERM"));
  const status = await new Promise<number>((resolve) => {
    child.once("error", (err: NodeJS.ErrnoException) => {
      process.stderr.write(`sluice: cannot run ${command[0]}: ${err.code === "ENOENT" ? "command not found" : err.message}\n`);
      resolve(127);
    });
    child.once("exit", (code, signal) => resolve(code ?? 128 + (signal ? signalNumber(signal) : 0)));
  });
  process.removeListener("SIGINT", ignore);
  if (master) {
    // Flows still finishing (a response the child did not wait for) get their line before exit.
    await master.stop();
    dump?.flush();
  }
  return status;
}

/** The flags among `options` (`--set NAME` for --set), --confdir aside: sluice run --attach reads only the CA from it. */
function proxyFlagsBesidesConfdir(options: string[]): string[] {
  const flags: string[] = [];
  for (let i = 0; i < options.length; i++) {
    const word = options[i]!;
    if (!word.startsWith("-") || /^--confdir(=|$)/.test(word)) continue;
    if (word === "--set" || word.startsWith("--set=")) {
      const item = word === "--set" ? options[++i] ?? "" : word.slice("--set=".length);
      const name = item.split("=")[0]!.trim();
      if (name !== "confdir") flags.push(`--set ${name}`);
      continue;
    }
    flags.push(word.split("=")[0]!);
  }
  return flags;
}

function signalNumber(signal: NodeJS.Signals): number {
  return (({ SIGHUP: 1, SIGINT: 2, SIGQUIT: 3, SIGKILL: 9, SIGTERM: 15, SIGPIPE: 13 }) as Record<string, number>)[signal] ?? 1;
}

/** Why `program` cannot be run (not found, not executable), or null when it can; PATH is searched as a shell does. */
function missingProgram(program: string): string | null {
  const candidates = program.includes("/") ? [program] : (process.env.PATH ?? "").split(delimiter).filter(Boolean).map((dir) => join(dir, program));
  for (const path of candidates) {
    try {
      accessSync(path, constants.X_OK);
      if (statSync(path).isFile()) return null;
    } catch {
      // not here: try the next folder
    }
  }
  return program.includes("/") ? (existsSync(program) ? "not an executable file" : "no such file") : "command not found (not in PATH)";
}
