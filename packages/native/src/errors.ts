/**
 * Errors of @gpupool/native. CUDA failures arrive from the addon as plain Errors carrying `kind`,
 * `cudaCode`, `cudaName`, `call` and `api` (src/native/addon.cc); `toDeviceError` turns them into
 * typed errors here, in one place. Out-of-memory (CUDA error 2, runtime or driver) becomes
 * `CudaOutOfMemoryError`, a `DeviceOutOfMemoryError`, so pools run their OOM recovery on it.
 */
import { DeviceError, DeviceOutOfMemoryError } from '@gpupool/core';

/** cudaErrorMemoryAllocation (runtime) and CUDA_ERROR_OUT_OF_MEMORY (driver) are both 2. */
export const CUDA_OUT_OF_MEMORY_CODE = 2;

/** What the CUDA side said, as numbers and names a program can branch on. */
export interface CudaFailure {
  /** The CUDA call that failed, as written in the addon. */
  readonly cudaCall: string;
  /** CUDA error number (cudaError_t or CUresult). */
  readonly cudaCode: number;
  /** CUDA error name, e.g. 'cudaErrorInvalidValue' or 'CUDA_ERROR_OUT_OF_MEMORY'. */
  readonly cudaName: string;
  /** 'runtime' or 'driver'. */
  readonly cudaApi: string;
}

/** A CUDA call failed for a reason other than lack of memory. `code` is 'ERR_GPUPOOL_DEVICE'. */
export class CudaError extends DeviceError implements CudaFailure {
  readonly cudaCall: string;
  readonly cudaCode: number;
  readonly cudaName: string;
  readonly cudaApi: string;
  constructor(call: string, failure: CudaFailure, message: string) {
    super(call, message);
    this.cudaCall = failure.cudaCall;
    this.cudaCode = failure.cudaCode;
    this.cudaName = failure.cudaName;
    this.cudaApi = failure.cudaApi;
  }
}

/** CUDA refused memory. `code` is 'ERR_GPUPOOL_DEVICE_OUT_OF_MEMORY'. */
export class CudaOutOfMemoryError extends DeviceOutOfMemoryError implements CudaFailure {
  readonly cudaCall: string;
  readonly cudaCode: number;
  readonly cudaName: string;
  readonly cudaApi: string;
  constructor(call: string, requestedBytes: number, failure: CudaFailure, message: string) {
    super(call, requestedBytes, message);
    this.cudaCall = failure.cudaCall;
    this.cudaCode = failure.cudaCode;
    this.cudaName = failure.cudaName;
    this.cudaApi = failure.cudaApi;
  }
}

/** CUDA cannot be used here: the addon was not built, or there is no driver or no device. */
export class CudaUnavailableError extends DeviceError {
  readonly reason: string;
  constructor(call: string, reason: string) {
    super(call, `CUDA is not available: ${reason}`);
    this.reason = reason;
  }
}

interface NativeErrorShape {
  message?: unknown;
  kind?: unknown;
  cudaCode?: unknown;
  cudaName?: unknown;
  call?: unknown;
  api?: unknown;
}

/** Maps an error thrown by the addon to a typed error; anything else is returned unchanged. */
export function toDeviceError(error: unknown, call: string, requestedBytes = 0): unknown {
  if (typeof error !== 'object' || error === null) return error;
  const e = error as NativeErrorShape;
  const message = typeof e.message === 'string' ? e.message : String(error);
  if (e.kind === 'cuda' && typeof e.cudaCode === 'number') {
    const failure: CudaFailure = {
      cudaCall: typeof e.call === 'string' ? e.call : call,
      cudaCode: e.cudaCode,
      cudaName: typeof e.cudaName === 'string' ? e.cudaName : `CUDA error ${e.cudaCode}`,
      cudaApi: typeof e.api === 'string' ? e.api : 'runtime',
    };
    return e.cudaCode === CUDA_OUT_OF_MEMORY_CODE
      ? new CudaOutOfMemoryError(call, requestedBytes, failure, message)
      : new CudaError(call, failure, message);
  }
  if (typeof e.kind === 'string') return new DeviceError(call, message, { cause: error });
  return error;
}
