/** The shape of `pool.snapshot()`: plain JSON, safe to write to a file or send to a report. */
import type { ArenaSnapshot } from './backing.js';
import type { PoolStats } from './stats.js';

export interface BlockSnapshot {
  id: number;
  arenaId: number;
  offset: number;
  /** Pool-space address (arenas laid side by side). */
  address: number;
  bytes: number;
  /** Bytes the block covers (requested size rounded up to the policy granule). */
  sizeBytes: number;
  shape: number[] | null;
  dtype: string | null;
  stream: number;
  /** Null unless the pool records creation times (leakAgeMs or captureStacks). */
  ageMs: number | null;
  stack: string | null;
}

export interface PoolSnapshot {
  name: string;
  policy: string;
  backing: string;
  device: { kind: string; name: string; pageBytes: number; totalBytes: number };
  takenAtMs: number;
  stats: PoolStats;
  arenas: ArenaSnapshot[];
  blocks: BlockSnapshot[];
  /** Free runs in pool space (mapped or not). */
  free: { address: number; bytes: number }[];
}
