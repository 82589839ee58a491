/**
 * Finding and loading traces. The shared traces live in packages/core/test/fixtures (in the repo)
 * and, on a development machine, in ../shared/traces; `defaultTraceFiles` looks in both, from the
 * repo root or from the bench package, and takes the first folder that has any.
 */
import { closeSync, existsSync, openSync, readdirSync, readSync, statSync } from 'node:fs';
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

/**
 * Reads a trace file, turning any failure into a BenchInputError that names the file: missing, a
 * folder, unparseable (with a note when a `.gz` file holds no gzip data), or without operations
 * (nothing to replay: its ratio and time per operation would mean nothing).
 */
export function loadTrace(path: string): Trace {
  if (!existsSync(path)) throw new BenchInputError(`trace file not found: ${path}`);
  if (statSync(path).isDirectory())
    throw new BenchInputError(`trace path is a directory, not a file: ${path}`);
  let trace: Trace;
  try {
    trace = readTrace(path);
  } catch (error) {
    // readTrace reads a file without gzip's magic bytes as text, so a mislabelled file fails as text.
    const note =
      path.endsWith('.gz') && !startsWithGzipMagic(path) ? ' (not gzip data: read as plain text)' : '';
    throw new BenchInputError(`cannot read trace ${path}${note}: ${(error as Error).message}`, {
      cause: error,
    });
  }
  if (trace.length === 0)
    throw new BenchInputError(
      `trace ${path} has no operations (only comments or blank lines): nothing to replay`,
    );
  return trace;
}

/** Whether the file starts with gzip's magic bytes (1f 8b). */
function startsWithGzipMagic(path: string): boolean {
  const head = Buffer.alloc(2);
  let fd: number | undefined;
  try {
    fd = openSync(path, 'r');
    return readSync(fd, head, 0, 2, 0) === 2 && head[0] === 0x1f && head[1] === 0x8b;
  } catch {
    return false;
  } finally {
    if (fd !== undefined) closeSync(fd);
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
