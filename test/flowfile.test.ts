/**
 * Flow files against the real mitmproxy 8.1.1 (both directions), hand-built version 21 files,
 * migrations from every older version checked against mitmproxy's own compat code, crash safety,
 * bad files, and HAR 1.2.
 */
import { test, describe, before, after } from "node:test";
import assert from "node:assert/strict";
import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import net from "node:net";
import { gzipSync } from "node:zlib";
import { Headers } from "../src/core/headers.js";
import type { HTTPFlow } from "../src/core/flow.js";
import { tflow, type TFlowInit } from "./support/tflow.js";
import { run } from "./support/run.js";
import { startOrigin, testOriginCa, type Origin } from "./support/origins.js";
import {
  convertFile,
  decode,
  encode,
  FlowFileError,
  flowFromState,
  flowsToHar,
  flowToState,
  FlowWriter,
  harToFlows,
  HarWriter,
  migrateState,
  newMigrationContext,
  readFlowFile,
  readFlows,
  TnetFloat,
  type HarLog,
  type TnetDict,
  type TnetValue,
} from "../src/store/index.js";
import { needs } from "./support/needs.js";
import { mitmdumpMissing } from "./support/mitmdump.js";

const MITMDUMP = "/usr/bin/mitmdump";
const PYTHON = "/usr/bin/python3";
const CURL = ["-sS", "--max-time", "20", "--noproxy", ""];
const T = 1_700_000_000.25;

function requireMitmproxy(): void {
  assert.ok(existsSync(MITMDUMP) && existsSync(PYTHON), `mitmproxy 8.1.1 (${MITMDUMP}) is missing: apt-get install -y mitmproxy`);
}

const dir = mkdtempSync(join(tmpdir(), "sluice-flowfile-"));
after(() => rmSync(dir, { recursive: true, force: true }));

async function readAll(path: string): Promise<{ flows: HTTPFlow[]; warnings: string[] }> {
  const warnings: string[] = [];
  const flows: HTTPFlow[] = [];
  for await (const f of readFlows(path, { onWarning: (m) => warnings.push(m) })) flows.push(f);
  return { flows, warnings };
}

async function writeAll(path: string, flows: HTTPFlow[]): Promise<void> {
  const w = await FlowWriter.open(path);
  for (const f of flows) w.write(f);
  await w.close();
}

async function expectFlowFileError(path: string, check: (err: FlowFileError) => void): Promise<void> {
  try {
    for await (const _ of readFlows(path, { onWarning: () => undefined })) continue;
  } catch (err) {
    assert.ok(err instanceof FlowFileError, `expected FlowFileError, got ${(err as Error).stack}`);
    assert.ok(err.message.startsWith(`${path}: `), `the message names the file: ${err.message}`);
    check(err);
    return;
  }
  assert.fail(`reading ${path} should fail`);
}

function python(script: string, args: string[] = []): string {
  const r = spawnSync(PYTHON, ["-c", script, ...args], { maxBuffer: 256 << 20 });
  assert.equal(r.status, 0, `python failed: ${r.stderr.toString()}`);
  return r.stdout.toString();
}

// ---------------------------------------------------------------------------------------------
// Sample flows covering what the format has to carry

/** A sample flow from tflow, on the connections of sample `i`, timed as the proxy records it. */
function sample(i: number, init: TFlowInit, requestEnd: number, response?: [number, number]): HTTPFlow {
  const f = tflow({ ...init, client: ["127.0.0.1", 50000 + i], start: T + i });
  Object.assign(f.clientConn, { sockname: ["127.0.0.1", 8080], timestampStart: T + i });
  Object.assign(f.serverConn, { address: ["origin.test", 80], peername: ["127.0.0.1", 9000], sockname: ["127.0.0.1", 40000 + i], timestampStart: T + i + 0.002, timestampTcpSetup: T + i + 0.003 });
  f.request.timestampEnd = requestEnd;
  if (f.response && response) [f.response.timestampStart, f.response.timestampEnd] = response;
  return f;
}

/** Plain GET, binary POST with a gzip answer, HTTPS HTTP/2 with TLS and metadata, error, WebSocket, streamed body through a reverse/upstream proxy. */
function sampleFlows(): HTTPFlow[] {
  const ca = testOriginCa();
  const leaf = ca.leafCertFor("api.example.com");
  const flows: HTTPFlow[] = [];
  const empty = Buffer.alloc(0);
  flows.push(
    sample(0, { method: "GET", url: "http://origin.test/items?q=1&x=caf%C3%A9", authority: "origin.test", reqHeaders: ["Host", "origin.test", "X-Latin1", "caf\u00e9", "Accept", "*/*"], reqBody: empty, status: 200, reason: "OK", resHeaders: ["Content-Type", "application/json", "Content-Length", "11"], resBody: '{"ok":true}' }, T + 0.001, [T + 0.01, T + 0.011]),
  );
  {
    const gz = gzipSync(Buffer.from("created ".repeat(50)));
    const body = Buffer.from(Array.from({ length: 256 }, (_, i) => i));
    flows.push(sample(1, { method: "POST", url: "http://origin.test:8081/upload", authority: "origin.test:8081", reqHeaders: ["Host", "origin.test:8081", "Content-Type", "application/octet-stream", "Content-Length", "256"], reqBody: body, status: 201, reason: "Created", resHeaders: ["Content-Encoding", "gzip", "Content-Type", "text/plain", "Content-Length", String(gz.length)], resBody: gz }, T + 1.001, [T + 1.02, T + 1.03]));
  }
  {
    const f = sample(2, { method: "PUT", url: "https://api.example.com/v1/things/1", authority: "api.example.com", reqHeaders: ["content-type", "application/json", "x-amz-target", "Service.PutThing"], reqBody: '{"name":"thing"}', status: 429, resHeaders: ["content-type", "application/json", "retry-after", "1"], resBody: '{"__type":"ThrottlingException"}' }, T + 2.0005, [T + 2.05, T + 2.051]);
    Object.assign(f.clientConn, { tls: true, sni: "api.example.com", alpn: "h2", alpnOffers: ["h2", "http/1.1"], tlsVersion: "TLSv1.3", cipher: "TLS_AES_128_GCM_SHA256", certificateList: [leaf], timestampTlsSetup: T + 2.001 });
    Object.assign(f.serverConn, { address: ["api.example.com", 443], tls: true, sni: "api.example.com", alpn: "h2", alpnOffers: ["h2", "http/1.1"], tlsVersion: "TLSv1.3", cipher: "TLS_AES_256_GCM_SHA384", certificateList: [leaf, ca.certPem], timestampTlsSetup: T + 2.004 });
    f.request.httpVersion = "HTTP/2.0";
    f.response!.httpVersion = "HTTP/2.0";
    f.response!.trailers = new Headers(["grpc-status", "0"]);
    f.marked = ":default:";
    f.comment = "throttled on purpose";
    f.isReplay = "request";
    f.metadata = { aws: { service: "things", operation: "PutThing", attempt: 2 }, fault: { action: "throttle", probability: 0.5 }, raw: Buffer.from([1, 2, 3]), nothing: null };
    flows.push(f);
  }
  {
    const f = sample(3, { method: "DELETE", url: "http://origin.test/gone", authority: "origin.test", reqHeaders: ["Host", "origin.test"], reqBody: empty }, T + 3.001);
    Object.assign(f.serverConn, { peername: null, sockname: null, timestampTcpSetup: null, error: "connection refused" });
    f.error = { msg: "Connection refused by origin.test:80", timestamp: T + 3.01 };
    flows.push(f);
  }
  {
    const f = sample(4, { method: "GET", url: "http://origin.test/ws", authority: "origin.test", reqHeaders: ["Host", "origin.test", "Upgrade", "websocket", "Connection", "Upgrade", "Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ==", "Sec-WebSocket-Version", "13"], reqBody: empty, status: 101, reason: "Switching Protocols", resHeaders: ["Upgrade", "websocket", "Connection", "Upgrade", "Sec-WebSocket-Accept", "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="], resBody: empty }, T + 4.001, [T + 4.01, T + 4.01]);
    f.websocket = {
      messages: [
        { type: 1, fromClient: true, content: Buffer.from("hello"), timestamp: T + 4.1, dropped: false, injected: false },
        { type: 2, fromClient: false, content: Buffer.from([0, 1, 2, 255]), timestamp: T + 4.2, dropped: true, injected: true },
      ],
      closedByClient: true,
      closeCode: 1000,
      closeReason: "bye",
      timestampEnd: T + 4.5,
    };
    flows.push(f);
  }
  {
    const f = sample(5, { method: "GET", url: "https://backend.example:8443/big.bin", authority: "backend.example:8443", reqHeaders: ["Host", "backend.example:8443"], reqBody: empty, status: 200, reason: "OK", resHeaders: ["Content-Length", "123456789"], resBody: null }, T + 5.001, [T + 5.01, T + 6]);
    f.clientConn.proxyMode = "reverse:https://backend.example:8443";
    f.serverConn.via = "upstream:http://proxy.local:3128";
    f.response!.contentLength = 123456789;
    f.response!.streamed = true;
    flows.push(f);
  }
  return flows;
}

/** Everything a flow file must keep, as comparable plain data. */
function essence(f: HTTPFlow) {
  const msg = (m: HTTPFlow["request"] | NonNullable<HTTPFlow["response"]>) => ({
    httpVersion: m.httpVersion,
    headers: [...m.headers],
    content: m.content?.toString("base64") ?? null,
    contentLength: m.contentLength,
    streamed: m.streamed,
    trailers: m.trailers ? [...m.trailers] : null,
    timestampStart: m.timestampStart,
    timestampEnd: m.timestampEnd,
  });
  const conn = (c: HTTPFlow["clientConn"] | HTTPFlow["serverConn"]) => ({ ...c, certificateList: c.certificateList.map((p) => p.replace(/\r\n/g, "\n").trim()) });
  return {
    id: f.id,
    request: { ...msg(f.request), method: f.request.method, scheme: f.request.scheme, host: f.request.host, port: f.request.port, path: f.request.path, authority: f.request.authority },
    response: f.response ? { ...msg(f.response), statusCode: f.response.statusCode, reason: f.response.reason } : null,
    error: f.error,
    clientConn: conn(f.clientConn),
    serverConn: conn(f.serverConn),
    marked: f.marked,
    comment: f.comment,
    metadata: f.metadata,
    isReplay: f.isReplay,
    intercepted: f.intercepted,
    websocket: f.websocket,
    timestampCreated: f.timestampCreated,
  };
}

// ---------------------------------------------------------------------------------------------

describe("(a) mitmdump 8.1.1 writes, sluice reads", { skip: needs("curl", "curl") ?? mitmdumpMissing() }, () => {
  let origin: Origin;
  before(async () => {
    origin = await startOrigin({
      handler: (req, res, body) => {
        const r = res as import("node:http").ServerResponse;
        if (req.url === "/gzip") {
          r.writeHead(200, { "content-type": "text/plain", "content-encoding": "gzip", "x-origin": "gzip" });
          r.end(gzipSync(Buffer.from("compressed hello ".repeat(20))));
        } else if (req.url === "/binary") {
          r.writeHead(200, { "content-type": "application/octet-stream" });
          r.end(Buffer.from(Array.from({ length: 256 }, (_, i) => 255 - i)));
        } else if (req.method === "POST") {
          r.writeHead(201, { "content-type": "text/plain" });
          r.end(`got ${body.length} bytes: ${body.toString()}`);
        } else {
          r.writeHead(200, { "content-type": "text/plain", "x-origin": "hello" });
          r.end("hello from the origin");
        }
      },
    });
  });
  after(() => origin.close());

  test("GET, POST with a body, gzip and binary responses captured by mitmdump -w read back exactly", async () => {
    requireMitmproxy();
    const file = join(dir, "mitmdump-capture.mitm");
    const port = await freePort();
    const confdir = mkdtempSync(join(dir, "mitm-conf-"));
    const started = Date.now() / 1000;
    const mitm = await startMitmdump(["--listen-host", "127.0.0.1", "--listen-port", String(port), "-w", file, "--set", `confdir=${confdir}`]);
    const proxy = ["-x", `http://127.0.0.1:${port}`];
    try {
      for (const args of [
        ["-H", "X-Test: one", `${origin.url}/hello?x=1&y=two`],
        ["-d", "name=sluice&kind=proxy", `${origin.url}/submit`],
        ["--compressed", `${origin.url}/gzip`],
        ["-o", "/dev/null", `${origin.url}/binary`],
      ]) {
        const r = await run("curl", [...CURL, ...proxy, ...args]);
        assert.equal(r.code, 0, r.stderr);
      }
    } finally {
      await stopProcess(mitm.child, "SIGINT");
    }
    const { flows, warnings } = await readAll(file);
    assert.deepEqual(warnings, []);
    assert.deepEqual(
      flows.map((f) => `${f.request.method} ${f.request.url} ${f.response?.statusCode}`),
      [`GET ${origin.url}/hello?x=1&y=two 200`, `POST ${origin.url}/submit 201`, `GET ${origin.url}/gzip 200`, `GET ${origin.url}/binary 200`],
    );
    const [get, post, gz, bin] = flows as [HTTPFlow, HTTPFlow, HTTPFlow, HTTPFlow];
    assert.equal(get.request.headers.get("x-test"), "one");
    assert.equal(get.request.headers.get("host"), `127.0.0.1:${origin.port}`);
    assert.equal(get.request.httpVersion, "HTTP/1.1");
    assert.equal(get.response!.reason, "OK");
    assert.equal(get.response!.headers.get("x-origin"), "hello");
    assert.equal(get.response!.text, "hello from the origin");
    assert.deepEqual(get.clientConn.peername?.[0], "127.0.0.1");
    assert.deepEqual(get.serverConn.address, ["127.0.0.1", origin.port]);
    assert.equal(get.clientConn.proxyMode, "regular");
    assert.equal(post.request.content!.toString(), "name=sluice&kind=proxy");
    assert.equal(post.request.headers.get("content-type"), "application/x-www-form-urlencoded");
    assert.equal(post.response!.text, "got 22 bytes: name=sluice&kind=proxy");
    assert.equal(gz.response!.headers.get("content-encoding"), "gzip");
    assert.equal(gz.response!.content![0], 0x1f, "the body is stored as on the wire, still gzip");
    assert.equal(gz.response!.text, "compressed hello ".repeat(20));
    assert.deepEqual(bin.response!.content, Buffer.from(Array.from({ length: 256 }, (_, i) => 255 - i)));
    for (const f of flows) {
      assert.ok(f.request.timestampStart >= started - 1 && f.request.timestampStart <= Date.now() / 1000, "timestamps are seconds since the epoch");
      assert.ok(f.response!.timestampEnd! >= f.response!.timestampStart && f.response!.timestampStart >= f.request.timestampStart);
      assert.equal(f.error, null);
    }
  });
});

describe("(b) sluice writes, mitmproxy 8.1.1 reads", () => {
  let file: string;
  let flows: HTTPFlow[];
  before(async () => {
    flows = sampleFlows();
    file = join(dir, "sluice-written.mitm");
    await writeAll(file, flows);
  });

  test("sluice reads its own file back with every field", async () => {
    const { flows: back, warnings } = await readAll(file);
    assert.deepEqual(warnings, []);
    assert.deepEqual(back.map(essence), flows.map(essence));
  });

  test("mitmdump -nr prints every flow as mitmproxy sees it", { skip: mitmdumpMissing() }, async () => {
    requireMitmproxy();
    const r = await run(MITMDUMP, ["-n", "-r", file, "--set", `confdir=${mkdtempSync(join(dir, "mitm-conf-"))}`]);
    assert.equal(r.code, 0, r.stderr + r.stdout);
    const lines = r.stdout.split("\n").map((l) => l.trim().replace(/\s+/g, " ")).filter(Boolean);
    const gz = flows[1]!.response!.content!.length;
    assert.deepEqual(lines, [
      "127.0.0.1:50000: GET http://origin.test/items?q=1&x=caf%C3%A9",
      "<< 200 OK 11b",
      "127.0.0.1:50001: POST http://origin.test:8081/upload",
      `<< 201 Created ${gz}b`,
      "[replay]: PUT https://api.example.com/v1/things/1 HTTP/2.0",
      "<< HTTP/2.0 429 32b",
      "127.0.0.1:50003: DELETE http://origin.test/gone",
      "<< Connection refused by origin.test:80",
      "127.0.0.1:50004: GET http://origin.test/ws",
      "<< 101 Switching Protocols 0b",
      "127.0.0.1:50004 -> WebSocket text message -> origin.test:80/ws",
      "127.0.0.1:50004 <- WebSocket binary message <- origin.test:80/ws",
      "WebSocket connection closed by client: 1000 bye",
      "127.0.0.1:50005: GET https://backend.example:8443/big.bin",
      "<< 200 OK (content missing)",
    ]);
  });

  test("mitmproxy's FlowReader sees exactly the fields sluice wrote", { skip: mitmdumpMissing() }, () => {
    requireMitmproxy();
    const seen = JSON.parse(python(PYTHON_FLOW_FIELDS, [file])) as PythonFlow[];
    assert.equal(seen.length, flows.length);
    seen.forEach((p, i) => assert.deepEqual(p, expectedPythonView(flows[i]!), `flow ${i} (${flows[i]!.request.method} ${flows[i]!.request.path})`));
  });

  test("what sluice writes migrates to exactly the version 21 layout current mitmproxy reads", () => {
    for (const f of flows) {
      const state = flowToState(f);
      assert.equal(state.version, 17);
      const v21 = migrateState(decode(encode(state)) as TnetDict, newMigrationContext(), 21);
      assert.equal(v21.version, 21);
      assert.deepEqual(Object.keys(v21).sort(), V21_FLOW_KEYS.filter((k) => k !== "backup").sort());
      assert.deepEqual(Object.keys(v21.client_conn as TnetDict).sort(), V21_CLIENT_KEYS.slice().sort());
      assert.deepEqual(Object.keys(v21.server_conn as TnetDict).sort(), V21_SERVER_KEYS.slice().sort());
      assert.deepEqual(Object.keys(v21.request as TnetDict).sort(), V21_REQUEST_KEYS.slice().sort());
      if (v21.response) assert.deepEqual(Object.keys(v21.response as TnetDict).sort(), V21_RESPONSE_KEYS.slice().sort());
      if (v21.websocket) assert.deepEqual(Object.keys(v21.websocket as TnetDict).sort(), V21_WEBSOCKET_KEYS.slice().sort());
      assert.deepEqual(essence(flowFromState(v21)), essence(f), "and reads back the same from version 21");
    }
  });

  test("sluice-only data rides in metadata._sluice and survives a round trip through mitmproxy", { skip: mitmdumpMissing() }, async () => {
    requireMitmproxy();
    const rewritten = join(dir, "through-mitmproxy.mitm");
    python("import sys\nfrom mitmproxy.io import FlowReader, FlowWriter\nw = FlowWriter(open(sys.argv[2], 'wb'))\nfor f in FlowReader(open(sys.argv[1], 'rb')).stream(): w.add(f)", [file, rewritten]);
    const { flows: back } = await readAll(rewritten);
    const streamed = back[5]!;
    assert.equal(streamed.clientConn.proxyMode, "reverse:https://backend.example:8443");
    assert.equal(streamed.serverConn.via, "upstream:http://proxy.local:3128");
    assert.equal(streamed.response!.contentLength, 123456789);
    assert.equal(streamed.response!.streamed, true);
    assert.deepEqual(back[2]!.metadata, flows[2]!.metadata);
    assert.deepEqual(back.map((f) => essence(f).request), flows.map((f) => essence(f).request));
  });
});

// ---------------------------------------------------------------------------------------------
// mitmproxy's view of a flow, printed by its own Python

interface PythonFlow {
  [key: string]: unknown;
}

const PYTHON_FLOW_FIELDS = String.raw`
import base64, json, sys
from mitmproxy.io import FlowReader
def b(x): return None if x is None else base64.b64encode(x).decode()
def hdrs(h): return None if h is None else [[b(k), b(v)] for k, v in h.fields]
def msg(m): return {"http_version": m.http_version, "headers": hdrs(m.headers), "content": b(m.raw_content), "trailers": hdrs(m.trailers), "timestamp_start": m.timestamp_start, "timestamp_end": m.timestamp_end}
def pem(c): return c.to_pem().decode().strip()
def conn(c): return {"id": c.id, "peername": list(c.peername) if c.peername else None, "sockname": list(c.sockname) if c.sockname else None, "tls": c.tls, "sni": c.sni, "alpn": b(c.alpn), "alpn_offers": [b(x) for x in c.alpn_offers], "cipher": c.cipher, "tls_version": c.tls_version, "error": c.error, "timestamp_start": c.timestamp_start, "timestamp_end": c.timestamp_end, "timestamp_tls_setup": c.timestamp_tls_setup, "certificate_list": [pem(x) for x in c.certificate_list]}
out = []
for f in FlowReader(open(sys.argv[1], "rb")).stream():
    r, s = f.request, f.response
    d = {"id": f.id, "method": r.method, "url": r.url, "host": r.host, "port": r.port, "scheme": r.scheme, "authority": r.authority, "path": r.path, "request": msg(r),
         "response": None if s is None else dict(msg(s), status_code=s.status_code, reason=s.reason),
         "error": None if f.error is None else {"msg": f.error.msg, "timestamp": f.error.timestamp},
         "client": dict(conn(f.client_conn), mitmcert=pem(f.client_conn.mitmcert) if f.client_conn.mitmcert else None),
         "server": dict(conn(f.server_conn), address=list(f.server_conn.address) if f.server_conn.address else None, timestamp_tcp_setup=f.server_conn.timestamp_tcp_setup, via=[f.server_conn.via[0], list(f.server_conn.via[1])] if f.server_conn.via else None),
         "marked": f.marked, "comment": f.comment, "metadata": f.metadata, "is_replay": f.is_replay, "intercepted": f.intercepted, "timestamp_created": f.timestamp_created,
         "websocket": None if f.websocket is None else {"messages": [[int(m.type), m.from_client, b(m.content), m.timestamp, m.dropped, m.injected] for m in f.websocket.messages], "closed_by_client": f.websocket.closed_by_client, "close_code": f.websocket.close_code, "close_reason": f.websocket.close_reason, "timestamp_end": f.websocket.timestamp_end}}
    out.append(d)
print(json.dumps(out))
`;

function expectedPythonView(f: HTTPFlow): PythonFlow {
  const b = (s: string | Buffer | null) => (s === null ? null : (typeof s === "string" ? Buffer.from(s, "latin1") : s).toString("base64"));
  const hdrs = (h: Headers | null) => (h ? [...h].map(([k, v]) => [b(k), b(v)]) : null);
  const msg = (m: HTTPFlow["request"] | NonNullable<HTTPFlow["response"]>) => ({ http_version: m.httpVersion, headers: hdrs(m.headers), content: b(m.content), trailers: hdrs(m.trailers), timestamp_start: m.timestampStart, timestamp_end: m.timestampEnd });
  const pem = (p: string) => p.replace(/\r\n/g, "\n").trim();
  const conn = (c: HTTPFlow["clientConn"] | HTTPFlow["serverConn"]) => ({
    id: c.id,
    peername: c.peername,
    sockname: c.sockname,
    tls: c.tls,
    sni: c.sni,
    alpn: b(c.alpn),
    alpn_offers: c.alpnOffers.map(b),
    cipher: c.cipher,
    tls_version: c.tlsVersion,
    error: c.error,
    timestamp_start: c.timestampStart,
    timestamp_end: c.timestampEnd,
    timestamp_tls_setup: c.timestampTlsSetup,
  });
  const r = f.request;
  const extra: Record<string, unknown> = {};
  if (f.clientConn.proxyMode !== "regular") extra.proxy_mode = f.clientConn.proxyMode;
  if (f.response?.streamed) Object.assign(extra, { response_streamed: true, response_content_length: f.response.contentLength });
  const metadata = JSON.parse(JSON.stringify(f.metadata, (_, v) => (v && v.type === "Buffer" && Array.isArray(v.data) ? { $bytes: Buffer.from(v.data).toString("base64") } : v)));
  if (Object.keys(extra).length) metadata._sluice = extra;
  return {
    id: f.id,
    method: r.method,
    url: r.url,
    host: r.host,
    port: r.port,
    scheme: r.scheme,
    // mitmproxy records no authority for an HTTP/1 request other than CONNECT (origin-form on replay).
    authority: r.httpVersion.startsWith("HTTP/1") && r.method !== "CONNECT" ? "" : r.authority,
    path: r.path,
    request: msg(r),
    response: f.response ? { ...msg(f.response), status_code: f.response.statusCode, reason: f.response.reason } : null,
    error: f.error,
    client: { ...conn(f.clientConn), certificate_list: [], mitmcert: f.clientConn.certificateList[0] ? pem(f.clientConn.certificateList[0]) : null },
    server: {
      ...conn(f.serverConn),
      certificate_list: f.serverConn.certificateList.map(pem),
      address: f.serverConn.address,
      timestamp_tcp_setup: f.serverConn.timestampTcpSetup,
      via: f.serverConn.via ? ["http", ["proxy.local", 3128]] : null,
    },
    marked: f.marked,
    comment: f.comment,
    metadata,
    is_replay: f.isReplay,
    intercepted: f.intercepted,
    timestamp_created: f.timestampCreated,
    websocket: f.websocket
      ? {
          messages: f.websocket.messages.map((m) => [m.type, m.fromClient, b(m.content), m.timestamp, m.dropped, m.injected]),
          closed_by_client: f.websocket.closedByClient,
          close_code: f.websocket.closeCode,
          close_reason: f.websocket.closeReason,
          timestamp_end: f.websocket.timestampEnd,
        }
      : null,
  };
}

// ---------------------------------------------------------------------------------------------
// Version 21, as the reference describes it

const V21_FLOW_KEYS = ["version", "type", "id", "error", "client_conn", "server_conn", "intercepted", "is_replay", "marked", "metadata", "comment", "timestamp_created", "backup", "request", "response", "websocket"];
const V21_CONN_KEYS = ["id", "peername", "sockname", "transport_protocol", "error", "tls", "certificate_list", "alpn", "alpn_offers", "cipher", "cipher_list", "tls_version", "sni", "timestamp_start", "timestamp_end", "timestamp_tls_setup"];
const V21_CLIENT_KEYS = [...V21_CONN_KEYS, "mitmcert", "proxy_mode"];
const V21_SERVER_KEYS = [...V21_CONN_KEYS, "address", "timestamp_tcp_setup", "via"];
const V21_REQUEST_KEYS = ["host", "port", "method", "scheme", "authority", "path", "http_version", "headers", "content", "trailers", "timestamp_start", "timestamp_end"];
const V21_RESPONSE_KEYS = ["http_version", "status_code", "reason", "headers", "content", "trailers", "timestamp_start", "timestamp_end"];
const V21_WEBSOCKET_KEYS = ["messages", "closed_by_client", "close_code", "close_reason", "timestamp_end"];

const bytes = (s: string) => Buffer.from(s, "latin1");
const float = (n: number) => new TnetFloat(n);

function v21Conn(extra: Record<string, TnetValue>): TnetDict {
  return {
    id: "7f6c1d2e-0000-4000-8000-000000000001",
    peername: ["10.1.2.3", 443],
    sockname: ["10.0.0.2", 51000],
    transport_protocol: "tcp",
    error: null,
    tls: true,
    certificate_list: [],
    alpn: bytes("h2"),
    alpn_offers: [bytes("h2"), bytes("http/1.1")],
    cipher: "TLS_AES_128_GCM_SHA256",
    cipher_list: [],
    tls_version: "TLSv1.3",
    sni: "api.example.com",
    timestamp_start: float(T),
    timestamp_end: float(T + 9),
    timestamp_tls_setup: float(T + 0.02),
    ...extra,
  };
}

function v21Flow(extra: Record<string, TnetValue> = {}): TnetDict {
  const pem = testOriginCa().leafCertFor("api.example.com");
  return {
    version: 21,
    type: "http",
    id: "b7a1c9e0-1111-4222-8333-444455556666",
    error: null,
    client_conn: v21Conn({ id: "client-1", peername: ["192.168.1.20", 61000], sockname: ["192.168.1.2", 8080], mitmcert: bytes(pem), proxy_mode: "reverse:https://api.example.com" }),
    server_conn: v21Conn({ id: "server-1", address: ["api.example.com", 443], timestamp_tcp_setup: float(T + 0.01), via: ["http", ["proxy.corp", 3128]], certificate_list: [bytes(pem)] }),
    intercepted: false,
    is_replay: null,
    marked: ":star:",
    metadata: { note: "hand-built v21", n: 3 },
    comment: "from mitmproxy 11",
    timestamp_created: float(T),
    backup: null,
    request: {
      host: "api.example.com",
      port: 443,
      method: bytes("POST"),
      scheme: bytes("https"),
      authority: bytes("api.example.com"),
      path: bytes("/v2/query?limit=5"),
      http_version: bytes("HTTP/2.0"),
      headers: [[bytes("content-type"), bytes("application/json")], [bytes("x-caf\xe9"), bytes("\xff")]],
      content: bytes('{"q":1}'),
      trailers: null,
      timestamp_start: float(T + 0.03),
      timestamp_end: float(T + 0.031),
    },
    response: {
      http_version: bytes("HTTP/2.0"),
      status_code: 503,
      reason: bytes(""),
      headers: [[bytes("content-type"), bytes("application/json")]],
      content: bytes('{"message":"Slow Down"}'),
      trailers: [[bytes("x-trailer"), bytes("yes")]],
      timestamp_start: float(T + 0.2),
      timestamp_end: float(T + 0.21),
    },
    websocket: null,
    ...extra,
  };
}

/** mitmproxy writes dict entries last-first; do the same so nothing can depend on key order. */
function reversedKeys(v: TnetValue): TnetValue {
  if (Array.isArray(v)) return v.map(reversedKeys);
  if (v && typeof v === "object" && !Buffer.isBuffer(v) && !(v instanceof TnetFloat) && v.constructor === Object) {
    const out: TnetDict = {};
    for (const k of Object.keys(v).reverse()) out[k] = reversedKeys((v as TnetDict)[k]!);
    return out;
  }
  return v;
}

function writeStates(path: string, states: TnetDict[]): void {
  writeFileSync(path, Buffer.concat(states.map((s) => encode(reversedKeys(s)))));
}

describe("(c) version 21 files, hand-built per the reference", () => {
  test("the reference layout has exactly the keys we build fixtures with", () => {
    const f = v21Flow();
    assert.deepEqual(Object.keys(f).sort(), V21_FLOW_KEYS.slice().sort());
    assert.deepEqual(Object.keys(f.client_conn as TnetDict).sort(), V21_CLIENT_KEYS.slice().sort());
    assert.deepEqual(Object.keys(f.server_conn as TnetDict).sort(), V21_SERVER_KEYS.slice().sort());
    assert.deepEqual(Object.keys(f.request as TnetDict).sort(), V21_REQUEST_KEYS.slice().sort());
    assert.deepEqual(Object.keys(f.response as TnetDict).sort(), V21_RESPONSE_KEYS.slice().sort());
  });

  test("an HTTP/2 flow with TLS, proxy mode, upstream proxy, trailers and a marker", async () => {
    const file = join(dir, "v21.mitm");
    writeStates(file, [v21Flow()]);
    const { flows, warnings } = await readAll(file);
    assert.deepEqual(warnings, []);
    const f = flows[0]!;
    assert.equal(f.id, "b7a1c9e0-1111-4222-8333-444455556666");
    assert.equal(f.request.method, "POST");
    assert.equal(f.request.url, "https://api.example.com/v2/query?limit=5");
    assert.equal(f.request.httpVersion, "HTTP/2.0");
    assert.deepEqual(f.request.headers.raw, ["content-type", "application/json", "x-caf\u00e9", "\u00ff"]);
    assert.equal(f.request.text, '{"q":1}');
    assert.equal(f.response!.statusCode, 503);
    assert.equal(f.response!.text, '{"message":"Slow Down"}');
    assert.deepEqual(f.response!.trailers!.raw, ["x-trailer", "yes"]);
    assert.equal(f.clientConn.proxyMode, "reverse:https://api.example.com");
    assert.deepEqual(f.clientConn.peername, ["192.168.1.20", 61000]);
    assert.equal(f.clientConn.certificateList.length, 1);
    assert.match(f.clientConn.certificateList[0]!, /BEGIN CERTIFICATE/);
    assert.deepEqual(f.serverConn.address, ["api.example.com", 443]);
    assert.equal(f.serverConn.via, "upstream:http://proxy.corp:3128");
    assert.equal(f.serverConn.tlsVersion, "TLSv1.3");
    assert.equal(f.serverConn.alpn, "h2");
    assert.deepEqual(f.serverConn.alpnOffers, ["h2", "http/1.1"]);
    assert.equal(f.serverConn.cipher, "TLS_AES_128_GCM_SHA256");
    assert.equal(f.serverConn.timestampTcpSetup, T + 0.01);
    assert.equal(f.marked, ":star:");
    assert.equal(f.comment, "from mitmproxy 11");
    assert.deepEqual(f.metadata, { note: "hand-built v21", n: 3 });
  });

  test("WebSocket messages, an error flow, a backup state and an HTTP/3 (QUIC) connection", async () => {
    const file = join(dir, "v21-more.mitm");
    const ws = v21Flow({
      id: "ws-flow",
      response: { ...(v21Flow().response as TnetDict), status_code: 101, reason: bytes("Switching Protocols"), http_version: bytes("HTTP/1.1"), trailers: null },
      websocket: { messages: [[1, true, bytes("ping"), float(T + 1), false, false], [2, false, bytes("\x00\x01"), float(T + 2), false, true]], closed_by_client: false, close_code: 1001, close_reason: "going away", timestamp_end: float(T + 3) },
    });
    const failed = v21Flow({ id: "error-flow", response: null, error: { msg: "Server disconnected.", timestamp: float(T + 5) }, backup: v21Flow({ id: "earlier" }), intercepted: true, is_replay: "response" });
    const quic = v21Flow({ id: "quic-flow" });
    (quic.server_conn as TnetDict).tls_version = "QUICv1";
    (quic.server_conn as TnetDict).transport_protocol = "udp";
    writeStates(file, [ws, failed, quic]);
    const { flows, warnings } = await readAll(file);
    assert.deepEqual(warnings, []);
    const [w, e, q] = flows as [HTTPFlow, HTTPFlow, HTTPFlow];
    assert.deepEqual(w.websocket, {
      messages: [
        { type: 1, fromClient: true, content: Buffer.from("ping"), timestamp: T + 1, dropped: false, injected: false },
        { type: 2, fromClient: false, content: Buffer.from([0, 1]), timestamp: T + 2, dropped: false, injected: true },
      ],
      closedByClient: false,
      closeCode: 1001,
      closeReason: "going away",
      timestampEnd: T + 3,
    });
    assert.equal(e.response, null);
    assert.deepEqual(e.error, { msg: "Server disconnected.", timestamp: T + 5 });
    assert.equal(e.intercepted, true);
    assert.equal(e.isReplay, "response");
    assert.equal(q.serverConn.tlsVersion, "QUICv1");
  });

  test("version 20's QUIC is migrated to 21's QUICv1", async () => {
    const file = join(dir, "v20.mitm");
    const v20 = v21Flow({ version: 20 });
    (v20.server_conn as TnetDict).tls_version = "QUIC";
    writeStates(file, [v20]);
    const { flows } = await readAll(file);
    assert.equal(flows[0]!.serverConn.tlsVersion, "QUICv1");
  });

  test("a newer version than sluice knows is refused with a request to update sluice", async () => {
    const file = join(dir, "v22.mitm");
    const first = encode(v21Flow());
    writeFileSync(file, Buffer.concat([first, encode(v21Flow({ version: 22 }))]));
    await expectFlowFileError(file, (err) => {
      assert.equal(err.offset, first.length);
      assert.match(err.message, new RegExp(`flow at byte ${first.length} uses flow format version 22, newer than this sluice reads; update sluice`));
    });
  });
});

// ---------------------------------------------------------------------------------------------
// Old versions: sluice's migration against mitmproxy 8.1.1's own compat.migrate_flow

/** Encodes like Python 2 era mitmproxy: dict keys as bytes. */
function encodeBytesKeys(v: unknown): Buffer {
  if (v && typeof v === "object" && !Array.isArray(v) && !Buffer.isBuffer(v) && !(v instanceof TnetFloat)) {
    const parts = Object.entries(v).flatMap(([k, x]) => [encode(Buffer.from(k)), encodeBytesKeys(x)]);
    const payload = Buffer.concat(parts);
    return Buffer.concat([Buffer.from(`${payload.length}:`), payload, Buffer.from("}")]);
  }
  if (Array.isArray(v)) {
    const payload = Buffer.concat(v.map(encodeBytesKeys));
    return Buffer.concat([Buffer.from(`${payload.length}:`), payload, Buffer.from("]")]);
  }
  return encode(v as TnetValue);
}

/** A flow as mitmproxy 0.11 wrote it (Python 2: bytes everywhere). */
function v011Flow(): unknown {
  const addr = (host: string, port: number) => ({ address: [bytes(host), port], use_ipv6: false });
  return {
    version: [0, 11],
    type: bytes("http"),
    id: bytes("old-0-11"),
    error: null,
    intercepted: false,
    client_conn: { address: addr("127.0.0.1", 51111), timestamp_start: float(T), timestamp_end: float(T + 2), ssl_established: false, timestamp_ssl_setup: null, clientcert: null },
    server_conn: { address: addr("example.com", 80), source_address: addr("10.0.0.2", 42000), state: [], ssl_established: false, timestamp_start: float(T + 0.01), timestamp_tcp_setup: float(T + 0.02), timestamp_ssl_setup: null, timestamp_end: float(T + 2), sni: null, cert: null },
    request: {
      form_in: bytes("absolute"),
      form_out: bytes("relative"),
      method: bytes("GET"),
      scheme: bytes("http"),
      host: bytes("example.com"),
      port: 80,
      path: bytes("/old?x=1"),
      httpversion: [1, 1],
      headers: [[bytes("Host"), bytes("example.com")]],
      content: bytes(""),
      timestamp_start: float(T + 0.005),
      timestamp_end: float(T + 0.006),
      stickycookie: false,
      stickyauth: false,
      is_replay: false,
    },
    response: { httpversion: [1, 0], code: 200, msg: bytes("OK"), headers: [[bytes("Content-Type"), bytes("text/html")]], content: bytes("<p>old</p>"), timestamp_start: float(T + 0.03), timestamp_end: float(T + 0.04), is_replay: false },
  };
}

/** Version 11: the WebSocket connection was a flow of its own after its handshake flow. */
function v11WebSocketPair(): unknown[] {
  const base = decode(encode(migrateState(decode(encodeBytesKeys(v011Flow())) as TnetDict, newMigrationContext(), 11))) as TnetDict;
  const handshake = { ...base, id: "handshake-1", metadata: { websocket: true } };
  const ws = {
    version: 11,
    type: "websocket",
    id: "ws-1",
    error: null,
    intercepted: false,
    is_replay: null,
    marked: false,
    mode: "regular",
    client_conn: base.client_conn,
    server_conn: base.server_conn,
    metadata: { websocket_handshake: "handshake-1" },
    messages: [[1, true, bytes("hi"), float(T + 1), false], [2, false, bytes("\x01\x02"), float(T + 2), false]],
    close_sender: "client",
    close_code: 1000,
    close_reason: "done",
  };
  const orphan = { ...ws, id: "ws-orphan", metadata: { websocket_handshake: "missing" } };
  return [handshake, ws, orphan];
}

const PYTHON_MIGRATE = String.raw`
import base64, json, sys
from mitmproxy.io import tnetstring, compat
def plain(v):
    if isinstance(v, bytes): return {"$b": base64.b64encode(v).decode()}
    if isinstance(v, dict): return {(k.decode() if isinstance(k, bytes) else k): plain(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)): return [plain(x) for x in v]
    return v
out = []
with open(sys.argv[1], "rb") as f:
    while True:
        try: d = tnetstring.load(f)
        except ValueError: break
        out.append(plain(compat.migrate_flow(d)))
print(json.dumps(out))
`;

function plain(v: TnetValue | undefined): unknown {
  if (Buffer.isBuffer(v)) return { $b: v.toString("base64") };
  if (v instanceof TnetFloat) return v.value;
  if (Array.isArray(v)) return v.map(plain);
  if (v && typeof v === "object") return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, plain(x)]));
  return v;
}

/** Connection ids made up by the version 4 → 5 migration are random on both sides. */
function maskIds(v: unknown): unknown {
  const d = v as { client_conn: { id: string }; server_conn: { id: string } };
  assert.match(d.client_conn.id, /^[0-9a-f-]{36}$/);
  assert.match(d.server_conn.id, /^[0-9a-f-]{36}$/);
  d.client_conn.id = d.server_conn.id = "masked";
  return d;
}

describe("older versions migrate exactly as mitmproxy's compat.py migrates them", { skip: mitmdumpMissing() }, () => {
  test("0.11 (Python 2, bytes keys) through every step to 17, then read as a flow", async () => {
    requireMitmproxy();
    const file = join(dir, "v0.11.mitm");
    writeFileSync(file, encodeBytesKeys(v011Flow()));
    const theirs = (JSON.parse(python(PYTHON_MIGRATE, [file])) as unknown[]).map(maskIds);
    const ours = [maskIds(plain(migrateState(decode(readFileSync(file)) as TnetDict, newMigrationContext(), 17)))];
    assert.deepEqual(ours, theirs);
    const { flows } = await readAll(file);
    const f = flows[0]!;
    assert.equal(f.request.url, "http://example.com/old?x=1");
    assert.equal(f.request.httpVersion, "HTTP/1.1");
    assert.equal(f.response!.httpVersion, "HTTP/1.0");
    assert.equal(f.response!.reason, "OK");
    assert.equal(f.response!.text, "<p>old</p>");
    assert.deepEqual(f.clientConn.peername, ["127.0.0.1", 51111]);
    assert.deepEqual(f.serverConn.sockname, ["10.0.0.2", 42000]);
    assert.equal(f.clientConn.proxyMode, "regular");
  });

  test("11: WebSocket flows are merged into their handshake flow (and a placeholder stands in for a missing one)", async () => {
    requireMitmproxy();
    const file = join(dir, "v11-websocket.mitm");
    writeFileSync(file, Buffer.concat(v11WebSocketPair().map((s) => encode(s as TnetValue))));
    const theirs = JSON.parse(python(PYTHON_MIGRATE, [file])) as unknown[];
    const ctx = newMigrationContext();
    const buf = readFileSync(file);
    const ours: unknown[] = [];
    for (let pos = 0; pos < buf.length; ) {
      const state = decode(buf, pos, pos + recordLength(buf, pos)) as TnetDict;
      pos += recordLength(buf, pos);
      ours.push(plain(migrateState(state, ctx, 17)));
    }
    assert.deepEqual(ours, theirs);
    const { flows } = await readAll(file);
    assert.deepEqual(flows.map((f) => f.id), ["handshake-1", "handshake-1", "ws-orphan"]);
    assert.equal(flows[0]!.websocket, null);
    assert.deepEqual(flows[1]!.websocket?.messages.map((m) => [m.type, m.fromClient, m.content.toString("latin1"), m.injected]), [[1, true, "hi", false], [2, false, "\x01\x02", false]]);
    assert.equal(flows[1]!.websocket?.closedByClient, true);
    assert.match(String(flows[1]!.metadata.duplicated), /may appear duplicated/);
    assert.equal(flows[2]!.request.host, "unknown");
  });

  test("13 and 14: a response without start time and WebSocket messages without `injected`", async () => {
    requireMitmproxy();
    const v17 = flowToState(sampleFlows()[4]!);
    const v13: TnetDict = { ...v17, version: 13, marked: ":default:", mode: "regular", response: { ...(v17.response as TnetDict), timestamp_start: null, timestamp_end: null } };
    delete v13.comment;
    delete v13.timestamp_created;
    (v13.websocket as TnetDict).messages = ((v17.websocket as TnetDict).messages as TnetValue[][]).map((m) => m.slice(0, 5));
    const file = join(dir, "v13.mitm");
    writeFileSync(file, encode(v13));
    const theirs = JSON.parse(python(PYTHON_MIGRATE, [file])) as unknown[];
    assert.deepEqual([plain(migrateState(decode(readFileSync(file)) as TnetDict, newMigrationContext(), 17))], theirs);
    const { flows } = await readAll(file);
    assert.equal(flows[0]!.response!.timestampStart, T + 4.001, "taken from the request's end, as mitmproxy does");
    assert.equal(flows[0]!.comment, "");
    assert.equal(flows[0]!.websocket!.messages[1]!.injected, false);
  });
});

function recordLength(buf: Buffer, pos: number): number {
  const colon = buf.indexOf(0x3a, pos);
  return colon - pos + 1 + Number(buf.toString("latin1", pos, colon)) + 1;
}

// ---------------------------------------------------------------------------------------------

/** A flow whose body says which one it is, so a reader can check each flow it gets back. */
function numberedFlow(i: number, bodySize: number): HTTPFlow {
  const body = Buffer.alloc(bodySize, i % 256);
  return sample(i, { method: "POST", url: `http://origin.test/n/${i}`, authority: "origin.test", reqHeaders: ["Host", "origin.test"], reqBody: `request ${i}`, status: 200, reason: "OK", resHeaders: ["Content-Length", String(bodySize)], resBody: body }, T + i + 0.001, [T + i + 0.01, T + i + 0.02]);
}

const CRASH_CHILD = String.raw`
const [storeUrl, flowUrl, headersUrl, file, bigMb] = process.argv.slice(2);
const { FlowWriter } = await import(storeUrl);
const { HTTPFlow, Request, Response, newClientConnection, newServerConnection } = await import(flowUrl);
const { Headers } = await import(headersUrl);
function flow(i, body) {
  const req = new Request({ method: "POST", scheme: "http", host: "origin.test", port: 80, path: "/n/" + i, headers: new Headers(["Host", "origin.test"]), content: Buffer.from("request " + i), timestampStart: 1 });
  const f = new HTTPFlow(newClientConnection(), newServerConnection(), req);
  f.response = new Response({ statusCode: 200, reason: "OK", content: body, timestampStart: 2 });
  return f;
}
const w = await FlowWriter.open(file);
for (let i = 0; i < 50; i++) w.write(flow(i, Buffer.alloc(1000 + i, i)));
await w.flush();
process.stdout.write("small 50\n");
const big = Buffer.alloc(Number(bigMb) * 1024 * 1024, 0x42);
for (let i = 50; ; i++) {
  process.stdout.write("writing " + i + "\n");
  w.write(flow(i, big));
  await w.flush();
  process.stdout.write("flushed " + i + "\n");
}
`;

describe("(d) crash safety", () => {
  test("a write the kernel refuses (a full disk) is one clear error, at close and on every later write", async () => {
    const w = await FlowWriter.open("/dev/full");
    w.write(numberedFlow(1, 100));
    await assert.rejects(w.close(), /\/dev\/full: writing flows failed: ENOSPC/);
    assert.throws(() => w.write(numberedFlow(2, 100)), /writing flows failed: ENOSPC/);
  });

  test("records larger than the queue limit and many small ones land whole and in order", async () => {
    const file = join(dir, "ordered.mitm");
    const w = await FlowWriter.open(file);
    // Two 20 MiB records pass write()'s 16 MiB limit; small records between them share writes.
    const big = [10, 20 << 20, 5, 3 << 20, 7, 1 << 10];
    const sizeOf = (i: number) => (i < 12 ? big[i % big.length]! : 100 + (i % 50));
    for (let i = 0; i < 300; i++) if (!w.write(numberedFlow(i, sizeOf(i)))) await w.flush();
    await w.close();
    let n = 0;
    for await (const f of readFlows(file)) {
      assert.equal(f.request.path, `/n/${n}`);
      assert.equal(f.response?.content?.length, sizeOf(n));
      n++;
    }
    assert.equal(n, 300);
  });

  test("a writer killed with SIGKILL mid-record leaves every complete flow readable and one truncation warning", async () => {
    const childFile = join(dir, "crash-child.mjs");
    writeFileSync(childFile, CRASH_CHILD);
    const file = join(dir, "crashed.mitm");
    const src = (p: string) => new URL(`../src/${p}`, import.meta.url).href;
    const loader = fileURLToPath(import.meta.url).endsWith(".ts") ? ["--import", "tsx"] : [];
    const child = spawn(process.execPath, [...loader, childFile, src("store/index.js"), src("core/flow.js"), src("core/headers.js"), file, "128"], { stdio: ["ignore", "pipe", "pipe"] });
    let out = "";
    let err = "";
    child.stderr.on("data", (c: Buffer) => (err += c));
    let flushed = -1;
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`crash child made no progress: ${out} ${err}`)), 120_000);
      child.stdout.on("data", (c: Buffer) => {
        out += c;
        for (const m of out.matchAll(/flushed (\d+)/g)) flushed = Math.max(flushed, Number(m[1]));
        // Kill while the third big record is being written: it takes far longer than this delay.
        if (/writing 53\n/.test(out)) {
          clearTimeout(timer);
          setTimeout(() => {
            child.kill("SIGKILL");
            resolve();
          }, 5);
        }
      });
      child.once("exit", (code) => reject(new Error(`crash child exited early (${code}): ${err}`)));
    });
    await new Promise((r) => child.once("exit", r));
    assert.ok(flushed >= 52, `the child flushed flows up to 52 (${flushed})`);
    const warnings: string[] = [];
    let count = 0;
    for await (const f of readFlows(file, { onWarning: (m) => warnings.push(m) })) {
      assert.equal(f.request.path, `/n/${count}`);
      assert.equal(f.request.content!.toString(), `request ${count}`);
      const body = f.response!.content!;
      if (count < 50) assert.deepEqual(body, Buffer.alloc(1000 + count, count));
      else assert.ok(body.length === 128 * 1024 * 1024 && body[0] === 0x42 && body[body.length - 1] === 0x42);
      count++;
    }
    assert.ok(count >= flushed + 1, `every flushed flow is back (${count} read, ${flushed + 1} flushed)`);
    assert.equal(warnings.length, 1, `one warning: ${warnings.join(" | ")}`);
    assert.match(warnings[0]!, new RegExp(`^${escape(file)}: truncated record at byte \\d+, ${count} flows read$`));
    assert.ok(statSync(file).size > 0);
  });

  test("a file cut at any byte reads back its complete flows, warns once, and never throws", async () => {
    const flows = Array.from({ length: 25 }, (_, i) => numberedFlow(i, i === 12 ? 300_000 : 50 + i * 37));
    const whole = join(dir, "whole.mitm");
    await writeAll(whole, flows);
    const data = readFileSync(whole);
    const ends: number[] = [];
    for (let pos = 0; pos < data.length; ) ends.push((pos += recordLength(data, pos)));
    assert.equal(ends.length, flows.length);
    let seed = 7;
    const rand = () => ((seed = (Math.imul(seed, 1103515245) + 12345) >>> 0) / 2 ** 32);
    const cuts = new Set<number>([0, 1, 2, 3, 4, 5, ...ends, ...ends.map((e) => e - 1), ...ends.map((e) => e + 3)]);
    while (cuts.size < 400) cuts.add(Math.floor(rand() * data.length));
    const cutFile = join(dir, "cut.mitm");
    for (const cut of [...cuts].filter((c) => c <= data.length)) {
      writeFileSync(cutFile, data.subarray(0, cut));
      const { flows: back, warnings } = await readAll(cutFile);
      const complete = ends.filter((e) => e <= cut).length;
      assert.equal(back.length, complete, `cut at ${cut}`);
      back.forEach((f, i) => assert.equal(f.request.path, `/n/${i}`));
      const atBoundary = cut === 0 || ends.includes(cut);
      assert.deepEqual(warnings, atBoundary ? [] : [`${cutFile}: truncated record at byte ${complete ? ends[complete - 1] : 0}, ${complete} flows read`], `cut at ${cut}`);
    }
  });

  test("flipped bytes either leave the file readable or raise FlowFileError, never anything else", async () => {
    const flows = Array.from({ length: 6 }, (_, i) => numberedFlow(i, 40));
    const whole = join(dir, "flip-source.mitm");
    await writeAll(whole, flows);
    const data = readFileSync(whole);
    const file = join(dir, "flipped.mitm");
    let seed = 99;
    const rand = () => ((seed = (Math.imul(seed, 1103515245) + 12345) >>> 0) / 2 ** 32);
    let failures = 0;
    for (let i = 0; i < 400; i++) {
      const copy = Buffer.from(data);
      const at = Math.floor(rand() * copy.length);
      copy[at] = Math.floor(rand() * 256);
      writeFileSync(file, copy);
      try {
        await readAll(file);
      } catch (err) {
        assert.ok(err instanceof FlowFileError, `flip at ${at}: ${(err as Error).stack}`);
        assert.match(err.message, /byte \d+/);
        failures++;
      }
    }
    assert.ok(failures > 0, "some flips hit the structure");
  });

  test("appending after a crash first removes the truncated record", async () => {
    const file = join(dir, "append.mitm");
    await writeAll(file, [numberedFlow(0, 10), numberedFlow(1, 10), numberedFlow(2, 10)]);
    const data = readFileSync(file);
    const keep = recordLength(data, 0) + recordLength(data, recordLength(data, 0));
    writeFileSync(file, data.subarray(0, keep + 17));
    const warnings: string[] = [];
    const w = await FlowWriter.open(file, { append: true, onWarning: (m) => warnings.push(m) });
    w.write(numberedFlow(2, 10));
    w.write(numberedFlow(3, 10));
    await w.close();
    assert.equal(warnings.length, 1);
    assert.match(warnings[0]!, new RegExp(`removed a truncated record at byte ${keep} \\(17 bytes`));
    const back = await readAll(file);
    assert.deepEqual(back.warnings, []);
    assert.deepEqual(back.flows.map((f) => f.request.path), ["/n/0", "/n/1", "/n/2", "/n/3"]);
  });
});

describe("(e) bad files", () => {
  test("not a flow file", async () => {
    const file = join(dir, "notes.txt");
    writeFileSync(file, "hello, this is a text file\n");
    await expectFlowFileError(file, (err) => {
      assert.equal(err.offset, 0);
      assert.match(err.message, /not a flow file \(byte 0: expected a length digit, got "h"\); sluice reads mitmproxy flow files \(\.mitm, \.flows\) and HAR \(\.har\)/);
    });
  });

  test("a corrupt length prefix in the middle of the file is reported and skipped", async () => {
    const file = join(dir, "corrupt-length.mitm");
    const records = [0, 1, 2].map((i) => encode(flowToState(numberedFlow(i, 20))));
    const second = records[1]!;
    const colon = second.indexOf(0x3a);
    const declared = Number(second.toString("latin1", 0, colon)) - 1;
    const shorter = Buffer.concat([Buffer.from(String(declared)), second.subarray(colon)]);
    writeFileSync(file, Buffer.concat([records[0]!, shorter, records[2]!]));
    const at = records[0]!.length;
    const next = at + shorter.length;
    let read = await readAll(file);
    assert.deepEqual(read.flows.map((f) => f.request.path), ["/n/0", "/n/2"]);
    assert.equal(read.warnings.length, 1);
    assert.match(read.warnings[0]!, new RegExp(`damaged flow record at byte ${at} \\(a record should end with a dict tag "}", found .* at byte ${at + String(declared).length + 1 + declared}\\); skipped ${next - at} bytes to the next good record at byte ${next}`));
    const zero = join(dir, "leading-zero.mitm");
    writeFileSync(zero, Buffer.concat([records[0]!, Buffer.from("0"), records[1]!]));
    read = await readAll(zero);
    assert.deepEqual(read.flows.map((f) => f.request.path), ["/n/0", "/n/1"]);
    assert.match(read.warnings.join("\n"), new RegExp(`damaged flow record at byte ${at} \\(length prefix has a leading zero`));
    const long = join(dir, "long-length.mitm");
    writeFileSync(long, Buffer.concat([records[0]!, Buffer.from("1234567890123:")]));
    read = await readAll(long);
    assert.deepEqual(read.flows.map((f) => f.request.path), ["/n/0"]);
    assert.match(read.warnings.join("\n"), new RegExp(`damaged flow record at byte ${at} \\(length prefix longer than 12 digits.*no readable flow after it; 1 flows read`));
  });

  test("a record that is not a flow", async () => {
    const file = join(dir, "no-version.mitm");
    writeFileSync(file, encode({ hello: "world" }));
    await expectFlowFileError(file, (err) => assert.match(err.message, /flow at byte 0 is not a valid HTTP flow \(version: expected an integer or a version tuple, got nothing\)/));
    const list = join(dir, "list.mitm");
    writeFileSync(list, encode([1, 2, 3]));
    await expectFlowFileError(list, (err) => assert.match(err.message, /not a flow file \(byte \d+: a record should end with a dict tag/));
  });

  test("empty files have no flows; missing files say so", async () => {
    const empty = join(dir, "empty.mitm");
    writeFileSync(empty, "");
    assert.deepEqual(await readAll(empty), { flows: [], warnings: [] });
    await expectFlowFileError(join(dir, "does-not-exist.mitm"), (err) => assert.match(err.message, /cannot open for reading: ENOENT/));
  });

  test("non-HTTP flows are skipped with one warning per type", async () => {
    const file = join(dir, "mixed.mitm");
    const tcp = { ...flowToState(numberedFlow(0, 5)), type: "tcp", messages: [] } as TnetDict;
    delete tcp.request;
    writeFileSync(file, Buffer.concat([encode(tcp), encode(flowToState(numberedFlow(1, 5))), encode(tcp)]));
    const { flows, warnings } = await readAll(file);
    assert.deepEqual(flows.map((f) => f.request.path), ["/n/1"]);
    assert.deepEqual(warnings, [`${file}: skipping tcp flows (first at byte 0); sluice reads HTTP flows only`]);
  });

  test("appending to something that is not a flow file is refused", async () => {
    for (const content of ["plain text\n", "12", JSON.stringify({ log: { entries: [] } })]) {
      const file = join(dir, "append-target.txt");
      writeFileSync(file, content);
      await assert.rejects(FlowWriter.open(file, { append: true }), (err: FlowFileError) => err instanceof FlowFileError && /refusing to append|can only append/.test(err.message));
      assert.equal(readFileSync(file, "utf8"), content, "the file is left alone");
    }
  });
});

// ---------------------------------------------------------------------------------------------
// HAR

/** Checks the structure HAR 1.2 requires; returns the problems found. */
function harProblems(har: unknown): string[] {
  const problems: string[] = [];
  const need = (cond: boolean, what: string) => cond || problems.push(what);
  const isStr = (v: unknown) => typeof v === "string";
  const isNum = (v: unknown) => typeof v === "number" && Number.isFinite(v);
  const nameValues = (v: unknown, where: string) => {
    need(Array.isArray(v), `${where} is a list`);
    if (Array.isArray(v)) v.forEach((x, i) => need(isStr(x?.name) && isStr(x?.value), `${where}[${i}] has name and value strings`));
  };
  const log = (har as HarLog | null)?.log;
  need(!!log && typeof log === "object", "log");
  if (!log) return problems;
  need(log.version === "1.2", "log.version is 1.2");
  need(isStr(log.creator?.name) && isStr(log.creator?.version), "log.creator has name and version");
  need(Array.isArray(log.entries), "log.entries is a list");
  (log.entries ?? []).forEach((e, i) => {
    const at = `entries[${i}]`;
    need(isStr(e.startedDateTime) && /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)$/.test(e.startedDateTime), `${at}.startedDateTime is ISO 8601`);
    need(isNum(e.time) && e.time >= 0, `${at}.time`);
    const q = e.request;
    need(isStr(q?.method) && isStr(q?.url) && isStr(q?.httpVersion), `${at}.request method/url/httpVersion`);
    need(Array.isArray(q?.cookies), `${at}.request.cookies`);
    nameValues(q?.headers, `${at}.request.headers`);
    nameValues(q?.queryString, `${at}.request.queryString`);
    need(isNum(q?.headersSize) && isNum(q?.bodySize), `${at}.request headersSize/bodySize`);
    if (q?.postData) need(isStr(q.postData.mimeType) && isStr(q.postData.text) && Array.isArray(q.postData.params), `${at}.request.postData`);
    const s = e.response;
    need(isNum(s?.status) && isStr(s?.statusText) && isStr(s?.httpVersion), `${at}.response status/statusText/httpVersion`);
    need(Array.isArray(s?.cookies), `${at}.response.cookies`);
    nameValues(s?.headers, `${at}.response.headers`);
    need(isNum(s?.content?.size) && isStr(s?.content?.mimeType), `${at}.response.content size/mimeType`);
    if (s?.content?.encoding !== undefined) need(s.content.encoding === "base64", `${at}.response.content.encoding`);
    need(isStr(s?.redirectURL) && isNum(s?.headersSize) && isNum(s?.bodySize), `${at}.response redirectURL/headersSize/bodySize`);
    need(!!e.cache && typeof e.cache === "object", `${at}.cache`);
    const t = e.timings;
    for (const k of ["send", "wait", "receive"] as const) need(isNum(t?.[k]) && t[k] >= 0, `${at}.timings.${k} >= 0`);
    for (const k of ["blocked", "dns", "connect", "ssl"] as const) need(t?.[k] === undefined || (isNum(t[k]) && (t[k] >= 0 || t[k] === -1)), `${at}.timings.${k} is -1 or >= 0`);
    const total = (["blocked", "dns", "connect", "send", "wait", "receive"] as const).reduce((n, k) => n + Math.max(0, t?.[k] ?? 0), 0);
    need(Math.abs(total - e.time) < 0.01, `${at}.time is the sum of the timings (${e.time} vs ${total})`);
    if (e.serverIPAddress !== undefined) need(isStr(e.serverIPAddress), `${at}.serverIPAddress`);
  });
  return problems;
}

describe("(f) HAR 1.2", () => {
  test("the export has the structure HAR 1.2 requires, with timings and bodies", () => {
    const flows = sampleFlows();
    const har = JSON.parse(JSON.stringify(flowsToHar(flows))) as HarLog;
    assert.deepEqual(harProblems(har), []);
    assert.deepEqual(harProblems({ log: { version: "1.1", entries: [{}] } }).length > 5, true, "the validator catches broken documents");
    const [get, post, tls, failed, , streamed] = har.log.entries;
    assert.equal(get!.startedDateTime, new Date(T * 1000).toISOString());
    assert.deepEqual(get!.timings, { blocked: -1, dns: -1, connect: 1, ssl: -1, send: 1, wait: 8, receive: 1 });
    assert.equal(get!.time, 11);
    assert.equal(get!.serverIPAddress, "127.0.0.1");
    assert.deepEqual(get!.request.queryString, [{ name: "q", value: "1" }, { name: "x", value: "café" }]);
    assert.deepEqual(get!.request.headers[1], { name: "X-Latin1", value: "caf\u00e9" }, "bytes that are not UTF-8 stay one char per byte");
    assert.equal(get!.response.content.text, '{"ok":true}');
    assert.equal(post!.request.postData!._encoding, "base64");
    assert.equal(Buffer.from(post!.request.postData!.text, "base64").length, 256);
    assert.equal(post!.response.content.text, "created ".repeat(50), "HAR keeps bodies decoded");
    assert.equal(post!.response.content.size, 400);
    assert.equal(post!.response.bodySize, flows[1]!.response!.content!.length);
    assert.equal(post!.response.content.compression, 400 - flows[1]!.response!.content!.length);
    assert.deepEqual(tls!.timings, { blocked: -1, dns: -1, connect: 2, ssl: 1, send: 0.5, wait: 47.5, receive: 1 });
    assert.equal(tls!.request.headersSize, -1, "HTTP/2 header sizes are unknown");
    assert.equal(tls!.comment, "throttled on purpose");
    assert.equal(failed!.response.status, 0);
    assert.equal(failed!.response._error, "Connection refused by origin.test:80");
    assert.equal(streamed!.response.content.text, undefined);
    assert.equal(streamed!.response.content.size, 123456789);
  });

  test("flows → HAR → flows keeps method, URL, status, headers, bodies and timings", () => {
    const flows = sampleFlows();
    const har = JSON.parse(JSON.stringify(flowsToHar(flows)));
    const back = harToFlows(har);
    assert.equal(back.length, flows.length);
    back.forEach((b, i) => {
      const f = flows[i]!;
      assert.equal(b.request.method, f.request.method);
      assert.equal(b.request.url, f.request.url);
      assert.equal(b.request.httpVersion, f.request.httpVersion);
      assert.deepEqual(b.request.headers.raw, f.request.headers.raw);
      assert.deepEqual(b.request.decodedContent ?? Buffer.alloc(0), f.request.decodedContent ?? Buffer.alloc(0));
      assert.ok(Math.abs(b.request.timestampStart - f.request.timestampStart) < 0.001);
      assert.equal(b.response?.statusCode, f.response?.statusCode);
      if (f.response) {
        assert.deepEqual(b.response!.headers.raw, f.response.headers.raw);
        assert.deepEqual(b.response!.decodedContent, f.response.decodedContent, `body of flow ${i}`);
        assert.equal(b.response!.contentLength, f.response.contentLength);
        assert.ok(Math.abs(b.response!.timestampStart - f.response.timestampStart) < 0.001);
        assert.ok(Math.abs(b.response!.timestampEnd! - f.response.timestampEnd!) < 0.001);
      } else {
        assert.equal(b.error?.msg, f.error?.msg);
      }
    });
    assert.deepEqual(flowsToHar(back).log.entries.map((e) => e.timings), har.log.entries.map((e: { timings: unknown }) => e.timings), "timings survive");
    assert.deepEqual(back[1]!.response!.content, flows[1]!.response!.content, "gzip bodies are re-encoded to the same wire bytes");
    assert.deepEqual(back[1]!.request.content, flows[1]!.request.content, "binary bodies come back byte for byte");
  });

  test("HarWriter streams a HAR file that readFlows recognizes (BOM or not) and convertFile converts both ways", async () => {
    const flows = sampleFlows();
    const harFile = join(dir, "streamed.har");
    const w = await HarWriter.open(harFile);
    for (const f of flows) w.write(f);
    await w.close();
    const parsed = JSON.parse(readFileSync(harFile, "utf8"));
    assert.deepEqual(harProblems(parsed), []);
    assert.equal(parsed.log.entries.length, flows.length);
    const { flows: back } = await readAll(harFile);
    assert.deepEqual(back.map((f) => f.request.url), flows.map((f) => f.request.url));

    const bom = join(dir, "bom.har");
    writeFileSync(bom, "\uFEFF  \n" + readFileSync(harFile, "utf8"));
    assert.equal((await readAll(bom)).flows.length, flows.length);

    const mitm = join(dir, "converted.mitm");
    const progress: number[] = [];
    assert.deepEqual(await convertFile(harFile, mitm, { onProgress: (p) => p.done && progress.push(p.flows) }), { flows: flows.length });
    assert.deepEqual(progress, [flows.length]);
    const again = join(dir, "converted.har");
    assert.deepEqual(await convertFile(mitm, again), { flows: flows.length });
    assert.deepEqual(harProblems(JSON.parse(readFileSync(again, "utf8"))), []);
    const viaRegistry: string[] = [];
    for await (const f of readFlowFile(again)) viaRegistry.push(f.request.url);
    assert.deepEqual(viaRegistry, flows.map((f) => f.request.url));
    assert.ok(!existsSync(`${again}.partial`));
    await assert.rejects(convertFile(mitm, mitm), /onto itself/);
  });

  test("a broken HAR file is a FlowFileError naming the file and position", async () => {
    const file = join(dir, "broken.har");
    writeFileSync(file, '\uFEFF{"log": {"entries": [] x');
    await expectFlowFileError(file, (err) => {
      assert.equal(err.offset, 26, "after the 3-byte BOM");
      assert.match(err.message, /looks like HAR but is not valid JSON at byte 26/);
    });
    writeFileSync(file, '{"log": {"entries": [ {"started');
    const cut = await readAll(file);
    assert.deepEqual(cut.flows, [], "a capture cut before its first entry has no flows");
    assert.match(cut.warnings.join(""), /cut short at byte 31 .*read the 0 complete entries/);
    writeFileSync(file, '{"log": {"pages": [ {"id');
    await expectFlowFileError(file, (err) => assert.match(err.message, /not valid JSON at byte 24 \(Unterminated string in JSON at position 24\)/));
    const noUrl = join(dir, "no-url.har");
    writeFileSync(noUrl, JSON.stringify({ log: { version: "1.2", entries: [{ startedDateTime: "2024-01-01T00:00:00Z", request: { method: "GET" } }] } }));
    await expectFlowFileError(noUrl, (err) => assert.match(err.message, /log\.entries\[0\]: request\.method and request\.url are required/));
  });
});

// ---------------------------------------------------------------------------------------------
// Processes

function escape(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
}

async function freePort(): Promise<number> {
  const s = net.createServer();
  await new Promise<void>((r) => s.listen(0, "127.0.0.1", r));
  const port = (s.address() as net.AddressInfo).port;
  await new Promise<void>((r) => s.close(() => r()));
  return port;
}

async function startMitmdump(args: string[]): Promise<{ child: ChildProcess }> {
  const child = spawn(MITMDUMP, args, { stdio: ["ignore", "pipe", "pipe"] });
  let text = "";
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill("SIGKILL");
      reject(new Error(`mitmdump did not start: ${text}`));
    }, 30_000);
    const onData = (c: Buffer) => {
      text += c.toString();
      if (/listening at/i.test(text)) {
        clearTimeout(timer);
        resolve();
      }
    };
    child.stdout!.on("data", onData);
    child.stderr!.on("data", onData);
    child.once("exit", (code) => {
      clearTimeout(timer);
      reject(new Error(`mitmdump exited with ${code}: ${text}`));
    });
  });
  return { child };
}

async function stopProcess(child: ChildProcess, signal: NodeJS.Signals): Promise<void> {
  if (child.exitCode !== null) return;
  const exited = new Promise((r) => child.once("exit", r));
  child.kill(signal);
  const timer = setTimeout(() => child.kill("SIGKILL"), 15_000);
  await exited;
  clearTimeout(timer);
}
