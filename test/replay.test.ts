/**
 * Server replay with a real boto3: record S3 calls through sluice (-w) against a fake S3, then
 * replay them (-S) with no origin running — SigV4 signatures and dates differ between the runs.
 */
import { test, describe, before, after } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync } from "node:fs";
import net from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { startFakeS3 } from "./support/fake-aws.js";
import { startSluice, type TestSluice } from "./support/sluice.js";
import { run, awsEnv, pythonWithBoto3 } from "./support/run.js";
import { Save } from "../src/addons/save.js";
import { ClientReplay } from "../src/addons/client-replay.js";
import { ServerReplay } from "../src/addons/server-replay.js";
import { Headers } from "../src/core/headers.js";
import { HTTPFlow, Request, Response, newClientConnection, newServerConnection } from "../src/core/flow.js";
import { FlowWriter, readFlowFile } from "../src/store/index.js";
import { startOrigin, echo } from "./support/origins.js";
import { SLUICE_BIN } from "./support/cli.js";
import { needs, needsPython } from "./support/needs.js";

const S3_HOST = "s3.eu-west-1.amazonaws.com";
const S3_PATTERN = `https://${S3_HOST.replace(/\./g, "\\.")}`;

const SCRIPT = `
import sys, boto3, botocore.config
cfg = botocore.config.Config(s3={"addressing_style": "path"}, retries={"max_attempts": 1, "mode": "standard"})
s3 = boto3.client("s3", region_name="eu-west-1", config=cfg)
what = sys.argv[1]
if what == "record":
    s3.create_bucket(Bucket="replay-bucket", CreateBucketConfiguration={"LocationConstraint": "eu-west-1"})
    s3.put_object(Bucket="replay-bucket", Key="a.txt", Body=b"recorded body " * 100)
    print("got", s3.get_object(Bucket="replay-bucket", Key="a.txt")["Body"].read()[:13].decode())
    print("keys", [o["Key"] for o in s3.list_objects_v2(Bucket="replay-bucket")["Contents"]])
else:
    try:
        s3.get_object(Bucket="replay-bucket", Key="never-recorded.txt")
        print("unexpected success")
    except botocore.exceptions.ClientError as e:
        print("client error", e.response["ResponseMetadata"]["HTTPStatusCode"])
    except Exception as e:
        print("failed", type(e).__name__)
`;

/** A port with nothing listening on it. */
async function closedPort(): Promise<number> {
  const s = net.createServer();
  await new Promise<void>((r) => s.listen(0, "127.0.0.1", r));
  const port = (s.address() as net.AddressInfo).port;
  await new Promise<void>((r) => s.close(() => r()));
  return port;
}

describe("server replay (-S) with boto3", { skip: needsPython("boto3", "python3-boto3") }, () => {
  const dir = mkdtempSync(join(tmpdir(), "sluice-replay-"));
  const capture = join(dir, "s3.mitm");
  let python: string;
  let recorded: string;
  let deadPort: number;

  before(async () => {
    python = await pythonWithBoto3();
    const fake = await startFakeS3();
    const sluice = await startSluice({ set: { map_remote: JSON.stringify([`|${S3_PATTERN}|${fake.url}`]), save_stream_file: capture }, addons: [new Save()] });
    try {
      const r = await run(python, ["-c", SCRIPT, "record"], { env: awsEnv({ HTTPS_PROXY: sluice.url, AWS_CA_BUNDLE: sluice.caCert }) });
      assert.equal(r.code, 0, r.stderr);
      recorded = r.stdout;
      assert.match(recorded, /got recorded body/);
      assert.match(recorded, /keys \['a\.txt'\]/);
      await sluice.waitForFlows(4);
    } finally {
      await sluice.close();
      await fake.close();
    }
    deadPort = await closedPort();
  });

  async function replaying(extra: string): Promise<TestSluice> {
    return startSluice({
      set: { map_remote: JSON.stringify([`|${S3_PATTERN}|https://127.0.0.1:${deadPort}`]), server_replay: JSON.stringify([capture]), server_replay_extra: extra },
      addons: [new ServerReplay()],
    });
  }

  test("the same boto3 calls succeed from the recording with the origin gone", async () => {
    const sluice = await replaying("forward");
    after(() => sluice.close());
    const r = await run(python, ["-c", SCRIPT, "record"], { env: awsEnv({ HTTPS_PROXY: sluice.url, AWS_CA_BUNDLE: sluice.caCert }) });
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout, recorded);
    const flows = await sluice.waitForFlows(4);
    assert.deepEqual(flows.map((f) => f.isReplay), ["response", "response", "response", "response"]);
    assert.ok(flows.every((f) => f.request.headers.get("authorization")?.startsWith("AWS4-HMAC-SHA256")));
  });

  for (const [extra, expected] of [["404", /client error 404/], ["kill", /failed /], ["forward", /client error 502|failed /]] as const) {
    test(`an unrecorded request with server_replay_extra=${extra}`, async () => {
      const sluice = await replaying(extra);
      try {
        const r = await run(python, ["-c", SCRIPT, "unmatched"], { env: awsEnv({ HTTPS_PROXY: sluice.url, AWS_CA_BUNDLE: sluice.caCert }) });
        assert.equal(r.code, 0, r.stderr);
        assert.match(r.stdout, expected);
        if (extra === "kill") return; // a killed flow reaches neither the response nor the error hook
        const [flow] = await sluice.waitForFlows(1);
        assert.equal(flow!.isReplay, null);
        if (extra === "404") assert.equal(flow!.response?.statusCode, 404);
        if (extra === "forward") assert.ok(flow!.error !== null || (flow!.response?.statusCode ?? 0) >= 500, "forwarded to the closed port");
      } finally {
        await sluice.close();
      }
    });
  }
});

describe("client replay (-C)", () => {
  test("sluice dump -n -C re-sends every recorded request through the proxy and summarises the statuses", async () => {
    const origin = await startOrigin({
      handler: (req, res, body) => {
        if (req.url?.startsWith("/missing")) {
          res.writeHead(404, { "content-type": "text/plain" });
          res.end("no");
        } else echo(req, res, body);
      },
    });
    const dir = mkdtempSync(join(tmpdir(), "sluice-creplay-"));
    const recorded = join(dir, "recorded.mitm");
    const replayed = join(dir, "replayed.mitm");
    try {
      const w = await FlowWriter.open(recorded);
      const host = `127.0.0.1`;
      for (let i = 0; i < 12; i++) {
        const post = i % 4 === 3;
        const path = post ? `/missing/${i}` : `/item/${i}?n=${i}`;
        const body = post ? Buffer.from(`{"i":${i}}`) : Buffer.alloc(0);
        const headers = new Headers(["Host", `${host}:${origin.port}`, "X-Test", `n${i}`, "Content-Length", String(body.length), "Connection", "keep-alive"]);
        const req = new Request({ method: post ? "POST" : "GET", scheme: "http", host, port: origin.port, path, authority: "", headers, content: body, timestampStart: 1_700_000_000 + i });
        w.write(new HTTPFlow(newClientConnection(), newServerConnection(), req));
      }
      await w.close();
      const confdir = mkdtempSync(join(tmpdir(), "sluice-creplay-conf-"));
      const r = await run(process.execPath, [SLUICE_BIN, "dump", "-n", "-C", recorded, "-w", replayed, "--confdir", confdir, "--set", "client_replay_concurrency=3"], { timeoutMs: 60_000 });
      assert.equal(r.code, 0, r.stderr);
      assert.match(r.stderr, /client replay: 12 requests replayed — 200×9, 404×3/);
      assert.equal(origin.requests.length, 12);
      assert.deepEqual(origin.requests.map((q) => q.url).sort(), Array.from({ length: 12 }, (_, i) => (i % 4 === 3 ? `/missing/${i}` : `/item/${i}?n=${i}`)).sort());
      assert.ok(origin.requests.every((q) => !("x-sluice-client-replay" in q.headers)), "the replay marker never reaches the server");
      const posted = origin.requests.find((q) => q.url === "/missing/3")!;
      assert.equal(posted.body.toString(), '{"i":3}');
      const flows: HTTPFlow[] = [];
      for await (const f of readFlowFile(replayed)) flows.push(f);
      assert.equal(flows.length, 12);
      assert.ok(flows.every((f) => f.isReplay === "request"));
      assert.equal(r.stdout.trim().split("\n").length, 12, "one dump line per replayed flow");
    } finally {
      await origin.close();
    }
  });
});

describe("replay and save commands on flows in the view", { skip: needs("curl", "curl") }, () => {
  test("flow.replay @all re-sends a live capture through the proxy; save.file writes chosen flows", async () => {
    const origin = await startOrigin();
    const sluice = await startSluice({ addons: [new ClientReplay(), new Save()] });
    const dir = mkdtempSync(join(tmpdir(), "sluice-cmd-"));
    try {
      const c = await run("curl", ["-sS", "-x", sluice.url, "-H", "X-Test: original", "--data", "a=1", `${origin.url}/form?x=1`]);
      assert.equal(c.code, 0, c.stderr);
      await sluice.waitForFlows(1);
      assert.equal(await sluice.master.commands.execute("flow.replay @all"), "replaying 1 flow");
      const flows = await sluice.waitForFlows(2);
      const replay = flows[1]!;
      assert.equal(replay.isReplay, "request");
      assert.equal(replay.response?.statusCode, 200);
      assert.equal(origin.requests.length, 2);
      const [first, second] = origin.requests;
      assert.equal(second!.url, "/form?x=1");
      assert.equal(second!.method, "POST");
      assert.equal(second!.headers["x-test"], "original");
      assert.equal(second!.body.toString(), first!.body.toString());
      // mitmproxy's name for the same command
      assert.equal(await sluice.master.commands.execute(`replay.client ${replay.id}`), "replaying 1 flow");
      await sluice.waitForFlows(3);

      const file = join(dir, "chosen.har");
      assert.equal(await sluice.master.commands.execute(`save.file '~m POST & ~u /form' ${file}`), `saved 3 flows to ${file}`);
      const saved: HTTPFlow[] = [];
      for await (const f of readFlowFile(file)) saved.push(f);
      assert.deepEqual(saved.map((f) => f.request.path), ["/form?x=1", "/form?x=1", "/form?x=1"]);
      await assert.rejects(sluice.master.commands.execute(`save.file @all ${join(dir, "no-such-dir", "x.mitm")}`), /save\.file: cannot write .*x\.mitm/);
    } finally {
      await Promise.all([sluice.close(), origin.close()]);
    }
  });
});

describe("server replay matching knobs", () => {
  const dir = mkdtempSync(join(tmpdir(), "sluice-replay-knobs-"));
  const capture = join(dir, "knobs.mitm");
  let deadPort: number;

  before(async () => {
    deadPort = await closedPort();
    const w = await FlowWriter.open(capture);
    const recorded = (method: string, path: string, body: string, answer: string, host = "127.0.0.1") => {
      const type = body ? ["Content-Type", "application/x-www-form-urlencoded"] : [];
      const headers = new Headers(["Host", `${host}:${deadPort}`, ...type, "Content-Length", String(body.length)]);
      const req = new Request({ method, scheme: "http", host, port: deadPort, path, authority: "", headers, content: Buffer.from(body), timestampStart: 1_700_000_000 });
      const f = new HTTPFlow(newClientConnection(), newServerConnection(), req);
      f.response = Response.make(200, answer, { "content-type": "text/plain" });
      w.write(f);
    };
    recorded("GET", "/q?a=1&ts=111", "", "by query");
    recorded("POST", "/", "Action=ListQueues&Version=2012-11-05&Timestamp=2023-01-01T00%3A00%3A00Z", "by form");
    recorded("GET", "/elsewhere", "", "by path", "localhost");
    await w.close();
  });

  async function fetchThrough(sluice: TestSluice, path: string, init: { method?: string; body?: string } = {}): Promise<{ status: number; text: string }> {
    const { fetch, ProxyAgent } = await import("undici");
    const agent = new ProxyAgent(sluice.url);
    try {
      const r = await fetch(`http://127.0.0.1:${deadPort}${path}`, {
        method: init.method ?? "GET",
        body: init.body,
        headers: init.body ? { "content-type": "application/x-www-form-urlencoded" } : {},
        dispatcher: agent,
      });
      return { status: r.status, text: await r.text() };
    } finally {
      await agent.close();
    }
  }

  test("without knobs, a changed query parameter, form parameter or host does not match", async () => {
    const sluice = await startSluice({ set: { server_replay: JSON.stringify([capture]), server_replay_extra: "404", server_replay_reuse: "true" }, addons: [new ServerReplay()] });
    try {
      assert.equal((await fetchThrough(sluice, "/q?a=1&ts=111")).text, "by query");
      assert.equal((await fetchThrough(sluice, "/q?a=1&ts=999")).status, 404);
      const form = "Action=ListQueues&Version=2012-11-05&Timestamp=2024-06-01T12%3A00%3A00Z";
      assert.equal((await fetchThrough(sluice, "/", { method: "POST", body: form })).status, 404);
      assert.equal((await fetchThrough(sluice, "/elsewhere")).status, 404, "recorded for host localhost");
    } finally {
      await sluice.close();
    }
  });

  test("ignore_params, ignore_payload_params and ignore_host widen the match", async () => {
    const sluice = await startSluice({
      set: {
        server_replay: JSON.stringify([capture]), server_replay_extra: "404", server_replay_reuse: "true",
        server_replay_ignore_params: JSON.stringify(["ts"]), server_replay_ignore_payload_params: JSON.stringify(["Timestamp"]), server_replay_ignore_host: "true",
      },
      addons: [new ServerReplay()],
    });
    try {
      assert.deepEqual(await fetchThrough(sluice, "/q?a=1&ts=999"), { status: 200, text: "by query" });
      assert.equal((await fetchThrough(sluice, "/q?a=2&ts=111")).status, 404, "other parameters still count");
      const form = "Action=ListQueues&Version=2012-11-05&Timestamp=2024-06-01T12%3A00%3A00Z";
      assert.deepEqual(await fetchThrough(sluice, "/", { method: "POST", body: form }), { status: 200, text: "by form" });
      assert.equal((await fetchThrough(sluice, "/", { method: "POST", body: "Action=DeleteQueue&Version=2012-11-05" })).status, 404);
      assert.deepEqual(await fetchThrough(sluice, "/elsewhere"), { status: 200, text: "by path" });
    } finally {
      await sluice.close();
    }
  });
});
