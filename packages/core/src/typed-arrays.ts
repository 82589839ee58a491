/**
 * Growing struct-of-arrays storage: the policies and the pool keep per-record fields in typed
 * arrays (no objects on the hot path) and double them when they fill up.
 */
type GrowableArray = Uint8Array | Int32Array | Float64Array;

/** A copy of `old` with room for `length` elements (of the same type; new elements are 0). */
export function grown<T extends GrowableArray>(old: T, length: number): T {
  const next = new (old.constructor as new (n: number) => T)(length);
  next.set(old);
  return next;
}
