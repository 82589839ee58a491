/**
 * Every shared trace (test/fixtures, copied from shared/traces) replays through every registered
 * policy on an 80 GiB SimulatedDevice with exact accounting: the pool's peak live bytes equal the
 * trace's, invariants hold at sampled points, everything released leaves nothing live, and
 * destroy() returns every byte to the device. Not a benchmark: no timing is asserted.
 */
import { readdirSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import {
  createPool,
  GiB,
  policyNames,
  readTrace,
  replayTrace,
  SimulatedDevice,
  type Trace,
} from '../src/index.js';

const FIXTURES = fileURLToPath(new URL('./fixtures/', import.meta.url));
const TRACE_FILES = readdirSync(FIXTURES)
  .filter((f) => f.endsWith('.trace.gz'))
  .sort();
/** checkInvariants is O(slots + free runs): sampled, not run after every operation. */
const CHECK_EVERY = 20_000;

const traces = new Map<string, Trace>();
function trace(file: string): Trace {
  let t = traces.get(file);
  if (t === undefined) {
    t = readTrace(FIXTURES + file);
    traces.set(file, t);
  }
  return t;
}

describe('shared traces', () => {
  it('are all present (four of them, each with operations and a peak)', () => {
    expect(TRACE_FILES).toEqual([
      'kv_decode.trace.gz',
      'pipeline.trace.gz',
      'train_resnet.trace.gz',
      'transformer_varlen.trace.gz',
    ]);
    for (const file of TRACE_FILES) {
      const t = trace(file);
      expect(t.length).toBeGreaterThan(50_000);
      expect(t.peakLiveBytes).toBeGreaterThan(0);
    }
  });
});

const MODES = ['vmm', 'segments'] as const;

describe.each(policyNames())('policy %s replays', (policy) => {
  it.each(MODES.flatMap((mode) => TRACE_FILES.map((file) => [file, mode] as const)))(
    '%s in %s mode with exact accounting',
    (file, mode) => {
      const t = trace(file);
      const device = new SimulatedDevice({ capacityBytes: 80 * GiB });
      const pool = createPool({ device, policy, mode, detectLeaks: false });
      let checks = 0;
      const replayed = replayTrace(t, pool, {
        afterEach: (index) => {
          if (index % CHECK_EVERY !== 0) return;
          pool.checkInvariants();
          checks++;
        },
      });
      expect(checks).toBeGreaterThan(0);
      expect(replayed.ops).toBe(t.length);
      expect(replayed.peakLiveBytes).toBe(t.peakLiveBytes);
      expect(replayed.peakReservedBytes).toBeGreaterThanOrEqual(replayed.peakLiveBytes);
      const stats = pool.stats();
      expect(stats.liveBytes).toBe(0);
      expect(stats.liveBlocks).toBe(0);
      expect(stats.acquires).toBe(t.allocations);
      expect(stats.returns).toBe(t.allocations);
      expect(stats.reservedBytes).toBe(device.usedBytes);
      pool.checkInvariants();
      pool.trim();
      expect(pool.stats().reservedBytes).toBe(0);
      pool.destroy();
      expect(device.usedBytes).toBe(0);
      expect(device.openAllocations).toEqual({ ranges: 0, segments: 0 });
    },
  );
});
