/** Small synthetic traces for tests (real traces are too slow for CI). */
import { parseTrace, type Trace } from '@gpupool/core';
import { runCli } from '../src/cli-main.js';

/** A deterministic mix of small and large blocks with varied lifetimes: `count` allocations. */
export function syntheticTrace(name = 'synthetic', count = 400, seed = 7): Trace {
  let state = seed;
  const random = (): number => {
    state = (state * 1103515245 + 12345) % 2 ** 31;
    return state / 2 ** 31;
  };
  const lines: string[] = ['# synthetic test trace'];
  const live: number[] = [];
  for (let id = 0; id < count; id++) {
    const big = random() < 0.1;
    const bytes = big ? 1 + Math.floor(random() * 8 * 2 ** 20) : 1 + Math.floor(random() * 64 * 1024);
    lines.push(`a ${id} ${bytes}`);
    live.push(id);
    while (live.length > 0 && random() < 0.45) {
      const at = Math.floor(random() * live.length);
      lines.push(`f ${live[at]}`);
      live.splice(at, 1);
    }
  }
  return parseTrace(lines.join('\n'), name);
}

/** The contract of ../shared/DESIGN.md (bench): these fields, in every replay object. */
export const REPLAY_CONTRACT = [
  'trace',
  'policy',
  'device',
  'ops',
  'peakLiveBytes',
  'peakReservedBytes',
  'ratio',
  'nsPerOp',
  'deviceCalls',
];

/** Runs the CLI in this process, collecting what it prints. */
export async function cli(...argv: string[]): Promise<{ code: number; out: string; err: string }> {
  let out = '';
  let err = '';
  const code = await runCli(argv, { stdout: (t) => (out += t), stderr: (t) => (err += t), progress: false });
  return { code, out, err };
}
