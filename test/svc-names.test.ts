/**
 * `~svc` takes the names users know services by (issue 14): `cloudwatch` matches what the SDKs
 * sign as `monitoring`, checked against the service models of the installed botocore, and a name
 * no service has is a one-line error listing the close ones.
 */
import { test, describe } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { HTTPFlow, Request, newClientConnection, newServerConnection } from "../src/core/flow.js";
import { Headers } from "../src/core/headers.js";
import { compileFilter } from "../src/core/filter.js";
import "../src/aws/index.js";
import { signingNameOf } from "../src/aws/services.js";
import { FlowWriter } from "../src/store/index.js";
import { run, pythonWithBoto3 } from "./support/run.js";
import { SLUICE_BIN, assertOneLineError } from "./support/cli.js";
import { needsPython } from "./support/needs.js";

function signedFor(service: string, host: string): HTTPFlow {
  const req = new Request({
    method: "POST", scheme: "https", host, port: 443, path: "/",
    headers: new Headers({ host, authorization: `AWS4-HMAC-SHA256 Credential=AKID/20261203/eu-west-1/${service}/aws4_request, SignedHeaders=host, Signature=0`, "content-type": "application/x-www-form-urlencoded" }),
    content: Buffer.from("Action=ListMetrics&Version=2010-08-01"),
  });
  return new HTTPFlow(newClientConnection(), newServerConnection(), req);
}

describe("~svc by the names users know", () => {
  const cloudwatch = signedFor("monitoring", "monitoring.eu-west-1.amazonaws.com");
  const dynamodb = signedFor("dynamodb", "dynamodb.eu-west-1.amazonaws.com");

  test("cloudwatch, CloudWatch and monitoring all match a call signed for monitoring, and nothing else", () => {
    for (const name of ["cloudwatch", "CloudWatch", "monitoring"]) {
      const f = compileFilter(`~svc ${name}`);
      assert.equal(f(cloudwatch), true, name);
      assert.equal(f(dynamodb), false, name);
    }
    assert.equal(compileFilter("~svc dynamo")(dynamodb), true, "a part of a name still searches, as a regex does");
    assert.equal(compileFilter("~svc '^cloud'")(cloudwatch), true, "a regex searches the other names too");
  });

  test("a name no service has is an error listing the close ones", () => {
    assert.throws(() => compileFilter("~svc cloudwatchh"), /~svc cloudwatchh: no AWS service is called that; did you mean cloudwatch\b.*at position 5/);
    assert.throws(() => compileFilter("~svc dynamodbx"), /did you mean dynamodb\b/);
  });

  test("every service in the installed botocore resolves from its boto3 client name to the signing name its model declares", { skip: needsPython("boto3", "python3-boto3") }, async () => {
    // The metadata sits at the start of each model: read just that much of every installed model.
    const script = `
import botocore, gzip, json, os, re
data = os.path.join(os.path.dirname(botocore.__file__), "data")
out = {}
for name in os.listdir(data):
    d = os.path.join(data, name)
    versions = sorted(v for v in os.listdir(d) if os.path.isdir(os.path.join(d, v))) if os.path.isdir(d) else []
    if not versions: continue
    p = os.path.join(d, versions[-1], "service-2.json")
    head = (gzip.open(p + ".gz") if os.path.exists(p + ".gz") else open(p, "rb")).read(8192).decode("utf8", "replace")
    meta = head[head.index('"metadata"'):]
    sign = re.search(r'"signingName"\\s*:\\s*"([^"]+)"', meta) or re.search(r'"endpointPrefix"\\s*:\\s*"([^"]+)"', meta)
    out[name] = sign.group(1)
print(json.dumps(out))
`;
    const r = await run(await pythonWithBoto3(), ["-c", script]);
    assert.equal(r.code, 0, r.stderr);
    const models = JSON.parse(r.stdout) as Record<string, string>;
    assert.ok(Object.keys(models).length > 300);
    const signingNames = new Set(Object.values(models));
    // A client name that is itself another service's signing name (sso) means that service.
    const wrong = Object.entries(models).filter(([client, signing]) => signingNameOf(client) !== (signingNames.has(client) ? client : signing));
    assert.deepEqual(wrong, []);
    assert.equal(models.cloudwatch, "monitoring");
  });

  test("sluice dump -r FILE '~svc cloudwatchh' fails in one line naming the close match", async () => {
    const dir = mkdtempSync(join(tmpdir(), "sluice-svc-"));
    try {
      const file = join(dir, "one.mitm");
      const w = await FlowWriter.open(file);
      w.write(signedFor("monitoring", "monitoring.eu-west-1.amazonaws.com"));
      await w.close();
      const bad = await run(process.execPath, [SLUICE_BIN, "dump", "-n", "-r", file, "~svc cloudwatchh"]);
      assertOneLineError(bad, /no AWS service is called that; did you mean cloudwatch/, "unknown service");
      const good = await run(process.execPath, [SLUICE_BIN, "dump", "-n", "-r", file, "~svc cloudwatch"]);
      assert.equal(good.code, 0, good.stderr);
      assert.match(good.stdout, /POST https:\/\/monitoring\.eu-west-1\.amazonaws\.com\//);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
