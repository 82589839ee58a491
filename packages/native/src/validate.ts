/**
 * Argument checks shared by the wrapper: every public entry point validates here, before the addon
 * is called, so C++ only ever sees well-formed plain values (and so this is testable without a GPU).
 */
import { ArgumentRangeError, InvalidArgumentError } from '@gpupool/core';

export function checkSafeInteger(
  argument: string,
  value: unknown,
  min: number,
  max = Number.MAX_SAFE_INTEGER,
): number {
  if (typeof value !== 'number' || Number.isNaN(value)) {
    throw new InvalidArgumentError(argument, 'must be a number', value);
  }
  if (!Number.isSafeInteger(value) || value < min || value > max) {
    const rule =
      max === Number.MAX_SAFE_INTEGER
        ? `must be an integer ≥ ${min}`
        : `must be an integer in ${min}..${max}`;
    throw new ArgumentRangeError(argument, rule, value);
  }
  return value;
}

export function checkPositiveMultiple(argument: string, value: unknown, multipleBytes: number): number {
  const bytes = checkSafeInteger(argument, value, 1);
  if (bytes % multipleBytes !== 0) {
    throw new ArgumentRangeError(argument, `must be a multiple of the page size (${multipleBytes})`, value);
  }
  return bytes;
}

export function checkView(argument: string, value: unknown): ArrayBufferView {
  if (!ArrayBuffer.isView(value)) {
    throw new InvalidArgumentError(argument, 'must be a TypedArray, DataView or Buffer', value);
  }
  return value;
}

/**
 * The bytes of `value` (any ArrayBufferView, over an ArrayBuffer or a SharedArrayBuffer) as a
 * Uint8Array over the same memory. A view whose buffer was detached (transferred, or freed by
 * freePinned) is an InvalidArgumentError: constructing over it would throw a bare TypeError, and
 * `ArrayBuffer.prototype.detached` is missing before Node 22.
 */
export function viewBytes(argument: string, value: unknown): Uint8Array {
  const view = checkView(argument, value);
  try {
    return new Uint8Array(view.buffer, view.byteOffset, view.byteLength);
  } catch {
    throw new InvalidArgumentError(
      argument,
      'is detached (its ArrayBuffer was transferred, or freed by freePinned)',
      value,
    );
  }
}

/**
 * A byte-size option: a positive safe integer (InvalidArgumentError for a non-number,
 * ArgumentRangeError otherwise). Multiples are checked by the caller, which knows the unit.
 */
export function checkOptionBytes(argument: string, value: unknown): number {
  if (typeof value !== 'number') throw new InvalidArgumentError(argument, 'must be a number of bytes', value);
  if (!Number.isSafeInteger(value) || value <= 0) {
    throw new ArgumentRangeError(argument, 'must be a positive integer number of bytes', value);
  }
  return value;
}

export interface CheckedBlock {
  ptr: bigint;
  bytes: number;
}

export function checkBlock(argument: string, block: unknown): CheckedBlock {
  if (typeof block !== 'object' || block === null) {
    throw new InvalidArgumentError(
      argument,
      'must be a block (an object with ptr: bigint and bytes: number)',
      block,
    );
  }
  const { ptr, bytes } = block as { ptr?: unknown; bytes?: unknown };
  if (typeof ptr !== 'bigint') {
    throw new InvalidArgumentError(`${argument}.ptr`, 'must be a bigint device address', ptr);
  }
  if (ptr <= 0n || ptr >= 1n << 64n)
    throw new ArgumentRangeError(`${argument}.ptr`, 'must be a device address in 1..2^64-1', ptr);
  return { ptr, bytes: checkSafeInteger(`${argument}.bytes`, bytes, 0) };
}

export function checkFiniteArray(argument: string, value: unknown, length?: number): Float32Array {
  let array: Float32Array;
  if (value instanceof Float32Array) array = value;
  else if (Array.isArray(value) && value.every((v) => typeof v === 'number'))
    array = Float32Array.from(value as number[]);
  else throw new InvalidArgumentError(argument, 'must be a Float32Array or an array of numbers', value);
  if (length !== undefined && array.length !== length) {
    throw new ArgumentRangeError(argument, `must have ${length} elements`, array.length);
  }
  for (const v of array) {
    if (!Number.isFinite(v)) throw new ArgumentRangeError(argument, 'must hold finite numbers only', v);
  }
  return array;
}
