/**
 * The command line: parses arguments per command, runs it, prints a table (default) or JSON
 * (`--json`), writes the HTML report (`--report FILE.html`), and maps typed errors to one line on
 * stderr and a non-zero exit status. `runCli` takes its output streams as arguments so tests run
 * it in-process.
 */
import { accessSync, constants, existsSync, statSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import {
  choiceOption,
  flag,
  intListOption,
  intOption,
  numberOption,
  type OptionKind,
  type ParsedArgs,
  parseArgs,
  stringOption,
} from './args.js';
import { runCapacity } from './commands/capacity.js';
import {
  LATENCY_PROCESSES_DEFAULT,
  LATENCY_RUN_TARGET_MS_DEFAULT,
  LATENCY_SIZES_BYTES,
  runLatency,
} from './commands/latency.js';
import { mergeFiles } from './commands/merge.js';
import { REPLAY_RUNS_DEFAULT, REPLAY_WARMUP_DEFAULT, runReplay } from './commands/replay.js';
import {
  runScaling,
  SCALING_PAIRS_PER_THREAD_DEFAULT,
  SCALING_WARMUP_MS_DEFAULT,
} from './commands/scaling.js';
import { CUDA_MODES, DEVICE_KINDS, type DeviceSpec } from './devices.js';
import { BenchError, BenchOutputError, BenchUsageError } from './errors.js';
import { capacityTable, latencyTable, replayTable, scalingTable, summaryTables } from './format/summary.js';
import { machineInfo } from './machine.js';
import { createProgress } from './progress.js';
import { writeReport } from './report/html.js';
import { emptyBundle, type ResultsBundle } from './results.js';
import { defaultTraceFiles, traceDirCandidates } from './traces.js';

export interface CliIo {
  stdout(text: string): void;
  stderr(text: string): void;
  /** Whether to draw progress bars (default: stderr is a TTY). */
  progress?: boolean;
}

const processIo: CliIo = {
  stdout: (t) => process.stdout.write(t),
  stderr: (t) => process.stderr.write(t),
};

export const USAGE = `usage: gpupool-bench <command> [options]

commands:
  replay <trace.gz...>   replay traces through policies      --policy NAME[,NAME]|all (default: the pool's
                         default for the device)  --device simulated|host|cuda
                         --cuda-mode vmm|malloc|mallocAsync  --capacity-gib N  --runs N (default ${REPLAY_RUNS_DEFAULT})  --detail
                         --warmup N (untimed replays first, each trace and policy; default ${REPLAY_WARMUP_DEFAULT})
                         --json: one object per (trace, policy), one a line
  latency                acquire+release pair time by size   --policy  --device  --cuda-mode  --capacity-gib
                         --runs  --sizes BYTES,...  --run-ms N  --warmup-ms N  --no-raw (skip raw CUDA timings)
                         each policy runs in --processes N fresh processes (default 3; median of
                         their medians); --in-process: all in this one
  scaling                throughput by thread count          --workers 1,2,4,8  --device host|cuda  --runs  --pairs N
                         --warmup-ms N (untimed pairs per thread first; default ${SCALING_WARMUP_MS_DEFAULT})
                         --policy NAME (of the slices; default: the pool's default)
  capacity <trace.gz...> smallest device that completes      --policy
  merge <file.json...>   fold result files (ours, peers) into tables and a report
  suite [trace.gz...]    replay + latency + capacity (+ scaling with --workers); traces default to
                         packages/core/test/fixtures, else ../shared/traces (from the repo root or a
                         package folder)   --quick  --policy  --device  --cuda-mode  --capacity-gib  --runs  --warmup
                         each (trace, policy) replayed and each policy timed in fresh processes
                         (--in-process: all in this one)

every command:  --json (machine-readable output)  --report FILE.html  --peers FILE.json (merge peer results)  --help`;

const COMMON: Record<string, OptionKind> = {
  json: 'boolean',
  report: 'string',
  peers: 'string',
  help: 'boolean',
};
const DEVICE_OPTIONS: Record<string, OptionKind> = {
  device: 'string',
  'cuda-mode': 'string',
  'capacity-gib': 'string',
};

function deviceSpec(args: ParsedArgs): DeviceSpec {
  const kind = choiceOption(args, 'device', DEVICE_KINDS, 'simulated');
  const cudaMode = choiceOption(args, 'cuda-mode', CUDA_MODES, 'vmm');
  if (stringOption(args, 'cuda-mode') !== undefined && kind !== 'cuda')
    throw new BenchUsageError('--cuda-mode needs --device cuda');
  const capacityGib = numberOption(args, 'capacity-gib', Number.NaN, 0.001, 1 << 20);
  const spec: DeviceSpec = { kind };
  if (kind === 'cuda') spec.cudaMode = cudaMode;
  if (Number.isFinite(capacityGib)) {
    if (kind !== 'simulated') throw new BenchUsageError('--capacity-gib applies to --device simulated only');
    spec.capacityBytes = Math.round(capacityGib * 2 ** 30);
  }
  return spec;
}

function policies(args: ParsedArgs): string[] | undefined {
  const raw = stringOption(args, 'policy');
  return raw === undefined ? undefined : raw.split(',').map((s) => s.trim());
}

function traceArgs(args: ParsedArgs, command: string): string[] {
  if (args.positionals.length === 0)
    throw new BenchUsageError(`${command} needs at least one trace file (e.g. pipeline.trace.gz)`);
  return args.positionals;
}

/** With --json the values, one JSON document a line; otherwise the readable table. */
function print(io: CliIo, json: boolean, values: readonly unknown[], table: () => string): void {
  if (!json) io.stdout(`${table()}\n`);
  else for (const v of values) io.stdout(`${JSON.stringify(v)}\n`);
}

/** Runs one command line; resolves to the exit status. */
export async function runCli(argv: readonly string[], io: CliIo = processIo): Promise<number> {
  try {
    return await dispatch(argv, io);
  } catch (error) {
    if (error instanceof BenchError) {
      io.stderr(`gpupool-bench: ${error.message}\n`);
      if (error instanceof BenchUsageError) io.stderr('run `gpupool-bench --help` for usage\n');
      return error.exitCode;
    }
    io.stderr(`gpupool-bench: unexpected error: ${(error as Error).stack ?? String(error)}\n`);
    return 1;
  }
}

async function dispatch(argv: readonly string[], io: CliIo): Promise<number> {
  const [command, ...rest] = argv;
  if (command === undefined || command === '--help' || command === '-h' || command === 'help') {
    io.stdout(`${USAGE}\n`);
    return command === undefined ? 2 : 0;
  }
  const progressFor = (json: boolean) => (title: string, total: number) =>
    createProgress(title, total, { enabled: io.progress ?? (!json && process.stderr.isTTY === true) });
  let args: ParsedArgs;
  let bundle: ResultsBundle;
  switch (command) {
    case 'replay': {
      args = parseArgs(
        rest,
        {
          ...COMMON,
          ...DEVICE_OPTIONS,
          policy: 'string',
          runs: 'string',
          warmup: 'string',
          detail: 'boolean',
        },
        command,
      );
      if (flag(args, 'help')) return help(io);
      checkReportPath(args);
      const spec = deviceSpec(args);
      const files = traceArgs(args, command);
      const runs = intOption(args, 'runs', REPLAY_RUNS_DEFAULT, 1, 1000);
      const json = flag(args, 'json');
      const records = await runReplay({
        traces: files,
        // Without --policy, one record per trace (DESIGN.md: `replay <trace.gz> --json` → one object).
        policies: policies(args) ?? 'default',
        device: spec,
        runs,
        warmup: intOption(args, 'warmup', REPLAY_WARMUP_DEFAULT, 1, 1000),
        detail: flag(args, 'detail') || stringOption(args, 'report') !== undefined,
        progress: progressFor(json)('replay', 1),
      });
      bundle = await bundleWith(spec.kind === 'cuda', (b) => b.replays.push(...records), args);
      const shown = flag(args, 'detail') ? records : records.map(({ timeline, memoryMap, ...r }) => r);
      print(io, json, shown, () => replayTable(bundle.replays));
      break;
    }
    case 'latency': {
      args = parseArgs(
        rest,
        {
          ...COMMON,
          ...DEVICE_OPTIONS,
          policy: 'string',
          runs: 'string',
          sizes: 'string',
          'in-process': 'boolean',
          processes: 'string',
          'no-raw': 'boolean',
          'run-ms': 'string',
          'warmup-ms': 'string',
        },
        command,
      );
      if (flag(args, 'help')) return help(io);
      checkReportPath(args);
      const spec = deviceSpec(args);
      const json = flag(args, 'json');
      const runTargetMs = numberOption(args, 'run-ms', LATENCY_RUN_TARGET_MS_DEFAULT, 0.001, 60_000);
      const record = await runLatency({
        policies: policies(args),
        device: spec,
        runs: intOption(args, 'runs', 5, 1, 1000),
        sizesBytes: intListOption(args, 'sizes', LATENCY_SIZES_BYTES, 1, 2 ** 40),
        runTargetMs,
        warmupMs: numberOption(args, 'warmup-ms', runTargetMs, 0, 600_000),
        isolate: !flag(args, 'in-process'),
        processes: intOption(args, 'processes', LATENCY_PROCESSES_DEFAULT, 1, 100),
        skipRaw: flag(args, 'no-raw'),
        progress: progressFor(json)('latency', 1),
      });
      bundle = await bundleWith(spec.kind === 'cuda', (b) => b.latency.push(record), args);
      print(io, json, [record], () => latencyTable(record));
      break;
    }
    case 'scaling': {
      args = parseArgs(
        rest,
        {
          ...COMMON,
          device: 'string',
          workers: 'string',
          runs: 'string',
          pairs: 'string',
          'warmup-ms': 'string',
          policy: 'string',
        },
        command,
      );
      if (flag(args, 'help')) return help(io);
      checkReportPath(args);
      const kind = choiceOption(args, 'device', ['host', 'cuda'] as const, 'host');
      const json = flag(args, 'json');
      const record = await runScaling({
        threads: intListOption(args, 'workers', [1, 2, 4, 8], 1, 256),
        device: kind,
        runs: intOption(args, 'runs', 3, 1, 100),
        pairsPerThread: intOption(args, 'pairs', SCALING_PAIRS_PER_THREAD_DEFAULT, 1, 1e9),
        warmupMs: numberOption(args, 'warmup-ms', SCALING_WARMUP_MS_DEFAULT, 0, 600_000),
        policy: stringOption(args, 'policy'),
        progress: progressFor(json)('scaling', 1),
      });
      bundle = await bundleWith(kind === 'cuda', (b) => b.scaling.push(record), args);
      print(io, json, [record], () => scalingTable(record));
      break;
    }
    case 'capacity': {
      args = parseArgs(rest, { ...COMMON, policy: 'string' }, command);
      if (flag(args, 'help')) return help(io);
      checkReportPath(args);
      const files = traceArgs(args, command);
      const json = flag(args, 'json');
      const records = runCapacity({
        traces: files,
        policies: policies(args),
        progress: progressFor(json)('capacity', 1),
      });
      bundle = await bundleWith(false, (b) => b.capacity.push(...records), args);
      print(io, json, records, () => capacityTable(records));
      break;
    }
    case 'merge': {
      args = parseArgs(rest, COMMON, command);
      if (flag(args, 'help')) return help(io);
      checkReportPath(args);
      if (args.positionals.length === 0) throw new BenchUsageError('merge needs at least one result file');
      const merged = mergeFiles(args.positionals);
      const onCuda = [...merged.replays, ...merged.latency, ...merged.scaling].some((r) =>
        r.device.startsWith('cuda'),
      );
      bundle = await bundleWith(onCuda && merged.machine?.gpu == null, (b) => mergeInto(b, merged), args);
      if (merged.machine !== undefined) bundle.machine = merged.machine;
      print(io, flag(args, 'json'), [bundle], () => summaryTables(bundle));
      break;
    }
    case 'suite': {
      args = parseArgs(
        rest,
        {
          ...COMMON,
          ...DEVICE_OPTIONS,
          policy: 'string',
          runs: 'string',
          warmup: 'string',
          quick: 'boolean',
          workers: 'string',
          'in-process': 'boolean',
        },
        command,
      );
      if (flag(args, 'help')) return help(io);
      checkReportPath(args);
      bundle = await runSuite(args, io, progressFor(flag(args, 'json')));
      print(io, flag(args, 'json'), [bundle], () => summaryTables(bundle));
      break;
    }
    default:
      throw new BenchUsageError(
        `unknown command "${command}" (replay, latency, scaling, capacity, merge, suite)`,
      );
  }
  const report = stringOption(args, 'report');
  if (report !== undefined) {
    try {
      writeReport(report, bundle);
    } catch (error) {
      throw new BenchOutputError(`cannot write the report ${report}: ${(error as Error).message}`, {
        cause: error,
      });
    }
    io.stderr(`report written to ${report}\n`);
  }
  return 0;
}

/**
 * Checks --report's path before the command runs (a suite takes minutes; it should not end in
 * ENOENT): an existing, writable folder, and not itself a folder.
 */
function checkReportPath(args: ParsedArgs): void {
  const report = stringOption(args, 'report');
  if (report === undefined) return;
  const path = resolve(report);
  if (existsSync(path) && statSync(path).isDirectory())
    throw new BenchUsageError(`--report ${report} is a directory: name a file, e.g. report.html`);
  const folder = dirname(path);
  if (!existsSync(folder) || !statSync(folder).isDirectory())
    throw new BenchUsageError(`--report ${report}: the folder ${folder} does not exist`);
  try {
    accessSync(folder, constants.W_OK);
  } catch {
    throw new BenchUsageError(`--report ${report}: the folder ${folder} is not writable`);
  }
}

function help(io: CliIo): number {
  io.stdout(`${USAGE}\n`);
  return 0;
}

function mergeInto(target: ResultsBundle, source: ResultsBundle): void {
  target.replays.push(...source.replays);
  target.latency.push(...source.latency);
  target.scaling.push(...source.scaling);
  target.capacity.push(...source.capacity);
  if (source.machine !== undefined) target.machine ??= source.machine;
}

/** A bundle with this machine's info, the fresh results, and any --peers file merged in. */
async function bundleWith(
  onCuda: boolean,
  fill: (bundle: ResultsBundle) => void,
  args: ParsedArgs,
): Promise<ResultsBundle> {
  let gpu: string | null = null;
  if (onCuda) {
    try {
      const native = await import('@gpupool/native');
      gpu = native.cudaDeviceProperties(0).name;
    } catch {
      gpu = 'CUDA GPU (name unavailable)';
    }
  }
  const bundle = emptyBundle(machineInfo(gpu));
  fill(bundle);
  const peers = stringOption(args, 'peers');
  if (peers !== undefined) mergeFiles(peers.split(','), bundle);
  return bundle;
}

/** replay (with detail) + latency + capacity (simulated only) + scaling (when --workers is given). */
async function runSuite(
  args: ParsedArgs,
  io: CliIo,
  progress: (title: string, total: number) => ReturnType<typeof createProgress>,
): Promise<ResultsBundle> {
  const spec = deviceSpec(args);
  const quick = flag(args, 'quick');
  const files = args.positionals.length > 0 ? args.positionals : defaultTraceFiles();
  if (files.length === 0)
    throw new BenchUsageError(
      `suite found no traces in ${traceDirCandidates().join(', ')}; pass trace files`,
    );
  const runs = intOption(args, 'runs', quick ? 3 : REPLAY_RUNS_DEFAULT, 1, 1000);
  const warmup = intOption(args, 'warmup', quick ? 1 : REPLAY_WARMUP_DEFAULT, 1, 1000);
  const chosen = policies(args);
  const bundle = await bundleWith(spec.kind === 'cuda', () => {}, args);
  io.stderr(`suite: ${files.length} traces, ${runs} timed runs each, device ${spec.kind}\n`);
  bundle.replays.push(
    ...(await runReplay({
      traces: files,
      policies: chosen,
      device: spec,
      runs,
      warmup,
      detail: true,
      // One fresh process per (trace, policy), as latency does per policy (--in-process: this one).
      isolate: !flag(args, 'in-process'),
      progress: progress('replay', 1),
    })),
  );
  bundle.latency.push(
    await runLatency({
      policies: chosen,
      device: spec,
      runs,
      runTargetMs: quick ? 10 : undefined,
      sizesBytes: quick ? [512, 131072, 32 * 2 ** 20] : undefined,
      processes: quick ? 1 : undefined,
      isolate: !flag(args, 'in-process'),
    }),
  );
  if (spec.kind === 'simulated' && !quick)
    bundle.capacity.push(...runCapacity({ traces: files, policies: chosen }));
  const workers = stringOption(args, 'workers');
  if (workers !== undefined) {
    bundle.scaling.push(
      await runScaling({
        threads: intListOption(args, 'workers', [1, 2, 4, 8], 1, 256),
        device: spec.kind === 'cuda' ? 'cuda' : 'host',
        runs: 3,
      }),
    );
  }
  return bundle;
}
