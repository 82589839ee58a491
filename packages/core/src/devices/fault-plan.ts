/**
 * Fault injection for stand-in devices: decide, per memory-obtaining call, whether it fails.
 * Calls are numbered from 1 in the order the device receives them (reserve, map, allocateSegment).
 */
export type FaultableCall = 'reserve' | 'map' | 'allocateSegment';

/** Return true to make that call fail with an InjectedFaultError. */
export type FaultPredicate = (call: FaultableCall, callIndex: number) => boolean;

/** Fails exactly the calls whose 1-based index is listed. */
export function failCalls(...indices: number[]): FaultPredicate {
  const set = new Set(indices);
  return (_call, index) => set.has(index);
}

/** Fails every call from the k-th on (a device that has run dry). */
export function failFrom(k: number): FaultPredicate {
  return (_call, index) => index >= k;
}
