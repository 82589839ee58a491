/**
 * @gpupool/native: the public surface. CudaDevice (core's Device on a CUDA GPU), the load status,
 * data staging, the pipeline kernels with their CPU references, float16 helpers and raw
 * allocation timings. Everything exported here is supported; nothing else is.
 */

export type { AllocationBenchMode, AllocationBenchOptions } from './bench.js';
export { ALLOCATION_BENCH_MODES, BENCH_ITERATIONS_MAX, benchAllocation } from './bench.js';
export type { CudaStatus, CudaStatusCode } from './binding.js';
export { CUDA_ERROR_INSUFFICIENT_DRIVER, CUDA_ERROR_NO_DEVICE, cuda, NATIVE_ABI_VERSION } from './binding.js';
export type { CropResizeOptions, PreprocessOptions } from './cpu-kernels.js';
export {
  CROP_BOXES_MAX,
  CROP_HEIGHT,
  CROP_WIDTH,
  cropResizeCpu,
  IMAGE_SIDE_MAX,
  IMAGENET_MEAN,
  IMAGENET_STD,
  PREPROCESS_SIZE,
  preprocessFrameCpu,
} from './cpu-kernels.js';
export type {
  CudaDeviceData,
  CudaDeviceHandle,
  CudaDeviceMode,
  CudaDeviceOptions,
  CudaDeviceProperties,
} from './cuda-device.js';
export {
  CUDA_DEVICE_MODES,
  CudaDevice,
  cudaDeviceProperties,
  cudaRangeRegistryLive,
  DEFAULT_ALLOCATION_BYTES,
  DEFAULT_PAGE_GRANULES,
} from './cuda-device.js';
export type { CudaFailure } from './errors.js';
export { CUDA_OUT_OF_MEMORY_CODE, CudaError, CudaOutOfMemoryError, CudaUnavailableError } from './errors.js';
export { float16BitsToFloat32, float32ToFloat16Bits, fromFloat16Bits, toFloat16Bits } from './float16.js';
export type { CropResizeArgs, PreprocessFrameArgs } from './kernels.js';
export { CudaKernels } from './kernels.js';
export type { NativeLiveCounts, NativeRegistryCounts } from './native-api.js';
export { allocatePinned, freePinned, isPinned, PINNED_BYTES_MAX } from './pinned.js';
