/** Content-Encoding decoding and encoding with Node's zlib (gzip, deflate, br, zstd where present). */
import zlib from "node:zlib";

type Codec = { decode(b: Buffer): Buffer; encode(b: Buffer): Buffer };

const zstd = zlib as unknown as {
  zstdDecompressSync?: (b: Buffer) => Buffer;
  zstdCompressSync?: (b: Buffer) => Buffer;
};

const CODECS: Record<string, Codec> = {
  gzip: { decode: (b) => zlib.gunzipSync(b), encode: (b) => zlib.gzipSync(b) },
  "x-gzip": { decode: (b) => zlib.gunzipSync(b), encode: (b) => zlib.gzipSync(b) },
  // "deflate" is zlib-wrapped per the RFC, but some servers send raw deflate: accept both.
  deflate: {
    decode: (b) => {
      try {
        return zlib.inflateSync(b);
      } catch {
        return zlib.inflateRawSync(b);
      }
    },
    encode: (b) => zlib.deflateSync(b),
  },
  br: { decode: (b) => zlib.brotliDecompressSync(b), encode: (b) => zlib.brotliCompressSync(b) },
  identity: { decode: (b) => b, encode: (b) => b },
};
if (zstd.zstdDecompressSync && zstd.zstdCompressSync) {
  const d = zstd.zstdDecompressSync, e = zstd.zstdCompressSync;
  CODECS.zstd = { decode: (b) => d(b), encode: (b) => e(b) };
}

/** Undo a Content-Encoding list ("gzip" or "deflate, gzip"), last applied first. Throws on unknown. */
export function decodeBody(body: Buffer, contentEncoding: string): Buffer {
  const encodings = contentEncoding.split(",").map((s) => s.trim().toLowerCase()).filter(Boolean);
  let out = body;
  for (let i = encodings.length - 1; i >= 0; i--) {
    const codec = CODECS[encodings[i]!];
    if (!codec) throw new Error(`unsupported content-encoding ${encodings[i]}`);
    out = codec.decode(out);
  }
  return out;
}

export function encodeBody(body: Buffer, contentEncoding: string): Buffer {
  let out = body;
  for (const enc of contentEncoding.split(",").map((s) => s.trim().toLowerCase()).filter(Boolean)) {
    const codec = CODECS[enc];
    if (!codec) throw new Error(`unsupported content-encoding ${enc}`);
    out = codec.encode(out);
  }
  return out;
}
