/** The tnetstring codec: every type, nesting, precise errors, round trips, large bodies, and mitmproxy's own implementation as the judge. */
import { test, describe } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { decode, decodeAt, encode, encodeChunks, EncodeArena, TnetBytes, TnetFloat, TnetstringError, type TnetValue } from "../src/store/tnetstring.js";
import { needsPython } from "./support/needs.js";

const PYTHON = "/usr/bin/python3";

const enc = (v: TnetValue) => encode(v).toString("latin1");
const dec = (s: string) => decode(Buffer.from(s, "latin1"));

function decodeError(input: string | Buffer): TnetstringError {
  const buf = typeof input === "string" ? Buffer.from(input, "latin1") : input;
  try {
    decode(buf);
  } catch (err) {
    assert.ok(err instanceof TnetstringError, `expected TnetstringError, got ${err}`);
    return err;
  }
  assert.fail(`decoding ${JSON.stringify(buf.toString("latin1"))} should fail`);
}

/** What decoding an encoded value gives back: wrappers become plain numbers and Buffers. */
function normalized(v: TnetValue): TnetValue {
  if (v instanceof TnetFloat) return v.value;
  if (v instanceof TnetBytes) return Buffer.from(v.text, /[^\x00-\xff]/.test(v.text) ? "utf8" : "latin1");
  if (Array.isArray(v)) return v.map(normalized);
  if (v !== null && typeof v === "object" && !Buffer.isBuffer(v)) {
    const out: Record<string, TnetValue> = {};
    for (const [k, x] of Object.entries(v)) out[k] = normalized(x);
    return out;
  }
  return v;
}

describe("encoding each type", () => {
  test("scalars are written exactly as mitmproxy writes them", () => {
    assert.equal(enc(null), "0:~");
    assert.equal(enc(true), "4:true!");
    assert.equal(enc(false), "5:false!");
    assert.equal(enc(0), "1:0#");
    assert.equal(enc(-42), "3:-42#");
    assert.equal(enc(12345678901234567890n), "20:12345678901234567890#");
    assert.equal(enc(1e21), "22:1000000000000000000000#", "large integral numbers stay integer literals");
    assert.equal(enc(1.5), "3:1.5^");
    assert.equal(enc(1700000000.123456), "17:1700000000.123456^");
    assert.equal(enc(new TnetFloat(3)), "3:3.0^", "integral floats keep their float tag, like Python's 3.0");
    assert.equal(enc(new TnetFloat(-0)), "4:-0.0^");
    assert.equal(enc(Infinity), "3:inf^");
    assert.equal(enc(-Infinity), "4:-inf^");
    assert.equal(enc(NaN), "3:nan^");
  });

  test("strings are UTF-8 `;`, bytes are `,`, latin1 text is bytes", () => {
    assert.equal(encode("héllo").toString("utf8"), "6:héllo;");
    assert.equal(enc(""), "0:;");
    assert.equal(enc(Buffer.from([0, 1, 0xff])), "3:\x00\x01\xff,");
    assert.equal(enc(Buffer.alloc(0)), "0:,");
    assert.equal(enc(new TnetBytes("caf\u00e9")), "4:caf\xe9,", "one byte per char");
    assert.equal(encode(new TnetBytes("日本")).toString("utf8"), "6:日本,", "chars above U+00FF fall back to UTF-8");
  });

  test("lists and dicts, nested", () => {
    assert.equal(enc([]), "0:]");
    assert.equal(enc({}), "0:}");
    assert.equal(enc([1, "a", null]), "11:1:1#1:a;0:~]");
    assert.equal(enc({ a: 1 }), "8:1:a;1:1#}");
    assert.equal(enc({ a: [{ b: [] }] }), "18:1:a;10:7:1:b;0:]}]}");
    assert.equal(enc({ skipped: undefined as unknown as TnetValue, kept: 1 }), "11:4:kept;1:1#}", "undefined dict values are left out");
  });

  test("the digit count of lengths is right at every boundary", () => {
    for (const n of [0, 1, 9, 10, 99, 100, 999, 1000, 9999, 10000, 99999, 100000, 999999, 1000000]) {
      const body = Buffer.alloc(n, 0x61);
      const out = encode(body);
      assert.equal(out.toString("latin1", 0, String(n).length + 1), `${n}:`);
      assert.equal(out.length, String(n).length + 2 + n);
      assert.deepEqual(decode(out), body);
    }
  });
});

describe("decoding each type", () => {
  test("scalars", () => {
    assert.equal(dec("0:~"), null);
    assert.equal(dec("4:true!"), true);
    assert.equal(dec("5:false!"), false);
    assert.equal(dec("3:-42#"), -42);
    assert.equal(dec("2:+7#"), 7);
    assert.equal(dec("20:12345678901234567890#"), 12345678901234567890n, "integers beyond 2^53 come back as bigint");
    assert.equal(dec("16:9007199254740991#"), Number.MAX_SAFE_INTEGER);
    assert.equal(dec("3:1.5^"), 1.5);
    assert.equal(dec("5:1e-05^"), 1e-5);
    assert.equal(dec("3:inf^"), Infinity);
    assert.equal(dec("4:-inf^"), -Infinity);
    assert.ok(Number.isNaN(dec("3:nan^")));
    assert.equal(dec("0:;"), "");
    assert.equal(decode(Buffer.from("6:héllo;")), "héllo");
  });

  test("bytes come back as views of the input, not copies", () => {
    const input = Buffer.from("5:hello,");
    const out = decode(input) as Buffer;
    assert.deepEqual(out, Buffer.from("hello"));
    assert.equal(out.buffer, input.buffer);
    assert.equal(out.byteOffset, input.byteOffset + 2);
  });

  test("lists and dicts, nested, with any key order", () => {
    assert.deepEqual(dec("11:1:1#1:a;0:~]"), [1, "a", null]);
    assert.deepEqual(dec("18:1:a;10:7:1:b;0:]}]}"), { a: [{ b: [] }] });
    assert.deepEqual(dec("16:1:b;1:2#1:a;1:1#}"), { a: 1, b: 2 });
    assert.deepEqual(dec("8:1:k,1:v,}"), { k: Buffer.from("v") }, "Python 2 era files have bytes keys");
  });

  test("repeated and non-ASCII keys decode correctly (the key cache never confuses them)", () => {
    const keys = ["timestamp_start", "timestamp_end", "tímestamp", "a", "b", "ab", "ba", "x".repeat(60)];
    const value: Record<string, TnetValue> = {};
    keys.forEach((k, i) => (value[k] = i));
    for (let round = 0; round < 3; round++) assert.deepEqual(decode(encode(value)), value);
  });

  test("a __proto__ key is an ordinary own property, never the prototype", () => {
    const out = decode(Buffer.from("19:9:__proto__;4:true!}")) as Record<string, unknown>;
    assert.equal(Object.getPrototypeOf(out), Object.prototype);
    assert.deepEqual(Object.keys(out), ["__proto__"]);
    assert.equal(Object.getOwnPropertyDescriptor(out, "__proto__")?.value, true);
    assert.equal(encode(out as TnetValue).toString(), "19:9:__proto__;4:true!}");
  });

  test("decodeAt reads one value and says where it ends", () => {
    const buf = Buffer.from("1:a,2:bc,");
    const first = decodeAt(buf, 0);
    assert.deepEqual(first, { value: Buffer.from("a"), end: 4 });
    assert.deepEqual(decodeAt(buf, first.end), { value: Buffer.from("bc"), end: 9 });
  });
});

describe("errors name the problem and its byte offset", () => {
  const cases: [name: string, input: string, offset: number, pattern: RegExp, truncated?: boolean][] = [
    ["leading zero", "01:a,", 0, /leading zero/],
    ["more than 12 digits", "1234567890123:x,", 0, /longer than 12 digits/],
    ["not a digit", "x:", 0, /expected a length digit, got "x"/],
    ["bad char in the prefix", "1x:a,", 1, /expected a digit or ':'.*"x"/],
    ["no colon before the end", "12", 0, /runs to the end/, true],
    ["empty input", "", 0, /got end of data/, true],
    ["payload past the end", "5:ab,", 0, /length 5 runs past the end of data/, true],
    ["unknown tag", "3:abc?", 5, /unknown type tag "\?"/],
    ["invalid integer", "2:1a#", 2, /invalid integer "1a"/],
    ["invalid float", "3:1.x^", 2, /invalid float "1.x"/],
    ["invalid boolean", "4:True!", 2, /invalid boolean "True"/],
    ["non-empty null", "1:x~", 0, /null must be empty/],
    ["list item past its list", "4:9:a,]", 2, /length 9 runs past the end of the enclosing list or dict/, false],
    ["dict key that is not a string", "8:1:1#1:a,}", 2, /dict key must be a string, got number/],
    ["dict key without a value", "4:1:a;}", 2, /dict key "a" has no value/],
    ["trailing data", "1:a,xyz", 4, /3 bytes of trailing data/],
    ["nested error deep inside", "15:1:a;8:1:b;1:x?}}", 16, /unknown type tag "\?"/],
  ];
  for (const [name, input, offset, pattern, truncated] of cases) {
    test(name, () => {
      const err = decodeError(input);
      assert.match(err.message, pattern);
      assert.equal(err.offset, offset, `offset for ${JSON.stringify(input)}: ${err.message}`);
      assert.match(err.message, new RegExp(`at byte ${offset}\\)$`));
      if (truncated !== undefined) assert.equal(err.truncated, truncated);
    });
  }

  test("offsets are absolute when decoding from the middle of a buffer", () => {
    const buf = Buffer.from("xxxxx3:abc?");
    assert.throws(() => decode(buf, 5), (err: TnetstringError) => err.offset === 10);
  });

  test("nesting is limited instead of overflowing the stack", () => {
    let s = "0:]";
    for (let i = 0; i < 600; i++) s = `${s.length}:${s}]`;
    assert.match(decodeError(s).message, /nesting deeper than 512/);
    const deep: TnetValue[] = [];
    let cur = deep;
    for (let i = 0; i < 600; i++) {
      const next: TnetValue[] = [];
      cur.push(next);
      cur = next;
    }
    assert.throws(() => encode(deep), /nested deeper than 512/);
  });

  test("values that have no tnetstring form are refused", () => {
    assert.throws(() => encode((() => 1) as unknown as TnetValue), /cannot encode a function/);
    assert.throws(() => encode(new Uint8Array(2) as unknown as TnetValue), /not a Buffer/);
  });
});

describe("round trips", () => {
  /** Deterministic pseudo-random values of every type, nested. */
  function randomValue(rand: () => number, depth: number): TnetValue {
    const pick = Math.floor(rand() * (depth > 3 ? 9 : 11));
    switch (pick) {
      case 0:
        return null;
      case 1:
        return rand() < 0.5;
      case 2:
        return Math.floor((rand() - 0.5) * 2 ** 40);
      case 3:
        return (rand() - 0.5) * 10 ** Math.floor(rand() * 30 - 15);
      case 4:
        return Array.from({ length: Math.floor(rand() * 20) }, () => String.fromCodePoint(Math.floor(rand() * 0x2fff) + 1)).join("");
      case 5:
        return Buffer.from(Array.from({ length: Math.floor(rand() * 40) }, () => Math.floor(rand() * 256)));
      case 6:
        return new TnetFloat(Math.floor(rand() * 1000));
      case 7:
        return new TnetBytes(Array.from({ length: Math.floor(rand() * 20) }, () => String.fromCharCode(Math.floor(rand() * 256))).join(""));
      case 8:
        return BigInt(Math.floor(rand() * 1e6)) * 10n ** 20n;
      case 9:
        return Array.from({ length: Math.floor(rand() * 6) }, () => randomValue(rand, depth + 1));
      default: {
        const d: Record<string, TnetValue> = {};
        for (let i = Math.floor(rand() * 6); i > 0; i--) d[`k${Math.floor(rand() * 50)}é`.slice(0, 1 + Math.floor(rand() * 4))] = randomValue(rand, depth + 1);
        return d;
      }
    }
  }

  test("random nested values survive encode → decode", () => {
    let seed = 12345;
    const rand = () => ((seed = (Math.imul(seed, 1103515245) + 12345) >>> 0) / 2 ** 32);
    for (let i = 0; i < 2000; i++) {
      const value = randomValue(rand, 0);
      const bytes = encode(value);
      assert.deepEqual(decode(bytes), normalized(value));
      assert.deepEqual(decode(encode(decode(bytes))), decode(bytes));
    }
  });

  test("mitmproxy's Python implementation reads what we write and writes what we read", { skip: needsPython("mitmproxy", "mitmproxy", PYTHON) }, () => {
    const value: TnetValue = { version: 17, s: "héllo", b: Buffer.from([0, 255, 10]), f: new TnetFloat(2), g: 0.1, n: null, l: [true, false, [], {}], big: 2n ** 70n, neg: -3, lat: new TnetBytes("caf\u00e9") };
    const ours = encode(value);
    // Python decodes ours, checks it, re-encodes it, and we decode that.
    const script = "import sys\nfrom mitmproxy.io import tnetstring\nv = tnetstring.loads(sys.stdin.buffer.read())\nassert v['s'] == 'héllo' and v['b'] == b'\\x00\\xff\\n' and v['f'] == 2.0 and isinstance(v['f'], float)\nassert v['big'] == 2**70 and v['lat'] == b'caf\\xe9' and v['l'] == [True, False, [], {}]\nsys.stdout.buffer.write(tnetstring.dumps(v))";
    const r = spawnSync(PYTHON, ["-c", script], { input: ours });
    assert.equal(r.status, 0, r.stderr.toString());
    assert.deepEqual(decode(r.stdout), normalized(value));
  });
});

describe("large bodies", () => {
  test("a 50 MB body is passed through by reference when encoding and viewed, not copied, when decoding", () => {
    const body = Buffer.allocUnsafe(50 * 1024 * 1024);
    body.fill(0xab);
    body[0] = 1;
    body[body.length - 1] = 2;
    const record = { content: body, headers: [[new TnetBytes("Content-Length"), new TnetBytes(String(body.length))]], timestamp: new TnetFloat(1.5) };
    const chunks = encodeChunks(record);
    assert.ok(chunks.includes(body), "the body itself is one of the chunks");
    const joined = Buffer.concat(chunks);
    assert.equal(joined.length, chunks.reduce((n, c) => n + c.length, 0));
    const back = decode(joined) as { content: Buffer };
    assert.equal(back.content.length, body.length);
    assert.equal(back.content.buffer, joined.buffer, "decoded body is a view of the record");
    assert.equal(back.content[0], 1);
    assert.equal(back.content[body.length - 1], 2);
    assert.deepEqual(encode(record), joined);
  });

  test("small records share an arena, contiguously; big bodies still go by reference", () => {
    const arena = new EncodeArena(4096);
    const a = encodeChunks({ a: 1 }, arena);
    const b = encodeChunks({ b: "two" }, arena);
    assert.equal(a.length, 1);
    assert.equal(a[0]!.buffer, arena.buffer.buffer);
    assert.equal(b[0]!.byteOffset, a[0]!.byteOffset + a[0]!.length, "the second record follows the first");
    assert.equal(arena.used, a[0]!.length + b[0]!.length);
    const big = Buffer.alloc(100_000, 1);
    const c = encodeChunks({ big }, arena);
    assert.equal(c.length, 3);
    assert.equal(c[1], big);
    assert.deepEqual(decode(Buffer.concat(c)), { big });
    const tooBig = encodeChunks({ s: "x".repeat(8000) }, arena);
    assert.notEqual(tooBig[0]!.buffer, arena.buffer.buffer, "a record that does not fit gets its own buffer");
  });
});
