// The warm acquire+release pair with the vCPU lottery taken out: `gpupool-bench latency` pinned
// with taskset to each CPU of a set in turn (one process per CPU), so every CPU's figure is known
// and the median over the set is the pair on a typical CPU of that machine. One unpinned process
// measures whichever CPU it lands on (48–92 ns for the same pair on the GPU machine's vCPUs).
// Not part of the bench contract. Needs Linux taskset.
// Usage: node packages/bench/scripts/latency-pinned.mjs [--device cuda|simulated] [--cpus 0-7]
//          [--policy bestFit] [--sizes 512,8192] [--json]
import { execFileSync } from 'node:child_process';
import os from 'node:os';
import { fileURLToPath } from 'node:url';
import { takeFlag } from './script-support.mjs';

const args = process.argv.slice(2);
const json = args.includes('--json');
const device = takeFlag(args, '--device', 'simulated');
const policy = takeFlag(args, '--policy', 'bestFit');
const sizes = takeFlag(args, '--sizes', '512,8192');
const cpuCount = os.cpus().length;
const cpus = parseCpus(takeFlag(args, '--cpus', `0-${Math.min(8, cpuCount) - 1}`));
const cli = fileURLToPath(new URL('../dist/cli.js', import.meta.url));

/** "0-3,6" → [0, 1, 2, 3, 6]. */
function parseCpus(spec) {
  const list = [];
  for (const part of spec.split(',')) {
    const [a, b = a] = part.split('-').map(Number);
    if (!Number.isInteger(a) || !Number.isInteger(b) || a > b || b >= cpuCount)
      throw new Error(`--cpus: "${spec}" is not a list of CPUs 0..${cpuCount - 1}`);
    for (let c = a; c <= b; c++) list.push(c);
  }
  return list;
}

const median = (values) => {
  const s = [...values].sort((x, y) => x - y);
  const m = s.length >> 1;
  return s.length % 2 === 1 ? s[m] : (s[m - 1] + s[m]) / 2;
};

const perCpu = {}; // bytes → ns per pair on each CPU, in the order of `cpus`
for (const cpu of cpus) {
  const out = execFileSync(
    'taskset',
    [
      '-c',
      String(cpu),
      process.execPath,
      cli,
      'latency',
      '--device',
      device,
      '--policy',
      policy,
      '--sizes',
      sizes,
    ].concat(['--processes', '1', '--no-raw', '--json']),
    { encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'] },
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
