// The warm acquire+release pair of several policies, timed in fresh processes taken in turn
// (round 1: A B C, round 2: A B C, …) rather than all of A's processes first as `latency` does. On a
// shared host whose speed drifts over a minute, `latency`'s grouping can hand the first policy the
// quiet seconds; interleaving gives every policy the same minutes. Each process is
// `latency --policy P --in-process --no-raw` (its median of 5 runs of ~40 ms).
// Usage: node packages/bench/scripts/pair-interleaved.mjs [--policies tlsf,bestFit,bestFitPools]
//        [--sizes 512,8192] [--rounds 5] [--device simulated|cuda] [--flags "--min-semi-space-size=16"]
import { execFileSync } from 'node:child_process';
import os from 'node:os';
import { fileURLToPath } from 'node:url';
import { median } from '@gpupool/bench';
import { takeFlag } from './script-support.mjs';

const args = process.argv.slice(2);
const policies = takeFlag(args, '--policies', 'tlsf,bestFit,bestFitPools').split(',');
const sizes = takeFlag(args, '--sizes', '512,8192');
const rounds = Number(takeFlag(args, '--rounds', '5'));
const device = takeFlag(args, '--device', 'simulated');
const flags = takeFlag(args, '--flags', '--min-semi-space-size=16').split(' ').filter(Boolean);
if (args.length > 0 || !Number.isInteger(rounds) || rounds < 1) {
  console.error(
    'usage: pair-interleaved.mjs [--policies A,B] [--sizes 512,8192] [--rounds N] [--device D] [--flags "..."]',
  );
  process.exit(2);
}
const cli = fileURLToPath(new URL('../dist/cli.js', import.meta.url));

/** ns per pair by policy, then by size: one value per process. */
const results = new Map(policies.map((p) => [p, new Map()]));
for (let r = 0; r < rounds; r++) {
  const line = [];
  for (const policy of policies) {
    const out = execFileSync(
      process.execPath,
      [
        ...flags,
        cli,
        'latency',
        '--policy',
        policy,
        '--in-process',
        '--no-raw',
        '--sizes',
        sizes,
        '--device',
        device,
        '--json',
      ],
      { encoding: 'utf8' },
    );
    for (const row of JSON.parse(out).pool) {
      const bySize = results.get(policy);
      if (!bySize.has(row.bytes)) bySize.set(row.bytes, []);
      bySize.get(row.bytes).push(row.nsPerPair);
      line.push(`${policy} ${row.bytes} B ${row.nsPerPair.toFixed(1)}`);
    }
  }
  console.log(`round ${r + 1}: ${line.join(' · ')}`);
}
console.log(
  `${device}; ${os.cpus()[0].model} x${os.cpus().length}; node ${process.version} ${flags.join(' ')}; ${rounds} rounds, median of the processes (min–max):`,
);
for (const [policy, bySize] of results) {
  const cells = [...bySize].map(
    ([bytes, v]) =>
      `${bytes} B ${median(v).toFixed(1)} ns (${Math.min(...v).toFixed(1)}–${Math.max(...v).toFixed(1)})`,
  );
  console.log(`  ${policy}: ${cells.join(' · ')}`);
}
