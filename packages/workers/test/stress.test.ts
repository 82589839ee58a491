/**
 * Stress test, not a benchmark (like mimalloc's test-stress): THREADS workers and the main thread
 * work on one arena at once, for PHASES phases of ITERATIONS / PHASES operations per thread. Each
 * thread acquires blocks of random sizes (some runs of several superblocks), fills them with a
 * pattern, hands them to the others through a ledger in shared memory, checks and rewrites what it
 * holds, releases its own and other threads' blocks (some twice), trims, destroys and reopens its
 * slice pool, and now and then exhausts the arena (a typed OutOfMemoryError, then it gives all
 * back). In some phases one worker dies in the middle of its task: process.exit, an uncaught
 * error, a terminate() while it is blocked holding blocks or while its event loop runs its timers
 * (merging remote frees, giving back superblocks), an end inside its merge of a burst of frees of
 * its blocks (at a chosen step: as a terminate() landing there), or a task that throws (the thread
 * lives).
 *
 * Between phases (all workers between tasks): no two live blocks overlap, each lies in a run its
 * owner holds, and every pattern is intact; blocks a dead worker held are released on its behalf.
 * At the end: every remote free merged or rejected (pushed = merged + rejected for every slice),
 * every superblock back in the arena (the idle workers give back their empty ones when a claim
 * fails), the directory consistent, and after destroy() nothing mapped.
 *
 * Knobs: THREADS (default 3), ITERATIONS (operations per thread in all, default 600), PHASES
 * (default 4), SEED (default 1; odd seeds use 16-cell remote-free queues, even ones 1024), STALE=1
 * (blocks of any thread are released twice: runs of slices that closed or died may then stay owned
 * until destroy(), README "Limits"). E.g.
 * `THREADS=8 ITERATIONS=20000 PHASES=10 SEED=$RANDOM npx vitest run test/stress.test.ts`.
 */
import { setImmediate as pause } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { type Block, HostDevice, OutOfMemoryError } from '@gpupool/core';
import { afterEach, describe, expect, it } from 'vitest';
import { createWorkerPool, fromDescriptor, type SlicePool, type WorkerPool } from '../dist/index.js';
import {
  CELL_SEQ,
  cellIndex,
  SL_QUEUE_HEAD,
  SL_QUEUE_TAIL,
  sliceIndex,
  slotOfOwnerId,
} from '../src/layout.js';
import {
  Actor,
  BUSY,
  C_CORRUPT,
  C_DOUBLE,
  C_EXHAUSTED,
  C_FULL,
  C_OOM,
  C_OPS,
  C_REMOTE_RELEASES,
  CONTROL_INT32S,
  checkPattern,
  descriptorOf,
  EMPTY,
  F_EXPORTED,
  F_HOLDER,
  F_OWNER,
  F_SEED,
  F_STATE,
  FULL,
  HELD,
  SLOT_INT32S,
  xorshift,
} from './fixtures/stress-ops.mjs';
import { DEVICE_KIND, waitFor } from './test-device.js';

const THREADS = Number(process.env.THREADS ?? 3);
const ITERATIONS = Number(process.env.ITERATIONS ?? 600);
const PHASES = Math.min(Number(process.env.PHASES ?? 4), 200);
const SEED = Number(process.env.SEED ?? 1);
/** 1: any block may be released twice (stale frees may keep dead slices' runs until destroy()). */
const STALE = process.env.STALE === '1';
const STRESS_WORKER = fileURLToPath(new URL('./fixtures/stress-worker.mjs', import.meta.url));

const PAGE = 64 * 1024;
const SUPERBLOCK = 256 * 1024;
const SUPERBLOCKS = 48;
const LEDGER_SLOTS = 1024;

let open: WorkerPool | null = null;
afterEach(async () => {
  await open?.destroy();
  open = null;
});

interface Live {
  slot: number;
  offset: number;
  bytes: number;
  owner: number;
  seed: number;
}

type Death = 'exit' | 'uncaught' | 'park' | 'idle' | 'merge' | 'throw';

describe.skipIf(DEVICE_KIND !== 'host')(
  `stress, not a benchmark: THREADS=${THREADS} ITERATIONS=${ITERATIONS} PHASES=${PHASES} SEED=${SEED}`,
  () => {
    it('threads trade, check and release blocks while workers die: no overlap, patterns intact, all back', async () => {
      const device = new HostDevice({ capacityBytes: (SUPERBLOCKS + 4) * SUPERBLOCK, pageBytes: PAGE });
      const wp = createWorkerPool({
        device,
        filename: STRESS_WORKER,
        arenaBytes: SUPERBLOCKS * SUPERBLOCK,
        superblockBytes: SUPERBLOCK,
        minThreads: THREADS,
        maxThreads: THREADS,
        idleTimeout: 60_000,
        // Small queues (odd seeds): full ones, and frees relayed to the main thread. Large ones: a
        // burst of frees is merged in one batch, and a worker terminated while idle is mid-batch.
        remoteFreeQueueCells: SEED % 2 === 1 ? 16 : 1024,
        idleMergeMs: 5,
      });
      open = wp;
      const exchange = new SharedArrayBuffer(LEDGER_SLOTS * SLOT_INT32S * 4);
      const control = new SharedArrayBuffer(CONTROL_INT32S * 4);
      const ex = new Int32Array(exchange);
      const ctl = new Int32Array(control);
      const random = xorshift(SEED * 7919 + 17);
      const arena = wp.arena;
      const base = arena.ref.base;
      const problems: unknown[] = [];
      const deaths: Death[] = [];
      const main = new Actor({
        pool: wp.mainPool,
        // The main thread's slice lives to the end (blocks released twice are its own), unless STALE.
        reopen: STALE
          ? () => {
              wp.mainPool.destroy();
              return wp.mainPool;
            }
          : null,
        releasesTwice: () => STALE,
        device,
        exchange: ex,
        control: ctl,
        me: 0,
        arenaId: arena.arenaId,
        arenaBytes: arena.arenaBytes,
        superblockBytes: SUPERBLOCK,
        random: xorshift(SEED),
      });

      const perPhase = Math.max(1, Math.floor(ITERATIONS / PHASES));
      for (let phase = 0; phase <= PHASES; phase++) {
        const final = phase === PHASES;
        // One worker dies in about half the phases, at a random operation.
        const victim = !final && random() < 0.5 ? Math.floor(random() * THREADS) : -1;
        const deathKinds = ['exit', 'uncaught', 'park', 'idle', 'merge', 'throw'] as const;
        const how: Death = deathKinds[Math.floor(random() * deathKinds.length)]!;
        const mergePoints = ['before-apply', 'after-apply', 'after-count', 'in-unmap'] as const;
        const point = mergePoints[Math.floor(random() * mergePoints.length)]!;
        const parked = new SharedArrayBuffer(8);
        const tasks = Array.from({ length: THREADS }, (_, i) =>
          wp.run<{ thread: number; problems: unknown[] }>(
            {
              phase,
              parties: THREADS,
              iterations: final ? 0 : perPhase,
              seed: SEED * 1_000_003 + phase * 101 + i,
              exchange,
              control,
              parked,
              die:
                i === victim
                  ? { at: Math.floor(random() * perPhase), how, point, k: 1 + Math.floor(random() * 40) }
                  : null,
              final,
              mainOwner: (wp.mainPool as SlicePool).ownerId,
              stale: STALE,
            },
            { name: 'stressPhase' },
          ),
        );
        let settled = 0;
        const outcomes = tasks.map((t) =>
          t.then(
            (r) => {
              settled++;
              problems.push(...r.problems);
              return null;
            },
            (error: unknown) => {
              settled++;
              return error;
            },
          ),
        );
        // The main thread works meanwhile; it terminates a worker that parked itself to be killed
        // (an idle one a few milliseconds after a burst of frees of its blocks: while it merges).
        let parkedKilled = false;
        while (settled < THREADS) {
          if (!final) for (let k = 0; k < 8; k++) main.step();
          const flag = new Int32Array(parked);
          const tid = Atomics.load(flag, 0);
          if (tid !== 0 && !parkedKilled) {
            parkedKilled = true;
            if (how === 'merge') {
              // It ends by itself while it merges these (or, if it never reaches its end point, here).
              main.releaseFullOf(flag[1]!, 200);
              const until = Date.now() + 300;
              while (settled < THREADS && Date.now() < until) {
                for (let k = 0; k < 8; k++) main.step();
                await pause();
              }
            }
            if (how === 'idle') {
              // Its queue's head (layout.ts) moves once it starts merging: terminate it then, or a
              // few microseconds later, so that terminate() lands in the middle of its merge.
              const owner = flag[1]!;
              const headAt = sliceIndex(arena, slotOfOwnerId(owner, arena.sliceSlots), SL_QUEUE_HEAD);
              const head = Atomics.load(arena.words, headAt);
              if (main.releaseFullOf(owner, 200) > 0) {
                const until = performance.now() + 50;
                while (Atomics.load(arena.words, headAt) === head && performance.now() < until);
                const after = performance.now() + random() * 0.3;
                while (performance.now() < after);
              }
            }
            const worker = wp.piscina.threads.find((w) => w.threadId === tid);
            await worker?.terminate();
          }
          await pause();
        }
        const errors = (await Promise.all(outcomes)).filter((e) => e !== null);
        if (victim >= 0) {
          expect(errors).toHaveLength(1);
          expect(String(errors[0])).toMatch(how === 'throw' ? /on purpose/ : /exit|terminat|uncaught/i);
          if (how !== 'throw') deaths.push(how);
        } else {
          expect(errors).toEqual([]);
        }
        problems.push(...main.problems);
        main.problems = [];
        if (final) main.releaseAll();

        // Blocks that dead workers held: released on their behalf (their own unexported ones went
        // back with their slice).
        const alive = new Set([0, ...wp.piscina.threads.map((w) => w.threadId)]);
        for (let s = 0; s < LEDGER_SLOTS; s++) {
          const b = s * SLOT_INT32S;
          const state = Atomics.load(ex, b + F_STATE);
          expect(state).not.toBe(BUSY);
          if (state !== HELD || alive.has(ex[b + F_HOLDER]!)) continue;
          const d = descriptorOf(ex, s, arena.arenaId);
          if (ex[b + F_EXPORTED] === 1) {
            const handle = fromDescriptor(d);
            const at = checkPattern(device.view(handle), ex[b + F_SEED]!);
            if (at >= 0) problems.push({ what: 'held by a dead worker', slot: s, at, d });
            handle.release();
          }
          Atomics.store(ex, b + F_STATE, EMPTY);
        }
        checkpoint();
      }

      // Everything was released: the frees all reach their owners (or the adopter).
      for (let s = 0; s < LEDGER_SLOTS; s++) {
        const b = s * SLOT_INT32S;
        if (Atomics.load(ex, b + F_STATE) !== FULL) continue;
        const handle = fromDescriptor(descriptorOf(ex, s, arena.arenaId));
        if (checkPattern(device.view(handle), ex[b + F_SEED]!) >= 0)
          problems.push({ what: 'final', slot: s });
        handle.release();
        Atomics.store(ex, b + F_STATE, EMPTY);
        Atomics.sub(ctl, C_FULL, 1);
      }
      expect(ex.filter((_, i) => i % SLOT_INT32S === F_STATE && ex[i] !== EMPTY)).toHaveLength(0);
      expect(problems).toEqual([]);
      expect(Atomics.load(ctl, C_CORRUPT)).toBe(0);
      await waitFor(() => allMerged(wp), 10_000).catch((error: unknown) => {
        throw new Error(`remote frees not all merged: ${describeArena(wp)}`, { cause: error });
      });
      await waitFor(() => wp.stats().arena.reclaimedSlices === deaths.length, 10_000);

      // The whole arena in one block: the first tries fail (the idle workers keep empty
      // superblocks) and ask them to give those back, so a later try succeeds. With STALE, runs of
      // slices that closed or died may stay owned (a stale free reached their adopter).
      let whole: Block | undefined;
      await waitFor(() => {
        if (STALE && wp.stats().arena.slices.every((s) => s.state === 'orphaned' || s.superblocks === 0))
          return true;
        try {
          whole = wp.mainPool.acquire(arena.arenaBytes);
          return true;
        } catch (error) {
          if (!(error instanceof OutOfMemoryError)) throw error;
          wp.reclaim();
          return false;
        }
      }, 10_000).catch((error: unknown) => {
        throw new Error(`the arena did not come back whole: ${describeArena(wp)}`, { cause: error });
      });
      whole?.release();
      wp.mainPool.trim();
      const stats = wp.stats().arena;
      const kept = stats.slices.filter((s) => s.state === 'orphaned').reduce((n, s) => n + s.superblocks, 0);
      expect(stats.ownedSuperblocks).toBe(STALE ? kept : 0);
      for (const s of stats.slices)
        expect(s.remoteFreesPushed).toBe(s.remoteFreesMerged + s.remoteFreesRejected);
      expect(stats.reclaimedSlices).toBe(deaths.length);
      // Every ended thread's ops and pushes finished by its adopter; kept runs hold an exported block.
      wp.reclaim();
      arena.checkDirectory({ adopted: true });
      console.log(
        `stress SEED=${SEED}: ${Atomics.load(ctl, C_OPS)} operations, ` +
          `${Atomics.load(ctl, C_REMOTE_RELEASES)} remote releases (${Atomics.load(ctl, C_DOUBLE)} twice), ` +
          `${Atomics.load(ctl, C_OOM)} out-of-memory refusals, ${Atomics.load(ctl, C_EXHAUSTED)} exhaustions, ` +
          `deaths [${deaths.join(', ')}], ${stats.total.remoteFreesPushed} frees pushed, ` +
          `${stats.droppedRemoteFrees} dropped, ${stats.reclaimedSuperblocks} superblocks reclaimed` +
          (STALE ? `, ${kept} kept by stale frees` : ''),
      );
      await wp.destroy();
      expect(wp.arena.stats().freeSuperblocks).toBe(SUPERBLOCKS);
      expect(device.usedBytes).toBe(0);

      /** All threads between tasks: live blocks apart, in runs their owners hold, bytes intact. */
      function checkpoint(): void {
        const live: Live[] = [];
        for (let s = 0; s < LEDGER_SLOTS; s++) {
          const b = s * SLOT_INT32S;
          const state = Atomics.load(ex, b + F_STATE);
          if (state === EMPTY) continue;
          const d = descriptorOf(ex, s, arena.arenaId);
          live.push({
            slot: s,
            offset: d.offset,
            bytes: d.bytes,
            owner: ex[b + F_OWNER]!,
            seed: ex[b + F_SEED]!,
          });
        }
        live.sort((p, q) => p.offset - q.offset);
        for (let i = 0; i < live.length; i++) {
          const l = live[i]!;
          const end = l.offset + Math.max(l.bytes, 1);
          if (i > 0) {
            const p = live[i - 1]!;
            if (p.offset + Math.max(p.bytes, 1) > l.offset) problems.push({ what: 'overlap', p, l });
          }
          if (end > arena.arenaBytes) problems.push({ what: 'outside the arena', l });
          const first = Math.floor(l.offset / SUPERBLOCK);
          for (let sb = first; sb <= Math.floor((end - 1) / SUPERBLOCK); sb++) {
            if (arena.ownerOf(sb) !== l.owner || arena.runFirstOf(sb) !== arena.runFirstOf(first))
              problems.push({ what: 'superblock not its owner’s', sb, owner: arena.ownerOf(sb), l });
          }
          const view = device.view({ ptr: base + BigInt(l.offset), bytes: l.bytes });
          const at = checkPattern(view, l.seed);
          if (at >= 0) problems.push({ what: 'pattern', at, found: [...view.subarray(at, at + 8)], l });
        }
        expect(problems).toEqual([]);
      }
    });
  },
);

/** The slices that hold superblocks, and the runs they hold (for failure messages). */
function describeArena(wp: WorkerPool): string {
  const arena = wp.arena;
  const runs: string[] = [];
  for (let b = 0; b < arena.superblockCount; b++) {
    const owner = arena.ownerOf(b);
    if (owner !== 0 && arena.runFirstOf(b) === b)
      runs.push(
        `sb ${b}: owner ${owner}, ${arena.runLength(b, owner)} long, exported ${arena.exportedOf(b)}`,
      );
  }
  const slices = wp.stats().arena.slices.filter((s) => s.state !== 'free' || s.superblocks !== 0);
  // Queue positions and cell sequence numbers (layout.ts) of slices with frees not merged.
  const w = arena.words;
  const queues = slices
    .filter((s) => s.remoteFreesPushed !== s.remoteFreesMerged + s.remoteFreesRejected)
    .map((s) => {
      const cells = [];
      for (let c = 0; c < arena.queueCells; c++) cells.push(w[cellIndex(arena, s.slot, c, CELL_SEQ)]);
      const head = w[sliceIndex(arena, s.slot, SL_QUEUE_HEAD)];
      return { slot: s.slot, head, tail: w[sliceIndex(arena, s.slot, SL_QUEUE_TAIL)], cells };
    });
  return JSON.stringify(
    { runs, slices, queues, threads: wp.piscina.threads.map((w) => w.threadId) },
    null,
    1,
  );
}

function allMerged(wp: WorkerPool): boolean {
  return wp
    .stats()
    .arena.slices.every((s) => s.remoteFreesPushed === s.remoteFreesMerged + s.remoteFreesRejected);
}
