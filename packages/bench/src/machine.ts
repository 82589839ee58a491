/** What machine and code a result came from: CPU, Node, date, commit, and the GPU when one was used. */
import { execFileSync } from 'node:child_process';
import os from 'node:os';

export interface MachineInfo {
  cpuModel: string;
  cpuCores: number;
  node: string;
  platform: string;
  /** ISO date-time of the run. */
  date: string;
  /** Short git commit, when the working tree is a git checkout; '+dirty' when it has uncommitted changes. */
  commit: string | null;
  /** GPU name, when a command ran on CUDA. */
  gpu: string | null;
}

export function machineInfo(gpu: string | null = null): MachineInfo {
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
  return {
    cpuModel: os.cpus()[0]?.model ?? 'unknown',
    cpuCores: os.cpus().length,
    node: process.version,
    platform: `${process.platform}-${process.arch}`,
    date: new Date().toISOString(),
    commit,
    gpu,
  };
}
