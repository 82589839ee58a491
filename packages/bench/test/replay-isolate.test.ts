import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { formatTrace } from '@gpupool/core';
import { afterAll, describe, expect, it, vi } from 'vitest';
import { syntheticTrace } from './helpers.js';

// The child processes runReplay starts (the real execFile still runs them).
const { spawned, recordSpawns } = await vi.hoisted(() => import('./spawn-recorder.js'));
vi.mock('node:child_process', recordSpawns);

const { replayChildArgs, runReplay } = await import('../src/commands/replay.js');
const { v8TimingFlags } = await import('../src/machine.js');
const { BenchUsageError } = await import('../src/errors.js');

const builtCli = existsSync(new URL('../dist/cli.js', import.meta.url));
const dir = mkdtempSync(join(tmpdir(), 'gpupool-isolate-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
const traceA = join(dir, 'a.trace');
const traceB = join(dir, 'b.trace');
writeFileSync(traceA, formatTrace(syntheticTrace('a', 200, 3)));
writeFileSync(traceB, formatTrace(syntheticTrace('b', 200, 11)));

describe('replay in fresh processes (isolate)', () => {
  it('builds the child command line from the options', () => {
    expect(
      replayChildArgs('t.gz', 'tlsf', { kind: 'simulated', capacityBytes: 2 * 2 ** 30 }, 3, 2, true),
    ).toEqual([
      'replay',
      't.gz',
      '--policy',
      'tlsf',
      '--device',
      'simulated',
      '--capacity-gib',
      '2',
      '--runs',
      '3',
      '--warmup',
      '2',
      '--json',
      '--detail',
    ]);
    expect(replayChildArgs('t.gz', 'bestFit', { kind: 'cuda', cudaMode: 'malloc' }, 1, 1, false)).toEqual([
      'replay',
      't.gz',
      '--policy',
      'bestFit',
      '--device',
      'cuda',
      '--cuda-mode',
      'malloc',
      '--runs',
      '1',
      '--warmup',
      '1',
      '--json',
    ]);
  });

  it.skipIf(!builtCli)(
    'starts one process per (trace, policy), in order, and gets the numbers the same replays give in this one',
    async () => {
      const options = { traces: [traceA, traceB], policies: ['tlsf', 'bestFit'], runs: 1, warmup: 1 };
      spawned.length = 0;
      const isolated = await runReplay({ ...options, isolate: true });
      expect(spawned).toHaveLength(4);
      const at = v8TimingFlags().length;
      expect(spawned.map((s) => s.file)).toEqual(Array(4).fill(process.execPath));
      expect(
        spawned.map((s) => [s.args[at]!.endsWith('cli.js'), s.args[at + 1], s.args[at + 2], s.args[at + 4]]),
      ).toEqual([
        [true, 'replay', traceA, 'tlsf'],
        [true, 'replay', traceA, 'bestFit'],
        [true, 'replay', traceB, 'tlsf'],
        [true, 'replay', traceB, 'bestFit'],
      ]);
      spawned.length = 0;
      const inProcess = await runReplay(options);
      expect(spawned).toHaveLength(0);
      // Placement is deterministic: only the times may differ.
      const numbers = (r: (typeof isolated)[number]) => [
        r.trace,
        r.policy,
        r.ops,
        r.peakLiveBytes,
        r.peakReservedBytes,
        r.ratio,
        r.deviceCalls,
      ];
      expect(isolated.map(numbers)).toEqual(inProcess.map(numbers));
      expect(isolated.every((r) => r.nsPerOp > 0 && r.runs === 1 && r.error === undefined)).toBe(true);
    },
  );

  it.skipIf(!builtCli)(
    "policies 'default': one child per trace, without --policy, as in this process",
    async () => {
      const options = { traces: [traceA], policies: 'default' as const, runs: 1, warmup: 1 };
      spawned.length = 0;
      const isolated = await runReplay({ ...options, isolate: true });
      expect(spawned).toHaveLength(1);
      expect(spawned[0]!.args).not.toContain('--policy');
      const inProcess = await runReplay(options);
      expect(inProcess).toHaveLength(1);
      expect(isolated.map((r) => [r.policy, r.peakReservedBytes])).toEqual(
        inProcess.map((r) => [r.policy, r.peakReservedBytes]),
      );
    },
  );

  it('needs trace files: a parsed trace is refused before any process starts', async () => {
    spawned.length = 0;
    await expect(
      runReplay({
        traces: [syntheticTrace('parsed', 50, 1)],
        policies: ['tlsf'],
        runs: 1,
        warmup: 1,
        isolate: true,
      }),
    ).rejects.toThrow(BenchUsageError);
    expect(spawned).toHaveLength(0);
  });
});
