import { createPool, HostDevice, MiB } from '@gpupool/core';
import { afterEach, describe, expect, it } from 'vitest';
import { checkFrame } from '../src/check.js';
import { directSource, hostKernels, poolSource, prewarmSpecs, processFrame } from '../src/pipeline.js';
import { runPipeline } from '../src/run.js';

describe('pipeline on the main thread', () => {
  let device: HostDevice | undefined;
  afterEach(() => device?.destroy());

  it('releases every tensor of a frame and reuses pooled memory', () => {
    device = new HostDevice({ capacityBytes: 64 * MiB });
    const pool = createPool({ device });
    pool.prewarm(prewarmSpecs());
    const mapsAfterPrewarm = pool.stats().allocations;
    const kernels = hostKernels(device);
    for (let frame = 0; frame < 6; frame++) {
      const result = processFrame(poolSource(pool), kernels, 0, frame);
      expect(checkFrame(result).problems).toEqual([]);
      expect(pool.stats().liveBlocks).toBe(0);
    }
    const stats = pool.stats();
    // Prewarm maps the common shapes; the hot loop may map a page or two more where placement
    // lands past them, no more.
    expect(stats.allocations - mapsAfterPrewarm).toBeLessThanOrEqual(2);
    expect(stats.reuses / stats.acquires).toBeGreaterThan(0.8);
    expect(stats.leaks).toBe(0);
    pool.checkInvariants();
  });

  it('without a pool, frees every segment it allocated', () => {
    device = new HostDevice({ capacityBytes: 64 * MiB });
    const source = directSource(device);
    const kernels = hostKernels(device);
    for (let frame = 0; frame < 3; frame++) processFrame(source, kernels, 1, frame);
    expect(source.counts.allocations).toBeGreaterThanOrEqual(6);
    expect(source.counts.frees).toBe(source.counts.allocations);
    expect(device.calls.freeSegment).toBe(device.calls.allocateSegment);
  });

  it.each([true, false])('runPipeline (pool: %s) checks every frame right with no leaks', async (pool) => {
    const progress: number[] = [];
    const summary = await runPipeline({
      device: 'host',
      pool,
      frames: 4,
      cameras: 2,
      workers: 0,
      progressEveryMs: 0,
      onProgress: (p) => progress.push(p.framesDone),
    });
    expect(summary.problems).toEqual([]);
    expect(summary.framesChecked).toBe(8);
    expect(summary.framesWrong).toBe(0);
    expect(summary.leaks).toBe(0);
    expect(summary.returns).toBe(summary.acquires);
    expect(progress.at(-1)).toBe(8);
    if (pool) {
      expect(summary.reuses).toBeGreaterThan(0);
      expect(summary.snapshots.length).toBe(1);
    } else {
      expect(summary.reuses).toBe(0);
      expect(summary.deviceAllocCalls).toBe(summary.acquires);
    }
  });

  it('rejects the run (no unhandled rejection, no hang) when onProgress throws', async () => {
    await expect(
      runPipeline({
        device: 'host',
        pool: true,
        frames: 2,
        cameras: 1,
        workers: 0,
        progressEveryMs: 0,
        onProgress: () => {
          throw new Error('progress callback failed');
        },
      }),
    ).rejects.toThrow('progress callback failed');
  }, 20_000);
});
