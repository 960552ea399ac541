/**
 * The retries addon's figures per service and operation, and its time series: plain data with no
 * imports, because the web UI's front end (web/, a browser build) imports these types too.
 */
export type Outcome = "ok" | "retried" | "gave-up" | "failed";

export interface OperationStats {
  service: string;
  operation: string;
  requests: number;
  retries: number;
  inferredRetries: number;
  throttles: number;
  /** Attempts that failed with a retryable error (throttles included). */
  retryableErrors: number;
  backoffSeconds: number;
  invocations: number;
  outcomes: Record<Outcome, number>;
  /** Requests per status ("200", "503", "error" for no response). */
  statuses: Record<string, number>;
  /**
   * Bodiless 503s to S3 HEAD requests: S3's throttle for HEAD, which SDKs can only see as a server
   * error. Counted as retryable errors, not throttles, because that is what the client saw.
   */
  bareHead503s: number;
}

export interface SeriesBucket {
  requests: number;
  throttles: number;
  retries: number;
  errors: number;
  giveups: number;
  /** Seconds clients spent waiting in back-off during this bucket: divided by its width, how many were asleep at once. */
  backoff: number;
}

export interface Series {
  /** Start of the first bucket, seconds since the epoch (0 when empty). */
  start: number;
  bucketSeconds: number;
  buckets: SeriesBucket[];
}
