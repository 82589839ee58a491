// Scaling with the vCPU lottery taken out. On a shared host whose vCPUs run the same thread at
// different speeds (the GPU machine's: 1.8× apart), "efficiency = N threads / (N × one thread)"
// depends on which vCPU the one thread happened to get. Here every run is pinned with taskset:
// one thread alone on each CPU of the set in turn, then N threads on the whole set; efficiency is
// N threads' pairs per second over the sum of what those same N CPUs did alone. The same for the
// plain-JavaScript control (thread-control.mjs), so the host's own scaling is in the same output.
// Not part of the bench contract. Needs Linux taskset.
// Usage: node packages/bench/scripts/scaling-pinned.mjs [--device cuda|host] [--cpus 0-7]
//          [--runs 5] [--pairs 200000] [--json]
import { fileURLToPath } from 'node:url';
import { median } from '@gpupool/bench';
import { runPinned, takeCpus, takeFlag } from './script-support.mjs';

const args = process.argv.slice(2);
const json = args.includes('--json');
const device = takeFlag(args, '--device', 'host');
const cpus = takeCpus(args);
const runs = takeFlag(args, '--runs', '5');
const pairs = takeFlag(args, '--pairs', '200000');
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

const result = { device, cpus, runs: Number(runs), pairsPerThread: Number(pairs) };
for (const [name, rate] of [
  ['gpupool', poolRate],
  ['control', controlRate],
]) {
  const alone = cpus.map((c) => rate([c], 1));
  const together = rate(cpus, cpus.length);
  const sum = alone.reduce((a, b) => a + b, 0);
  result[name] = {
    alonePerCpu: alone,
    together,
    efficiency: together / sum,
    againstFastest: together / (cpus.length * Math.max(...alone)),
    againstSlowest: together / (cpus.length * Math.min(...alone)),
  };
}
if (json) console.log(JSON.stringify(result));
else {
  const m = (x) => (x / 1e6).toFixed(2);
  console.log(`pinned scaling, ${device} device, CPUs ${cpus.join(',')}:`);
  for (const name of ['gpupool', 'control']) {
    const r = result[name];
    console.log(
      `${name.padEnd(8)} alone (M/s per CPU) ${r.alonePerCpu.map(m).join(' ')} · ${cpus.length} together ${m(r.together)} · efficiency ${r.efficiency.toFixed(2)} (against the fastest CPU ${r.againstFastest.toFixed(2)}, the slowest ${r.againstSlowest.toFixed(2)})`,
    );
  }
}
