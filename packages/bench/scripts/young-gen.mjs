// How V8's young generation moves replay timings: each trace is replayed as `replay` does (fresh
// pool per replay, one SimulatedDevice, the default policy), in fresh processes with Node's default
// heap flags and with each flag set given, and every replay prints its ns/op and the minor page
// faults its timed loop took (`replayTrace`'s pageFaults). On a VM where a page fault costs ~13 µs
// (the 2-core EPYC this was found on), V8 growing and shrinking its young generation (semi-space)
// between GCs faults in hundreds of pages in some replays: those replays run 2–3× slower, and
// which ones do changes from process to process — so one process's median is a draw.
// `--min-semi-space-size=16` keeps the young generation at its largest default size: no resizing,
// and the replays settle. Any V8 flags can be compared this way: the inlining budget
// (--max-inlined-bytecode-size-cumulative) was measured with it too (docs/benchmarks.md).
// Usage: node packages/bench/scripts/young-gen.mjs [--processes 4] [--replays 15] [--timed 5]
//        [--flags "A;B"] trace.gz...   (--flags: flag sets to compare, ';'-separated; '' = defaults)
// The child mode (`--child`) replays one trace and prints one JSON line. Medians are @gpupool/bench's
// (an even count: the mean of the middle two; runs before session 9 printed the lower of the two).
import { execFileSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { median } from '@gpupool/bench';
import { createPool, GiB, readTrace, replayTrace, SimulatedDevice } from '@gpupool/core';
import { takeFlag } from './script-support.mjs';

const args = process.argv.slice(2);
const processes = Number(takeFlag(args, '--processes', '4'));
const replays = Number(takeFlag(args, '--replays', '15'));
// The last `timed` replays are what `replay` would time (it runs 10 warm-up replays first).
const timed = Number(takeFlag(args, '--timed', '5'));
const flagSets = takeFlag(args, '--flags', ';--min-semi-space-size=16').split(';');
const child = takeFlag(args, '--child', undefined);

if (child !== undefined) {
  const trace = readTrace(child);
  const device = new SimulatedDevice({ capacityBytes: 80 * GiB });
  const runs = [];
  for (let r = 0; r < replays; r++) {
    const pool = createPool({ device, name: 'young-gen' });
    const result = replayTrace(trace, pool);
    pool.destroy();
    runs.push({ nsPerOp: result.elapsedNs / result.ops, faults: result.pageFaults });
  }
  console.log(JSON.stringify(runs));
} else {
  if (args.length === 0)
    throw new Error('usage: young-gen.mjs [--processes P] [--replays R] [--flags "A;B"] trace.gz...');
  const self = fileURLToPath(import.meta.url);
  console.log(
    `${processes} processes per (trace, flags), ${replays} replays each; per process: median ns/op of the last ${timed} (as replay times them) · page faults per replay's timed loop, min–max`,
  );
  for (const path of args) {
    for (const flags of flagSets) {
      const nodeFlags = flags.split(' ').filter((f) => f !== '');
      const cells = [];
      const medians = [];
      for (let p = 0; p < processes; p++) {
        const out = execFileSync(
          process.execPath,
          [...nodeFlags, self, '--child', path, '--replays', String(replays)],
          { encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'] },
        );
        const runs = JSON.parse(out).slice(-timed);
        const ns = median(runs.map((r) => r.nsPerOp));
        medians.push(ns);
        const faults = runs.map((r) => r.faults);
        cells.push(`${ns.toFixed(0)} (${Math.min(...faults)}–${Math.max(...faults)})`);
      }
      console.log(
        `${path.split('/').pop().replace('.trace.gz', '')} [${flags || 'defaults'}]: median of processes ${median(medians).toFixed(0)} ns/op · ${cells.join(' · ')}`,
      );
    }
  }
}
