/**
 * Device link: how one device is used from every thread of a worker pool. The creating thread
 * turns its device into a structured-cloneable `DeviceShare`; each worker opens its own Device
 * object over the same memory (one process, so device addresses are valid in every thread).
 *
 * - HostDevice: `HostDevice.attach(device.share())`: the same SharedArrayBuffer and the same
 *   shared mapping state, so any thread may map and unmap pages of the arena.
 * - CudaDevice (@gpupool/native): each worker constructs `new CudaDevice({ deviceIndex, mode })` over
 *   the process-wide CUDA context. To map pages of the arena reserved by the main thread, the
 *   worker's device must accept that range: the optional `adoptRange(range)` extension below.
 *
 * Invariant: a worker never reserves address space; only the creating thread does.
 */
import { createRequire } from 'node:module';
import { type AddressRange, type Device, HostDevice, type HostDeviceHandle } from '@gpupool/core';
import { UnshareableDeviceError } from './errors.js';

/** What crosses to a worker so it can open the device. */
export type DeviceShare =
  | { readonly kind: 'host'; readonly handle: HostDeviceHandle }
  | {
      readonly kind: 'cuda';
      readonly deviceIndex: number;
      readonly mode: string;
      readonly pageBytes: number;
      /** The arena's allocation window: a worker that unmaps must cut where the creator mapped. */
      readonly allocationBytes: number;
      readonly module: string;
    };

/**
 * Optional device extension: makes an address range reserved by another Device object of this
 * process usable here (map, unmap, data calls). Devices whose views already share mapping state
 * (HostDevice) do not need it.
 */
export interface RangeAdoptingDevice extends Device {
  adoptRange(range: AddressRange): AddressRange;
  /** Optional inverse: forget an adopted range without touching its pages. */
  disownRange?(range: AddressRange): void;
}

export function canAdoptRanges(device: Device): device is RangeAdoptingDevice {
  return typeof (device as Partial<RangeAdoptingDevice>).adoptRange === 'function';
}

/** The module that provides CudaDevice in workers; resolved from the worker file, the cwd, then here. */
export const CUDA_DEVICE_MODULE = '@gpupool/native';

export function shareDevice(device: Device, cudaModule = CUDA_DEVICE_MODULE): DeviceShare {
  if (device instanceof HostDevice) return { kind: 'host', handle: device.share() };
  if (device.kind === 'cuda') {
    const d = device as Device & { deviceIndex?: number; mode?: string; allocationBytes?: number };
    // pageBytes and allocationBytes travel so every thread's device agrees with the arena's pages
    // and with the physical allocations behind them (only whole ones can be unmapped).
    return {
      kind: 'cuda',
      deviceIndex: d.deviceIndex ?? 0,
      mode: d.mode ?? 'vmm',
      pageBytes: device.pageBytes,
      allocationBytes: d.allocationBytes ?? device.pageBytes,
      module: cudaModule,
    };
  }
  throw new UnshareableDeviceError(
    `a '${device.kind}' device has no memory other threads can reach (use HostDevice or CudaDevice)`,
  );
}

/** Opens the shared device in this thread. `resolveFrom`: file paths to resolve the CUDA module from. */
export function openSharedDevice(share: DeviceShare, resolveFrom: readonly string[] = []): Device {
  if (share.kind === 'host') return HostDevice.attach(share.handle);
  let lastError: unknown;
  for (const base of [...resolveFrom, `${process.cwd()}/noop.js`, import.meta.url]) {
    try {
      const native = createRequire(base)(share.module) as {
        CudaDevice: new (options: {
          deviceIndex: number;
          mode: string;
          pageBytes?: number;
          allocationBytes?: number;
        }) => Device;
      };
      return new native.CudaDevice({
        deviceIndex: share.deviceIndex,
        mode: share.mode,
        ...(share.mode === 'vmm'
          ? { pageBytes: share.pageBytes, allocationBytes: share.allocationBytes }
          : {}),
      });
    } catch (error) {
      lastError = error;
      if ((error as { code?: string }).code !== 'MODULE_NOT_FOUND') break;
    }
  }
  throw new UnshareableDeviceError(
    `could not open CudaDevice from '${share.module}' in this thread`,
    lastError,
  );
}
