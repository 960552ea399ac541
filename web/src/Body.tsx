import { useEffect, useMemo, useState } from "react";
import { api } from "./conn";
import type { MessageDetail } from "./types";
import { humanSize } from "./format";
// Shared with the console, so both show a body alike (see the module's comment).
import { bodyKind, hexDump, prettyMarkup } from "../../src/ui/body-format";

type View = "auto" | "text" | "hex" | "raw";

/** Bytes shown as hex at most; text is shown whole up to this many bytes. */
const MAX_HEX = 64 * 1024;
const MAX_PRETTY = 2 * 1024 * 1024;



/**
 * A message body, fetched decoded from sluice and shown by content type: JSON as a foldable tree,
 * XML and HTML indented, forms as a table, images as images, binary as hex; a raw view, search
 * inside, and download of the body as sent.
 */
export function Body({ flowId, part, message }: { flowId: string; part: "request" | "response"; message: MessageDetail }) {
  const [bytes, setBytes] = useState<Uint8Array | null>(null);
  const [problem, setProblem] = useState<string | null>(null);
  const [decodedFrom, setDecodedFrom] = useState<string | null>(null);
  const [view, setView] = useState<View>("auto");
  const [search, setSearch] = useState("");
  const url = api(`/api/flows/${flowId}/${part}/content`);
  const key = `${flowId}:${part}:${message.contentLength}:${message.complete}:${message.headers.length}`;

  useEffect(() => {
    setBytes(null);
    setProblem(null);
    if (!message.kept) {
      setProblem(message.streamed ? `body streamed through without being kept (${message.contentLength} bytes; raise stream_large_bodies to keep it)` : "body not complete yet");
      return;
    }
    if (message.contentLength === 0) return setBytes(new Uint8Array());
    let cancelled = false;
    fetch(url)
      .then(async (r) => {
        const data = new Uint8Array(await r.arrayBuffer());
        if (cancelled) return;
        if (!r.ok) return setProblem(new TextDecoder().decode(data));
        setDecodedFrom(r.headers.get("x-sluice-decoded-from"));
        const err = r.headers.get("x-sluice-decode-error");
        if (err) setProblem(`cannot decode ${message.contentEncoding}: ${err}; raw bytes shown`);
        setBytes(data);
      })
      .catch((e: Error) => !cancelled && setProblem(e.message));
    return () => {
      cancelled = true;
    };
  }, [key]);

  const kind = useMemo(() => (bytes ? bodyKind(message.contentType, bytes) : "text"), [bytes, message.contentType]);
  const text = useMemo(() => (bytes && kind !== "image" && kind !== "binary" ? new TextDecoder().decode(bytes.subarray(0, MAX_PRETTY)) : ""), [bytes, kind]);

  if (problem && !bytes) return <div className="muted body-note">{problem}</div>;
  if (!bytes) return <div className="muted body-note">loading body…</div>;
  if (bytes.length === 0) return <div className="muted body-note">no body</div>;

  const effective: View = view === "auto" ? "auto" : view;
  const note = [decodedFrom ? `decoded from ${decodedFrom}` : null, `${humanSize(bytes.length)} ${kind}`, bytes.length > MAX_PRETTY && kind !== "image" && kind !== "binary" ? `showing the first ${humanSize(MAX_PRETTY)}` : null, problem].filter(Boolean).join(" · ");
  return (
    <div className="body">
      <div className="body-bar">
        <span className="muted">{note}</span>
        <span className="spacer" />
        <input className="body-search" placeholder="search in body" value={search} onChange={(e) => setSearch(e.target.value)} aria-label="search in body" />
        <select aria-label="body view" value={view} onChange={(e) => setView(e.target.value as View)}>
          <option value="auto">{kind}</option>
          <option value="text">text</option>
          <option value="raw">raw</option>
          <option value="hex">hex</option>
        </select>
        <a className="button" href={api(`/api/flows/${flowId}/${part}/content`, { download: "1" })} download>
          Download
        </a>
      </div>
      <div className="body-content" data-kind={effective === "auto" ? kind : effective}>
        {effective === "hex" || (effective === "auto" && kind === "binary") ? (
          <Highlighted text={hexDump(bytes.subarray(0, MAX_HEX)).join("\n") + (bytes.length > MAX_HEX ? `\n… ${bytes.length - MAX_HEX} more bytes (Download for all)` : "")} search={search} />
        ) : effective === "raw" || effective === "text" ? (
          <Highlighted text={kind === "image" || kind === "binary" ? new TextDecoder().decode(bytes.subarray(0, MAX_PRETTY)) : text} search={search} />
        ) : kind === "image" ? (
          <img className="body-image" src={url} alt={`${part} body`} />
        ) : kind === "json" ? (
          <JsonView text={text} search={search} />
        ) : kind === "xml" || kind === "html" ? (
          <Highlighted text={prettyMarkup(text, kind === "html").join("\n")} search={search} />
        ) : kind === "form" ? (
          <FormTable text={text} search={search} />
        ) : (
          <Highlighted text={text} search={search} />
        )}
      </div>
    </div>
  );
}

/** Text with every (case-insensitive) match of `search` marked, and a count of matches. */
export function Highlighted({ text, search }: { text: string; search: string }) {
  const parts = useMemo(() => {
    if (!search) return null;
    const out: (string | { m: string })[] = [];
    const lower = text.toLowerCase();
    const needle = search.toLowerCase();
    let i = 0;
    for (let j = lower.indexOf(needle); j >= 0 && out.length < 20000; j = lower.indexOf(needle, j + needle.length)) {
      out.push(text.slice(i, j), { m: text.slice(j, j + needle.length) });
      i = j + needle.length;
    }
    out.push(text.slice(i));
    return out;
  }, [text, search]);
  if (!parts) return <pre>{text}</pre>;
  const count = parts.filter((p) => typeof p !== "string").length;
  return (
    <>
      <div className="muted search-count">{count ? `${count} match${count === 1 ? "" : "es"}` : "no match"}</div>
      <pre>{parts.map((p, i) => (typeof p === "string" ? p : <mark key={i}>{p.m}</mark>))}</pre>
    </>
  );
}

function JsonView({ text, search }: { text: string; search: string }) {
  const parsed = useMemo(() => {
    try {
      return { ok: true as const, value: JSON.parse(text) as unknown };
    } catch {
      return { ok: false as const };
    }
  }, [text]);
  if (!parsed.ok) return <Highlighted text={text} search={search} />;
  if (search) return <Highlighted text={JSON.stringify(parsed.value, null, 2)} search={search} />;
  return (
    <pre className="json">
      <JsonNode value={parsed.value} name={null} last depth={0} />
    </pre>
  );
}

/** One JSON value; objects and arrays fold (click the bracket). */
function JsonNode({ value, name, last, depth }: { value: unknown; name: string | null; last: boolean; depth: number }) {
  const [open, setOpen] = useState(depth < 6);
  const indent = "  ".repeat(depth);
  const key = name !== null ? <span className="j-key">{JSON.stringify(name)}</span> : null;
  const comma = last ? "" : ",";
  if (value === null || typeof value !== "object") {
    const cls = value === null ? "j-null" : typeof value === "string" ? "j-str" : typeof value === "number" ? "j-num" : "j-bool";
    return (
      <div>
        {indent}
        {key}
        {key && ": "}
        <span className={cls}>{JSON.stringify(value)}</span>
        {comma}
      </div>
    );
  }
  const array = Array.isArray(value);
  const entries = array ? (value as unknown[]).map((v, i) => [String(i), v] as const) : Object.entries(value as Record<string, unknown>);
  const [o, c] = array ? ["[", "]"] : ["{", "}"];
  if (entries.length === 0) {
    return (
      <div>
        {indent}
        {key}
        {key && ": "}
        {o}
        {c}
        {comma}
      </div>
    );
  }
  return (
    <div>
      {indent}
      {key}
      {key && ": "}
      <span className="j-fold" onClick={() => setOpen(!open)} title={open ? "fold" : "unfold"}>
        {open ? "▾" : "▸"}
        {o}
      </span>
      {open ? (
        <>
          {entries.map(([k, v], i) => (
            <JsonNode key={k} value={v} name={array ? null : k} last={i === entries.length - 1} depth={depth + 1} />
          ))}
          {indent}
          {c}
          {comma}
        </>
      ) : (
        <span className="muted">
          {" "}
          {entries.length} {array ? "items" : "keys"} {c}
          {comma}
        </span>
      )}
    </div>
  );
}

function FormTable({ text, search }: { text: string; search: string }) {
  const params = [...new URLSearchParams(text.trim())];
  if (params.length === 0) return <Highlighted text={text} search={search} />;
  return (
    <table className="headers form">
      <tbody>
        {params
          .filter(([k, v]) => !search || `${k}=${v}`.toLowerCase().includes(search.toLowerCase()))
          .map(([k, v], i) => (
            <tr key={i}>
              <th>{k}</th>
              <td>{v}</td>
            </tr>
          ))}
      </tbody>
    </table>
  );
}


