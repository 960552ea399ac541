/**
 * A capture of traffic map-remote rewrote is read back by what the client asked for (issue 14):
 * boto3 talks virtual-hosted S3 (the bucket is in the host name) through `sluice dump -w` with
 * map_remote to a local origin; the SQLite capture, and the flow file and HAR converted from it,
 * give `~op`, `~bucket` and `sluice report` the same answers as live, and `~d` on the original
 * host says once which host those flows have now.
 */
import { test, describe, before, after } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Response } from "../src/core/flow.js";
import type { TrackerSnapshot } from "../src/aws/invocations.js";
import { run, awsEnv, pythonWithBoto3 } from "./support/run.js";
import { SLUICE_BIN, spawnSluice } from "./support/cli.js";
import { testConfdir } from "./support/sluice.js";
import { startScriptedOrigin, type FakeAwsOrigin } from "./support/fake-aws.js";
import { needsPython } from "./support/needs.js";

const sluice = (args: string[]) => run(process.execPath, [SLUICE_BIN, ...args], { timeoutMs: 60_000 });

const LIST = '<?xml version="1.0" encoding="UTF-8"?>\n<ListBucketResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><Name>logs</Name><Prefix></Prefix><KeyCount>0</KeyCount><MaxKeys>1000</MaxKeys><IsTruncated>false</IsTruncated></ListBucketResult>';

describe("virtual-hosted S3 through map_remote, read back from the capture", { skip: needsPython("boto3", "python3-boto3") }, () => {
  const dir = mkdtempSync(join(tmpdir(), "sluice-mapped-"));
  const sqlite = join(dir, "cap.sqlite");
  let origin: FakeAwsOrigin;

  before(async () => {
    origin = await startScriptedOrigin((req) => req.method === "GET"
      ? Response.make(200, LIST, { "content-type": "application/xml", "x-amz-request-id": "R1" })
      : Response.make(200, "", { etag: '"9dd4e461268c8034f5c8564e155c67a6"', "x-amz-request-id": "R2" }));
    const mapping = JSON.stringify([`|https://([a-z0-9-]+)\\.s3\\.eu-west-1\\.amazonaws\\.com|${origin.url}`]);
    const proxy = await spawnSluice(["dump", "-p", "0", "--confdir", testConfdir(), "-w", sqlite, "--set", `map_remote=${mapping}`]);
    try {
      const script = `
import boto3, botocore.config
s3 = boto3.client("s3", region_name="eu-west-1", config=botocore.config.Config(s3={"addressing_style": "virtual"}))
s3.list_objects_v2(Bucket="logs")
s3.put_object(Bucket="logs", Key="2026/a.gz", Body=b"x")
`;
      const r = await run(await pythonWithBoto3(), ["-c", script], { env: awsEnv({ HTTPS_PROXY: `http://127.0.0.1:${proxy.port}`, AWS_CA_BUNDLE: join(testConfdir(), "sluice-ca-cert.pem") }) });
      assert.equal(r.code, 0, r.stderr);
    } finally {
      await proxy.stop();
    }
    assert.deepEqual(origin.requests.map((r) => `${r.method} ${r.path} ${r.headers.host}`), [
      `GET /?list-type=2&encoding-type=url ${new URL(origin.url).host}`,
      `PUT /2026/a.gz ${new URL(origin.url).host}`,
    ], "the origin saw the rewritten requests: no bucket left in host or path");
    for (const out of ["cap.mitm", "cap.har"]) {
      const c = await sluice(["convert", sqlite, join(dir, out)]);
      assert.equal(c.code, 0, c.stderr);
    }
  });
  after(async () => {
    await origin?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  for (const file of ["cap.sqlite", "cap.mitm", "cap.har"]) {
    test(`${file}: the report names ListObjectsV2 and PutObject on bucket logs; ~op and ~bucket find them`, async () => {
      const path = join(dir, file);
      const report = await sluice(["report", path, "--json"]);
      assert.equal(report.code, 0, report.stderr);
      const ops = (JSON.parse(report.stdout) as TrackerSnapshot).operations.map((o) => `${o.service} ${o.operation}`).sort();
      assert.deepEqual(ops, ["s3 ListObjectsV2", "s3 PutObject"]);
      const listed = await sluice(["dump", "-n", "-r", path, "~op ListObjectsV2"]);
      assert.equal(listed.code, 0, listed.stderr);
      assert.equal(listed.stdout.trim().split("\n").filter((l) => l.includes("list-type=2")).length, 1, listed.stdout);
      const put = await sluice(["dump", "-n", "-r", path, "~bucket ^logs$ & ~op PutObject"]);
      assert.match(put.stdout, /PUT .*\/2026\/a\.gz/);
    });
  }

  test("~d on the host the client asked for says once which host the flows have now", async () => {
    const r = await sluice(["report", join(dir, "cap.mitm"), "~d amazonaws"]);
    assert.equal(r.code, 0, r.stderr);
    const notes = r.stderr.split("\n").filter((l) => l.includes("~d tests the host a flow has now"));
    assert.equal(notes.length, 1, r.stderr);
    assert.match(notes[0]!, /sent the client's logs\.s3\.eu-west-1\.amazonaws\.com to 127\.0\.0\.1/);
  });
});
