/**
 * Errors by name, per service, for `error CODE` fault rules: what each service's model lists
 * (modelled-errors.ts, generated from botocore's models), the throttling and server errors sluice
 * already answers with, and the documented codes the models leave out (S3's and EC2's error pages:
 * EC2's model lists no errors at all, S3's only a few).
 */
import { editDistance } from "../core/edit-distance.js";
import { MODELLED_ERRORS } from "./modelled-errors.js";

const S3_ERRORS = "https://docs.aws.amazon.com/AmazonS3/latest/API/ErrorResponses.html";
const EC2_ERRORS = "https://docs.aws.amazon.com/AWSEC2/latest/APIReference/errors-overview.html";

/** Documented codes the models do not list: [status, source]. */
const DOCUMENTED: Record<string, Record<string, [number, string]>> = {
  s3: {
    SlowDown: [503, S3_ERRORS], InternalError: [500, S3_ERRORS], ServiceUnavailable: [503, S3_ERRORS], RequestTimeout: [400, S3_ERRORS],
    ExpiredToken: [400, S3_ERRORS], InvalidAccessKeyId: [403, S3_ERRORS], SignatureDoesNotMatch: [403, S3_ERRORS], PreconditionFailed: [412, S3_ERRORS],
    NotImplemented: [501, S3_ERRORS], EntityTooLarge: [400, S3_ERRORS], BucketNotEmpty: [409, S3_ERRORS], RequestTimeTooSkewed: [403, S3_ERRORS],
  },
  ec2: {
    RequestLimitExceeded: [503, EC2_ERRORS], InternalError: [500, EC2_ERRORS], Unavailable: [503, EC2_ERRORS], InsufficientInstanceCapacity: [500, EC2_ERRORS],
    UnauthorizedOperation: [403, EC2_ERRORS], AuthFailure: [401, EC2_ERRORS], DryRunOperation: [412, EC2_ERRORS], IdempotentParameterMismatch: [400, EC2_ERRORS],
    "InvalidInstanceID.NotFound": [400, EC2_ERRORS], "InvalidInstanceID.Malformed": [400, EC2_ERRORS], InvalidParameterValue: [400, EC2_ERRORS],
    MissingParameter: [400, EC2_ERRORS], "InvalidVolume.NotFound": [400, EC2_ERRORS], "InvalidSnapshot.NotFound": [400, EC2_ERRORS],
    InstanceLimitExceeded: [400, EC2_ERRORS], VcpuLimitExceeded: [400, EC2_ERRORS], RequestResourceCountExceeded: [503, EC2_ERRORS],
  },
};

export interface CatalogedError {
  /** The name rules use (the model's shape name). */
  name: string;
  status: number;
  /** The code on the wire: the name, or the query protocol's own code (IAM's "EntityAlreadyExists"). */
  code: string;
}

function entriesOf(service: string): CatalogedError[] {
  const out: CatalogedError[] = [];
  for (const [name, entry] of Object.entries(MODELLED_ERRORS[service] ?? {})) out.push({ name, status: entry[0], code: entry[1] ?? name });
  for (const [name, [status]] of Object.entries(DOCUMENTED[service] ?? {})) if (!out.some((e) => e.name === name)) out.push({ name, status, code: name });
  return out;
}

/** Services whose errors sluice can look up by name. */
export function cataloguedServices(): string[] {
  return [...new Set([...Object.keys(MODELLED_ERRORS), ...Object.keys(DOCUMENTED)])].sort();
}

/** `service`'s error called `nameOrCode` (the model's name or the wire code, any case), or null. */
export function catalogedErrorOf(service: string, nameOrCode: string): CatalogedError | null {
  const lower = nameOrCode.toLowerCase();
  return entriesOf(service).find((e) => e.name.toLowerCase() === lower || e.code.toLowerCase() === lower) ?? null;
}

/** Services that know an error called `nameOrCode`. */
export function servicesWithError(nameOrCode: string): string[] {
  return cataloguedServices().filter((s) => catalogedErrorOf(s, nameOrCode) !== null);
}

/** Up to three error names of `services` closest to `nameOrCode`, for "did you mean …?". */
export function closeErrorNames(services: string[], nameOrCode: string): string[] {
  const lower = nameOrCode.toLowerCase();
  const names = [...new Set(services.flatMap((s) => entriesOf(s).map((e) => e.name)))];
  return names
    .map((n) => ({ n, d: editDistance(lower, n.toLowerCase()) }))
    .filter(({ n, d }) => d <= Math.max(3, Math.floor(n.length / 3)))
    .sort((a, b) => a.d - b.d)
    .slice(0, 3)
    .map(({ n }) => n);
}
