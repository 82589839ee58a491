// Replays traces under pool configurations, each trace K times with its addresses shifted: run k
// first acquires a block of k × 0.37 MiB that lives to the end, so every later placement starts
// from another offset. Ratios on one layout move by several percent with any change of placement
// (pipeline: 1.115 or 1.165 depending on the offset alone); the mean and worst over K layouts say
// whether a configuration is better or only luckier. Prints, per trace: mean/worst ratio, mean
// map+unmap calls, and the H100 cost model of those calls in ns per op (as backing-variants.mjs).
// Usage: node packages/bench/scripts/backing-perturbed.mjs [--layouts 16] [--configs JSON] trace.gz...
// A config is { name, pageMiB?, allocationMiB?, ...pool options } (default 2 MiB pages, 64 MiB allocations).
import { createPool, GiB, MiB, readTrace, replayTrace, SimulatedDevice } from '@gpupool/core';
import { takeFlag, vmmCallModelUs, watchMapCalls } from './script-support.mjs';

const args = process.argv.slice(2);
const flag = (name, fallback) => takeFlag(args, name, fallback);
const layouts = Number(flag('--layouts', '16'));
const configs = JSON.parse(flag('--configs', JSON.stringify([{ name: 'default' }])));
const SHIFT_BYTES = Math.round(0.37 * MiB);

function replay(trace, config, k) {
  const { name: _name, pageMiB = 2, allocationMiB = 64, ...options } = config;
  const device = new SimulatedDevice({
    capacityBytes: 80 * GiB,
    pageBytes: pageMiB * MiB,
    allocationBytes: allocationMiB * MiB,
  });
  const spent = { calls: 0, us: 0 };
  watchMapCalls(device, (kind, offsetBytes, bytes) => {
    spent.calls++;
    spent.us += vmmCallModelUs(kind, device.allocationBytes, offsetBytes, bytes);
  });
  const pool = createPool({ device, detectLeaks: false, ...options });
  // The shift block lives to the end; replayTrace counts it in peak live bytes (resetPeaks).
  if (k > 0) pool.acquire(k * SHIFT_BYTES);
  const { ratio } = replayTrace(trace, pool, { releaseAtEnd: false });
  pool.destroy();
  device.destroy?.();
  return { ratio, calls: spent.calls, nsPerOp: (spent.us * 1e3) / trace.length };
}

const traces = args.map((path) => readTrace(path));
console.log(`per trace: mean/worst ratio over ${layouts} layouts · mean map+unmap calls · H100 model ns/op`);
for (const config of configs) {
  const cells = [];
  let logMean = 0;
  let logWorst = 0;
  for (const trace of traces) {
    let sum = 0;
    let worst = 0;
    let calls = 0;
    let ns = 0;
    for (let k = 0; k < layouts; k++) {
      const r = replay(trace, config, k);
      sum += r.ratio;
      worst = Math.max(worst, r.ratio);
      calls += r.calls;
      ns += r.nsPerOp;
    }
    cells.push(
      `${trace.name} ${(sum / layouts).toFixed(4)}/${worst.toFixed(4)} ${(calls / layouts).toFixed(0)} ${(ns / layouts).toFixed(0)} ns`,
    );
    logMean += Math.log(sum / layouts);
    logWorst += Math.log(worst);
  }
  const geo = (x) => Math.exp(x / traces.length).toFixed(4);
  console.log(`${config.name}: ${cells.join(' | ')} · geomean ${geo(logMean)} (worst ${geo(logWorst)})`);
}
