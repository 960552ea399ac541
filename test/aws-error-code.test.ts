/**
 * `error CODE` (issue 17): any error a service's model names, answered with the model's status in
 * the service's protocol. The table of modelled errors is checked against the installed botocore's
 * models (every entry there, none missing); an unknown name for the service named by the filter is
 * refused with close matches; boto3 and the JS SDK raise the named error.
 */
import { test, describe } from "node:test";
import assert from "node:assert/strict";
import { readFile } from "node:fs/promises";
import { DynamoDBClient, GetItemCommand } from "@aws-sdk/client-dynamodb";
import { Response } from "../src/core/flow.js";
import { Faults } from "../src/addons/faults.js";
import { parseFaultRule, FaultRuleError } from "../src/addons/fault-rules.js";
import { MODELLED_ERRORS } from "../src/aws/modelled-errors.js";
import { startSluice } from "./support/sluice.js";
import { startScriptedOrigin } from "./support/fake-aws.js";
import { tunnelAgent } from "./support/tunnel-agent.js";
import { run, awsEnv, pythonWithBoto3 } from "./support/run.js";
import { needsPython } from "./support/needs.js";

const compile = (expression: string) => Object.assign(() => true, { expression });

describe("error CODE", () => {
  test("the modelled-error table is what the installed botocore's models say, for every service in it", { skip: needsPython("boto3", "python3-boto3") }, async () => {
    const script = `
import botocore.session, json, sys
table = json.loads(sys.argv[1])
s = botocore.session.get_session()
# Several models can share a signing name (rds, neptune, docdb): the table's are these.
botocore_name = {"monitoring": "cloudwatch", "states": "stepfunctions"}
problems = []
for signing, errors in table.items():
    m = s.get_service_model(botocore_name.get(signing, signing))
    assert (m.signing_name or m.endpoint_prefix) == signing, signing
    model = {}
    for shape_name in m.shape_names:
        shape = m.shape_for(shape_name)
        if shape.metadata.get("exception"):
            status = shape.metadata.get("error", {}).get("httpStatusCode") or (500 if shape.metadata.get("fault") else 400)
            model[shape_name] = [status, shape.error_code or shape_name]
    for name, entry in errors.items():
        if name not in model:
            problems.append("%s %s is not in the model" % (signing, name))
        elif model[name][0] != entry[0] or model[name][1] != (entry[1] if len(entry) > 1 else name):
            problems.append("%s %s: table %s, model %s" % (signing, name, entry, model[name]))
    for name in model:
        if name not in errors:
            problems.append("%s %s is missing from the table" % (signing, name))
print(json.dumps(problems))
`;
    const r = await run(await pythonWithBoto3(), ["-c", script, JSON.stringify(MODELLED_ERRORS)]);
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual(JSON.parse(r.stdout), [], "regenerate with python3 scripts/modelled-errors.py > src/aws/modelled-errors.ts");
    assert.ok(Object.keys(MODELLED_ERRORS).length >= 20);
  });

  test("rules: a modelled name is accepted; an unknown one for the filter's service is refused with close matches", () => {
    const rule = parseFaultRule("~svc dynamodb => error ProvisionedThroughputExceededException", "1", compile);
    assert.deepEqual(rule.action, { name: "error", status: null, code: "ProvisionedThroughputExceededException", retryAfterSeconds: null });
    assert.throws(() => parseFaultRule("~svc dynamodb => error ProvisionedThroughputExceeded", "1", compile), (e: Error) => e instanceof FaultRuleError && /dynamodb's errors do not include "ProvisionedThroughputExceeded"; did you mean ProvisionedThroughputExceededException/.test(e.message));
    assert.throws(() => parseFaultRule("~svc lambda => error NoSuchKey", "1", compile), /lambda's errors do not include "NoSuchKey"/);
    assert.throws(() => parseFaultRule("~svc glue => error EntityNotFoundException", "1", compile), /sluice has no error list for glue; give the status yourself: error EntityNotFoundException status=400/);
    assert.equal(parseFaultRule("~svc glue => error EntityNotFoundException status=400", "1", compile).action.name, "error");
    assert.throws(() => parseFaultRule("~all => error Nonsense", "1", compile), /no service's errors include "Nonsense"/);
    assert.throws(() => parseFaultRule("~svc s3 => error 404", "1", compile), /for any other status use status CODE/);
    // S3's model lists few errors; its documented SlowDown is known all the same. EC2's model lists none.
    assert.equal(parseFaultRule("~svc s3 => error SlowDown", "1", compile).action.name, "error");
    assert.equal(parseFaultRule("~svc ec2 => error InsufficientInstanceCapacity", "1", compile).action.name, "error");
  });

  test("boto3 raises the named error with the model's status: DynamoDB ProvisionedThroughputExceededException, Lambda ResourceNotFoundException, S3 NoSuchKey, IAM's query code", { skip: needsPython("boto3", "python3-boto3") }, async () => {
    const origin = await startScriptedOrigin(() => Response.make(418, "this request should have been answered by sluice", { "content-type": "text/plain" }));
    const rules = [
      "~svc dynamodb => error ProvisionedThroughputExceededException",
      "~svc lambda => error ResourceNotFoundException",
      "~svc s3 => error NoSuchKey",
      "~svc iam => error EntityAlreadyExistsException",
    ];
    const sluice = await startSluice({ set: { map_remote: JSON.stringify([`|https://[a-z0-9.-]+\\.amazonaws\\.com|${origin.url}`]), fault_rules: JSON.stringify(rules) }, addons: [new Faults()] });
    try {
      const script = `
import boto3, botocore.config, botocore.exceptions, json
cfg = botocore.config.Config(retries={"total_max_attempts": 1, "mode": "standard"}, s3={"addressing_style": "path"})
def code(call):
    try:
        call()
        return "ok"
    except botocore.exceptions.ClientError as e:
        return "%s %d" % (e.response["Error"]["Code"], e.response["ResponseMetadata"]["HTTPStatusCode"])
out = {
  "dynamodb": code(lambda: boto3.client("dynamodb", region_name="eu-west-1", config=cfg).get_item(TableName="t", Key={"pk": {"S": "a"}})),
  "lambda": code(lambda: boto3.client("lambda", region_name="eu-west-1", config=cfg).invoke(FunctionName="f", Payload=b"{}")),
  "s3": code(lambda: boto3.client("s3", region_name="eu-west-1", config=cfg).get_object(Bucket="b", Key="k")),
  "iam": code(lambda: boto3.client("iam", region_name="us-east-1", config=cfg).create_user(UserName="u")),
}
try:
    boto3.client("dynamodb", region_name="eu-west-1", config=cfg).get_item(TableName="t", Key={"pk": {"S": "a"}})
except Exception as e:
    out["dynamodb_class"] = type(e).__name__
print(json.dumps(out))
`;
      const r = await run(await pythonWithBoto3(), ["-c", script], { env: awsEnv({ HTTPS_PROXY: sluice.url, AWS_CA_BUNDLE: sluice.caCert }) });
      assert.equal(r.code, 0, r.stderr);
      assert.deepEqual(JSON.parse(r.stdout), {
        dynamodb: "ProvisionedThroughputExceededException 400",
        lambda: "ResourceNotFoundException 404",
        s3: "NoSuchKey 404",
        iam: "EntityAlreadyExists 409",
        dynamodb_class: "ProvisionedThroughputExceededException",
      });
      assert.equal(origin.requests.length, 0, "every call was answered by sluice");

      const ca = await readFile(sluice.caCert, "utf8");
      const client = new DynamoDBClient({ region: "eu-west-1", credentials: { accessKeyId: "AKIDEXAMPLE", secretAccessKey: "secret" }, maxAttempts: 1, requestHandler: { httpsAgent: tunnelAgent(sluice.port, ca) } });
      try {
        await assert.rejects(client.send(new GetItemCommand({ TableName: "t", Key: { pk: { S: "a" } } })), (err: Error & { $metadata?: { httpStatusCode?: number } }) => {
          assert.equal(err.name, "ProvisionedThroughputExceededException");
          assert.equal(err.$metadata?.httpStatusCode, 400);
          return true;
        });
      } finally {
        client.destroy();
      }
    } finally {
      await Promise.all([sluice.close(), origin.close()]);
    }
  });
});
