/**
 * A ClientHello whose ALPN extension is broken, as Python clients on urllib3 (boto3) sometimes send
 * when several threads open connections at once: urllib3 calls set_alpn_protocols on the shared
 * SSLContext for every connection, which frees the context's ALPN list while another thread's
 * SSL_new (run without the GIL) copies it, so that hello carries freed heap bytes. OpenSSL refuses
 * it with alert decode_error (the client then reports TLSV1_ALERT_DECODE_ERROR); sluice must do the
 * same and say in one log line what was wrong with the hello.
 */
import { test, describe, before, after } from "node:test";
import assert from "node:assert/strict";
import net from "node:net";
import tls from "node:tls";
import { once } from "node:events";
import { startSluice, type TestSluice } from "./support/sluice.js";
import { run } from "./support/run.js";
import { needs } from "./support/needs.js";
import { parseClientHello } from "../src/proxy/tls/client-hello.js";

const HOST = "lambda.eu-west-1.amazonaws.com";
/** The ALPN extension's body for ["http/1.1"]: list length 9, name length 8, the name. */
const GOOD_ALPN = Buffer.from("0009" + "08" + Buffer.from("http/1.1").toString("hex"), "hex");
/** The same 11 bytes as one racing Python thread sent them: the list length, then 9 bytes of a freed heap chunk. */
const RACED_ALPN = Buffer.from("00091d122a61d57f0000ec", "hex");
/** A fatal TLS alert decode_error (50), as OpenSSL sends it to a TLS 1.3 client. */
const DECODE_ERROR_ALERT = Buffer.from([0x15, 0x03, 0x03, 0x00, 0x02, 0x02, 0x32]);
/** A fatal TLS alert no_application_protocol (120). */
const NO_APPLICATION_PROTOCOL_ALERT = Buffer.from([0x15, 0x03, 0x03, 0x00, 0x02, 0x02, 0x78]);

/** The ClientHello Node's TLS client sends for HOST offering http/1.1, captured by a listener that never answers. */
async function nodeClientHello(): Promise<Buffer> {
  const server = net.createServer();
  server.listen(0, "127.0.0.1");
  await once(server, "listening");
  const captured = new Promise<Buffer>((resolve) => server.once("connection", (s) => s.once("data", (hello: Buffer) => (resolve(hello), s.destroy()))));
  const client = tls.connect({ host: "127.0.0.1", port: (server.address() as net.AddressInfo).port, servername: HOST, ALPNProtocols: ["http/1.1"] });
  client.on("error", () => {});
  const hello = await captured;
  client.destroy();
  server.close();
  return hello;
}

function withAlpn(hello: Buffer, alpn: Buffer): Buffer {
  const at = hello.indexOf(GOOD_ALPN);
  assert.ok(at > 0 && hello.indexOf(GOOD_ALPN, at + 1) < 0, "the hello offers http/1.1 once");
  const copy = Buffer.from(hello);
  alpn.copy(copy, at);
  return copy;
}

/** Sends `hello` into a CONNECT tunnel through sluice; resolves with every byte sluice answers until it closes. */
async function throughTunnel(port: number, hello: Buffer): Promise<Buffer> {
  const socket = net.connect(port, "127.0.0.1");
  await once(socket, "connect");
  socket.write(`CONNECT ${HOST}:443 HTTP/1.1\r\nHost: ${HOST}:443\r\n\r\n`);
  let head = Buffer.alloc(0);
  while (!head.includes("\r\n\r\n")) head = Buffer.concat([head, (await once(socket, "data"))[0] as Buffer]);
  assert.match(head.toString("latin1"), /^HTTP\/1\.1 200 /);
  const answer: Buffer[] = [head.subarray(head.indexOf("\r\n\r\n") + 4)];
  socket.on("data", (chunk: Buffer) => {
    answer.push(chunk);
    if (chunk[0] === 0x16) socket.destroy(); // a ServerHello: the handshake goes on; enough seen
  });
  socket.write(hello);
  await once(socket, "close");
  return Buffer.concat(answer);
}

async function waitFor(cond: () => boolean, timeoutMs = 5000): Promise<void> {
  const start = Date.now();
  while (!cond()) {
    if (Date.now() - start > timeoutMs) throw new Error("condition not met in time");
    await new Promise((r) => setTimeout(r, 20));
  }
}

describe("a ClientHello with a malformed ALPN extension", () => {
  let sluice: TestSluice;
  let hello: Buffer;
  before(async () => {
    sluice = await startSluice();
    hello = await nodeClientHello();
  });
  after(() => sluice.close());

  test("is read as malformed (its protocols are not taken), the intact one as offering http/1.1", () => {
    const raced = parseClientHello(withAlpn(hello, RACED_ALPN));
    assert.ok(raced && raced !== "incomplete");
    assert.equal(raced.sni, HOST);
    assert.deepEqual(raced.alpnProtocols, []);
    assert.equal(raced.malformedAlpn, "a protocol name of 29 bytes where 8 remain (bytes 1d122a61d57f0000ec)");
    const intact = parseClientHello(hello);
    assert.ok(intact && intact !== "incomplete");
    assert.deepEqual(intact.alpnProtocols, ["http/1.1"]);
    assert.equal(intact.malformedAlpn, null);
    const cases: [string, string | null][] = [
      ["", "an extension of 0 bytes, too short for a protocol list"],
      ["0000", "a protocol list of 0 bytes, too short to hold a name"],
      ["000100", "a protocol list of 1 byte, too short to hold a name"],
      ["000304616263", "a protocol list of 3 bytes in an extension of 6"],
      ["00020000", "an empty protocol name"],
      ["0004026832", "a protocol list of 4 bytes in an extension of 5"],
      ["00050461626364", null],
    ];
    for (const [body, what] of cases) {
      const ext = Buffer.from(body, "hex");
      const parsed = parseClientHello(helloWithExtensions(Buffer.concat([Buffer.from([0x00, 0x10, 0x00, ext.length]), ext])));
      assert.ok(parsed && parsed !== "incomplete");
      assert.equal(parsed.malformedAlpn, what, body);
      assert.deepEqual(parsed.alpnProtocols, what ? [] : ["abcd"]);
    }
  });

  test("is refused with alert decode_error and one log line naming the broken extension; the intact hello is answered", async () => {
    const before = sluice.logs.length;
    assert.deepEqual(await throughTunnel(sluice.port, withAlpn(hello, RACED_ALPN)), DECODE_ERROR_ALERT);
    await waitFor(() => sluice.logs.slice(before).some((l) => /malformed TLS ClientHello/.test(l)));
    const line = sluice.logs.slice(before).find((l) => /malformed TLS ClientHello/.test(l))!;
    assert.match(line, new RegExp(`client 127\\.0\\.0\\.1:\\d+ sent a malformed TLS ClientHello for ${HOST.replace(/\./g, "\\.")}: its ALPN extension holds a protocol name of 29 bytes where 8 remain .*; refused with alert decode_error`));
    assert.match(line, /urllib3/);
    assert.doesNotMatch(line, /\n/);
    const intact = await throughTunnel(sluice.port, hello);
    assert.equal(intact[0], 0x16, `a handshake record, not ${intact.subarray(0, 8).toString("hex")}`);
  });

  test("framed well but naming no protocol sluice speaks: alert no_application_protocol, and a line listing what was offered", async () => {
    // The race's other outcome: the freed bytes happen to frame as names (here 8 bytes of control characters and a heap pointer).
    const garbled = Buffer.from("0009" + "08" + "0102030405d57f00", "hex");
    const before = sluice.logs.length;
    assert.deepEqual(await throughTunnel(sluice.port, withAlpn(hello, garbled)), NO_APPLICATION_PROTOCOL_ALERT);
    await waitFor(() => sluice.logs.slice(before).some((l) => /none of which sluice speaks/.test(l)));
    const line = sluice.logs.slice(before).find((l) => /none of which sluice speaks/.test(l))!;
    assert.match(line, new RegExp(`client 127\\.0\\.0\\.1:\\d+ offered the ALPN protocols "\\\\u0001.*" for ${HOST.replace(/\./g, "\\.")}, none of which sluice speaks here \\(http/1\\.1\\): refused with alert no_application_protocol\\. Those are not protocol names: .*urllib3`));
    // A real protocol sluice does not speak: the same line, without the hint.
    const spdy = Buffer.from("0009" + "08" + Buffer.from("spdy/3.1").toString("hex"), "hex");
    const mark = sluice.logs.length;
    assert.deepEqual(await throughTunnel(sluice.port, withAlpn(hello, spdy)), NO_APPLICATION_PROTOCOL_ALERT);
    await waitFor(() => sluice.logs.slice(mark).some((l) => /none of which sluice speaks/.test(l)));
    const plain = sluice.logs.slice(mark).find((l) => /none of which sluice speaks/.test(l))!;
    assert.match(plain, /offered the ALPN protocols "spdy\/3\.1" for .*: refused with alert no_application_protocol$/);
  });

  test("Python's ssl, given that hello's answer, reports what the boto3 thread reported: TLSV1_ALERT_DECODE_ERROR", { skip: needs("python3", "python3") }, async () => {
    // Python builds its own ClientHello; the ALPN bytes are replaced with the raced ones, sent through
    // sluice, and sluice's answer is fed back to the same client state.
    const script = `
import socket, ssl, sys
port, good, raced = int(sys.argv[1]), bytes.fromhex(sys.argv[2]), bytes.fromhex(sys.argv[3])
ctx = ssl.create_default_context()
ctx.set_alpn_protocols(["http/1.1"])
incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
client = ctx.wrap_bio(incoming, outgoing, server_hostname="${HOST}")
try:
    client.do_handshake()
except ssl.SSLWantReadError:
    pass
hello = outgoing.read()
assert hello.count(good) == 1
s = socket.create_connection(("127.0.0.1", port))
s.sendall(b"CONNECT ${HOST}:443 HTTP/1.1\\r\\nHost: ${HOST}:443\\r\\n\\r\\n")
head = b""
while b"\\r\\n\\r\\n" not in head:
    head += s.recv(1)
s.sendall(hello.replace(good, raced))
while True:
    data = s.recv(65536)
    if not data:
        sys.exit("sluice closed without an alert")
    incoming.write(data)
    try:
        client.do_handshake()
        sys.exit("the handshake completed")
    except ssl.SSLWantReadError:
        continue
    except ssl.SSLError as e:
        print(e.reason)
        break
`;
    const r = await run("python3", ["-c", script, String(sluice.port), GOOD_ALPN.toString("hex"), RACED_ALPN.toString("hex")]);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout.trim(), "TLSV1_ALERT_DECODE_ERROR");
  });
});

/** A minimal TLS 1.2-style ClientHello record with the given extensions block body. */
function helloWithExtensions(extensions: Buffer): Buffer {
  const body = Buffer.concat([
    Buffer.from([0x03, 0x03]),
    Buffer.alloc(32, 7), // random
    Buffer.from([0x00]), // session id
    Buffer.from([0x00, 0x02, 0x13, 0x01]), // one cipher suite
    Buffer.from([0x01, 0x00]), // compression: null
    Buffer.from([extensions.length >> 8, extensions.length & 0xff]),
    extensions,
  ]);
  const handshake = Buffer.concat([Buffer.from([0x01, 0, body.length >> 8, body.length & 0xff]), body]);
  return Buffer.concat([Buffer.from([0x16, 0x03, 0x01, handshake.length >> 8, handshake.length & 0xff]), handshake]);
}
