/**
 * One new TLS handshake per event-loop turn. The names of a burst share one leaf (see
 * CertificateAuthority.certificateFor), so when it is ready all their connections resume at once;
 * started together, their handshakes (~0.3 ms of CPU each: the key exchange and the signature)
 * would run back to back in one turn, and a plain request arriving meanwhile would wait for all
 * of them (a batch of 10: 3 ms). Admitted one per turn, each handshake runs in its own turn and
 * the poll phase between them serves everyone else. A lone handshake waits one turn (~µs).
 */
export class HandshakeTurns {
  private readonly waiting: (() => void)[] = [];
  private scheduled = false;

  /** Resolves in a turn of its own, after those admitted before it. */
  next(): Promise<void> {
    return new Promise((resolve) => {
      this.waiting.push(resolve);
      if (!this.scheduled) {
        this.scheduled = true;
        setImmediate(this.admitOne);
      }
    });
  }

  private readonly admitOne = (): void => {
    this.waiting.shift()?.();
    // Scheduled from within the check phase, the next admission runs in the next turn, after its poll.
    if (this.waiting.length) setImmediate(this.admitOne);
    else this.scheduled = false;
  };
}
