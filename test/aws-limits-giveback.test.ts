/**
 * `--shape aws-limits` gives back what a refused request took. A request under several limits
 * waits for each bucket in turn; when a later one refuses it (max-wait, max-queue) or its client
 * leaves, the tokens the earlier buckets gave it go back — in one process and, through Redis, in a
 * fleet — so requests that never went out do not hold back those that follow.
 *
 * The scenario is boto3's EC2 StartInstances, under EC2's "mutating actions" bucket and its
 * resource-rate bucket (instances): scaled by 0.1, 5 mutating requests (4 kept in hand by the
 * queue) refilled 0.5/s, and 100 instances refilled 0.2/s. One start of 100 instances drains the
 * resource bucket, three more starts are refused by it, then three DeleteKeyPairs need only the
 * mutating bucket: with its tokens back they go at once; without, they would wait 2 s each,
 * beyond max-wait=1s.
 */
import { test, describe } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Response } from "../src/core/flow.js";
import { Shaping } from "../src/addons/shaping.js";
import { awsLimits } from "../src/aws/limits.js";
import { RateQueue } from "../src/core/rate-queue.js";
import type { Grant } from "../src/core/shared-state.js";
import { startScriptedOrigin } from "./support/fake-aws.js";
import { startRedis, redisMissing } from "./support/redis.js";
import { spawnSluice, type RunningSluice } from "./support/cli.js";
import { startSluice } from "./support/sluice.js";
import { run, awsEnv, pythonWithBoto3 } from "./support/run.js";
import { needsPython } from "./support/needs.js";

const RULE = "aws-limits scale=0.1 max-wait=1s";

/** boto3 EC2 calls, one attempt each, in order: `start:N` starts N instances, `delete` deletes a key pair. Prints each outcome ("refused": sluice's plain-text refusal). */
const CALLS = `
import boto3, botocore.config, botocore.exceptions, json, sys
ec2 = boto3.client("ec2", region_name="eu-west-1", endpoint_url=sys.argv[1] or None, config=botocore.config.Config(retries={"total_max_attempts": 1, "mode": "standard"}))
out = []
for call in sys.argv[2:]:
    try:
        if call.startswith("start:"):
            ec2.start_instances(InstanceIds=["i-%017x" % n for n in range(int(call[6:]))])
        else:
            ec2.delete_key_pair(KeyName="k")
        out.append("ok")
    except botocore.exceptions.ClientError as e:
        out.append(e.response["Error"]["Code"])
    except Exception as e:
        # sluice's own refusal is plain text, which EC2's XML parser cannot read
        out.append("refused" if "sluice shaping rejected" in str(e) else repr(e))
print(json.dumps(out))
`;

function ec2Origin() {
  return startScriptedOrigin((request) => {
    const action = new URLSearchParams(request.text).get("Action") ?? "Unknown";
    return Response.make(200, `<${action}Response xmlns="http://ec2.amazonaws.com/doc/2016-11-15/"><requestId>r1</requestId><return>true</return></${action}Response>`, { "content-type": "text/xml;charset=UTF-8" });
  });
}

async function calls(endpoint: string, list: string[], env: NodeJS.ProcessEnv = awsEnv()): Promise<string[]> {
  const r = await run(await pythonWithBoto3(), ["-c", CALLS, endpoint, ...list], { env, timeoutMs: 60_000 });
  assert.equal(r.code, 0, r.stderr);
  return JSON.parse(r.stdout) as string[];
}

const STEPS = { drain: ["start:100"], refused: ["start:10", "start:10", "start:10"], after: ["delete", "delete", "delete"] };

describe("--shape aws-limits gives back the tokens of a request a later limit refused", () => {
  test("in one process: three StartInstances refused by the resource-rate bucket leave the mutating bucket as it was, so three DeleteKeyPairs go at once", { skip: needsPython("boto3", "python3-boto3") }, async () => {
    const origin = await ec2Origin();
    const sluice = await startSluice({ set: { map_remote: JSON.stringify([`|https://ec2\\.eu-west-1\\.amazonaws\\.com|${origin.url}`]), shape_rules: JSON.stringify([RULE]) }, addons: [new Shaping()] });
    try {
      const out = await calls("", [...STEPS.drain, ...STEPS.refused, ...STEPS.after], awsEnv({ HTTPS_PROXY: sluice.url, AWS_CA_BUNDLE: sluice.caCert }));
      assert.equal(out[0], "ok");
      assert.ok(out.slice(1, 4).every((o) => o !== "ok"), `the starts beyond the resource bucket are refused: ${out.join(", ")}`);
      assert.deepEqual(out.slice(4), ["ok", "ok", "ok"], "the mutating bucket got back what the refused starts took");
      const refused = sluice.flows.filter((f) => (f.metadata.shaping as { rejected?: string } | undefined)?.rejected);
      assert.equal(refused.length, 3);
      for (const f of refused) assert.equal((f.metadata.shaping as { limit?: string }).limit, "StartInstances resource rate");
      assert.equal(origin.requests.length, 4, "the refused starts never reached the origin");
    } finally {
      await Promise.all([sluice.close(), origin.close()]);
    }
  });

  test("in a fleet sharing a redis-server: the refused starts' tokens go back to the fleet's bucket (atomically, not above its size), and DeleteKeyPairs through the other process go at once", { skip: redisMissing() ?? needsPython("boto3", "python3-boto3") }, async () => {
    const redis = await startRedis();
    const origin = await ec2Origin();
    const confdir = mkdtempSync(join(tmpdir(), "sluice-giveback-"));
    const procs: RunningSluice[] = [];
    try {
      for (let i = 0; i < 2; i++) procs.push(await spawnSluice(["dump", "-p", "0", "--confdir", confdir, "--mode", `reverse:${origin.url}`, "--set", `shared_state=${redis.url}`, "--set", "fleet=giveback", "--shape", RULE]));
      const [a, b] = procs.map((p) => `http://127.0.0.1:${p.port}`) as [string, string];
      assert.deepEqual(await calls(a, STEPS.drain), ["ok"]);
      const refused = await calls(a, STEPS.refused);
      assert.ok(refused.every((o) => o !== "ok"), `the starts beyond the resource bucket are refused: ${refused.join(", ")}`);
      // The mutating bucket in Redis, as its last script left it: 4 in hand, less the drain's 1.
      const mutating = awsLimits({ scale: 0.1 }).findIndex((l) => l.service === "ec2" && l.name === "mutating actions");
      const key = `sluice:{giveback}:bucket:shape/=> ${RULE}/aws-limit/${mutating}/AKIDEXAMPLE/eu-west-1`;
      const tokens = Number(redis.cli("HGET", key, "t"));
      assert.ok(tokens >= 2.99 && tokens <= 4, `the fleet's mutating bucket holds ${tokens} tokens: the refused starts gave theirs back, and never above its size`);
      assert.deepEqual(await calls(b, STEPS.after), ["ok", "ok", "ok"], "the other process finds the tokens back");
      assert.equal(origin.requests.length, 4, "the refused starts never reached the origin");
    } finally {
      await Promise.all(procs.map((p) => p.stop()));
      await Promise.all([origin.close(), redis.stop()]);
    }
  });

  test("a shaping queue gives back a reserved token whose waiter left, and reserved turns nobody was left to use", async () => {
    const returned: number[] = [];
    let answer!: (g: Grant) => void;
    const queue = new RateQueue({ rate: 10, burst: 1, maxQueue: 10, maxWaitMs: 5000 }, () => new Promise<Grant>((r) => (answer = r)));
    queue.returnTokens = (_key, _limits, n) => void returned.push(n);
    const first = queue.enqueue("k", "k");
    const second = queue.enqueue("k", "k");
    // The store reserves three turns, the first 1 s ahead: two waiters take two, the third goes back.
    answer({ granted: true, waitMs: 1000, turns: 3 });
    await new Promise((r) => setImmediate(r));
    assert.deepEqual(returned, [1], "the turn nobody was left to use");
    first.cancel();
    assert.deepEqual(returned, [1, 1], "the reserved token of the waiter that left");
    assert.deepEqual(await first.result, { admitted: false, reason: "cancelled", waitMs: (await first.result).waitMs, expectedWaitMs: 0, depth: 0 });
    queue.releaseAll();
    assert.equal((await second.result).admitted, true);
  });
});
