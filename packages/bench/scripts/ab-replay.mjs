// A/B of core builds on replays: the builds (paths to copies of packages/core/dist/index.js) are
// loaded side by side in one process. Each round replays the trace with every build in order and
// then in reverse (A B B A for two builds), so a drift in the machine's speed hits them alike; per
// build, the min and median of wall and on-CPU (user+system) ns/op, and — for each build after the
// first — the median and quartiles of its per-round time over the first build's. Compare builds
// only this way on a shared VM: one process's figure moves by 2× from minute to minute
// (docs/benchmarks.md); a ratio's quartiles say whether a difference stands out of that noise.
// Run both orders (A B and B A): which build is loaded first moved results by ~9 % on an H100
// host's Xeon, more than some changes do.
// Usage: node packages/bench/scripts/ab-replay.mjs TRACE.gz ROUNDS build/index.js...
const [, , tracePath, rounds = '15', ...paths] = process.argv;
const libs = await Promise.all(paths.map((p) => import(p)));
const trace = libs[0].readTrace(tracePath);

function replayOnce(lib) {
  const pool = new lib.Pool({ device: new lib.SimulatedDevice({ capacityBytes: 80 * 2 ** 30 }) });
  const c0 = process.cpuUsage();
  const r = lib.replayTrace(trace, pool, { releaseAtEnd: false });
  const c = process.cpuUsage(c0);
  pool.destroy();
  return { wall: r.elapsedNs / r.ops, cpu: ((c.user + c.system) * 1000) / r.ops };
}

const order = libs.map((_, i) => i);
for (let k = 0; k < 2; k++) for (const i of order) replayOnce(libs[i]); // warm-up
const wall = libs.map(() => []);
const cpu = libs.map(() => []);
const ratios = libs.map(() => []);
for (let k = 0; k < +rounds; k++) {
  const round = libs.map(() => ({ wall: 0, cpu: 0 }));
  for (const i of [...order, ...[...order].reverse()]) {
    const r = replayOnce(libs[i]);
    wall[i].push(r.wall);
    cpu[i].push(r.cpu);
    round[i].wall += r.wall;
    round[i].cpu += r.cpu;
  }
  for (const i of order) ratios[i].push(round[i].wall / round[0].wall);
}
const sorted = (a) => [...a].sort((x, y) => x - y);
const at = (a, q) => sorted(a)[Math.round(q * (a.length - 1))];
const minMedian = (a) => `${at(a, 0).toFixed(0)}/${at(a, 0.5).toFixed(0)}`;
console.log(`${trace.name}: ${rounds} rounds`);
paths.forEach((p, i) => {
  const ratio =
    i === 0
      ? ''
      : ` · wall over the first build: median ${at(ratios[i], 0.5).toFixed(3)} (quartiles ${at(ratios[i], 0.25).toFixed(3)}–${at(ratios[i], 0.75).toFixed(3)})`;
  console.log(`  ${p}: wall min/median ${minMedian(wall[i])} ns/op, cpu ${minMedian(cpu[i])}${ratio}`);
});
