/**
 * The placement-policy contract. The pool keeps the books (pages, statistics, blocks, leaks);
 * a policy only decides where a block goes inside the free space the pool gives it, and merges
 * what comes back. Policies never touch a device.
 *
 * Addresses are pool-space numbers (offsets into the pool's arenas laid side by side). A policy
 * refers to each placed block by a slot: a small non-negative integer, stable until the block is
 * freed, that the policy may reuse afterwards. Sizes reach a policy already rounded up to
 * `POLICY_GRANULE_BYTES`; alignments are powers of two of at least that.
 *
 * Required methods:
 * - `addRange(address, bytes)`: new free space (an arena's address space, or a segment).
 * - `removeRange(address, bytes)`: take back a range added earlier; succeeds only if it is wholly free.
 * - `allocate(sizeBytes, alignmentBytes, key)`: place a block; returns its slot, or -1 if nothing fits.
 * - `addressOf(slot)`, `sizeOf(slot)`: where a placed block is and how many bytes it covers.
 * - `free(slot)`: take a block back. Returns true if its bytes became free space, false if the policy
 *   keeps the block whole in a cache for a later `allocate` with the same key (see `cachesBlocks`).
 * - `flush(visit)`: empty every cache; `visit(slot, address, bytes)` is called for each cached block
 *   just before its bytes become free space.
 * - `freeBytes()`, `largestFreeBytes()`, `forEachFree(visit)`: what is free, for stats and snapshots.
 *
 * Optional: `addArena(address, bytes)`: like addRange, for a range far larger than any block (a VMM
 * arena's address space, given once, at least twice the most the pool may hold), which a policy may
 * divide into regions; without it, or for a smaller arena, the backing calls addRange.
 *
 * Optional: `checkInvariants()`: recounts the policy's own structures (lists, bins, counters) and
 * returns a description of the first mismatch, or undefined. Expensive: for tests and debugging;
 * `pool.checkInvariants()` calls it.
 *
 * Optional: `preferMapped(fit)`: a VMM backing whose device unmaps only whole multi-page allocations
 * hands the policy a `MappedFit` (or null to turn it off), so that it can prefer free space whose
 * pages are mapped already to space that needs a map call (see BestFitPolicy).
 */

/** Every size a policy sees is a multiple of this (CUDA guarantees 256-byte alignment too). */
export const POLICY_GRANULE_BYTES = 256;

export interface Policy {
  readonly name: string;
  /** True if `allocate` needs the block's shape key and `free` may keep blocks in a cache. */
  readonly cachesBlocks: boolean;
  addRange(address: number, bytes: number): void;
  addArena?(address: number, bytes: number): void;
  preferMapped?(fit: MappedFit | null): void;
  removeRange(address: number, bytes: number): boolean;
  allocate(sizeBytes: number, alignmentBytes: number, key: string | undefined): number;
  addressOf(slot: number): number;
  sizeOf(slot: number): number;
  free(slot: number): boolean;
  flush(visit: (slot: number, address: number, bytes: number) => void): void;
  freeBytes(): number;
  largestFreeBytes(): number;
  forEachFree(visit: (address: number, bytes: number) => void): void;
  checkInvariants?(): string | undefined;
}

/** What a VMM backing tells a policy about mapped pages (see `Policy.preferMapped`). */
export interface MappedFit {
  /** True if every page that [address, address + bytes) touches is mapped. */
  isMapped(address: number, bytes: number): boolean;
  /** The largest free block worth taking instead of mapping new pages, as a multiple of the request. */
  readonly mappedFitFactor: number;
}

/** Creates a fresh policy instance; each pool (and each worker slice) gets its own. */
export type PolicyFactory = () => Policy;
