import {
  CROP_HEIGHT,
  CROP_WIDTH,
  cropResizeCpu,
  IMAGENET_MEAN,
  IMAGENET_STD,
  preprocessFrameCpu,
  toFloat16Bits,
} from '@gpupool/native';
import { describe, expect, it } from 'vitest';
import { FRAME_BYTES, FRAME_HEIGHT, FRAME_WIDTH, renderFrame } from '../src/camera.js';
import { checkFrame } from '../src/check.js';
import { detect, EMBED_DIM, embed } from '../src/detector.js';

/** A normalized float16 CHW image of `side` × `side` with flat rectangles of 0..1 RGB colours. */
function image(
  side: number,
  rects: { x0: number; y0: number; x1: number; y1: number; rgb: number[] }[],
  bg = 0.05,
) {
  const plane = side * side;
  const values = new Float32Array(3 * plane);
  for (let c = 0; c < 3; c++) {
    for (let i = 0; i < plane; i++) {
      const x = i % side;
      const y = Math.floor(i / side);
      const r = rects.find((q) => x >= q.x0 && x < q.x1 && y >= q.y0 && y < q.y1);
      const level = r === undefined ? bg : r.rgb[c]!;
      values[c * plane + i] = (level - IMAGENET_MEAN[c]!) / IMAGENET_STD[c]!;
    }
  }
  return toFloat16Bits(values);
}

describe('detector', () => {
  it('finds the bounding box of each bright component', () => {
    const img = image(64, [
      { x0: 5, y0: 3, x1: 20, y1: 9, rgb: [0.9, 0.1, 0.1] },
      { x0: 30, y0: 40, x1: 50, y1: 60, rgb: [0.1, 0.1, 0.8] },
    ]);
    expect([...detect(img, 64, 64)]).toEqual([5, 3, 20, 9, 30, 40, 50, 60]);
  });

  it('ignores a dark image and specks smaller than the minimum area', () => {
    expect(detect(image(32, []), 32, 32).length).toBe(0);
    expect(detect(image(32, [{ x0: 4, y0: 4, x1: 6, y1: 6, rgb: [1, 1, 1] }]), 32, 32).length).toBe(0);
  });

  it('embeds a flat crop as its colour', () => {
    const img = image(64, [{ x0: 8, y0: 8, x1: 40, y1: 56, rgb: [0.2, 0.85, 0.3] }]);
    const crops = cropResizeCpu(img, 64, 64, [8, 8, 40, 56]);
    const e = embed(crops, 1, CROP_WIDTH, CROP_HEIGHT);
    expect(e.length).toBe(EMBED_DIM);
    expect(e[0]).toBeCloseTo(0.2, 2);
    expect(e[1]).toBeCloseTo(0.85, 2);
    expect(e[2]).toBeCloseTo(0.3, 2);
  });

  it('recovers what the camera drew through the reference kernels', () => {
    const frame = new Uint8Array(FRAME_BYTES);
    for (const [camera, index] of [
      [0, 0],
      [1, 7],
      [5, 33],
    ] as const) {
      renderFrame(camera, index, frame);
      const input = preprocessFrameCpu(frame, FRAME_WIDTH, FRAME_HEIGHT);
      const boxes = detect(input, 640, 640);
      const count = boxes.length / 4;
      const crops = cropResizeCpu(input, 640, 640, boxes);
      const embeddings = embed(crops, count, CROP_WIDTH, CROP_HEIGHT);
      const check = checkFrame({
        camera,
        frame: index,
        boxes: [...boxes],
        embeddings: [...embeddings],
        imageSide: 640,
      });
      expect(check.problems).toEqual([]);
    }
  });
});

describe('checkFrame', () => {
  it('flags missing objects, misplaced boxes and wrong colours', () => {
    const frame = new Uint8Array(FRAME_BYTES);
    let index = 0;
    while (renderFrame(0, index, frame).length < 2) index++;
    const input = preprocessFrameCpu(frame, FRAME_WIDTH, FRAME_HEIGHT);
    const boxes = [...detect(input, 640, 640)];
    const embeddings = [
      ...embed(cropResizeCpu(input, 640, 640, boxes), boxes.length / 4, CROP_WIDTH, CROP_HEIGHT),
    ];
    const good = { camera: 0, frame: index, boxes, embeddings, imageSide: 640 };
    expect(checkFrame(good).ok).toBe(true);
    expect(checkFrame({ ...good, boxes: boxes.slice(4), embeddings: embeddings.slice(3) }).ok).toBe(false);
    const shifted = [...boxes];
    shifted[0]! += 10;
    expect(checkFrame({ ...good, boxes: shifted }).problems.join()).toMatch(/px from drawn/);
    const recoloured = [...embeddings];
    recoloured[0] = 1 - recoloured[0]!;
    expect(checkFrame({ ...good, embeddings: recoloured }).problems.join()).toMatch(/not colour/);
  });
});
