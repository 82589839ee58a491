/**
 * `gpupool-bench replay`: each trace through each policy on one device. The trace is parsed
 * before any timing. Per (trace, policy): `warmup` untimed warm-up passes (the first, with `detail`, also
 * samples reserved/live bytes and snapshots the pool at the peak of live bytes), then `runs`
 * timed replays, each on a fresh pool; `nsPerOp` is their median, the other numbers come from the
 * first timed replay (they are deterministic). A replay that fails (out of memory) yields a
 * record with `error` set instead of stopping the whole command.
 */
import {
  type Block,
  createPool,
  type Device,
  defaultPolicyName,
  type Pool,
  policyNames,
  replayTrace,
  type Trace,
} from '@gpupool/core';
import { benchCliFile, deviceArgs, runCliChildRecord } from '../cli-child.js';
import { createDevice, type DeviceSpec, deviceLabel } from '../devices.js';
import { BenchUsageError } from '../errors.js';
import type { Progress } from '../progress.js';
import type { MemoryMap, ReplayRecord, Timeline } from '../results.js';
import { median } from '../stats.js';
import { loadTrace, peakLiveIndex } from '../traces.js';
import { isReplayRecord } from './merge.js';

export const REPLAY_RUNS_DEFAULT = 5;
/**
 * Untimed replays before the timed ones. V8 keeps tiering code and adjusting its heap over the
 * first replays of a fresh process, by count more than by length: gnn_train (6 427 operations)
 * replayed at 350–1 600 ns per op in replays 4–9 and ~90 ns from the 10th on; mixed_serving's
 * median of replays 4–8 was 220–228 ns in three processes, of replays 11–15 72–128 ns
 * (docs/benchmarks.md). Ten put the timed replays past that on every trace measured.
 */
export const REPLAY_WARMUP_DEFAULT = 10;
/** Samples in a --detail timeline. */
export const TIMELINE_SAMPLES = 400;
/** Blocks kept in a memory map (the rest are counted, not drawn). */
export const MEMORY_MAP_BLOCKS_MAX = 50_000;

export interface ReplayBenchOptions {
  /** Trace files or parsed traces. */
  traces: readonly (string | Trace)[];
  /**
   * Policy names (`all`: every registered one); default: every registered policy. `'default'`: the
   * one policy a pool gets on the device when none is named (core's defaultPolicyName), as
   * `gpupool-bench replay` without --policy does.
   */
  policies?: readonly string[] | 'default';
  device?: DeviceSpec;
  /** Timed replays per (trace, policy); default 5. */
  runs?: number;
  /** Untimed replays before them; default REPLAY_WARMUP_DEFAULT (at least 1: it gives the detail pass). */
  warmup?: number;
  /** Add a timeline and a memory map to each record. */
  detail?: boolean;
  /**
   * Replay each (trace, policy) in a fresh process of the built CLI (default false: all in this
   * process). In one process, a policy replayed after others runs on call sites they made
   * polymorphic, which a program that uses one policy never does. Needs trace files, not parsed traces.
   */
  isolate?: boolean;
  progress?: Progress;
}

/** Expands `all` and checks names against the registry. */
export function resolvePolicies(names: readonly string[] | undefined): string[] {
  const known = policyNames();
  if (names === undefined || names.length === 0 || names.includes('all')) return known;
  for (const n of names) {
    if (!known.includes(n))
      throw new BenchUsageError(`unknown policy "${n}" (known: ${known.join(', ')}, all)`);
  }
  return [...names];
}

export async function runReplay(options: ReplayBenchOptions): Promise<ReplayRecord[]> {
  // undefined: the device's default, known once the device is (the CLI without --policy).
  const policies = options.policies === 'default' ? undefined : resolvePolicies(options.policies);
  const spec: DeviceSpec = options.device ?? { kind: 'simulated' };
  const runs = options.runs ?? REPLAY_RUNS_DEFAULT;
  if (!Number.isInteger(runs) || runs < 1)
    throw new BenchUsageError(`runs must be a positive integer (got ${runs})`);
  const warmup = options.warmup ?? REPLAY_WARMUP_DEFAULT;
  if (!Number.isInteger(warmup) || warmup < 1)
    throw new BenchUsageError(`warmup must be a positive integer (got ${warmup})`);
  if (options.isolate === true) return replayIsolated(options, policies, spec, runs, warmup);
  const traces = options.traces.map((t) => (typeof t === 'string' ? loadTrace(t) : t));
  const records: ReplayRecord[] = [];
  options.progress?.setTotal(traces.length * (policies?.length ?? 1) * (runs + 1));
  let done = 0;
  let shared: Device | undefined;
  try {
    for (const trace of traces) {
      let device: Device;
      if (spec.kind === 'host') {
        // Host memory is real: size the device to the trace (twice its peak, at least 64 MiB).
        device = await createDevice({
          ...spec,
          capacityBytes: Math.max(2 * trace.peakLiveBytes, 64 * 2 ** 20),
        });
      } else {
        shared ??= await createDevice(spec);
        device = shared;
      }
      try {
        for (const policy of policies ?? [defaultPolicyName(device, {})]) {
          const label = `${trace.name}/${policy}`;
          options.progress?.update(done, label);
          records.push(
            replayOne(trace, policy, device, deviceLabel(spec), runs, options.detail === true, warmup, () => {
              done++;
              options.progress?.update(done, label);
            }),
          );
        }
      } finally {
        if (device !== shared) device.destroy();
      }
    }
  } finally {
    shared?.destroy();
    options.progress?.done();
  }
  return records;
}

/**
 * runReplay with `isolate`: one child process of the built CLI per (trace, policy), in order.
 * `policies` undefined: the device's default policy, which each child picks itself.
 */
async function replayIsolated(
  options: ReplayBenchOptions,
  policies: readonly string[] | undefined,
  spec: DeviceSpec,
  runs: number,
  warmup: number,
): Promise<ReplayRecord[]> {
  const files = options.traces.map((t) => {
    if (typeof t !== 'string')
      throw new BenchUsageError('replay in fresh processes (isolate) needs trace files, not parsed traces');
    return t;
  });
  const cli = benchCliFile('replay');
  const records: ReplayRecord[] = [];
  options.progress?.setTotal(files.length * (policies?.length ?? 1));
  try {
    for (const file of files) {
      for (const policy of policies ?? [undefined]) {
        const name = policy ?? 'the default policy';
        options.progress?.update(records.length, `${file}/${name}`);
        const args = replayChildArgs(file, policy, spec, runs, warmup, options.detail === true);
        const isOne = (value: unknown): value is ReplayRecord =>
          isReplayRecord(value) && (policy === undefined || value.policy === policy);
        records.push(await runCliChildRecord(cli, args, `replay record for ${name}`, isOne));
      }
    }
    options.progress?.update(records.length);
  } finally {
    options.progress?.done();
  }
  return records;
}

/**
 * The command line (after the CLI file) that replays one trace through one policy in a child
 * process (`policy` undefined: the device's default).
 */
export function replayChildArgs(
  file: string,
  policy: string | undefined,
  spec: DeviceSpec,
  runs: number,
  warmup: number,
  detail: boolean,
): string[] {
  const args = ['replay', file, ...(policy === undefined ? [] : ['--policy', policy])];
  args.push(...deviceArgs(spec), '--runs', String(runs));
  args.push('--warmup', String(warmup), '--json');
  if (detail) args.push('--detail');
  return args;
}

/** One (trace, policy): `warmup` untimed passes (the first doubles as the detail pass), then `runs` timed replays on fresh pools. */
export function replayOne(
  trace: Trace,
  policy: string,
  device: Device,
  deviceName: string,
  runs: number,
  detail: boolean,
  warmup: number = REPLAY_WARMUP_DEFAULT,
  onRunDone: () => void = () => {},
): ReplayRecord {
  const base = {
    trace: trace.name,
    policy,
    device: deviceName,
    ops: trace.length,
    source: 'gpupool' as const,
  };
  let extra: Pick<ReplayRecord, 'timeline' | 'memoryMap'> = {};
  try {
    // Warm-up (REPLAY_WARMUP_DEFAULT says why); the first pass also gives the detail pass.
    for (let w = 0; w < Math.max(1, warmup); w++) {
      const warm = createPool({ device, policy, name: `bench:${trace.name}:${policy}` });
      try {
        if (detail && w === 0) extra = detailPass(trace, warm);
        else replayTrace(trace, warm);
      } finally {
        warm.destroy();
      }
    }
    onRunDone();
    const nsPerOpRuns: number[] = [];
    const faultRuns: number[] = [];
    let first: ReturnType<typeof replayTrace> | undefined;
    for (let r = 0; r < runs; r++) {
      const pool = createPool({ device, policy, name: `bench:${trace.name}:${policy}` });
      try {
        const result = replayTrace(trace, pool);
        faultRuns.push(result.pageFaults);
        first ??= result;
        nsPerOpRuns.push(result.elapsedNs / Math.max(1, result.ops));
      } finally {
        pool.destroy();
      }
      onRunDone();
    }
    return {
      ...base,
      peakLiveBytes: first!.peakLiveBytes,
      peakReservedBytes: first!.peakReservedBytes,
      ratio: first!.ratio,
      nsPerOp: median(nsPerOpRuns),
      deviceCalls: first!.deviceCalls,
      runs,
      warmup,
      pageFaults: median(faultRuns),
      source: 'gpupool',
      ...extra,
    };
  } catch (error) {
    return {
      ...base,
      peakLiveBytes: trace.peakLiveBytes,
      peakReservedBytes: Number.NaN,
      ratio: Number.NaN,
      nsPerOp: Number.NaN,
      deviceCalls: null,
      runs: 0,
      source: 'gpupool',
      error: `${(error as Error).name}: ${(error as Error).message}`,
      ...extra,
    };
  }
}

/** An untimed replay that samples reserved/live bytes and snapshots the pool at peak live. */
export function detailPass(trace: Trace, pool: Pool): { timeline: Timeline; memoryMap: MemoryMap } {
  const blocks: (Block | undefined)[] = new Array(trace.idCount);
  const every = Math.max(1, Math.ceil(trace.length / TIMELINE_SAMPLES));
  const peakAt = peakLiveIndex(trace);
  const timeline: Timeline = { opIndex: [], liveBytes: [], reservedBytes: [] };
  let memoryMap: MemoryMap | undefined;
  for (let i = 0; i < trace.length; i++) {
    const id = trace.ids[i]!;
    if (trace.kinds[i] === 0) blocks[id] = pool.acquire(trace.bytes[i]!);
    else {
      blocks[id]!.release();
      blocks[id] = undefined;
    }
    if (i % every === 0 || i === trace.length - 1 || i === peakAt) {
      const s = pool.stats();
      timeline.opIndex.push(i);
      timeline.liveBytes.push(s.liveBytes);
      timeline.reservedBytes.push(s.reservedBytes);
    }
    if (i === peakAt) memoryMap = memoryMapOf(pool, i);
  }
  for (const b of blocks) b?.release();
  return { timeline, memoryMap: memoryMap ?? memoryMapOf(pool, trace.length - 1) };
}

/** A compact memory map from `pool.snapshot()`. */
export function memoryMapOf(pool: Pool, opIndex: number): MemoryMap {
  const snap = pool.snapshot();
  const mapped: [number, number][] = [];
  for (const arena of snap.arenas) {
    for (const [firstPage, pageCount] of arena.mappedRuns) {
      mapped.push([arena.start + firstPage * arena.pageBytes, pageCount * arena.pageBytes]);
    }
  }
  const kept = snap.blocks.slice(0, MEMORY_MAP_BLOCKS_MAX);
  return {
    opIndex,
    pageBytes: snap.device.pageBytes,
    liveBytes: snap.stats.liveBytes,
    reservedBytes: snap.stats.reservedBytes,
    mapped,
    blocks: kept.map((b) => [b.address, b.sizeBytes]),
    blocksOmitted: snap.blocks.length - kept.length,
  };
}
