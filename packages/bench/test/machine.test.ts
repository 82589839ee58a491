import { describe, expect, it } from 'vitest';
import { machineInfo, v8TimingFlags } from '../src/machine.js';

describe('machine info', () => {
  it('passes on V8 heap and inlining flags only, and records them', () => {
    expect(
      v8TimingFlags([
        '--min-semi-space-size=16',
        '-e',
        'x',
        '--inspect',
        '--max-old-space-size=4096',
        '--max-semi-space-size',
        '--max-inlined-bytecode-size-cumulative=2000',
        '--max-inlined-bytecode-size=600',
        '--max-inlined-bytecode-size-cumulative',
        '--trace-opt',
      ]),
    ).toEqual([
      '--min-semi-space-size=16',
      '--max-old-space-size=4096',
      '--max-inlined-bytecode-size-cumulative=2000',
      '--max-inlined-bytecode-size=600',
    ]);
    expect(machineInfo().nodeFlags).toEqual(v8TimingFlags(process.execArgv));
  });

  it("records the carried build's commit when GPUPOOL_COMMIT says it, else the checkout's", () => {
    const saved = process.env.GPUPOOL_COMMIT;
    try {
      process.env.GPUPOOL_COMMIT = 'abc1234';
      expect(machineInfo().commit).toBe('abc1234');
      delete process.env.GPUPOOL_COMMIT;
      expect(machineInfo().commit).not.toBe('abc1234');
    } finally {
      if (saved === undefined) delete process.env.GPUPOOL_COMMIT;
      else process.env.GPUPOOL_COMMIT = saved;
    }
  });
});
