// What the configuration scripts (backing-variants.mjs, backing-perturbed.mjs) share: their flag
// parsing and the H100 cost model of VMM device calls.
import { MiB } from '@gpupool/core';

/** Removes `--name value` from `args` and returns the value, or `fallback` when absent. */
export function takeFlag(args, name, fallback) {
  const i = args.indexOf(name);
  if (i < 0) return fallback;
  const value = args[i + 1];
  args.splice(i, 2);
  return value;
}

/**
 * What one map or unmap call of `bytes` at `offsetBytes` costs on an H100, in µs, on a device whose
 * physical allocations are `allocationBytes` windows (packages/native/tools/vmm-costs.cu,
 * 2026-11-26): a map pays cuMemSetAccess (~36 µs) once and cuMemCreate (~9.5 µs) per allocation;
 * an unmap pays cuMemUnmap (~23 µs) once and cuMemRelease (~10.5 µs + 0.35 µs/MiB) per allocation.
 */
export function vmmCallModelUs(kind, allocationBytes, offsetBytes, bytes) {
  const allocations =
    Math.ceil((offsetBytes + bytes) / allocationBytes) - Math.floor(offsetBytes / allocationBytes);
  const mib = bytes / MiB;
  return kind === 'map' ? 36 + 9.5 * allocations + 0.02 * mib : 23 + 10.5 * allocations + 0.35 * mib;
}
