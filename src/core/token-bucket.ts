/**
 * Token buckets, the one rate primitive behind fault rate budgets (admit or throttle) and request
 * shaping (wait until admitted), kept per key by the in-process shared state
 * (core/shared-state.ts). Time is passed in (milliseconds), so both the proxy and the tests
 * decide what "now" is.
 */
export class TokenBucket {
  private tokens: number;
  private last: number;

  /**
   * @param rate  tokens added per second (> 0)
   * @param burst bucket size: how many requests may pass back to back after an idle period
   */
  constructor(
    public rate: number,
    public burst: number,
    now: number,
  ) {
    if (!(rate > 0)) throw new RangeError(`token bucket rate must be positive, got ${rate}`);
    if (!(burst >= 1)) throw new RangeError(`token bucket burst must be at least 1, got ${burst}`);
    this.tokens = burst;
    this.last = now;
  }

  private refill(now: number): void {
    if (now > this.last) {
      this.tokens = Math.min(this.burst, this.tokens + ((now - this.last) / 1000) * this.rate);
      this.last = now;
    }
  }

  /** Takes one token if there is one. */
  tryTake(now: number): boolean {
    this.refill(now);
    if (this.tokens >= 1) {
      this.tokens -= 1;
      return true;
    }
    return false;
  }

  /** Milliseconds until one token is available (0 if one is available now). */
  waitTime(now: number): number {
    this.refill(now);
    return this.tokens >= 1 ? 0 : ((1 - this.tokens) / this.rate) * 1000;
  }

  /** Takes a token that may not exist yet (the balance goes negative): for queues that reserve. */
  reserve(now: number): number {
    this.refill(now);
    const wait = this.tokens >= 1 ? 0 : ((1 - this.tokens) / this.rate) * 1000;
    this.tokens -= 1;
    return wait;
  }

  /**
   * Takes `n` tokens whatever the balance (it may go negative): a cost known only after admission.
   * A negative `n` gives tokens back (a cost that proved lower), never above the bucket's size.
   */
  charge(n: number, now: number): void {
    this.refill(now);
    this.tokens = Math.min(this.burst, this.tokens - n);
  }

  /** Changes the rate, keeping the tokens earned so far (adaptive shaping). */
  setRate(rate: number, now: number): void {
    if (!(rate > 0)) throw new RangeError(`token bucket rate must be positive, got ${rate}`);
    this.refill(now);
    this.rate = rate;
  }

  available(now: number): number {
    this.refill(now);
    return this.tokens;
  }
}
