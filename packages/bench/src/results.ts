/**
 * The result records every command prints with `--json`, and a results bundle that gathers them
 * for tables and the HTML report. `ReplayRecord`'s first fields are the contract of
 * ../shared/DESIGN.md (bench): trace, policy, device, ops, peakLiveBytes, peakReservedBytes, ratio,
 * nsPerOp, deviceCalls. Peers (packages/bench/peers/replay_peers.py) print the same fields.
 */
import type { MachineInfo } from './machine.js';

export interface ReplayRecord {
  trace: string;
  policy: string;
  device: string;
  ops: number;
  peakLiveBytes: number;
  peakReservedBytes: number;
  /** peakReservedBytes / peakLiveBytes (1.0 is the floor). */
  ratio: number;
  /** Median over `runs` timed replays. */
  nsPerOp: number;
  /** Device calls that obtained memory (page maps or segment allocations). Null when a peer cannot count them. */
  deviceCalls: number | null;
  /** How many timed replays the median is over. */
  runs?: number;
  /** How many untimed replays ran before them in the same process (gpupool only). */
  warmup?: number;
  /**
   * Minor page faults per timed replay, median (gpupool only; `process.resourceUsage()`). Where it
   * runs into the hundreds the time is partly the machine's: V8 resizing its young generation
   * (docs/benchmarks.md, "Replay timings and V8's young generation").
   */
  pageFaults?: number;
  /** 'gpupool' for this package, 'peer' for replay_peers.py. */
  source?: 'gpupool' | 'peer';
  /** Set when the replay failed (e.g. out of memory); the numbers are then NaN or null. */
  error?: string;
  /** Only with --detail: reserved and live bytes sampled over the replay. */
  timeline?: Timeline;
  /** Only with --detail: the pool's memory at the trace's peak of live bytes. */
  memoryMap?: MemoryMap;
}

export interface Timeline {
  /** Operation index of each sample. */
  opIndex: number[];
  liveBytes: number[];
  reservedBytes: number[];
}

/** A compact `pool.snapshot()`: runs as [poolAddress, bytes]. */
export interface MemoryMap {
  opIndex: number;
  pageBytes: number;
  liveBytes: number;
  reservedBytes: number;
  /** Mapped (or allocated) device memory, in pool space. */
  mapped: [number, number][];
  /** Live blocks, in pool space (sizeBytes: requested size rounded to the policy granule). */
  blocks: [number, number][];
  /** Blocks left out beyond the drawing limit. */
  blocksOmitted: number;
}

export interface LatencyRow {
  policy: string;
  bytes: number;
  /** Median ns per acquire+release pair on a warm pool (over processes, when several ran). */
  nsPerPair: number;
  /** Each fresh process's median, when the policy ran in several (latency --processes). */
  nsPerPairByProcess?: number[];
}

export interface RawLatencyRow {
  /** 'cudaMalloc' | 'cudaMallocAsync' | 'vmmMap' */
  api: string;
  bytes: number;
  /** ns per allocate+free pair, timed inside C++. */
  nsPerPair: number;
}

export interface LatencyRecord {
  kind: 'latency';
  device: string;
  runs: number;
  iterations: number;
  pool: LatencyRow[];
  raw: RawLatencyRow[];
  /** Why `raw` is empty, when it is. */
  rawSkipped?: string;
  /**
   * How the policies were timed: each in its own fresh process ('process-per-policy', the default)
   * or all in one process one after another ('in-process', `--in-process`). Absent in older records.
   */
  isolation?: 'process-per-policy' | 'in-process';
  /** Fresh processes per policy whose medians were combined (process-per-policy only). */
  processes?: number;
}

export interface ScalingRow {
  /** 'slices' (per-thread slices of one arena) or 'locked' (one lock-protected shared pool). */
  mode: string;
  threads: number;
  /** acquire+release pairs per second, all threads together (median over runs). */
  pairsPerSecond: number;
  /** pairsPerSecond / (threads × the same mode's 1-thread pairsPerSecond). */
  efficiency: number;
  /**
   * On-CPU ns per pair, all threads and timed rounds together (Σ on-CPU time / Σ pairs): about
   * threads × 1e9 / pairsPerSecond when every thread had a CPU to itself. Linux only; absent
   * elsewhere, when the timed rounds lasted under 100 ms in all (too coarse), and in older records.
   */
  cpuNsPerPair?: number;
}

export interface ScalingRecord {
  kind: 'scaling';
  device: string;
  runs: number;
  pairsPerThread: number;
  rows: ScalingRow[];
}

export interface CapacityRecord {
  kind: 'capacity';
  trace: string;
  policy: string;
  peakLiveBytes: number;
  /** Smallest capacity / peakLiveBytes at which the replay completed (bisection). */
  minCapacityRatio: number;
  /** Whether the replay completed at 1.05 × peak live (the design target). */
  completesAtTargetRatio: boolean;
  targetRatio: number;
  /** Bisection stops when the bracket is narrower than this (as a ratio). */
  toleranceRatio: number;
  replays: number;
}

/** Everything a report or a merged table is drawn from. */
export interface ResultsBundle {
  kind: 'bundle';
  machine?: MachineInfo;
  replays: ReplayRecord[];
  latency: LatencyRecord[];
  scaling: ScalingRecord[];
  capacity: CapacityRecord[];
}

export function emptyBundle(machine?: MachineInfo): ResultsBundle {
  return {
    kind: 'bundle',
    ...(machine ? { machine } : {}),
    replays: [],
    latency: [],
    scaling: [],
    capacity: [],
  };
}
