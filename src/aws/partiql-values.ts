/**
 * PartiQL's tokens and literal values as DynamoDB reads them (PARTIQL_DATA_TYPES): 'strings'
 * (a quote doubled inside), numbers, TRUE/FALSE, NULL, {'name': value} maps, [value] lists,
 * <<value>> sets, and `?` parameters, each turned into the AttributeValue the item would hold,
 * so item sizes are counted by the same code as the native calls'. No sockets.
 */
export const PARTIQL_DATA_TYPES = "https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/ql-reference.data-types.html";

export type AttributeValueJson = Record<string, unknown>;

export interface Token {
  /** word: a bare identifier or keyword; name: a "double-quoted" identifier; param: `?` (its position in `text`). */
  kind: "word" | "name" | "string" | "number" | "param" | "punct";
  text: string;
}

/** The statement's tokens, `?` numbered in order (Parameters are taken in that order), or null when a quote is left open. */
export function tokenize(statement: string): Token[] | null {
  const out: Token[] = [];
  let params = 0;
  let i = 0;
  const s = statement;
  while (i < s.length) {
    const c = s[i]!;
    if (/\s/.test(c)) {
      i++;
    } else if (c === "'" || c === '"') {
      // A quote inside is doubled ('it''s', "a""b").
      let text = "";
      let j = i + 1;
      for (;;) {
        if (j >= s.length) return null;
        if (s[j] === c) {
          if (s[j + 1] === c) {
            text += c;
            j += 2;
            continue;
          }
          break;
        }
        text += s[j++];
      }
      out.push({ kind: c === "'" ? "string" : "name", text });
      i = j + 1;
    } else if (/[0-9]/.test(c) || (c === "." && /[0-9]/.test(s[i + 1] ?? ""))) {
      const m = /^(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?/.exec(s.slice(i))!;
      out.push({ kind: "number", text: m[0] });
      i += m[0].length;
    } else if (/[A-Za-z_]/.test(c)) {
      const m = /^[A-Za-z_][\w$]*/.exec(s.slice(i))!;
      out.push({ kind: "word", text: m[0] });
      i += m[0].length;
    } else if (c === "?") {
      out.push({ kind: "param", text: String(params++) });
      i++;
    } else {
      const two = s.slice(i, i + 2);
      const punct = ["<<", ">>", "<=", ">=", "<>", "!=", "||"].includes(two) ? two : c;
      out.push({ kind: "punct", text: punct });
      i += punct.length;
    }
  }
  return out;
}

/** The literal (or parameter) at `at`, as an AttributeValue, and the index after it; null when there is none. */
export function readValue(tokens: Token[], at: number, params: AttributeValueJson[]): { value: AttributeValueJson; next: number } | null {
  const t = tokens[at];
  if (!t) return null;
  switch (t.kind) {
    case "string":
      return { value: { S: t.text }, next: at + 1 };
    case "number":
      return { value: { N: t.text }, next: at + 1 };
    case "param": {
      const p = params[Number(t.text)];
      return p && typeof p === "object" ? { value: p, next: at + 1 } : null;
    }
    case "word": {
      const w = t.text.toUpperCase();
      if (w === "TRUE" || w === "FALSE") return { value: { BOOL: w === "TRUE" }, next: at + 1 };
      if (w === "NULL") return { value: { NULL: true }, next: at + 1 };
      return null;
    }
    case "name":
      return null;
    case "punct":
      break;
  }
  if (t.text === "-" && tokens[at + 1]?.kind === "number") return { value: { N: `-${tokens[at + 1]!.text}` }, next: at + 2 };
  const close = t.text === "{" ? "}" : t.text === "[" ? "]" : t.text === "<<" ? ">>" : null;
  if (close === null) return null;
  // A Map, not an object: a name from the traffic ("__proto__") must stay a name.
  const map = new Map<string, AttributeValueJson>();
  const list: AttributeValueJson[] = [];
  let i = at + 1;
  while (tokens[i] && tokens[i]!.text !== close) {
    if (t.text === "{") {
      const name = tokens[i];
      if (!name || (name.kind !== "string" && name.kind !== "name") || tokens[i + 1]?.text !== ":") return null;
      const v = readValue(tokens, i + 2, params);
      if (!v) return null;
      map.set(name.text, v.value);
      i = v.next;
    } else {
      const v = readValue(tokens, i, params);
      if (!v) return null;
      list.push(v.value);
      i = v.next;
    }
    if (tokens[i]?.text === ",") i++;
  }
  if (!tokens[i]) return null;
  const next = i + 1;
  if (t.text === "{") return { value: { M: Object.fromEntries(map) }, next };
  if (t.text === "[") return { value: { L: list }, next };
  // A set holds one type: strings, numbers or binaries.
  const type = Object.keys(list[0] ?? { S: "" })[0];
  return { value: { [`${type}S`]: list.map((v) => Object.values(v)[0]) }, next };
}
