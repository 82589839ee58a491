// Scaling with the vCPU lottery taken out. On a shared host whose vCPUs run the same thread at
// different speeds (the GPU machine's: 1.8× apart), "efficiency = N threads / (N × one thread)"
// depends on which vCPU the one thread happened to get. Here every run is pinned with taskset:
// one thread alone on each CPU of the set in turn, then N threads on the whole set; efficiency is
// N threads' pairs per second over the sum of what those same N CPUs did alone. The same for the
// plain-JavaScript control (thread-control.mjs), so the host's own scaling is in the same output.
// A shared host's load moves from minute to minute, and a sweep of N CPUs alone takes a while: with
// `--rounds R`, the sweep and the N-thread run alternate R times (gpupool and control interleaved,
// the order flipped every round), each round gives its own efficiency, and the median of those is
// the result.
// Not part of the bench contract. Needs Linux taskset.
// Usage: node packages/bench/scripts/scaling-pinned.mjs [--device cuda|host] [--cpus 0-7]
//          [--runs 5] [--pairs 200000] [--rounds 1] [--json]
import { fileURLToPath } from 'node:url';
import { median } from '@gpupool/bench';
import { runPinned, takeCpus, takeFlag } from './script-support.mjs';

const args = process.argv.slice(2);
const json = args.includes('--json');
const device = takeFlag(args, '--device', 'host');
const cpus = takeCpus(args);
const runs = takeFlag(args, '--runs', '5');
const pairs = takeFlag(args, '--pairs', '200000');
const rounds = Number(takeFlag(args, '--rounds', '1'));
if (!Number.isInteger(rounds) || rounds < 1) throw new Error('--rounds: a positive integer');
const cli = fileURLToPath(new URL('../dist/cli.js', import.meta.url));
const control = fileURLToPath(new URL('./thread-control.mjs', import.meta.url));

/** gpupool slices: pairs per second of `threads` threads, pinned to `cpuList`. */
function poolRate(cpuList, threads) {
  const out = runPinned(cpuList, [
    cli,
    'scaling',
    '--device',
    device,
    '--workers',
    String(threads),
    '--runs',
    runs,
    '--pairs',
    pairs,
    '--json',
  ]);
  const row = JSON.parse(out).rows.find((r) => r.mode === 'slices' && r.threads === threads);
  return row.pairsPerSecond;
}

/** Plain JavaScript: total ops per second of `threads` threads (median of 3), pinned to `cpuList`. */
function controlRate(cpuList, threads) {
  const out = runPinned(cpuList, [control, '--threads', `${threads},${threads},${threads}`, '--json']);
  return median(
    out
      .trim()
      .split('\n')
      .map((line) => JSON.parse(line).totalOpsPerSecond),
  );
}

/** One round for one workload: each CPU alone, and all together (together first when `flip`). */
function measure(rate, flip) {
  const togetherFirst = flip ? rate(cpus, cpus.length) : undefined;
  const alone = cpus.map((c) => rate([c], 1));
  const together = togetherFirst ?? rate(cpus, cpus.length);
  const sum = alone.reduce((a, b) => a + b, 0);
  return {
    alonePerCpu: alone,
    together,
    efficiency: together / sum,
    againstFastest: together / (cpus.length * Math.max(...alone)),
    againstSlowest: together / (cpus.length * Math.min(...alone)),
  };
}

const result = { device, cpus, runs: Number(runs), pairsPerThread: Number(pairs), rounds };
const workloads = [
  ['gpupool', poolRate],
  ['control', controlRate],
];
const perRound = Object.fromEntries(workloads.map(([name]) => [name, []]));
for (let k = 0; k < rounds; k++) {
  const flip = k % 2 === 1;
  for (const [name, rate] of flip ? [...workloads].reverse() : workloads)
    perRound[name].push(measure(rate, flip));
}
for (const [name] of workloads) {
  const all = perRound[name];
  const efficiencies = all.map((r) => r.efficiency);
  // Per-CPU and together figures are those of the round at the (lower) median efficiency.
  const middle = [...all].sort((a, b) => a.efficiency - b.efficiency)[(all.length - 1) >> 1];
  result[name] = { ...middle, efficiency: median(efficiencies), roundEfficiencies: efficiencies };
}
if (json) console.log(JSON.stringify(result));
else {
  const m = (x) => (x / 1e6).toFixed(2);
  console.log(`pinned scaling, ${device} device, CPUs ${cpus.join(',')}:`);
  for (const [name] of workloads) {
    const r = result[name];
    console.log(
      `${name.padEnd(8)} alone (M/s per CPU) ${r.alonePerCpu.map(m).join(' ')} · ${cpus.length} together ${m(r.together)} · efficiency ${r.efficiency.toFixed(2)} (against the fastest CPU ${r.againstFastest.toFixed(2)}, the slowest ${r.againstSlowest.toFixed(2)})${rounds > 1 ? ` · median of ${rounds} rounds: ${r.roundEfficiencies.map((e) => e.toFixed(2)).join(' ')}` : ''}`,
    );
  }
}
