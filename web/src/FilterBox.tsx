import { useEffect, useRef, useState } from "react";
import type { FilterProblem } from "./types";

interface Props {
  label: string;
  name: string;
  value: string;
  error: FilterProblem | null;
  progress: { done: number; of: number } | null;
  inputRef: React.RefObject<HTMLInputElement | null>;
  onApply(expr: string): void;
}

/** A filter expression box: applied on Enter (or after a pause in typing); a bad one shows where it is wrong. */
export function FilterBox({ label, name, value, error, progress, inputRef, onApply }: Props) {
  const [text, setText] = useState(value);
  const [editing, setEditing] = useState(false);
  // What this box last applied: Enter applies at once, and the pause after typing must not apply
  // the same text again (a second "intercepting …" notice would land amid later answers).
  const applied = useRef<string | null>(null);
  const apply = (expr: string) => {
    applied.current = expr;
    onApply(expr);
  };
  useEffect(() => {
    if (!editing) setText(value);
  }, [value, editing]);
  useEffect(() => {
    if (!editing || text === value) return;
    const t = setTimeout(() => text !== applied.current && apply(text), 400);
    return () => clearTimeout(t);
  }, [text]);
  const bad = error && editing ? error : error && text !== value ? error : error;
  return (
    <label className={`filter ${bad ? "bad" : ""}`} data-filter={name}>
      <span className="filter-label">{label}</span>
      <span className="filter-field">
        <input
          ref={inputRef}
          value={text}
          spellCheck={false}
          placeholder={name === "filter" ? "~d amazonaws & !~c 200" : name === "intercept" ? "~m PUT & ~svc s3" : "~throttled"}
          onFocus={() => setEditing(true)}
          onBlur={() => setEditing(false)}
          onChange={(e) => setText(e.target.value)}
          onKeyDown={(e) => {
            if (e.key === "Enter") apply(text);
            if (e.key === "Escape") {
              setText(value);
              (e.target as HTMLInputElement).blur();
            }
          }}
        />
        {bad && bad.position !== null && (
          <span className="filter-caret" aria-hidden="true">
            {text.slice(0, bad.position).replace(/./g, "\u00a0")}^
          </span>
        )}
      </span>
      {progress && (
        <progress className="filter-progress" value={progress.done} max={progress.of} title={`filtering: ${progress.done} of ${progress.of} flows`} />
      )}
      {bad && (
        <span className="filter-error" role="alert">
          {bad.message}
        </span>
      )}
    </label>
  );
}
