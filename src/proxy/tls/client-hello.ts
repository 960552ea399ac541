/**
 * Reads SNI and ALPN from a TLS ClientHello before any TLS is done, so that sluice can decide to
 * pass a connection through untouched (`--ignore-hosts`) or which leaf certificate to present.
 * Only the handshake framing is parsed; everything else is left to OpenSSL.
 */
export interface ClientHelloInfo {
  sni: string | null;
  alpnProtocols: string[];
}

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
  p += 2 + b.readUInt16BE(p); // cipher suites
  p += 1 + b[p]!; // compression methods
  const info: ClientHelloInfo = { sni: null, alpnProtocols: [] };
  if (p + 2 > b.length) return info;
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
        if (nameType === 0) info.sni = ext.subarray(q + 3, q + 3 + nameLen).toString("ascii");
        q += 3 + nameLen;
      }
    } else if (type === 0x0010) {
      let q = 2;
      while (q < ext.length) {
        const l = ext[q]!;
        info.alpnProtocols.push(ext.subarray(q + 1, q + 1 + l).toString("ascii"));
        q += 1 + l;
      }
    }
  }
  return info;
}
