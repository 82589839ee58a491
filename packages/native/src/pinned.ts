/**
 * Pinned (page-locked) host buffers from cudaHostAlloc, for staging copies: async copies from and to
 * them overlap with GPU work. Each is an ArrayBuffer backed by pinned memory; `freePinned` gives the
 * memory back at once (the ArrayBuffer becomes detached, length 0); otherwise it is given back when
 * the ArrayBuffer is garbage-collected or the thread exits. Pinned memory is process-wide.
 */
import { InvalidArgumentError } from '@gpupool/core';
import { cuda, loadedAddon } from './binding.js';
import { CudaUnavailableError, toDeviceError } from './errors.js';
import type { NativeAddon } from './native-api.js';
import { checkSafeInteger } from './validate.js';

/** Largest single pinned buffer (a limit on everything): 16 GiB. */
export const PINNED_BYTES_MAX = 16 * 1024 ** 3;

const pinned = new WeakSet<ArrayBuffer>();

function addon(call: string, native: NativeAddon | undefined): NativeAddon {
  if (native === undefined || (native === loadedAddon() && !cuda.available)) {
    throw new CudaUnavailableError(call, cuda.reason ?? 'the addon is not loaded');
  }
  return native;
}

/** A new pinned host buffer of `bytes` bytes (contents undefined). */
export function allocatePinned(bytes: number, native: NativeAddon | undefined = loadedAddon()): ArrayBuffer {
  checkSafeInteger('bytes', bytes, 1, PINNED_BYTES_MAX);
  const a = addon('allocatePinned', native);
  let buffer: ArrayBuffer;
  try {
    buffer = a.allocPinned(bytes);
  } catch (error) {
    throw toDeviceError(error, 'allocatePinned', bytes);
  }
  pinned.add(buffer);
  return buffer;
}

/** Whether `buffer` came from allocatePinned and has not been freed. */
export function isPinned(buffer: unknown): boolean {
  return buffer instanceof ArrayBuffer && pinned.has(buffer) && buffer.byteLength > 0;
}

/** Gives a pinned buffer back now. Its ArrayBuffer becomes detached. */
export function freePinned(buffer: ArrayBuffer, native: NativeAddon | undefined = loadedAddon()): void {
  if (!(buffer instanceof ArrayBuffer) || !pinned.has(buffer)) {
    throw new InvalidArgumentError('buffer', 'must be an ArrayBuffer from allocatePinned()', buffer);
  }
  if (buffer.byteLength === 0) throw new InvalidArgumentError('buffer', 'was already freed');
  const a = addon('freePinned', native);
  try {
    a.freePinned(buffer);
  } catch (error) {
    throw toDeviceError(error, 'freePinned');
  }
  pinned.delete(buffer);
}
