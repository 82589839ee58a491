import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { deviceArgs, runCliChildRecord } from '../src/cli-child.js';
import { BenchDeviceError, BenchUsageError } from '../src/errors.js';

// Stand-ins for the CLI: each prints what a child might, and exits as it would.
const dir = mkdtempSync(join(tmpdir(), 'gpupool-child-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
function fakeCli(name: string, body: string): string {
  const path = join(dir, `${name}.mjs`);
  writeFileSync(path, body);
  return path;
}
const isThing = (v: unknown): v is { kind: 'thing' } =>
  typeof v === 'object' && v !== null && (v as { kind?: unknown }).kind === 'thing';

describe('child processes of the CLI', () => {
  it('returns the one JSON record a child prints', async () => {
    const cli = fakeCli('ok', 'console.log(JSON.stringify({ kind: "thing", args: process.argv.slice(2) }));');
    const record = await runCliChildRecord(cli, ['replay', 'x'], 'thing', isThing);
    expect(record).toEqual({ kind: 'thing', args: ['replay', 'x'] });
  });

  it('names the command line when the child prints no record, or the wrong one', async () => {
    const text = fakeCli('text', 'console.log("hello");');
    await expect(runCliChildRecord(text, ['latency', '--json'], 'thing', isThing)).rejects.toThrow(
      'latency child process (latency --json) printed no thing',
    );
    const other = fakeCli('other', 'console.log(JSON.stringify({ kind: "other" }));');
    await expect(runCliChildRecord(other, ['replay'], 'thing', isThing)).rejects.toThrow(
      'replay child process (replay) printed no thing',
    );
  });

  it("keeps the child's message and its error class from the exit code", async () => {
    const usage = fakeCli('usage', 'console.error("gpupool-bench: bad --runs"); process.exit(2);');
    await expect(runCliChildRecord(usage, ['replay'], 'thing', isThing)).rejects.toThrow(
      new BenchUsageError('bad --runs'),
    );
    const device = fakeCli('device', 'console.error("gpupool-bench: no GPU"); process.exit(3);');
    await expect(runCliChildRecord(device, ['latency'], 'thing', isThing)).rejects.toBeInstanceOf(
      BenchDeviceError,
    );
  });

  it('passes the device spec as options', () => {
    expect(deviceArgs({ kind: 'host' })).toEqual(['--device', 'host']);
    expect(deviceArgs({ kind: 'simulated', capacityBytes: 4 * 2 ** 30 })).toEqual([
      '--device',
      'simulated',
      '--capacity-gib',
      '4',
    ]);
    expect(deviceArgs({ kind: 'cuda', cudaMode: 'mallocAsync' })).toEqual([
      '--device',
      'cuda',
      '--cuda-mode',
      'mallocAsync',
    ]);
  });
});
