import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { gzipSync } from 'node:zlib';
import { formatTrace } from '@gpupool/core';
import { afterAll, describe, expect, it } from 'vitest';
import { syntheticTrace } from './helpers.js';

const script = fileURLToPath(new URL('../peers/replay_peers.py', import.meta.url));
const hasPython = (() => {
  try {
    execFileSync('python3', ['--version']);
    return true;
  } catch {
    return false;
  }
})();
const dir = mkdtempSync(join(tmpdir(), 'gpupool-peers-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe.skipIf(!hasPython)('peers/replay_peers.py (no GPU: parsing only)', () => {
  it('reads a gzip trace the way gpupool does: same name, ops and peak live bytes', () => {
    const trace = syntheticTrace('twin', 300, 11);
    const path = join(dir, 'twin.trace.gz');
    writeFileSync(path, gzipSync(formatTrace(trace)));
    const out = execFileSync('python3', [script, '--parse-only', path], { encoding: 'utf8' });
    expect(JSON.parse(out)).toEqual({ trace: 'twin', ops: trace.length, peakLiveBytes: trace.peakLiveBytes });
  });

  it('rejects a malformed trace with the line number', () => {
    const path = join(dir, 'bad.trace');
    writeFileSync(path, '# c\na 1 10\nf 2\n');
    expect(() => execFileSync('python3', [script, '--parse-only', path], { stdio: 'pipe' })).toThrow(
      /bad.trace:3/,
    );
  });

  it('rejects an unknown peer name', () => {
    expect(() =>
      execFileSync('python3', [script, '--peers', 'tensorflow', 'x.gz'], { stdio: 'pipe' }),
    ).toThrow(/unknown peer/);
  });
});
