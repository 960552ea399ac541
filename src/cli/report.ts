/**
 * `sluice report FILE [--html OUT] [--json] [FILTER]`: the retry picture of a capture. Flows are
 * streamed through an InvocationTracker (memory stays flat however large the file), then a
 * terminal summary, a JSON document or a self-contained HTML page with plots is written.
 */
import { access, stat, writeFile } from "node:fs/promises";
import { constants } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { parseArgs } from "node:util";
import { compileFilter, setFilterNotice, type FlowPredicate } from "../core/filter.js";
import { readMergedCaptures } from "../store/merged-captures.js";
import { InvocationTracker, RetryForensics, retryForensicsText, type TrackerSnapshot } from "../aws/index.js";
import { percent, retrySummaryTable } from "../addons/retries.js";
import { attemptsText, outcomeText, renderReportHtml } from "../ui/report-html.js";
import { refuseEmptyFlagValues, refuseRepeatedFlags, UsageError } from "./args.js";
import { expandCaptures, splitCapturesAndFilter } from "./capture-args.js";
import { sameFile } from "../core/same-file.js";

export const REPORT_HELP = `Usage: sluice report CAPTURE... [options] [FILTER]

Reads one or more captures (mitmproxy flow files, HAR or SQLite, e.g. written with \`sluice dump -w
FILE\`; files or quoted globs such as 'logs/*.mitm', formats mixed) as one, and reconstructs SDK
calls and their retries. Several captures — one per sluice process of a fleet — are merged in the
order their flows finished, so an SDK call whose attempts went through different processes is one
call with all its attempts in time order; a flow found in two captures is counted once. The
captures are the leading words that exist as files, contain a glob or a '/', or end in .mitm,
.flows, .har, .sqlite, .sqlite3 or .db; the first other word starts FILTER.
 attempts are grouped by amz-sdk-invocation-id and
numbered by amz-sdk-request; for clients without those headers, the same request from the same
client again soon after a retryable failure (429, 5xx, throttling, connection error) is counted as
an inferred retry. Prints the operations with the most retries, the throttled share, the time lost
in back-off, how SDK calls ended (ok first try, ok after retries, gave up, failed), the calls
with the most attempts, each client's retry mode (legacy, standard, adaptive: from the User-Agent,
else inferred from its attempts), whether its back-off fits the mode's formula and when its retry
quota ran out, and per throttled operation what other retry settings would have done (the model
used is printed with it). FILTER (a filter expression, see \`sluice filters\`) limits the flows read.

Options:
      --html FILE          also write a self-contained HTML page with plots over time (requests,
                           throttles and retries per second; back-off; attempts per call) and
                           the retry forensics (retry modes, quota, what-if)
      --json               print the report as JSON instead of text
      --top N              operations and calls to list (default 10)
      --infer-window SEC   window for inferred retries after a failure (default 30)
      --idle-window SEC    an SDK call waiting longer than this for its next attempt has given up (default 60)
  -h, --help               this help
`;

const FLAGS = {
  html: { type: "string" },
  json: { type: "boolean" },
  top: { type: "string" },
  "infer-window": { type: "string" },
  "idle-window": { type: "string" },
  help: { type: "boolean", short: "h" },
} as const;

export async function runReport(argv: string[]): Promise<void> {
  let parsed;
  try {
    parsed = parseArgs({ args: argv, options: FLAGS, allowPositionals: true, strict: true, tokens: true });
  } catch (err) {
    const m = /Unknown option '([^']+)'/.exec((err as Error).message);
    const missing = /Option '([^']+)' argument missing/.exec((err as Error).message);
    if (missing) throw new UsageError(`option ${missing[1]} needs a value: see \`sluice report --help\``);
    const ambiguous = /Option '([^']+)' argument is ambiguous/.exec((err as Error).message);
    if (ambiguous) throw new UsageError(`option ${ambiguous[1]} is followed by something that looks like another option; to give it a value starting with a dash, write ${ambiguous[1]}=VALUE`);
    throw new UsageError(m ? `unknown option ${m[1]} for \`sluice report\`: see \`sluice report --help\`` : (err as Error).message.replace(/\. To specify a positional argument.*$/s, ""));
  }
  // `--html ""` wrote no page, and `--html a.html --html b.html` only the last, both unseen.
  refuseEmptyFlagValues(parsed.tokens);
  refuseRepeatedFlags(parsed.tokens, FLAGS);
  const v = parsed.values;
  if (v.help) return void process.stdout.write(REPORT_HELP);
  const { captures, filterWords } = splitCapturesAndFilter(parsed.positionals);
  if (captures.length === 0) throw new UsageError("report needs a capture file: sluice report capture.mitm [--html report.html] [FILTER]");
  const top = v.top === undefined ? 10 : wholeNumber("--top", v.top);
  const inferWindow = v["infer-window"] === undefined ? 30 : wholeNumber("--infer-window", v["infer-window"]);
  const idleWindow = v["idle-window"] === undefined ? 60 : wholeNumber("--idle-window", v["idle-window"]);
  const filter = filterWords.length ? filterWords.join(" ") : null;
  let predicate: FlowPredicate | null = null;
  if (filter) {
    setFilterNotice((m) => process.stderr.write(`${m}\n`));
    try {
      predicate = compileFilter(filter);
    } catch (err) {
      throw new UsageError((err as Error).message);
    }
  }
  const files = await expandCaptures(captures, "sluice report 'captures/*.sqlite'");
  let size = 0;
  for (const f of files) size += (await stat(f)).size;
  const file = captureLabel(files);

  // Find out before reading a large capture that the page cannot be written.
  if (v.html) await checkWritableDirectory(v.html);
  // `--html` onto a capture it reads would replace the capture with the page.
  const clash = v.html ? files.find((f) => sameFile(f, v.html!)) : undefined;
  if (clash) throw new UsageError(`--html ${v.html} names the capture ${clash}: the page would replace it; write the page to another file, e.g. report.html`);

  const tracker = new InvocationTracker({ inferWindow, idleWindow, topInvocations: top });
  const forensics = new RetryForensics();
  const progress = new Progress(file, size);
  for await (const flow of readMergedCaptures(files, {
    filter: filter ?? undefined,
    onWarning: (m) => process.stderr.write(`sluice: warning: ${m}\n`),
    onProgress: (read, total) => progress.bytes(read, total),
    onDuplicates: (n) => {
      if (n) process.stderr.write(`sluice: ${n} flow${n === 1 ? "" : "s"} found in more than one capture (same start, method, URL and client) counted once\n`);
    },
  })) {
    if (predicate && !predicate(flow)) continue;
    tracker.add(flow);
    forensics.add(flow);
    progress.flow();
  }
  tracker.finishAll();
  progress.done(tracker.flows);
  const data = tracker.snapshot();

  const modes = forensics.report();
  if (v.html) {
    try {
      await writeFile(v.html, renderReportHtml(data, { file, filter, generated: new Date() }, modes));
    } catch (err) {
      throw new Error(`cannot write the HTML report to ${v.html}: ${(err as Error).message}`);
    }
    process.stderr.write(`wrote ${v.html}\n`);
  }
  process.stdout.write(v.json ? JSON.stringify({ file, files, filter, ...data, retryModes: modes }, null, 2) + "\n" : reportText(data, file, filter, top) + (data.flows ? retryForensicsText(modes, top) : ""));
}

/** How the report names its input: the file, or how many captures and which. */
export function captureLabel(files: readonly string[]): string {
  if (files.length === 1) return files[0]!;
  const shown = files.slice(0, 4).join(", ");
  return `${files.length} captures (${shown}${files.length > 4 ? `, … ${files.length - 4} more` : ""})`;
}

async function checkWritableDirectory(path: string): Promise<void> {
  const dir = dirname(resolve(path));
  let why: string | undefined;
  try {
    if ((await stat(path)).isDirectory()) why = `it is a directory; give a file name, e.g. ${join(path, "report.html")}`;
  } catch {
    // Not there yet: the report creates it.
  }
  if (!why) {
    try {
      await access(dir, constants.W_OK);
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      why = code === "ENOENT" ? `the directory ${dir} does not exist; create it or choose another path` : code === "EACCES" ? `no permission to write in ${dir}; choose a path you can write` : (err as Error).message;
    }
  }
  if (why) throw new UsageError(`cannot write the HTML report to ${path}: ${why}`);
}

function wholeNumber(flag: string, raw: string): number {
  if (!/^\d+$/.test(raw.trim())) throw new UsageError(`${flag} expects a whole number, got ${JSON.stringify(raw)}`);
  return Number(raw);
}

/** The terminal summary. */
export function reportText(data: TrackerSnapshot, file: string, filter: string | null, top = 10): string {
  const t = data.totals;
  if (data.flows === 0) return `${file}: no flows${filter ? ` match ${filter}` : ""}.\n`;
  const span = data.lastEnd - data.firstStart;
  const o = t.outcomes;
  const lines = [
    `${file}${filter ? ` (${filter})` : ""}: ${data.flows} flows over ${span.toFixed(1)} s, from ${new Date(data.firstStart * 1000).toISOString()}`,
    "",
    `SDK calls     ${t.invocations}: ${o.ok} ok first try, ${o.retried} ok after retries, ${o["gave-up"]} gave up, ${o.failed} failed`,
    `requests      ${t.requests}: ${t.retries} retries (${percent(t.retries, t.requests)})${t.inferredRetries ? `, ${t.inferredRetries} of them inferred` : ""}`,
    `throttled     ${t.throttles} (${percent(t.throttles, t.requests)} of requests)${t.bareHead503s ? `; not counted: ${bareHead503Text(t.bareHead503s)}` : ""}`,
    `back-off      ${t.backoffSeconds.toFixed(2)} s waiting between attempts`,
    `attempts/call ${data.attemptsHistogram.map(([n, c]) => `${n}: ${c}`).join("  ") || "-"}`,
    "",
    "Top operations by retries",
    retrySummaryTable(data.operations, top),
  ];
  if (data.worstInvocations.length) {
    lines.push("", "Calls with the most attempts");
    for (const c of data.worstInvocations) {
      lines.push(`  ${c.service} ${c.operation} ${c.inferred ? "(inferred)" : c.id} from ${c.client}: ${outcomeText(c)}, ${c.backoff.toFixed(2)} s in back-off, ${(c.end - c.start).toFixed(2)} s in all`);
      lines.push(`    ${attemptsText(c)}`);
    }
  }
  return lines.join("\n") + "\n";
}

/** Why bodiless HEAD 503s are not in the throttle count (the report says so, not only the README). */
export function bareHead503Text(n: number): string {
  return `${n} bodiless 503 answer${n === 1 ? "" : "s"} to S3 HEAD requests (S3 throttles HEAD that way), which SDKs can only see as a server error and retry as one`;
}

/** Progress on stderr: a live counter on a terminal, a line every few seconds otherwise. */
export class Progress {
  private readonly started = Date.now();
  private last = Date.now();
  private flows = 0;
  private read = 0;
  private total = 0;
  private readonly tty = !!process.stderr.isTTY;
  private shown = false;

  /** `terminalOnly`: say nothing unless stderr is a terminal (for commands whose output is the point). */
  constructor(
    private readonly file: string,
    private readonly size: number,
    private readonly terminalOnly = false,
  ) {}

  bytes(read: number, total: number): void {
    this.read = read;
    this.total = total;
  }

  flow(): void {
    // Checking the clock every flow is cheap next to decoding one.
    if (++this.flows % 256 !== 0) return;
    const now = Date.now();
    // On a terminal the counter appears at once and then ticks; in a log, a line every 5 s.
    if ((!this.tty || this.shown) && now - this.last < (this.tty ? 200 : 5000)) return;
    this.last = now;
    if (this.terminalOnly && !this.tty) return;
    // Flow files report bytes of the file; SQLite reports rows, which say nothing about the share read.
    const pct = this.total === this.size && this.size > 0 ? ` (${((this.read / this.total) * 100).toFixed(0)}%)` : "";
    const text = `reading ${this.file}: ${this.flows} flows${pct}`;
    if (this.tty) process.stderr.write(`\r${text}`);
    else process.stderr.write(`${text}\n`);
    this.shown = true;
  }

  done(flows: number): void {
    if (this.tty && this.shown) process.stderr.write("\r\x1b[K");
    if (this.terminalOnly) return;
    const seconds = (Date.now() - this.started) / 1000;
    process.stderr.write(`read ${flows} flows from ${this.file} in ${seconds.toFixed(1)} s\n`);
  }
}
