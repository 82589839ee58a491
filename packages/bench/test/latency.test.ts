import { existsSync } from 'node:fs';
import { describe, expect, it, vi } from 'vitest';

// The child processes runLatency starts (the real execFile still runs them).
const { spawned, recordSpawns } = await vi.hoisted(() => import('./spawn-recorder.js'));
vi.mock('node:child_process', recordSpawns);

const { latencyChildArgs, runLatency } = await import('../src/commands/latency.js');
const { runCli } = await import('../src/cli-main.js');
const { v8TimingFlags } = await import('../src/machine.js');

const builtCli = existsSync(new URL('../dist/cli.js', import.meta.url));

/** One size, one short run, no warm-up: what these tests need of a timing. */
const QUICK = { sizesBytes: [512], runs: 1, runTargetMs: 1, warmupMs: 0 } as const;

describe('latency: one process per policy', () => {
  it('builds the child command line from the device spec', () => {
    expect(latencyChildArgs('tlsf', { kind: 'simulated' }, [512, 8192], 5, 40, 40)).toEqual([
      'latency',
      '--in-process',
      '--no-raw',
      '--json',
      '--policy',
      'tlsf',
      '--device',
      'simulated',
      '--runs',
      '5',
      '--sizes',
      '512,8192',
      '--run-ms',
      '40',
      '--warmup-ms',
      '40',
    ]);
    const sim = latencyChildArgs(
      'bestFit',
      { kind: 'simulated', capacityBytes: 3 * 2 ** 29 },
      [512],
      1,
      2.5,
      0,
    );
    expect(sim.slice(sim.indexOf('--capacity-gib'), sim.indexOf('--capacity-gib') + 2)).toEqual([
      '--capacity-gib',
      '1.5',
    ]);
    const cuda = latencyChildArgs('bestFit', { kind: 'cuda', cudaMode: 'mallocAsync' }, [512], 1, 1, 1);
    expect(cuda).toContain('--no-raw');
    expect(cuda.slice(cuda.indexOf('--device'), cuda.indexOf('--device') + 4)).toEqual([
      '--device',
      'cuda',
      '--cuda-mode',
      'mallocAsync',
    ]);
    // The host device's capacity is set by the child itself.
    expect(latencyChildArgs('tlsf', { kind: 'host', capacityBytes: 2 ** 30 }, [512], 1, 1, 1)).not.toContain(
      '--capacity-gib',
    );
  });

  it('the child command line is one the CLI accepts: one policy, timed in that process, no raw rows', async () => {
    let out = '';
    let err = '';
    const code = await runCli(latencyChildArgs('sizeClass', { kind: 'simulated' }, [512], 1, 1, 1), {
      stdout: (t) => (out += t),
      stderr: (t) => (err += t),
      progress: false,
    });
    expect(err).toBe('');
    expect(code).toBe(0);
    const r = JSON.parse(out);
    expect(r).toMatchObject({ kind: 'latency', isolation: 'in-process', raw: [] });
    expect(r.pool.map((x: { policy: string }) => x.policy)).toEqual(['sizeClass']);
  });

  it.skipIf(!builtCli)('starts one fresh process of the built CLI per policy, in order', async () => {
    spawned.length = 0;
    const record = await runLatency({
      policies: ['exactShape', 'tlsf', 'bestFit'],
      ...QUICK,
      processes: 1,
    });
    expect(spawned.map((s) => s.file)).toEqual([process.execPath, process.execPath, process.execPath]);
    expect(
      spawned.every(
        (s) => s.args[v8TimingFlags().length]!.endsWith('cli.js') && s.args.includes('--in-process'),
      ),
    ).toBe(true);
    expect(spawned.map((s) => s.args[s.args.indexOf('--policy') + 1])).toEqual([
      'exactShape',
      'tlsf',
      'bestFit',
    ]);
    expect(record.isolation).toBe('process-per-policy');
    expect(record.pool.map((r) => r.policy)).toEqual(['exactShape', 'tlsf', 'bestFit']);
  });

  it.skipIf(!builtCli)("gives each child the parent's V8 timing flags before the CLI", async () => {
    const saved = process.execArgv;
    process.execArgv = [...saved, '--min-semi-space-size=16'];
    try {
      spawned.length = 0;
      const record = await runLatency({ policies: ['tlsf'], ...QUICK, processes: 1 });
      const args = spawned[0]!.args;
      const cli = args.findIndex((a) => a.endsWith('cli.js'));
      expect(args.slice(0, cli)).toEqual(v8TimingFlags(process.execArgv));
      expect(args.slice(0, cli)).toContain('--min-semi-space-size=16');
      expect(record.pool.map((r) => r.policy)).toEqual(['tlsf']);
    } finally {
      process.execArgv = saved;
    }
  });

  it.skipIf(!builtCli)(
    'processes: N starts N fresh processes per policy and reports their median',
    async () => {
      spawned.length = 0;
      const record = await runLatency({
        policies: ['tlsf', 'bestFit'],
        ...QUICK,
        processes: 2,
      });
      expect(spawned.map((s) => s.args[s.args.indexOf('--policy') + 1])).toEqual([
        'tlsf',
        'tlsf',
        'bestFit',
        'bestFit',
      ]);
      expect(record.processes).toBe(2);
      for (const row of record.pool) {
        const [a, b] = row.nsPerPairByProcess!;
        expect(row.nsPerPair).toBeCloseTo((a! + b!) / 2, 9);
      }
    },
  );

  it('rejects processes that are not a positive integer, before starting anything', async () => {
    spawned.length = 0;
    await expect(runLatency({ policies: ['tlsf'], sizesBytes: [512], processes: 0 })).rejects.toThrow(
      /processes must be an integer ≥ 1/,
    );
    expect(spawned).toEqual([]);
  });

  it('isolate: false starts no process', async () => {
    spawned.length = 0;
    const record = await runLatency({
      policies: ['tlsf', 'bestFit'],
      ...QUICK,
      isolate: false,
    });
    expect(spawned).toEqual([]);
    expect(record.isolation).toBe('in-process');
    expect(record.pool).toHaveLength(2);
  });
});
