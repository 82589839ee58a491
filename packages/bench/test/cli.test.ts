import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { formatTrace } from '@gpupool/core';
import { afterAll, describe, expect, it } from 'vitest';
import { cli, REPLAY_CONTRACT, syntheticTrace } from './helpers.js';

const dir = mkdtempSync(join(tmpdir(), 'gpupool-cli-'));
/** Commands that start child processes or worker threads run the built files (turbo: test dependsOn build). */
const builtCli = existsSync(new URL('../dist/cli.js', import.meta.url));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
const tracePath = join(dir, 'small.trace');
writeFileSync(tracePath, formatTrace(syntheticTrace('small', 300, 5)));

describe('gpupool-bench replay --json', () => {
  it('prints one object with the contract fields, ratio = reserved / live', async () => {
    const { code, out } = await cli('replay', tracePath, '--policy', 'tlsf', '--runs', '2', '--json');
    expect(code).toBe(0);
    const lines = out.trim().split('\n');
    expect(lines).toHaveLength(1);
    const r = JSON.parse(lines[0]!);
    for (const f of REPLAY_CONTRACT) expect(r).toHaveProperty(f);
    expect(r).toMatchObject({ trace: 'small', policy: 'tlsf', device: 'simulated', runs: 2 });
    expect(r.ops).toBeGreaterThan(300);
    expect(r.ratio).toBeCloseTo(r.peakReservedBytes / r.peakLiveBytes, 12);
    expect(r.ratio).toBeGreaterThanOrEqual(1);
    expect(r.nsPerOp).toBeGreaterThan(0);
    expect(r.deviceCalls).toBeGreaterThan(0);
    // A median of page-fault counts: of two runs, their mean.
    expect(Number.isFinite(r.pageFaults) && r.pageFaults >= 0 && Number.isInteger(r.pageFaults * 2)).toBe(
      true,
    );
    expect(r.timeline).toBeUndefined();
  });

  it('prints one object per line for every registered policy with --policy all', async () => {
    const { code, out } = await cli(
      'replay',
      tracePath,
      '--policy',
      'all',
      '--runs',
      '1',
      '--json',
      '--detail',
    );
    expect(code).toBe(0);
    const records = out
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l));
    expect(records.length).toBeGreaterThanOrEqual(2);
    for (const r of records) {
      expect(r.timeline.opIndex.length).toBeGreaterThan(10);
      expect(r.memoryMap.blocks.length).toBeGreaterThan(0);
    }
  });

  it('prints a readable table without --json', async () => {
    const { code, out } = await cli('replay', tracePath, '--policy', 'tlsf', '--runs', '1');
    expect(code).toBe(0);
    expect(out).toMatch(/trace\s+tlsf/);
    expect(out).toMatch(/small\s+1\.\d{3} · /);
  });
});

describe('bad command lines', () => {
  it.each([
    [['frobnicate'], 2, /unknown command "frobnicate"/],
    [['replay'], 2, /needs at least one trace/],
    [['replay', 'x.gz', '--runs', 'many'], 2, /--runs must be an integer/],
    [['replay', 'x.gz', '--device', 'tpu'], 2, /--device must be one of simulated, host, cuda/],
    [['replay', 'x.gz', '--policy', 'nope'], 2, /unknown policy "nope"/],
    [['latency', '--cuda-mode', 'malloc'], 2, /--cuda-mode needs --device cuda/],
    [['latency', '--processes', '0'], 2, /--processes/],
    [['replay', join(dir, 'missing.trace.gz')], 4, /trace file not found/],
  ])('%j exits %i with a clear message', async (argv, code, message) => {
    const r = await cli(...argv);
    expect(r.code).toBe(code);
    expect(r.err).toMatch(message);
    expect(r.out).toBe('');
  });

  it('--device cuda without a usable GPU says why (exit 3)', async () => {
    const native = await import('@gpupool/native').catch(() => undefined);
    if (native?.cuda.available === true) return; // a GPU is here: nothing to check
    const r = await cli('replay', tracePath, '--device', 'cuda', '--json');
    expect(r.code).toBe(3);
    expect(r.err).toMatch(/--device cuda/);
    expect(r.out).toBe('');
  });
});

describe('other commands', () => {
  it('latency --json --in-process gives pool rows by policy and size, and says why raw CUDA rows are missing', async () => {
    const { code, out } = await cli(
      'latency',
      '--json',
      '--in-process',
      '--runs',
      '1',
      '--run-ms',
      '1',
      '--sizes',
      '512,65536',
      '--policy',
      'tlsf',
    );
    expect(code).toBe(0);
    const r = JSON.parse(out);
    expect(r.kind).toBe('latency');
    expect(r.isolation).toBe('in-process');
    expect(r.pool.map((x: { bytes: number }) => x.bytes)).toEqual([512, 65536]);
    for (const row of r.pool) expect(row.nsPerPair).toBeGreaterThan(0);
    expect(r.raw).toEqual([]);
    expect(r.rawSkipped).toMatch(/--device cuda/);
  });

  it.skipIf(!builtCli)(
    'latency --json times each policy in its own process and merges the rows in policy order',
    async () => {
      const { code, out, err } = await cli(
        'latency',
        '--json',
        '--runs',
        '1',
        '--run-ms',
        '1',
        '--warmup-ms',
        '1',
        '--sizes',
        '512,65536',
        '--policy',
        'bestFit,tlsf',
        '--processes',
        '3',
      );
      expect(err).toBe('');
      expect(code).toBe(0);
      const r = JSON.parse(out);
      expect(r).toMatchObject({
        kind: 'latency',
        device: 'simulated',
        runs: 1,
        isolation: 'process-per-policy',
        processes: 3,
      });
      // Each row is the median of its three processes' medians.
      for (const row of r.pool) {
        expect(row.nsPerPairByProcess).toHaveLength(3);
        const sorted = [...row.nsPerPairByProcess].sort((a: number, b: number) => a - b);
        expect(row.nsPerPair).toBe(sorted[1]);
      }
      expect(r.pool.map((x: { policy: string; bytes: number }) => `${x.policy}:${x.bytes}`)).toEqual([
        'bestFit:512',
        'bestFit:65536',
        'tlsf:512',
        'tlsf:65536',
      ]);
      for (const row of r.pool) expect(row.nsPerPair).toBeGreaterThan(0);
      expect(r.iterations).toBeGreaterThan(0);
      expect(r.raw).toEqual([]);
      expect(r.rawSkipped).toMatch(/--device cuda/);
      const table = await cli(
        'latency',
        '--runs',
        '1',
        '--run-ms',
        '1',
        '--warmup-ms',
        '0',
        '--sizes',
        '512',
        '--policy',
        'tlsf',
        '--processes',
        '1',
      );
      expect(table.code).toBe(0);
      expect(table.out).toMatch(/each policy in its own process/);
      expect(table.out).toMatch(/512 B\s+\S+ [nµm]?s/);
    },
  );

  it.skipIf(!builtCli)('latency: a child process that fails keeps its message and exit status', async () => {
    const native = await import('@gpupool/native').catch(() => undefined);
    if (native?.cuda.available === true) return; // a GPU is here: nothing to check
    const r = await cli('latency', '--device', 'cuda', '--sizes', '512', '--runs', '1', '--json');
    expect(r.code).toBe(3);
    expect(r.err).toMatch(/^gpupool-bench: --device cuda: CUDA is not available here/);
    expect(r.out).toBe('');
  });

  it('capacity --json bisects per trace and policy', async () => {
    const { code, out } = await cli('capacity', tracePath, '--policy', 'tlsf', '--json');
    expect(code).toBe(0);
    const r = JSON.parse(out);
    expect(r).toMatchObject({ kind: 'capacity', trace: 'small', policy: 'tlsf', targetRatio: 1.05 });
    expect(r.minCapacityRatio).toBeGreaterThanOrEqual(1);
  });

  it('merge folds our records and peer lines into one table with the best peer', async () => {
    const ours = await cli('replay', tracePath, '--policy', 'tlsf', '--runs', '1', '--json');
    const mine = JSON.parse(ours.out);
    const peersPath = join(dir, 'peers.jsonl');
    const peer = (policy: string, ratio: number) =>
      JSON.stringify({
        ...mine,
        policy,
        ratio,
        peakReservedBytes: ratio * mine.peakLiveBytes,
        nsPerOp: 1500,
        deviceCalls: null,
        source: 'peer',
      });
    writeFileSync(peersPath, `${peer('pytorch-default', 1.6)}\n${peer('cupy-async', 1.2)}\n`);
    const oursPath = join(dir, 'ours.json');
    writeFileSync(oursPath, ours.out);
    const { code, out } = await cli('merge', oursPath, peersPath);
    expect(code).toBe(0);
    expect(out).toMatch(/tlsf\s+pytorch-default\s+cupy-async\s+best peer ratio/);
    expect(out).toMatch(/1\.200 \(cupy-async\)/);
    const asJson = await cli('merge', oursPath, peersPath, '--json');
    const bundle = JSON.parse(asJson.out);
    expect(bundle.replays).toHaveLength(3);
  });

  it('merge rejects a file that holds no result records', async () => {
    const bad = join(dir, 'bad.json');
    writeFileSync(bad, '{"hello": 1}');
    const r = await cli('merge', bad);
    expect(r.code).toBe(4);
    expect(r.err).toMatch(/no result record/);
  });
});

describe('scaling (built worker file)', () => {
  it.skipIf(!builtCli)(
    'reports slices and the locked pool per thread count, relative to one thread',
    async () => {
      const { code, out, err } = await cli(
        'scaling',
        '--workers',
        '1,2',
        '--pairs',
        '2000',
        '--runs',
        '1',
        '--warmup-ms',
        '5',
        '--json',
      );
      expect(err).toBe('');
      expect(code).toBe(0);
      const r = JSON.parse(out);
      expect(r).toMatchObject({ kind: 'scaling', runs: 1, pairsPerThread: 2000 });
      expect(r.rows.map((x: { mode: string; threads: number }) => `${x.mode}:${x.threads}`).sort()).toEqual([
        'locked:1',
        'locked:2',
        'slices:1',
        'slices:2',
      ]);
      for (const row of r.rows) expect(row.pairsPerSecond).toBeGreaterThan(0);
      expect(r.rows.find((x: { threads: number }) => x.threads === 1).efficiency).toBe(1);
      const table = await cli(
        'scaling',
        '--workers',
        '1',
        '--pairs',
        '500',
        '--runs',
        '1',
        '--warmup-ms',
        '0',
      );
      expect(table.code).toBe(0);
      expect(table.out).toMatch(/threads\s+slices pairs\/s\s+slices efficiency/);
    },
  );
});
