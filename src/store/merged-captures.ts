/**
 * Several captures read as one stream: the flows of every file in the order they finished, as
 * the invocation tracker wants them (its clock is the latest end time it has seen). Each capture
 * is already in finishing order (sluice writes a flow when it ends), so a k-way merge on end time
 * keeps memory to one flow per file however large the captures are — which is what lets
 * `sluice report` join one SDK call whose attempts went through different sluice processes.
 *
 * The same flow in two captures (a `.mitm` and its `.har` conversion, a copy) is yielded once: a
 * flow is recognized by its start time to the millisecond, method, URL and client address and
 * port, within a window of recent flows, and only across different files.
 */
import type { HTTPFlow } from "../core/flow.js";
import { readFlowFile, type FilterHint } from "./index.js";
import type { ReadFlowsOptions } from "./flowfile.js";

export interface MergedCapturesOptions extends FilterHint {
  onWarning?: (message: string) => void;
  /** Bytes (or rows) read so far and in all, summed over the files. */
  onProgress?: (read: number, total: number) => void;
  /** Called at the end with how many flows were skipped as copies of a flow in another capture. */
  onDuplicates?: (count: number) => void;
}

/** How long (seconds of capture time) a flow is remembered to recognize its copy in another file. */
const DUPLICATE_WINDOW = 120;

interface Source {
  index: number;
  iterator: AsyncIterator<HTTPFlow>;
  head: HTTPFlow;
  end: number;
}

export async function* readMergedCaptures(paths: readonly string[], options: MergedCapturesOptions = {}): AsyncGenerator<HTTPFlow> {
  const read = new Array<number>(paths.length).fill(0);
  const totals = new Array<number>(paths.length).fill(0);
  const readerOptions = (i: number): ReadFlowsOptions & FilterHint => ({
    filter: options.filter,
    onWarning: options.onWarning,
    onProgress: (r, t) => {
      read[i] = r;
      totals[i] = t;
      options.onProgress?.(sum(read), sum(totals));
    },
  });
  const heap = new SourceHeap();
  const iterators: AsyncIterator<HTTPFlow>[] = [];
  try {
    for (let i = 0; i < paths.length; i++) {
      const iterator = readFlowFile(paths[i]!, readerOptions(i))[Symbol.asyncIterator]();
      iterators.push(iterator);
      const first = await iterator.next();
      if (!first.done) heap.push({ index: i, iterator, head: first.value, end: flowEnd(first.value) });
    }
    if (paths.length === 1) {
      // One file: no merge and no copies to look for.
      const only = heap.pop();
      if (!only) return;
      yield only.head;
      for (let r = await only.iterator.next(); !r.done; r = await only.iterator.next()) yield r.value;
      return;
    }
    const seen = new Map<string, { source: number; end: number }>();
    let duplicates = 0;
    let lastPrune = -Infinity;
    for (let source = heap.pop(); source; source = heap.pop()) {
      const flow = source.head;
      const key = fingerprintOf(flow);
      const earlier = seen.get(key);
      if (earlier && earlier.source !== source.index) duplicates++;
      else {
        seen.set(key, { source: source.index, end: source.end });
        yield flow;
      }
      if (source.end - lastPrune > DUPLICATE_WINDOW / 4) {
        lastPrune = source.end;
        for (const [k, v] of seen) if (v.end < source.end - DUPLICATE_WINDOW) seen.delete(k);
      }
      const next = await source.iterator.next();
      if (!next.done) heap.push({ ...source, head: next.value, end: flowEnd(next.value) });
    }
    options.onDuplicates?.(duplicates);
  } finally {
    // An early stop (an error, the consumer's break) still closes every file.
    await Promise.all(iterators.map((it) => it.return?.().catch(() => undefined)));
  }
}

/** When a flow finished (the invocation tracker's flowEnd, which store/ may not import). */
function flowEnd(flow: HTTPFlow): number {
  return flow.response?.timestampEnd ?? flow.error?.timestamp ?? flow.response?.timestampStart ?? flow.request.timestampEnd ?? flow.request.timestampStart;
}

function sum(values: number[]): number {
  let s = 0;
  for (const v of values) s += v;
  return s;
}

function fingerprintOf(flow: HTTPFlow): string {
  const peer = flow.clientConn.peername;
  return `${Math.round(flow.request.timestampStart * 1000)} ${flow.request.method} ${flow.request.url} ${peer ? `${peer[0]}:${peer[1]}` : "-"}`;
}

/** A binary min-heap of sources by the end time of their next flow; ties go to the earlier file. */
class SourceHeap {
  private readonly items: Source[] = [];

  push(s: Source): void {
    const a = this.items;
    a.push(s);
    let i = a.length - 1;
    while (i > 0) {
      const parent = (i - 1) >> 1;
      if (!before(a[i]!, a[parent]!)) break;
      [a[i], a[parent]] = [a[parent]!, a[i]!];
      i = parent;
    }
  }

  pop(): Source | undefined {
    const a = this.items;
    const top = a[0];
    const last = a.pop();
    if (a.length === 0 || !last) return top;
    a[0] = last;
    let i = 0;
    for (;;) {
      const l = 2 * i + 1;
      const r = l + 1;
      let m = i;
      if (l < a.length && before(a[l]!, a[m]!)) m = l;
      if (r < a.length && before(a[r]!, a[m]!)) m = r;
      if (m === i) break;
      [a[i], a[m]] = [a[m]!, a[i]!];
      i = m;
    }
    return top;
  }
}

function before(x: Source, y: Source): boolean {
  return x.end < y.end || (x.end === y.end && x.index < y.index);
}
