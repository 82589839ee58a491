import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { HostDevice, MiB } from '@gpupool/core';
import { describe, expect, it } from 'vitest';
import { onCpuNsPerPair, roundThroughput } from '../src/commands/scaling.js';
import type { ScalingTask, ScalingTaskResult } from '../src/scaling-worker.js';
import { BARRIER_INT32S } from '../src/scaling-worker.js';

const workerFile = new URL('../dist/scaling-worker.js', import.meta.url);

/** Math.max / Math.min for bigints. */
function maxOf(values: readonly bigint[]): bigint {
  return [...values].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0)).at(-1)!;
}
function minOf(values: readonly bigint[]): bigint {
  return [...values].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0))[0]!;
}

describe('scaling: throughput of one round', () => {
  it('counts every pair of every thread over the window from the first start to the last end', () => {
    const r = roundThroughput([
      { startNs: 1_000n, endNs: 1_000_001_000n, pairsDone: 3_000_000 },
      { startNs: 2_000n, endNs: 1_000_000_000n, pairsDone: 2_000_000 },
    ]);
    expect(r).toBeCloseTo(5_000_000 / 1.0, 0);
  });
});

describe('scaling: on-CPU time per pair', () => {
  const round = (ms: number, cpuMs: number | undefined, pairsDone: number) => ({
    startNs: 0n,
    endNs: BigInt(ms * 1e6),
    pairsDone,
    ...(cpuMs === undefined ? {} : { cpuNs: cpuMs * 1e6 }),
  });
  it('sums every round of every thread, once the rounds are long enough to read', () => {
    expect(onCpuNsPerPair([round(60, 30, 1e6), round(60, 60, 2e6)])).toBeCloseTo(30, 9);
    expect(onCpuNsPerPair([round(40, 40, 1e6), round(40, 40, 1e6)])).toBeUndefined();
    expect(onCpuNsPerPair([round(600, 600, 1e6), round(600, undefined, 1e6)])).toBeUndefined();
  });
});

describe.skipIf(!existsSync(workerFile))('scaling task (built worker file)', () => {
  it('every thread runs at least its timed pairs per round, all threads busy over one common window', async () => {
    const workers = await import('@gpupool/workers');
    const threads = 2;
    const rounds = 3;
    const pairs = 3000;
    const device = new HostDevice({ capacityBytes: 128 * MiB, scrubByte: null });
    const pool = workers.createWorkerPool({
      device,
      filename: fileURLToPath(workerFile),
      arenaBytes: 64 * MiB,
      minThreads: threads,
      maxThreads: threads,
    });
    try {
      const task: ScalingTask = {
        mode: 'slices',
        pairs,
        rounds,
        warmupMs: 1,
        barrier: new SharedArrayBuffer(4 * BARRIER_INT32S),
        threads,
      };
      const results = await Promise.all(
        Array.from({ length: threads }, () => pool.run<ScalingTaskResult>(task)),
      );
      for (const r of results) {
        expect(r.barrierTimedOut).toBe(false);
        expect(r.rounds).toHaveLength(rounds);
      }
      for (let round = 0; round < rounds; round++) {
        const each = results.map((r) => r.rounds[round]!);
        for (const t of each) {
          expect(t.pairsDone).toBeGreaterThanOrEqual(pairs);
          expect(t.endNs).toBeGreaterThan(t.startNs);
          if (process.platform === 'linux') expect(t.cpuNs).toBeGreaterThanOrEqual(0);
        }
        // Every thread started before any thread stopped: the windows overlap.
        const lastStart = maxOf(each.map((t) => t.startNs));
        const firstEnd = minOf(each.map((t) => t.endNs));
        expect(lastStart).toBeLessThan(firstEnd);
        // A round starts (barrier) only after every thread has ended the previous one.
        if (round > 0) {
          const previousEnd = maxOf(results.map((r) => r.rounds[round - 1]!.endNs));
          const firstStart = minOf(each.map((t) => t.startNs));
          expect(firstStart).toBeGreaterThan(previousEnd);
        }
      }
      // Each thread allocated from its own slice.
      const active = pool.stats().arena.slices.filter((s) => s.state === 'active' && s.claims > 0);
      expect(active.length).toBeGreaterThanOrEqual(threads);
      pool.arena.checkDirectory();
    } finally {
      await pool.destroy();
      device.destroy();
    }
    expect(pool.arena.stats().freeSuperblocks).toBe(pool.arena.superblockCount);
  });
});
