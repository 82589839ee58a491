// What the scripts share: flag parsing, CPU sets and pinned runs (scaling-pinned.mjs,
// latency-pinned.mjs), watching a device's map and unmap calls, and the H100 cost model of those
// calls (backing-variants.mjs, backing-perturbed.mjs, repeat-replay.mjs).
import { execFileSync } from 'node:child_process';
import os from 'node:os';
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
 * Removes `--cpus LIST` from `args` ("0-3,6" → [0, 1, 2, 3, 6]); default: the first 8 CPUs (or
 * all, where there are fewer).
 */
export function takeCpus(args) {
  const cpuCount = os.cpus().length;
  const spec = takeFlag(args, '--cpus', `0-${Math.min(8, cpuCount) - 1}`);
  const list = [];
  for (const part of spec.split(',')) {
    const [a, b = a] = part.split('-').map(Number);
    if (!Number.isInteger(a) || !Number.isInteger(b) || a > b || b >= cpuCount)
      throw new Error(`--cpus: "${spec}" is not a list of CPUs 0..${cpuCount - 1}`);
    for (let c = a; c <= b; c++) list.push(c);
  }
  return list;
}

/** Runs `node ...nodeArgs` pinned to `cpus` with taskset (Linux); returns its stdout. */
export function runPinned(cpus, nodeArgs) {
  return execFileSync('taskset', ['-c', cpus.join(','), process.execPath, ...nodeArgs], {
    encoding: 'utf8',
    stdio: ['ignore', 'pipe', 'inherit'],
  });
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

/**
 * Wraps `device.map` and `device.unmap` so that `visit(kind, offsetBytes, bytes, ns)` runs after
 * each call (a failed one too), with the time the call took. Returns the device.
 */
export function watchMapCalls(device, visit) {
  for (const kind of ['map', 'unmap']) {
    const inner = device[kind].bind(device);
    device[kind] = (range, offsetBytes, bytes) => {
      const t0 = process.hrtime.bigint();
      try {
        return inner(range, offsetBytes, bytes);
      } finally {
        visit(kind, offsetBytes, bytes, Number(process.hrtime.bigint() - t0));
      }
    };
  }
  return device;
}
