/**
 * Scripts written with mitmproxy habits: mitmproxy's names on the flow model, loud errors instead
 * of silent no-op assignments, `import { Response } from "sluice"` from anywhere on disk, errors
 * that point into the script, and the hook order that makes a script's change what is recorded —
 * shown end to end with the talk's addon against boto3.
 */
import { test, describe, after } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import http from "node:http";
import { HTTPFlow, Request, Response, newClientConnection, newServerConnection } from "../src/core/flow.js";
import { scriptView } from "../src/addons/script-view.js";
import { readFlowFile } from "../src/store/index.js";
import { run } from "./support/run.js";
import { SLUICE_BIN, spawnSluice, assertOneLineError } from "./support/cli.js";
import { startSluice, testConfdir } from "./support/sluice.js";
import { startOrigin } from "./support/origins.js";
import { mapS3To, runBoto3, startThrottlingS3 } from "./support/throttling-s3.js";
import type { TrackerSnapshot } from "../src/aws/invocations.js";
import { needs, needsPython } from "./support/needs.js";

const REPO = join(dirname(fileURLToPath(import.meta.url)), "..", "..");
const sluiceCli = (args: string[], cwd?: string) => run(process.execPath, [SLUICE_BIN, ...args], { timeoutMs: 60_000, cwd });

function flowOf(req: Request, res?: Response): HTTPFlow {
  const f = new HTTPFlow(newClientConnection(), newServerConnection(), req);
  if (res) f.response = res;
  return f;
}

describe("mitmproxy's names on the flow model", () => {
  test("HTTPFlow, Request, Response and Headers answer to mitmproxy's spellings", () => {
    const req = Request.make("get", "https://s3.eu-west-1.amazonaws.com:8443/logs/a%20b?list-type=2", "", [["X-Amz-Date", "1"], ["x-amz-date", "2"]]);
    assert.equal(req.method, "GET");
    assert.equal(req.pretty_url, "https://s3.eu-west-1.amazonaws.com:8443/logs/a%20b?list-type=2");
    assert.equal(req.pretty_host, "s3.eu-west-1.amazonaws.com");
    assert.equal(req.host_header, "s3.eu-west-1.amazonaws.com:8443");
    assert.deepEqual(req.path_components, ["logs", "a b"]);
    assert.equal(req.http_version, "HTTP/1.1");
    assert.deepEqual(req.headers.get_all("x-amz-date"), ["1", "2"]);
    assert.deepEqual(req.headers.items().find(([n]) => n === "X-Amz-Date"), ["X-Amz-Date", "1, 2"]);
    req.headers.set_all("x-amz-date", ["3"]);
    assert.deepEqual(req.headers.fields.filter(([n]) => /amz/i.test(n)), [["x-amz-date", "3"]]);

    const res = Response.make(200, '{"a":1}', [["content-type", "application/json"]]);
    const flow = flowOf(req, res);
    flow.response!.status_code = 429;
    assert.equal(flow.response!.statusCode, 429, "status_code writes statusCode");
    assert.equal(flow.response!.status_code, 429);
    assert.deepEqual(flow.response!.json(), { a: 1 });
    flow.response!.set_text("slow down");
    assert.equal(flow.response!.get_text(), "slow down");
    assert.equal(flow.response!.headers.get("content-length"), "9");
    assert.equal(flow.timestamp_start, req.timestamp_start);
    assert.equal(flow.client_conn, flow.clientConn);
    assert.equal(flow.is_replay, null);
    assert.equal(Response.make(418).reason, "I'm a teapot");
  });
});

describe("a script's view of a flow", () => {
  const flow = () => flowOf(Request.make("GET", "http://example.com/a"), Response.make(200, "ok", { "content-type": "text/plain" }));

  test("assigning a property that does not exist is an error naming the right one, never a no-op", () => {
    const f = scriptView(flow());
    assert.throws(() => ((f.response as unknown as Record<string, unknown>).status = 429), /flow\.response\.status does not exist, so setting it would change nothing; did you mean status_code\?/);
    assert.throws(() => ((f.response as unknown as Record<string, unknown>).statusCod = 429), /did you mean statusCode\?/);
    assert.throws(() => ((f.request as unknown as Record<string, unknown>).body = "x"), /flow\.request\.body does not exist.*did you mean text/);
    assert.throws(() => ((f as unknown as Record<string, unknown>).mark = true), /flow\.mark does not exist.*did you mean marked\?/);
    assert.throws(() => ((f.request as unknown as Record<string, unknown>).pretty_url = "http://x/"), /flow\.request\.pretty_url is read-only: set url/);
    f.response!.status_code = 503;
    f.response!.reason = "Slow Down";
    f.marked = ":default:";
    assert.equal(f.response!.statusCode, 503);
    assert.equal(f.marked, ":default:");
  });

  test("a gzip body is not replaced by raw bytes behind the client's back", () => {
    const f = flow();
    f.response!.headers.set("content-encoding", "gzip");
    const view = scriptView(f);
    assert.throws(() => (view.response!.content = Buffer.from("plain")), /content is the body as on the wire, and this one is gzip-encoded: use flow\.response\.set_content/);
    view.response!.set_content(Buffer.from("plain"));
    assert.equal(f.response!.headers.get("content-encoding"), undefined);
    assert.equal(f.response!.text, "plain");
  });

  test("headers index like mitmproxy's: case-insensitive get, set, delete and in", () => {
    const f = flow();
    f.request.headers.add("Accept", "a").add("accept", "b");
    const h = scriptView(f).request.headers as unknown as Record<string, string | undefined>;
    assert.equal(h["ACCEPT"], "a, b");
    assert.equal(h["x-missing"], undefined);
    h["X-Tag"] = "1";
    assert.equal(f.request.headers.get("x-tag"), "1");
    assert.ok("x-tag" in h);
    delete h["x-TAG"];
    assert.equal(f.request.headers.has("x-tag"), false);
  });

  test("an object a script stores on a flow is sluice's own, not the script's view", () => {
    const a = flow();
    const b = flow();
    scriptView(a).response = scriptView(b).response;
    assert.equal(a.response, b.response);
  });
});

describe("scripts from anywhere on disk", () => {
  const dir = mkdtempSync(join(tmpdir(), "sluice-anywhere-"));

  /** Runs sluice with `script`, sends one request through it, returns curl's and sluice's output. */
  async function through(script: string, url: string): Promise<{ body: string; stderr: string }> {
    const proxy = await spawnSluice(["dump", "-p", "0", "--confdir", testConfdir(), "-s", script]);
    try {
      const r = await run("curl", ["-sS", "--max-time", "20", "--noproxy", "", "-x", `http://127.0.0.1:${proxy.port}`, url]);
      return { body: r.stdout, stderr: proxy.stderr() };
    } finally {
      await proxy.stop();
    }
  }

  test("import { Response } from \"sluice\" is the running sluice's, from .ts and .js outside the repo", { skip: needs("curl", "curl") }, async () => {
    for (const ext of ["ts", "js"]) {
      const file = join(dir, `answer.${ext}`);
      writeFileSync(file, `import { Response, HTTPFlow } from "sluice";\nexport default { request(flow${ext === "ts" ? ": HTTPFlow" : ""}) { flow.response = Response.make(200, "same class: " + (flow instanceof HTTPFlow)); } };\n`);
      const { body, stderr } = await through(file, "http://127.0.0.1:9/anything");
      assert.equal(body, "same class: true", `${ext}: ${stderr}`);
    }
  });

  test("a script that throws shows its own file, line and column, not a data: URL", { skip: needs("curl", "curl") }, async () => {
    const origin = await startOrigin();
    try {
      const file = join(dir, "throws.ts");
      writeFileSync(file, `import type { HTTPFlow } from "sluice";\nexport default {\n  request(flow: HTTPFlow): void {\n    const n: number = 1;\n    throw new Error("boom " + n);\n  },\n};\n`);
      const { stderr } = await through(file, `${origin.url}/x`);
      assert.match(stderr, /failed in request: Error: boom 1\n\s+at Object\.request \([^)]*throws\.ts:5:11\)/, stderr);
      assert.doesNotMatch(stderr, /data:text\/javascript/);
    } finally {
      await origin.close();
    }
  });

  test("-s file.py says in one line that scripts are JavaScript or TypeScript, and where mitmproxy's names are", async () => {
    const py = join(dir, "addon.py");
    writeFileSync(py, "def response(flow):\n    flow.response.status_code = 429\n");
    const r = await sluiceCli(["dump", "-p", "0", "--confdir", testConfdir(), "-s", py]);
    assertOneLineError(r, /sluice runs JavaScript and TypeScript scripts \(\.js, \.ts\), not Python; mitmproxy's names work in them \(see "Scripts for mitmproxy users" in the README\)/, "-s file.py", 2);
  });

  test("a misspelt hook is reported instead of never running", { skip: needs("curl", "curl") }, async () => {
    const file = join(dir, "typo.js");
    writeFileSync(file, `export default { responce(flow) {}, request(flow) {} };\n`);
    const { stderr } = await through(file, "http://127.0.0.1:9/");
    assert.match(stderr, /responce\(\) is not a hook, so sluice never calls it; did you mean response\(\)\?/);
  });

  after(() => rmSync(dir, { recursive: true, force: true }));
});

/** `name{labels} value` lines of a Prometheus text page, summed per metric name. */
function metricTotals(text: string): Map<string, number> {
  const out = new Map<string, number>();
  for (const line of text.split("\n")) {
    const m = /^(sluice_\w+)(?:\{[^}]*\})? ([0-9.e+-]+)$/.exec(line);
    if (m) out.set(m[1]!, (out.get(m[1]!) ?? 0) + Number(m[2]));
  }
  return out;
}

function get(url: string): Promise<string> {
  return new Promise((resolve, reject) => {
    http.get(url, (res) => {
      let body = "";
      res.on("data", (c: Buffer) => (body += c));
      res.on("end", () => resolve(body));
    }).on("error", reject);
  });
}

describe("the talk's addon (examples/s3-throttle.js) with boto3: the script's 429s are what is recorded", { skip: needsPython("boto3", "python3-boto3") }, () => {
  test("boto3's retries, the capture, sluice report and the metrics agree with the SDK's count", async () => {
    const dir = mkdtempSync(join(tmpdir(), "sluice-talk-"));
    const capture = join(dir, "throttled.mitm");
    const origin = await startThrottlingS3(() => false);
    // boto3 → sluice with the script (it sees the real S3 host) → a second sluice that maps S3 to the local origin.
    const mapper = await startSluice({ set: { map_remote: mapS3To(origin.url) } });
    const proxy = await spawnSluice([
      "dump", "-p", "0", "--confdir", testConfdir(), "-s", join(REPO, "examples", "s3-throttle.js"), "-w", capture,
      "--mode", `upstream:http://127.0.0.1:${mapper.port}`, "--set", `ssl_verify_upstream_trusted_ca=${mapper.caCert}`, "--set", "metrics_port=0",
    ]);
    try {
      const boto = await runBoto3({ proxyUrl: `http://127.0.0.1:${proxy.port}`, caCert: join(testConfdir(), "sluice-ca-cert.pem"), operations: ["list_objects_v2", "put_object"], threads: 2, callsPerThread: 2, mode: "legacy" });
      const calls = Object.values(boto.calls).reduce((a, b) => a + b, 0);
      const retries = Object.values(boto.retries).reduce((a, b) => a + b, 0);
      const failures = Object.values(boto.failures).reduce((a, b) => a + b, 0);
      assert.deepEqual(boto.errors, []);
      assert.equal(calls, 4);
      // botocore's legacy mode retries any 429 (its "too_many_requests" policy), up to 5 attempts.
      assert.equal(retries, 16, "boto3 retried the 429s");
      assert.equal(failures, 4);
      const attempts = calls + retries;
      assert.equal(origin.requests.length, attempts, "every attempt reached the origin, which answered 200");

      const metricsPort = Number(/Prometheus metrics at http:\/\/127\.0\.0\.1:(\d+)\/metrics/.exec(proxy.stderr())?.[1]);
      const metrics = metricTotals(await get(`http://127.0.0.1:${metricsPort}/metrics`));
      assert.equal(metrics.get("sluice_requests_total"), attempts);
      assert.equal(metrics.get("sluice_throttles_total"), attempts, "every answer the client got was a 429");
      assert.equal(metrics.get("sluice_retries_total"), retries);
      assert.equal(metrics.get("sluice_giveups_total") ?? 0, failures);

      await proxy.stop();
      const saved = [];
      for await (const f of readFlowFile(capture)) saved.push(f);
      assert.equal(saved.length, attempts);
      assert.ok(saved.every((f) => f.response?.statusCode === 429 && f.response.reason === "Too Many Requests"), "the capture holds what the client got");

      const r = await sluiceCli(["report", capture, "--json"]);
      assert.equal(r.code, 0, r.stderr);
      const report = JSON.parse(r.stdout) as TrackerSnapshot;
      assert.equal(report.totals.invocations, calls);
      assert.equal(report.totals.requests, attempts);
      assert.equal(report.totals.throttles, attempts);
      assert.equal(report.totals.retries, retries);
      assert.equal(report.totals.outcomes["gave-up"], failures);
    } finally {
      await proxy.stop();
      await Promise.all([mapper.close(), origin.close()]);
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe("sluice addons", () => {
  test("lists the chain in hook order: scripts before every addon that changes or observes traffic", async () => {
    const r = await sluiceCli(["addons"]);
    assert.equal(r.code, 0, r.stderr);
    const names = [...r.stdout.matchAll(/^\s*\d+\. (\w+)/gm)].map((m) => m[1]!);
    const at = (n: string) => names.indexOf(n);
    for (const later of ["map_remote", "shaping", "faults", "server_replay", "intercept", "retries", "metrics", "save", "dump"]) {
      assert.ok(at("scripts") >= 0 && at("scripts") < at(later), `scripts before ${later}: ${names.join(" ")}`);
    }
    for (const observer of ["retries", "metrics", "save", "dump"]) assert.ok(at("faults") < at(observer) && at("server_replay") < at(observer), observer);
  });
});

describe("README", () => {
  test("documents mitmproxy's names for scripts", () => {
    const readme = readFileSync(join(REPO, "README.md"), "utf8");
    for (const name of ["status_code", "pretty_url", "http_version", "timestamp_start", "Response.make", "headers[\"x\"]"]) assert.ok(readme.includes(name), name);
  });
});
