/**
 * @gpupool/workers: per-thread pool slices of one shared device arena, on Piscina worker threads.
 * Everything exported here is supported; nothing else is. Task code imports `threadPool` from
 * `@gpupool/workers/thread` (also re-exported here).
 */

export type { ArenaHandle, ArenaStep, SharedArenaOptions } from './arena.js';
export {
  ARENA_BYTES_MAX,
  DEFAULT_MAX_SLICES,
  DEFAULT_QUEUE_CELLS,
  DEFAULT_SUPERBLOCK_BYTES,
  SharedArena,
} from './arena.js';
export type { BlockDescriptor } from './descriptor.js';
export { fromDescriptor, RemoteBlock, toDescriptor } from './descriptor.js';
export type { DeviceShare, RangeAdoptingDevice } from './device-link.js';
export { CUDA_DEVICE_MODULE, canAdoptRanges, openSharedDevice, shareDevice } from './device-link.js';
export type { WorkersErrorCode } from './errors.js';
export {
  NoArenaError,
  NotExportableError,
  SlicesExhaustedError,
  UnknownArenaError,
  UnshareableDeviceError,
  WorkersDestroyedError,
  WorkersError,
} from './errors.js';
export type { LockedBlock, LockedSharedPoolHandle, LockedSharedPoolStats } from './locked-pool.js';
export { createLockedSharedPool, LockedSharedPool } from './locked-pool.js';
export type { SliceBackingOptions } from './slice-backing.js';
export { SliceBacking } from './slice-backing.js';
export { DEFAULT_IDLE_MERGE_MS, isSlicePool, MERGE_BATCH_MAX, SlicePool } from './slice-pool.js';
export type { ArenaStats, SliceStats } from './stats.js';
export { threadPool, threadSlicePool } from './thread.js';
export { WORKER_DATA_KEY } from './thread-context.js';
export type { WorkerPoolOptions, WorkerPoolStats } from './worker-pool.js';
export { createWorkerPool, WorkerPool } from './worker-pool.js';
