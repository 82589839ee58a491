/**
 * The README's example type-checks against the built packages and runs: on a GPU it opens a pool;
 * without CUDA, `new CudaDevice()` throws CudaUnavailableError after the warning. The README names
 * the code of every error class of errors.ts, and no code that does not exist.
 */
import { readFileSync } from 'node:fs';
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
import { cuda } from '../src/binding.js';
import * as errors from '../src/errors.js';
import { CudaError, type CudaFailure, CudaOutOfMemoryError, CudaUnavailableError } from '../src/errors.js';

const NATIVE_DIR = fileURLToPath(new URL('..', import.meta.url));
const CORE_DIR = join(NATIVE_DIR, '..', 'core');
const README = join(NATIVE_DIR, 'README.md');

describe.skipIf(!typescriptAvailable)('README example', () => {
  it('type-checks, and runs as far as this machine allows', () => {
    const blocks = codeBlocks(README).filter((b) => b.lang === 'ts');
    expect(blocks.length).toBe(1);
    const r = checkSnippet({
      files: { 'example.ts': blocks[0]!.code },
      packages: { '@gpupool/core': CORE_DIR, '@gpupool/native': NATIVE_DIR },
      entry: 'example.ts',
    });
    expect(r.typeErrors).toEqual([]);
    if (cuda.available) {
      expect(r.stderr).toBe('');
      expect(r.status).toBe(0);
    } else {
      expect(r.stderr).toContain(cuda.reason!);
      expect(r.stderr).toMatch(/CudaUnavailableError[\s\S]*code: 'ERR_GPUPOOL_DEVICE'/);
      expect(r.status).not.toBe(0);
    }
  });
});

describe('README error codes', () => {
  it('names the code of every error class, and only codes that exist', () => {
    const failure: CudaFailure = { cudaCall: 'call', cudaCode: 1, cudaName: 'name', cudaApi: 'runtime' };
    const instances = [
      new CudaError('call', failure, 'message'),
      new CudaOutOfMemoryError('call', 1, failure, 'message'),
      new CudaUnavailableError('call', 'reason'),
    ];
    const own = new Set(instances.map((e) => e.code));
    const named = errorCodesIn(README);
    for (const code of own) expect(named.has(code), code).toBe(true);
    const core = errorCodesOfSource(join(CORE_DIR, 'src', 'errors.ts'));
    for (const code of named) expect(core.has(code), code).toBe(true);
    const text = readFileSync(README, 'utf8');
    const classes = Object.entries(errors).filter(
      ([, value]) => typeof value === 'function' && value.prototype instanceof Error,
    );
    // Every class has an instance above, so its code is checked.
    expect(classes.map(([name]) => name).sort()).toEqual(instances.map((e) => e.constructor.name).sort());
    for (const [name] of classes) expect(text.includes(`\`${name}\``), name).toBe(true);
  });
});
