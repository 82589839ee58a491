// Replays traces on a device under several pool configurations (policy, page-release options,
// VMM page size) and prints ratio, device calls, ns/op (median of N replays) and the time spent
// in map and unmap calls, as one JSON line each, then a table. For choosing defaults from real
// device timings; not part of the bench contract.
// Usage: node packages/bench/scripts/backing-variants.mjs --device cuda|simulated [--runs 3]
//          [--configs JSON] trace.gz...
// A config is { name, policy?, pageMiB?, allocationMiB?, ...pool options } (page and allocation
// sizes are the device's: CudaDevice or SimulatedDevice options).
import { createPool, GiB, readTrace, replayTrace, SimulatedDevice } from '@gpupool/core';
import { takeFlag, vmmCallModelUs, watchMapCalls } from './script-support.mjs';

const args = process.argv.slice(2);
const flag = (name, fallback) => takeFlag(args, name, fallback);
const deviceKind = flag('--device', 'simulated');
const runs = Number(flag('--runs', '3'));
const configs = JSON.parse(
  flag(
    '--configs',
    JSON.stringify([
      { name: 'default' },
      { name: 'bestFit/2MiB/64MiB', policy: 'bestFit', pageMiB: 2, allocationMiB: 64 },
      { name: 'bestFit/2MiB/page', policy: 'bestFit', pageMiB: 2, allocationMiB: 2 },
      { name: 'bestFit/16MiB/page', policy: 'bestFit', pageMiB: 16, allocationMiB: 16 },
    ]),
  ),
);

let native;
if (deviceKind === 'cuda') {
  native = await import('@gpupool/native');
  if (!native.cuda.available) throw new Error(`CUDA unavailable: ${native.cuda.reason}`);
}

// Time spent in device calls, by kind; pages counted in 2 MiB units whatever the page size;
// `modelUs`: what the calls would cost on an H100 (vmmCallModelUs).
const spent = {
  map: { calls: 0, pages: 0, ns: 0, modelUs: 0 },
  unmap: { calls: 0, pages: 0, ns: 0, modelUs: 0 },
};
function instrument(device) {
  return watchMapCalls(device, (kind, offsetBytes, bytes, ns) => {
    spent[kind].ns += ns;
    spent[kind].calls++;
    spent[kind].pages += bytes / (2 * 1024 * 1024);
    spent[kind].modelUs += vmmCallModelUs(
      kind,
      device.allocationBytes ?? device.pageBytes,
      offsetBytes,
      bytes,
    );
  });
}

// One device per (page size, allocation size) asked for.
const devices = new Map();
function deviceFor(pageMiB, allocationMiB) {
  const key = `${pageMiB ?? ''}/${allocationMiB ?? ''}`;
  if (!devices.has(key)) {
    const page = pageMiB === undefined ? {} : { pageBytes: pageMiB * 1024 * 1024 };
    if (allocationMiB !== undefined) page.allocationBytes = allocationMiB * 1024 * 1024;
    const device =
      deviceKind === 'cuda'
        ? new native.CudaDevice({ mode: 'vmm', ...page })
        : new SimulatedDevice({ capacityBytes: 80 * GiB, ...page });
    devices.set(key, instrument(device));
  }
  return devices.get(key);
}

const rows = [];
for (const path of args) {
  const trace = readTrace(path);
  for (const { name, pageMiB, allocationMiB, ...options } of configs) {
    const device = deviceFor(pageMiB, allocationMiB);
    const times = [];
    let result;
    for (const k of Object.values(spent)) k.calls = k.pages = k.ns = k.modelUs = 0;
    for (let r = 0; r < runs; r++) {
      const pool = createPool({ device, ...options });
      try {
        result = replayTrace(trace, pool);
        times.push(result.elapsedNs / result.ops);
      } finally {
        pool.destroy();
      }
    }
    times.sort((a, b) => a - b);
    const per = (k) => ({
      calls: k.calls / runs,
      pages: k.pages / runs,
      ms: k.ns / runs / 1e6,
      modelMs: k.modelUs / runs / 1e3,
    });
    const row = {
      trace: trace.name,
      config: name,
      device: deviceKind,
      pageBytes: device.pageBytes,
      ratio: result.ratio,
      deviceCalls: result.deviceCalls,
      nsPerOp: times[Math.floor(times.length / 2)],
      runs,
      map: per(spent.map),
      unmap: per(spent.unmap),
    };
    row.modelNsPerOp = ((row.map.modelMs + row.unmap.modelMs) * 1e6) / result.ops;
    rows.push(row);
    console.log(JSON.stringify(row));
  }
}
console.log(
  `\n${deviceKind}: config · trace · ratio · maps · ns/op (median of ${runs}) · map calls/2MiB-pages/ms · unmap calls/2MiB-pages/ms · H100 model ns/op of device calls`,
);
const io = (k) => `${k.calls.toFixed(0)}/${k.pages.toFixed(0)}/${k.ms.toFixed(1)}`;
for (const r of rows) {
  console.log(
    `${r.config.padEnd(20)} ${r.trace.padEnd(19)} ${r.ratio.toFixed(4)} ${String(r.deviceCalls).padStart(5)} ${r.nsPerOp.toFixed(0).padStart(6)} ns  ${io(r.map).padStart(16)}  ${io(r.unmap).padStart(16)} ${r.modelNsPerOp.toFixed(0).padStart(6)}`,
  );
}
for (const device of devices.values()) device.destroy?.();
