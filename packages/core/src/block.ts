/**
 * Block: one allocation handed to a user, [offset, offset + bytes) inside an arena. Release it
 * with `release()` or let `using` do it (`[Symbol.dispose]`). After release the handle is
 * inert: `ptr` throws, a second release throws DoubleReleaseError. After its pool's destroy() too,
 * `ptr` throws (PoolDestroyedError), while release() only detaches the handle.
 */
import type { ArenaRef } from './backing.js';
import type { BlockLike, StreamHandle } from './device.js';
import type { DType } from './dtype.js';
import { DoubleReleaseError, PoolDestroyedError, ReleasedBlockError } from './errors.js';
import { POLICY_GRANULE_BYTES } from './policies/policy.js';

/** What a block needs from its pool; implemented by the pool. */
export interface BlockOwner {
  releaseBlock(block: Block): void;
  /** True once the pool gave its memory back: its blocks' addresses may be another pool's. */
  readonly destroyed?: boolean;
}

export class Block implements BlockLike, Disposable {
  /** Sequence number within the pool: the ID written to traces. */
  readonly id: number;
  /** Requested size in bytes (the block may cover a little more; see `sizeBytes`). */
  readonly bytes: number;
  readonly shape: readonly number[] | undefined;
  readonly dtype: DType | undefined;
  /** The stream this block is used on (0 = default). Reuse on another stream waits for it. */
  stream: StreamHandle;
  /** @internal */ _owner: BlockOwner | null;
  /** @internal */ _slot: number;
  /**
   * @internal Pool-space address in granules (addresses are granule multiples): a small integer
   * up to 512 GiB, where the byte address above 2 GiB would make V8 box a double for every block.
   */
  _granule: number;
  /** @internal */ _arena: ArenaRef;
  private cachedPtr: bigint | undefined;

  constructor(
    owner: BlockOwner,
    id: number,
    slot: number,
    address: number,
    arena: ArenaRef,
    bytes: number,
    shape: readonly number[] | undefined,
    dtype: DType | undefined,
    stream: StreamHandle,
  ) {
    this._owner = owner;
    this.id = id;
    this._slot = slot;
    this._granule = address / POLICY_GRANULE_BYTES;
    this._arena = arena;
    this.bytes = bytes;
    this.shape = shape;
    this.dtype = dtype;
    this.stream = stream;
  }

  /** Device address of the first byte. Throws once the block is released or its pool destroyed. */
  get ptr(): bigint {
    if (this._owner === null) throw new ReleasedBlockError(`block #${this.id} ptr`);
    // destroy() gave the memory back to the device, which may have handed it to another pool.
    if (this._owner.destroyed === true) throw new PoolDestroyedError(`block #${this.id} ptr`);
    if (this.cachedPtr === undefined) this.cachedPtr = this._arena.base + BigInt(this.offset);
    return this.cachedPtr;
  }

  /** Offset of the first byte inside its arena. */
  get offset(): number {
    return this._granule * POLICY_GRANULE_BYTES - this._arena.start;
  }

  /** The arena this block lies in. */
  get arenaId(): number {
    return this._arena.id;
  }

  get released(): boolean {
    return this._owner === null;
  }

  release(): void {
    if (this._owner === null) throw new DoubleReleaseError(`block #${this.id}`);
    this._owner.releaseBlock(this);
  }

  /** Releases the block unless it was released already (so `using` after `release()` is fine). */
  [Symbol.dispose](): void {
    if (this._owner !== null) this._owner.releaseBlock(this);
  }
}
