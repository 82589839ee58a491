/** The built app, run as a user runs it (needs `pnpm build` first: turbo's test task depends on it). */
import { execFile } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { afterAll, describe, expect, it } from 'vitest';

const main = fileURLToPath(new URL('../dist/main.js', import.meta.url));
const run = promisify(execFile);
const dir = mkdtempSync(join(tmpdir(), 'gpupool-example-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

async function app(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const { stdout, stderr } = await run(process.execPath, [main, ...args], { timeout: 60_000 });
    return { code: 0, stdout, stderr };
  } catch (error) {
    const e = error as { code?: number; stdout?: string; stderr?: string };
    return { code: e.code ?? -1, stdout: e.stdout ?? '', stderr: e.stderr ?? '' };
  }
}

describe('the built app', () => {
  it('is built', () => {
    expect(existsSync(main), `${main} is missing: run pnpm build first`).toBe(true);
  });

  it.each([[[]], [['--no-pool']]])(
    'runs in worker threads %j and ends with one JSON object',
    async (extra) => {
      const report = join(dir, `${extra.length}.html`);
      const { code, stdout, stderr } = await app([
        '--frames',
        '6',
        '--cameras',
        '2',
        '--workers',
        '2',
        '--json',
        '--report',
        report,
        ...extra,
      ]);
      expect(stderr).not.toMatch(/crashed/);
      expect(code).toBe(0);
      const lines = stdout.trim().split('\n');
      expect(lines.length).toBe(1);
      const summary = JSON.parse(lines[0]!);
      expect(summary.framesChecked).toBe(12);
      expect(summary.framesWrong).toBe(0);
      expect(summary.leaks).toBe(0);
      expect(summary.pool).toBe(extra.length === 0);
      for (const key of [
        'allocations',
        'reuses',
        'returns',
        'peakMB',
        'fragmentationEvents',
        'deviceAllocCalls',
      ]) {
        expect(typeof summary[key]).toBe('number');
      }
      const html = readFileSync(report, 'utf8');
      expect(html).toMatch(/<strong>PASS<\/strong>/);
    },
  );

  it('prints the statistics as a table by default', async () => {
    const { code, stdout } = await app(['--frames', '2', '--workers', '1', '--report', join(dir, 't.html')]);
    expect(code).toBe(0);
    expect(stdout).toMatch(/leaks\s+0/);
    expect(stdout).toMatch(/^OK:/m);
  });

  it.each([
    ['a folder that does not exist', join(dir, 'no', 'such', 'folder', 'r.html')],
    ['a folder', dir],
  ])('refuses a --report path in %s before running any frame (exit 2)', async (_what, report) => {
    const r = await app(['--frames', '1', '--workers', '0', '--report', report]);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/^--report /);
    expect(r.stderr).not.toMatch(/crashed|\n\s+at /);
    expect(r.stderr).not.toMatch(/frames\/s/); // no frame ran
    expect(r.stdout).toBe('');
  });

  it('refuses --policy with --no-pool (exit 2) before running any frame', async () => {
    const r = await app(['--no-pool', '--policy', 'bestFit', '--frames', '1', '--workers', '0']);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/^--policy .*--no-pool/);
    expect(r.stderr).not.toMatch(/crashed|\n\s+at /);
    expect(r.stderr).not.toMatch(/frames\/s/); // no frame ran
    expect(r.stdout).toBe('');
  });

  it('explains usage errors and --device cuda without CUDA', async () => {
    const bad = await app(['--frames', 'many']);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toMatch(/--frames must be an integer/);
    const { cuda } = await import('@gpupool/native');
    if (!cuda.available) {
      const gpu = await app(['--device', 'cuda', '--frames', '1']);
      expect(gpu.code).toBe(2);
      expect(gpu.stderr).toMatch(/CUDA is not available here/);
    }
  });
});
