/**
 * `sluice report --html`: one self-contained page (no scripts, no external resources) with the
 * retry picture of a capture. The plots are SVG drawn here: requests, throttles and retries per
 * second, back-off time per second — where many clients sleeping and waking together show as
 * oscillation — and the attempts-per-call histogram, then the per-operation table, the worst calls
 * and the retry forensics (retry modes, back-off against the formula, quota, what-if).
 */
import { backoffFormula, backoffVerdict, MAX_FORENSIC_CALLS, whatIfSentence, type InvocationRecord, type OperationStats, type RetryForensicsReport, type SeriesBucket, type TrackerSnapshot } from "../aws/index.js";

export interface ReportMeta {
  file: string;
  filter: string | null;
  generated: Date;
}

const W = 960;
const H = 240;
const PAD = { left: 56, right: 16, top: 26, bottom: 34 };
const COLOURS = { requests: "#3b6fd8", throttles: "#d9822b", retries: "#c23b5a", backoff: "#7a4cc2", histogram: "#2f8f6a" };

/** `forensics`: the retry modes and what-ifs the text and JSON reports show (omitted: no such section). */
export function renderReportHtml(data: TrackerSnapshot, meta: ReportMeta, forensics?: RetryForensicsReport): string {
  const t = data.totals;
  const title = `sluice report — ${meta.file}`;
  const width = data.series.bucketSeconds;
  const perSecond = width === 1 ? "per second" : `per second (averaged over ${width} s buckets)`;
  return `<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<link rel="icon" href="data:,">
<title>${esc(title)}</title>
<style>
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; margin: 24px auto; max-width: 1000px; color: #222; padding: 0 12px; }
h1 { font-size: 20px; margin-bottom: 4px; } h2 { font-size: 16px; margin: 28px 0 6px; }
.meta { color: #666; }
.cards { display: flex; flex-wrap: wrap; gap: 10px; margin: 16px 0; }
.card { border: 1px solid #ddd; border-radius: 6px; padding: 8px 12px; min-width: 120px; }
.card b { display: block; font-size: 20px; }
svg { display: block; width: 100%; height: auto; background: #fcfcfc; border: 1px solid #eee; }
svg text { font: 11px system-ui, sans-serif; fill: #555; }
.legend span { display: inline-block; margin-right: 14px; } .legend i { display: inline-block; width: 12px; height: 3px; margin-right: 5px; vertical-align: middle; }
table { border-collapse: collapse; width: 100%; font-size: 13px; } th, td { padding: 3px 8px; border-bottom: 1px solid #eee; text-align: right; }
th:nth-child(-n+2), td:nth-child(-n+2) { text-align: left; } th { background: #f5f5f5; }
.attempts { font-family: ui-monospace, monospace; font-size: 12px; color: #444; }
.empty { color: #888; font-style: italic; }
.verdict-no, .quota-out { color: #b3261e; font-weight: 600; } .verdict-yes { color: #2f8f6a; }
#what-if li { margin: 2px 0; }
</style>
</head>
<body>
<h1>${esc(title)}</h1>
<div class="meta">${esc(timeRange(data))}${meta.filter ? ` · filter <code>${esc(meta.filter)}</code>` : ""} · generated ${esc(meta.generated.toISOString())}</div>
<div class="cards">
${card("requests", fmt(t.requests))}
${card("SDK calls", fmt(t.invocations))}
${card("retries", `${fmt(t.retries)} (${pct(t.retries, t.requests)})`)}
${card("throttled", `${fmt(t.throttles)} (${pct(t.throttles, t.requests)})`)}
${card("gave up", fmt(t.outcomes["gave-up"]))}
${card("time in back-off", `${t.backoffSeconds.toFixed(2)} s`)}
</div>
${t.bareHead503s ? `<p class="meta">Throttled does not count ${fmt(t.bareHead503s)} bodiless 503 answers to S3 HEAD requests (S3 throttles HEAD that way): SDKs can only see them as server errors and retry them as such.</p>` : ""}
<h2>Requests, throttles and retries ${esc(perSecond)}</h2>
<div class="legend">${legend("requests", COLOURS.requests)}${legend("throttles", COLOURS.throttles)}${legend("retries", COLOURS.retries)}</div>
${lineChart(data, [
  ["requests", (b) => b.requests, COLOURS.requests],
  ["throttles", (b) => b.throttles, COLOURS.throttles],
  ["retries", (b) => b.retries, COLOURS.retries],
], "requests/s", "traffic")}
<h2>Back-off: clients waiting to retry${width === 1 ? "" : ` (averaged over ${width} s buckets)`}</h2>
<div class="legend">${legend("clients asleep in back-off at once (seconds of back-off per second)", COLOURS.backoff)}</div>
${lineChart(data, [["back-off", (b) => b.backoff, COLOURS.backoff]], "clients", "backoff", true)}
<h2>Attempts per SDK call</h2>
${histogram(data.attemptsHistogram)}
<h2>Operations, most retried first</h2>
${operationsTable(data.operations)}
<h2>Calls with the most attempts</h2>
${worstCalls(data.worstInvocations)}
${forensics ? forensicsSections(forensics) : ""}
</body>
</html>
`;
}

function card(label: string, value: string): string {
  return `<div class="card">${esc(label)}<b>${esc(value)}</b></div>`;
}

function legend(label: string, colour: string): string {
  return `<span><i style="background:${colour}"></i>${esc(label)}</span>`;
}

type SeriesSpec = [name: string, value: (b: SeriesBucket) => number, colour: string];

/** Values per second over time, one path per series; `area` fills under the (single) series. */
function lineChart(data: TrackerSnapshot, specs: SeriesSpec[], unit: string, id: string, area = false): string {
  const { buckets, bucketSeconds, start } = data.series;
  if (buckets.length === 0) return `<p class="empty">No requests in this capture.</p>`;
  const rates = specs.map(([, value]) => buckets.map((b) => value(b) / bucketSeconds));
  const max = niceMax(Math.max(0, ...rates.flat()));
  const plotW = W - PAD.left - PAD.right;
  const plotH = H - PAD.top - PAD.bottom;
  const n = buckets.length;
  // Each bucket is drawn as a flat step across its width so short bursts stay visible.
  const x = (i: number) => PAD.left + (n === 0 ? 0 : (i / n) * plotW);
  const y = (v: number) => PAD.top + plotH - (max === 0 ? 0 : (v / max) * plotH);
  const paths = specs.map(([name, , colour], s) => {
    const values = rates[s]!;
    let d = `M${x(0).toFixed(1)},${y(values[0]!).toFixed(1)}`;
    for (let i = 0; i < n; i++) d += `H${x(i + 1).toFixed(1)}${i + 1 < n ? `V${y(values[i + 1]!).toFixed(1)}` : ""}`;
    const total = buckets.reduce((sum, b) => sum + specs[s]![1](b), 0);
    const fill = area ? `<path class="series-area" d="${d}V${y(0).toFixed(1)}H${x(0).toFixed(1)}Z" fill="${colour}" fill-opacity="0.18" stroke="none"/>` : "";
    return `${fill}<path class="series" data-series="${esc(name)}" d="${d}" fill="none" stroke="${colour}" stroke-width="1.5"><title>${esc(name)}: ${fmtNum(total)} in total</title></path>`;
  });
  const grid = [0, 0.5, 1].map((f) => {
    const v = max * f;
    return `<line x1="${PAD.left}" x2="${W - PAD.right}" y1="${y(v).toFixed(1)}" y2="${y(v).toFixed(1)}" stroke="#e4e4e4"/><text x="${PAD.left - 6}" y="${(y(v) + 4).toFixed(1)}" text-anchor="end">${esc(fmtNum(v))}</text>`;
  });
  const ticks = timeTicks(start, n * bucketSeconds).map(([t, label]) => {
    const px = PAD.left + ((t - start) / (n * bucketSeconds)) * plotW;
    return `<line x1="${px.toFixed(1)}" x2="${px.toFixed(1)}" y1="${PAD.top + plotH}" y2="${PAD.top + plotH + 4}" stroke="#999"/><text x="${px.toFixed(1)}" y="${H - 12}" text-anchor="${px > W - PAD.right - 30 ? "end" : px < PAD.left + 30 ? "start" : "middle"}">${esc(label)}</text>`;
  });
  return `<svg id="chart-${id}" viewBox="0 0 ${W} ${H}" role="img" aria-label="${esc(specs.map((s) => s[0]).join(", "))} over time">
${grid.join("\n")}
<text x="4" y="14">${esc(unit)}</text>
<line x1="${PAD.left}" x2="${W - PAD.right}" y1="${PAD.top + plotH}" y2="${PAD.top + plotH}" stroke="#999"/>
${ticks.join("\n")}
${paths.join("\n")}
</svg>`;
}

function histogram(pairs: [number, number][]): string {
  if (pairs.length === 0) return `<p class="empty">No finished calls in this capture.</p>`;
  const maxAttempts = pairs.at(-1)![0];
  const counts = new Map(pairs);
  const columns = Array.from({ length: maxAttempts }, (_, i) => [i + 1, counts.get(i + 1) ?? 0] as const);
  const max = niceMax(Math.max(...columns.map((c) => c[1])));
  const plotW = W - PAD.left - PAD.right;
  const plotH = H - PAD.top - PAD.bottom;
  const slot = plotW / columns.length;
  const barW = Math.max(2, Math.min(80, slot * 0.7));
  const total = pairs.reduce((s, [, c]) => s + c, 0);
  const bars = columns.map(([attempts, count], i) => {
    const h = max === 0 ? 0 : (count / max) * plotH;
    const cx = PAD.left + slot * i + slot / 2;
    const label = columns.length <= 30 || attempts % Math.ceil(columns.length / 30) === 0 ? `<text x="${cx.toFixed(1)}" y="${H - 12}" text-anchor="middle">${attempts}</text>` : "";
    const value = count > 0 ? `<text x="${cx.toFixed(1)}" y="${(PAD.top + plotH - h - 4).toFixed(1)}" text-anchor="middle">${fmt(count)}</text>` : "";
    return `<rect class="bar" x="${(cx - barW / 2).toFixed(1)}" y="${(PAD.top + plotH - h).toFixed(1)}" width="${barW.toFixed(1)}" height="${h.toFixed(1)}" fill="${COLOURS.histogram}"><title>${attempts} attempt${attempts === 1 ? "" : "s"}: ${fmt(count)} call${count === 1 ? "" : "s"} (${pct(count, total)})</title></rect>${value}${label}`;
  });
  return `<svg id="chart-attempts" viewBox="0 0 ${W} ${H}" role="img" aria-label="attempts per call">
<line x1="${PAD.left}" x2="${W - PAD.right}" y1="${PAD.top + plotH}" y2="${PAD.top + plotH}" stroke="#999"/>
<text x="4" y="14">calls</text>
<text x="${W - PAD.right}" y="${H - 1}" text-anchor="end">attempts per call</text>
${bars.join("\n")}
</svg>`;
}

function operationsTable(rows: OperationStats[]): string {
  if (rows.length === 0) return `<p class="empty">No requests.</p>`;
  const head = ["service", "operation", "requests", "retries", "inferred", "throttled", "gave up", "back-off", "calls", "ok", "retried ok", "failed"];
  const body = rows.slice(0, 200).map((r) => `<tr><td>${esc(r.service)}</td><td>${esc(r.operation)}</td><td>${fmt(r.requests)}</td><td>${fmt(r.retries)}</td><td>${fmt(r.inferredRetries)}</td><td>${fmt(r.throttles)} (${pct(r.throttles, r.requests)})</td><td>${fmt(r.outcomes["gave-up"])}</td><td>${r.backoffSeconds.toFixed(2)} s</td><td>${fmt(r.invocations)}</td><td>${fmt(r.outcomes.ok)}</td><td>${fmt(r.outcomes.retried)}</td><td>${fmt(r.outcomes.failed)}</td></tr>`);
  const more = rows.length > 200 ? `<p class="meta">… and ${rows.length - 200} more operations.</p>` : "";
  return `<table id="operations"><thead><tr>${head.map((h) => `<th>${h}</th>`).join("")}</tr></thead><tbody>\n${body.join("\n")}\n</tbody></table>${more}`;
}

function worstCalls(calls: InvocationRecord[]): string {
  if (calls.length === 0) return `<p class="empty">No call needed more than one attempt.</p>`;
  const rows = calls.map((c) => `<tr><td>${esc(c.service)}</td><td>${esc(c.operation)}</td><td>${esc(outcomeText(c))}</td><td>${c.attempts.length}</td><td>${c.backoff.toFixed(2)} s</td><td>${(c.end - c.start).toFixed(2)} s</td></tr>
<tr><td colspan="6" class="attempts">${esc(attemptsText(c))}</td></tr>`);
  return `<table id="worst"><thead><tr><th>service</th><th>operation</th><th>outcome</th><th>attempts</th><th>back-off</th><th>duration</th></tr></thead><tbody>\n${rows.join("\n")}\n</tbody></table>`;
}

/**
 * Retry forensics: each client's retry mode, whether its back-off fits that mode's formula, when
 * the standard-mode retry quota ran out; then per operation what other settings would have done.
 */
function forensicsSections(r: RetryForensicsReport): string {
  const modes = r.clients.length === 0
    ? `<p class="empty">No SDK calls (no amz-sdk-invocation-id) in this capture.</p>`
    : `<table id="retry-modes"><thead><tr><th>client</th><th>retry mode</th><th>max attempts</th><th>calls</th><th>back-off vs the mode's formula</th><th>standard-mode retry quota (500)</th><th>gave up with attempts left</th></tr></thead><tbody>
${r.clients.map((c) => {
  const verdict = backoffVerdict(c);
  const cls = verdict === "matches" ? "verdict-yes" : verdict === "does not match" ? "verdict-no" : "";
  const gaps = c.gaps ? `: ${fmt(c.gapsWithinFormula)} of ${fmt(c.gaps)} gaps within ${backoffFormula(c.mode)}` : "";
  const quota = c.mode === "legacy" ? "not used (legacy)" : c.quotaEmptyAt !== null ? `<span class="quota-out">ran out at ${esc(new Date(c.quotaEmptyAt * 1000).toISOString())}</span>` : "never ran out";
  return `<tr><td>${esc(c.client)}</td><td title="${esc(c.how)}">${esc(c.mode)} <span class="meta">(${esc(c.how)})</span></td><td>${c.maxAttempts ?? "?"}</td><td>${fmt(c.calls)}</td><td><span class="${cls}">${esc(verdict)}</span>${esc(gaps)}</td><td>${quota}</td><td>${fmt(c.quotaGiveUps)}</td></tr>`;
}).join("\n")}
</tbody></table>`;
  const whatIf = r.whatIf.length === 0
    ? `<p class="empty">No operation was throttled: nothing to compare.</p>`
    : `<div id="what-if">${r.whatIf.map((w) => `<h3>${esc(w.service)} ${esc(w.operation)}</h3>
<p class="meta">${fmt(w.calls)} calls, ${(w.throttleRate * 100).toFixed(0)}% of attempts throttled; observed ${fmt(w.observedGiveUps)} gave up, ${w.observedBackoffSeconds.toFixed(1)} s back-off</p>
<ul>${w.settings.map((s) => `<li>${esc(whatIfSentence(w, s))}</li>`).join("")}</ul>`).join("\n")}</div>
<p class="meta">Model: ${esc(r.model)}.</p>`;
  const truncated = r.truncated ? `<p class="meta">Only the first ${fmt(MAX_FORENSIC_CALLS)} SDK calls were looked at.</p>` : "";
  return `<h2>Retry modes (per client: address and SDK)</h2>
${modes}
<h2>What if: other retry settings against the same throttling</h2>
${whatIf}
${truncated}`;
}

/** "gave up after 5 attempts", "ok after 2 retries", … */
export function outcomeText(c: InvocationRecord): string {
  const n = c.attempts.length;
  switch (c.outcome) {
    case "ok":
      return "ok first try";
    case "retried":
      return `ok after ${n - 1} retr${n - 1 === 1 ? "y" : "ies"}`;
    case "gave-up":
      return `gave up after ${n} attempt${n === 1 ? "" : "s"}`;
    default:
      return `failed after ${n} attempt${n === 1 ? "" : "s"}`;
  }
}

/** "#1 503 SlowDown · wait 0.61 s · #2 503 SlowDown · …" */
export function attemptsText(c: InvocationRecord): string {
  return c.attempts
    .map((a) => {
      const what = a.status === null ? `✗ ${a.error ?? "no response"}` : `${a.status}${a.throttle && a.throttle !== String(a.status) ? ` ${a.throttle}` : ""}`;
      const wait = a.backoff !== null ? `wait ${a.backoff.toFixed(3)} s · ` : "";
      return `${wait}#${a.attempt}${c.maxAttempts ? `/${c.maxAttempts}` : ""}${a.inferred ? " (inferred)" : ""} ${what}`;
    })
    .join(" · ");
}

function timeRange(data: TrackerSnapshot): string {
  if (!data.flows) return "no flows";
  const span = data.lastEnd - data.firstStart;
  return `${fmt(data.flows)} flows · ${new Date(data.firstStart * 1000).toISOString()} → ${new Date(data.lastEnd * 1000).toISOString()} (${span.toFixed(1)} s)`;
}

/** About five time labels at round steps. */
function timeTicks(start: number, span: number): [number, string][] {
  const steps = [1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 21600, 43200, 86400];
  const step = steps.find((s) => span / s <= 6) ?? 86400 * Math.ceil(span / 86400 / 6);
  const ticks: [number, string][] = [];
  for (let t = Math.ceil(start / step) * step; t <= start + span; t += step) {
    const iso = new Date(t * 1000).toISOString();
    ticks.push([t, step >= 86400 ? iso.slice(5, 10) : iso.slice(11, 19)]);
  }
  return ticks;
}

function niceMax(v: number): number {
  if (v <= 0) return 0;
  const p = 10 ** Math.floor(Math.log10(v));
  for (const m of [1, 2, 2.5, 5, 10]) if (m * p >= v) return m * p;
  return 10 * p;
}

function fmt(n: number): string {
  return n.toLocaleString("en-US");
}

function fmtNum(v: number): string {
  return Number.isInteger(v) ? fmt(v) : v < 10 ? v.toFixed(2) : v.toFixed(1);
}

function pct(part: number, whole: number): string {
  return whole === 0 ? "0%" : `${((part / whole) * 100).toFixed(1)}%`;
}

function esc(s: string): string {
  return s.replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]!);
}
