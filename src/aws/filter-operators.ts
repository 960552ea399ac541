/**
 * The AWS operators of the filter language, read from aws/'s recognition of the request:
 * `~svc`, `~op`, `~region`, `~bucket` (regexes), `~attempt N`, and the flags `~retry` (SDK
 * attempt > 1) and `~throttled` (the response is a throttling error). core/filter knows nothing of
 * AWS; this module adds them when aws/ is loaded.
 */
import { registerFilterOperator, type FilterOperator } from "../core/filter.js";
import { awsInfoOf } from "./recognize.js";
import { throttlingCodeOf } from "./errors.js";
import { serviceNameMatcher } from "./services.js";

export const AWS_FILTER_OPERATORS: readonly FilterOperator[] = [
  {
    name: "retry",
    kind: "flag",
    help: "AWS SDK retry: amz-sdk-request attempt > 1",
    match: (f) => (awsInfoOf(f)?.attempt ?? 0) > 1,
  },
  {
    name: "throttled",
    kind: "flag",
    help: "response is an AWS throttling error (429/503 SlowDown, ThrottlingException, …)",
    match: (f) => f.response !== null && throttlingCodeOf(f.response, awsInfoOf(f)) !== null,
  },
  {
    name: "svc",
    kind: "regex",
    help: "AWS service by signing name (s3, dynamodb, monitoring, …) or common name (cloudwatch, …); an unknown name is an error",
    text: (f) => awsInfoOf(f)?.service ?? null,
    matcher: serviceNameMatcher,
  },
  { name: "op", kind: "regex", help: "AWS operation: PutObject, GetItem, DescribeInstances, …", text: (f) => awsInfoOf(f)?.operation ?? null },
  { name: "region", kind: "regex", help: "AWS region: eu-west-1, …", text: (f) => awsInfoOf(f)?.region ?? null },
  { name: "bucket", kind: "regex", help: "S3 bucket name", text: (f) => awsInfoOf(f)?.bucket ?? null },
  { name: "attempt", kind: "int", help: "AWS SDK attempt number, exactly (amz-sdk-request attempt=N)", match: (f, n) => awsInfoOf(f)?.attempt === n },
];

/** Adds the AWS operators to the filter language (idempotent). */
export function registerAwsFilterOperators(): void {
  for (const op of AWS_FILTER_OPERATORS) registerFilterOperator(op);
}
