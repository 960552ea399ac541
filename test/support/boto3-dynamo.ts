/**
 * boto3 scripts against DynamoDB through a sluice: the client `ddb` (one attempt per call, no
 * retries) and `call(fn, **kw)`, which returns "ok" or the error code followed by each throttling
 * reason as `reason@resource` (the resource after "table/") and each cancellation reason's code.
 */
import assert from "node:assert/strict";
import { awsEnv, pythonWithBoto3, run } from "./run.js";

export const BOTO3_DYNAMO_PRELUDE = `
import boto3, botocore.config, botocore.exceptions, json, time
ddb = boto3.client("dynamodb", region_name="eu-west-1", config=botocore.config.Config(retries={"total_max_attempts": 1, "mode": "standard"}))
def call(fn, **kw):
    try:
        fn(**kw)
        return "ok"
    except botocore.exceptions.ClientError as e:
        r = e.response
        reasons = r.get("ThrottlingReasons") or r.get("throttlingReasons") or []
        cancel = r.get("CancellationReasons") or []
        return " ".join([r["Error"]["Code"]] + ["%s@%s" % (x["reason"], x["resource"].split("/", 1)[1]) for x in reasons] + [c["Code"] for c in cancel])
`;

/** Runs the prelude, then `body` (which prints its JSON result), with boto3 going through `sluice`. */
export async function boto3Dynamo<T>(sluice: { url: string; caCert: string }, body: string): Promise<T> {
  const r = await run(await pythonWithBoto3(), ["-c", BOTO3_DYNAMO_PRELUDE + body], { env: awsEnv({ HTTPS_PROXY: sluice.url, AWS_CA_BUNDLE: sluice.caCert }) });
  assert.equal(r.code, 0, r.stderr);
  return JSON.parse(r.stdout) as T;
}
