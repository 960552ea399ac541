/**
 * A streamed response body on its way to the client, as a chain of handlers in the shape of
 * undici's controller API: each concern (a truncation fault, bandwidth pacing) is a wrapper that
 * owns its state and passes the body on to the handler it wraps, as undici's interceptors wrap a
 * dispatch handler. The exchange feeds the chain once it decides to stream; the innermost handler
 * writes to the client.
 */
import type { Dispatcher } from "undici";

export type Controller = Dispatcher.DispatchController;

/** The streaming half of a response handler. */
export interface BodyHandler {
  onResponseData(controller: Controller, chunk: Buffer): void;
  onResponseEnd(controller: Controller): void;
  /** The body is cut short on purpose: `tail` (maybe empty) is the last of it the client gets. */
  onResponseTruncated(controller: Controller, tail: Buffer): void;
}

/** Who holds upstream paused; each holder releases only its own hold. */
export const Hold = {
  /** A flow hook is still running on the response head. */
  Hook: 1,
  /** The client's write queue is full; released on "drain". */
  Client: 2,
  /** Bandwidth pacing is waiting out the time the last bytes take at the limit. */
  Pace: 4,
} as const;
export type Hold = (typeof Hold)[keyof typeof Hold];

/**
 * Pauses upstream while anyone holds it and resumes it when the last hold is released, so one
 * concern cannot resume what another paused (the client's "drain" no longer cuts a pacing wait short).
 */
export class UpstreamGate {
  private holds = 0;
  private closed = false;

  constructor(private readonly controller: Controller) {}

  hold(who: Hold): void {
    if (this.closed) return;
    if (this.holds === 0) this.controller.pause();
    this.holds |= who;
  }

  release(who: Hold): void {
    if (this.closed || !(this.holds & who)) return;
    this.holds &= ~who;
    if (this.holds === 0) this.controller.resume();
  }

  /** The exchange is over: later releases (a pacing timer, a late "drain") do nothing. */
  close(): void {
    this.closed = true;
  }
}

/** Cuts the body at `cutAt` bytes (a truncation fault): the bytes before it pass on, then the cut. */
export class TruncateBody implements BodyHandler {
  private offset = 0;
  private cut = false;

  constructor(
    private readonly cutAt: number,
    private readonly inner: BodyHandler,
  ) {}

  onResponseData(controller: Controller, chunk: Buffer): void {
    if (this.cut) return;
    const end = this.offset + chunk.length;
    if (end <= this.cutAt) {
      this.offset = end;
      this.inner.onResponseData(controller, chunk);
      return;
    }
    this.cut = true;
    this.inner.onResponseTruncated(controller, chunk.subarray(0, Math.max(0, this.cutAt - this.offset)));
  }

  onResponseEnd(controller: Controller): void {
    if (!this.cut) this.inner.onResponseEnd(controller);
  }

  onResponseTruncated(controller: Controller, tail: Buffer): void {
    if (this.cut) return;
    this.cut = true;
    this.inner.onResponseTruncated(controller, tail);
  }
}

/**
 * Passes the body on at `rate` bytes per second: after each chunk, upstream stays paused for as
 * long as the bytes passed so far take at that rate, so the server (and the client behind it)
 * sees the pace, and memory stays bounded.
 */
export class PaceBody implements BodyHandler {
  /** When (ms, monotonic) the bytes passed so far are due at the limit. */
  private dueAt = 0;
  private timer: NodeJS.Timeout | null = null;

  constructor(
    private readonly rate: number,
    private readonly inner: BodyHandler,
    private readonly gate: UpstreamGate,
  ) {}

  onResponseData(controller: Controller, chunk: Buffer): void {
    this.inner.onResponseData(controller, chunk);
    const t = performance.now();
    this.dueAt = Math.max(this.dueAt, t) + (chunk.length / this.rate) * 1000;
    this.gate.hold(Hold.Pace);
    if (this.timer) clearTimeout(this.timer);
    this.timer = setTimeout(() => {
      this.timer = null;
      this.gate.release(Hold.Pace);
    }, this.dueAt - t);
  }

  onResponseEnd(controller: Controller): void {
    this.stop();
    this.inner.onResponseEnd(controller);
  }

  onResponseTruncated(controller: Controller, tail: Buffer): void {
    this.stop();
    this.inner.onResponseTruncated(controller, tail);
  }

  private stop(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
  }
}

/** Yields `chunks` again at `rate` bytes per second, in slices of a tenth of a second's worth (uploads). */
export async function* paced(chunks: AsyncIterable<Buffer> | Iterable<Buffer>, rate: number): AsyncGenerator<Buffer> {
  const slice = Math.max(1, Math.floor(rate / 10));
  for await (const chunk of chunks) {
    for (let off = 0; off < chunk.length; off += slice) {
      const part = chunk.subarray(off, off + slice);
      yield part;
      await new Promise((r) => setTimeout(r, (part.length / rate) * 1000));
    }
  }
}
