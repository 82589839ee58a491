/**
 * The command line's edges, as a user meets them: what `--json` prints without `--policy`, bad input
 * files, bad output paths, options the help must name. Every failure is one typed line on stderr
 * and an exit status, never a stack trace.
 */

import { constants as bufferConstants } from 'node:buffer';
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { defaultPolicyName, formatTrace, GiB, SimulatedDevice } from '@gpupool/core';
import { afterAll, describe, expect, it } from 'vitest';
import { USAGE } from '../src/cli-main.js';
import { cli, REPLAY_CONTRACT, syntheticTrace } from './helpers.js';

/** scaling starts worker threads from the built files (turbo: test dependsOn build). */
const builtCli = existsSync(new URL('../dist/cli.js', import.meta.url));
const dir = mkdtempSync(join(tmpdir(), 'gpupool-cli-edges-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
const tracePath = join(dir, 'small.trace');
writeFileSync(tracePath, formatTrace(syntheticTrace('small', 200, 3)));

function file(name: string, content: string | Uint8Array): string {
  const path = join(dir, name);
  writeFileSync(path, content);
  return path;
}

/** A failure a user can read: a `gpupool-bench:` line, no stack frames. */
function expectClearError(err: string): void {
  expect(err).toMatch(/^gpupool-bench: /);
  expect(err).not.toMatch(/unexpected error/);
  expect(err).not.toMatch(/\n\s+at /);
}

describe('replay --json without --policy', () => {
  it("prints exactly one JSON document: the pool's default policy for the device", async () => {
    const { code, out } = await cli('replay', tracePath, '--runs', '1', '--warmup', '1', '--json');
    expect(code).toBe(0);
    const record = JSON.parse(out);
    for (const f of REPLAY_CONTRACT) expect(record).toHaveProperty(f);
    const device = new SimulatedDevice({ capacityBytes: GiB });
    expect(record.policy).toBe(defaultPolicyName(device, {}));
    device.destroy();
  });
});

describe('bad trace files', () => {
  it.each([
    ['an empty file', 'empty.trace', '', /no operations/],
    ['comments only', 'comments.trace', '# recorded by nobody\n\n', /no operations/],
  ])('%s is an input error (exit 4) for replay and capacity', async (_what, name, content, message) => {
    const path = file(name, content);
    for (const command of ['replay', 'capacity']) {
      const r = await cli(command, path, '--json');
      expect(r.code).toBe(4);
      expectClearError(r.err);
      expect(r.err).toMatch(message);
      expect(r.err).toContain(path);
      expect(r.out).toBe('');
    }
  });

  it('a .gz file that is not gzip says so', async () => {
    const path = file('plain.trace.gz', 'this is not a trace\n');
    const r = await cli('replay', path, '--json');
    expect(r.code).toBe(4);
    expectClearError(r.err);
    expect(r.err).toMatch(/not gzip/);
  });

  it('a folder is named as one', async () => {
    const folder = join(dir, 'folder.trace.gz');
    mkdirSync(folder, { recursive: true });
    const r = await cli('replay', folder);
    expect(r.code).toBe(4);
    expectClearError(r.err);
    expect(r.err).toMatch(/is a directory/);
  });

  it('capacity of a trace that never holds a live byte is an input error', async () => {
    const path = file('zero.trace', 'a 0 0\nf 0\n');
    const r = await cli('capacity', path, '--policy', 'tlsf', '--json');
    expect(r.code).toBe(4);
    expectClearError(r.err);
    expect(r.err).toMatch(/peak live/);
    expect(r.out).toBe('');
  });
});

describe('bad options that used to fail late or deep inside', () => {
  it('scaling --policy with an unknown name is a usage error before any worker starts', async () => {
    const r = await cli('scaling', '--policy', 'nope', '--workers', '1');
    expect(r.code).toBe(2);
    expectClearError(r.err);
    expect(r.err).toMatch(/unknown policy "nope"/);
  });

  it.skipIf(!builtCli)(
    'scaling runs every thread count --workers accepts beyond the 64 default slices',
    async () => {
      // 65 threads plus the main thread's slice: more than @gpupool/workers' default 64 slice slots.
      const r = await cli(
        ...['scaling', '--workers', '65', '--pairs', '50', '--runs', '1', '--warmup-ms', '0', '--json'],
      );
      expect(r.err).toBe('');
      expect(r.code).toBe(0);
      const record = JSON.parse(r.out);
      expect(record.rows.map((x: { threads: number }) => x.threads)).toContain(65);
    },
    180_000,
  );

  it.skipIf(bufferConstants.MAX_LENGTH > 8 * GiB)(
    '--device host for a trace larger than a typed array can view is a device error (exit 3)',
    async () => {
      // Peak live 3 GB: a HostDevice of twice that, more than Node 20 can view (4 GiB).
      const path = file('big.trace', 'a 0 3000000000\nf 0\n');
      const r = await cli(
        'replay',
        path,
        '--device',
        'host',
        '--policy',
        'tlsf',
        '--runs',
        '1',
        '--warmup',
        '1',
      );
      expect(r.code).toBe(3);
      expectClearError(r.err);
      expect(r.err).toMatch(/--device host/);
    },
  );

  it('latency --sizes larger than the device is a usage error naming --sizes', async () => {
    const r = await cli(
      ...['latency', '--in-process', '--policy', 'tlsf', '--capacity-gib', '1', '--sizes', String(2 * GiB)],
      ...['--runs', '1', '--run-ms', '1', '--warmup-ms', '0', '--json'],
    );
    expect(r.code).toBe(2);
    expectClearError(r.err);
    expect(r.err).toMatch(/--sizes/);
    expect(r.out).toBe('');
  });

  it('--report into a missing folder is a usage error before the benchmark runs', async () => {
    const report = join(dir, 'no', 'such', 'folder', 'r.html');
    const r = await cli('replay', tracePath, '--policy', 'tlsf', '--runs', '1', '--report', report);
    expect(r.code).toBe(2);
    expectClearError(r.err);
    expect(r.err).toMatch(/--report/);
    expect(r.out).toBe('');
  });

  it('--report naming a folder is a usage error', async () => {
    const r = await cli('replay', tracePath, '--policy', 'tlsf', '--runs', '1', '--report', dir);
    expect(r.code).toBe(2);
    expectClearError(r.err);
    expect(r.err).toMatch(/--report/);
  });

  it('merge and --peers reject a file that holds no result records at all', async () => {
    const junk = file('junk.json', 'no json here {\n');
    const empty = file('empty.json', '');
    for (const path of [junk, empty]) {
      const merged = await cli('merge', path);
      expect(merged.code).toBe(4);
      expectClearError(merged.err);
      expect(merged.err).toMatch(/no result records/);
      const peers = await cli('replay', tracePath, '--policy', 'tlsf', '--runs', '1', '--peers', path);
      expect(peers.code).toBe(4);
      expect(peers.err).toMatch(/no result records/);
    }
  });
});

describe('readable output', () => {
  it('the replay table says why a replay failed', async () => {
    // 1 MiB of simulated device: the synthetic trace's large blocks do not fit.
    const r = await cli('replay', tracePath, '--policy', 'tlsf', '--runs', '1', '--capacity-gib', '0.001');
    expect(r.code).toBe(0);
    expect(r.out).toMatch(/small\s+error/);
    expect(r.out).toMatch(/small\/tlsf: OutOfMemoryError: /);
  });
});

describe('--help', () => {
  it('-h after a command prints the usage', async () => {
    const r = await cli('replay', '-h');
    expect(r.code).toBe(0);
    expect(r.out).toBe(`${USAGE}\n`);
  });

  it("names suite's default trace folders as they are looked for, wherever it runs", () => {
    // From a package folder, absolute paths made from the working directory named folders that do not exist.
    expect(USAGE).not.toContain(process.cwd());
    expect(USAGE).toContain('packages/core/test/fixtures');
    expect(USAGE).toContain('../shared/traces');
  });

  /** The lines of USAGE that describe `command`, up to the next command. */
  function section(command: string): string {
    const lines = USAGE.split('\n');
    const start = lines.findIndex((l) => l.startsWith(`  ${command} `));
    expect(start).toBeGreaterThanOrEqual(0);
    const end = lines.findIndex((l, i) => i > start && /^ {2}[a-z]/.test(l));
    return lines.slice(start, end < 0 ? undefined : end).join('\n');
  }

  it.each(['replay', 'latency', 'scaling', 'capacity', 'merge', 'suite'])(
    'names every option that %s accepts',
    async (command) => {
      // The unknown-option error lists what the command accepts.
      const r = await cli(command, '--no-such-option');
      const known = /\(known: (.*)\)/.exec(r.err)?.[1]?.split(', ') ?? [];
      expect(known.length).toBeGreaterThan(0);
      const everyCommand = USAGE.slice(USAGE.indexOf('every command:'));
      const text = section(command);
      for (const option of known) {
        const named = new RegExp(`${option}(?![\\w-])`);
        expect(named.test(text) || named.test(everyCommand), `${command} ${option}`).toBe(true);
      }
    },
  );
});
