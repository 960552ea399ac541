import { useStore } from "../conn";

/** Shaping rules with each key's queue, rate and waits (`shaping.status`), refreshed every second. */
export function ShapingPage() {
  const data = useStore((s) => s.shaping);
  if (!data) return <main className="page">loading…</main>;
  if (!data.loaded) return <main className="page">Rate shaping is not loaded in this front end.</main>;
  return (
    <main className="page shaping">
      <pre className="mono">{data.text}</pre>
      <p className="muted">Add rules with --shape 'FILTER =&gt; RATE' or --shapes FILE; the option shape_rules holds them (Options page).</p>
    </main>
  );
}
