/**
 * `gpupool-bench merge`: folds result files into one bundle — this package's `--json` output
 * (one object, an array, or one object per line) and the peers' (replay_peers.py prints the same
 * replay fields, one object per line). Later records of the same (trace, policy, device) replace
 * earlier ones, so a rerun can be merged over an old file.
 */
import { readFileSync } from 'node:fs';
import { BenchInputError } from '../errors.js';
import { emptyBundle, type ReplayRecord, type ResultsBundle } from '../results.js';

const REPLAY_FIELDS = [
  'trace',
  'policy',
  'device',
  'ops',
  'peakLiveBytes',
  'peakReservedBytes',
  'ratio',
  'nsPerOp',
] as const;

/** Parses JSON text: one value, or one value per line (NDJSON). */
export function parseJsonValues(text: string, source: string): unknown[] {
  const trimmed = text.trim();
  if (trimmed === '') return [];
  try {
    return [JSON.parse(trimmed)];
  } catch {
    // Not one document: try one per line.
  }
  const values: unknown[] = [];
  const lines = trimmed.split('\n');
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i]!.trim();
    if (line === '' || !(line.startsWith('{') || line.startsWith('['))) continue;
    try {
      values.push(JSON.parse(line));
    } catch (error) {
      throw new BenchInputError(`${source}:${i + 1}: not JSON: ${(error as Error).message}`);
    }
  }
  return values;
}

export function isReplayRecord(value: unknown): value is ReplayRecord {
  if (typeof value !== 'object' || value === null) return false;
  const v = value as Record<string, unknown>;
  return REPLAY_FIELDS.every((f) => f in v) && typeof v.trace === 'string' && typeof v.policy === 'string';
}

function key(r: ReplayRecord): string {
  return `${r.trace}\u0000${r.policy}\u0000${r.device}`;
}

/** Adds one parsed value (record, array of records, or bundle) to `bundle`. */
export function addToBundle(bundle: ResultsBundle, value: unknown, source: string): void {
  if (Array.isArray(value)) {
    for (const v of value) addToBundle(bundle, v, source);
    return;
  }
  if (typeof value !== 'object' || value === null)
    throw new BenchInputError(`${source}: expected JSON objects`);
  const v = value as Record<string, unknown>;
  switch (v.kind) {
    case 'bundle': {
      const b = v as unknown as ResultsBundle;
      if (b.machine !== undefined) bundle.machine ??= b.machine;
      for (const list of [b.replays, b.latency, b.scaling, b.capacity])
        addToBundle(bundle, list ?? [], source);
      return;
    }
    case 'latency':
      bundle.latency.push(v as never);
      return;
    case 'scaling':
      bundle.scaling.push(v as never);
      return;
    case 'capacity':
      bundle.capacity.push(v as never);
      return;
    default:
      if (!isReplayRecord(v)) {
        throw new BenchInputError(
          `${source}: an object that is no result record (a replay record needs ${REPLAY_FIELDS.join(', ')})`,
        );
      }
      {
        const record: ReplayRecord = { ...v, ratio: v.ratio ?? Number.NaN, nsPerOp: v.nsPerOp ?? Number.NaN };
        const at = bundle.replays.findIndex((r) => key(r) === key(record));
        if (at >= 0) bundle.replays[at] = record;
        else bundle.replays.push(record);
      }
  }
}

/** Reads and merges result files into one bundle. */
export function mergeFiles(paths: readonly string[], into: ResultsBundle = emptyBundle()): ResultsBundle {
  for (const path of paths) {
    let text: string;
    try {
      text = readFileSync(path, 'utf8');
    } catch (error) {
      throw new BenchInputError(`cannot read ${path}: ${(error as Error).message}`, { cause: error });
    }
    const values = parseJsonValues(text, path);
    // An empty file, or lines that are not JSON, would otherwise merge as nothing without a word.
    if (values.every((v) => Array.isArray(v) && v.length === 0))
      throw new BenchInputError(`${path} holds no result records (expected --json output: JSON objects)`);
    for (const value of values) addToBundle(into, value, path);
  }
  return into;
}
