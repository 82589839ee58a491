/**
 * Finding and loading traces. The shared traces live in packages/core/test/fixtures (in the repo)
 * and, on a development machine, in ../shared/traces; `defaultTraceFiles` looks in both, from the
 * repo root or from the bench package, and takes the first folder that has any.
 */
import { existsSync, readdirSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { readTrace, type Trace } from '@gpupool/core';
import { BenchInputError } from './errors.js';

const TRACE_DIRS_FROM_ROOT = ['packages/core/test/fixtures', '../shared/traces'];

/** Candidate trace folders, relative to the working directory (repo root or a package folder). */
export function traceDirCandidates(cwd = process.cwd()): string[] {
  const roots = [cwd, resolve(cwd, '../..')];
  return roots.flatMap((root) => TRACE_DIRS_FROM_ROOT.map((d) => resolve(root, d)));
}

/** `*.trace.gz` / `*.trace` files of the first candidate folder that has any (sorted by name). */
export function defaultTraceFiles(dirs: readonly string[] = traceDirCandidates()): string[] {
  for (const dir of dirs) {
    if (!existsSync(dir)) continue;
    const files = readdirSync(dir)
      .filter((f) => /\.trace(\.gz)?$/.test(f))
      .sort()
      .map((f) => join(dir, f));
    if (files.length > 0) return files;
  }
  return [];
}

/** Reads a trace file, turning any failure into a BenchInputError that names the file. */
export function loadTrace(path: string): Trace {
  if (!existsSync(path)) throw new BenchInputError(`trace file not found: ${path}`);
  try {
    return readTrace(path);
  } catch (error) {
    throw new BenchInputError(`cannot read trace ${path}: ${(error as Error).message}`, { cause: error });
  }
}

/** The index of the first operation after which live bytes reach their peak. */
export function peakLiveIndex(trace: Trace): number {
  const liveById = new Float64Array(trace.idCount);
  let live = 0;
  let peak = -1;
  let at = 0;
  for (let i = 0; i < trace.length; i++) {
    const id = trace.ids[i]!;
    if (trace.kinds[i] === 0) {
      liveById[id] = trace.bytes[i]!;
      live += trace.bytes[i]!;
    } else {
      live -= liveById[id]!;
    }
    if (live > peak) {
      peak = live;
      at = i;
    }
  }
  return at;
}
