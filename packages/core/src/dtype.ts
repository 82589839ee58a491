/**
 * Element types and shapes. A block acquired by shape has `bytes = product(shape) * bytesPerElement`.
 */
import { ArgumentRangeError, InvalidArgumentError } from './errors.js';

export const DTYPE_BYTES = Object.freeze({
  float16: 2,
  bfloat16: 2,
  float32: 4,
  float64: 8,
  int8: 1,
  uint8: 1,
  int16: 2,
  int32: 4,
  int64: 8,
  bool: 1,
});

export type DType = keyof typeof DTYPE_BYTES;

export const DTYPES: readonly DType[] = Object.freeze(Object.keys(DTYPE_BYTES) as DType[]);

/** The largest single block: 2^48 bytes (256 TiB). Anything larger is a bug in the caller, not a request. */
export const MAX_BLOCK_BYTES = 2 ** 48;

/** Largest tensor rank accepted; deeper shapes are almost certainly a mistake. */
export const MAX_RANK = 16;

export function isDType(value: unknown): value is DType {
  return typeof value === 'string' && Object.hasOwn(DTYPE_BYTES, value);
}

export function checkDType(value: unknown, argument: string): DType {
  if (!isDType(value)) {
    throw new InvalidArgumentError(argument, `must be one of ${DTYPES.join(', ')}`, value);
  }
  return value;
}

/** Validates a byte count: a safe integer in [0, MAX_BLOCK_BYTES]. */
export function checkBytes(value: unknown, argument: string): number {
  if (typeof value !== 'number' || Number.isNaN(value)) {
    throw new InvalidArgumentError(argument, 'must be a number of bytes', value);
  }
  if (!Number.isInteger(value))
    throw new ArgumentRangeError(argument, 'must be a whole number of bytes', value);
  if (value < 0) throw new ArgumentRangeError(argument, 'must not be negative', value);
  if (value > MAX_BLOCK_BYTES) throw new ArgumentRangeError(argument, `must be at most 2^48 bytes`, value);
  return value;
}

/** Validates a shape and returns its size in bytes for `dtype`. */
export function bytesOfShape(shape: unknown, dtype: DType, argument = 'shape'): number {
  if (!Array.isArray(shape))
    throw new InvalidArgumentError(argument, 'must be an array of dimensions', shape);
  if (shape.length > MAX_RANK)
    throw new ArgumentRangeError(argument, `must have at most ${MAX_RANK} dimensions`, shape);
  let elements = 1;
  for (let i = 0; i < shape.length; i++) {
    const dim = shape[i];
    // Safe integers only: past 2^53 a product can overflow to Infinity, and Infinity × 0 is NaN bytes.
    if (typeof dim !== 'number' || !Number.isSafeInteger(dim) || dim < 0) {
      throw new ArgumentRangeError(`${argument}[${i}]`, 'must be a non-negative integer below 2^53', dim);
    }
    elements *= dim;
  }
  const bytes = elements * DTYPE_BYTES[dtype];
  if (!(bytes <= MAX_BLOCK_BYTES))
    throw new ArgumentRangeError(argument, 'describes more than 2^48 bytes', shape);
  return bytes;
}
