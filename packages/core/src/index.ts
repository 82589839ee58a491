/**
 * @gpupool/core: the public surface. Everything exported here is supported; nothing else is.
 */

export type { ArenaRef, ArenaSnapshot, Backing } from './backing.js';
export { Block } from './block.js';
export type {
  AddressRange,
  BlockLike,
  Device,
  DeviceCallCounts,
  DeviceData,
  DeviceStreams,
  EventHandle,
  MemInfo,
  Segment,
  StreamHandle,
} from './device.js';
export { checkAllocationBytes, memoryObtainingCalls, newCallCounts } from './device.js';
export type { FaultableCall, FaultPredicate } from './devices/fault-plan.js';
export { failCalls, failFrom } from './devices/fault-plan.js';
export type { HostDeviceHandle, HostDeviceOptions } from './devices/host-device.js';
export { HostDevice } from './devices/host-device.js';
export type { SimulatedDeviceOptions } from './devices/simulated-device.js';
export { SimulatedDevice } from './devices/simulated-device.js';
export type { DType } from './dtype.js';
export { bytesOfShape, DTYPE_BYTES, DTYPES, isDType, MAX_BLOCK_BYTES } from './dtype.js';
export type { GpuPoolErrorCode, OutOfMemoryDetails } from './errors.js';
export {
  ArgumentRangeError,
  DeviceDestroyedError,
  DeviceError,
  DeviceOutOfMemoryError,
  DoubleReleaseError,
  ForeignBlockError,
  formatBytes,
  GpuPoolError,
  InjectedFaultError,
  InvalidArgumentError,
  InvariantError,
  isDeviceError,
  isDeviceRefusal,
  isGpuPoolError,
  OutOfMemoryError,
  PoolDestroyedError,
  ReleasedBlockError,
  TraceFormatError,
  UnknownPolicyError,
} from './errors.js';
export type { LeakReport } from './leak-detector.js';
export { BestFitPolicy } from './policies/best-fit.js';
export { BestFitPoolsPolicy, SMALL_BLOCK_BYTES, SPLIT_MIN_BYTES } from './policies/best-fit-pools.js';
export type { ExactShapeOptions } from './policies/exact-shape.js';
export { ExactShapePolicy } from './policies/exact-shape.js';
export type { MappedFit, Policy, PolicyFactory } from './policies/policy.js';
export { POLICY_GRANULE_BYTES } from './policies/policy.js';
export {
  createPolicy,
  DEFAULT_POLICY,
  DEFAULT_POLICY_GROUPED,
  policyNames,
  registerPolicy,
} from './policies/registry.js';
export { SegregatedBins } from './policies/segregated-bins.js';
export { SizeClassPolicy } from './policies/size-class.js';
export { TlsfPolicy } from './policies/tlsf.js';
export type { AcquireOptions, AcquireRequest, PoolOptions, PrewarmSpec } from './pool.js';
export { createPool, getGlobalPool, Pool, setDefaultDevice } from './pool.js';
export { defaultPolicyName } from './pool-options.js';
export type { SegmentBackingOptions } from './segment-backing.js';
export { SegmentBacking } from './segment-backing.js';
export type { BlockSnapshot, PoolSnapshot } from './snapshot.js';
export type { PoolStats } from './stats.js';
export type { ReplayOptions, ReplayResult } from './trace/replay.js';
export { replayTrace } from './trace/replay.js';
export type { Trace } from './trace/trace-format.js';
export {
  formatTrace,
  OP_ALLOCATE,
  OP_FREE,
  parseTrace,
  readTrace,
  writeTrace,
} from './trace/trace-format.js';
export type { TraceRecorderOptions } from './trace/trace-recorder.js';
export { TraceRecorder } from './trace/trace-recorder.js';
export { alignDown, alignUp, GiB, isPowerOfTwo, KiB, MiB } from './units.js';
export type { VmmBackingOptions } from './vmm-backing.js';
export {
  DEFAULT_MAPPED_FIT_FACTOR_GROUPED,
  DEFAULT_SWAPS_PER_RAISE_GROUPED,
  VmmBacking,
} from './vmm-backing.js';
