// A control for `gpupool-bench scaling`: the same machine's scaling for plain JavaScript, no
// gpupool code. Each worker thread runs a loop that allocates a 10-field object into a ring of 8
// (like a Block handle) and does two Map operations; 1 and 8 threads, started together at a
// barrier, three times each. Prints each thread's rate: on a machine whose vCPUs differ in speed
// (shared hosts), one thread's rate depends on the vCPU it lands on, and so does any "efficiency"
// measured against one thread.
// Usage: node packages/bench/scripts/thread-control.mjs [--threads 1,8,1,8,1,8] [--json]
//   (--json: one line per run, { threads, perThreadOpsPerSecond, totalOpsPerSecond })
import { isMainThread, parentPort, Worker, workerData } from 'node:worker_threads';

const LOOP_OPS = 20_000_000;
const WARMUP_MS = 300;

if (isMainThread) {
  const run = (threads) =>
    new Promise((resolve, reject) => {
      const start = new Int32Array(new SharedArrayBuffer(4));
      const workers = [];
      const rates = [];
      let ready = 0;
      for (let i = 0; i < threads; i++) {
        const worker = new Worker(new URL(import.meta.url), { workerData: { start: start.buffer } });
        worker.on('error', reject);
        worker.on('message', (message) => {
          if (message === 'ready') {
            if (++ready === threads) {
              Atomics.store(start, 0, 1);
              Atomics.notify(start, 0);
            }
            return;
          }
          rates.push(message.opsPerSecond);
          if (rates.length === threads) {
            for (const w of workers) w.terminate();
            resolve(rates.sort((a, b) => b - a));
          }
        });
        workers.push(worker);
      }
    });
  const args = process.argv.slice(2);
  const json = args.includes('--json');
  const at = args.indexOf('--threads');
  const plan = (at >= 0 ? args[at + 1] : '1,8,1,8,1,8').split(',').map(Number);
  if (plan.some((n) => !Number.isInteger(n) || n < 1))
    throw new Error('--threads: a list of positive integers');
  for (const threads of plan) {
    const rates = await run(threads);
    const total = rates.reduce((a, b) => a + b, 0);
    if (json)
      console.log(JSON.stringify({ threads, perThreadOpsPerSecond: rates, totalOpsPerSecond: total }));
    else
      console.log(
        `threads ${threads}: per-thread M ops/s ${rates.map((r) => (r / 1e6).toFixed(1)).join(' ')} · total ${(total / 1e6).toFixed(1)}`,
      );
  }
} else {
  class Handle {
    constructor(owner, id, slot, granule, arena, bytes) {
      this.owner = owner;
      this.id = id;
      this.slot = slot;
      this.granule = granule;
      this.arena = arena;
      this.bytes = bytes;
      this.shape = undefined;
      this.dtype = undefined;
      this.stream = 0;
      this.cached = undefined;
    }
  }
  const ring = new Array(8);
  const table = new Map();
  const loop = (n) => {
    let sum = 0;
    for (let i = 0; i < n; i++) {
      ring[i & 7] = new Handle(null, i, i & 1023, i, null, 512);
      table.set(i & 63, i);
      sum += table.get((i * 7) & 63);
    }
    return sum;
  };
  const warmupEnd = Date.now() + WARMUP_MS;
  while (Date.now() < warmupEnd) loop(10_000);
  parentPort.postMessage('ready');
  Atomics.wait(new Int32Array(workerData.start), 0, 0);
  const t0 = process.hrtime.bigint();
  loop(LOOP_OPS);
  const ns = Number(process.hrtime.bigint() - t0);
  parentPort.postMessage({ opsPerSecond: LOOP_OPS / (ns / 1e9) });
}
