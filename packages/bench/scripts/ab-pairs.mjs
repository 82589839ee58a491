// A/B of core builds on a warm acquire+release pair of one size, for the policy alone (bestFit,
// allocate+free) and for a pool: builds (paths to copies of packages/core/dist/index.js) side by
// side in one process, batches interleaved; min and median of 15 batches of 200 000 pairs. The
// SimulatedDevice is 6.3 GB so that its arena's free block does not sit on a bin boundary. Run both
// orders of the builds: load order alone can move a result by several percent (see ab-replay.mjs).
// Usage: node packages/bench/scripts/ab-pairs.mjs BYTES build/index.js...
const [, , bytesArg, ...paths] = process.argv;
const bytes = +bytesArg;
const libs = await Promise.all(paths.map((p) => import(p)));
const policies = libs.map((lib) => {
  const p = new lib.BestFitPolicy();
  p.addRange(0, 8 * 2 ** 30);
  p.allocate(256, 256); // a used neighbour at address 0, as in a pool
  return p;
});
const pools = libs.map((lib) =>
  lib.createPool({ device: new lib.SimulatedDevice({ capacityBytes: 6.3e9 }) }),
);
const policyBatch = (p, n) => {
  const s = process.hrtime.bigint();
  for (let i = 0; i < n; i++) p.free(p.allocate(bytes, 256));
  return Number(process.hrtime.bigint() - s) / n;
};
const poolBatch = (p, n) => {
  const s = process.hrtime.bigint();
  for (let i = 0; i < n; i++) p.acquire(bytes).release();
  return Number(process.hrtime.bigint() - s) / n;
};
for (let w = 0; w < 10; w++) {
  for (const p of policies) policyBatch(p, 100_000);
  for (const p of pools) poolBatch(p, 100_000);
}
const onPolicy = policies.map(() => []);
const onPool = pools.map(() => []);
for (let r = 0; r < 15; r++) {
  policies.forEach((p, i) => {
    onPolicy[i].push(policyBatch(p, 200_000));
  });
  pools.forEach((p, i) => {
    onPool[i].push(poolBatch(p, 200_000));
  });
}
const stat = (a) => {
  const s = a.sort((x, y) => x - y);
  return `min ${s[0].toFixed(1)} med ${s[7].toFixed(1)}`;
};
console.log(`${bytes} B policy pair:`, paths.map((p, i) => `${p} ${stat(onPolicy[i])}`).join(' | '));
console.log(`${bytes} B pool pair:  `, paths.map((p, i) => `${p} ${stat(onPool[i])}`).join(' | '));
