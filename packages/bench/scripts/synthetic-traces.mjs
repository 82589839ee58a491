// Synthetic allocation traces, for checking that defaults chosen on the four real traces carry over
// to workloads they were not chosen on (the same trace format; deterministic: fixed seeds).
//   llm_serving_1, llm_serving_7  up to 8 concurrent requests; each decode step grows every request's
//                                 KV cache by concatenation (a new, larger block, then the old one
//                                 freed) and makes one short-lived temporary of up to 4 MiB
//   random_lifetimes              log-uniform sizes from 1 KiB to 512 MiB, random lifetimes (frees
//                                 favour recent blocks), up to 400 live
//   cnn_batches                   50 weight blocks, then 60 training iterations with a random batch
//                                 size: forward activations kept, backward gradients freed in reverse
// Usage: node packages/bench/scripts/synthetic-traces.mjs OUT_DIR
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';

const MiB = 1024 * 1024;

/** A small deterministic generator (LCG): the traces must not change between runs. */
function random(seed) {
  let s = seed >>> 0;
  return () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return s / 2 ** 32;
  };
}

/** Operations as trace text: `a ID BYTES` / `f ID`. */
class TraceWriter {
  lines = [];
  nextId = 0;
  allocate(bytes) {
    const id = this.nextId++;
    this.lines.push(`a ${id} ${Math.max(1, Math.ceil(bytes))}`);
    return id;
  }
  free(id) {
    this.lines.push(`f ${id}`);
  }
}

function llmServing(seed) {
  const r = random(seed);
  const w = new TraceWriter();
  const requests = [];
  for (let step = 0; step < 4000; step++) {
    if (requests.length < 8 && r() < 0.05) {
      requests.push({
        tokens: 64 + Math.floor(r() * 2048),
        kv: -1,
        hiddenBytes: 2 * 4096 * (1 + Math.floor(r() * 3)),
      });
    }
    for (const q of requests) {
      const kv = w.allocate(q.tokens * q.hiddenBytes);
      if (q.kv >= 0) w.free(q.kv);
      q.kv = kv;
      q.tokens++;
      w.free(w.allocate(1 + Math.floor(r() * 4 * MiB)));
    }
    for (let i = requests.length - 1; i >= 0; i--) {
      if (r() < 0.003) {
        w.free(requests[i].kv);
        requests.splice(i, 1);
      }
    }
  }
  for (const q of requests) w.free(q.kv);
  return w;
}

function randomLifetimes(seed) {
  const r = random(seed);
  const w = new TraceWriter();
  const live = [];
  for (let i = 0; i < 60_000; i++) {
    if (live.length > 0 && (r() < 0.5 || live.length > 400)) {
      const back = Math.floor(r() ** 2 * live.length);
      w.free(live.splice(live.length - 1 - back, 1)[0]);
    } else {
      live.push(w.allocate(Math.exp(Math.log(1024) + r() * (Math.log(512 * MiB) - Math.log(1024)))));
    }
  }
  for (const id of live) w.free(id);
  return w;
}

function cnnBatches(seed) {
  const r = random(seed);
  const w = new TraceWriter();
  const weights = [];
  for (let layer = 0; layer < 50; layer++) weights.push(w.allocate((1 + Math.floor(r() * 64)) * 65536));
  for (let iteration = 0; iteration < 60; iteration++) {
    const batch = 8 + Math.floor(r() * 120);
    const activations = [];
    for (let layer = 0; layer < 50; layer++) {
      activations.push(w.allocate(batch * (1 + (layer % 7)) * 200_000));
      w.free(w.allocate(batch * 50_000)); // a workspace
    }
    for (let layer = 49; layer >= 0; layer--) {
      const gradient = w.allocate(batch * (1 + (layer % 7)) * 200_000);
      w.free(activations[layer]);
      w.free(gradient);
    }
  }
  for (const id of weights) w.free(id);
  return w;
}

const outDir = process.argv[2];
if (outDir === undefined) {
  console.error('usage: node synthetic-traces.mjs OUT_DIR');
  process.exit(2);
}
mkdirSync(outDir, { recursive: true });
for (const [name, writer] of [
  ['llm_serving_1', llmServing(1)],
  ['llm_serving_7', llmServing(7)],
  ['random_lifetimes', randomLifetimes(2)],
  ['cnn_batches', cnnBatches(3)],
]) {
  const text = `# synthetic ${name} (packages/bench/scripts/synthetic-traces.mjs), ${writer.lines.length} operations\n${writer.lines.join('\n')}\n`;
  writeFileSync(join(outDir, `${name}.trace.gz`), gzipSync(text));
  console.log(`${name}: ${writer.lines.length} operations`);
}
