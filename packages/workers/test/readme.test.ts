/**
 * The README's example (main.ts and the worker's task.js, one block marked by `// FILE` comment
 * lines) type-checks against the built packages and runs; the README lists every error code of
 * errors.ts, and no other.
 */
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import {
  checkSnippet,
  codeBlocks,
  errorCodesIn,
  errorCodesOfSource,
  typescriptAvailable,
} from '../../core/test/helpers/readme.js';

const WORKERS_DIR = fileURLToPath(new URL('..', import.meta.url));
const CORE_DIR = join(WORKERS_DIR, '..', 'core');
const README = join(WORKERS_DIR, 'README.md');

/** Splits a block at its `// name.ts` / `// name.js` lines into files. */
function files(code: string): Record<string, string> {
  const out: Record<string, string> = {};
  let current: string | null = null;
  for (const line of code.split('\n')) {
    const marker = /^\/\/ ([\w-]+\.[jt]s)\b/.exec(line);
    if (marker !== null) {
      current = marker[1]!;
      out[current] = '';
    } else if (current !== null) out[current] += `${line}\n`;
  }
  return out;
}

describe.skipIf(!typescriptAvailable)('README example', () => {
  it('type-checks and runs: a task on a worker, its block released in the main thread', () => {
    const blocks = codeBlocks(README).filter((b) => b.lang === 'ts');
    expect(blocks.length).toBe(1);
    const example = files(blocks[0]!.code);
    expect(Object.keys(example).sort()).toEqual(['main.ts', 'task.js']);
    const r = checkSnippet({
      files: example,
      packages: { '@gpupool/core': CORE_DIR, '@gpupool/workers': WORKERS_DIR },
      entry: 'main.ts',
    });
    expect(r.typeErrors).toEqual([]);
    expect(r.stderr).toBe('');
    expect(r.status).toBe(0);
    expect(r.stdout).toMatch(/superblocks: \d+/);
  });
});

describe('README error codes', () => {
  it('lists every code of errors.ts, and only those (core codes named as core errors)', () => {
    const own = errorCodesOfSource(join(WORKERS_DIR, 'src', 'errors.ts'));
    const core = errorCodesOfSource(join(CORE_DIR, 'src', 'errors.ts'));
    expect(own.size).toBeGreaterThan(0);
    const named = errorCodesIn(README);
    for (const code of own) expect(named.has(code), code).toBe(true);
    for (const code of named) expect(own.has(code) || core.has(code), code).toBe(true);
  });
});
