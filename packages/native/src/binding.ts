/**
 * The single load of the CUDA addon. Importing this never throws and never crashes the process:
 * when CUDA cannot be used, `cuda.available` is false and `cuda.reason` says why and what to do —
 * the addon was built without CUDA (no nvcc/cmake at build time), it failed to load, there is no
 * driver (CUDA error 35), no device (CUDA error 100), or another CUDA error, by name.
 *
 * The addon path can be overridden with GPUPOOL_NATIVE_ADDON (a path to a .node file; a relative one
 * is taken from the working directory).
 */
import { existsSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { NativeAddon, NativeProbe } from './native-api.js';

/** Why CUDA is (un)available, as a stable word. */
export type CudaStatusCode = 'ok' | 'not-built' | 'load-failed' | 'no-driver' | 'no-device' | 'cuda-error';

export interface CudaStatus {
  readonly available: boolean;
  readonly status: CudaStatusCode;
  /** Set when `available` is false: what went wrong and how to fix it. */
  readonly reason?: string;
  /** The CUDA error behind `reason`, when there was one. */
  readonly cudaCode?: number;
  readonly cudaName?: string;
  /** e.g. 13000 for CUDA 13.0; 0 when unknown. */
  readonly runtimeVersion: number;
  /** The driver's CUDA version; 0 when there is no driver. */
  readonly driverVersion: number;
  readonly deviceCount: number;
  /** Whether the driver's virtual memory management entry points were found. */
  readonly vmm: boolean;
  /** Where the addon was looked for. */
  readonly addonPath: string;
}

export const CUDA_ERROR_INSUFFICIENT_DRIVER = 35;
/**
 * The addon interface this package's JavaScript speaks (addon.cc exports the same number as
 * `abiVersion`). An addon built from another version of the package is refused at load: its
 * functions may take other arguments, and a mismatch there would fail far from its cause.
 */
export const NATIVE_ABI_VERSION = 1;
export const CUDA_ERROR_NO_DEVICE = 100;

const BUILD_HINT =
  'install the CUDA toolkit (nvcc) and CMake ≥ 3.18, then run `pnpm --filter @gpupool/native build`';

/** Turns what the addon's probe() reported into a status. Pure: tested without a GPU. */
export function classifyProbe(probe: NativeProbe, addonPath: string): CudaStatus {
  const base = {
    runtimeVersion: probe.runtimeVersion,
    driverVersion: probe.driverVersion,
    deviceCount: probe.deviceCount,
    addonPath,
  };
  if (probe.status === 0 && probe.deviceCount > 0) {
    return { ...base, available: true, status: 'ok', vmm: probe.driverApi };
  }
  const cuda = { cudaCode: probe.status, cudaName: probe.statusName, vmm: false, available: false } as const;
  if (probe.status === CUDA_ERROR_INSUFFICIENT_DRIVER) {
    return {
      ...base,
      ...cuda,
      status: 'no-driver',
      reason:
        `no driver: CUDA error 35 (${probe.statusName}): no NVIDIA driver is installed, or it is older than ` +
        `the CUDA ${formatVersion(probe.runtimeVersion)} runtime this addon was built with; install or update the driver`,
    };
  }
  if (probe.status === CUDA_ERROR_NO_DEVICE || (probe.status === 0 && probe.deviceCount === 0)) {
    return {
      ...base,
      ...cuda,
      status: 'no-device',
      reason: `no device: CUDA error ${probe.status} (${probe.statusName}): no CUDA-capable GPU is visible; check CUDA_VISIBLE_DEVICES and nvidia-smi`,
    };
  }
  return {
    ...base,
    ...cuda,
    status: 'cuda-error',
    reason: `CUDA error ${probe.status} (${probe.statusName}): ${probe.statusMessage}`,
  };
}

function formatVersion(version: number): string {
  return version > 0 ? `${Math.floor(version / 1000)}.${Math.floor((version % 1000) / 10)}` : '(unknown)';
}

function defaultAddonPath(): string {
  // Both src/binding.ts and dist/index.{js,cjs} sit one level below the package root.
  return fileURLToPath(new URL('../build/Release/gpupool_native.node', import.meta.url));
}

function skippedReason(addonPath: string): string | undefined {
  const file = addonPath.replace(/Release[\\/][^\\/]+$/, 'SKIPPED.txt');
  try {
    return existsSync(file) ? readFileSync(file, 'utf8').trim() : undefined;
  } catch {
    return undefined;
  }
}

function load(): { status: CudaStatus; addon: NativeAddon | undefined } {
  // Resolved once, so that the existence check (cwd-relative) and require() (which would take a
  // bare relative path for a package name) look at the same file.
  const override = process.env.GPUPOOL_NATIVE_ADDON;
  const addonPath = override ? resolve(override) : defaultAddonPath();
  const unavailable = {
    available: false,
    runtimeVersion: 0,
    driverVersion: 0,
    deviceCount: 0,
    vmm: false,
    addonPath,
  };
  const refused = (status: 'not-built' | 'load-failed', reason: string) => ({
    addon: undefined,
    status: { ...unavailable, status, reason },
  });
  if (override && !existsSync(addonPath)) {
    // The user named a file: say that one is missing, not that the package was built without CUDA.
    return refused(
      'load-failed',
      `the addon GPUPOOL_NATIVE_ADDON names, ${addonPath}, does not exist; point it at a built gpupool_native.node, or unset it to load the package's own`,
    );
  }
  if (!existsSync(addonPath)) {
    const skipped = skippedReason(addonPath);
    return refused(
      'not-built',
      `built without CUDA: ${addonPath} does not exist${skipped ? ` (${skipped})` : ''}; ${BUILD_HINT}`,
    );
  }
  let addon: NativeAddon;
  try {
    addon = createRequire(import.meta.url)(addonPath) as NativeAddon;
  } catch (error) {
    return refused(
      'load-failed',
      `the addon failed to load: ${(error as Error).message}; rebuild it: ${BUILD_HINT}`,
    );
  }
  if (addon.abiVersion !== NATIVE_ABI_VERSION) {
    return refused(
      'load-failed',
      `the addon at ${addonPath} has interface version ${String(addon.abiVersion)}, this package needs ${NATIVE_ABI_VERSION} (built from another version of @gpupool/native); rebuild it: ${BUILD_HINT}`,
    );
  }
  try {
    return { addon, status: classifyProbe(addon.probe(), addonPath) };
  } catch (error) {
    return refused('load-failed', `the addon's probe failed: ${(error as Error).message}`);
  }
}

const loaded = load();

/** Whether CUDA can be used in this process, and why not. */
export const cuda: CudaStatus = Object.freeze(loaded.status);

/** The loaded addon, or undefined when it is missing or failed to load (even if CUDA itself is unusable). */
export function loadedAddon(): NativeAddon | undefined {
  return loaded.addon;
}
