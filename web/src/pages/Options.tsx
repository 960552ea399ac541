import { useState } from "react";
import { quote, run, useStore } from "../conn";
import type { OptionRow } from "../types";

/** Every option with its type, value and help; a change runs `set NAME=VALUE` and a refusal shows inline. */
export function OptionsPage() {
  const options = useStore((s) => s.options);
  const [query, setQuery] = useState("");
  if (!options) return <main className="page">loading…</main>;
  const shown = options.filter((o) => !query || o.name.includes(query) || o.help.toLowerCase().includes(query.toLowerCase()));
  return (
    <main className="page options">
      <input className="options-search" aria-label="search options" placeholder="search options" value={query} onChange={(e) => setQuery(e.target.value)} />
      <table className="grid">
        <tbody>
          {shown.map((o) => (
            <OptionEditor key={o.name} option={o} />
          ))}
        </tbody>
      </table>
    </main>
  );
}

function OptionEditor({ option }: { option: OptionRow }) {
  const [text, setText] = useState<string | null>(null);
  const [error, setError] = useState<string | null>(null);
  const value = text ?? option.value;
  const apply = async (v: string) => {
    if (v === option.value) {
      setText(null);
      setError(null);
      return;
    }
    const r = await run(`set ${quote(`${option.name}=${v}`)}`, true);
    if (r.ok) {
      setText(null);
      setError(null);
    } else setError(r.text);
  };
  const changed = option.value !== option.default;
  return (
    <tr data-option={option.name} className={changed ? "changed" : ""}>
      <th title={`${option.type}, default ${option.default || '""'}`}>{option.name}</th>
      <td className="option-value">
        {option.type === "bool" ? (
          <input type="checkbox" aria-label={option.name} checked={option.value === "true"} onChange={(e) => void apply(String(e.target.checked))} />
        ) : option.choices ? (
          <select aria-label={option.name} value={value} onChange={(e) => void apply(e.target.value)}>
            {option.choices.map((c) => (
              <option key={c}>{c}</option>
            ))}
          </select>
        ) : (
          <input
            aria-label={option.name}
            spellCheck={false}
            value={value}
            onChange={(e) => setText(e.target.value)}
            onBlur={() => text !== null && void apply(text)}
            onKeyDown={(e) => {
              if (e.key === "Enter") void apply(value);
              if (e.key === "Escape") {
                setText(null);
                setError(null);
              }
            }}
          />
        )}
        {error && (
          <div className="filter-error" role="alert">
            {error}
          </div>
        )}
      </td>
      <td className="muted">
        <span className="type">{option.type}</span> {option.help}
      </td>
    </tr>
  );
}
