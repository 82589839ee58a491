/**
 * The backing contract: where a pool's free space comes from and how device memory follows the
 * blocks. The pool calls `occupy` when a placed block starts holding bytes and `vacate` when
 * they are given back to free space; the backing maps or counts accordingly.
 *
 * Two backings ship in core: VmmBacking (one reserved arena, pages mapped on demand, empty pages
 * released with hysteresis) and SegmentBacking (whole device allocations, cudaMalloc style).
 * @gpupool/workers adds a slice backing over superblocks of a shared arena.
 *
 * Rules: a failed `grow` or `occupy` leaves the backing consistent (it may keep pages it managed
 * to map, as empty cache); `trim` gives back everything that holds no occupied byte.
 */
import type { Policy } from './policies/policy.js';

/** The device-side identity of an arena: blocks compute `ptr = base + (address - start)`. */
export interface ArenaRef {
  readonly id: number;
  /** Device address of the arena's first byte. */
  readonly base: bigint;
  /** Pool-space address of the arena's first byte. */
  readonly start: number;
  readonly bytes: number;
}

export interface ArenaSnapshot {
  id: number;
  kind: 'vmm' | 'segment' | 'superblock';
  /** Device address, hex. */
  base: string;
  start: number;
  bytes: number;
  pageBytes: number;
  mappedBytes: number;
  /** Mapped page runs as [firstPage, pageCount]; where allocations span pages, one entry per allocation. */
  mappedRuns: [number, number][];
}

export interface Backing {
  readonly kind: string;
  readonly pageBytes: number;
  /** Device memory held now (mapped pages or segments). */
  readonly reservedBytes: number;
  /**
   * Device calls that obtained memory, made by this backing. reservedBytes rises only together with
   * this count (the pool checks its reserved peak only then).
   */
  readonly deviceCalls: number;
  /** Gives the policy its initial free space. Called once. */
  attach(policy: Policy): void;
  /** Adds free space for a block of `sizeBytes`; false if this backing cannot grow. */
  grow(sizeBytes: number, alignmentBytes: number): boolean;
  occupy(address: number, bytes: number): void;
  vacate(address: number, bytes: number): void;
  /** Gives back all device memory that holds no occupied byte; returns the bytes given back. */
  trim(): number;
  arenaOf(address: number): ArenaRef;
  /**
   * Optional: gives back memory that has held no occupied byte since the previous call (the pool
   * calls it on a timer when `releaseAfterMs` is set). Returns the bytes given back.
   */
  decay?(): number;
  /** Optional: keep at least this many empty bytes mapped (prewarmed memory); 0 clears it. */
  setRetainFloor?(bytes: number): void;
  snapshot(): ArenaSnapshot[];
  /**
   * Optional, for tests: recounts the backing's books against the occupied spans ([address, bytes]
   * of every block occupy()'d and not yet vacate()'d); returns what disagrees, or undefined.
   */
  checkInvariants?(occupied: readonly (readonly [number, number])[]): string | undefined;
  destroy(): void;
}
