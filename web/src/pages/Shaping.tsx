import { useStore } from "../conn";
import { humanDuration } from "../format";

function rate(r: number): string {
  return `${r >= 10 ? Math.round(r) : r.toFixed(r >= 1 ? 1 : 2)}/s`;
}

/** Shaping rules, one table row per rule and key: rate, queue, longest wait, released, rejected (`shaping.status`), refreshed every second. */
export function ShapingPage() {
  const data = useStore((s) => s.shaping);
  if (!data) return <main className="page">loading…</main>;
  if (!data.loaded) return <main className="page">Rate shaping is not loaded in this front end.</main>;
  return (
    <main className="page shaping">
      <table className="grid">
        <thead>
          <tr>
            <th>rule</th>
            <th>key</th>
            <th className="num">rate</th>
            <th className="num">queued</th>
            <th className="num">longest wait</th>
            <th className="num">released</th>
            <th className="num">rejected</th>
            <th>learned</th>
          </tr>
        </thead>
        <tbody>
          {data.rules.length === 0 && (
            <tr>
              <td colSpan={8} className="muted">
                No shaping rules. Start sluice with --shape 'FILTER =&gt; RATE' (e.g. --shape '~svc ec2 =&gt; 20/s') or --shapes FILE.
              </td>
            </tr>
          )}
          {data.rules.map((r) => [
            <tr key={r.id} data-rule={r.id} className="rule-head">
              <td colSpan={8}>
                <b>rule {r.id}</b> <span className="mono">{r.text}</span> <span className="muted">— {r.explain}</span>
              </td>
            </tr>,
            r.keys.length === 0 ? (
              <tr key={`${r.id}/none`}>
                <td />
                <td colSpan={7} className="muted">
                  no requests yet
                </td>
              </tr>
            ) : (
              r.keys.map((k) => (
                <tr key={`${r.id}/${k.key}`} data-rule={r.id} data-key={k.key}>
                  <td />
                  <td className="mono">{k.key}</td>
                  <td className="num">{rate(k.rate)}</td>
                  <td className="num">{k.queued}</td>
                  <td className="num">{humanDuration(k.longestWaitMs / 1000)}</td>
                  <td className="num">{k.released}</td>
                  <td className="num">{k.rejected}</td>
                  <td>{k.cuts === null ? "" : `${k.cuts} cut${k.cuts === 1 ? "" : "s"} on ${k.throttles} throttle${k.throttles === 1 ? "" : "s"}`}</td>
                </tr>
              ))
            ),
          ])}
        </tbody>
      </table>
      <p className="muted">The option shape_rules holds the rules (Options page); `shaping.status` in the command bar shows the same as text.</p>
    </main>
  );
}
