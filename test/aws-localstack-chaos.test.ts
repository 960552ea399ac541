/**
 * LocalStack's Chaos API on sluice's admin port (issue 17), driven with the requests LocalStack's
 * documentation shows: the rules become fault rules, boto3 sees the outage in the regions and
 * services named and nowhere else, PATCH adds Kinesis PutRecord's ProvisionedThroughputExceeded,
 * DELETE removes a rule by its exact content, [] clears them, effects set latency.
 */
import { test, describe } from "node:test";
import assert from "node:assert/strict";
import { fetch } from "undici";
import { Response } from "../src/core/flow.js";
import { Faults } from "../src/addons/faults.js";
import { AdminApi } from "../src/addons/admin-api.js";
import { startSluice } from "./support/sluice.js";
import { startScriptedOrigin } from "./support/fake-aws.js";
import { run, awsEnv, pythonWithBoto3 } from "./support/run.js";
import { needsPython } from "./support/needs.js";

describe("LocalStack's chaos API", { skip: needsPython("boto3", "python3-boto3") }, () => {
  test("faults and effects as LocalStack documents them, seen by boto3", async () => {
    const origin = await startScriptedOrigin((req) => {
      if ((req.headers.get("x-amz-target") ?? "").endsWith(".PutRecord")) return Response.make(200, '{"SequenceNumber":"1","ShardId":"shardId-000000000000"}', { "content-type": "application/x-amz-json-1.1" });
      return Response.make(200, '<?xml version="1.0" encoding="UTF-8"?>\n<CreateBucketConfiguration/>', { "content-type": "application/xml", location: "/b" });
    });
    const admin = new AdminApi();
    const sluice = await startSluice({ set: { admin_port: "0", map_remote: JSON.stringify([`|https://[a-z0-9.-]+\\.amazonaws\\.com|${origin.url}`]) }, addons: [new Faults(), admin] });
    const chaos = (method: string, what: string, body?: unknown, auth = true) =>
      fetch(`http://127.0.0.1:${admin.address!.port}/_localstack/chaos/${what}`, {
        method,
        headers: { "content-type": "application/json", ...(auth ? { authorization: `Bearer ${admin.token}` } : {}) },
        ...(body === undefined ? {} : { body: JSON.stringify(body) }),
      });
    const boto3 = async () => {
      const script = `
import boto3, botocore.config, botocore.exceptions, json
cfg = botocore.config.Config(retries={"total_max_attempts": 1, "mode": "standard"}, s3={"addressing_style": "path"})
def code(call):
    try:
        call()
        return "ok"
    except botocore.exceptions.ClientError as e:
        return "%s %d" % (e.response["Error"]["Code"], e.response["ResponseMetadata"]["HTTPStatusCode"])
s3 = lambda region: boto3.client("s3", region_name=region, config=cfg)
print(json.dumps({
  "s3 us-east-1": code(lambda: s3("us-east-1").create_bucket(Bucket="test-bucket")),
  "s3 eu-central-1": code(lambda: s3("eu-central-1").create_bucket(Bucket="test-bucket", CreateBucketConfiguration={"LocationConstraint": "eu-central-1"})),
  "kinesis": code(lambda: boto3.client("kinesis", region_name="us-east-1", config=cfg).put_record(StreamName="s", Data=b"x", PartitionKey="k")),
}))
`;
      const r = await run(await pythonWithBoto3(), ["-c", script], { env: awsEnv({ HTTPS_PROXY: sluice.url, AWS_CA_BUNDLE: sluice.caCert }) });
      assert.equal(r.code, 0, r.stderr);
      return JSON.parse(r.stdout) as Record<string, string>;
    };
    try {
      assert.equal((await chaos("GET", "faults", undefined, false)).status, 401, "the admin token is required as for the rest of the admin API");

      const rules = [{ service: "s3", region: "us-east-1" }, { service: "s3", region: "ap-south-1" }, { service: "lambda" }];
      const posted = await chaos("POST", "faults", rules);
      assert.equal(posted.status, 200);
      assert.deepEqual(await posted.json(), rules);
      assert.deepEqual(await boto3(), { "s3 us-east-1": "ServiceUnavailable 503", "s3 eu-central-1": "ok", kinesis: "ok" });

      const patch = [{ service: "kinesis", operation: "PutRecord", probability: 1, error: { statusCode: 400, code: "ProvisionedThroughputExceededException" } }];
      const patched = await chaos("PATCH", "faults", patch);
      assert.deepEqual(await patched.json(), [...rules, ...patch]);
      assert.equal((await boto3()).kinesis, "ProvisionedThroughputExceededException 400");

      const deleted = await chaos("DELETE", "faults", [{ service: "lambda" }]);
      assert.deepEqual(await deleted.json(), [rules[0], rules[1], patch[0]]);
      const ids = (sluice.master.addons.get("faults") as Faults).list().map((r) => r.id);
      assert.deepEqual(ids, ["localstack-chaos-1", "localstack-chaos-2", "localstack-chaos-4"]);

      const bad = await chaos("PATCH", "faults", [{ service: "s3", probability: 2 }]);
      assert.equal(bad.status, 400);
      assert.match(((await bad.json()) as { error: string }).error, /probability 2 is not valid/);

      assert.deepEqual(await (await chaos("POST", "faults", [])).json(), []);
      assert.deepEqual(await boto3(), { "s3 us-east-1": "ok", "s3 eu-central-1": "ok", kinesis: "ok" });

      assert.deepEqual(await (await chaos("POST", "effects", { latency: 200 })).json(), { latency: 200 });
      assert.deepEqual(await (await chaos("GET", "effects")).json(), { latency: 200 });
      const before = sluice.flows.length;
      await boto3();
      const delayed = sluice.flows.slice(before).filter((f) => (f.metadata.fault as { rule?: string } | undefined)?.rule === "localstack-chaos-latency");
      assert.equal(delayed.length, 3, "every call was delayed");
      assert.deepEqual(await (await chaos("POST", "effects", { latency: 0 })).json(), { latency: 0 });
      assert.deepEqual((sluice.master.addons.get("faults") as Faults).list(), []);
    } finally {
      await Promise.all([sluice.close(), origin.close()]);
    }
  });
});
