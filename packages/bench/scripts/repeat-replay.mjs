// A longer run of the same workload: each trace replayed R times back to back in ONE pool
// (SimulatedDevice with CUDA's 2 MiB pages and, by default, 64 MiB allocations). Prints, per
// trace, the map and unmap calls of each repetition and the peak-reserved / peak-live ratio over
// the whole run. A single replay starts from an empty pool, so it shows growth; the later
// repetitions show what a long-running process keeps paying and how its peak settles.
// Usage: node packages/bench/scripts/repeat-replay.mjs [--repeats 4] [--allocation-mib 64]
//        [--policy NAME] trace.gz...   (no --policy: the pool's default for the device)
import { createPool, GiB, MiB, readTrace, replayTrace, SimulatedDevice } from '@gpupool/core';
import { takeFlag, watchMapCalls } from './script-support.mjs';

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
  watchMapCalls(device, () => calls++);
  const pool = createPool({ device, policy, detectLeaks: false });
  const perRepetition = [];
  let peakLive = 0;
  let peakReserved = 0;
  for (let r = 0; r < repeats; r++) {
    const before = calls;
    // Blocks the trace leaves live end with its repetition (releaseAtEnd), as with a new request.
    const replayed = replayTrace(trace, pool);
    peakLive = Math.max(peakLive, replayed.peakLiveBytes);
    peakReserved = Math.max(peakReserved, replayed.peakReservedBytes);
    perRepetition.push(calls - before);
  }
  const name = pool.snapshot().policy;
  pool.destroy();
  console.log(
    `${trace.name} (${name}, ${allocationMiB} MiB allocations): calls per repetition ${perRepetition.join(' / ')}; ratio over the run ${(peakReserved / peakLive).toFixed(4)}`,
  );
}
