/**
 * An adaptive sending rate that learns a server's unknown limit from its throttling answers, in
 * the spirit of botocore's `adaptive` retry mode (botocore/retries/adaptive.py, throttling.py):
 *
 * - on a throttle, remember the rate we were at (W_max) and cut to BETA × it (0.7);
 * - on success, grow back along a cubic curve, W(t) = C·(t − K)³ + W_max with C = 0.4 and
 *   K = ∛(W_max·(1 − BETA)/C): fast while far below W_max, flat near it, probing above it after;
 * - never more than twice the rate actually measured (a smoothed send rate, 0.5 s buckets), so an
 *   idle or slow client cannot build up a rate it never used; never below a floor (0.5/s).
 *
 * One addition for a proxy, where many requests are in flight at once: a throttle for a request
 * sent before the last cut says nothing new (it was sent at the old rate) and is ignored, so one
 * burst of throttles is one cut, not a collapse to the floor.
 *
 * No timers and no sockets: the caller passes the time (ms) and applies `rate`.
 */
export const CUBIC_BETA = 0.7;
export const CUBIC_SCALE = 0.4;
export const MIN_RATE = 0.5;
const SMOOTHING = 0.8;
const BUCKET_MS = 500;
const MAX_RATE_ADJUST_SCALE = 2;

export interface AdaptiveRateOptions {
  /** Requests per second to start at. */
  start: number;
  /** Floor (default 0.5/s, botocore's). */
  min?: number;
  /** Ceiling (default none). */
  max?: number;
  beta?: number;
  scale?: number;
}

export class AdaptiveRate {
  rate: number;
  readonly min: number;
  readonly max: number;
  private readonly beta: number;
  private readonly scale: number;
  /** Rate at the last throttle (the cubic's plateau). */
  private wMax: number;
  /** Seconds after the last cut at which the curve is back at wMax. */
  private k = 0;
  private lastCut: number;
  /** When the last cut happened (ms), or -Infinity before any. */
  lastThrottleAt = -Infinity;
  throttles = 0;
  cuts = 0;
  /** Smoothed sending rate (requests per second). */
  measured = 0;
  private bucketStart: number;
  private bucketCount = 0;

  constructor(opts: AdaptiveRateOptions, now: number) {
    this.min = opts.min ?? MIN_RATE;
    this.max = opts.max ?? Infinity;
    this.beta = opts.beta ?? CUBIC_BETA;
    this.scale = opts.scale ?? CUBIC_SCALE;
    this.rate = clamp(opts.start, this.min, this.max);
    // Before the first throttle the start rate is the plateau we grow from (K = 0: growth starts now).
    this.wMax = this.rate;
    this.lastCut = now;
    this.bucketStart = Math.floor(now / BUCKET_MS) * BUCKET_MS;
  }

  /** A request was sent (left the queue). Keeps the measured rate, as botocore's RateClocker does. */
  recordSend(now: number): void {
    const bucket = Math.floor(now / BUCKET_MS) * BUCKET_MS;
    this.bucketCount++;
    if (bucket > this.bucketStart) {
      const current = this.bucketCount / ((bucket - this.bucketStart) / 1000);
      this.measured = current * SMOOTHING + this.measured * (1 - SMOOTHING);
      this.bucketCount = 0;
      this.bucketStart = bucket;
    }
  }

  /**
   * The server throttled a request sent at `sentAt`. Returns true when the rate was cut.
   */
  onThrottle(now: number, sentAt = now): boolean {
    this.throttles++;
    if (sentAt < this.lastThrottleAt) return false;
    // What we were really sending at: the configured rate, or less if the clients sent less.
    const current = this.measured > 0 ? Math.min(this.measured, this.rate) : this.rate;
    this.wMax = current;
    this.k = Math.cbrt((this.wMax * (1 - this.beta)) / this.scale);
    this.lastCut = now;
    this.lastThrottleAt = now;
    this.cuts++;
    this.rate = clamp(current * this.beta, this.min, this.max);
    return true;
  }

  /** A request got a non-throttling answer: grow along the cubic. Returns the new rate. */
  onSuccess(now: number): number {
    const t = (now - this.lastCut) / 1000;
    let next = this.scale * (t - this.k) ** 3 + this.wMax;
    // Grow only as far as twice what is really being sent; the cap never forces a cut by itself.
    if (this.measured > 0) next = Math.min(next, Math.max(MAX_RATE_ADJUST_SCALE * this.measured, this.rate));
    this.rate = clamp(next, this.min, this.max);
    return this.rate;
  }
}

function clamp(x: number, lo: number, hi: number): number {
  return Math.min(hi, Math.max(lo, x));
}
