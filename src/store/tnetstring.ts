/**
 * Typed netstrings, the encoding of mitmproxy's flow files: `LENGTH:PAYLOAD` plus one type tag.
 *
 * `,` bytes · `;` UTF-8 string · `#` integer · `^` float · `!` boolean · `~` null · `]` list ·
 * `}` dict (key, value, key, value …).
 *
 * The decoder walks a Buffer by offset and never converts more than one value to a string; byte
 * payloads come back as zero-copy views of the input. The encoder measures first, then writes into
 * one allocation, handing large byte payloads through by reference so a 50 MB body is never copied.
 */

export type TnetValue = null | boolean | number | bigint | string | Buffer | TnetFloat | TnetBytes | TnetValue[] | TnetDict;
export interface TnetDict {
  [key: string]: TnetValue;
}

/** A number to be written as a float (`^`) even when it is integral, like Python's 1.0. */
export class TnetFloat {
  constructor(readonly value: number) {}
}

/**
 * Bytes given as a one-char-per-byte (latin1) string: how Node hands us header names, values,
 * methods and paths. Written as `,` without allocating a Buffer first. A string holding chars above
 * U+00FF cannot be latin1 and is written as its UTF-8 bytes instead.
 */
export class TnetBytes {
  constructor(readonly text: string) {}
}

export class TnetstringError extends Error {
  /** Byte offset in the input where the problem was found. */
  readonly offset: number;
  /** True when the input simply ends too early (more data would fix it). */
  readonly truncated: boolean;
  /** What is wrong, without the offset. */
  readonly reason: string;

  constructor(reason: string, offset: number, truncated = false) {
    super(`${reason} (at byte ${offset})`);
    this.name = "TnetstringError";
    this.offset = offset;
    this.truncated = truncated;
    this.reason = reason;
  }
}

/** mitmproxy refuses length prefixes longer than this. */
export const MAX_LENGTH_DIGITS = 12;
const MAX_DEPTH = 512;

const COLON = 0x3a;
const DIGIT_0 = 0x30;
const DIGIT_9 = 0x39;
const TAG_BYTES = 0x2c; // ,
const TAG_STRING = 0x3b; // ;
const TAG_INT = 0x23; // #
const TAG_FLOAT = 0x5e; // ^
const TAG_BOOL = 0x21; // !
const TAG_NULL = 0x7e; // ~
const TAG_LIST = 0x5d; // ]
const TAG_DICT = 0x7d; // }

export interface LengthPrefix {
  /** Payload length in bytes. */
  length: number;
  /** Offset of the first payload byte (just after the colon). */
  payloadStart: number;
}

/**
 * Reads the `LENGTH:` prefix at `pos`, validating it as mitmproxy does (digits only, no leading
 * zeros, at most 12 digits). `limit` is the end of the readable data.
 */
export function readLengthPrefix(buf: Uint8Array, pos: number, limit: number, limitIsEndOfData = true): LengthPrefix {
  if (pos >= limit) throw new TnetstringError("expected a length prefix, got end of data", pos, limitIsEndOfData);
  const first = buf[pos]!;
  if (first < DIGIT_0 || first > DIGIT_9) {
    throw new TnetstringError(`expected a length digit, got ${describeByte(first)}`, pos);
  }
  let length = 0;
  let i = pos;
  while (i < limit) {
    const c = buf[i]!;
    if (c === COLON) break;
    if (c < DIGIT_0 || c > DIGIT_9) throw new TnetstringError(`expected a digit or ':' in the length prefix, got ${describeByte(c)}`, i);
    if (i - pos >= MAX_LENGTH_DIGITS) throw new TnetstringError(`length prefix longer than ${MAX_LENGTH_DIGITS} digits`, pos);
    length = length * 10 + (c - DIGIT_0);
    i++;
  }
  if (i >= limit) throw new TnetstringError("length prefix runs to the end of data", pos, limitIsEndOfData);
  if (first === DIGIT_0 && i - pos > 1) throw new TnetstringError("length prefix has a leading zero", pos);
  if (i === pos) throw new TnetstringError("empty length prefix", pos);
  return { length, payloadStart: i + 1 };
}

/** Decodes exactly one value that must fill `buf[start, end)`. */
export function decode(buf: Buffer, start = 0, end = buf.length): TnetValue {
  const d = new Decoder(buf, end);
  const value = d.value(start, end, 0);
  if (d.pos !== end) throw new TnetstringError(`${end - d.pos} bytes of trailing data after the value`, d.pos);
  return value;
}

/** Decodes one value at `start` and returns it with the offset just past it. */
export function decodeAt(buf: Buffer, start = 0, end = buf.length): { value: TnetValue; end: number } {
  const d = new Decoder(buf, end);
  const value = d.value(start, end, 0);
  return { value, end: d.pos };
}

class Decoder {
  pos = 0;
  /** Set by `prefix`: where the payload of the value just measured starts. */
  private payloadStart = 0;

  /** `dataEnd` is where the input ends: running into it means truncated, not malformed. */
  constructor(
    private readonly buf: Buffer,
    private readonly dataEnd: number,
  ) {}

  /** Parses the value at `start`; it must end at or before `limit`. Leaves `pos` just past it. */
  value(start: number, limit: number, depth: number): TnetValue {
    const buf = this.buf;
    const length = this.prefix(start, limit);
    const payloadStart = this.payloadStart;
    const payloadEnd = payloadStart + length;
    const tag = buf[payloadEnd]!;
    this.pos = payloadEnd + 1;
    switch (tag) {
      case TAG_BYTES:
        return buf.subarray(payloadStart, payloadEnd);
      case TAG_STRING:
        return buf.toString("utf8", payloadStart, payloadEnd);
      case TAG_INT:
        return parseInteger(buf, payloadStart, payloadEnd);
      case TAG_FLOAT:
        return parseFloatLiteral(buf, payloadStart, payloadEnd);
      case TAG_BOOL:
        if (length === 4 && buf[payloadStart] === 0x74 && buf[payloadStart + 1] === 0x72 && buf[payloadStart + 2] === 0x75 && buf[payloadStart + 3] === 0x65) return true;
        if (length === 5 && buf.toString("latin1", payloadStart, payloadEnd) === "false") return false;
        throw new TnetstringError(`invalid boolean ${quote(buf, payloadStart, payloadEnd)}`, payloadStart);
      case TAG_NULL:
        if (length !== 0) throw new TnetstringError(`null must be empty, has ${length} bytes`, start);
        return null;
      case TAG_LIST:
        return this.list(payloadStart, payloadEnd, depth);
      case TAG_DICT:
        return this.dict(payloadStart, payloadEnd, depth);
      default:
        throw new TnetstringError(`unknown type tag ${describeByte(tag)}`, payloadEnd);
    }
  }

  /**
   * Reads `LENGTH:` at `start` and checks that the payload and its tag fit before `limit`.
   * Returns the length and leaves the payload offset in `payloadStart`. Inlined digit loop on the
   * hot path; anything unusual goes through readLengthPrefix for its precise error.
   */
  private prefix(start: number, limit: number): number {
    const buf = this.buf;
    let i = start;
    let length = 0;
    while (i < limit) {
      const c = buf[i]!;
      if (c === COLON) break;
      if (c < DIGIT_0 || c > DIGIT_9 || i - start >= MAX_LENGTH_DIGITS) break;
      length = length * 10 + (c - DIGIT_0);
      i++;
    }
    const atEnd = limit === this.dataEnd;
    if (i === start || i >= limit || buf[i] !== COLON || (buf[start] === DIGIT_0 && i - start > 1)) {
      readLengthPrefix(buf, start, limit, atEnd);
    }
    const payloadStart = i + 1;
    if (payloadStart + length >= limit) {
      const where = atEnd ? "the end of data" : "the end of the enclosing list or dict";
      throw new TnetstringError(`length ${length} runs past ${where} (${limit - payloadStart} bytes left)`, start, atEnd);
    }
    this.payloadStart = payloadStart;
    return length;
  }

  private list(start: number, end: number, depth: number): TnetValue[] {
    if (depth >= MAX_DEPTH) throw new TnetstringError(`nesting deeper than ${MAX_DEPTH}`, start);
    const out: TnetValue[] = [];
    let p = start;
    while (p < end) {
      out.push(this.value(p, end, depth + 1));
      p = this.pos;
    }
    this.pos = end + 1;
    return out;
  }

  private dict(start: number, end: number, depth: number): TnetDict {
    if (depth >= MAX_DEPTH) throw new TnetstringError(`nesting deeper than ${MAX_DEPTH}`, start);
    const buf = this.buf;
    const out: TnetDict = {};
    let p = start;
    while (p < end) {
      const keyAt = p;
      const keyLength = this.prefix(p, end);
      const keyStart = this.payloadStart;
      const keyEnd = keyStart + keyLength;
      const keyTag = buf[keyEnd];
      // Keys are `;` strings; Python 2 era files wrote them as `,` bytes.
      if (keyTag !== TAG_STRING && keyTag !== TAG_BYTES) {
        throw new TnetstringError(`dict key must be a string, got ${typeName(this.value(keyAt, end, depth + 1))}`, keyAt);
      }
      const name = dictKey(buf, keyStart, keyEnd);
      p = keyEnd + 1;
      if (p >= end) throw new TnetstringError(`dict key ${JSON.stringify(name)} has no value`, keyAt);
      const value = this.value(p, end, depth + 1);
      p = this.pos;
      if (name === "__proto__") Object.defineProperty(out, name, { value, enumerable: true, writable: true, configurable: true });
      else out[name] = value;
    }
    this.pos = end + 1;
    return out;
  }
}

/**
 * Dict keys repeat in every record ("timestamp_start", "headers" …). Returning the same string
 * object each time spares decoding it and, above all, re-internalizing it as a property name.
 */
const KEY_CACHE_SIZE = 1024;
const keyCache: (string | undefined)[] = new Array(KEY_CACHE_SIZE);

function dictKey(buf: Buffer, start: number, end: number): string {
  const length = end - start;
  if (length === 0) return "";
  if (length > 40) return buf.toString("utf8", start, end);
  // A cheap slot from the length and three bytes; the full comparison below decides.
  const slot = (length * 7919 + buf[start]! * 31 + buf[end - 1]! * 131 + buf[start + (length >> 1)]!) & (KEY_CACHE_SIZE - 1);
  const cached = keyCache[slot];
  if (cached !== undefined && cached.length === length) {
    let i = 0;
    while (i < length && cached.charCodeAt(i) === buf[start + i]) i++;
    if (i === length) return cached;
  }
  const key = buf.toString("utf8", start, end);
  // Only ASCII keys are cached: for them, chars and bytes compare one to one.
  if (key.length === length) keyCache[slot] = key;
  return key;
}

function parseInteger(buf: Buffer, start: number, end: number): number | bigint {
  let i = start;
  const negative = buf[i] === 0x2d;
  if (negative || buf[i] === 0x2b) i++;
  if (i === end) throw new TnetstringError(`invalid integer ${quote(buf, start, end)}`, start);
  let n = 0;
  for (let j = i; j < end; j++) {
    const c = buf[j]!;
    if (c < DIGIT_0 || c > DIGIT_9) throw new TnetstringError(`invalid integer ${quote(buf, start, end)}`, start);
    n = n * 10 + (c - DIGIT_0);
  }
  if (n <= Number.MAX_SAFE_INTEGER) return negative ? -n : n;
  return BigInt(buf.toString("latin1", start, end));
}

function parseFloatLiteral(buf: Buffer, start: number, end: number): number {
  // Python's float() syntax without its rarities: sign, digits, one dot, exponent.
  let plain = end > start;
  for (let i = start; i < end && plain; i++) {
    const c = buf[i]!;
    plain = (c >= DIGIT_0 && c <= DIGIT_9) || c === 0x2e || c === 0x2d || c === 0x2b || c === 0x65 || c === 0x45;
  }
  const text = buf.toString("latin1", start, end);
  if (plain) {
    const n = Number(text);
    if (!Number.isNaN(n)) return n;
  }
  // Python's repr() spells these inf, -inf and nan.
  const lower = text.trim().toLowerCase();
  if (lower === "inf" || lower === "+inf" || lower === "infinity" || lower === "+infinity") return Infinity;
  if (lower === "-inf" || lower === "-infinity") return -Infinity;
  if (lower === "nan" || lower === "+nan" || lower === "-nan") return NaN;
  throw new TnetstringError(`invalid float ${quote(buf, start, end)}`, start);
}

function describeByte(c: number): string {
  return c >= 0x20 && c < 0x7f ? JSON.stringify(String.fromCharCode(c)) : `byte 0x${c.toString(16).padStart(2, "0")}`;
}

function quote(buf: Buffer, start: number, end: number): string {
  const text = buf.toString("latin1", start, Math.min(end, start + 40));
  return JSON.stringify(end - start > 40 ? text + "…" : text);
}

function typeName(v: TnetValue): string {
  if (v === null) return "null";
  if (Array.isArray(v)) return "list";
  if (Buffer.isBuffer(v)) return "bytes";
  return typeof v === "object" ? "dict" : typeof v;
}

// ---------------------------------------------------------------------------------------------
// Encoding
//
// One pass, written back to front into a reused scratch buffer, the way mitmproxy's Python does
// it with a deque: a value's payload is written before its length prefix, so no separate
// measuring pass is needed. Walking each dict once matters: iterating the keys of many differently
// shaped objects is the dominant cost. (Dict entries thus come out last-first, as mitmproxy's do.)

/** Byte payloads at least this large are passed through by reference instead of copied. */
const BY_REFERENCE_BYTES = 64 * 1024;
/** Strings longer than this are measured and copied by Buffer's native code. */
const SHORT_STRING = 48;

/** Encodes `value` into a single Buffer. */
export function encode(value: TnetValue): Buffer {
  const chunks = encodeChunks(value);
  return chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks);
}

/**
 * Encodes `value` as a list of Buffers to be written in order (e.g. with one `writev`). Large byte
 * payloads appear as the caller's own Buffers, uncopied; everything else shares one allocation,
 * taken from `arena` when it has room (so many small records end up contiguous in it).
 */
export function encodeChunks(value: TnetValue, arena?: EncodeArena): Buffer[] {
  const e = encoder;
  e.reset();
  try {
    e.value(value, 0);
    return e.finish(arena);
  } finally {
    e.release();
  }
}

/**
 * A buffer that consecutive encodeChunks calls fill front to back. Bytes handed out are never
 * rewritten: when it is full, make a new arena rather than resetting this one.
 */
export class EncodeArena {
  readonly buffer: Buffer;
  used = 0;

  constructor(size: number) {
    this.buffer = Buffer.allocUnsafe(size);
  }
}

interface Hole {
  /** Scratch bytes written after (to the right of) the referenced buffer. */
  after: number;
  data: Buffer;
}

class BackwardEncoder {
  /** Bytes [pos, buf.length) hold the output so far, minus referenced payloads. */
  private buf = Buffer.allocUnsafe(64 * 1024);
  private pos = 0;
  private referenced = 0;
  private holes: Hole[] = [];
  private busy = false;

  reset(): void {
    // A value's toJSON or getter could re-enter encode(); give such a call its own encoder state.
    if (this.busy) throw new TypeError("encodeChunks re-entered while encoding");
    this.busy = true;
    this.pos = this.buf.length;
    this.referenced = 0;
    this.holes = [];
  }

  release(): void {
    this.busy = false;
    this.holes = [];
  }

  /** Output bytes produced so far, referenced payloads included. */
  private get written(): number {
    return this.buf.length - this.pos + this.referenced;
  }

  value(v: TnetValue, depth: number): void {
    if (v === null) {
      this.room(3);
      const p = this.pos - 3;
      this.buf[p] = DIGIT_0;
      this.buf[p + 1] = COLON;
      this.buf[p + 2] = TAG_NULL;
      this.pos = p;
      return;
    }
    switch (typeof v) {
      case "string":
        this.text(v, TAG_STRING, 0x7f);
        return;
      case "number":
        if (Number.isSafeInteger(v)) this.integer(v);
        else if (Number.isInteger(v)) this.literal(integerText(v), TAG_INT);
        else this.literal(floatText(v), TAG_FLOAT);
        return;
      case "boolean":
        this.literal(v ? "true" : "false", TAG_BOOL);
        return;
      case "bigint":
        this.literal(v.toString(), TAG_INT);
        return;
      case "object":
        break;
      default:
        throw new TypeError(`cannot encode a ${typeof v} as a tnetstring`);
    }
    if (Buffer.isBuffer(v)) {
      this.bytes(v);
      return;
    }
    if (v instanceof TnetBytes) {
      this.text(v.text, TAG_BYTES, 0xff);
      return;
    }
    if (v instanceof TnetFloat) {
      this.literal(floatText(v.value), TAG_FLOAT);
      return;
    }
    if (depth >= MAX_DEPTH) throw new TypeError(`cannot encode values nested deeper than ${MAX_DEPTH}`);
    if (v instanceof Uint8Array) throw new TypeError("cannot encode a Uint8Array that is not a Buffer; wrap it with Buffer.from(u8.buffer, u8.byteOffset, u8.length)");
    this.room(1);
    const end = this.written;
    if (Array.isArray(v)) {
      this.buf[--this.pos] = TAG_LIST;
      for (let i = v.length - 1; i >= 0; i--) this.value(v[i]!, depth + 1);
    } else {
      this.buf[--this.pos] = TAG_DICT;
      for (const key in v) {
        const item = (v as TnetDict)[key];
        if (item === undefined) continue;
        this.value(item, depth + 1);
        this.text(key, TAG_STRING, 0x7f);
      }
    }
    this.prefix(this.written - end - 1);
  }

  /** A string as `;` (UTF-8) or latin1 text as `,` (one byte per char up to `oneByteMax`). */
  private text(s: string, tag: number, oneByteMax: number): void {
    const n = s.length;
    if (n <= SHORT_STRING) {
      this.room(n + 1 + PREFIX_ROOM);
      const buf = this.buf;
      const start = this.pos - 1 - n;
      let i = 0;
      for (; i < n; i++) {
        const c = s.charCodeAt(i);
        if (c > oneByteMax) break;
        buf[start + i] = c;
      }
      if (i === n) {
        buf[this.pos - 1] = tag;
        this.pos = start;
        this.prefix(n);
        return;
      }
    }
    const encoding = oneByteMax === 0xff && isLatin1(s) ? "latin1" : "utf8";
    const length = encoding === "latin1" ? n : Buffer.byteLength(s, "utf8");
    this.room(length + 1 + PREFIX_ROOM);
    this.buf[--this.pos] = tag;
    this.pos -= length;
    this.buf.write(s, this.pos, length, encoding);
    this.prefix(length);
  }

  private bytes(b: Buffer): void {
    if (b.length >= BY_REFERENCE_BYTES) {
      this.room(1 + PREFIX_ROOM);
      this.buf[--this.pos] = TAG_BYTES;
      this.holes.push({ after: this.buf.length - this.pos, data: b });
      this.referenced += b.length;
    } else {
      this.room(b.length + 1 + PREFIX_ROOM);
      this.buf[--this.pos] = TAG_BYTES;
      this.pos -= b.length;
      b.copy(this.buf, this.pos);
    }
    this.prefix(b.length);
  }

  private integer(n: number): void {
    this.room(1 + 17 + PREFIX_ROOM);
    const buf = this.buf;
    buf[--this.pos] = TAG_INT;
    const end = this.pos;
    let x = Math.abs(n);
    do {
      buf[--this.pos] = DIGIT_0 + (x % 10);
      x = Math.floor(x / 10);
    } while (x > 0);
    if (n < 0) buf[--this.pos] = 0x2d;
    this.prefix(end - this.pos);
  }

  /** An ASCII literal: number text or a boolean. */
  private literal(text: string, tag: number): void {
    const n = text.length;
    this.room(n + 1 + PREFIX_ROOM);
    const buf = this.buf;
    buf[--this.pos] = tag;
    this.pos -= n;
    for (let i = 0; i < n; i++) buf[this.pos + i] = text.charCodeAt(i);
    this.prefix(n);
  }

  /** Writes `n:` in front of what was just written. */
  private prefix(n: number): void {
    const buf = this.buf;
    buf[--this.pos] = COLON;
    let x = n;
    do {
      buf[--this.pos] = DIGIT_0 + (x % 10);
      x = Math.floor(x / 10);
    } while (x > 0);
  }

  /** Makes sure `n` more bytes fit in front of `pos`, growing the scratch buffer if not. */
  private room(n: number): void {
    if (this.pos >= n) return;
    const used = this.buf.length - this.pos;
    let size = this.buf.length * 2;
    while (size - used < n) size *= 2;
    const grown = Buffer.allocUnsafe(size);
    this.buf.copy(grown, size - used, this.pos);
    this.buf = grown;
    this.pos = size - used;
  }

  /** Copies the scratch bytes out (into `arena` if they fit) and returns the chunks in file order. */
  finish(arena: EncodeArena | undefined): Buffer[] {
    const inline = this.buf.length - this.pos;
    let out: Buffer;
    let start: number;
    if (arena && arena.buffer.length - arena.used >= inline) {
      out = arena.buffer;
      start = arena.used;
      arena.used += inline;
    } else {
      out = Buffer.allocUnsafe(inline);
      start = 0;
    }
    this.buf.copy(out, start, this.pos);
    const whole = start === 0 && inline === out.length ? out : out.subarray(start, start + inline);
    if (this.holes.length === 0) return [whole];
    // Holes were recorded back to front; `after` counts the scratch bytes to their right.
    const chunks: Buffer[] = [];
    let from = 0;
    for (let i = this.holes.length - 1; i >= 0; i--) {
      const hole = this.holes[i]!;
      const at = inline - hole.after;
      if (at > from) chunks.push(whole.subarray(from, at));
      chunks.push(hole.data);
      from = at;
    }
    if (from < inline) chunks.push(whole.subarray(from));
    return chunks;
  }
}

/** Room for the longest length prefix and its colon. */
const PREFIX_ROOM = MAX_LENGTH_DIGITS + 2;

const encoder = new BackwardEncoder();

function integerText(n: number): string {
  // String(1e21) is "1e+21", which is not an integer literal.
  return Math.abs(n) < 1e21 ? String(n) : BigInt(n).toString();
}

/** Formats like Python's repr(float): parseable by Python's float(), integral values get ".0". */
function floatText(n: number): string {
  if (Number.isNaN(n)) return "nan";
  if (n === Infinity) return "inf";
  if (n === -Infinity) return "-inf";
  if (Number.isInteger(n) && Math.abs(n) < 1e16) return Object.is(n, -0) ? "-0.0" : `${n}.0`;
  return String(n);
}

function isLatin1(s: string): boolean {
  for (let i = 0; i < s.length; i++) if (s.charCodeAt(i) > 0xff) return false;
  return true;
}
