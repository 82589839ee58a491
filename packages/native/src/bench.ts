/**
 * Raw allocation timings measured inside C++ (the bench package's entry point): nanoseconds per
 * allocate+free pair for cudaMalloc, cudaMallocAsync (default pool) and one VMM mapping
 * (cuMemCreate + cuMemMap + cuMemSetAccess + cuMemUnmap + cuMemRelease). Not a test: never assert on it.
 */
import { InvalidArgumentError } from '@gpupool/core';
import { cuda, loadedAddon } from './binding.js';
import { CudaUnavailableError, toDeviceError } from './errors.js';
import type { NativeAddon } from './native-api.js';
import { checkSafeInteger } from './validate.js';

export type AllocationBenchMode = 'malloc' | 'mallocAsync' | 'vmm';
export const ALLOCATION_BENCH_MODES: readonly AllocationBenchMode[] = ['malloc', 'mallocAsync', 'vmm'];
export const BENCH_ITERATIONS_MAX = 1_000_000;

export interface AllocationBenchOptions {
  mode: AllocationBenchMode;
  bytes: number;
  /** Default 1000. */
  iterations?: number;
  deviceIndex?: number;
}

/** Nanoseconds per allocate+free pair, averaged over `iterations` after a 10-iteration warm-up. */
export function benchAllocation(
  options: AllocationBenchOptions,
  native: NativeAddon | undefined = loadedAddon(),
): number {
  if (typeof options !== 'object' || options === null) {
    throw new InvalidArgumentError(
      'options',
      'must be an object { mode, bytes, iterations?, deviceIndex? }',
      options,
    );
  }
  if (!ALLOCATION_BENCH_MODES.includes(options.mode)) {
    throw new InvalidArgumentError(
      'mode',
      `must be one of ${ALLOCATION_BENCH_MODES.join(', ')}`,
      options.mode,
    );
  }
  const bytes = checkSafeInteger('bytes', options.bytes, 1);
  const iterations = checkSafeInteger('iterations', options.iterations ?? 1000, 1, BENCH_ITERATIONS_MAX);
  const deviceIndex = checkSafeInteger('deviceIndex', options.deviceIndex ?? 0, 0, 1023);
  if (native === undefined || (native === loadedAddon() && !cuda.available)) {
    throw new CudaUnavailableError('benchAllocation', cuda.reason ?? 'the addon is not loaded');
  }
  try {
    return native.benchAllocation(deviceIndex, options.mode, bytes, iterations);
  } catch (error) {
    throw toDeviceError(error, 'benchAllocation', bytes);
  }
}
