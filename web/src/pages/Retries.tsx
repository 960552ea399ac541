import { useState } from "react";
import { useStore } from "../conn";
import type { RetriesPage as Data, SdkCall, SeriesBucket } from "../types";
import { clock } from "../format";

/**
 * Retries per AWS service and operation (from the retries addon: every SDK call since start),
 * a live plot of requests, throttles and retries per second and the back-off, and the SDK calls
 * in the view: click one for its attempts as a timeline.
 */
export function RetriesPage({ onOpenFlow }: { onOpenFlow(id: string): void }) {
  const data = useStore((s) => s.retries);
  const [callId, setCallId] = useState<string | null>(null);
  if (!data) return <main className="page">loading…</main>;
  if (!data.loaded) return <main className="page">The retries addon is not loaded in this front end.</main>;
  const call = data.calls.find((c) => c.id === callId) ?? null;
  const t = data.totals;
  return (
    <main className="page retries">
      <section className="cards">
        <Card label="requests" value={t?.requests ?? 0} />
        <Card label="retries" value={t?.retries ?? 0} />
        <Card label="throttled" value={t?.throttles ?? 0} share={t && t.requests ? t.throttles / t.requests : null} />
        <Card label="gave up" value={t?.outcomes["gave-up"] ?? 0} />
        <Card label="back-off" value={`${(t?.backoffSeconds ?? 0).toFixed(2)} s`} />
        <Card label="calls open" value={data.open} />
      </section>
      <Plot data={data} />
      <table className="grid ops">
        <thead>
          <tr>
            <th>service</th>
            <th>operation</th>
            <th>calls</th>
            <th>requests</th>
            <th>retries</th>
            <th>throttled</th>
            <th>gave up</th>
            <th>back-off</th>
            <th>ok</th>
            <th>retried ok</th>
          </tr>
        </thead>
        <tbody>
          {data.operations.length === 0 && (
            <tr>
              <td colSpan={10} className="muted">
                No requests seen yet.
              </td>
            </tr>
          )}
          {data.operations.map((o) => (
            <tr key={`${o.service} ${o.operation}`}>
              <td>{o.service}</td>
              <td>{o.operation}</td>
              <td className="num">{o.invocations}</td>
              <td className="num">{o.requests}</td>
              <td className="num">{o.inferredRetries ? `${o.retries} (${o.inferredRetries} inferred)` : o.retries}</td>
              <td className="num">{o.throttles ? `${o.throttles} (${Math.round((o.throttles / o.requests) * 100)}%)` : 0}</td>
              <td className="num">{o.outcomes["gave-up"]}</td>
              <td className="num">{o.backoffSeconds.toFixed(2)} s</td>
              <td className="num">{o.outcomes.ok}</td>
              <td className="num">{o.outcomes.retried}</td>
            </tr>
          ))}
        </tbody>
      </table>
      <div className="calls-split">
        <div className="calls">
          <h3>SDK calls in the view (most attempts first)</h3>
          <table className="grid calls-table">
            <tbody>
              {data.calls.map((c) => (
                <tr key={c.id} className={c.id === callId ? "selected" : ""} onClick={() => setCallId(c.id)} data-call={c.id}>
                  <td>{c.service}</td>
                  <td>{c.operation}</td>
                  <td className="num">
                    {c.attempts.length} attempt{c.attempts.length === 1 ? "" : "s"}
                    {c.inferred ? " (inferred)" : ""}
                  </td>
                  <td className={`outcome-${c.outcome}`}>{c.outcome}</td>
                  <td className="muted">{clock(c.attempts[0]!.start)}</td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
        <div className="timeline-box">{call ? <Timeline call={call} onOpenFlow={onOpenFlow} /> : <div className="muted">Click an SDK call to see its attempts.</div>}</div>
      </div>
    </main>
  );
}

function Card({ label, value, share }: { label: string; value: number | string; share?: number | null }) {
  return (
    <div className="card" data-card={label}>
      <div className="card-value">
        {typeof value === "number" ? value.toLocaleString() : value}
        {share != null && <span className="muted"> {Math.round(share * 100)}%</span>}
      </div>
      <div className="card-label">{label}</div>
    </div>
  );
}

const SERIES: { key: keyof SeriesBucket; label: string; cls: string }[] = [
  { key: "requests", label: "requests/s", cls: "s-requests" },
  { key: "throttles", label: "throttles/s", cls: "s-throttles" },
  { key: "retries", label: "retries/s", cls: "s-retries" },
  { key: "backoff", label: "clients in back-off", cls: "s-backoff" },
];

/** The last two minutes (or the whole run, if shorter) per bucket, as per-second rates. */
function Plot({ data }: { data: Data }) {
  const series = data.series;
  const w = 900, h = 180, pad = 36;
  if (!series || series.buckets.length === 0) return <div className="plot muted">The plot starts with the first request.</div>;
  const width = series.bucketSeconds;
  const keep = Math.max(2, Math.ceil(120 / width));
  // Quiet seconds up to now are zeros, so the plot moves with the clock, not only with traffic.
  const upToNow = Math.max(series.buckets.length, Math.floor((Date.now() / 1000 - series.start) / width) + 1);
  const padded = [...series.buckets, ...Array.from({ length: Math.min(keep, upToNow - series.buckets.length) }, () => ({ requests: 0, throttles: 0, retries: 0, errors: 0, giveups: 0, backoff: 0 }))];
  const buckets = padded.slice(-keep);
  const start = series.start + (upToNow - buckets.length) * width;
  const rate = (b: SeriesBucket, k: keyof SeriesBucket) => b[k] / width;
  const max = Math.max(1, ...buckets.flatMap((b) => SERIES.map((s) => rate(b, s.key))));
  const x = (i: number) => pad + (i / Math.max(1, buckets.length - 1)) * (w - pad - 8);
  const y = (v: number) => h - 20 - (v / max) * (h - 30);
  return (
    <figure className="plot">
      <svg viewBox={`0 0 ${w} ${h}`} role="img" aria-label="requests, throttles and retries per second, and back-off">
        <line x1={pad} y1={h - 20} x2={w - 8} y2={h - 20} className="axis" />
        <line x1={pad} y1={10} x2={pad} y2={h - 20} className="axis" />
        <text x={pad - 4} y={14} className="tick" textAnchor="end">
          {max >= 10 ? Math.round(max) : max.toFixed(1)}
        </text>
        <text x={pad - 4} y={h - 20} className="tick" textAnchor="end">
          0
        </text>
        <text x={pad} y={h - 4} className="tick">
          {clock(start).slice(0, 8)}
        </text>
        <text x={w - 8} y={h - 4} className="tick" textAnchor="end">
          {clock(start + buckets.length * width).slice(0, 8)}
        </text>
        {SERIES.map((s) => (
          <polyline key={s.key} className={`line ${s.cls}`} points={buckets.map((b, i) => `${x(i)},${y(rate(b, s.key))}`).join(" ")} />
        ))}
      </svg>
      <figcaption>
        {SERIES.map((s) => (
          <span key={s.key} className={`legend ${s.cls}`}>
            ■ {s.label}
          </span>
        ))}
        <span className="muted"> · {width}s buckets</span>
      </figcaption>
    </figure>
  );
}

/** One SDK call's attempts on a time axis: each attempt's span, its status, and the wait before the next. */
function Timeline({ call, onOpenFlow }: { call: SdkCall; onOpenFlow(id: string): void }) {
  const t0 = call.attempts[0]!.start;
  const t1 = Math.max(...call.attempts.map((a) => a.end ?? a.start));
  const span = Math.max(t1 - t0, 0.001);
  return (
    <div className="timeline" data-timeline={call.id}>
      <h3>
        {call.service} {call.operation}: {call.attempts.length} attempt{call.attempts.length === 1 ? "" : "s"}
        {call.maxAttempts ? ` of at most ${call.maxAttempts}` : ""} · {call.outcome}
      </h3>
      <div className="muted">invocation {call.id}</div>
      <table className="attempts">
        <tbody>
          {call.attempts.map((a) => (
            <tr key={a.flowId} onClick={() => onOpenFlow(a.flowId)} title="open this attempt's flow">
              <th>#{a.attempt}</th>
              <td className={a.throttle || a.fault ? "k-throttle" : a.status && a.status < 400 ? "k-ok" : "k-error"}>
                {a.status ?? "no response"} {a.throttle ?? ""} {a.fault ? `(fault: ${a.fault})` : ""} {a.error ?? ""}
              </td>
              <td className="muted">{a.backoffMs !== null ? `waited ${(a.backoffMs / 1000).toFixed(3)} s` : ""}</td>
              <td className="bar-cell">
                <span className="span" style={{ left: `${((a.start - t0) / span) * 100}%`, width: `${Math.max(0.5, (((a.end ?? a.start) - a.start) / span) * 100)}%` }} />
              </td>
              <td className="num muted">+{((a.start - t0) * 1000).toFixed(0)} ms</td>
            </tr>
          ))}
        </tbody>
      </table>
    </div>
  );
}
