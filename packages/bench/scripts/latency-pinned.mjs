// The warm acquire+release pair with the vCPU lottery taken out: `gpupool-bench latency` pinned
// with taskset to each CPU of a set in turn (one process per CPU), so every CPU's figure is known
// and the median over the set is the pair on a typical CPU of that machine. One unpinned process
// measures whichever CPU it lands on (48–92 ns for the same pair on the GPU machine's vCPUs).
// Not part of the bench contract. Needs Linux taskset.
// Usage: node packages/bench/scripts/latency-pinned.mjs [--device cuda|simulated] [--cpus 0-7]
//          [--policy bestFit] [--sizes 512,8192] [--json]
import { fileURLToPath } from 'node:url';
import { median } from '@gpupool/bench';
import { runPinned, takeCpus, takeFlag } from './script-support.mjs';

const args = process.argv.slice(2);
const json = args.includes('--json');
const device = takeFlag(args, '--device', 'simulated');
const policy = takeFlag(args, '--policy', 'bestFit');
const sizes = takeFlag(args, '--sizes', '512,8192');
const cpus = takeCpus(args);
const cli = fileURLToPath(new URL('../dist/cli.js', import.meta.url));

const perCpu = {}; // bytes → ns per pair on each CPU, in the order of `cpus`
for (const cpu of cpus) {
  const out = runPinned(
    [cpu],
    [
      cli,
      'latency',
      '--device',
      device,
      '--policy',
      policy,
      '--sizes',
      sizes,
      '--processes',
      '1',
      '--no-raw',
      '--json',
    ],
  );
  for (const row of JSON.parse(out).pool) {
    perCpu[row.bytes] ??= [];
    perCpu[row.bytes].push(row.nsPerPair);
  }
}
const result = {
  device,
  policy,
  cpus,
  sizes: Object.entries(perCpu).map(([bytes, ns]) => ({
    bytes: Number(bytes),
    nsPerPairByCpu: ns,
    medianNsPerPair: median(ns),
    minNsPerPair: Math.min(...ns),
    maxNsPerPair: Math.max(...ns),
  })),
};
if (json) console.log(JSON.stringify(result));
else {
  console.log(`pinned latency, ${policy} on ${device}, CPUs ${cpus.join(',')}:`);
  for (const s of result.sizes) {
    console.log(
      `${String(s.bytes).padStart(9)} B  median ${s.medianNsPerPair.toFixed(1)} ns  (per CPU: ${s.nsPerPairByCpu.map((n) => n.toFixed(1)).join(' ')})`,
    );
  }
}
