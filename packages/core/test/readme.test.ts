/**
 * The root README's "Use" example and this package's README example type-check against the built
 * package and run; the README lists every error code of errors.ts, and no other.
 */
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import {
  checkSnippet,
  codeBlocks,
  errorCodesIn,
  errorCodesOfSource,
  REPO_ROOT,
  typescriptAvailable,
} from './helpers/readme.js';

const CORE_DIR = fileURLToPath(new URL('..', import.meta.url));
const README = join(CORE_DIR, 'README.md');

function tsExample(markdownPath: string, heading?: string): string {
  const blocks = codeBlocks(markdownPath).filter(
    (b) => b.lang === 'ts' && (heading === undefined || b.heading === heading),
  );
  expect(blocks.length, `${markdownPath}: one ts example${heading ? ` under "${heading}"` : ''}`).toBe(1);
  return blocks[0]!.code;
}

describe.skipIf(!typescriptAvailable)('README examples', () => {
  it('the root README\'s "Use" example type-checks and runs', () => {
    const r = checkSnippet({
      files: { 'use.ts': tsExample(join(REPO_ROOT, 'README.md'), 'Use') },
      packages: { '@gpupool/core': CORE_DIR },
      entry: 'use.ts',
    });
    expect(r.typeErrors).toEqual([]);
    expect(r.stderr).toBe('');
    expect(r.status).toBe(0);
    expect(r.stdout).toMatch(/allocations: 1/);
  });

  it("this package's README example type-checks and runs", () => {
    const r = checkSnippet({
      files: { 'example.ts': tsExample(README) },
      packages: { '@gpupool/core': CORE_DIR },
      entry: 'example.ts',
    });
    expect(r.typeErrors).toEqual([]);
    expect(r.stderr).toBe('');
    expect(r.status).toBe(0);
    expect(r.stdout).toMatch(/out of memory: requested 1\.00 GiB/);
  });
});

describe('README error codes', () => {
  it('lists every code of errors.ts, and only those', () => {
    const codes = errorCodesOfSource(join(CORE_DIR, 'src', 'errors.ts'));
    expect(codes.size).toBeGreaterThan(10);
    expect([...errorCodesIn(README)].sort()).toEqual([...codes].sort());
  });
});
