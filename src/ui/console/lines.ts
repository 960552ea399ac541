/**
 * The console draws everything as lines of styled segments: each screen (list, flow details,
 * help, …) computes only the lines that fit the window, and app.ts turns them into ink elements.
 * Keeping screens as plain data makes them cheap to compute and easy to test.
 */
export type Colour = "red" | "yellow" | "green" | "magenta" | "cyan" | "blue" | "gray";

export interface Segment {
  text: string;
  colour?: Colour;
  bold?: boolean;
  inverse?: boolean;
  dim?: boolean;
}

export type Line = Segment[];

export const seg = (text: string, style: Omit<Segment, "text"> = {}): Segment => ({ text, ...style });
export const plainLine = (text: string, style: Omit<Segment, "text"> = {}): Line => [seg(text, style)];

/** Pads or cuts `text` to exactly `width` columns (an ellipsis marks a cut). */
export function fit(text: string, width: number, alignRight = false): string {
  if (width <= 0) return "";
  if (text.length > width) return width === 1 ? "…" : text.slice(0, width - 1) + "…";
  return alignRight ? text.padStart(width) : text.padEnd(width);
}

/** Cuts a line to `width` columns, keeping styles. */
export function clipLine(line: Line, width: number): Line {
  const out: Line = [];
  let left = width;
  for (const s of line) {
    if (left <= 0) break;
    const text = s.text.length > left ? s.text.slice(0, Math.max(0, left - 1)) + "…" : s.text;
    out.push({ ...s, text });
    left -= text.length;
  }
  return out;
}

/** Plain text of a line (tests and width checks). */
export function lineText(line: Line): string {
  return line.map((s) => s.text).join("");
}
