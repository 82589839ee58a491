// A longer run of the same workload: each trace replayed R times back to back in ONE pool
// (SimulatedDevice with CUDA's 2 MiB pages and, by default, 64 MiB allocations). Prints, per
// trace, the map and unmap calls of each repetition and the peak-reserved / peak-live ratio over
// the whole run. A single replay starts from an empty pool, so it shows growth; the later
// repetitions show what a long-running process keeps paying and how its peak settles.
// Usage: node packages/bench/scripts/repeat-replay.mjs [--repeats 4] [--allocation-mib 64]
//        [--policy NAME] trace.gz...   (no --policy: the pool's default for the device)
import { createPool, GiB, MiB, readTrace, SimulatedDevice } from '@gpupool/core';
import { takeFlag } from './script-support.mjs';

const args = process.argv.slice(2);
const repeats = Number(takeFlag(args, '--repeats', '4'));
const allocationMiB = Number(takeFlag(args, '--allocation-mib', '64'));
const policy = takeFlag(args, '--policy', undefined);
if (args.length === 0)
  throw new Error('usage: repeat-replay.mjs [--repeats R] [--allocation-mib M] [--policy NAME] trace.gz...');

for (const path of args) {
  const trace = readTrace(path);
  const device = new SimulatedDevice({
    capacityBytes: 80 * GiB,
    pageBytes: 2 * MiB,
    allocationBytes: allocationMiB * MiB,
  });
  let calls = 0;
  for (const kind of ['map', 'unmap']) {
    const inner = device[kind].bind(device);
    device[kind] = (...callArgs) => {
      calls++;
      return inner(...callArgs);
    };
  }
  const pool = createPool({ device, policy, detectLeaks: false });
  const perRepetition = [];
  let live = 0;
  let peakLive = 0;
  let peakReserved = 0;
  for (let r = 0; r < repeats; r++) {
    const before = calls;
    const blocks = new Array(trace.idCount);
    for (let i = 0; i < trace.length; i++) {
      const id = trace.ids[i];
      if (trace.kinds[i] === 0) {
        blocks[id] = pool.acquire(trace.bytes[i]);
        live += trace.bytes[i];
        if (live > peakLive) peakLive = live;
        const reserved = pool.stats().reservedBytes;
        if (reserved > peakReserved) peakReserved = reserved;
      } else {
        live -= blocks[id].bytes;
        blocks[id].release();
        blocks[id] = undefined;
      }
    }
    // Blocks the trace leaves live end with its repetition, as they would with a new request.
    for (const b of blocks) {
      if (b === undefined) continue;
      live -= b.bytes;
      b.release();
    }
    perRepetition.push(calls - before);
  }
  const name = pool.snapshot().policy;
  pool.destroy();
  console.log(
    `${trace.name} (${name}, ${allocationMiB} MiB allocations): calls per repetition ${perRepetition.join(' / ')}; ratio over the run ${(peakReserved / peakLive).toFixed(4)}`,
  );
}
