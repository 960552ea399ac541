/** What aws/ knows about a request. Every field is null when it cannot be told from the traffic. */
export interface AwsRequestInfo {
  /** Signing name as in the SigV4 credential scope: "s3", "dynamodb", "ec2", "lambda", "sts", … */
  service: string | null;
  region: string | null;
  /** API operation name as the SDK calls it: "PutObject", "ListBuckets", "DescribeSnapshots", … */
  operation: string | null;
  /** S3 only. */
  bucket: string | null;
  key: string | null;
  /** `amz-sdk-invocation-id`: constant across the attempts of one SDK call. */
  invocationId: string | null;
  /** From `amz-sdk-request: attempt=N; max=M`. */
  attempt: number | null;
  maxAttempts: number | null;
  /** From User-Agent, e.g. "Boto3/1.43.11", "aws-sdk-js/3.1169.0", "aws-cli/2.9.19". */
  sdk: string | null;
  /** From User-Agent `cfg/retry-mode#…`: "legacy" | "standard" | "adaptive". */
  retryMode: string | null;
  /**
   * The protocol the request itself shows (`X-Amz-Target`, `application/x-amz-json-1.x`,
   * `Action=`, `smithy-protocol`), when it shows one. It beats the per-service table because one
   * service can speak two: SQS is query for old SDKs and JSON for new ones.
   */
  protocol?: AwsProtocol | null;
  /** "1.0" or "1.1" from `Content-Type: application/x-amz-json-1.x`, echoed in error responses. */
  jsonVersion?: string | null;
}

/**
 * How an AWS API frames requests and errors. "rpc-v2-cbor" is the Smithy RPC v2 CBOR protocol
 * newer SDKs use for a few services (CloudWatch among them).
 */
export type AwsProtocol = "rest-xml" | "json" | "rest-json" | "query" | "ec2" | "rpc-v2-cbor";
