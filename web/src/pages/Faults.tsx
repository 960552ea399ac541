import { useState } from "react";
import { quote, run, useStore } from "../conn";

/** Fault rules, live: list, add, enable, disable and remove through the fault.* commands. */
export function FaultsPage() {
  const data = useStore((s) => s.faults);
  const [spec, setSpec] = useState("");
  const [error, setError] = useState<string | null>(null);
  if (!data) return <main className="page">loading…</main>;
  if (!data.loaded) return <main className="page">Fault injection is not loaded in this front end.</main>;
  const add = async () => {
    const r = await run(`fault.add ${spec}`);
    if (r.ok) {
      setSpec("");
      setError(null);
    } else setError(r.text);
  };
  return (
    <main className="page faults">
      <div className="add-rule">
        <input
          aria-label="new fault rule"
          spellCheck={false}
          value={spec}
          placeholder="~svc s3 & ~m PUT => throttle p=0.5   (FILTER => ACTION [k=v …])"
          onChange={(e) => setSpec(e.target.value)}
          onKeyDown={(e) => e.key === "Enter" && void add()}
        />
        <button className="primary" onClick={() => void add()}>
          Add rule
        </button>
        {error && (
          <div className="filter-error" role="alert">
            {error}
          </div>
        )}
      </div>
      <table className="grid">
        <thead>
          <tr>
            <th>id</th>
            <th>on</th>
            <th>rule</th>
            <th>source</th>
            <th>matched</th>
            <th>injected</th>
            <th />
          </tr>
        </thead>
        <tbody>
          {data.rules.length === 0 && (
            <tr>
              <td colSpan={7} className="muted">
                No fault rules. Add one above, or start sluice with --fault 'FILTER =&gt; ACTION'.
              </td>
            </tr>
          )}
          {data.rules.map((r) => (
            <tr key={r.id} data-rule={r.id} className={r.enabled ? "" : "disabled"}>
              <td>{r.id}</td>
              <td>
                <input type="checkbox" aria-label={`enable rule ${r.id}`} checked={r.enabled} onChange={() => void run(`fault.${r.enabled ? "disable" : "enable"} ${quote(r.id)}`)} />
              </td>
              <td className="mono">{r.rule}</td>
              <td>{r.source}</td>
              <td className="num">{r.matched}</td>
              <td className="num">{r.injected}</td>
              <td>
                <button onClick={() => void run(`fault.remove ${quote(r.id)}`)}>Remove</button>
              </td>
            </tr>
          ))}
        </tbody>
      </table>
    </main>
  );
}
