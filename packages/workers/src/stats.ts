/** Statistics of a shared arena and its slices: plain JSON, read from shared memory at call time. */

export interface SliceStats {
  slot: number;
  ownerId: number;
  /** worker_threads threadId of the owner (0 = main thread). */
  threadId: number;
  /** 'active' (its thread runs), 'orphaned' (thread gone or pool closed; being adopted), 'free'. */
  state: 'active' | 'orphaned' | 'free';
  /** Superblocks owned now. */
  superblocks: number;
  superblocksPeak: number;
  /** Runs of superblocks claimed from the arena. */
  claims: number;
  /** Runs given back to the arena (empty-superblock cap, trim, close). */
  returns: number;
  /** Frees of this slice's blocks pushed by other threads. */
  remoteFreesPushed: number;
  /** Of those, merged by the owner (or, once its thread is gone or its pool closed, by the adopter). */
  remoteFreesMerged: number;
  /**
   * Remote frees that named no exported block (a block released twice from other threads).
   * Once every queued free is taken: remoteFreesPushed = remoteFreesMerged + remoteFreesRejected.
   */
  remoteFreesRejected: number;
}

export interface ArenaStats {
  arenaId: number;
  arenaBytes: number;
  superblockBytes: number;
  superblockCount: number;
  freeSuperblocks: number;
  ownedSuperblocks: number;
  /** Slices adopted after their thread exited, crashed or was terminated. */
  reclaimedSlices: number;
  /** Superblocks given back on behalf of those slices (at once, or when their last exported block came back). */
  reclaimedSuperblocks: number;
  /** Remote frees of those slices' blocks that the adopter merged. */
  reclaimedRemoteFrees: number;
  /**
   * Remote frees for an owner whose memory was already back in the arena (its slot freed or
   * taken by a new owner, or its slice holding nothing and closing): stale, never counted in
   * any slice's figures.
   */
  droppedRemoteFrees: number;
  total: {
    superblocks: number;
    claims: number;
    returns: number;
    remoteFreesPushed: number;
    remoteFreesMerged: number;
  };
  slices: SliceStats[];
}
