/**
 * The shared-memory layout of one arena: every field that threads read or write through
 * `Atomics` is named here, with the ordering each access relies on. One `Int32Array` over one
 * `SharedArrayBuffer` holds, in order: the header, the superblock directory (owner, run start,
 * map state, exported-block count and checksum per superblock), the slice table, and one
 * remote-free queue per slice slot.
 *
 * Orderings: JavaScript `Atomics` operations are all sequentially consistent (there is no weaker
 * mode), and a plain access after an `Atomics.load` that reads a value written by an
 * `Atomics.store`/`compareExchange` sees everything written before that store. The comments say
 * which of those edges each field needs; a field marked "owner-only" is written by one thread and
 * read by others only for statistics.
 *
 * Invariants: a superblock's owner changes only by compareExchange FREE → ownerId (claim) or by its
 * owner (or the adopter of a dead owner) storing FREE after its pages were unmapped; a queue cell is
 * written only by the producer that won its position.
 *
 * False sharing: each slice's fields (which its owner reads on every acquire and release: the
 * queue head and tail) sit in their own SLICE_INT32S × 4 = 256-byte stride, with its fields in
 * the first 84 bytes, so the fields of two slices are at least 172 bytes apart, and the slice table
 * starts REGION_GAP_INT32S × 4 = 128 bytes after the directory and ends at least as far before
 * the queues. Two words at least 128 bytes apart never share a cache line nor an adjacent-line
 * prefetch pair (128 bytes), whatever the SharedArrayBuffer's own alignment (not 128-byte
 * aligned in general). So one thread's counter updates, or producers pushing onto one slice's
 * queue, never invalidate the line another slice's owner reads on its hot path.
 */

/** Layout version: bump when any offset below changes. */
export const LAYOUT_MAGIC = 0x67707734; // 'gpw4'
/** Words of padding between the directory and the slice table (128 bytes). */
export const REGION_GAP_INT32S = 32;

// ---- header (int32 indices) ----
/** Constant after creation. */
export const HDR_MAGIC = 0;
/** Constant after creation. */
export const HDR_SUPERBLOCK_COUNT = 1;
/** Constant after creation. */
export const HDR_SLICE_SLOTS = 2;
/** Constant after creation: cells per remote-free queue (a power of two). */
export const HDR_QUEUE_CELLS = 3;
/** Constant after creation: superblock size in 256-byte granules. */
export const HDR_SUPERBLOCK_GRANULES = 4;
/** Atomics.add by whoever claims/returns: superblocks not owned by any slice (statistics and fast "full" check). */
export const HDR_FREE_SUPERBLOCKS = 5;
/** Atomics.add by the adopter: slices reclaimed after their thread died. */
export const HDR_RECLAIMED_SLICES = 6;
/** Atomics.add by the adopter: superblocks returned on behalf of dead slices. */
export const HDR_RECLAIMED_SUPERBLOCKS = 7;
/** Atomics.add by the adopter: remote frees found in dead slices' queues. */
export const HDR_RECLAIMED_REMOTE_FREES = 8;
/** Atomics.add: remote frees dropped because their owner was gone and its memory already back. */
export const HDR_DROPPED_REMOTE_FREES = 9;
/**
 * Atomics.add by a slice whose claim found no free run, or whose map of a claimed run the device
 * refused for lack of memory (its memory can be smaller than the arena's address space: the
 * superblocks other slices keep empty and mapped hold it). Every slice that sees it change gives back
 * its empty superblocks (on its idle timer or when a run empties), so memory that one idle thread
 * keeps under `emptySuperblocksMax` is not refused to another thread forever.
 */
export const HDR_CLAIM_FAILURES = 10;
export const HEADER_INT32S = 16;

// ---- superblock directory: five int32 per superblock ----
export const SB_INT32S = 5;
/**
 * 0 (FREE) or the ownerId of the slice that owns it. Claimed with compareExchange(FREE → id);
 * released with Atomics.store(FREE) only after unmap: a claimer that reads FREE then sees the pages
 * unmapped (the store orders the unmap's plain writes before it).
 */
export const SB_OWNER = 0;
/** Index of the first superblock of the run this one was claimed with; written by the owner before it maps. */
export const SB_RUN_FIRST = 1;
/**
 * On the run's first superblock: MAP_UNMAPPED / MAP_MAPPING / MAP_MAPPED / MAP_UNMAPPING. Owner-written;
 * the adopter reads it after the owner died.
 */
export const SB_MAP_STATE = 2;
/**
 * On the run's first superblock: blocks of this run handed to other threads as descriptors and not
 * yet freed. Atomics.add/sub by the owner (or adopter); the adopter keeps a run while it or
 * SB_EXPORTED_SUM is not 0.
 */
export const SB_EXPORTED_BLOCKS = 3;
/**
 * On the run's first superblock: the sum (mod 2^32) of exportKey() over the blocks counted in
 * SB_EXPORTED_BLOCKS, changed together with it. The adopter of a dead slice cannot see which
 * blocks it exported, only these two words: it gives a run back only when both are 0, so a remote
 * free that names no exported block (released twice, or a stale descriptor) never frees the
 * superblock of a block another thread still holds. Atomics.add, always just before the count's.
 */
export const SB_EXPORTED_SUM = 4;

export const OWNER_FREE = 0;
export const MAP_UNMAPPED = 0;
/** Set before the device call: a thread killed during `map` leaves this, and the adopter tries to unmap. */
export const MAP_MAPPING = 1;
export const MAP_MAPPED = 2;
/**
 * Set before the device call that gives a run back: a thread killed during or just after `unmap`
 * (Piscina terminates idle workers, and idle workers give back empty superblocks) leaves this, and
 * the adopter unmaps only what is still mapped.
 */
export const MAP_UNMAPPING = 3;

// ---- slice table: SLICE_INT32S int32 per slot (fields in the first 21, the rest padding) ----
export const SLICE_INT32S = 64;
/** SLOT_FREE / SLOT_OPENING / SLOT_ACTIVE / SLOT_ORPHANED. compareExchange FREE → OPENING takes a slot; ACTIVE → ORPHANED starts adoption. */
export const SL_STATE = 0;
/** The current ownerId (generation × slots + slot + 1). Stored before SL_STATE becomes ACTIVE. */
export const SL_OWNER_ID = 1;
/** Incremented on every reuse of the slot, so stale descriptors and queue entries are recognised. */
export const SL_GENERATION = 2;
/** worker_threads threadId of the owner (0 = main thread). */
export const SL_THREAD_ID = 3;
/** Owner-only counters, read by others for statistics. */
export const SL_SUPERBLOCKS = 4;
export const SL_CLAIMS = 5;
export const SL_RETURNS = 6;
/** Remote frees merged by the owner. */
export const SL_REMOTE_FREES_MERGED = 7;
/** Atomics.add by producers: frees pushed onto this slot's queue. */
export const SL_REMOTE_FREES_PUSHED = 8;
/** Owner-only: remote frees that named no exported block (double or stale release). */
export const SL_REMOTE_FREES_REJECTED = 9;
/** Queue consumer position (owner-only writes; producers read it to detect a full queue). */
export const SL_QUEUE_HEAD = 10;
/** Queue producer position: producers advance it with compareExchange. */
export const SL_QUEUE_TAIL = 11;
/** Owner-only: peak superblocks owned. */
export const SL_SUPERBLOCKS_PEAK = 12;
/** 1 once the creator adopted the slot because its thread exited (reclaimed-* statistics); 0 when opened. */
export const SL_DEAD = 13;
/**
 * Owner-only merge log: the remote free at queue position SL_MERGE_POS that the owner is applying
 * (MERGE_APPLY) or rejecting (MERGE_REJECT), with what it changes as it was before. A thread can
 * end between any two statements (Piscina terminates idle workers, and idle workers merge): the
 * adopter finds the log and finishes that entry, applying only what did not change yet, then pops
 * it. The owner writes the fields, then Atomics.store(SL_MERGE_STATE); it takes the entry off the
 * queue only after applying it; SL_MERGE_STATE goes back to 0 (Atomics.store) before the next log.
 */
export const SL_MERGE_STATE = 14;
export const SL_MERGE_POS = 15;
/** The block's run (its first superblock) and exportKey(); the run's SB_EXPORTED_SUM and SB_EXPORTED_BLOCKS before. */
export const SL_MERGE_FIRST = 16;
export const SL_MERGE_KEY = 17;
export const SL_MERGE_SUM = 18;
export const SL_MERGE_COUNT = 19;
/** SL_REMOTE_FREES_MERGED (MERGE_APPLY) or SL_REMOTE_FREES_REJECTED (MERGE_REJECT) before. */
export const SL_MERGE_TALLY = 20;
export const MERGE_APPLY = 1;
export const MERGE_REJECT = 2;

export const SLOT_FREE = 0;
export const SLOT_ACTIVE = 1;
export const SLOT_ORPHANED = 2;
/** Taken by a thread that is filling in the slot's fields; nobody else touches it. */
export const SLOT_OPENING = 3;

// ---- remote-free queue cells (bounded multi-producer single-consumer ring, Vyukov-style) ----
export const CELL_INT32S = 4;
/**
 * Cell sequence number. A producer that wins position `pos` writes the payload with plain stores,
 * then Atomics.store(seq = pos + 1): the consumer's Atomics.load of seq == pos + 1 then sees the
 * payload. The consumer frees the cell with Atomics.store(seq = pos + cells).
 */
export const CELL_SEQ = 0;
/** Block offset in the arena, in 256-byte granules. */
export const CELL_OFFSET_GRANULES = 1;
/** The block's id in its owner's pool (checked against the owner's exported table). */
export const CELL_BLOCK_ID = 2;
/** The ownerId the releaser believed in: entries for an older generation of the slot are dropped. */
export const CELL_OWNER_ID = 3;

export const GRANULE_BYTES = 256;

export interface LayoutShape {
  superblockCount: number;
  sliceSlots: number;
  queueCells: number;
}

export function directoryIndex(superblock: number, field: number): number {
  return HEADER_INT32S + superblock * SB_INT32S + field;
}

export function sliceIndex(shape: LayoutShape, slot: number, field: number): number {
  return HEADER_INT32S + shape.superblockCount * SB_INT32S + REGION_GAP_INT32S + slot * SLICE_INT32S + field;
}

export function cellIndex(shape: LayoutShape, slot: number, cell: number, field: number): number {
  return (
    HEADER_INT32S +
    shape.superblockCount * SB_INT32S +
    REGION_GAP_INT32S +
    shape.sliceSlots * SLICE_INT32S +
    (slot * shape.queueCells + cell) * CELL_INT32S +
    field
  );
}

export function layoutBytes(shape: LayoutShape): number {
  return (
    4 *
    (HEADER_INT32S +
      shape.superblockCount * SB_INT32S +
      REGION_GAP_INT32S +
      shape.sliceSlots * SLICE_INT32S +
      shape.sliceSlots * shape.queueCells * CELL_INT32S)
  );
}

/** A well-mixed 32-bit key of an exported block (see SB_EXPORTED_SUM). */
export function exportKey(offsetGranules: number, blockId: number): number {
  let h = Math.imul(offsetGranules ^ 0x5bd1e995, 0x9e3779b1) ^ Math.imul(blockId | 0, 0x85ebca6b);
  h = Math.imul(h ^ (h >>> 16), 0x7feb352d);
  h = Math.imul(h ^ (h >>> 15), 0x846ca68b);
  return (h ^ (h >>> 16)) | 0;
}

export function ownerIdOf(slot: number, generation: number, slots: number): number {
  return generation * slots + slot + 1;
}

export function slotOfOwnerId(ownerId: number, slots: number): number {
  return (ownerId - 1) % slots;
}
