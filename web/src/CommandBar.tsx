import { useState } from "react";
import { run } from "./conn";

/** The command bar: any command line, as the console's `:` prompt (history with ↑ ↓). */
export function CommandBar({ inputRef }: { inputRef: React.RefObject<HTMLInputElement | null> }) {
  const [text, setText] = useState("");
  const [history, setHistory] = useState<string[]>([]);
  const [at, setAt] = useState(-1);
  const [output, setOutput] = useState<{ text: string; ok: boolean } | null>(null);
  return (
    <div className="command-bar">
      <span className="prompt">:</span>
      <input
        ref={inputRef}
        aria-label="command"
        spellCheck={false}
        value={text}
        placeholder="command, e.g. flow.set @focus status_code 429 — `commands` lists them"
        onChange={(e) => setText(e.target.value)}
        onKeyDown={async (e) => {
          if (e.key === "Enter" && text.trim()) {
            const line = text.trim();
            setHistory([...history.filter((h) => h !== line), line]);
            setAt(-1);
            setText("");
            const r = await run(line);
            setOutput(r.text.includes("\n") ? r : null);
          } else if (e.key === "ArrowUp" && history.length) {
            const i = at < 0 ? history.length - 1 : Math.max(0, at - 1);
            setAt(i);
            setText(history[i]!);
            e.preventDefault();
          } else if (e.key === "ArrowDown" && at >= 0) {
            const i = at + 1;
            setAt(i >= history.length ? -1 : i);
            setText(i >= history.length ? "" : history[i]!);
            e.preventDefault();
          } else if (e.key === "Escape") {
            setOutput(null);
            (e.target as HTMLInputElement).blur();
          }
        }}
      />
      {output && (
        <div className={output.ok ? "command-output" : "command-output error"} role="log">
          <button className="close" onClick={() => setOutput(null)}>
            ✕
          </button>
          <pre>{output.text}</pre>
        </div>
      )}
    </div>
  );
}
