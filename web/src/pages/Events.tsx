import { useState } from "react";
import { useStore } from "../conn";

/** The event log: what sluice logged, newest last, by level. */
export function EventsPage() {
  const events = useStore((s) => s.events);
  const [level, setLevel] = useState("info");
  const rank: Record<string, number> = { debug: 0, info: 1, warn: 2, error: 3 };
  const shown = events.filter((e) => rank[e.level]! >= rank[level]!);
  return (
    <main className="page events">
      <select aria-label="log level" value={level} onChange={(e) => setLevel(e.target.value)}>
        <option value="debug">debug and up</option>
        <option value="info">info and up</option>
        <option value="warn">warnings and errors</option>
        <option value="error">errors</option>
      </select>
      <table className="grid log">
        <tbody>
          {shown.length === 0 && (
            <tr>
              <td className="muted">No events yet.</td>
            </tr>
          )}
          {shown.map((e, i) => (
            <tr key={i} className={`level-${e.level}`}>
              <td className="muted">{new Date(e.timestamp).toTimeString().slice(0, 8)}</td>
              <td>{e.level}</td>
              <td className="mono">{e.message}</td>
            </tr>
          ))}
        </tbody>
      </table>
    </main>
  );
}
