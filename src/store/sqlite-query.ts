/**
 * Translates the indexable part of a filter expression into an SQL WHERE clause over the `flows`
 * table of a sluice SQLite capture. The clause selects a SUPERSET of the matching flows; the caller
 * then runs the full compiled filter on the candidates, so answers are always exact.
 *
 * Indexed terms (~d ~m ~svc ~op ~region ~bucket with a regex, ~c ~attempt with an int) become
 * `column IN (values)`: the regex is run over the column's DISTINCT values (read from its index),
 * which is exact and lets SQLite use the index. Any other operator the filter registry knows
 * (core's, aws/'s, or one registered later) becomes TRUE where it appears positively and FALSE
 * under a `!`, which keeps the result a superset; how many arguments it takes is the registry's
 * answer, so a new operator needs no change here. Unknown syntax or an unknown operator returns
 * null: the caller then scans everything (and compileFilter reports the error).
 */

import { filterOperatorKind, operatorValueMatcher, tokenizeFilter, type FilterToken } from "../core/filter.js";

/** Columns with an index, by the filter operator that reads them. */
const REGEX_COLUMNS: Record<string, string[]> = {
  m: ["method"],
  d: ["host", "host_header"],
  svc: ["aws_service"],
  op: ["aws_operation"],
  region: ["aws_region"],
  bucket: ["aws_bucket"],
};
const INT_COLUMNS: Record<string, string> = { c: "status", attempt: "aws_attempt" };

type Token = FilterToken;

class Unsupported extends Error {}

/** Reads the distinct values of an indexed column (cheap: SQLite walks the index). */
export type DistinctValues = (column: string) => string[];

export interface SqlWhere {
  sql: string;
  params: (string | number)[];
}

/** The WHERE clause for `expr`, or null when it cannot be translated (scan everything). */
export function filterToSql(expr: string, distinct: DistinctValues): SqlWhere | null {
  let tokens: Token[];
  try {
    tokens = tokenizeFilter(expr);
  } catch {
    return null;
  }
  let i = 0;
  const params: (string | number)[] = [];
  const peek = () => tokens[i]!;
  const startsTerm = (t: Token) => t.kind === "op" || t.kind === "arg" || t.kind === "(" || t.kind === "!";

  // `positive` is false under an odd number of `!`: untranslatable terms must then be FALSE.
  const orExpr = (positive: boolean): string => {
    const parts = [andExpr(positive)];
    while (peek().kind === "|") {
      i++;
      parts.push(andExpr(positive));
    }
    return parts.length === 1 ? parts[0]! : `(${parts.join(" OR ")})`;
  };
  const andExpr = (positive: boolean): string => {
    const parts = [unary(positive)];
    for (;;) {
      if (peek().kind === "&") {
        i++;
        parts.push(unary(positive));
      } else if (startsTerm(peek())) parts.push(unary(positive));
      else break;
    }
    return parts.length === 1 ? parts[0]! : `(${parts.join(" AND ")})`;
  };
  const unary = (positive: boolean): string => {
    const t = peek();
    if (t.kind === "!") {
      i++;
      return `(NOT ${unary(!positive)})`;
    }
    if (t.kind === "(") {
      i++;
      const inner = orExpr(positive);
      if (peek().kind !== ")") throw new Unsupported();
      i++;
      return inner;
    }
    if (t.kind === "arg") {
      i++; // a bare word is a URL regex: not indexed
      return positive ? "1" : "0";
    }
    if (t.kind !== "op") throw new Unsupported();
    i++;
    const name = t.name;
    const kind = filterOperatorKind(name);
    if (kind === null) throw new Unsupported();
    if (kind === "flag") return positive ? "1" : "0";
    const arg = peek();
    if (arg.kind !== "arg") throw new Unsupported();
    i++;
    const cols = kind === "regex" ? REGEX_COLUMNS[name] : undefined;
    if (cols) {
      let test: (value: string) => boolean;
      try {
        test = operatorValueMatcher(name, arg.value);
      } catch {
        throw new Unsupported();
      }
      // Exact for both polarities: NULL columns never match, and `IS NOT NULL` keeps NOT boolean.
      const ors = cols.map((col) => {
        const values = distinct(col).filter(test);
        if (values.length === 0) return "0";
        params.push(...values);
        return `(${col} IS NOT NULL AND ${col} IN (${values.map(() => "?").join(",")}))`;
      });
      return ors.length === 1 ? ors[0]! : `(${ors.join(" OR ")})`;
    }
    const intCol = kind === "int" ? INT_COLUMNS[name] : undefined;
    if (intCol) {
      if (!/^-?\d+$/.test(arg.value)) throw new Unsupported();
      params.push(Number(arg.value));
      return `(${intCol} IS NOT NULL AND ${intCol} = ?)`;
    }
    // An operator with an argument and no indexed column: every flow is a candidate.
    return positive ? "1" : "0";
  };

  try {
    if (peek().kind === "end") return null;
    const sql = orExpr(true);
    if (peek().kind !== "end") return null;
    return { sql, params };
  } catch (err) {
    if (err instanceof Unsupported) return null;
    throw err;
  }
}
