/**
 * Leak detection: a block dropped without release() is found when the garbage collector takes it
 * (FinalizationRegistry), reported with its allocation stack when captureStacks is on, and its
 * memory reclaimed; blocks older than leakAgeMs are reported once as suspected leaks; the age
 * timer never keeps the process alive. GC is reached through v8.setFlagsFromString('--expose-gc').
 */
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import v8 from 'node:v8';
import vm from 'node:vm';
import { describe, expect, it } from 'vitest';
import { type Block, createPool, type LeakReport, MiB, type Pool, SimulatedDevice } from '../src/index.js';

v8.setFlagsFromString('--expose-gc');
const gc = vm.runInNewContext('gc') as () => void;

/** Allocates in a frame of its own, so nothing on the caller's stack keeps the block alive. */
function dropBlock(pool: Pool, bytes: number): number {
  return pool.acquire({ shape: [bytes], dtype: 'uint8' }).id;
}

/** Collects garbage until `done()` or the attempts run out (finalizers run on later turns). */
async function collectUntil(done: () => boolean, attempts = 100): Promise<void> {
  for (let i = 0; i < attempts && !done(); i++) {
    gc();
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}

const newDevice = () => new SimulatedDevice({ capacityBytes: 256 * MiB });

describe('leak detection', () => {
  it('reports a block collected without release, with its stack, and reclaims its memory', async () => {
    const reports: LeakReport[] = [];
    const pool = createPool({
      device: newDevice(),
      detectLeaks: true,
      captureStacks: true,
      onLeak: (r) => reports.push(r),
    });
    const kept = pool.acquire(4096);
    const id = dropBlock(pool, 3000);
    await collectUntil(() => reports.length > 0);
    expect(reports).toHaveLength(1);
    const report = reports[0]!;
    expect(report.kind).toBe('collected');
    expect(report.blockId).toBe(id);
    expect(report.bytes).toBe(3000);
    expect(report.shape).toEqual([3000]);
    expect(report.dtype).toBe('uint8');
    expect(report.stack).toMatch(/dropBlock/);
    expect(report.stack).toMatch(/leaks\.test\.ts/);
    expect(pool.leakReports()).toEqual(reports);
    const stats = pool.stats();
    expect(stats.leaks).toBe(1);
    expect(stats.liveBlocks).toBe(1);
    expect(stats.liveBytes).toBe(4096);
    pool.checkInvariants();
    kept.release();
    pool.destroy();
  });

  it('does not report released blocks, nor blocks still referenced', async () => {
    const reports: LeakReport[] = [];
    const pool = createPool({ device: newDevice(), detectLeaks: true, onLeak: (r) => reports.push(r) });
    const held = pool.acquire(1024);
    (() => {
      pool.acquire(2048).release();
    })();
    // A leaked sentinel proves the collector ran and finalizers were delivered.
    const sentinel = dropBlock(pool, 512);
    await collectUntil(() => reports.length > 0);
    expect(reports.map((r) => r.blockId)).toEqual([sentinel]);
    expect(reports[0]!.stack).toBeUndefined();
    expect(held.released).toBe(false);
    held.release();
    pool.destroy();
  });

  it('survives an onLeak callback that throws', async () => {
    let calls = 0;
    const pool = createPool({
      device: newDevice(),
      detectLeaks: true,
      onLeak: () => {
        calls++;
        throw new Error('callback bug');
      },
    });
    dropBlock(pool, 100);
    await collectUntil(() => calls > 0);
    expect(calls).toBe(1);
    expect(pool.stats().liveBlocks).toBe(0);
    pool.acquire(100).release();
    pool.destroy();
  });

  it('an onLeak callback that destroys the pool leaves it destroyed with nothing live (GC and age timer)', async () => {
    const device = newDevice();
    let pool: Pool | undefined;
    const reports: LeakReport[] = [];
    pool = createPool({
      device,
      detectLeaks: true,
      onLeak: (r) => {
        reports.push(r);
        pool!.destroy();
      },
    });
    const held = pool.acquire(4096);
    dropBlock(pool, 3 * MiB);
    await collectUntil(() => reports.length > 0);
    expect(reports).toHaveLength(1);
    // The collected block was reclaimed by destroy(): retiring it afterwards drove the figures negative.
    expect(pool.stats()).toMatchObject({ liveBlocks: 0, liveBytes: 0, reservedBytes: 0, returns: 0 });
    held.release();
    expect(pool.stats()).toMatchObject({ liveBlocks: 0, liveBytes: 0 });
    expect(device.usedBytes).toBe(0);

    // The age check stops at the first report whose callback destroyed the pool.
    const aged: LeakReport[] = [];
    const second = createPool({
      device,
      detectLeaks: false,
      leakAgeMs: 5,
      onLeak: (r) => {
        aged.push(r);
        second.destroy();
      },
    });
    const blocks = [second.acquire(1), second.acquire(2), second.acquire(3)];
    for (let i = 0; i < 200 && aged.length === 0; i++) await new Promise((r) => setTimeout(r, 10));
    await new Promise((r) => setTimeout(r, 120));
    expect(aged).toHaveLength(1);
    expect(second.stats().leaks).toBe(1);
    expect(second.leakReports()).toHaveLength(1);
    for (const b of blocks) b.release();
    expect(device.usedBytes).toBe(0);
  });

  it('an onLeak callback that acquires and releases blocks leaves the books exact', async () => {
    const device = newDevice();
    const extra: Block[] = [];
    let pool: Pool | undefined;
    let calls = 0;
    pool = createPool({
      device,
      detectLeaks: true,
      blockCacheBytes: 0,
      onLeak: () => {
        calls++;
        extra.push(pool!.acquire(5000), pool!.acquire(3 * MiB));
        extra.shift()!.release();
        pool!.trim();
      },
    });
    dropBlock(pool, 3 * MiB);
    await collectUntil(() => calls > 0);
    expect(calls).toBe(1);
    pool.checkInvariants();
    expect(pool.stats()).toMatchObject({ liveBlocks: 1, liveBytes: 3 * MiB, leaks: 1 });
    for (const b of extra) b.release();
    pool.trim();
    expect(pool.stats().reservedBytes).toBe(0);
    pool.destroy();
    expect(device.usedBytes).toBe(0);
  });

  it('counts a block reported aged and then collected as one leak', async () => {
    const reports: LeakReport[] = [];
    const pool = createPool({
      device: newDevice(),
      detectLeaks: true,
      leakAgeMs: 10,
      onLeak: (r) => reports.push(r),
    });
    const id = dropBlock(pool, 1000);
    for (let i = 0; i < 200 && reports.length === 0; i++) await new Promise((r) => setTimeout(r, 10));
    await collectUntil(() => reports.length > 1);
    // Both reports are made (the second is certain), but stats().leaks counts blocks.
    expect(reports.map((r) => [r.kind, r.blockId])).toEqual([
      ['aged', id],
      ['collected', id],
    ]);
    expect(pool.stats()).toMatchObject({ leaks: 1, liveBlocks: 0 });
    pool.destroy();
  });

  it('ignores blocks collected after destroy(), and leaves the device empty', async () => {
    const device = newDevice();
    const reports: LeakReport[] = [];
    const pool = createPool({ device, detectLeaks: 'all', onLeak: (r) => reports.push(r) });
    for (let i = 0; i < 8; i++) dropBlock(pool, 100_000 * (i + 1));
    pool.destroy();
    const stats = pool.stats();
    // A sentinel pool proves the collector ran and finalizers were delivered.
    const sentinel = createPool({ device, detectLeaks: true, onLeak: (r) => reports.push(r) });
    const sentinelId = dropBlock(sentinel, 64);
    await collectUntil(() => reports.length > 0);
    expect(reports.map((r) => r.blockId)).toEqual([sentinelId]);
    expect(pool.stats()).toEqual(stats);
    sentinel.destroy();
    expect(device.usedBytes).toBe(0);
  });

  it('with detectLeaks false, reports nothing', async () => {
    const reports: LeakReport[] = [];
    const pool = createPool({ device: newDevice(), detectLeaks: false, onLeak: (r) => reports.push(r) });
    dropBlock(pool, 100);
    for (let i = 0; i < 5; i++) {
      gc();
      await new Promise((resolve) => setTimeout(resolve, 5));
    }
    expect(reports).toHaveLength(0);
    expect(pool.stats().liveBlocks).toBe(1);
    pool.destroy();
  });

  it('reports blocks older than leakAgeMs once, as suspected leaks, without reclaiming them', async () => {
    const reports: LeakReport[] = [];
    const pool = createPool({
      device: newDevice(),
      detectLeaks: false,
      leakAgeMs: 20,
      onLeak: (r) => reports.push(r),
    });
    const old = pool.acquire({ shape: [8, 8], dtype: 'float32' });
    for (let i = 0; i < 200 && reports.length === 0; i++) await new Promise((r) => setTimeout(r, 10));
    expect(reports).toHaveLength(1);
    expect(reports[0]!.kind).toBe('aged');
    expect(reports[0]!.blockId).toBe(old.id);
    expect(reports[0]!.ageMs).toBeGreaterThanOrEqual(20);
    // Further checks (the timer runs every 50 ms at least) do not report it again.
    await new Promise((r) => setTimeout(r, 120));
    expect(reports).toHaveLength(1);
    expect(pool.stats().leaks).toBe(1);
    expect(old.released).toBe(false);
    expect(pool.snapshot().blocks[0]!.ageMs).toBeGreaterThanOrEqual(20);
    old.release();
    pool.destroy();
  });

  it('leakReports() keeps the 100 most recent reports; stats().leaks counts them all', async () => {
    let reported = 0;
    const pool = createPool({
      device: newDevice(),
      detectLeaks: false,
      leakAgeMs: 5,
      onLeak: () => reported++,
    });
    const held = Array.from({ length: 150 }, (_, i) => pool.acquire(1000 + i));
    for (let i = 0; i < 300 && reported < 150; i++) await new Promise((r) => setTimeout(r, 10));
    expect(reported).toBe(150);
    const kept = pool.leakReports();
    expect(kept.map((r) => r.blockId)).toEqual(held.slice(50).map((b) => b.id));
    kept.length = 0; // a copy: the pool's list is unchanged
    expect(pool.leakReports()).toHaveLength(100);
    expect(pool.stats().leaks).toBe(150);
    for (const b of held) b.release();
    pool.destroy();
  });

  it('the age timer does not keep the process alive', () => {
    const dist = fileURLToPath(new URL('../dist/index.js', import.meta.url));
    expect(existsSync(dist), 'build core first (turbo runs build before test)').toBe(true);
    const script = `
      import { createPool, SimulatedDevice } from ${JSON.stringify(dist)};
      const pool = createPool({ device: new SimulatedDevice({ capacityBytes: 64 * 1024 * 1024 }), leakAgeMs: 60000 });
      globalThis.kept = pool.acquire(1024);
      console.log('pool ready');
    `;
    const child = spawnSync(process.execPath, ['--input-type=module', '-e', script], {
      encoding: 'utf8',
      timeout: 30_000,
    });
    expect(child.stderr).toBe('');
    expect(child.stdout.trim()).toBe('pool ready');
    expect(child.signal).toBeNull(); // not killed by the timeout: it exited on its own
    expect(child.status).toBe(0);
  });
});
