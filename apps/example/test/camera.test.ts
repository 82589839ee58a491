import { describe, expect, it } from 'vitest';
import {
  BACKGROUND_MAX,
  FRAME_BYTES,
  FRAME_HEIGHT,
  FRAME_WIDTH,
  OBJECTS_PER_CAMERA,
  objectsAt,
  renderFrame,
} from '../src/camera.js';

describe('camera generator', () => {
  it('is a pure function of (camera, frame)', () => {
    expect(objectsAt(3, 17)).toEqual(objectsAt(3, 17));
    const a = new Uint8Array(FRAME_BYTES);
    const b = new Uint8Array(FRAME_BYTES);
    renderFrame(1, 5, a);
    renderFrame(1, 5, b);
    expect(Buffer.compare(a, b)).toBe(0);
  });

  it('keeps objects inside the frame and in disjoint lanes', () => {
    for (let camera = 0; camera < 4; camera++) {
      for (let frame = 0; frame < 200; frame++) {
        const objects = objectsAt(camera, frame);
        expect(objects.length).toBeLessThanOrEqual(OBJECTS_PER_CAMERA);
        for (const o of objects) {
          expect(o.x0).toBeGreaterThanOrEqual(0);
          expect(o.y0).toBeGreaterThanOrEqual(0);
          expect(o.x1).toBeLessThanOrEqual(FRAME_WIDTH);
          expect(o.y1).toBeLessThanOrEqual(FRAME_HEIGHT);
          expect(o.x1 - o.x0).toBeGreaterThanOrEqual(96);
          expect(o.y1 - o.y0).toBeGreaterThanOrEqual(64);
        }
        for (let i = 1; i < objects.length; i++) {
          expect(objects[i]!.y0).toBeGreaterThan(objects[i - 1]!.y1);
        }
      }
    }
  });

  it('moves objects and shows 0..N of them over time', () => {
    const counts = new Set<number>();
    for (let frame = 0; frame < 400; frame++) counts.add(objectsAt(0, frame).length);
    expect(counts.has(OBJECTS_PER_CAMERA)).toBe(true);
    expect(Math.min(...counts)).toBeLessThan(2);
    const first = objectsAt(0, 0)[0]!;
    const later = objectsAt(0, 1).find((o) => o.id === first.id);
    if (later !== undefined) expect(later.x0 !== first.x0 || later.y0 !== first.y0).toBe(true);
  });

  it('draws objects in their colour on a dark background', () => {
    const out = new Uint8Array(FRAME_BYTES);
    const objects = renderFrame(2, 9, out);
    const pixel = (x: number, y: number) => [
      ...out.subarray((y * FRAME_WIDTH + x) * 3, (y * FRAME_WIDTH + x) * 3 + 3),
    ];
    for (const o of objects) {
      expect(pixel(o.x0, o.y0)).toEqual([...o.color]);
      expect(pixel(o.x1 - 1, o.y1 - 1)).toEqual([...o.color]);
      if (o.x0 > 0) expect(Math.max(...pixel(o.x0 - 1, o.y0))).toBeLessThanOrEqual(BACKGROUND_MAX);
    }
    expect(Math.max(...pixel(0, FRAME_HEIGHT - 1))).toBeLessThanOrEqual(BACKGROUND_MAX);
  });

  it('rejects bad arguments', () => {
    expect(() => objectsAt(-1, 0)).toThrow(RangeError);
    expect(() => objectsAt(0, 1.5)).toThrow(RangeError);
    expect(() => renderFrame(0, 0, new Uint8Array(10))).toThrow(RangeError);
  });
});
