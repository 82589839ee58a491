/**
 * The devices a benchmark can run on: `simulated` (bookkeeping, any capacity), `host`
 * (SharedArrayBuffer bytes) and `cuda` (@gpupool/native's CudaDevice). @gpupool/native is imported
 * lazily, so everything except `--device cuda` works even when the addon cannot load; without a
 * usable GPU, `cuda` fails with a BenchDeviceError that carries the addon's own reason.
 */
import { constants as bufferConstants } from 'node:buffer';
import { type Device, GiB, HostDevice, SimulatedDevice } from '@gpupool/core';
import { BenchDeviceError } from './errors.js';

export const DEVICE_KINDS = ['simulated', 'host', 'cuda'] as const;
export type DeviceKind = (typeof DEVICE_KINDS)[number];

export const CUDA_MODES = ['vmm', 'malloc', 'mallocAsync'] as const;
export type CudaMode = (typeof CUDA_MODES)[number];

/** An H100's memory: the default capacity of a simulated device. */
export const SIMULATED_CAPACITY_BYTES_DEFAULT = 80 * GiB;
/**
 * SharedArrayBuffers much larger than 8 GiB fail or thrash on ordinary machines, and HostDevice
 * views its memory through one Uint8Array, which Node 20 caps at 4 GiB (buffer.constants.MAX_LENGTH;
 * beyond it, a RangeError from V8 rather than a clear error).
 */
export const HOST_CAPACITY_BYTES_MAX = Math.min(8 * GiB, bufferConstants.MAX_LENGTH);

export interface DeviceSpec {
  kind: DeviceKind;
  /** simulated: capacity; host: capacity (needed bytes); cuda: ignored (the card's memory). */
  capacityBytes?: number;
  /** cuda only; default 'vmm'. */
  cudaMode?: CudaMode;
}

type NativeModule = typeof import('@gpupool/native');
let nativeModule: Promise<NativeModule> | undefined;

/** Loads @gpupool/native once; a load failure becomes a BenchDeviceError. */
export async function loadNative(): Promise<NativeModule> {
  nativeModule ??= import('@gpupool/native');
  try {
    return await nativeModule;
  } catch (error) {
    throw new BenchDeviceError(`@gpupool/native failed to load: ${(error as Error).message}`, {
      cause: error,
    });
  }
}

/** Throws BenchDeviceError (with the reason) when CUDA cannot be used here. */
export async function requireCuda(): Promise<NativeModule> {
  const native = await loadNative();
  if (!native.cuda.available) {
    throw new BenchDeviceError(
      `--device cuda: CUDA is not available here: ${native.cuda.reason ?? 'unknown reason'}`,
    );
  }
  return native;
}

export async function createDevice(spec: DeviceSpec): Promise<Device> {
  switch (spec.kind) {
    case 'simulated':
      return new SimulatedDevice({ capacityBytes: spec.capacityBytes ?? SIMULATED_CAPACITY_BYTES_DEFAULT });
    case 'host': {
      const capacityBytes = spec.capacityBytes ?? 1 * GiB;
      if (capacityBytes > HOST_CAPACITY_BYTES_MAX) {
        throw new BenchDeviceError(
          `--device host: needs ${(capacityBytes / GiB).toFixed(1)} GiB of shared memory, more than the ${(HOST_CAPACITY_BYTES_MAX / GiB).toFixed(1)} GiB a host device holds here; use --device simulated for this trace`,
        );
      }
      return new HostDevice({ capacityBytes, scrubByte: null });
    }
    case 'cuda': {
      const native = await requireCuda();
      return new native.CudaDevice({ mode: spec.cudaMode ?? 'vmm' });
    }
  }
}

/** The label a record carries: 'simulated', 'host', 'cuda' or 'cuda:malloc' / 'cuda:mallocAsync'. */
export function deviceLabel(spec: DeviceSpec): string {
  return spec.kind === 'cuda' && spec.cudaMode !== undefined && spec.cudaMode !== 'vmm'
    ? `cuda:${spec.cudaMode}`
    : spec.kind;
}
