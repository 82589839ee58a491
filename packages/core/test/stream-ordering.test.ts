/**
 * Stream-ordered reuse against a model, for every policy, with and without the block cache: random
 * acquires and releases on the default stream and two others, with work that finishes only when
 * the test says so (SimulatedDevice). The model keeps, for each block released on a stream other
 * than 0, its bytes and the event its release recorded (SimulatedDevice numbers events from 1);
 * a block handed to another stream must never overlap such bytes while that event is pending.
 * Reuse on the same stream is immediate and allowed. Not a benchmark: no timing is asserted.
 */
import { describe, expect, it } from 'vitest';
import { type Block, createPool, MiB, policyNames, SimulatedDevice } from '../src/index.js';
import { prng } from './helpers/prng.js';

const SEEDS = 12;
const STEPS = 400;
const SIZES = [256, 4096, 5000, 70_000, 3 * MiB];

interface Busy {
  start: number;
  end: number;
  stream: number;
  event: number;
}

function runSequence(policy: string, seed: number, blockCacheBytes: number | undefined): void {
  const device = new SimulatedDevice({ capacityBytes: 256 * MiB });
  const pool = createPool({ device, policy, detectLeaks: false, limitBytes: 48 * MiB, blockCacheBytes });
  const streams = [0, device.streams.createStream(), device.streams.createStream()];
  const random = prng(seed);
  const live: Block[] = [];
  const busy: Busy[] = [];
  let nextEvent = 1;
  /** Pending unless the pool synchronized it or let it go (an event it destroyed is settled). */
  const pending = (event: number): boolean => {
    try {
      return !device.streams.eventDone(event);
    } catch {
      return false;
    }
  };
  for (let step = 0; step < STEPS; step++) {
    const r = random();
    if (r < 0.5) {
      const stream = streams[Math.floor(random() * streams.length)]!;
      const bytes = SIZES[Math.floor(random() * SIZES.length)]!;
      let block: Block;
      try {
        block = pool.acquire(bytes, { stream });
      } catch (error) {
        if ((error as { code?: string }).code !== 'ERR_GPUPOOL_OUT_OF_MEMORY') throw error;
        continue;
      }
      const start = Number(block.ptr);
      const end = start + block.bytes;
      for (const b of busy) {
        if (b.stream !== stream && start < b.end && b.start < end && pending(b.event)) {
          throw new Error(
            `seed ${seed}, step ${step}: a block for stream ${stream} overlaps bytes stream ${b.stream} still uses`,
          );
        }
      }
      live.push(block);
    } else if (r < 0.9) {
      if (live.length === 0) continue;
      const block = live.splice(Math.floor(random() * live.length), 1)[0]!;
      const start = Number(block.ptr);
      block.release();
      if (block.stream !== 0)
        busy.push({ start, end: start + block.bytes, stream: block.stream, event: nextEvent++ });
    } else if (r < 0.95) {
      device.completeAllWork();
      busy.length = 0;
    } else {
      pool.trim();
    }
    pool.checkInvariants();
  }
  for (const block of live) block.release();
  pool.destroy();
  expect(device.usedBytes).toBe(0);
}

describe.each(policyNames())('policy %s: stream-ordered reuse against a model', (policy) => {
  it('never hands another stream bytes whose work is pending (block cache on and off)', () => {
    for (let seed = 1; seed <= SEEDS; seed++) {
      runSequence(policy, seed, undefined);
      runSequence(policy, seed, 0);
    }
  });
});
