/** What machine and code a result came from: CPU, Node, date, commit, and the GPU when one was used. */
import { execFileSync } from 'node:child_process';
import os from 'node:os';

export interface MachineInfo {
  cpuModel: string;
  cpuCores: number;
  node: string;
  /**
   * The V8 flags that move timings that Node ran with (`v8TimingFlags()`), e.g.
   * `--min-semi-space-size=16`: heap sizes move replay timings by 2× on some machines, and the
   * inlining budget by ~20 % (scripts/young-gen.mjs), so a number says under which. Absent in
   * results from before 2026-11-27.
   */
  nodeFlags?: string[];
  platform: string;
  /** ISO date-time of the run. */
  date: string;
  /**
   * Short git commit: GPUPOOL_COMMIT when set (the GPU scripts' carried build), else the checkout's HEAD
   * ('+dirty' when it has uncommitted changes), else null.
   */
  commit: string | null;
  /** GPU name, when a command ran on CUDA. */
  gpu: string | null;
}

export function machineInfo(gpu: string | null = null): MachineInfo {
  return {
    cpuModel: os.cpus()[0]?.model ?? 'unknown',
    cpuCores: os.cpus().length,
    node: process.version,
    nodeFlags: v8TimingFlags(),
    platform: `${process.platform}-${process.arch}`,
    date: new Date().toISOString(),
    commit: builtFrom(),
    gpu,
  };
}

/**
 * The commit the code came from: GPUPOOL_COMMIT when set (scripts/gpu-check.sh sets it to the commit
 * the carried bundle was built from, since the GPU machine's copy has its own git metadata), else
 * git's HEAD here ('+dirty' with uncommitted changes), else null.
 */
function builtFrom(): string | null {
  const carried = process.env.GPUPOOL_COMMIT;
  if (carried !== undefined && carried !== '') return carried;
  let commit: string | null = null;
  try {
    commit = execFileSync('git', ['rev-parse', '--short', 'HEAD'], {
      encoding: 'utf8',
      stdio: ['ignore', 'pipe', 'ignore'],
    }).trim();
    const status = execFileSync('git', ['status', '--porcelain', '--untracked-files=no'], {
      encoding: 'utf8',
      stdio: ['ignore', 'pipe', 'ignore'],
    });
    if (status.trim() !== '') commit += '+dirty';
  } catch {
    commit = null;
  }
  return commit;
}

/**
 * V8 flags that change how fast the pool's JavaScript runs, not what it does: the heap's sizes
 * (the young generation's resizing faulted pages into replays) and the inlining budgets (a pool
 * operation that inlines its whole path runs faster). docs/benchmarks.md has both findings.
 */
const V8_TIMING_FLAG =
  /^--(min-semi-space-size|max-semi-space-size|max-old-space-size|semi-space-growth-factor|max-inlined-bytecode-size(-cumulative|-small)?)=\S+$/;

/**
 * The V8 timing flags among Node's flags (`process.execArgv`): what `latency` and isolated replays
 * pass on to their child processes and what results record. Other flags (`-e`, `--inspect`) are
 * not a child's business.
 */
export function v8TimingFlags(execArgv: readonly string[] = process.execArgv): string[] {
  return execArgv.filter((flag) => V8_TIMING_FLAG.test(flag));
}
