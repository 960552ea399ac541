/**
 * An append-only file written in order, for captures that must survive a crash: everything queued
 * while a write is in flight goes to the kernel in the next single `writev` (so the writer keeps up
 * however many flows finish per event-loop turn), `backlog` says how far behind the disk it is so
 * callers can apply back-pressure, and the file is forced to disk (`fdatasync`) every
 * `syncIntervalMs` while it is being written, so a crash of the machine, not only of the process,
 * loses at most that much.
 */
import { close, fdatasync, writev } from "node:fs";

/** Linux accepts at most 1024 buffers per writev (IOV_MAX). */
const MAX_IOVECS = 1024;

export class AppendFile {
  private queue: Buffer[] = [];
  private queuedBytes = 0;
  private inFlight = false;
  private idle: (() => void)[] = [];
  private failure: Error | null = null;
  private syncTimer: NodeJS.Timeout | null = null;
  private dirty = false;
  private syncing: Promise<void> | null = null;
  private closed = false;

  constructor(
    private readonly fd: number,
    private readonly syncIntervalMs: number,
    private readonly onError: (err: Error) => void,
  ) {}

  /** Bytes handed to `append` and not yet accepted by the kernel. */
  get backlog(): number {
    return this.queuedBytes;
  }

  get error(): Error | null {
    return this.failure;
  }

  /** Queues buffers to be written after everything queued before them, in one piece. */
  append(buffers: Buffer[]): void {
    for (const b of buffers) {
      if (b.length === 0) continue;
      this.queue.push(b);
      this.queuedBytes += b.length;
    }
    if (!this.inFlight) this.writeQueued();
  }

  /** Resolves when everything appended so far has been handed to the kernel. */
  drained(): Promise<void> {
    if (!this.inFlight && this.queue.length === 0) return Promise.resolve();
    return new Promise((resolve) => this.idle.push(resolve));
  }

  /** Writes what is queued, forces it to disk and closes the descriptor. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.drained();
    if (this.syncTimer) clearTimeout(this.syncTimer);
    this.syncTimer = null;
    await this.syncing;
    await new Promise<void>((resolve) => {
      const finish = () => close(this.fd, (err) => {
        if (err) this.fail(err);
        resolve();
      });
      if (!this.dirty || this.failure) return finish();
      fdatasync(this.fd, (err) => {
        if (err) this.fail(err);
        finish();
      });
    });
  }

  private writeQueued(): void {
    if (this.queue.length === 0 || this.failure) {
      this.inFlight = false;
      if (this.failure) {
        this.queue = [];
        this.queuedBytes = 0;
      }
      const waiters = this.idle;
      this.idle = [];
      for (const w of waiters) w();
      return;
    }
    this.inFlight = true;
    const batch = this.queue.length <= MAX_IOVECS ? this.queue : this.queue.slice(0, MAX_IOVECS);
    this.queue = this.queue.length <= MAX_IOVECS ? [] : this.queue.slice(MAX_IOVECS);
    writev(this.fd, batch, (err, written) => {
      if (err) {
        this.fail(err);
        return this.writeQueued();
      }
      this.queuedBytes -= written;
      const total = batch.reduce((n, b) => n + b.length, 0);
      // A short write (a signal, a full disk): the rest goes first, before anything queued after it.
      if (written < total) this.queue = remainderOf(batch, written).concat(this.queue);
      this.markDirty();
      this.writeQueued();
    });
  }

  private markDirty(): void {
    this.dirty = true;
    if (this.syncTimer || this.closed || this.syncIntervalMs <= 0) return;
    this.syncTimer = setTimeout(() => this.sync(), this.syncIntervalMs);
    this.syncTimer.unref();
  }

  private sync(): void {
    this.syncTimer = null;
    if (this.syncing || this.closed) return;
    this.dirty = false;
    this.syncing = new Promise((resolve) =>
      fdatasync(this.fd, (err) => {
        this.syncing = null;
        if (err) this.fail(err);
        resolve();
      }),
    );
  }

  private fail(err: Error): void {
    if (this.failure) return;
    this.failure = err;
    this.onError(err);
  }
}

/** What is left of `buffers` after the first `skip` bytes. */
function remainderOf(buffers: Buffer[], skip: number): Buffer[] {
  const rest: Buffer[] = [];
  for (const b of buffers) {
    if (skip >= b.length) {
      skip -= b.length;
      continue;
    }
    rest.push(skip > 0 ? b.subarray(skip) : b);
    skip = 0;
  }
  return rest;
}
