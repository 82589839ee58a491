/**
 * The README's command lines name only options their command accepts, and the README names the
 * code of every error class of errors.ts (and no code that does not exist).
 */
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { codeBlocks, errorCodesIn, errorCodesOfSource } from '../../core/test/helpers/readme.js';
import { cli } from './helpers.js';

const BENCH_DIR = fileURLToPath(new URL('..', import.meta.url));
const README = join(BENCH_DIR, 'README.md');

/**
 * The README's `gpupool-bench COMMAND …` lines, each with the comment lines under it (`# …` only),
 * and the options they name.
 */
function commandLines(): { command: string; options: string[] }[] {
  const found: { command: string; options: string[] }[] = [];
  for (const line of codeBlocks(README)
    .filter((b) => b.lang === 'sh')
    .flatMap((b) => b.code.split('\n'))) {
    if (line.startsWith('gpupool-bench ')) found.push({ command: line.split(/\s+/)[1]!, options: [] });
    else if (!/^\s+#/.test(line)) continue;
    found.at(-1)?.options.push(...[...line.matchAll(/(?<![\w-])--[a-z][a-z-]*/g)].map((m) => m[0]));
  }
  return found;
}

/** The options a command accepts, from its unknown-option error. */
async function accepted(command: string): Promise<string[]> {
  const r = await cli(command, '--no-such-option');
  return /\(known: (.*)\)/.exec(r.err)?.[1]?.split(', ') ?? [];
}

describe('README command lines', () => {
  const lines = commandLines();

  it('cover every command', () => {
    expect(new Set(lines.map((l) => l.command))).toEqual(
      new Set(['replay', 'latency', 'scaling', 'capacity', 'merge', 'suite']),
    );
  });

  it.each(lines.map((l) => [l.command, l.options] as const))(
    '%s: every option named is accepted',
    async (command, options) => {
      const known = await accepted(command);
      expect(known.length).toBeGreaterThan(0);
      for (const option of options) expect(known, `${command} ${option}`).toContain(option);
    },
  );
});

describe('README scripts', () => {
  it('names every script of scripts/', () => {
    const text = readFileSync(README, 'utf8');
    const scripts = readdirSync(join(BENCH_DIR, 'scripts')).filter(
      (f) => f.endsWith('.mjs') && f !== 'script-support.mjs',
    );
    expect(scripts.length).toBeGreaterThan(0);
    for (const script of scripts) expect(text, script).toContain(`scripts/${script}`);
  });
});

describe('README error codes', () => {
  it('names every code of errors.ts, and only those', () => {
    const codes = errorCodesOfSource(join(BENCH_DIR, 'src', 'errors.ts'));
    expect(codes.size).toBeGreaterThan(0);
    expect([...errorCodesIn(README)].sort()).toEqual([...codes].sort());
  });
});
