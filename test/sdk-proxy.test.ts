/**
 * Real AWS SDKs through sluice's regular mode: the SDK talks HTTPS to s3.eu-west-1.amazonaws.com
 * via CONNECT, trusts sluice's CA, and map-remote sends the requests to a fake S3 on 127.0.0.1.
 * Nothing leaves the machine: the real host is never contacted (upstream is opened lazily).
 */
import { test, describe, before, after } from "node:test";
import assert from "node:assert/strict";
import { S3Client, ListBucketsCommand, PutObjectCommand, GetObjectCommand, CreateBucketCommand } from "@aws-sdk/client-s3";
import { startFakeS3 } from "./support/fake-aws.js";
import { startSluice, type TestSluice } from "./support/sluice.js";
import { run, awsEnv, pythonWithBoto3 } from "./support/run.js";
import { tunnelAgent } from "./support/tunnel-agent.js";
import { needsPython } from "./support/needs.js";

const S3_HOST = "s3.eu-west-1.amazonaws.com";

describe("AWS SDKs through regular mode", () => {
  let fake: Awaited<ReturnType<typeof startFakeS3>>;
  let sluice: TestSluice;
  before(async () => {
    fake = await startFakeS3();
    sluice = await startSluice({ set: { map_remote: JSON.stringify([`|https://${S3_HOST.replace(/\./g, "\\.")}|${fake.url}`]) } });
  });
  after(async () => {
    await Promise.all([sluice.close(), fake.close()]);
  });

  test("boto3 list_buckets, put_object and get_object with AWS_CA_BUNDLE", { skip: needsPython("boto3", "python3-boto3") }, async () => {
    const before = sluice.flows.length;
    const script = `
import boto3, botocore.config
s3 = boto3.client("s3", region_name="eu-west-1", config=botocore.config.Config(s3={"addressing_style": "path"}))
s3.create_bucket(Bucket="boto-bucket", CreateBucketConfiguration={"LocationConstraint": "eu-west-1"})
print("buckets", [b["Name"] for b in s3.list_buckets()["Buckets"]])
s3.put_object(Bucket="boto-bucket", Key="dir/hello.txt", Body=b"hello from boto3" * 1000)
body = s3.get_object(Bucket="boto-bucket", Key="dir/hello.txt")["Body"].read()
print("got", len(body), body[:16].decode())
`;
    const python = await pythonWithBoto3();
    const r = await run(python, ["-c", script], { env: awsEnv({ HTTPS_PROXY: sluice.url, AWS_CA_BUNDLE: sluice.caCert }) });
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /buckets \[.*'boto-bucket'.*\]/);
    assert.match(r.stdout, /got 16000 hello from boto3/);
    const flows = (await sluice.waitForFlows(before + 4)).slice(before);
    assert.deepEqual(flows.map((f) => f.request.method), ["PUT", "GET", "PUT", "GET"]);
    for (const f of flows) {
      assert.equal(f.clientConn.sni, S3_HOST);
      assert.equal(f.request.headers.get("host"), `127.0.0.1:${fake.port}`);
      assert.ok(f.request.headers.get("authorization")?.startsWith("AWS4-HMAC-SHA256"));
    }
    assert.ok(fake.requests.length >= 4);
  });

  test("@aws-sdk/client-s3 through a CONNECT agent trusting sluice's CA", async () => {
    const before = sluice.flows.length;
    const client = new S3Client({
      region: "eu-west-1",
      forcePathStyle: true,
      credentials: { accessKeyId: "AKIDEXAMPLE", secretAccessKey: "secret" },
      requestHandler: { httpsAgent: tunnelAgent(sluice.port, await readText(sluice.caCert)) },
    });
    try {
      await client.send(new CreateBucketCommand({ Bucket: "js-bucket" }));
      await client.send(new PutObjectCommand({ Bucket: "js-bucket", Key: "a/b.json", Body: JSON.stringify({ hello: "js" }), ContentType: "application/json" }));
      const got = await client.send(new GetObjectCommand({ Bucket: "js-bucket", Key: "a/b.json" }));
      assert.deepEqual(JSON.parse(await got.Body!.transformToString()), { hello: "js" });
      const list = await client.send(new ListBucketsCommand({}));
      assert.ok(list.Buckets?.some((b) => b.Name === "js-bucket"));
    } finally {
      client.destroy();
    }
    const flows = (await sluice.waitForFlows(before + 4)).slice(before);
    assert.ok(flows.every((f) => f.request.headers.has("amz-sdk-invocation-id")));
  });
});

async function readText(path: string): Promise<string> {
  const { readFile } = await import("node:fs/promises");
  return readFile(path, "utf8");
}
