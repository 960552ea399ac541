import { useRef, useState } from "react";
import { api, getStore, request, run, say } from "./conn";

/** Exports a flow as curl, HTTPie or raw HTTP: shown in a dialog and copied to the clipboard. */
export async function exportFlow(id: string, format: string): Promise<void> {
  if (!format) return;
  const r = await request({ type: "export", id, format });
  if (!r.ok) return say(r.text, true);
  showExport(format, r.text);
  try {
    await navigator.clipboard.writeText(r.text);
    say(`copied as ${format} to the clipboard`);
  } catch {
    say(`${format} command shown: the browser did not allow copying to the clipboard`);
  }
}

let showExport: (format: string, text: string) => void = () => {};

/** Save and open captures, clear the view, and the export dialog. */
export function FlowMenu() {
  const [exported, setExported] = useState<{ format: string; text: string } | null>(null);
  const file = useRef<HTMLInputElement>(null);
  showExport = (format, text) => setExported({ format, text });
  const save = (flows: string, format: string) => {
    const a = document.createElement("a");
    a.href = api("/api/save", { flows, format });
    a.download = `sluice-flows.${format}`;
    document.body.append(a);
    a.click();
    a.remove();
  };
  const open = async (f: File) => {
    say(`opening ${f.name}…`);
    const r = await fetch(api("/api/open", { name: f.name }), { method: "POST", body: f });
    say((await r.text()).trim(), !r.ok);
  };
  return (
    <div className="menu">
      <select
        aria-label="save flows"
        value=""
        onChange={(e) => {
          const [flows, format] = e.target.value.split(" ");
          if (flows && format) save(flows, format);
        }}
      >
        <option value="">Save…</option>
        <option value="@shown mitm">shown flows as .mitm</option>
        <option value="@shown har">shown flows as .har</option>
        <option value="@shown sqlite">shown flows as .sqlite</option>
        <option value="@all mitm">all flows as .mitm</option>
        <option value="@all har">all flows as .har</option>
        <option value="@all sqlite">all flows as .sqlite</option>
      </select>
      <button onClick={() => file.current?.click()}>Open…</button>
      <input
        ref={file}
        type="file"
        aria-label="open a capture file"
        accept=".mitm,.flows,.har,.sqlite,.db"
        style={{ display: "none" }}
        onChange={(e) => {
          const f = e.target.files?.[0];
          if (f) void open(f);
          e.target.value = "";
        }}
      />
      <button onClick={() => getStore().rows?.all && void run("view.clear")} title="z">
        Clear
      </button>
      {exported && (
        <div className="dialog" role="dialog" aria-label={`exported as ${exported.format}`}>
          <div className="dialog-head">
            <b>as {exported.format}</b>
            <span className="spacer" />
            <button onClick={() => void navigator.clipboard.writeText(exported.text).then(() => say("copied"), () => say("the browser did not allow copying", true))}>Copy</button>
            <button onClick={() => setExported(null)}>Close</button>
          </div>
          <textarea className="export-text" readOnly value={exported.text} />
        </div>
      )}
    </div>
  );
}
