import { memo, useEffect, useLayoutEffect, useRef, useState } from "react";
import { send, useStore } from "./conn";
import type { FlowSummary } from "./types";
import { clock, humanDuration, humanSize, shortType } from "./format";

export const ROW_HEIGHT = 24;
/** Rows fetched beyond the visible ones on each side, so a scroll shows rows at once. */
const OVERSCAN = 30;

const COLUMNS: { key: string; label: string; sort: string | null; className: string }[] = [
  { key: "marks", label: "", sort: null, className: "c-marks" },
  { key: "method", label: "Method", sort: "method", className: "c-method" },
  { key: "url", label: "URL", sort: "url", className: "c-url" },
  { key: "status", label: "Status", sort: "status", className: "c-status" },
  { key: "type", label: "Type", sort: "type", className: "c-type" },
  { key: "size", label: "Size", sort: "size", className: "c-size" },
  { key: "duration", label: "Duration", sort: "duration", className: "c-duration" },
  { key: "time", label: "Time", sort: "time", className: "c-time" },
];

/**
 * The flow list: only the rows in sight exist in the page (and only those come from sluice), so
 * 100,000 flows scroll like 100. Following the newest flows while scrolled to the bottom.
 */
export function FlowList({ onOpen }: { onOpen(): void }) {
  const rows = useStore((s) => s.rows);
  const focusId = useStore((s) => s.state?.focusId ?? null);
  const scroller = useRef<HTMLDivElement>(null);
  const [height, setHeight] = useState(400);
  const [sort, setSort] = useState<{ column: string; desc: boolean }>({ column: "time", desc: false });
  const follow = useRef(true);
  const lastWindow = useRef("");

  const total = rows?.total ?? 0;

  const requestWindow = () => {
    const el = scroller.current;
    if (!el) return;
    const first = Math.floor(el.scrollTop / ROW_HEIGHT);
    const visible = Math.ceil(el.clientHeight / ROW_HEIGHT);
    const offset = Math.max(0, first - OVERSCAN);
    const limit = visible + 2 * OVERSCAN;
    const key = `${offset}:${limit}`;
    if (key === lastWindow.current) return;
    lastWindow.current = key;
    send({ type: "view", offset, limit }, "view");
  };

  useLayoutEffect(() => {
    const el = scroller.current;
    if (!el) return;
    const ro = new ResizeObserver(() => {
      setHeight(el.clientHeight);
      requestWindow();
    });
    ro.observe(el);
    return () => ro.disconnect();
  }, []);

  // New flows while following: stay at the bottom.
  useLayoutEffect(() => {
    const el = scroller.current;
    if (el && follow.current && sort.column === "time" && !sort.desc) {
      const bottom = total * ROW_HEIGHT - el.clientHeight;
      if (bottom > el.scrollTop) el.scrollTop = bottom;
      requestWindow();
    }
  }, [total]);

  // Keep the focused row in sight when the keyboard moves it.
  const focusIndex = rows?.focusIndex ?? -1;
  useEffect(() => {
    const el = scroller.current;
    if (!el || focusIndex < 0) return;
    const top = focusIndex * ROW_HEIGHT;
    if (top < el.scrollTop) el.scrollTop = top;
    else if (top + ROW_HEIGHT > el.scrollTop + el.clientHeight) el.scrollTop = top + ROW_HEIGHT - el.clientHeight;
  }, [focusIndex]);

  const onScroll = () => {
    const el = scroller.current!;
    follow.current = el.scrollTop + el.clientHeight >= el.scrollHeight - ROW_HEIGHT;
    requestWindow();
  };

  const sortBy = (column: string) => {
    const next = { column, desc: sort.column === column ? !sort.desc : false };
    setSort(next);
    send({ type: "view", sort: next.column, desc: next.desc }, "view");
  };

  const offset = rows?.offset ?? 0;
  return (
    <div className="flow-list" role="grid" aria-rowcount={total}>
      <div className="flow-row header" role="row">
        {COLUMNS.map((c) => (
          <span key={c.key} className={c.className} role="columnheader" onClick={c.sort ? () => sortBy(c.sort!) : undefined} data-sort={c.sort ?? undefined}>
            {c.label}
            {sort.column === c.sort ? (sort.desc ? " ▼" : " ▲") : ""}
          </span>
        ))}
      </div>
      <div className="flow-scroll" ref={scroller} onScroll={onScroll} data-height={height}>
        <div style={{ height: total * ROW_HEIGHT, position: "relative" }}>
          {rows?.rows.map((r, i) => (
            <Row key={r.id} flow={r} index={offset + i} focused={r.id === focusId} onOpen={onOpen} />
          ))}
        </div>
        {total === 0 && rows && <div className="empty">{rows.all ? `No flow matches the filter (${rows.all} hidden).` : "Waiting for flows: point a client at the proxy (HTTPS_PROXY) and trust its CA (`sluice ca`)."}</div>}
      </div>
    </div>
  );
}

interface RowProps {
  flow: FlowSummary;
  index: number;
  focused: boolean;
  onOpen(): void;
}

/** A row redraws only when its flow changed (its version), moved, or gained or lost the focus or highlight. */
const Row = memo(RowView, (a: RowProps, b: RowProps) => a.flow.id === b.flow.id && a.flow.v === b.flow.v && a.flow.highlight === b.flow.highlight && a.index === b.index && a.focused === b.focused && a.onOpen === b.onOpen);

function RowView({ flow, index, focused, onOpen }: RowProps) {
  const m = flow.marks;
  const classes = ["flow-row", `k-${flow.kind}`];
  if (focused) classes.push("focused");
  if (flow.highlight) classes.push("highlight");
  if (m.intercepted) classes.push("intercepted");
  if (m.marked) classes.push("marked");
  return (
    <div
      className={classes.join(" ")}
      role="row"
      data-id={flow.id}
      style={{ position: "absolute", top: index * ROW_HEIGHT, left: 0, right: 0, height: ROW_HEIGHT }}
      onClick={() => send({ type: "focus", id: flow.id })}
      onDoubleClick={() => {
        send({ type: "focus", id: flow.id });
        onOpen();
      }}
    >
      <span className="c-marks">
        <Marks flow={flow} />
      </span>
      <span className="c-method">{flow.method}</span>
      <span className="c-url" title={`${flow.scheme}://${flow.host}${flow.path}`}>
        <span className="host">{flow.host}</span>
        <span className="path">{flow.path}</span>
      </span>
      <span className="c-status">{flow.status ?? (m.error ? "ERR" : m.intercepted ? "⏸" : "…")}</span>
      <span className="c-type">{shortType(flow.type)}</span>
      <span className="c-size">{humanSize(flow.size)}</span>
      <span className="c-duration">{humanDuration(flow.duration)}</span>
      <span className="c-time">{clock(flow.time)}</span>
    </div>
  );
}

/** sluice's own marks: attempt n/m (or inferred), injected fault, throttle, time shaped, intercepted, marked, error. */
export function Marks({ flow }: { flow: FlowSummary }) {
  const m = flow.marks;
  return (
    <>
      {m.intercepted && <span className="mark m-intercepted" title={`intercepted at ${m.intercepted}: a resumes, x kills`}>⏸</span>}
      {m.marked && <span className="mark m-marked" title={`marked ${m.marked}`}>●</span>}
      {m.replay && <span className="mark m-replay" title={`replayed ${m.replay}`}>↻</span>}
      {m.attempt !== undefined && (
        <span className="mark m-attempt" title={m.inferred ? "a retry recognised by repetition (no SDK headers)" : "SDK attempt / max attempts"}>
          {m.inferred ? `attempt ${m.attempt} inferred` : `${m.attempt}/${m.maxAttempts ?? "?"}`}
        </span>
      )}
      {m.fault && <span className="mark m-fault" title="fault injected by sluice">fault:{m.fault}</span>}
      {!m.fault && m.throttle && <span className="mark m-throttle" title="throttling answer">{m.throttle}</span>}
      {m.shapedMs !== undefined && <span className="mark m-shaped" title="time spent in a shaping queue">shaped {humanDuration(m.shapedMs / 1000)}</span>}
      {m.error && <span className="mark m-error" title={m.error}>error</span>}
      {m.websocket && <span className="mark m-ws" title="WebSocket">ws</span>}
      {m.comment && <span className="mark m-comment" title="has a comment">✎</span>}
    </>
  );
}
