import { ArgumentRangeError, InvalidArgumentError } from '@gpupool/core';
import { describe, expect, it } from 'vitest';
import { cropResizeCpu, preprocessFrameCpu } from '../src/cpu-kernels.js';
import { float16BitsToFloat32, float32ToFloat16Bits, toFloat16Bits } from '../src/float16.js';

const identity = { mean: [0, 0, 0], std: [1, 1, 1] };

function values(bits: Uint16Array): number[] {
  return [...bits].map(float16BitsToFloat32);
}

describe('preprocessFrameCpu', () => {
  it('keeps a same-size frame as x / 255 (channel planes, CHW)', () => {
    // 2×1 frame: pixel 0 = (255, 0, 51), pixel 1 = (0, 255, 102).
    const frame = Uint8Array.from([255, 0, 51, 0, 255, 102]);
    const out = preprocessFrameCpu(frame, 2, 1, { targetWidth: 2, targetHeight: 1, ...identity });
    expect(values(out)).toEqual(
      [1, 0, 0, 1, 0.2, 0.4].map((v) => float16BitsToFloat32(float32ToFloat16Bits(v))),
    );
  });

  it('normalizes with ImageNet mean and std by default', () => {
    const frame = new Uint8Array(3).fill(255);
    const out = preprocessFrameCpu(frame, 1, 1, { targetWidth: 1, targetHeight: 1 });
    const expected = [(1 - 0.485) / 0.229, (1 - 0.456) / 0.224, (1 - 0.406) / 0.225];
    for (const [i, v] of values(out).entries()) expect(v).toBeCloseTo(expected[i] as number, 2);
  });

  it('downsamples 4×1 → 2×1 with half-pixel centers (averages pairs)', () => {
    // Gray values 0, 100, 200, 250: output centers at source x = 0.5 and 2.5.
    const gray = [0, 100, 200, 250];
    const frame = Uint8Array.from(gray.flatMap((g) => [g, g, g]));
    const out = preprocessFrameCpu(frame, 4, 1, {
      targetWidth: 2,
      targetHeight: 1,
      mean: [0, 0, 0],
      std: [1 / 255, 1 / 255, 1 / 255],
    });
    // (x / 255 - 0) / (1/255) = x, up to float32 rounding.
    const v = values(out);
    expect(v[0]).toBeCloseTo(50, 1);
    expect(v[1]).toBeCloseTo(225, 1);
  });

  it('upsamples 2×1 → 4×1 clamping at both edges', () => {
    const frame = Uint8Array.from([0, 0, 0, 255, 255, 255]);
    const out = preprocessFrameCpu(frame, 2, 1, { targetWidth: 4, targetHeight: 1, ...identity });
    // Source x for outputs: -0.25 → 0 (clamped), 0.25, 0.75, 1.25 → last pixel.
    expect(values(out.subarray(0, 4))).toEqual([0, 0.25, 0.75, 1]);
  });

  it('defaults to 3 × 640 × 640', () => {
    expect(preprocessFrameCpu(new Uint8Array(4 * 4 * 3), 4, 4).length).toBe(3 * 640 * 640);
  });

  it('rejects bad arguments with typed errors naming them', () => {
    expect(() => preprocessFrameCpu([1, 2, 3] as unknown as Uint8Array, 1, 1)).toThrow(InvalidArgumentError);
    expect(() => preprocessFrameCpu(new Uint8Array(3), 0, 1)).toThrow(/width/);
    expect(() => preprocessFrameCpu(new Uint8Array(3), 2, 1)).toThrow(ArgumentRangeError);
    expect(() => preprocessFrameCpu(new Uint8Array(3), 1, 1, { std: [1, 0, 1] })).toThrow(/std/);
    expect(() => preprocessFrameCpu(new Uint8Array(3), 1, 1, { mean: [1, 2] })).toThrow(/mean/);
    expect(() => preprocessFrameCpu(new Uint8Array(3), 1, 1, { targetWidth: 1.5 })).toThrow(/targetWidth/);
    expect(() =>
      preprocessFrameCpu(new Uint8Array(3), 1, 1, {
        out: new Uint16Array(2),
        targetWidth: 1,
        targetHeight: 1,
      }),
    ).toThrow(/out/);
  });
});

describe('cropResizeCpu', () => {
  // 3 × 2 × 2 image, channel c pixel (y, x) = c * 10 + y * 2 + x.
  const image = toFloat16Bits(Array.from({ length: 12 }, (_, i) => Math.floor(i / 4) * 10 + (i % 4)));

  it('crops the whole image to its own size unchanged', () => {
    const out = cropResizeCpu(image, 2, 2, [0, 0, 2, 2], { outWidth: 2, outHeight: 2 });
    expect([...out]).toEqual([...image]);
  });

  it('samples one pixel box at its center', () => {
    const out = cropResizeCpu(image, 2, 2, [1, 1, 2, 2], { outWidth: 1, outHeight: 1 });
    expect(values(out)).toEqual([3, 13, 23]);
  });

  it('interpolates between pixel centers', () => {
    // Box [0.5, 0, 1.5, 1] → source x = 0.5 + 0.5 - 0.5 = 0.5 at y = 0: halfway between (0,0) and (0,1).
    const out = cropResizeCpu(image, 2, 2, [0.5, 0, 1.5, 1], { outWidth: 1, outHeight: 1 });
    expect(values(out)).toEqual([0.5, 10.5, 20.5]);
  });

  it('clamps boxes that leave the image', () => {
    const out = cropResizeCpu(image, 2, 2, [-10, -10, -5, -5, 10, 10, 20, 20], { outWidth: 1, outHeight: 1 });
    expect(values(out)).toEqual([0, 10, 20, 3, 13, 23]);
  });

  it('defaults to N × 3 × 256 × 128', () => {
    expect(cropResizeCpu(image, 2, 2, [0, 0, 1, 1, 0, 0, 2, 2]).length).toBe(2 * 3 * 256 * 128);
    expect(cropResizeCpu(image, 2, 2, []).length).toBe(0);
  });

  it('rejects bad boxes and images', () => {
    expect(() => cropResizeCpu(image, 2, 2, [0, 0, 1])).toThrow(/boxes/);
    expect(() => cropResizeCpu(image, 2, 2, [0, 0, Number.NaN, 1])).toThrow(ArgumentRangeError);
    expect(() => cropResizeCpu(image, 2, 2, 'boxes' as unknown as number[])).toThrow(InvalidArgumentError);
    expect(() => cropResizeCpu(image, 3, 2, [0, 0, 1, 1])).toThrow(/image/);
    expect(() => cropResizeCpu(new Float32Array(12) as unknown as Uint16Array, 2, 2, [])).toThrow(
      InvalidArgumentError,
    );
  });
});

describe('CPU kernel options (audit)', () => {
  const frame = new Uint8Array(2 * 2 * 3);
  const small = { targetWidth: 2, targetHeight: 2 };

  it('refuses a null or scalar mean/std with a typed error, not a bare TypeError', () => {
    for (const key of ['mean', 'std'] as const) {
      for (const bad of [null, 5, true]) {
        let thrown: unknown;
        try {
          preprocessFrameCpu(frame, 2, 2, { ...small, [key]: bad as never });
        } catch (error) {
          thrown = error;
        }
        expect(thrown).toBeInstanceOf(InvalidArgumentError);
        expect((thrown as InvalidArgumentError).argument).toBe(key);
      }
    }
    // Any array-like of 3 finite numbers still works (a Float64Array here).
    expect(() => preprocessFrameCpu(frame, 2, 2, { ...small, mean: Float64Array.of(0, 0, 0) })).not.toThrow();
  });

  it('refuses an `out` that is not a Uint16Array instead of writing float16 bits into it', () => {
    const wrong = [new Float32Array(12), new Uint8Array(24), [] as unknown, 5];
    for (const out of wrong) {
      expect(() => preprocessFrameCpu(frame, 2, 2, { ...small, out: out as never })).toThrow(
        InvalidArgumentError,
      );
      expect(() =>
        cropResizeCpu(new Uint16Array(12), 2, 2, [0, 0, 1, 1], {
          outWidth: 1,
          outHeight: 1,
          out: out as never,
        }),
      ).toThrow(InvalidArgumentError);
    }
  });

  it('refuses a preprocess output over the frame it reads', () => {
    const memory = new ArrayBuffer(64);
    const overFrame = new Uint8Array(memory, 0, 12);
    const out = new Uint16Array(memory, 8, 12);
    expect(() => preprocessFrameCpu(overFrame, 2, 2, { ...small, out })).toThrow(ArgumentRangeError);
    // Disjoint views of one buffer are fine.
    expect(() =>
      preprocessFrameCpu(overFrame, 2, 2, { ...small, out: new Uint16Array(memory, 16, 12) }),
    ).not.toThrow();
  });
});
