/**
 * Pool statistics. The first keys are the seed's (allocations, reuses, returns, leaks, peak
 * bytes, fragmentation events) with the same meaning, so dashboards carry over.
 */
export interface PoolStats {
  /** Device calls that obtained memory (page maps or segment allocations). */
  allocations: number;
  /** Acquires served without any device call. */
  reuses: number;
  /** Blocks released (by release(), `using`, or leak reclamation). */
  returns: number;
  /** Blocks found leaked: garbage-collected without release(), or older than leakAgeMs. */
  leaks: number;
  /** Out-of-memory recoveries: the device refused, the pool released its cache and retried. */
  fragmentationEvents: number;
  acquires: number;
  liveBlocks: number;
  /** Sum of requested bytes of live blocks. */
  liveBytes: number;
  peakLiveBytes: number;
  /** Device memory the pool holds (mapped pages or segments). */
  reservedBytes: number;
  peakReservedBytes: number;
  /** Bytes free inside the pool's address space (reserved or not). */
  freeBytes: number;
  /**
   * The largest contiguous free run of the pool's address space. Where the pool maps pages, this
   * includes address space not mapped yet, so it can exceed the device (the arena is reserved
   * larger than the device, to leave room to place around live blocks).
   */
  largestFreeBytes: number;
  /** 1 − liveBytes / reservedBytes: the share of held memory that is not live (0 when nothing is held). */
  fragmentation: number;
  /** OutOfMemoryErrors thrown. */
  outOfMemoryErrors: number;
  /** trim() calls plus automatic trims during OOM recovery. */
  trims: number;
  /** Blocks whose reuse on another stream waited for an event. */
  crossStreamWaits: number;
  /** Bytes of released blocks kept whole in the pool's block cache for immediate reuse. */
  cachedBytes: number;
}
