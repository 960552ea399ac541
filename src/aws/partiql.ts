/**
 * DynamoDB's PartiQL calls (ExecuteStatement, BatchExecuteStatement, ExecuteTransaction) seen as
 * the item operations AWS runs them as, so capacity is charged by the same code as GetItem, Query,
 * Scan, PutItem, UpdateItem, DeleteItem and their batches and transactions.
 *
 * The statement is read minimally — its verb, its table (double-quoted or bare, with an optional
 * ."index"), the WHERE clause's top-level equalities (`name = value`, the value a literal or a `?`
 * parameter, taken from Parameters in order), INSERT's VALUE and UPDATE's SET values — which is
 * what capacity depends on:
 * - SELECT with an equality and no OR in its WHERE: a Query of that partition key value (PARTIQL_SELECT:
 *   "an equality or IN condition with a partition key" avoids a full table scan), charged by its
 *   answer's size like a Query; anything else (no WHERE, a range, an OR, an IN) a Scan, charged to
 *   the table (or index) only.
 * - INSERT: a PutItem of its VALUE; UPDATE: an UpdateItem of the WHERE's equalities (the key: its
 *   condition "must resolve to a single primary key value", PARTIQL_UPDATE) and the values it SETs;
 *   DELETE: a DeleteItem.
 * - BatchExecuteStatement: a BatchGetItem of its SELECTs (each by the key its WHERE gives) or a
 *   BatchWriteItem of its writes (an UPDATE as a put of its key and values), per statement, as AWS
 *   charges each statement (PARTIQL_BATCH); ExecuteTransaction: a TransactGetItems or
 *   TransactWriteItems, at the transactional double (PARTIQL_TRANSACTION), an EXISTS(SELECT …) in a
 *   write transaction as its ConditionCheck. A batch or transaction mixing reads and writes (AWS
 *   refuses it) is not charged.
 * A statement this cannot read (another verb, no table) leaves the call uncharged. No sockets.
 */
import type { AttributeValueJson } from "./partiql-values.js";
import { readValue, type Token, tokenize } from "./partiql-values.js";

export const PARTIQL_SELECT = "https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/ql-reference.select.html";
export const PARTIQL_UPDATE = "https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/ql-reference.update.html";
export const PARTIQL_BATCH = "https://docs.aws.amazon.com/amazondynamodb/latest/APIReference/API_BatchExecuteStatement.html";
export const PARTIQL_TRANSACTION = "https://docs.aws.amazon.com/amazondynamodb/latest/APIReference/API_ExecuteTransaction.html";

export const PARTIQL_OPERATIONS = new Set(["ExecuteStatement", "BatchExecuteStatement", "ExecuteTransaction"]);

type Json = Record<string, unknown>;
type Item = Record<string, AttributeValueJson>;

/** One statement as capacity sees it. */
export interface PartiqlStatement {
  /** EXISTS: `EXISTS(SELECT …)`, a write transaction's condition check. */
  verb: "SELECT" | "INSERT" | "UPDATE" | "DELETE" | "EXISTS";
  table: string;
  index: string | null;
  /** The WHERE clause's top-level equalities, in order (they stand for the key). */
  key: Item;
  /** The WHERE has an OR, an IN, or no equality: a SELECT reads the whole table (a Scan). */
  scan: boolean;
  /** INSERT's item; UPDATE's SET values (those given as a literal or parameter). */
  values: Item;
}

/** The native operation and request a PartiQL call stands for. */
export interface PartiqlEquivalent {
  operation: string;
  body: Json;
}

/** Reads one statement, or null when it is not a SELECT, INSERT, UPDATE, DELETE or EXISTS naming a table. */
export function parseStatement(statement: string, parameters: unknown): PartiqlStatement | null {
  const params = Array.isArray(parameters) ? (parameters as AttributeValueJson[]) : [];
  const tokens = tokenize(statement);
  if (!tokens) return null;
  const verb = tokens[0]?.kind === "word" ? tokens[0].text.toUpperCase() : "";
  if (verb !== "SELECT" && verb !== "INSERT" && verb !== "UPDATE" && verb !== "DELETE" && verb !== "EXISTS") return null;
  const word = (t: Token | undefined, w: string) => t?.kind === "word" && t.text.toUpperCase() === w;
  // The table follows FROM (SELECT, DELETE), INTO (INSERT) or the verb (UPDATE).
  const before = verb === "INSERT" ? "INTO" : verb === "UPDATE" ? "UPDATE" : "FROM";
  const tableAt = tokens.findIndex((t) => word(t, before)) + 1;
  const nameAt = (i: number) => (tokens[i]?.kind === "name" || tokens[i]?.kind === "word" ? tokens[i]!.text : null);
  const table = tableAt > 0 ? nameAt(tableAt) : null;
  if (table === null) return null;
  let index: string | null = null;
  /** The first token after the table (and index). */
  let rest = tableAt + 1;
  if (tokens[rest]?.text === "." && tokens[rest]?.kind === "punct") {
    index = nameAt(rest + 1);
    rest += 2;
  }
  // Maps, not objects: a name from the traffic ("__proto__") must stay a name.
  const key = new Map<string, AttributeValueJson>();
  const values = new Map<string, AttributeValueJson>();
  let scan = true;
  const whereAt = tokens.findIndex((t) => word(t, "WHERE"));
  if (whereAt >= 0) {
    let depth = 0;
    let or = false;
    for (let i = whereAt + 1; i < tokens.length; i++) {
      const t = tokens[i]!;
      if (t.kind === "punct" && (t.text === "(" || t.text === "[" || t.text === "{" || t.text === "<<")) depth++;
      else if (t.kind === "punct" && (t.text === ")" || t.text === "]" || t.text === "}" || t.text === ">>")) depth--;
      // EXISTS(SELECT … WHERE …): the WHERE ends with the parenthesis.
      if (depth < 0) break;
      if (depth !== 0) continue;
      if (word(t, "OR") || word(t, "IN")) or = true;
      if (word(t, "ORDER") || word(t, "RETURNING")) break;
      // `name = value`, the name a top-level attribute (not a path's later part).
      if ((t.kind === "name" || t.kind === "word") && tokens[i + 1]?.text === "=" && tokens[i + 1]?.kind === "punct" && tokens[i - 1]?.text !== ".") {
        const v = readValue(tokens, i + 2, params);
        if (v && !key.has(t.text)) key.set(t.text, v.value);
      }
    }
    scan = or || key.size === 0;
  }
  if (verb === "INSERT") {
    const valueAt = tokens.findIndex((t) => word(t, "VALUE"));
    const v = valueAt < 0 ? null : readValue(tokens, valueAt + 1, params);
    if (v && "M" in v.value) for (const [name, value] of Object.entries(v.value.M as Item)) values.set(name, value);
  }
  if (verb === "UPDATE") {
    // SET path = value [, path = value] (SET may repeat): the values given as one literal or parameter.
    for (let i = rest; i < tokens.length && !word(tokens[i], "WHERE"); i++) {
      const t = tokens[i]!;
      const afterSet = word(tokens[i - 1], "SET") || (tokens[i - 1]?.text === "," && tokens[i - 1]?.kind === "punct");
      if (!afterSet || (t.kind !== "name" && t.kind !== "word") || tokens[i + 1]?.text !== "=") continue;
      const v = readValue(tokens, i + 2, params);
      const next = v ? tokens[v.next] : undefined;
      // A value that is part of an expression (a + 1, list_append(…)) is not the attribute's new value.
      if (v && (!next || next.text === "," || word(next, "SET") || word(next, "REMOVE") || word(next, "WHERE") || word(next, "RETURNING"))) values.set(t.text, v.value);
    }
  }
  return { verb, table, index, key: Object.fromEntries(key), scan, values: Object.fromEntries(values) };
}

const consistent = (request: Json) => (request.ConsistentRead === true ? { ConsistentRead: true } : {});

/** A statement as a request of one item (or, for a SELECT, a Query or Scan); null for EXISTS, which only a transaction holds. */
function single(s: PartiqlStatement, request: Json): PartiqlEquivalent | null {
  const base = { TableName: s.table, ...(s.index !== null ? { IndexName: s.index } : {}) };
  switch (s.verb) {
    case "SELECT": {
      if (s.scan) return { operation: "Scan", body: { ...base, ...consistent(request) } };
      // Every equality is a key condition: the partition key is the keys= attribute's, else the first.
      const names: Record<string, string> = {};
      const values: Record<string, AttributeValueJson> = {};
      const conditions = Object.entries(s.key).map(([name, value], i) => {
        names[`#k${i}`] = name;
        values[`:k${i}`] = value;
        return `#k${i} = :k${i}`;
      });
      return { operation: "Query", body: { ...base, KeyConditionExpression: conditions.join(" AND "), ExpressionAttributeNames: names, ExpressionAttributeValues: values, ...consistent(request) } };
    }
    case "INSERT":
      return { operation: "PutItem", body: { TableName: s.table, Item: s.values } };
    case "UPDATE":
      return { operation: "UpdateItem", body: { TableName: s.table, Key: s.key, ...updateExpressionOf(s.values) } };
    case "DELETE":
      return { operation: "DeleteItem", body: { TableName: s.table, Key: s.key } };
    case "EXISTS":
      return null;
  }
}

/** UPDATE's SET values as an UpdateExpression (what UpdateItem's cost and index writes read). */
function updateExpressionOf(values: Item): Json {
  const entries = Object.entries(values);
  if (entries.length === 0) return {};
  const names: Record<string, string> = {};
  const vals: Record<string, AttributeValueJson> = {};
  const sets = entries.map(([name, value], i) => {
    names[`#u${i}`] = name;
    vals[`:u${i}`] = value;
    return `#u${i} = :u${i}`;
  });
  return { UpdateExpression: `SET ${sets.join(", ")}`, ExpressionAttributeNames: names, ExpressionAttributeValues: vals };
}

/** What a PartiQL call is charged as, or null when a statement cannot be read (or a batch mixes reads and writes, which AWS refuses). */
export function partiqlEquivalent(operation: string, request: Json): PartiqlEquivalent | null {
  if (operation === "ExecuteStatement") {
    const s = typeof request.Statement === "string" ? parseStatement(request.Statement, request.Parameters) : null;
    return s ? single(s, request) : null;
  }
  const list = operation === "BatchExecuteStatement" ? request.Statements : operation === "ExecuteTransaction" ? request.TransactStatements : null;
  if (!Array.isArray(list) || list.length === 0) return null;
  const statements: { s: PartiqlStatement; request: Json }[] = [];
  for (const entry of list as Json[]) {
    const s = typeof entry?.Statement === "string" ? parseStatement(entry.Statement, entry.Parameters) : null;
    if (!s) return null;
    statements.push({ s, request: entry });
  }
  const reads = statements.every(({ s }) => s.verb === "SELECT");
  if (!reads && statements.some(({ s }) => s.verb === "SELECT")) return null;
  // EXISTS belongs to write transactions only.
  if (operation === "BatchExecuteStatement" && statements.some(({ s }) => s.verb === "EXISTS")) return null;
  if (operation === "ExecuteTransaction") {
    const TransactItems = statements.map(({ s }) => {
      if (s.verb === "SELECT") return { Get: { TableName: s.table, Key: s.key } };
      if (s.verb === "EXISTS") return { ConditionCheck: { TableName: s.table, Key: s.key } };
      const one = single(s, {})!.body;
      return s.verb === "INSERT" ? { Put: one } : s.verb === "UPDATE" ? { Update: one } : { Delete: one };
    });
    return { operation: reads ? "TransactGetItems" : "TransactWriteItems", body: { TransactItems } };
  }
  const RequestItems: Record<string, unknown> = {};
  for (const { s, request: entry } of statements) {
    if (reads) {
      const table = (RequestItems[s.table] ??= { Keys: [], ...consistent(entry) }) as { Keys: Item[] };
      table.Keys.push(s.key);
    } else {
      const writes = (RequestItems[s.table] ??= []) as Json[];
      // An UPDATE in a batch is charged as a put of its key and the values it sets (BatchWriteItem has no update).
      writes.push(s.verb === "DELETE" ? { DeleteRequest: { Key: s.key } } : { PutRequest: { Item: s.verb === "INSERT" ? s.values : { ...s.key, ...s.values } } });
    }
  }
  return { operation: reads ? "BatchGetItem" : "BatchWriteItem", body: { RequestItems } };
}

/**
 * A BatchExecuteStatement answer in BatchGetItem's shape (its Responses are one entry per
 * statement, {TableName, Item}; BatchGetItem's a list of items per table), so reads are settled by
 * the same code. Other answers are the same shape as their equivalent's already.
 */
export function partiqlAnswerAsEquivalent(operation: string, responseText: string): string {
  if (operation !== "BatchExecuteStatement") return responseText;
  try {
    const answer = JSON.parse(responseText) as Json;
    if (!Array.isArray(answer.Responses)) return responseText;
    const byTable: Record<string, unknown[]> = {};
    for (const r of answer.Responses as { TableName?: string; Item?: unknown }[]) if (r?.Item && typeof r.TableName === "string") (byTable[r.TableName] ??= []).push(r.Item);
    return JSON.stringify({ ...answer, Responses: byTable });
  } catch {
    return responseText;
  }
}
