/**
 * Replays a trace into a pool: each `a ID BYTES` is `pool.acquire(BYTES)`, each `f ID` is a
 * release. Reports what a benchmark needs: peak live and reserved bytes, their ratio, device calls.
 */
import type { Block } from '../block.js';
import type { Pool } from '../pool.js';
import { OP_ALLOCATE, type Trace } from './trace-format.js';

export interface ReplayOptions {
  /** Release blocks still live at the end (default true). */
  releaseAtEnd?: boolean;
  /** Called every `progressEvery` operations (default 65536) with the count done. */
  onProgress?: (done: number, total: number) => void;
  progressEvery?: number;
  /** Called after every operation (slow): for invariant checks in tests. */
  afterEach?: (index: number) => void;
}

export interface ReplayResult {
  ops: number;
  peakLiveBytes: number;
  peakReservedBytes: number;
  /** peakReservedBytes / peakLiveBytes. */
  ratio: number;
  deviceCalls: number;
  elapsedNs: number;
  /**
   * Minor page faults the process took during the timed loop (`process.resourceUsage()`). Hundreds
   * per replay mean part of elapsedNs was the machine's: V8 resizing its young generation.
   */
  pageFaults: number;
}

export function replayTrace(trace: Trace, pool: Pool, options: ReplayOptions = {}): ReplayResult {
  // Keep `new Array(n)`: a packed array filled by push(undefined) measured 30–45 ns/op slower here.
  const blocks: (Block | undefined)[] = new Array(trace.idCount);
  const { kinds, ids, bytes } = trace;
  const every = options.progressEvery ?? 65536;
  const onProgress = options.onProgress;
  const afterEach = options.afterEach;
  pool.resetPeaks();
  const callsBefore = pool.stats().allocations;
  const faultsBefore = process.resourceUsage().minorPageFault;
  const start = process.hrtime.bigint();
  for (let i = 0; i < trace.length; i++) {
    const id = ids[i]!;
    if (kinds[i] === OP_ALLOCATE) {
      blocks[id] = pool.acquire(bytes[i]!);
    } else {
      blocks[id]!.release();
      blocks[id] = undefined;
    }
    if (afterEach !== undefined) afterEach(i);
    if (onProgress !== undefined && i % every === 0) onProgress(i, trace.length);
  }
  const elapsedNs = Number(process.hrtime.bigint() - start);
  const pageFaults = process.resourceUsage().minorPageFault - faultsBefore;
  const stats = pool.stats();
  if (options.releaseAtEnd !== false) for (const b of blocks) b?.release();
  return {
    ops: trace.length,
    peakLiveBytes: stats.peakLiveBytes,
    peakReservedBytes: stats.peakReservedBytes,
    ratio: stats.peakLiveBytes === 0 ? 1 : stats.peakReservedBytes / stats.peakLiveBytes,
    deviceCalls: stats.allocations - callsBefore,
    elapsedNs,
    pageFaults,
  };
}
