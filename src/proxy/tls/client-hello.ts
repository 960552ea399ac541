/**
 * Reads SNI and ALPN from a TLS ClientHello before any TLS is done, so that sluice can decide to
 * pass a connection through untouched (`--ignore-hosts`) or which leaf certificate to present.
 * Only the handshake framing is parsed; everything else is left to OpenSSL.
 */
export interface ClientHelloInfo {
  sni: string | null;
  alpnProtocols: string[];
  /**
   * Whether the client can verify an ECDSA certificate: it lists an ECDSA signature algorithm and
   * either offers TLS 1.3 or an ECDHE-ECDSA cipher suite (TLS 1.2 needs one for an ECDSA key).
   */
  acceptsEcdsa: boolean;
  /**
   * Set when the server_name is not an ASCII host name (RFC 6066: IDNA A-labels, "xn--…"), e.g.
   * raw UTF-8: such a hello is refused rather than its name mangled into another one.
   */
  badSni: string | null;
  /**
   * What is wrong with an ALPN extension that breaks RFC 7301's framing (an empty list or name, a
   * length running past the extension), or null. OpenSSL refuses such a hello with alert
   * decode_error; this says why in sluice's log. Its protocols are then not read.
   */
  malformedAlpn: string | null;
}

/** ecdsa_secp256r1_sha256 … ecdsa_sha1 (RFC 8446 SignatureScheme values). */
const ECDSA_SIGNATURE_SCHEMES = new Set([0x0403, 0x0503, 0x0603, 0x0203]);
/** TLS 1.2 ECDHE-ECDSA cipher suites (AES-GCM, AES-CBC, ChaCha20, CCM). */
function isEcdsaSuite(suite: number): boolean {
  return (suite >= 0xc006 && suite <= 0xc00a) || suite === 0xc023 || suite === 0xc024 || suite === 0xc02b || suite === 0xc02c || suite === 0xcca9 || (suite >= 0xc0ac && suite <= 0xc0af);
}

/** A fatal TLS alert `unrecognized_name` (RFC 6066 §3), for a ClientHello whose name sluice refuses. */
export const UNRECOGNIZED_NAME_ALERT = Buffer.from([0x15, 0x03, 0x03, 0x00, 0x02, 0x02, 0x70]);

/** True when the first byte is a TLS handshake record. */
export function looksLikeTls(firstBytes: Buffer): boolean {
  return firstBytes.length > 0 && firstBytes[0] === 0x16;
}

/**
 * Parses the ClientHello from the start of a connection's bytes.
 * Returns "incomplete" when more bytes are needed, null when it is not a parsable ClientHello.
 */
export function parseClientHello(data: Buffer): ClientHelloInfo | "incomplete" | null {
  // The handshake message may span several records: collect their payloads first.
  const handshake: Buffer[] = [];
  let have = 0;
  let need = -1;
  let off = 0;
  while (need < 0 || have < need) {
    if (data.length < off + 5) return "incomplete";
    if (data[off] !== 0x16) return null;
    const recordLength = data.readUInt16BE(off + 3);
    if (data.length < off + 5 + recordLength) return "incomplete";
    const payload = data.subarray(off + 5, off + 5 + recordLength);
    handshake.push(payload);
    have += payload.length;
    off += 5 + recordLength;
    if (need < 0) {
      if (have < 4) continue;
      const first = Buffer.concat(handshake);
      if (first[0] !== 0x01) return null; // not a ClientHello
      need = 4 + first.readUIntBE(1, 3);
    }
    if (off > 16 * 1024 + 5 * 8) return null;
  }
  const hello = Buffer.concat(handshake).subarray(4, need);
  try {
    return readHelloBody(hello);
  } catch {
    return null;
  }
}

function readHelloBody(b: Buffer): ClientHelloInfo {
  let p = 2 + 32; // client_version, random
  p += 1 + b[p]!; // session id
  const suitesEnd = p + 2 + b.readUInt16BE(p);
  let ecdsaSuite = false;
  for (let q = p + 2; q + 2 <= suitesEnd; q += 2) if (isEcdsaSuite(b.readUInt16BE(q))) ecdsaSuite = true;
  p = suitesEnd;
  p += 1 + b[p]!; // compression methods
  const info: ClientHelloInfo = { sni: null, alpnProtocols: [], acceptsEcdsa: false, badSni: null, malformedAlpn: null };
  if (p + 2 > b.length) return info;
  let ecdsaSignatures = false;
  let tls13 = false;
  const extEnd = p + 2 + b.readUInt16BE(p);
  p += 2;
  while (p + 4 <= extEnd) {
    const type = b.readUInt16BE(p);
    const len = b.readUInt16BE(p + 2);
    const ext = b.subarray(p + 4, p + 4 + len);
    p += 4 + len;
    if (type === 0x0000) {
      // server_name: list of (type, length, name); host_name type is 0
      let q = 2;
      while (q + 3 <= ext.length) {
        const nameType = ext[q]!;
        const nameLen = ext.readUInt16BE(q + 1);
        if (nameType === 0) {
          const name = ext.subarray(q + 3, q + 3 + nameLen);
          if (name.every((b) => b > 0x20 && b < 0x7f)) info.sni = name.toString("latin1");
          else info.badSni = JSON.stringify(name.toString("utf8"));
        }
        q += 3 + nameLen;
      }
    } else if (type === 0x000d) {
      // signature_algorithms: a list of 2-byte SignatureScheme values
      for (let q = 2; q + 2 <= ext.length; q += 2) if (ECDSA_SIGNATURE_SCHEMES.has(ext.readUInt16BE(q))) ecdsaSignatures = true;
    } else if (type === 0x002b) {
      // supported_versions: TLS 1.3 is 0x0304
      for (let q = 1; q + 2 <= ext.length; q += 2) if (ext.readUInt16BE(q) === 0x0304) tls13 = true;
    } else if (type === 0x0010) {
      info.malformedAlpn = alpnFramingError(ext);
      if (!info.malformedAlpn) for (let q = 2; q < ext.length; q += 1 + ext[q]!) info.alpnProtocols.push(ext.subarray(q + 1, q + 1 + ext[q]!).toString("ascii"));
    }
  }
  info.acceptsEcdsa = ecdsaSignatures && (tls13 || ecdsaSuite);
  return info;
}

/**
 * The first way an ALPN extension's body breaks RFC 7301 §3.1 (ProtocolNameList: a 2-byte length,
 * then non-empty names, each with a 1-byte length) as OpenSSL's tls_parse_ctos_alpn checks it, or null.
 */
function alpnFramingError(ext: Buffer): string | null {
  if (ext.length < 2) return `an extension of ${ext.length} byte${ext.length === 1 ? "" : "s"}, too short for a protocol list`;
  const listLength = ext.readUInt16BE(0);
  if (listLength !== ext.length - 2) return `a protocol list of ${listLength} bytes in an extension of ${ext.length}`;
  if (listLength < 2) return `a protocol list of ${listLength} byte${listLength === 1 ? "" : "s"}, too short to hold a name`;
  for (let q = 2; q < ext.length; ) {
    const nameLength = ext[q]!;
    const left = ext.length - q - 1;
    if (nameLength === 0) return "an empty protocol name";
    if (nameLength > left) return `a protocol name of ${nameLength} bytes where ${left} remain (bytes ${ext.subarray(2, 34).toString("hex")}${ext.length > 34 ? "…" : ""})`;
    q += 1 + nameLength;
  }
  return null;
}
