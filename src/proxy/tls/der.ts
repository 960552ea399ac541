/**
 * Just enough DER (X.690) to write leaf certificates and read what they take from the CA
 * certificate, by hand: a generic ASN.1 library costs milliseconds per certificate and ~9 MB of
 * RSS once loaded, and a leaf is a fixed shape whose every field is written here once. The
 * library (@peculiar/asn1-x509) is still what creates a new CA, once per confdir.
 */

export function derHeader(tag: number, length: number): Buffer {
  if (length < 0x80) return Buffer.from([tag, length]);
  const bytes: number[] = [];
  for (let n = length; n > 0; n = Math.floor(n / 256)) bytes.unshift(n & 0xff);
  return Buffer.from([tag, 0x80 | bytes.length, ...bytes]);
}

export function derTlv(tag: number, content: Buffer): Buffer {
  return Buffer.concat([derHeader(tag, content.length), content]);
}

export function derSequence(parts: Buffer[]): Buffer {
  return derTlv(0x30, Buffer.concat(parts));
}

/** OBJECT IDENTIFIER from its dotted form. */
export function derOid(dotted: string): Buffer {
  const arcs = dotted.split(".").map(Number);
  const bytes: number[] = [];
  for (const arc of [arcs[0]! * 40 + arcs[1]!, ...arcs.slice(2)]) {
    const base128 = [arc & 0x7f];
    for (let n = Math.floor(arc / 128); n > 0; n = Math.floor(n / 128)) base128.unshift((n & 0x7f) | 0x80);
    bytes.push(...base128);
  }
  return derTlv(0x06, Buffer.from(bytes));
}

/** A BIT STRING of whole bytes (no unused bits), as keys and signatures are. */
export function derBitString(bytes: Buffer): Buffer {
  return derTlv(0x03, Buffer.concat([Buffer.from([0]), bytes]));
}

/** RelativeDistinguishedName SET { AttributeTypeAndValue { type, UTF8String } }. */
export function derRdn(oid: string, value: string): Buffer {
  return derTlv(0x31, derSequence([derOid(oid), derTlv(0x0c, Buffer.from(value, "utf8"))]));
}

/** UTCTime YYMMDDHHMMSSZ (dates before 2050, as RFC 5280 requires for UTCTime). */
export function derUtcTime(d: Date): Buffer {
  const two = (n: number) => String(n).padStart(2, "0");
  const text = `${two(d.getUTCFullYear() % 100)}${two(d.getUTCMonth() + 1)}${two(d.getUTCDate())}${two(d.getUTCHours())}${two(d.getUTCMinutes())}${two(d.getUTCSeconds())}Z`;
  return derTlv(0x17, Buffer.from(text, "ascii"));
}

/** Extension ::= SEQUENCE { extnID, critical BOOLEAN DEFAULT FALSE, extnValue OCTET STRING (DER of the value) }. */
export function derExtension(oid: string, critical: boolean, value: Buffer): Buffer {
  return derSequence([derOid(oid), ...(critical ? [Buffer.from([0x01, 0x01, 0xff])] : []), derTlv(0x04, value)]);
}

/** One element read from DER: its tag, its whole encoding, and its contents. */
export interface DerElement {
  tag: number;
  whole: Buffer;
  content: Buffer;
}

/** The element starting at `offset` of `der`; throws on a truncated or indefinite-length one. */
export function derRead(der: Buffer, offset = 0): DerElement {
  const tag = der[offset]!;
  let length = der[offset + 1]!;
  let header = 2;
  if (length & 0x80) {
    const count = length & 0x7f;
    if (count === 0 || count > 4) throw new Error("unsupported DER length");
    length = 0;
    for (let i = 0; i < count; i++) length = length * 256 + der[offset + 2 + i]!;
    header += count;
  }
  const end = offset + header + length;
  if (tag === undefined || end > der.length) throw new Error("truncated DER");
  return { tag, whole: der.subarray(offset, end), content: der.subarray(offset + header, end) };
}

/** The elements a constructed element (SEQUENCE, SET, [n]) contains, in order. */
export function derChildren(element: DerElement): DerElement[] {
  const out: DerElement[] = [];
  for (let at = 0; at < element.content.length; ) {
    const child = derRead(element.content, at);
    out.push(child);
    at += child.whole.length;
  }
  return out;
}
