/** Byte units and alignment helpers. Sizes are plain numbers: exact up to 2^53 bytes. */

export const KiB = 1024;
export const MiB = 1024 * KiB;
export const GiB = 1024 * MiB;

/** Rounds `bytes` up to a multiple of `alignmentBytes`. */
export function alignUp(bytes: number, alignmentBytes: number): number {
  return Math.ceil(bytes / alignmentBytes) * alignmentBytes;
}

export function alignDown(bytes: number, alignmentBytes: number): number {
  return Math.floor(bytes / alignmentBytes) * alignmentBytes;
}

export function isPowerOfTwo(value: number): boolean {
  return Number.isSafeInteger(value) && value > 0 && 2 ** Math.round(Math.log2(value)) === value;
}

/** floor(log2(value)) for positive integers up to 2^53, exact (no floating-point rounding at powers of two). */
export function log2Floor(value: number): number {
  if (value < 0x1_0000_0000) return 31 - Math.clz32(value);
  return 63 - Math.clz32(Math.floor(value / 0x1_0000_0000));
}
