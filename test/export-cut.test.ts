/**
 * export (curl, httpie, raw, raw_request, raw_response, har) and cut, as mitmproxy's commands and
 * `sluice dump --cut`. The curl and httpie exports are run in a shell and must reproduce the
 * request at the origin: method, URL, headers and body, binary bodies and HTTP/2 flows included.
 */
import { test, describe, before, after } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { randomBytes } from "node:crypto";
import { startSluice, type TestSluice } from "./support/sluice.js";
import { startOrigin, originCaFile, type Origin, type SeenRequest } from "./support/origins.js";
import { run } from "./support/run.js";
import { SLUICE_BIN } from "./support/cli.js";
import { Export } from "../src/addons/export.js";
import { Save } from "../src/addons/save.js";
import type { HTTPFlow } from "../src/core/flow.js";
import { needs } from "./support/needs.js";
import { mitmdumpMissing } from "./support/mitmdump.js";

const CURL = ["-sS", "--max-time", "20", "--noproxy", ""];
const httpieMissing = needs("/usr/bin/http", "httpie");

describe("export and cut", { skip: needs("curl", "curl") }, () => {
  let origin: Origin;
  let h2: Origin;
  let sluice: TestSluice;
  let dir: string;
  let textFlow: HTTPFlow;
  let binaryFlow: HTTPFlow;
  const binary = Buffer.concat([Buffer.from([0, 1, 2, 255, 10, 13]), randomBytes(2048)]);

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), "sluice-export-"));
    origin = await startOrigin();
    h2 = await startOrigin({ h2: true });
    sluice = await startSluice({ addons: [new Export(), new Save()] });
    const binFile = join(dir, "upload.bin");
    (await import("node:fs")).writeFileSync(binFile, binary);
    let r = await run("curl", [...CURL, "-x", sluice.url, "-X", "PATCH", "-H", "X-Quote: it's \"quoted\" $HOME", "-H", "Content-Type: text/plain", "-A", "exporter/1", "--data-binary", "line one\nline 'two' $(rm -rf /)\n", `${origin.url}/text?q=a%20b&x=1`]);
    assert.equal(r.code, 0, r.stderr);
    r = await run("curl", [...CURL, "-x", sluice.url, "--cacert", sluice.caCert, "--http2", "-X", "PUT", "-H", "Content-Type: application/octet-stream", "--data-binary", `@${binFile}`, `${h2.url}/bin/obj`]);
    assert.equal(r.code, 0, r.stderr);
    const flows = await sluice.waitForFlows(2);
    textFlow = flows.find((f) => f.request.path.startsWith("/text"))!;
    binaryFlow = flows.find((f) => f.request.path.startsWith("/bin"))!;
    assert.equal(binaryFlow.request.httpVersion, "HTTP/2.0", "the binary upload went over HTTP/2");
  });
  after(async () => {
    await sluice.close();
    await origin.close();
    await h2.close();
  });

  async function exportTo(format: string, flow: HTTPFlow, name: string): Promise<string> {
    const path = join(dir, name);
    await sluice.master.commands.execute(`export.file ${format} ${flow.id} ${path}`);
    return path;
  }

  /** What matters of a request at the origin: everything but the connection-level headers. */
  function essence(r: SeenRequest) {
    const headers: Record<string, unknown> = Object.fromEntries(Object.entries(r.headers));
    delete headers.connection;
    return { method: r.method, url: r.url, headers, body: r.body.toString("base64") };
  }

  test("a curl export run in a shell reproduces a text request (quotes, $, newlines in the body and headers)", async () => {
    const original = origin.requests.find((r) => r.url.startsWith("/text"))!;
    const script = await exportTo("curl", textFlow, "text.sh");
    assert.match(readFileSync(script, "utf8"), /^curl /);
    const r = await run("bash", [script]);
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual(essence(origin.requests.at(-1)!), essence(original));
  });

  test("a curl export of an HTTP/2 flow with a binary body reproduces it, the body read from PATH.body", async () => {
    const original = h2.requests.find((r) => r.url.startsWith("/bin"))!;
    const script = await exportTo("curl", binaryFlow, "binary.sh");
    assert.match(readFileSync(script, "utf8"), /--http2 .*--data-binary @.*binary\.sh\.body/);
    assert.deepEqual(readFileSync(`${script}.body`), binary);
    const r = await run("bash", [script], { env: { ...process.env, CURL_CA_BUNDLE: originCaFile() } });
    assert.equal(r.code, 0, r.stderr);
    const replayed = h2.requests.at(-1)!;
    assert.equal(replayed.httpVersion, "2.0");
    assert.deepEqual(essence(replayed), essence(original));
  });

  test("an httpie export run in a shell reproduces the request", { skip: httpieMissing }, async () => {
    for (const [flow, server, name] of [[textFlow, origin, "text"], [binaryFlow, h2, "bin"]] as const) {
      const original = server.requests.find((r) => r.url.startsWith(`/${name}`))!;
      const script = await exportTo("httpie", flow, `${name}.httpie.sh`);
      const r = await run("bash", [script], { env: { ...process.env, REQUESTS_CA_BUNDLE: originCaFile(), HOME: dir } });
      assert.equal(r.code, 0, r.stderr);
      const replayed = essence(server.requests.at(-1)!);
      const want = essence(original);
      // httpie speaks HTTP/1.1 only: compare without HTTP/2's pseudo-headers.
      for (const e of [replayed, want]) for (const k of Object.keys(e.headers)) if (k.startsWith(":") || k === "host") delete e.headers[k];
      // Python's http.client adds "Accept-Encoding: identity" when a request has none; nothing
      // on httpie's command line can stop it (curl exports have no such difference).
      if (want.headers["accept-encoding"] === undefined && replayed.headers["accept-encoding"] === "identity") delete replayed.headers["accept-encoding"];
      assert.deepEqual(replayed, want, name);
    }
  });

  test("raw_request, raw_response, raw and har", async () => {
    const req = readFileSync(await exportTo("raw_request", textFlow, "req.txt"), "latin1");
    assert.match(req, /^PATCH \/text\?q=a%20b&x=1 HTTP\/1\.1\r\n/);
    assert.ok(req.endsWith("\r\n\r\nline one\nline 'two' $(rm -rf /)\n"));
    const resp = readFileSync(await exportTo("raw_response", textFlow, "resp.txt"), "latin1");
    assert.match(resp, /^HTTP\/1\.1 200 OK\r\n[\s\S]*content-type: application\/json\r\n[\s\S]*\r\n\r\n\{"method":"PATCH"/i);
    const raw = readFileSync(await exportTo("raw", textFlow, "raw.txt"), "latin1");
    assert.equal(raw, `${req}\r\n\r\n${resp}`);
    const har = JSON.parse(readFileSync(await exportTo("har", binaryFlow, "one.har"), "utf8"));
    assert.equal(har.log.entries.length, 1);
    assert.equal(har.log.entries[0].request.method, "PUT");
    assert.match(String(await sluice.master.commands.execute("export.formats")), /curl\nhar\nhttpie\nraw\nraw_request\nraw_response/);
    await assert.rejects(sluice.master.commands.execute(`export.file pdf ${textFlow.id} ${join(dir, "x")}`), /no such export format: pdf/);
    await assert.rejects(sluice.master.commands.execute(`export curl @all`), /exactly one flow, the selector matched 2/);
  });

  test("cut and dump --cut give what mitmproxy's cut gives for the same flow file", { skip: mitmdumpMissing() }, async () => {
    const file = join(dir, "cap.mitm");
    await sluice.master.commands.execute(`save.file @all ${file}`);
    const cuts = "request.method,response.status_code,request.url,request.header[content-type],client_conn.peername.host,request.content,response.reason";
    const csv = await run(process.execPath, [SLUICE_BIN, "dump", "-n", "-r", file, "--confdir", dir, "--cut", cuts]);
    assert.equal(csv.code, 0, csv.stderr);
    assert.equal(String(await sluice.master.commands.execute(`cut @all ${cuts}`)), csv.stdout, "the command and the flag agree");
    const py = `
import csv, sys
from mitmproxy.io import FlowReader
from mitmproxy.addons.cut import extract_str
w = csv.writer(sys.stdout)
with open(sys.argv[1], "rb") as f:
    for flow in FlowReader(f).stream():
        w.writerow([extract_str(c, flow) for c in sys.argv[2].split(",")])
`;
    const m = await run("/usr/bin/python3", ["-c", py, file, cuts]);
    assert.equal(m.code, 0, m.stderr);
    assert.equal(csv.stdout, m.stdout);
    const json = await run(process.execPath, [SLUICE_BIN, "dump", "-n", "-r", file, "--confdir", dir, "--cut", "request.method,response.status_code", "--cut-format", "json", "~m PUT"]);
    assert.equal(json.code, 0, json.stderr);
    assert.deepEqual(json.stdout.trim().split("\n").map((l) => JSON.parse(l)), [{ "request.method": "PUT", "response.status_code": "200" }]);
    const bad = await run(process.execPath, [SLUICE_BIN, "dump", "-n", "-r", file, "--confdir", dir, "--cut", "request._secret"]);
    assert.match(bad.stderr, /can't access internal attribute _secret/);
  });
});
