/**
 * The programmable core with real clients: TypeScript and JavaScript scripts (reload, failures,
 * slow hooks), interception with edits through commands, flow.set on live flows, the config file.
 */
import { test, describe, before, after } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { startOrigin, type Origin } from "./support/origins.js";
import { startSluice, type TestSluice } from "./support/sluice.js";
import { startFakeS3 } from "./support/fake-aws.js";
import { run, awsEnv, pythonWithBoto3 } from "./support/run.js";
import { Scripts } from "../src/addons/scripts.js";
import { Intercept } from "../src/addons/intercept.js";
import { Master } from "../src/proxy/master.js";
import { LineLogger } from "../src/core/log.js";
import type { HTTPFlow } from "../src/core/flow.js";
import { needs, needsPython } from "./support/needs.js";

const REPO = join(dirname(fileURLToPath(import.meta.url)), "..", "..");
const CURL = ["-sS", "--max-time", "20", "--noproxy", ""];

function scriptFile(source: string, ext = "ts"): string {
  const file = join(mkdtempSync(join(tmpdir(), "sluice-script-")), `script.${ext}`);
  writeFileSync(file, source);
  return file;
}

async function until(cond: () => boolean, what: string, timeoutMs = 10_000): Promise<void> {
  const start = Date.now();
  while (!cond()) {
    if (Date.now() - start > timeoutMs) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

describe("scripts", () => {
  let origin: Origin;
  before(async () => {
    origin = await startOrigin();
  });
  after(() => origin.close());

  test("examples/s3-throttle.ts turns S3 responses into 429 and boto3 sees them", { skip: needsPython("boto3", "python3-boto3") }, async () => {
    const fake = await startFakeS3();
    // sluice → another sluice (which maps S3 to the fake): the first one still sees the real S3 host.
    const mapper = await startSluice({ set: { map_remote: JSON.stringify([`|https://s3\\.eu-west-1\\.amazonaws\\.com|${fake.url}`]) } });
    const sluice = await startSluice({
      set: { mode: `upstream:http://127.0.0.1:${mapper.port}`, ssl_verify_upstream_trusted_ca: mapper.caCert, scripts: JSON.stringify([join(REPO, "examples", "s3-throttle.ts")]) },
      addons: [new Scripts()],
    });
    try {
      const python = await pythonWithBoto3();
      const script = `
import boto3, botocore.config, botocore.exceptions
s3 = boto3.client("s3", region_name="eu-west-1", config=botocore.config.Config(retries={"max_attempts": 2, "mode": "legacy"}))
try:
    s3.list_buckets()
    print("no error")
except botocore.exceptions.ClientError as e:
    print("status", e.response["ResponseMetadata"]["HTTPStatusCode"])
`;
      const r = await run(python, ["-c", script], { env: awsEnv({ HTTPS_PROXY: sluice.url, AWS_CA_BUNDLE: sluice.caCert }) });
      assert.equal(r.code, 0, r.stderr);
      assert.match(r.stdout, /^status 429$/m);
      const flows = await sluice.waitForFlows(1);
      assert.ok(flows.every((f) => f.response?.statusCode === 429 && f.request.host === "s3.eu-west-1.amazonaws.com"));
      assert.ok(fake.requests.length >= 1, "the origin really answered; the script changed the status afterwards");
    } finally {
      await Promise.all([sluice.close(), mapper.close(), fake.close()]);
    }
  });

  test("a JavaScript script works too (examples/add-header.js)", { skip: needs("curl", "curl") }, async () => {
    const sluice = await startSluice({ set: { scripts: JSON.stringify([join(REPO, "examples", "add-header.js")]) }, addons: [new Scripts()] });
    try {
      const r = await run("curl", [...CURL, "-x", sluice.url, `${origin.url}/js`]);
      assert.equal(JSON.parse(r.stdout).headers["x-sluice"], "seen");
    } finally {
      await sluice.close();
    }
  });

  test("a script is reloaded when its file changes", { skip: needs("curl", "curl") }, async () => {
    const file = scriptFile(`export default { request(flow) { flow.request.headers.set("x-version", "1"); } };`);
    const sluice = await startSluice({ set: { scripts: JSON.stringify([file]) }, addons: [new Scripts()] });
    try {
      const first = await run("curl", [...CURL, "-x", sluice.url, `${origin.url}/v`]);
      assert.equal(JSON.parse(first.stdout).headers["x-version"], "1");
      writeFileSync(file, `import type { HTTPFlow } from "sluice";\nexport default { request(flow: HTTPFlow) { flow.request.headers.set("x-version", "2"); } };`);
      await until(() => sluice.logs.some((l) => l.includes(`reloaded script ${file}`)), "the reload");
      const second = await run("curl", [...CURL, "-x", sluice.url, `${origin.url}/v`]);
      assert.equal(JSON.parse(second.stdout).headers["x-version"], "2");
    } finally {
      await sluice.close();
    }
  });

  test("a script that throws is reported with its stack and the flow goes on unharmed", { skip: needs("curl", "curl") }, async () => {
    const file = scriptFile(`export default { request(flow) { throw new Error("boom in script"); }, response(flow) { flow.response.headers.set("x-after", "yes"); } };`);
    const sluice = await startSluice({ set: { scripts: JSON.stringify([file]) }, addons: [new Scripts()] });
    try {
      const r = await run("curl", [...CURL, "-x", sluice.url, "-D", "-", `${origin.url}/throws`]);
      assert.equal(r.code, 0, r.stderr);
      assert.match(r.stdout, /^HTTP\/1\.1 200/);
      assert.match(r.stdout, /^x-after: yes/im, "later hooks of the same script still run");
      const line = sluice.logs.find((l) => l.includes("boom in script"));
      assert.ok(line, "the error is logged");
      assert.match(line!, /failed in request: Error: boom in script\n\s+at /, "with its stack");
    } finally {
      await sluice.close();
    }
  });

  test("a script that fails to load is a clear error at start-up", async () => {
    const file = scriptFile(`export default {;`);
    await assert.rejects(startSluice({ set: { scripts: JSON.stringify([file]) }, addons: [new Scripts()] }), /failed to load/);
    await assert.rejects(startSluice({ set: { scripts: JSON.stringify(["/no/such/script.ts"]) }, addons: [new Scripts()] }), /does not exist/);
  });

  test("a slow hook delays only its own flow", { skip: needs("curl", "curl") }, async () => {
    const file = scriptFile(`export default { async request(flow) { if (flow.request.path === "/slow") await new Promise((r) => setTimeout(r, 1500)); } };`);
    const sluice = await startSluice({ set: { scripts: JSON.stringify([file]) }, addons: [new Scripts()] });
    try {
      const finished: string[] = [];
      const slow = run("curl", [...CURL, "-x", sluice.url, `${origin.url}/slow`]).then(() => finished.push("slow"));
      await until(() => sluice.master.view.all.some((f) => f.request.path === "/slow"), "the slow flow to start");
      const fast = run("curl", [...CURL, "-x", sluice.url, `${origin.url}/fast`]).then(() => finished.push("fast"));
      await Promise.all([slow, fast]);
      assert.deepEqual(finished, ["fast", "slow"]);
    } finally {
      await sluice.close();
    }
  });

  test("a script can register an option set with --set", { skip: needs("curl", "curl") }, async () => {
    const file = scriptFile(`
let ctx;
export default {
  load(c) { ctx = c; c.options.add({ name: "greeting", type: "string", default: "hi", help: "what to say" }); },
  request(flow) { flow.request.headers.set("x-greeting", ctx.options.get("greeting")); },
};`);
    const sluice = await startSluice({ set: { scripts: JSON.stringify([file]), greeting: "bonjour" }, addons: [new Scripts()] });
    try {
      const r = await run("curl", [...CURL, "-x", sluice.url, `${origin.url}/g`]);
      assert.equal(JSON.parse(r.stdout).headers["x-greeting"], "bonjour");
    } finally {
      await sluice.close();
    }
  });
});

describe("interception and commands", () => {
  let origin: Origin;
  let sluice: TestSluice;
  before(async () => {
    origin = await startOrigin();
    sluice = await startSluice({ set: { intercept: "~u /catch" }, addons: [new Intercept()] });
  });
  after(async () => {
    await Promise.all([sluice.close(), origin.close()]);
  });

  const waitPaused = async (path: string): Promise<HTTPFlow> => {
    let flow: HTTPFlow | undefined;
    await until(() => !!(flow = sluice.master.view.all.find((f) => f.intercepted && f.request.path.startsWith(path))), `${path} to be intercepted`);
    return flow!;
  };

  test("intercept → edit the path → resume: curl receives the edited request's answer", { skip: needs("curl", "curl") }, async () => {
    const pending = run("curl", [...CURL, "-x", sluice.url, `${origin.url}/catch/original`]);
    const flow = await waitPaused("/catch");
    assert.equal(flow.metadata.intercepted_at, "request");
    assert.equal(await sluice.master.commands.execute(`flow.set ${flow.id} path /edited/path`), "updated 1 flow");
    assert.equal(await sluice.master.commands.execute(`flow.resume ${flow.id}`), "resumed 1 flow");
    const r = await pending;
    assert.equal(r.code, 0, r.stderr);
    assert.equal(JSON.parse(r.stdout).url, "/edited/path");
  });

  test("flow.set @focus status_code 429 on a live flow changes what the waiting client gets", { skip: needs("curl", "curl") }, async () => {
    await sluice.master.commands.execute(`set intercept=~u /catch-response & ~s`);
    try {
      const pending = run("curl", [...CURL, "-x", sluice.url, "-w", "\n%{http_code}", `${origin.url}/catch-response`]);
      const flow = await waitPaused("/catch-response");
      assert.equal(flow.metadata.intercepted_at, "response");
      sluice.master.view.focusId = flow.id;
      await sluice.master.commands.execute("flow.set @focus status_code 429");
      await sluice.master.commands.execute(`flow.set @focus response.header.X-Edited "by command"`);
      await sluice.master.commands.execute("flow.resume @focus");
      const r = await pending;
      assert.match(r.stdout, /\n429$/);
      assert.equal(flow.response!.headers.get("x-edited"), "by command");
    } finally {
      await sluice.master.commands.execute("set intercept=~u /catch");
    }
  });

  test("flow.kill drops a paused flow's connection", { skip: needs("curl", "curl") }, async () => {
    const pending = run("curl", [...CURL, "-x", sluice.url, `${origin.url}/catch/kill-me`]);
    const flow = await waitPaused("/catch/kill-me");
    await sluice.master.commands.execute(`flow.kill ${flow.id}`);
    const r = await pending;
    assert.equal(r.code, 52, `curl: empty reply from server (${r.stderr})`);
  });

  test("a paused flow whose client gave up ends at once, with an error that says so", { skip: needs("curl", "curl") }, async () => {
    const r = await run("curl", [...CURL, "-x", sluice.url, "--max-time", "1", `${origin.url}/catch/abandoned`]);
    assert.equal(r.code, 28, r.stderr);
    const flow = sluice.master.view.all.find((f) => f.request.path === "/catch/abandoned")!;
    await until(() => !flow.intercepted, "the abandoned flow to be let go");
    assert.equal(flow.isKilled, true);
    assert.match(flow.error?.msg ?? "", /the client disconnected while the flow was intercepted \(at request\)/);
    assert.ok(!origin.requests.some((q) => q.url === "/catch/abandoned"), "never reached the origin");
  });

  test("a paused flow times out with a clear 504 instead of hanging", { skip: needs("curl", "curl") }, async () => {
    await sluice.master.commands.execute("set intercept_timeout=1");
    try {
      const r = await run("curl", [...CURL, "-x", sluice.url, "-w", "\n%{http_code}", `${origin.url}/catch/forgotten`]);
      assert.match(r.stdout, /not resumed within 1s \(intercept_timeout\)/);
      assert.match(r.stdout, /\n504$/);
    } finally {
      await sluice.master.commands.execute("set intercept_timeout=300");
    }
  });

  test("intercept_timeout=3 answers 504 after 3 s, not 6: sluice's own 504 is not intercepted again", { skip: needs("curl", "curl") }, async () => {
    await sluice.master.commands.execute("set intercept_timeout=3");
    try {
      const started = Date.now();
      const r = await run("curl", [...CURL, "-x", sluice.url, "-w", "\n%{http_code}", `${origin.url}/catch/once`]);
      const seconds = (Date.now() - started) / 1000;
      assert.match(r.stdout, /not resumed within 3s \(intercept_timeout\); sluice answered 504\n\n504$/);
      assert.ok(seconds >= 2.9 && seconds < 5.5, `answered after ${seconds.toFixed(1)} s`);
      const flow = sluice.master.view.all.find((f) => f.request.path === "/catch/once")!;
      assert.equal(flow.metadata.intercepted_at, "request", "paused once, at request time");
    } finally {
      await sluice.master.commands.execute("set intercept_timeout=300");
    }
  });

  test("command errors say what is wrong", async () => {
    await assert.rejects(sluice.master.commands.execute("flow.frobnicate @all"), /unknown command flow\.frobnicate/);
    await assert.rejects(sluice.master.commands.execute("flow.set @nope status_code 1"), /unknown selector @nope/);
    await assert.rejects(sluice.master.commands.execute("flow.set @all"), /missing ATTR; usage: flow\.set FLOWS ATTR VALUE/);
    await assert.rejects(sluice.master.commands.execute("flow.set '~c (' status_code 200"), /flow\.set: .*position/);
    await assert.rejects(sluice.master.commands.execute("set nonexistent=1"), /unknown option nonexistent/);
    await assert.rejects(sluice.master.commands.execute("set listen_port=abc"), /expects a whole number/);
  });

  test("a trailing text parameter keeps quotes when it spans words, and drops them around one word", async () => {
    const seen: string[] = [];
    sluice.master.commands.add({ name: "test.echo", help: "records its text", params: [{ name: "text", type: "rest" }], run: (t) => void seen.push(t as string) });
    try {
      await sluice.master.commands.execute(`test.echo ~h "x-team: a b" & ~m POST => throttle`);
      await sluice.master.commands.execute(`test.echo "hello world"`);
      await sluice.master.commands.execute(`test.echo plain`);
      assert.deepEqual(seen, [`~h "x-team: a b" & ~m POST => throttle`, "hello world", "plain"]);
    } finally {
      sluice.master.commands.remove("test.echo");
    }
  });

  test("selectors: @all, @marked, @unmarked and filter expressions", { skip: needs("curl", "curl") }, async () => {
    await run("curl", [...CURL, "-x", sluice.url, `${origin.url}/sel/a`]);
    await run("curl", [...CURL, "-x", sluice.url, `${origin.url}/sel/b`]);
    await sluice.master.commands.execute("flow.mark '~u /sel/a'");
    const marked = sluice.master.view.resolve("@marked").map((f) => f.request.path);
    assert.deepEqual(marked, ["/sel/a"]);
    assert.ok(sluice.master.view.resolve("@unmarked").some((f) => f.request.path === "/sel/b"));
    assert.ok(sluice.master.view.resolve("@all").length >= 2);
  });
});

describe("options", () => {
  test("the confdir's config.yaml sets defaults and --set wins over it", async () => {
    const confdir = mkdtempSync(join(tmpdir(), "sluice-config-"));
    writeFileSync(join(confdir, "config.yaml"), "stream_large_bodies: 5m\nconnect_timeout: 3\nignore_hosts:\n  - '^a\\.example$'\n  - 'b{1,2}\\.example'\n");
    const master = new Master({ set: { confdir, connect_timeout: "7" }, log: new LineLogger("error", () => {}) });
    await master.configure();
    assert.equal(master.options.get("stream_large_bodies"), 5 * 1024 * 1024);
    assert.equal(master.options.get("connect_timeout"), 7);
    assert.deepEqual(master.options.get("ignore_hosts"), ["^a\\.example$", "b{1,2}\\.example"]);
  });

  test("a broken config file is one clear error", async () => {
    const confdir = mkdtempSync(join(tmpdir(), "sluice-config-"));
    writeFileSync(join(confdir, "config.yaml"), "listen_port: [unclosed\n");
    const master = new Master({ set: { confdir }, log: new LineLogger("error", () => {}) });
    await assert.rejects(master.configure(), /config file .*config\.yaml is not valid YAML/);
  });
});
