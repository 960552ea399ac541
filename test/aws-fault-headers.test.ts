/**
 * fault_headers (issue 17): with `--set fault_headers=true` a request carrying
 * `x-sluice-fault: ACTION` gets that fault and the header never reaches the server; off (the
 * default) the header is forwarded unchanged and nothing is injected, with one warning.
 */
import { test, describe } from "node:test";
import assert from "node:assert/strict";
import { fetch, ProxyAgent } from "undici";
import { Faults } from "../src/addons/faults.js";
import { startSluice } from "./support/sluice.js";
import { startOrigin, echo } from "./support/origins.js";
import { startFakeDynamoDB } from "./support/fake-aws.js";
import { run, awsEnv, pythonWithBoto3 } from "./support/run.js";
import { needsPython } from "./support/needs.js";

describe("x-sluice-fault", () => {
  test("on: error, status (response side), delay and a bad action; the header is stripped; rate= counts across requests", async () => {
    const origin = await startOrigin({ handler: echo });
    const sluice = await startSluice({ set: { fault_headers: "true" }, addons: [new Faults()] });
    const agent = new ProxyAgent({ uri: sluice.url });
    const get = (fault: string) => fetch(`${origin.url}/x`, { dispatcher: agent, headers: { "x-sluice-fault": fault } });
    try {
      const e = await get("error 503");
      assert.equal(e.status, 503);
      await e.text();
      assert.equal(origin.requests.length, 0, "answered by sluice");

      const s = await get("status 418");
      assert.equal(s.status, 418);
      const seen = JSON.parse(await s.text()) as { headers: Record<string, string> };
      assert.equal(seen.headers["x-sluice-fault"], undefined, "the header never reaches the server");
      assert.equal(origin.requests.length, 1);

      const d = await get("delay 150ms");
      assert.equal(d.status, 200);
      await d.text();
      assert.equal(origin.requests[1]!.headers["x-sluice-fault"], undefined);
      const delayed = sluice.flows.find((f) => (f.metadata.fault as { action?: string } | undefined)?.action === "delay");
      assert.ok(delayed, "the delay was injected and recorded");

      const bad = await get("explode");
      assert.equal(bad.status, 400);
      assert.match(await bad.text(), /^sluice: the x-sluice-fault header "explode" is not a fault action: unknown action "explode"/);

      // The same header value is one rule: its budget counts across requests.
      const codes: number[] = [];
      for (let i = 0; i < 4; i++) {
        const r = await get("throttle rate=1/min burst=2");
        codes.push(r.status);
        await r.text();
      }
      assert.deepEqual(codes, [200, 200, 429, 429]);
    } finally {
      await agent.close();
      await Promise.all([sluice.close(), origin.close()]);
    }
  });

  test("off (the default): the header is forwarded unchanged, no fault, one warning", async () => {
    const origin = await startOrigin({ handler: echo });
    const sluice = await startSluice({ addons: [new Faults()] });
    const agent = new ProxyAgent({ uri: sluice.url });
    try {
      for (let i = 0; i < 2; i++) {
        const r = await fetch(`${origin.url}/x`, { dispatcher: agent, headers: { "x-sluice-fault": "error 500" } });
        assert.equal(r.status, 200);
        const seen = JSON.parse(await r.text()) as { headers: Record<string, string> };
        assert.equal(seen.headers["x-sluice-fault"], "error 500");
      }
      assert.equal(sluice.logs.filter((l) => l.includes("fault_headers is off")).length, 1, sluice.logs.join("\n"));
    } finally {
      await agent.close();
      await Promise.all([sluice.close(), origin.close()]);
    }
  });

  test("boto3 adding the header with its event system gets DynamoDB's ThrottlingException for that call only", { skip: needsPython("boto3", "python3-boto3") }, async () => {
    const dynamo = await startFakeDynamoDB({ tables: [{ name: "t", hashKey: "pk" }], region: "eu-west-1" });
    const sluice = await startSluice({ set: { fault_headers: "true", map_remote: JSON.stringify([`|https://dynamodb\\.eu-west-1\\.amazonaws\\.com|${dynamo.url}`]) }, addons: [new Faults()] });
    try {
      const script = `
import boto3, botocore.config, botocore.exceptions, json
ddb = boto3.client("dynamodb", region_name="eu-west-1", config=botocore.config.Config(retries={"total_max_attempts": 1, "mode": "standard"}))
def ask(request, **kwargs):
    request.headers["x-sluice-fault"] = "throttle"
ddb.meta.events.register("before-sign.dynamodb.GetItem", ask)
out = {}
try:
    ddb.get_item(TableName="t", Key={"pk": {"S": "a"}})
    out["get"] = "ok"
except botocore.exceptions.ClientError as e:
    out["get"] = e.response["Error"]["Code"]
ddb.put_item(TableName="t", Item={"pk": {"S": "a"}})
out["put"] = "ok"
print(json.dumps(out))
`;
      const r = await run(await pythonWithBoto3(), ["-c", script], { env: awsEnv({ HTTPS_PROXY: sluice.url, AWS_CA_BUNDLE: sluice.caCert }) });
      assert.equal(r.code, 0, r.stderr);
      assert.deepEqual(JSON.parse(r.stdout), { get: "ThrottlingException", put: "ok" });
      assert.equal(dynamo.requests.length, 1, "only the PutItem reached DynamoDB");
      assert.equal(dynamo.requests[0]!.headers["x-sluice-fault"], undefined);
    } finally {
      await Promise.all([sluice.close(), dynamo.close()]);
    }
  });
});
