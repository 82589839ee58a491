import { describe, expect, it } from 'vitest';
import {
  CELL_INT32S,
  CELL_SEQ,
  cellIndex,
  directoryIndex,
  HEADER_INT32S,
  type LayoutShape,
  layoutBytes,
  PR_BLOCK_ID,
  PR_THREAD,
  PRODUCER_INT32S,
  producerIndex,
  SB_INT32S,
  SL_MERGE_TALLY,
  SL_OP_EXPORTED,
  SL_OP_PEAK,
  SL_QUEUE_HEAD,
  SL_QUEUE_TAIL,
  SL_STATE,
  SL_SUPERBLOCKS_PEAK,
  SLICE_INT32S,
  sliceIndex,
} from '../src/layout.js';

/** Bytes at which two words can never share a cache line or an adjacent-line prefetch pair. */
const APART_BYTES = 128;
const shapes: LayoutShape[] = [
  { superblockCount: 1, sliceSlots: 1, queueCells: 2 },
  { superblockCount: 128, sliceSlots: 64, queueCells: 4096 },
  { superblockCount: 7, sliceSlots: 3, queueCells: 16 },
];

describe('shared layout: no false sharing between slices', () => {
  it.each(shapes)(
    '%j: each slice’s fields are ≥ 128 bytes from every other slice’s and from the other regions',
    (shape) => {
      const fields = [
        SL_STATE,
        SL_QUEUE_HEAD,
        SL_QUEUE_TAIL,
        SL_SUPERBLOCKS_PEAK,
        SL_MERGE_TALLY,
        SL_OP_EXPORTED,
        SL_OP_PEAK,
      ];
      const firstField = Math.min(...fields);
      const lastField = Math.max(...fields);
      expect(lastField).toBeLessThan(SLICE_INT32S);
      for (let slot = 0; slot + 1 < shape.sliceSlots; slot++) {
        const endOfThis = 4 * sliceIndex(shape, slot, lastField);
        const startOfNext = 4 * sliceIndex(shape, slot + 1, firstField);
        expect(startOfNext - endOfThis).toBeGreaterThanOrEqual(APART_BYTES + 4);
      }
      // The directory's last word and the first slice's first field.
      const directoryEnd = 4 * directoryIndex(shape.superblockCount - 1, SB_INT32S - 1);
      expect(4 * sliceIndex(shape, 0, firstField) - directoryEnd).toBeGreaterThanOrEqual(APART_BYTES + 4);
      // The last slice's last field and the first producer record; producer records apart from
      // each other (each is written by its own thread on every remote free); the last one and the
      // first queue cell.
      const lastSlice = 4 * sliceIndex(shape, shape.sliceSlots - 1, lastField);
      expect(4 * producerIndex(shape, 0, PR_THREAD) - lastSlice).toBeGreaterThanOrEqual(APART_BYTES + 4);
      expect(PR_BLOCK_ID).toBeLessThan(PRODUCER_INT32S);
      for (let r = 0; r + 1 < shape.sliceSlots; r++) {
        const gap = 4 * (producerIndex(shape, r + 1, PR_THREAD) - producerIndex(shape, r, PR_BLOCK_ID));
        expect(gap).toBeGreaterThanOrEqual(APART_BYTES + 4);
      }
      const lastRecord = 4 * producerIndex(shape, shape.sliceSlots - 1, PR_BLOCK_ID);
      expect(4 * cellIndex(shape, 0, 0, CELL_SEQ) - lastRecord).toBeGreaterThanOrEqual(APART_BYTES + 4);
    },
  );

  it.each(shapes)('%j: regions follow one another and fill layoutBytes exactly', (shape) => {
    expect(directoryIndex(0, 0)).toBe(HEADER_INT32S);
    expect(sliceIndex(shape, 0, 0)).toBeGreaterThan(directoryIndex(shape.superblockCount - 1, SB_INT32S - 1));
    expect(producerIndex(shape, 0, 0)).toBe(sliceIndex(shape, shape.sliceSlots, 0));
    expect(cellIndex(shape, 0, 0, 0)).toBe(producerIndex(shape, shape.sliceSlots, 0));
    const lastWord = cellIndex(shape, shape.sliceSlots - 1, shape.queueCells - 1, CELL_INT32S - 1);
    expect(layoutBytes(shape)).toBe(4 * (lastWord + 1));
  });
});
