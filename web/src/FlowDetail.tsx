import { useEffect, useState } from "react";
import { applyEdit, editText, quote, run, say, send, useStore } from "./conn";
import type { ConnectionDetail, FlowDetail, MessageDetail } from "./types";
import { Body } from "./Body";
import { Marks } from "./FlowList";
import { clock, humanDuration } from "./format";
import { exportFlow } from "./FlowMenu";

const TABS = ["Request", "Response", "Connection", "Timing", "WebSocket", "Error", "Comment"] as const;
type Tab = (typeof TABS)[number];

function tabsFor(flow: FlowDetail): Tab[] {
  return TABS.filter((t) => (t === "WebSocket" ? !!flow.websocket : t === "Error" ? !!flow.error : true));
}

export function FlowDetailPane({ onClose }: { onClose(): void }) {
  const detail = useStore((s) => s.detail);
  const focusId = useStore((s) => s.state?.focusId ?? null);
  const [tab, setTab] = useState<Tab>("Request");
  const flow = detail?.flow ?? null;

  useEffect(() => {
    // From the state updater, not the closure: two Tabs pressed before React re-renders would
    // otherwise both step from the same tab.
    const onTab = (e: Event) => {
      if (!flow) return;
      const tabs = tabsFor(flow);
      const step = (e as CustomEvent<number>).detail;
      setTab((current) => tabs[(tabs.indexOf(current) + step + tabs.length) % tabs.length]!);
    };
    window.addEventListener("sluice-tab", onTab);
    return () => window.removeEventListener("sluice-tab", onTab);
  }, [flow]);

  // Until sluice answers for the newly focused flow, show nothing rather than the previous flow:
  // an Edit or Resume clicked in that moment would act on the wrong flow.
  if (!detail || detail.id !== focusId) return <section className="detail" aria-busy="true" />;
  if (!flow) {
    return (
      <section className="detail">
        <div className="detail-head">
          <span>This flow is no longer in the view.</span>
          <button onClick={onClose}>Close</button>
        </div>
      </section>
    );
  }
  const tabs = tabsFor(flow);
  const shown = tabs.includes(tab) ? tab : "Request";
  const id = flow.summary.id;
  return (
    <section className="detail" data-flow={id}>
      <div className="detail-head">
        <nav className="tabs" role="tablist">
          {tabs.map((t) => (
            <button key={t} role="tab" aria-selected={t === shown} className={t === shown ? "active" : ""} onClick={() => setTab(t)}>
              {t}
            </button>
          ))}
        </nav>
        <span className="spacer" />
        <span className="marks-inline">
          <Marks flow={flow.summary} />
        </span>
        {flow.intercepted && (
          <>
            <button className="primary" onClick={() => void run(`flow.resume ${id}`)} title="a">
              Resume
            </button>
            <button onClick={() => void run(`flow.kill ${id}`)} title="x">
              Kill
            </button>
          </>
        )}
        <button onClick={() => void run(`replay.client ${id}`)} title="r">
          Replay
        </button>
        <button onClick={() => void run(`flow.duplicate ${id}`)} title="D">
          Duplicate
        </button>
        <button onClick={() => void run(`flow.mark.toggle ${id}`)} title="m">
          {flow.marked ? "Unmark" : "Mark"}
        </button>
        <button onClick={() => void run(`flow.delete ${id}`)} title="d / Del">
          Delete
        </button>
        <select aria-label="export" value="" onChange={(e) => void exportFlow(id, e.target.value)}>
          <option value="">Export…</option>
          <option value="curl">copy as curl</option>
          <option value="httpie">copy as HTTPie</option>
          <option value="raw_request">copy request as raw HTTP</option>
          <option value="raw_response">copy response as raw HTTP</option>
          <option value="har">copy as HAR</option>
        </select>
        <button onClick={onClose} title="Esc">
          ✕
        </button>
      </div>
      <div className="detail-body">
        {shown === "Request" && <MessageView flow={flow} part="request" />}
        {shown === "Response" && <MessageView flow={flow} part="response" />}
        {shown === "Connection" && <ConnectionView flow={flow} />}
        {shown === "Timing" && <TimingView flow={flow} />}
        {shown === "WebSocket" && <WebSocketView flow={flow} />}
        {shown === "Error" && <div className="error-text">{flow.error?.msg}</div>}
        {shown === "Comment" && <CommentView flow={flow} />}
      </div>
    </section>
  );
}

function Headers({ headers }: { headers: [string, string][] }) {
  return (
    <table className="headers">
      <tbody>
        {headers.map(([k, v], i) => (
          <tr key={i}>
            <th>{k}</th>
            <td>{v}</td>
          </tr>
        ))}
      </tbody>
    </table>
  );
}

function MessageView({ flow, part }: { flow: FlowDetail; part: "request" | "response" }) {
  const [editing, setEditing] = useState<{ original: string; text: string } | null>(null);
  const id = flow.summary.id;
  useEffect(() => setEditing(null), [id, part]);
  const m: MessageDetail | null = part === "request" ? flow.request : flow.response;
  const startEdit = async () => {
    const r = await editText(id, part);
    if (!r.ok) return say(r.text, true);
    setEditing({ original: r.text, text: r.text });
  };
  if (!m) {
    return <div className="muted">{flow.error ? `no response: ${flow.error.msg}` : flow.intercepted ? "no response yet: the request is intercepted (Resume sends it on)" : "waiting for the response…"}</div>;
  }
  if (editing) {
    return (
      <div className="editor">
        <div className="muted">Edit the start line, the headers (one per line) and, after a blank line, the body. Apply, then Resume to send it on.</div>
        <textarea aria-label={`edit ${part}`} spellCheck={false} value={editing.text} onChange={(e) => setEditing({ ...editing, text: e.target.value })} />
        <div className="row">
          <button
            className="primary"
            onClick={async () => {
              const r = await applyEdit(id, part, editing.original, editing.text);
              say(r.text, !r.ok);
              if (r.ok) setEditing(null);
            }}
          >
            Apply
          </button>
          <button onClick={() => setEditing(null)}>Cancel</button>
        </div>
      </div>
    );
  }
  const startLine =
    part === "request" ? (
      <>
        <b>{flow.request.method}</b> {flow.request.prettyUrl} <span className="muted">{m.httpVersion}</span>
      </>
    ) : (
      <>
        <span className="muted">{m.httpVersion}</span>{" "}
        <b className={flow.summary.kind === "ok" ? "" : `k-${flow.summary.kind}`}>
          {flow.response!.statusCode} {flow.response!.reason}
        </b>
      </>
    );
  return (
    <div className="message">
      <div className="start-line">
        {startLine}
        <span className="spacer" />
        <button onClick={() => void startEdit()} title="e">
          Edit
        </button>
      </div>
      {flow.intercepted && <div className="banner warn">⏸ intercepted: edit it, then Resume (a) or Kill (x)</div>}
      <Headers headers={m.headers} />
      {m.trailers && (
        <>
          <div className="muted">trailers</div>
          <Headers headers={m.trailers} />
        </>
      )}
      <Body flowId={id} part={part} message={m} />
    </div>
  );
}

function Field({ name, value }: { name: string; value: string | number | null | undefined | boolean }) {
  return (
    <tr>
      <th>{name}</th>
      <td>{value === null || value === undefined || value === "" ? "-" : String(value)}</td>
    </tr>
  );
}

function ConnectionTable({ title, c, server, httpVersion }: { title: string; c: ConnectionDetail; server: boolean; httpVersion?: string }) {
  return (
    <div className="conn">
      <h3>{title}</h3>
      <table className="fields">
        <tbody>
          <Field name="address" value={c.address} />
          {server && <Field name="peer" value={c.peer} />}
          <Field name={server ? "local" : "listening on"} value={c.local} />
          {server && c.via && <Field name="via" value={c.via} />}
          <Field name="HTTP version" value={httpVersion} />
          <Field name="TLS" value={c.tls ? c.tlsVersion ?? "yes" : "no"} />
          {c.tls && <Field name="SNI" value={c.sni} />}
          {c.tls && <Field name="ALPN" value={c.alpn} />}
          {c.tls && !server && <Field name="ALPN offered" value={c.alpnOffers.join(", ")} />}
          {c.tls && <Field name="cipher" value={c.cipher} />}
          {c.error && <Field name="error" value={c.error} />}
        </tbody>
      </table>
      {c.certificates.map((cert, i) => (
        <table className="fields cert" key={i}>
          <caption>certificate {i + 1} of the chain</caption>
          <tbody>
            <Field name="subject" value={cert.subject} />
            <Field name="issuer" value={cert.issuer} />
            <Field name="valid from" value={cert.validFrom} />
            <Field name="valid to" value={cert.validTo} />
            <Field name="alt names" value={cert.altNames} />
            <Field name="sha256" value={cert.fingerprint256} />
          </tbody>
        </table>
      ))}
    </div>
  );
}

function ConnectionView({ flow }: { flow: FlowDetail }) {
  return (
    <div className="connections">
      <ConnectionTable title="Client connection" c={flow.client} server={false} httpVersion={flow.request.httpVersion} />
      <ConnectionTable title="Server connection" c={flow.server} server httpVersion={flow.response?.httpVersion} />
      <SluiceFacts flow={flow} />
    </div>
  );
}

function SluiceFacts({ flow }: { flow: FlowDetail }) {
  const rows: [string, string][] = [["id", flow.summary.id]];
  if (flow.aws) for (const [k, v] of Object.entries(flow.aws)) if (v !== null) rows.push([`aws ${k}`, String(v)]);
  if (flow.retry) rows.push(["retry", JSON.stringify(flow.retry)]);
  if (flow.fault) rows.push(["injected fault", JSON.stringify(flow.fault)]);
  if (flow.shaping) rows.push(["shaping", JSON.stringify(flow.shaping)]);
  if (flow.marked) rows.push(["marked", flow.marked]);
  return (
    <div className="conn">
      <h3>sluice</h3>
      <table className="fields">
        <tbody>
          {rows.map(([k, v]) => (
            <Field key={k} name={k} value={v} />
          ))}
        </tbody>
      </table>
    </div>
  );
}

/** mitmproxy's timestamps as a waterfall from the first event. */
function TimingView({ flow }: { flow: FlowDetail }) {
  const c = flow.client, s = flow.server, q = flow.request, r = flow.response;
  const events: [string, number | null][] = [
    ["client connected", c.timestampStart],
    ["client TLS established", c.tls ? c.timestampTlsSetup : null],
    ["request started", q.timestampStart],
    ["request complete", q.timestampEnd],
    ["server connection initiated", s.timestampStart],
    ["server TCP connected", s.timestampTcpSetup],
    ["server TLS established", s.tls ? s.timestampTlsSetup : null],
    ["response started", r?.timestampStart ?? null],
    ["response complete", r?.timestampEnd ?? null],
    ["error", flow.error?.timestamp ?? null],
    ["server disconnected", s.timestampEnd],
    ["client disconnected", c.timestampEnd],
  ];
  const known = events.filter((e): e is [string, number] => e[1] !== null);
  if (known.length === 0) return <div className="muted">No timestamps yet.</div>;
  const t0 = Math.min(...known.map((e) => e[1]));
  const t1 = Math.max(...known.map((e) => e[1]));
  const span = Math.max(t1 - t0, 1e-6);
  return (
    <div className="timing">
      <table className="waterfall">
        <tbody>
          {known
            .sort((a, b) => a[1] - b[1])
            .map(([name, t]) => (
              <tr key={name}>
                <th>{name}</th>
                <td className="bar-cell">
                  <span className="bar" style={{ left: `${((t - t0) / span) * 100}%` }} />
                </td>
                <td className="num">+{((t - t0) * 1000).toFixed(1)} ms</td>
                <td className="muted">{clock(t)}</td>
              </tr>
            ))}
        </tbody>
      </table>
      <div className="muted">total {humanDuration(flow.summary.duration)}</div>
    </div>
  );
}

function WebSocketView({ flow }: { flow: FlowDetail }) {
  const ws = flow.websocket!;
  return (
    <div className="ws">
      {ws.closeCode !== null && (
        <div className="muted">
          closed by {ws.closedByClient ? "client" : "server"}: {ws.closeCode} {ws.closeReason}
        </div>
      )}
      <table className="ws-messages">
        <tbody>
          {ws.messages.map((m, i) => (
            <tr key={i} className={m.fromClient ? "from-client" : "from-server"}>
              <td className="muted">{clock(m.timestamp)}</td>
              <td>{m.fromClient ? "→" : "←"}</td>
              <td className="muted">{m.type}{m.dropped ? " dropped" : ""}{m.injected ? " injected" : ""}</td>
              <td className="ws-text">{m.text}</td>
              <td className="num muted">{m.size}b</td>
            </tr>
          ))}
        </tbody>
      </table>
    </div>
  );
}

function CommentView({ flow }: { flow: FlowDetail }) {
  const [text, setText] = useState(flow.comment);
  useEffect(() => setText(flow.comment), [flow.summary.id, flow.comment]);
  return (
    <div className="editor">
      <textarea aria-label="comment" value={text} onChange={(e) => setText(e.target.value)} placeholder="A note on this flow (saved with it in .mitm files)" />
      <div className="row">
        <button className="primary" onClick={() => void run(`flow.comment ${flow.summary.id} ${quote(text)}`)}>
          Save comment
        </button>
      </div>
    </div>
  );
}

export { send };
