/**
 * Command-line parsing: `command [positionals] [--flag] [--option value | --option=value]`.
 * Every option is declared (name, kind); anything else is a BenchUsageError naming the option,
 * so a typo never silently falls back to a default.
 */
import { BenchUsageError } from './errors.js';

export type OptionKind = 'boolean' | 'string';

export interface ParsedArgs {
  positionals: string[];
  options: Map<string, string | true>;
}

/** Parses `argv` against the declared options of one command. */
export function parseArgs(
  argv: readonly string[],
  declared: Readonly<Record<string, OptionKind>>,
  command: string,
): ParsedArgs {
  const positionals: string[] = [];
  const options = new Map<string, string | true>();
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    // `-h` as at the top level (`gpupool-bench -h`), not a file named "-h".
    if (arg === '-h' && declared.help === 'boolean') {
      options.set('help', true);
      continue;
    }
    if (!arg.startsWith('--') || arg === '--') {
      positionals.push(arg);
      continue;
    }
    const eq = arg.indexOf('=');
    const name = eq < 0 ? arg.slice(2) : arg.slice(2, eq);
    const kind = declared[name];
    if (kind === undefined) {
      const known = Object.keys(declared)
        .map((k) => `--${k}`)
        .join(', ');
      throw new BenchUsageError(`unknown option --${name} for "${command}" (known: ${known || 'none'})`);
    }
    if (kind === 'boolean') {
      if (eq >= 0) throw new BenchUsageError(`--${name} takes no value`);
      options.set(name, true);
      continue;
    }
    let value: string | undefined;
    if (eq >= 0) value = arg.slice(eq + 1);
    else {
      value = argv[i + 1];
      i++;
    }
    if (value === undefined || value === '' || (eq < 0 && value.startsWith('--'))) {
      throw new BenchUsageError(`--${name} needs a value`);
    }
    options.set(name, value);
  }
  return { positionals, options };
}

export function stringOption(args: ParsedArgs, name: string): string | undefined {
  const v = args.options.get(name);
  return typeof v === 'string' ? v : undefined;
}

export function flag(args: ParsedArgs, name: string): boolean {
  return args.options.get(name) === true;
}

/** An integer option in [min, max]; `fallback` when absent. */
export function intOption(
  args: ParsedArgs,
  name: string,
  fallback: number,
  min: number,
  max: number,
): number {
  return rangedOption(args, name, fallback, min, max, true);
}

/** A number option in [min, max] (e.g. GiB); `fallback` when absent. */
export function numberOption(
  args: ParsedArgs,
  name: string,
  fallback: number,
  min: number,
  max: number,
): number {
  return rangedOption(args, name, fallback, min, max, false);
}

function rangedOption(
  args: ParsedArgs,
  name: string,
  fallback: number,
  min: number,
  max: number,
  integer: boolean,
): number {
  const raw = stringOption(args, name);
  if (raw === undefined) return fallback;
  const value = Number(raw);
  if (!(integer ? Number.isInteger(value) : Number.isFinite(value)) || value < min || value > max) {
    throw new BenchUsageError(
      `--${name} must be ${integer ? 'an integer' : 'a number'} in ${min}..${max} (got "${raw}")`,
    );
  }
  return value;
}

/** A comma-separated list of positive integers, e.g. `--workers 1,2,4,8`. */
export function intListOption(
  args: ParsedArgs,
  name: string,
  fallback: readonly number[],
  min: number,
  max: number,
): number[] {
  const raw = stringOption(args, name);
  if (raw === undefined) return [...fallback];
  const parts = raw.split(',').map((s) => s.trim());
  const values = parts.map(Number);
  if (parts.length === 0 || values.some((v) => !Number.isInteger(v) || v < min || v > max)) {
    throw new BenchUsageError(
      `--${name} must be a comma-separated list of integers in ${min}..${max} (got "${raw}")`,
    );
  }
  return values;
}

/** One of a fixed set of words. */
export function choiceOption<T extends string>(
  args: ParsedArgs,
  name: string,
  choices: readonly T[],
  fallback: T,
): T {
  const raw = stringOption(args, name);
  if (raw === undefined) return fallback;
  if (!(choices as readonly string[]).includes(raw)) {
    throw new BenchUsageError(`--${name} must be one of ${choices.join(', ')} (got "${raw}")`);
  }
  return raw as T;
}
