import { describe, expect, it } from 'vitest';
import { choiceOption, flag, intListOption, intOption, parseArgs, stringOption } from '../src/args.js';
import { BenchUsageError } from '../src/errors.js';

const declared = { json: 'boolean', runs: 'string', workers: 'string', device: 'string' } as const;

describe('parseArgs', () => {
  it('separates positionals, flags and valued options in both spellings', () => {
    const a = parseArgs(['x.gz', '--json', '--runs', '3', '--device=host', 'y.gz'], declared, 'replay');
    expect(a.positionals).toEqual(['x.gz', 'y.gz']);
    expect(flag(a, 'json')).toBe(true);
    expect(intOption(a, 'runs', 5, 1, 10)).toBe(3);
    expect(stringOption(a, 'device')).toBe('host');
  });

  it('rejects unknown options, naming them and the known ones', () => {
    expect(() => parseArgs(['--rnus', '3'], declared, 'replay')).toThrow(
      /unknown option --rnus for "replay".*--runs/,
    );
  });

  it('rejects a missing value and a value on a flag', () => {
    expect(() => parseArgs(['--runs'], declared, 'replay')).toThrow(BenchUsageError);
    expect(() => parseArgs(['--runs', '--json'], declared, 'replay')).toThrow(/--runs needs a value/);
    expect(() => parseArgs(['--json=1'], declared, 'replay')).toThrow(/takes no value/);
  });

  it('checks integer ranges, lists and choices with typed errors', () => {
    const a = parseArgs(['--runs', '0', '--workers', '1,2,x', '--device', 'tpu'], declared, 'scaling');
    expect(() => intOption(a, 'runs', 5, 1, 10)).toThrow(/--runs must be an integer in 1..10 \(got "0"\)/);
    expect(() => intListOption(a, 'workers', [1], 1, 64)).toThrow(BenchUsageError);
    expect(() => choiceOption(a, 'device', ['simulated', 'host'] as const, 'simulated')).toThrow(
      /one of simulated, host/,
    );
    const b = parseArgs(['--workers', '1,2,4,8'], declared, 'scaling');
    expect(intListOption(b, 'workers', [1], 1, 64)).toEqual([1, 2, 4, 8]);
    expect(intOption(b, 'runs', 5, 1, 10)).toBe(5);
  });
});
