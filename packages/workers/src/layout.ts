/**
 * The shared-memory layout of one arena: every field that threads read or write through
 * `Atomics` is named here, with the ordering each access relies on. One `Int32Array` over one
 * `SharedArrayBuffer` holds, in order: the header, the superblock directory (owner, run start,
 * map state, exported-block count and checksum per superblock), the slice table, the producer
 * records (one per thread that pushes remote frees), and one remote-free queue per slice slot.
 *
 * Orderings: JavaScript `Atomics` operations are all sequentially consistent (there is no weaker
 * mode), and a plain access after an `Atomics.load` that reads a value written by an
 * `Atomics.store`/`compareExchange` sees everything written before that store. The comments say
 * which of those edges each field needs; a field marked "owner-only" is written by one thread and
 * read by others only for statistics.
 *
 * Invariants: a superblock's owner changes only by compareExchange FREE → ownerId (claim) or by its
 * owner (or the adopter of a dead owner) storing FREE after its pages were unmapped; a FREE
 * superblock's run word is -1 and its map state MAP_UNMAPPED; a queue cell is written only by the
 * producer that won its position (or the adopter of that producer).
 *
 * Termination: a worker can be terminated between any two statements (Piscina ends idle workers,
 * and idle workers merge and give back; tasks can be cancelled). Every multi-step change a thread
 * makes to shared words on a slow path is announced first in its own books — the merge log
 * (SL_MERGE_*), the op log (SL_OP_*: claim, return, export, release of an exported block) or its
 * producer record (PR_*: a remote push) — and the adopter of a dead thread finishes or undoes it
 * from there. The hot path (acquire/release of a block that never left its thread) writes none.
 *
 * False sharing: each slice's fields (which its owner reads on every acquire and release: the
 * queue head and tail) sit in their own SLICE_INT32S × 4 = 256-byte stride, with its fields in
 * the first 120 bytes, so the fields of two slices are at least 136 bytes apart, and the slice table
 * starts REGION_GAP_INT32S × 4 = 128 bytes after the directory and ends at least as far before
 * the producer records, whose PRODUCER_INT32S × 4 = 192-byte stride keeps their 24 bytes of fields
 * as far from each other and from the queues. Two words at least 128 bytes apart never share a cache line nor an adjacent-line
 * prefetch pair (128 bytes), whatever the SharedArrayBuffer's own alignment (not 128-byte
 * aligned in general). So one thread's counter updates, or producers pushing onto one slice's
 * queue, never invalidate the line another slice's owner reads on its hot path.
 */

/** Layout version: bump when any offset below changes. */
export const LAYOUT_MAGIC = 0x67707735; // 'gpw5'
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
// Word 5 is unused since 'gpw5': the free-superblock count is the directory's (a counter that a
// claim or return changes in a separate step would drift when its thread ends in between).
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

// ---- slice table: SLICE_INT32S int32 per slot (fields in the first 30, the rest padding) ----
export const SLICE_INT32S = 64;
/**
 * SLOT_FREE / slotOpening(threadId) / SLOT_ACTIVE / SLOT_ORPHANED / SLOT_CLOSING. compareExchange
 * FREE → slotOpening(threadId) takes a slot; ACTIVE → ORPHANED starts adoption; ACTIVE or ORPHANED →
 * CLOSING → FREE frees it (see SLOT_CLOSING).
 */
export const SL_STATE = 0;
/** The current ownerId (generation × slots + slot + 1). Stored before SL_STATE becomes ACTIVE. */
export const SL_OWNER_ID = 1;
/** Incremented on every reuse of the slot, so stale descriptors and queue entries are recognised. */
export const SL_GENERATION = 2;
/** worker_threads threadId of the owner (0 = main thread). */
export const SL_THREAD_ID = 3;
/**
 * Owner-only counters, read by others for statistics. SL_SUPERBLOCKS is what the directory says the
 * slice owns, changed in the same logged op as the owner words (claim, return).
 */
export const SL_SUPERBLOCKS = 4;
export const SL_CLAIMS = 5;
export const SL_RETURNS = 6;
/** Remote frees merged by the owner. */
export const SL_REMOTE_FREES_MERGED = 7;
/**
 * The queue tail (SL_QUEUE_TAIL) when the slot was opened, plus one for each tombstone its adopter
 * published since (Atomics.add): remoteFreesPushed is the tail less this. A free is counted by the
 * compareExchange that wins its queue position, so no thread can end between pushing a free and
 * counting it (a separate counter was counted twice when its producer ended between the add and
 * saying so).
 */
export const SL_QUEUE_BASE = 8;
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
/**
 * Owner-only op log of the other slow paths that change shared words in several steps: OP_CLAIM
 * (a run of superblocks being claimed and mapped: SL_OP_FIRST, SL_OP_COUNT), OP_RETURN (a run being
 * unmapped and freed), OP_EXPORT (toDescriptor adding a block to its run's exported count and
 * checksum: SL_OP_FIRST, SL_OP_KEY) and OP_UNEXPORT (an exported block released in its own thread).
 * The owner writes the fields, then Atomics.store(SL_OP_STATE), and stores 0 once done. The adopter
 * of a dead owner undoes a claim (no block came out of that run yet: its superblocks owned by the
 * slice go back, its counters get their logged values) or an export (the descriptor was never
 * returned), and completes a return or an unexport. Only the owner changes these words and the run
 * words it logs while it lives, so the logged values are exact.
 */
export const SL_OP_STATE = 21;
export const SL_OP_FIRST = 22;
export const SL_OP_COUNT = 23;
/** SL_SUPERBLOCKS, and SL_CLAIMS (OP_CLAIM) or SL_RETURNS (OP_RETURN), before the op. */
export const SL_OP_SUPERBLOCKS = 24;
export const SL_OP_TALLY = 25;
/** exportKey() of the block; the run's SB_EXPORTED_SUM and SB_EXPORTED_BLOCKS before the op. */
export const SL_OP_KEY = 26;
export const SL_OP_SUM = 27;
export const SL_OP_EXPORTED = 28;
/** OP_CLAIM: SL_SUPERBLOCKS_PEAK before the op (the claim raises it before it ends; an undone claim puts it back). */
export const SL_OP_PEAK = 29;
export const OP_CLAIM = 1;
export const OP_RETURN = 2;
export const OP_EXPORT = 3;
export const OP_UNEXPORT = 4;

export const SLOT_FREE = 0;
export const SLOT_ACTIVE = 1;
export const SLOT_ORPHANED = 2;
/**
 * Taken by thread `threadId`, which is filling in the slot's fields; nobody else touches it. The
 * state names the thread (negative, apart from the other states): the adopter of a thread that
 * ended there frees the slot (nothing was claimed, no free was pushed for the new owner).
 */
export function slotOpening(threadId: number): number {
  return -(threadId + 1);
}
/**
 * Being freed: the slice holds no superblock and its queue is empty. Stored before the freeing
 * thread reads the producer records; a producer stores its record (naming the owner it pushes
 * to) before it reads SL_STATE. So a producer either sees CLOSING (its free is stale: it drops it)
 * or its record is seen (the slot goes back to ORPHANED and is freed later): a slot is never freed,
 * nor reopened for a new owner, while a free for its old owner is being pushed.
 */
export const SLOT_CLOSING = 4;

// ---- producer records: PRODUCER_INT32S int32 per record, one record per pushing thread ----
export const PRODUCER_INT32S = 48;
/**
 * 0 (free), threadId + 1 (held by that live thread), or -(threadId + 1) (its thread ended: the
 * adopter resolves the record, then frees it). Taken with compareExchange(0 → threadId + 1);
 * record 0 is the creating thread's.
 */
export const PR_THREAD = 0;
/**
 * PUSH_PENDING / PUSH_WON, or 0 between pushes. The producer writes PR_OWNER_ID and the payload,
 * then Atomics.store(PUSH_PENDING), then checks the owner (see SLOT_CLOSING); it stores PR_POS
 * before each compareExchange of the queue tail (which counts the free: SL_QUEUE_BASE), PUSH_WON
 * once it won that position, and 0 after the cell is published. The adopter of a dead producer
 * publishes what it won (if not yet published), or (PUSH_PENDING: it cannot tell whether the
 * producer won the position) publishes a tombstone there once no live producer names that position
 * and the position is still unpublished after it looked at every record, and delivers the free
 * itself.
 */
export const PR_STATE = 1;
/** The ownerId the free is for (its slot's queue is the target). */
export const PR_OWNER_ID = 2;
/** The queue position the producer is trying for (or won). */
export const PR_POS = 3;
export const PR_OFFSET_GRANULES = 4;
export const PR_BLOCK_ID = 5;
export const PUSH_PENDING = 1;
export const PUSH_WON = 2;

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
/**
 * The ownerId the releaser pushed to (always the slot's current owner: see SLOT_CLOSING), or
 * TOMBSTONE_OWNER_ID: a position an ended producer took but never filled, published empty by its
 * adopter; consumers skip it and count nothing.
 */
export const CELL_OWNER_ID = 3;
export const TOMBSTONE_OWNER_ID = 0;

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

/** Producer records: one per slice slot (threads of the pool at once, main thread included). */
export function producerIndex(shape: LayoutShape, record: number, field: number): number {
  return (
    HEADER_INT32S +
    shape.superblockCount * SB_INT32S +
    REGION_GAP_INT32S +
    shape.sliceSlots * SLICE_INT32S +
    record * PRODUCER_INT32S +
    field
  );
}

export function cellIndex(shape: LayoutShape, slot: number, cell: number, field: number): number {
  return (
    HEADER_INT32S +
    shape.superblockCount * SB_INT32S +
    REGION_GAP_INT32S +
    shape.sliceSlots * (SLICE_INT32S + PRODUCER_INT32S) +
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
      shape.sliceSlots * (SLICE_INT32S + PRODUCER_INT32S) +
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
