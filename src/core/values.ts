/**
 * How sluice reads the values people type — booleans, rates, durations — the same everywhere:
 * options (`--set`), commands, and fault and shaping rules. Each parser accepts a value with one
 * meaning or refuses it; none guesses.
 */

/** true/1/yes/on and false/0/no/off, any case; null for anything else (the caller says what it expected). */
export function parseBool(text: string): boolean | null {
  const v = text.trim().toLowerCase();
  if (v === "true" || v === "1" || v === "yes" || v === "on") return true;
  if (v === "false" || v === "0" || v === "no" || v === "off") return false;
  return null;
}

const SECONDS_PER: Record<string, number> = {
  s: 1, sec: 1, secs: 1, second: 1, seconds: 1,
  m: 60, min: 60, mins: 60, minute: 60, minutes: 60,
  h: 3600, hr: 3600, hrs: 3600, hour: 3600, hours: 3600,
  d: 86400, day: 86400, days: 86400,
};

/**
 * Requests per second from "3500/s", "10/sec", "100/m", "100/min", "5/minute", "2/h", "1000/day",
 * "30/10s" (30 per 10 seconds) or a bare "2.5" (per second). Anything else — "10/ms", "10rps",
 * "10/fortnight" — is refused with a RangeError saying what is accepted.
 */
export function parseRate(text: string): number {
  const m = /^\s*(\d+(?:\.\d+)?|\.\d+)\s*(?:\/\s*(\d+(?:\.\d+)?)?\s*([a-z]+))?\s*$/i.exec(text);
  const unit = m?.[3]?.toLowerCase() ?? "s";
  const per = SECONDS_PER[unit];
  if (!m || per === undefined) {
    throw new RangeError(`bad rate ${JSON.stringify(text)}: expected N/s, N/min, N/h or N/day (or N per a span such as 30/10s), e.g. 3500/s`);
  }
  const span = m[2] === undefined ? 1 : Number(m[2]);
  if (!(span > 0)) throw new RangeError(`bad rate ${JSON.stringify(text)}: the span after / must be more than zero`);
  const perSecond = Number(m[1]) / (span * per);
  if (!(perSecond > 0)) throw new RangeError(`bad rate ${JSON.stringify(text)}: must be more than zero`);
  return perSecond;
}

const MS_PER: Record<string, number> = {
  ms: 1, msec: 1, millisecond: 1, milliseconds: 1,
  s: 1000, sec: 1000, secs: 1000, second: 1000, seconds: 1000,
  m: 60_000, min: 60_000, mins: 60_000, minute: 60_000, minutes: 60_000,
  h: 3_600_000, hr: 3_600_000, hrs: 3_600_000, hour: 3_600_000, hours: 3_600_000,
};

/** Milliseconds from "250ms", "2s", "1.5m", "1min", "2h" or a bare "500" (milliseconds); a RangeError otherwise. */
export function parseDuration(text: string): number {
  const m = /^\s*(\d+(?:\.\d+)?|\.\d+)\s*([a-z]+)?\s*$/i.exec(text);
  const per = MS_PER[(m?.[2] ?? "ms").toLowerCase()];
  if (!m || per === undefined) throw new RangeError(`bad duration ${JSON.stringify(text)}: expected e.g. 250ms, 2s, 1m`);
  return Number(m[1]) * per;
}

/** "20/s", "0.50/s": a rate as the status lines show it. */
export function formatRate(perSecond: number): string {
  const r = perSecond;
  return `${r >= 100 ? r.toFixed(0) : r >= 10 ? r.toFixed(1) : r.toFixed(2)}/s`;
}

/** "250ms", "1.5s", "none" (infinite): a duration as the status lines show it. */
export function formatDuration(ms: number): string {
  if (!Number.isFinite(ms)) return "none";
  return ms < 1000 ? `${Math.round(ms)}ms` : `${(ms / 1000).toFixed(1)}s`;
}
