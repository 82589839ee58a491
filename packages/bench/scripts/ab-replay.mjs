// A/B of core builds on replays: the builds (paths to copies of packages/core/dist/index.js) are
// loaded side by side in one process and replay the trace in turn, so both see the same machine
// state; per build, the min and median of wall ns/op and of on-CPU (user+system) ns/op over the
// timed replays (the first 3 are warm-up). Compare builds only this way on a shared VM: one
// process's figure moves by 2× from minute to minute (docs/benchmarks.md). Swap the order and rerun.
// Usage: node packages/bench/scripts/ab-replay.mjs TRACE.gz RUNS build/index.js...
const [, , tracePath, runs = '15', ...paths] = process.argv;
const libs = await Promise.all(paths.map((p) => import(p)));
const trace = libs[0].readTrace(tracePath);
const wall = libs.map(() => []);
const cpu = libs.map(() => []);
for (let k = 0; k < +runs; k++) {
  libs.forEach((lib, i) => {
    const pool = new lib.Pool({ device: new lib.SimulatedDevice({ capacityBytes: 80 * 2 ** 30 }) });
    const c0 = process.cpuUsage();
    const r = lib.replayTrace(trace, pool, { releaseAtEnd: false });
    const c = process.cpuUsage(c0);
    pool.destroy();
    if (k >= 3) {
      wall[i].push(r.elapsedNs / r.ops);
      cpu[i].push(((c.user + c.system) * 1000) / r.ops);
    }
  });
}
const stat = (a) => {
  const s = a.sort((x, y) => x - y);
  return `${s[0].toFixed(0)}/${s[s.length >> 1].toFixed(0)}`;
};
console.log(
  trace.name.padEnd(19),
  paths.map((p, i) => `${p}: wall min/median ${stat(wall[i])} cpu ${stat(cpu[i])}`).join(' | '),
);
