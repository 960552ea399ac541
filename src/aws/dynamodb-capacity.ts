/**
 * DynamoDB capacity as AWS charges it, from the traffic: item sizes (DYNAMODB_ITEM_SIZES), read
 * units from the answer (4 KB units; eventually consistent half, transactional double; Query and
 * Scan rounded once over the items read; a ConsumedCapacity in the answer is authoritative), write
 * units from the request's items (1 KB units; transactional double), and the partition a request
 * goes to (its partition key value hashed, modulo the table's partition count).
 *
 * Units: reads are counted in half-RCUs (one eventually consistent read of up to 4 KB), so every
 * read cost is a whole number; writes in WCUs. No sockets, no state.
 */
import { createHash } from "node:crypto";

export const DYNAMODB_ITEM_SIZES = "https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/CapacityUnitCalculations.html";
export const DYNAMODB_READ_WRITE_UNITS = "https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/read-write-operations.html";

type AttributeValue = Record<string, unknown>;
type Item = Record<string, unknown>;
type Json = Record<string, unknown>;

/** The size of a number as DynamoDB counts it: 1 byte per two significant digits, plus 1. */
function numberBytes(n: string): number {
  const digits = n.replace(/^[-+]/, "").replace(/[eE].*$/, "").replace(".", "").replace(/^0+/, "").replace(/0+$/, "");
  return Math.ceil(Math.max(1, digits.length) / 2) + 1;
}

function base64Bytes(b: string): number {
  return Buffer.from(b, "base64").length;
}

/** The size of one attribute value (without its name), per DYNAMODB_ITEM_SIZES. */
export function attributeValueBytes(v: unknown): number {
  if (!v || typeof v !== "object") return 0;
  const [type, value] = Object.entries(v as AttributeValue)[0] ?? [];
  switch (type) {
    case "S": return Buffer.byteLength(String(value));
    case "N": return numberBytes(String(value));
    case "B": return base64Bytes(String(value));
    case "BOOL":
    case "NULL": return 1;
    case "SS": return Array.isArray(value) ? value.reduce((n: number, s) => n + Buffer.byteLength(String(s)), 0) : 0;
    case "NS": return Array.isArray(value) ? value.reduce((n: number, s) => n + numberBytes(String(s)), 0) : 0;
    case "BS": return Array.isArray(value) ? value.reduce((n: number, s) => n + base64Bytes(String(s)), 0) : 0;
    // Lists and maps: 3 bytes of overhead, 1 byte per element.
    case "L": return 3 + (Array.isArray(value) ? value.reduce((n: number, e) => n + 1 + attributeValueBytes(e), 0) : 0);
    case "M": return 3 + (value && typeof value === "object" ? Object.entries(value).reduce((n, [k, e]) => n + 1 + Buffer.byteLength(k) + attributeValueBytes(e), 0) : 0);
    default: return 0;
  }
}

/** The size of an item: its attribute names and values. */
export function itemBytes(item: unknown): number {
  if (!item || typeof item !== "object") return 0;
  let n = 0;
  for (const [name, v] of Object.entries(item as Item)) n += Buffer.byteLength(name) + attributeValueBytes(v);
  return n;
}

const units = (bytes: number, unit: number) => Math.max(1, Math.ceil(bytes / unit));
const READ_UNIT = 4096;
const WRITE_UNIT = 1024;

function parse(text: string): Json {
  try {
    const v = JSON.parse(text) as unknown;
    return v && typeof v === "object" ? (v as Json) : {};
  } catch {
    return {};
  }
}

/** Half-RCUs per 4 KB unit: eventually consistent 1, strongly consistent 2, transactional 4. */
const perUnit = (consistent: unknown) => (consistent === true ? 2 : 1);

/**
 * What a read costs before its answer is known, in half-RCUs: one 4 KB unit per item asked for
 * (AWS charges at least that even for an item that is not there).
 */
export function readCostBefore(operation: string, request: Json): number {
  switch (operation) {
    case "TransactGetItems": return 4 * Math.max(1, Array.isArray(request.TransactItems) ? request.TransactItems.length : 1);
    case "BatchGetItem": {
      const tables = request.RequestItems && typeof request.RequestItems === "object" ? Object.values(request.RequestItems as Record<string, { Keys?: unknown[]; ConsistentRead?: boolean }>) : [];
      return Math.max(1, tables.reduce((n, r) => n + (Array.isArray(r.Keys) ? r.Keys.length : 0) * perUnit(r.ConsistentRead), 0));
    }
    default: return perUnit(request.ConsistentRead);
  }
}

/** The capacity units a ConsumedCapacity (one, or a list per table) gives for `table`, or null when the answer has none. */
function consumedUnits(response: Json, table: string | null, kind: "read" | "write"): number | null {
  const cc = response.ConsumedCapacity;
  if (!cc) return null;
  const entries = (Array.isArray(cc) ? cc : [cc]) as { TableName?: string; CapacityUnits?: number; ReadCapacityUnits?: number; WriteCapacityUnits?: number }[];
  let total = 0;
  let found = false;
  for (const e of entries) {
    if (table !== null && e.TableName !== undefined && e.TableName !== table) continue;
    const v = (kind === "read" ? e.ReadCapacityUnits : e.WriteCapacityUnits) ?? e.CapacityUnits;
    if (typeof v === "number") {
      total += v;
      found = true;
    }
  }
  return found ? total : null;
}

/**
 * What a read cost, from its answer, in half-RCUs (null when the answer is not a success):
 * ConsumedCapacity when the client asked for it, else the items' sizes — GetItem and each item of
 * BatchGetItem rounded up to 4 KB on its own, Query and Scan the total of the items read rounded
 * up once, TransactGetItems twice a strongly consistent read.
 */
export function readCostAfter(operation: string, request: Json, responseText: string, table: string | null): number | null {
  return readCostReported(operation, request, responseText, table)?.cost ?? null;
}

/** A cost from the answer, and whether AWS reported it (ConsumedCapacity) rather than sluice computing it. */
export interface CostFromAnswer {
  cost: number;
  reported: boolean;
}

/** `readCostAfter`, saying whether the cost is AWS's own (a ConsumedCapacity) or computed from the items. */
export function readCostReported(operation: string, request: Json, responseText: string, table: string | null): CostFromAnswer | null {
  const response = parse(responseText);
  const consumed = consumedUnits(response, operation === "BatchGetItem" || operation === "TransactGetItems" ? null : table, "read");
  if (consumed !== null) return { cost: Math.max(1, Math.round(consumed * 2)), reported: true };
  const cost = readCostComputed(operation, request, response);
  return cost === null ? null : { cost, reported: false };
}

function readCostComputed(operation: string, request: Json, response: Json): number | null {
  switch (operation) {
    case "GetItem": return units(itemBytes(response.Item), READ_UNIT) * perUnit(request.ConsistentRead);
    case "Query":
    case "Scan": {
      const items = Array.isArray(response.Items) ? response.Items : [];
      let bytes = items.reduce((n: number, i) => n + itemBytes(i), 0);
      // A filter drops items after they are read: AWS charges for ScannedCount items, of which only Count came back.
      const scanned = Number(response.ScannedCount);
      if (items.length > 0 && scanned > items.length) bytes = (bytes / items.length) * scanned;
      return units(bytes, READ_UNIT) * perUnit(request.ConsistentRead);
    }
    case "BatchGetItem": {
      const responses = (response.Responses ?? {}) as Record<string, unknown[]>;
      const asked = (request.RequestItems ?? {}) as Record<string, { ConsistentRead?: boolean }>;
      let n = 0;
      for (const [t, items] of Object.entries(responses)) for (const i of Array.isArray(items) ? items : []) n += units(itemBytes(i), READ_UNIT) * perUnit(asked[t]?.ConsistentRead);
      return Math.max(1, n);
    }
    case "TransactGetItems": {
      const responses = Array.isArray(response.Responses) ? (response.Responses as { Item?: unknown }[]) : [];
      return Math.max(4, responses.reduce((n, r) => n + 4 * units(itemBytes(r.Item), READ_UNIT), 0));
    }
    default: return null;
  }
}

/**
 * What a read cost when its answer streamed through without being kept (larger than
 * stream_large_bodies): its size on the wire in 4 KB units. The JSON's type tags and quotes make
 * it an overestimate of the items' size, by some percent for items of long values.
 */
export function readCostOfBytes(operation: string, request: Json, bytes: number): number {
  const n = units(bytes, READ_UNIT);
  return operation === "TransactGetItems" ? 4 * n : n * perUnit(request.ConsistentRead);
}

/**
 * What a write costs, in WCUs, from its request: PutItem its item's size in 1 KB units; UpdateItem
 * the key and the values it sets (the item's size after the update is not in the request: a lower
 * bound); DeleteItem one; BatchWriteItem each put by its item and each delete one;
 * TransactWriteItems twice each of its writes.
 */
export function writeCostBefore(operation: string, request: Json): number {
  const updateBytes = (u: Json) => itemBytes(u.Key) + itemBytes(u.ExpressionAttributeValues) + itemBytes(u.AttributeUpdates && Object.fromEntries(Object.entries(u.AttributeUpdates as Json).map(([k, v]) => [k, (v as Json).Value])));
  switch (operation) {
    case "PutItem": return units(itemBytes(request.Item), WRITE_UNIT);
    case "UpdateItem": return units(updateBytes(request), WRITE_UNIT);
    case "DeleteItem": return 1;
    case "BatchWriteItem": {
      let n = 0;
      for (const writes of Object.values((request.RequestItems ?? {}) as Record<string, unknown[]>)) {
        for (const w of Array.isArray(writes) ? (writes as { PutRequest?: { Item?: unknown } }[]) : []) n += w.PutRequest ? units(itemBytes(w.PutRequest.Item), WRITE_UNIT) : 1;
      }
      return Math.max(1, n);
    }
    case "TransactWriteItems": {
      const items = Array.isArray(request.TransactItems) ? (request.TransactItems as Record<string, Json>[]) : [];
      let n = 0;
      for (const t of items) {
        if (t.Put) n += 2 * units(itemBytes(t.Put.Item), WRITE_UNIT);
        else if (t.Update) n += 2 * units(updateBytes(t.Update), WRITE_UNIT);
        else n += 2;
      }
      return Math.max(2, n);
    }
    default: return 1;
  }
}

/** What a write cost, from its answer's ConsumedCapacity (when the client asked for it), or null. */
export function writeCostAfter(operation: string, responseText: string, table: string | null): number | null {
  const consumed = consumedUnits(parse(responseText), operation === "BatchWriteItem" || operation === "TransactWriteItems" ? null : table, "write");
  return consumed === null ? null : Math.max(1, Math.ceil(consumed));
}

/** The table a request names: TableName, else the first table of a batch or transaction. */
export function tableOf(request: Json): string | null {
  if (typeof request.TableName === "string") return request.TableName;
  if (request.RequestItems && typeof request.RequestItems === "object") return Object.keys(request.RequestItems)[0] ?? null;
  if (Array.isArray(request.TransactItems)) {
    const first = request.TransactItems[0] as Record<string, { TableName?: string }> | undefined;
    const op = first ? Object.values(first)[0] : undefined;
    return op?.TableName ?? null;
  }
  return null;
}

/**
 * The partition key value of a single-item or single-key request, as JSON of its AttributeValue:
 * `Key`/`Item`'s attribute `keyAttribute` when the table's partition key is known (keys=), else
 * the first attribute in the request's order (SDKs send the key in the order the program wrote
 * it, which puts the partition key first in the usual code); for Query, the value the
 * KeyConditionExpression (or KeyConditions) sets the partition key equal to. Null when none is
 * found.
 */
export function partitionKeyValueOf(request: Json, keyAttribute: string | null): string | null {
  const pick = (o: unknown): string | null => {
    if (!o || typeof o !== "object") return null;
    const entries = Object.entries(o as Item);
    const hit = keyAttribute !== null ? entries.find(([k]) => k === keyAttribute) : entries[0];
    return hit ? JSON.stringify(hit[1]) : null;
  };
  if (request.Key) return pick(request.Key);
  if (request.Item) return pick(request.Item);
  if (typeof request.KeyConditionExpression === "string") {
    const names = (request.ExpressionAttributeNames ?? {}) as Record<string, string>;
    const values = (request.ExpressionAttributeValues ?? {}) as Record<string, unknown>;
    for (const m of request.KeyConditionExpression.matchAll(/([#\w.]+)\s*=\s*(:\w+)|(:\w+)\s*=\s*([#\w.]+)/g)) {
      const nameToken = m[1] ?? m[4]!;
      const valueToken = m[2] ?? m[3]!;
      const name = nameToken.startsWith("#") ? names[nameToken] : nameToken;
      if ((keyAttribute === null || name === keyAttribute) && values[valueToken] !== undefined) return JSON.stringify(values[valueToken]);
    }
    return null;
  }
  if (request.KeyConditions && typeof request.KeyConditions === "object") {
    for (const [name, c] of Object.entries(request.KeyConditions as Record<string, { ComparisonOperator?: string; AttributeValueList?: unknown[] }>)) {
      if ((keyAttribute === null || name === keyAttribute) && c.ComparisonOperator === "EQ" && c.AttributeValueList?.[0] !== undefined) return JSON.stringify(c.AttributeValueList[0]);
    }
  }
  return null;
}

/**
 * The partition (0 … partitions−1) a partition key value falls in: an MD5 of the value, as
 * DynamoDB hashes the partition key (its hash function is internal; any uniform hash spreads values
 * the same way), modulo the partition count.
 */
export function partitionOf(value: string, partitions: number): number {
  return createHash("md5").update(value).digest().readUInt32BE(0) % partitions;
}

/** Batch and transaction operations: each item is charged to its own table and partition. */
export const DYNAMODB_MULTI_ITEM = new Set(["BatchGetItem", "BatchWriteItem", "TransactGetItems", "TransactWriteItems"]);

/**
 * One item of a BatchGetItem, BatchWriteItem, TransactGetItems or TransactWriteItems, as capacity
 * sees it: AWS charges each item against its own table and partition ("Each item in a batch or
 * transaction … consumes capacity of its table", DYNAMODB_READ_WRITE_UNITS), not the request's
 * first table.
 */
export interface DynamoRequestItem {
  /** Its place in the request: TransactItems' order (CancellationReasons follow it), else the order of RequestItems. */
  position: number;
  table: string;
  /** The partition key value (JSON of its AttributeValue), or null when the request has none. */
  partitionValue: string | null;
  /** What it costs before the answer: half-RCUs for reads, WCUs for writes. */
  cost: number;
  /** The item's key (reads: to find the item in the answer; writes: its Key or the Item's attributes). */
  key: Item | null;
  /** BatchGetItem: whether the read is strongly consistent. */
  consistent: boolean;
}

const pickPartition = (o: unknown, keyAttribute: string | null): string | null => partitionKeyValueOf({ Key: o }, keyAttribute);

/** The top-level, comma-separated parts of an expression clause (commas inside function calls stay). */
function splitTopLevel(text: string): string[] {
  const out: string[] = [];
  let depth = 0;
  let from = 0;
  for (let i = 0; i < text.length; i++) {
    const c = text[i];
    if (c === "(") depth++;
    else if (c === ")") depth--;
    else if (c === "," && depth === 0) {
      out.push(text.slice(from, i));
      from = i + 1;
    }
  }
  out.push(text.slice(from));
  return out.map((p) => p.trim()).filter(Boolean);
}

/** The text of one clause (SET, REMOVE, ADD, DELETE) of an UpdateExpression. */
function clauseOf(expression: string, clause: "SET" | "REMOVE" | "ADD" | "DELETE"): string {
  const m = new RegExp(`\\b${clause}\\b([\\s\\S]*?)(?=\\b(?:SET|REMOVE|ADD|DELETE)\\b|$)`, "i").exec(expression);
  return m?.[1] ?? "";
}

/**
 * What an UpdateItem (or a transaction's Update) changes, by top-level attribute name: the values
 * it sets (`SET a = :v`, and the value a function or sum in it names, e.g. `if_not_exists(a, :v)`;
 * AttributeUpdates' PUT values), the attributes it changes to values the request does not hold
 * (ADD, a SET of a sum of attributes), and those it removes (REMOVE; AttributeUpdates' DELETE
 * without a value).
 */
export function updateChangesOf(u: Json): { set: Item; changed: Set<string>; removed: Set<string> } {
  const names = (u.ExpressionAttributeNames ?? {}) as Record<string, string>;
  const values = (u.ExpressionAttributeValues ?? {}) as Record<string, unknown>;
  const nameOf = (path: string) => {
    const top = path.trim().split(/[.[]/)[0] ?? "";
    return top.startsWith("#") ? names[top] ?? top : top;
  };
  const set: Item = {};
  const changed = new Set<string>();
  const removed = new Set<string>();
  if (typeof u.UpdateExpression === "string") {
    for (const part of splitTopLevel(clauseOf(u.UpdateExpression, "SET"))) {
      const at = part.indexOf("=");
      if (at < 0) continue;
      const name = nameOf(part.slice(0, at));
      const token = /:\w+/.exec(part.slice(at + 1))?.[0];
      changed.add(name);
      if (token && values[token] !== undefined) set[name] = values[token];
    }
    for (const part of splitTopLevel(clauseOf(u.UpdateExpression, "REMOVE"))) removed.add(nameOf(part));
    for (const part of splitTopLevel(clauseOf(u.UpdateExpression, "ADD"))) changed.add(nameOf(part.split(/\s+/)[0] ?? ""));
  }
  if (u.AttributeUpdates && typeof u.AttributeUpdates === "object") {
    for (const [k, v] of Object.entries(u.AttributeUpdates as Record<string, { Value?: unknown; Action?: string }>)) {
      if (v.Action === "DELETE" && v.Value === undefined) removed.add(k);
      else {
        changed.add(k);
        if (v.Value !== undefined && v.Action !== "ADD" && v.Action !== "DELETE") set[k] = v.Value;
      }
    }
  }
  return { set, changed, removed };
}

/** An UpdateItem's key and the values it sets, as attributes (what an index entry of it holds, at least). */
export function updatedAttributes(u: Json): Item {
  return { ...((u.Key ?? {}) as Item), ...updateChangesOf(u).set };
}

/**
 * The items of a batch or transaction, each with its table, partition key value and cost (same
 * rules as the single-item calls: reads one 4 KB unit per key asked for, eventually consistent
 * half, transactional double; writes their item's size in 1 KB units, a delete one, transactional
 * double). `keys` maps a table to its partition key attribute (keys=); without one, the first
 * attribute of the item's Key or Item in the request's order. Empty for other operations.
 */
export function requestItemsOf(operation: string, request: Json, keys: Record<string, string> = {}): DynamoRequestItem[] {
  const out: DynamoRequestItem[] = [];
  const add = (table: string, key: unknown, cost: number, consistent = false) =>
    out.push({ position: out.length, table, partitionValue: pickPartition(key, keys[table] ?? null), cost, key: key && typeof key === "object" ? (key as Item) : null, consistent });
  const requestItems = (request.RequestItems ?? {}) as Record<string, unknown>;
  switch (operation) {
    case "BatchGetItem":
      for (const [table, r] of Object.entries(requestItems)) {
        const { Keys, ConsistentRead } = (r ?? {}) as { Keys?: unknown[]; ConsistentRead?: boolean };
        for (const k of Array.isArray(Keys) ? Keys : []) add(table, k, perUnit(ConsistentRead), ConsistentRead === true);
      }
      return out;
    case "BatchWriteItem":
      for (const [table, writes] of Object.entries(requestItems)) {
        for (const w of Array.isArray(writes) ? (writes as { PutRequest?: { Item?: unknown }; DeleteRequest?: { Key?: unknown } }[]) : []) {
          if (w.PutRequest) add(table, w.PutRequest.Item, units(itemBytes(w.PutRequest.Item), WRITE_UNIT));
          else add(table, w.DeleteRequest?.Key, 1);
        }
      }
      return out;
    case "TransactGetItems":
      for (const t of Array.isArray(request.TransactItems) ? (request.TransactItems as { Get?: Json }[]) : []) add(String(t.Get?.TableName ?? "-"), t.Get?.Key, 4, true);
      return out;
    case "TransactWriteItems":
      for (const t of Array.isArray(request.TransactItems) ? (request.TransactItems as Record<string, Json>[]) : []) {
        if (t.Put) add(String(t.Put.TableName ?? "-"), t.Put.Item, 2 * units(itemBytes(t.Put.Item), WRITE_UNIT));
        else if (t.Update) add(String(t.Update.TableName ?? "-"), t.Update.Key, 2 * units(itemBytes(updatedAttributes(t.Update)), WRITE_UNIT));
        else {
          // Delete and ConditionCheck: two WCUs (a transactional write of up to 1 KB).
          const op = (t.Delete ?? t.ConditionCheck ?? {}) as Json;
          add(String(op.TableName ?? "-"), op.Key, 2);
        }
      }
      return out;
    default:
      return out;
  }
}

/** Whether `item` (from an answer) holds every attribute of `key` with the same value. */
function holdsKey(item: unknown, key: Item): boolean {
  if (!item || typeof item !== "object") return false;
  return Object.entries(key).every(([k, v]) => JSON.stringify((item as Item)[k]) === JSON.stringify(v));
}

/**
 * What some items of a batch or transaction read cost, from the answer, in half-RCUs: each item
 * found rounded up to 4 KB on its own (TransactGetItems by its place in Responses), a key not
 * found the minimum unit (AWS charges a read of a missing item), a key the answer lists in
 * UnprocessedKeys nothing. Null when the answer is not a success.
 */
export function itemsReadCost(operation: string, items: DynamoRequestItem[], responseText: string): number | null {
  const response = parse(responseText);
  let n = 0;
  if (operation === "TransactGetItems") {
    const responses = Array.isArray(response.Responses) ? (response.Responses as { Item?: unknown }[]) : [];
    for (const i of items) n += 4 * units(itemBytes(responses[i.position]?.Item), READ_UNIT);
    return n;
  }
  const found = (response.Responses ?? {}) as Record<string, unknown[]>;
  const unprocessed = (response.UnprocessedKeys ?? {}) as Record<string, { Keys?: Item[] }>;
  for (const i of items) {
    if (!i.key) continue;
    if ((unprocessed[i.table]?.Keys ?? []).some((k) => holdsKey(k, i.key!))) continue;
    const item = (Array.isArray(found[i.table]) ? found[i.table]! : []).find((x) => holdsKey(x, i.key!));
    n += units(itemBytes(item), READ_UNIT) * (i.consistent ? 2 : 1);
  }
  return n;
}

/**
 * The capacity a batch or transaction's answer reports for one table (ConsumedCapacity is a list
 * with one entry per table), in half-RCUs for reads or WCUs for writes: the table's own share
 * (`Table`, with ReturnConsumedCapacity INDEXES), else the entry's total; null when the answer has none.
 */
export function tableConsumed(responseText: string, table: string, kind: "read" | "write"): number | null {
  const cc = parse(responseText).ConsumedCapacity;
  if (!Array.isArray(cc)) return null;
  const e = (cc as Json[]).find((x) => x.TableName === table);
  if (!e) return null;
  const own = e.Table as Json | undefined;
  const v = (own && typeof own === "object" ? ((kind === "read" ? own.ReadCapacityUnits : own.WriteCapacityUnits) ?? own.CapacityUnits) : undefined) ?? (kind === "read" ? e.ReadCapacityUnits : e.WriteCapacityUnits) ?? e.CapacityUnits;
  if (typeof v !== "number") return null;
  return kind === "read" ? Math.max(1, Math.round(v * 2)) : Math.max(1, Math.ceil(v));
}

export const DYNAMODB_GSI = "https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/GSI.html#GSI.ThroughputConsiderations.Writes";

/** A table's global secondary index, as gsi=TABLE:INDEX:PARTITIONKEY[/SORTKEY][:KEYS_ONLY] describes it. */
export interface GlobalIndex {
  name: string;
  partitionKey: string;
  sortKey: string | null;
  /** ALL (the default): the index entry holds the whole item; KEYS_ONLY: its keys only. */
  projection: "ALL" | "KEYS_ONLY";
}

/** A write to a global secondary index that a write to its table causes. */
export interface IndexWrite {
  /** The table write's place in the request (0 for a request of one item). */
  position: number;
  table: string;
  index: string;
  /** The index partition key value it goes to; null when the request does not say (the old entry an update deletes). */
  partitionValue: string | null;
  /** WCUs: the index entry's size in 1 KB units (a delete of the old entry: one, a lower bound). */
  cost: number;
}

/** One write of a request to a table: a put of a whole item, an update, or a delete (ConditionCheck writes nothing). */
type TableWrite = { position: number; table: string } & ({ put: Item } | { update: Json } | { delete: true });

function tableWritesOf(operation: string, request: Json): TableWrite[] {
  const table = String(request.TableName ?? "-");
  switch (operation) {
    case "PutItem": return [{ position: 0, table, put: (request.Item ?? {}) as Item }];
    case "UpdateItem": return [{ position: 0, table, update: request }];
    case "DeleteItem": return [{ position: 0, table, delete: true }];
    case "BatchWriteItem": {
      const out: TableWrite[] = [];
      for (const [t, writes] of Object.entries((request.RequestItems ?? {}) as Record<string, unknown>)) {
        for (const w of Array.isArray(writes) ? (writes as { PutRequest?: { Item?: Item } }[]) : []) out.push(w.PutRequest ? { position: out.length, table: t, put: w.PutRequest.Item ?? {} } : { position: out.length, table: t, delete: true });
      }
      return out;
    }
    case "TransactWriteItems": {
      const out: TableWrite[] = [];
      const items = Array.isArray(request.TransactItems) ? (request.TransactItems as Record<string, Json>[]) : [];
      items.forEach((t, position) => {
        if (t.Put) out.push({ position, table: String(t.Put.TableName ?? "-"), put: (t.Put.Item ?? {}) as Item });
        else if (t.Update) out.push({ position, table: String(t.Update.TableName ?? "-"), update: t.Update });
        else if (t.Delete) out.push({ position, table: String(t.Delete.TableName ?? "-"), delete: true });
      });
      return out;
    }
    default: return [];
  }
}

/** The size of an index entry of `attributes`: all of them (ALL), or the index's keys and the table's partition key (KEYS_ONLY). */
function entryBytes(attributes: Item, index: GlobalIndex, tableKey: string | null): number {
  if (index.projection === "ALL") return itemBytes(attributes);
  const keep = new Set([index.partitionKey, ...(index.sortKey ? [index.sortKey] : []), ...(tableKey ? [tableKey] : [])]);
  return itemBytes(Object.fromEntries(Object.entries(attributes).filter(([k]) => keep.has(k))));
}

/**
 * The writes to global secondary indexes that a request's table writes cause, as AWS charges them
 * (DYNAMODB_GSI): a put of an item that has the index's key attributes puts an entry in the index
 * (its projected size in 1 KB units); an update that sets or removes an index key attribute
 * deletes the old entry (one unit: its size is not in the request) and, unless it removed the key,
 * puts the new one (the key and the values the update sets: a lower bound, as for UpdateItem
 * itself). What the request cannot tell is not charged: a put that replaces an item whose entry
 * moves or goes, an update of other attributes of an item in the index (one write to refresh its
 * projection), a delete of an item in the index (one) — a ConsumedCapacity with INDEXES in the
 * answer tops those up. `gsis` maps a table to its global indexes (gsi=); `keys` its partition key.
 */
export function indexWritesOf(operation: string, request: Json, gsis: Record<string, GlobalIndex[]>, keys: Record<string, string> = {}): IndexWrite[] {
  const out: IndexWrite[] = [];
  for (const w of tableWritesOf(operation, request)) {
    const indexes = gsis[w.table];
    if (!indexes?.length) continue;
    const tableKey = keys[w.table] ?? null;
    for (const index of indexes) {
      const keyNames = [index.partitionKey, ...(index.sortKey ? [index.sortKey] : [])];
      if ("put" in w) {
        if (keyNames.every((k) => w.put[k] !== undefined)) out.push({ position: w.position, table: w.table, index: index.name, partitionValue: JSON.stringify(w.put[index.partitionKey]), cost: units(entryBytes(w.put, index, tableKey ?? Object.keys(w.put)[0] ?? null), WRITE_UNIT) });
        continue;
      }
      if (!("update" in w)) continue;
      const { set, changed, removed } = updateChangesOf(w.update);
      if (!keyNames.some((k) => changed.has(k) || removed.has(k))) continue;
      out.push({ position: w.position, table: w.table, index: index.name, partitionValue: null, cost: 1 });
      if (keyNames.some((k) => removed.has(k))) continue;
      const after = updatedAttributes(w.update);
      const value = set[index.partitionKey] ?? after[index.partitionKey];
      out.push({ position: w.position, table: w.table, index: index.name, partitionValue: value === undefined ? null : JSON.stringify(value), cost: units(entryBytes(after, index, tableKey ?? Object.keys((w.update.Key ?? {}) as Item)[0] ?? null), WRITE_UNIT) });
    }
  }
  return out;
}

/**
 * What a write's answer reports it consumed, for one table or one of its global indexes (WCUs), or
 * null when it does not say. ConsumedCapacity is one entry (PutItem, UpdateItem, DeleteItem) or
 * one per table (batches, transactions); with ReturnConsumedCapacity INDEXES an entry splits its
 * total into `Table` and `GlobalSecondaryIndexes` (an index it does not list consumed nothing).
 * With TOTAL only the entry's total is known, which includes the indexes' writes: it stands for the
 * table only when the table has no global index sluice charges (`withIndexes` false).
 */
export function writeConsumed(responseText: string, table: string, index: string | null, withIndexes: boolean): number | null {
  const cc = parse(responseText).ConsumedCapacity;
  if (!cc || typeof cc !== "object") return null;
  const entries = (Array.isArray(cc) ? cc : [cc]) as Json[];
  const e = entries.find((x) => x.TableName === undefined || x.TableName === table);
  if (!e) return null;
  const share = (o: unknown): number | null => {
    if (!o || typeof o !== "object") return null;
    const v = (o as Json).WriteCapacityUnits ?? (o as Json).CapacityUnits;
    return typeof v === "number" ? v : null;
  };
  const split = e.Table !== undefined || e.GlobalSecondaryIndexes !== undefined;
  let v: number | null;
  if (index !== null) v = split ? share((e.GlobalSecondaryIndexes as Json | undefined)?.[index]) ?? 0 : null;
  else v = split ? share(e.Table) : withIndexes ? null : share(e);
  return v === null ? null : Math.ceil(v);
}
