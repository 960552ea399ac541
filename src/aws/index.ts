/** AWS awareness as pure functions: what a request is, and how AWS would answer it. */
export type { AwsProtocol, AwsRequestInfo } from "./types.js";
export {
  recognizeAwsRequest,
  awsInfoOf,
  forgetAwsInfo,
  keyPrefixOf,
  awsHostOf,
  credentialScopeOf,
  parseSdkRequestHeader,
  sdkOf,
  retryModeOf,
  s3OperationOf,
  lambdaOperationOf,
} from "./recognize.js";
export {
  protocolOf,
  awsErrorResponse,
  throttlingErrorOf,
  throttleResponse,
  serviceErrorOf,
  serviceErrorResponse,
  throttlingCodeOf,
  isBareS3Head503,
  errorCodeOf,
  THROTTLING_ERROR_CODES,
  type AwsError,
  type ErrorResponseOptions,
} from "./errors.js";
export {
  InvocationTracker,
  labelsOf,
  flowEnd,
  OUTCOMES,
  type Outcome,
  type RetryMetadata,
  type AttemptRecord,
  type InvocationRecord,
  type OperationStats,
  type TrackerSnapshot,
  type TrackerOptions,
  type SeriesBucket,
  type Series,
  type AttemptEvent,
} from "./invocations.js";
export { AWS_FILTER_OPERATORS, registerAwsFilterOperators } from "./filter-operators.js";

import { registerAwsFilterOperators } from "./filter-operators.js";
// Whoever loads AWS knowledge gets the AWS filter operators with it: `~svc s3` means the same
// wherever a filter is compiled.
registerAwsFilterOperators();
export { AwsLimiter, awsLimits, limitsTable, refusalOf, parseAwsLimitsOptions, explainAwsLimitsOptions, AWS_LIMITS_OPTIONS, AWS_LIMITS_USAGE, DEFAULT_DYNAMODB_PARTITIONS, LIMITED_SERVICES, type ApplicableLimit, type AwsLimit, type AwsLimitRefusal, type AwsLimitRefused, type LimitPart, type AwsLimitsOptions } from "./limits.js";
export { catalogedErrorOf, cataloguedServices, closeErrorNames, servicesWithError, type CatalogedError } from "./error-catalog.js";
export { signingNameOf } from "./services.js";
export { RetryForensics, retryForensicsText, backoffFormula, backoffVerdict, whatIfSentence, MAX_FORENSIC_CALLS, WHAT_IF_MODEL, type RetryForensicsReport, type ClientRetryMode, type WhatIf } from "./retry-forensics.js";
