// Small formatting helpers shared by the list and the pages.
export function humanSize(n: number | null): string {
  if (n === null) return "";
  if (n < 1024) return `${n}b`;
  if (n < 1024 * 1024) return `${(n / 1024).toFixed(n < 10 * 1024 ? 1 : 0)}k`;
  if (n < 1024 ** 3) return `${(n / 1024 / 1024).toFixed(1)}m`;
  return `${(n / 1024 ** 3).toFixed(1)}g`;
}

export function humanDuration(seconds: number | null): string {
  if (seconds === null) return "";
  if (seconds < 1) return `${Math.round(seconds * 1000)}ms`;
  if (seconds < 100) return `${seconds.toFixed(2)}s`;
  return `${Math.round(seconds)}s`;
}

export function clock(seconds: number): string {
  const d = new Date(seconds * 1000);
  const p = (n: number, w = 2) => String(n).padStart(w, "0");
  return `${p(d.getHours())}:${p(d.getMinutes())}:${p(d.getSeconds())}.${p(d.getMilliseconds(), 3)}`;
}

export function shortType(type: string): string {
  return type.replace(/^(application|text)\//, "");
}
