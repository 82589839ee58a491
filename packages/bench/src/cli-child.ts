/**
 * Commands that time each policy in a fresh process (latency, and replay in `suite`) run the built
 * CLI as a child: a real program uses one policy, so no policy should run on call sites that
 * others made polymorphic.
 */
import { execFile } from 'node:child_process';
import { MiB } from '@gpupool/core';
import { builtFile } from './built-file.js';
import type { DeviceSpec } from './devices.js';
import { BenchDeviceError, BenchInputError, BenchUsageError } from './errors.js';
import { v8TimingFlags } from './machine.js';

/** Child processes print small JSON records (a --detail replay: a few MB); this bounds what is kept. */
const CHILD_OUTPUT_MAX_BYTES = 64 * MiB;

/** dist/cli.js, the `gpupool-bench` bin that `command`'s child processes run. */
export function benchCliFile(command: string): string {
  return builtFile(
    'cli.js',
    `${command} runs each policy in its own process of the built CLI, dist/cli.js: run \`npx tsup\` in ` +
      'packages/bench, or pass --in-process to time every policy in this process',
  );
}

/** The device options of a command line that names `spec`. */
export function deviceArgs(spec: DeviceSpec): string[] {
  const args = ['--device', spec.kind];
  if (spec.kind === 'cuda' && spec.cudaMode !== undefined) args.push('--cuda-mode', spec.cudaMode);
  if (spec.kind === 'simulated' && spec.capacityBytes !== undefined)
    args.push('--capacity-gib', String(spec.capacityBytes / 2 ** 30));
  return args;
}

/**
 * Runs `node [V8 timing flags] cli.js …args` and returns what it printed. The parent's heap and
 * inlining flags go along: they move timings (`v8TimingFlags`, scripts/young-gen.mjs). A failure
 * keeps the child's message and its class (exit 2: usage, 3: device, 4: input).
 */
export function runCliChild(cli: string, args: readonly string[]): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile(
      process.execPath,
      [...v8TimingFlags(), cli, ...args],
      { maxBuffer: CHILD_OUTPUT_MAX_BYTES, encoding: 'utf8' },
      (error, stdout, stderr) => {
        if (error === null) {
          resolve(stdout);
          return;
        }
        const code = typeof error.code === 'number' ? error.code : undefined;
        const message =
          stderr
            .split('\n')
            .find((l) => l.startsWith('gpupool-bench: '))
            ?.slice('gpupool-bench: '.length) ??
          `${childLabel(args)} failed: ${stderr.trim() || error.message}`;
        if (code === 2) reject(new BenchUsageError(message));
        else if (code === 3) reject(new BenchDeviceError(message));
        else if (code === 4) reject(new BenchInputError(message));
        else reject(new Error(message, { cause: error }));
      },
    );
  });
}

/**
 * runCliChild for a command that prints one JSON record: returns it, or throws naming the command
 * line when the child printed something else.
 */
export async function runCliChildRecord<T>(
  cli: string,
  args: readonly string[],
  what: string,
  isRecord: (value: unknown) => value is T,
): Promise<T> {
  const stdout = await runCliChild(cli, args);
  let value: unknown;
  try {
    value = JSON.parse(stdout);
  } catch (parseError) {
    throw new Error(`${childLabel(args)} printed no ${what}: ${(parseError as Error).message}`, {
      cause: parseError,
    });
  }
  if (!isRecord(value)) throw new Error(`${childLabel(args)} printed no ${what}`);
  return value;
}

/** How errors name a child: `replay child process (replay t.gz --json …)`. */
function childLabel(args: readonly string[]): string {
  return `${args[0]} child process (${args.join(' ')})`;
}
