/**
 * Blocks crossing threads. `toDescriptor(block)` turns a live block of a slice pool into a small
 * structured-cloneable record (arena, offset, bytes, owner, id); `fromDescriptor(d)` gives the
 * receiving thread a handle: the original Block in the owner's thread, else a RemoteBlock whose
 * `release()` pushes the free onto the owner's remote-free queue (lock-free, never waits).
 *
 * Invariant: a free is never lost. If the owner's queue is full, the creating thread keeps it in
 * its deferred list (a worker sends it there: a list kept in a worker would die with it) and
 * pushes it on its next pool call or by a retry timer; if the owner is gone its memory is already
 * back in the arena (or held by the adopter until this free arrives).
 */
import { BroadcastChannel } from 'node:worker_threads';
import {
  ArgumentRangeError,
  type Block,
  type BlockLike,
  DoubleReleaseError,
  type DType,
  InvalidArgumentError,
  ReleasedBlockError,
} from '@gpupool/core';
import { SharedArena } from './arena.js';
import { NotExportableError, UnknownArenaError } from './errors.js';
import { GRANULE_BYTES } from './layout.js';
import { isSlicePool } from './slice-pool.js';
import {
  register,
  registry,
  relayName,
  releaseRemote,
  type ThreadArena,
  workerBootstrap,
} from './thread-context.js';

export interface BlockDescriptor {
  readonly arenaId: number;
  /** Offset of the first byte inside the arena. */
  readonly offset: number;
  readonly bytes: number;
  /** ownerId of the slice that allocated it. */
  readonly owner: number;
  /** The block's id in its owner's pool. */
  readonly id: number;
  readonly shape: readonly number[] | undefined;
  readonly dtype: DType | undefined;
}

/** A block owned by another thread's slice. Release it here; the owner merges the free. */
export class RemoteBlock implements BlockLike, Disposable {
  readonly descriptor: BlockDescriptor;
  private readonly context: ThreadArena;
  private readonly address: bigint;
  private releasedFlag = false;

  /** @internal */
  constructor(context: ThreadArena, descriptor: BlockDescriptor) {
    this.context = context;
    this.descriptor = descriptor;
    this.address = context.arena.ref.base + BigInt(descriptor.offset);
  }

  get ptr(): bigint {
    if (this.releasedFlag) throw new ReleasedBlockError(`remote block #${this.descriptor.id} ptr`);
    return this.address;
  }

  get bytes(): number {
    return this.descriptor.bytes;
  }

  get offset(): number {
    return this.descriptor.offset;
  }

  get arenaId(): number {
    return this.descriptor.arenaId;
  }

  get shape(): readonly number[] | undefined {
    return this.descriptor.shape;
  }

  get dtype(): DType | undefined {
    return this.descriptor.dtype;
  }

  get released(): boolean {
    return this.releasedFlag;
  }

  release(): void {
    if (this.releasedFlag) throw new DoubleReleaseError(`remote block #${this.descriptor.id}`);
    this.releasedFlag = true;
    releaseRemote(this.context, this.descriptor.owner, this.descriptor.offset, this.descriptor.id);
  }

  [Symbol.dispose](): void {
    if (!this.releasedFlag) this.release();
  }
}

/** A descriptor of a live block of this thread's slice pool, for another thread of the same worker pool. */
export function toDescriptor(block: Block): BlockDescriptor {
  if (typeof block !== 'object' || block === null) {
    throw new InvalidArgumentError('block', 'must be a Block from threadPool().acquire()', block);
  }
  const owner = (block as Block)._owner;
  if (owner === null) throw new ReleasedBlockError(`toDescriptor(block #${block.id})`);
  if (!isSlicePool(owner)) throw new NotExportableError(`block #${String(block.id)}`);
  return owner.exportBlock(block);
}

/** The handle for a descriptor in this thread: the Block itself in its owner's thread, else a RemoteBlock. */
export function fromDescriptor(descriptor: BlockDescriptor): Block | RemoteBlock {
  const d = checkDescriptor(descriptor);
  const context = contextFor(d.arenaId);
  const arena = context.arena;
  if (d.offset >= arena.arenaBytes) {
    throw new ArgumentRangeError(
      'descriptor.offset',
      `must lie inside the arena (below ${arena.arenaBytes}); it must come from toDescriptor()`,
      d.offset,
    );
  }
  const slice = context.slice;
  if (isSlicePool(slice) && !slice.destroyed && slice.ownerId === d.owner) {
    const block = slice.exportedBlock(d.offset, d.id);
    if (block === undefined) throw new ReleasedBlockError(`fromDescriptor(block #${d.id})`);
    if (block.bytes !== d.bytes) throw alteredBytes(d, `the block's ${block.bytes} bytes`);
    return block;
  }
  const first = Math.floor(d.offset / arena.superblockBytes);
  if (arena.ownerOf(first) !== d.owner) throw new ReleasedBlockError(`fromDescriptor(block #${d.id})`);
  // A block lies inside one run of its owner's superblocks: bytes reaching past it were altered
  // (and would let data calls write into memory another thread owns).
  const last = Math.floor((d.offset + Math.max(d.bytes, 1) - 1) / arena.superblockBytes);
  if (
    last !== first &&
    (last >= arena.superblockCount ||
      arena.ownerOf(last) !== d.owner ||
      arena.runFirstOf(last) !== arena.runFirstOf(first))
  ) {
    throw alteredBytes(d, 'the run of superblocks its owner holds at descriptor.offset');
  }
  return new RemoteBlock(context, d);
}

function alteredBytes(d: BlockDescriptor, limit: string): ArgumentRangeError {
  return new ArgumentRangeError(
    'descriptor.bytes',
    `must fit ${limit}; the descriptor was altered (it must come from toDescriptor())`,
    d.bytes,
  );
}

function checkDescriptor(d: BlockDescriptor): BlockDescriptor {
  if (typeof d !== 'object' || d === null) {
    throw new InvalidArgumentError('descriptor', 'must be an object from toDescriptor()', d);
  }
  for (const key of ['arenaId', 'offset', 'bytes', 'owner', 'id'] as const) {
    if (!Number.isSafeInteger(d[key])) {
      throw new InvalidArgumentError(`descriptor.${key}`, 'must be an integer (from toDescriptor())', d[key]);
    }
  }
  if (d.offset < 0 || d.offset % GRANULE_BYTES !== 0 || d.bytes < 0 || d.owner < 1 || d.owner > 0x7fffffff) {
    throw new InvalidArgumentError(
      'descriptor',
      'has fields out of range; it must come from toDescriptor()',
      d,
    );
  }
  return d;
}

function contextFor(arenaId: number): ThreadArena {
  const found = registry().arenas.get(arenaId);
  if (found !== undefined) return found;
  const boot = workerBootstrap();
  if (boot !== undefined && boot.arena.arenaId === arenaId) {
    return register(SharedArena.attach(boot.arena, [boot.filename]), boot.slice, true);
  }
  throw new UnknownArenaError(arenaId);
}

/** In the creating thread: takes the frees workers could not queue, and keeps them until pushed. */
export function listenForRelayedFrees(context: ThreadArena): void {
  const channel = new BroadcastChannel(relayName(context.arena.arenaId));
  channel.onmessage = (event) => {
    const entry = event.data;
    if (Array.isArray(entry) && entry.length === 3 && entry.every((x) => Number.isSafeInteger(x)))
      releaseRemote(context, entry[0], entry[1], entry[2]);
  };
  channel.unref();
  context.relay = channel;
}
