import { describe, expect, it } from 'vitest';
import {
  float16BitsToFloat32,
  float32ToFloat16Bits,
  fromFloat16Bits,
  toFloat16Bits,
} from '../src/float16.js';

describe('float32ToFloat16Bits', () => {
  it.each([
    [0, 0x0000],
    [-0, 0x8000],
    [1, 0x3c00],
    [-2, 0xc000],
    [0.5, 0x3800],
    [65504, 0x7bff],
    [Number.POSITIVE_INFINITY, 0x7c00],
    [Number.NEGATIVE_INFINITY, 0xfc00],
    [2 ** -14, 0x0400],
    [2 ** -24, 0x0001],
    [0.333251953125, 0x3555],
  ])('converts %d exactly to %i', (value, bits) => {
    expect(float32ToFloat16Bits(value)).toBe(bits);
  });

  it('rounds ties to even', () => {
    // 1 + 2^-11 lies halfway between 1 (even mantissa) and 1 + 2^-10: goes to 1.
    expect(float32ToFloat16Bits(1 + 2 ** -11)).toBe(0x3c00);
    // 1 + 3·2^-11 lies halfway between 1 + 2^-10 (odd) and 1 + 2^-9 (even): goes up.
    expect(float32ToFloat16Bits(1 + 3 * 2 ** -11)).toBe(0x3c02);
    // Just above the halfway point rounds up.
    expect(float32ToFloat16Bits(1 + 2 ** -11 + 2 ** -20)).toBe(0x3c01);
  });

  it('overflows to infinity at the rounding boundary 65520', () => {
    expect(float32ToFloat16Bits(65519)).toBe(0x7bff);
    expect(float32ToFloat16Bits(65520)).toBe(0x7c00);
    expect(float32ToFloat16Bits(-1e10)).toBe(0xfc00);
  });

  it('rounds into subnormals and to zero', () => {
    expect(float32ToFloat16Bits(2 ** -25)).toBe(0x0000); // tie with 0 (even) and 2^-24
    expect(float32ToFloat16Bits(2 ** -25 + 2 ** -35)).toBe(0x0001);
    expect(float32ToFloat16Bits(3 * 2 ** -25)).toBe(0x0002); // tie between 1 and 2 → 2 (even)
    expect(float32ToFloat16Bits(-(2 ** -30))).toBe(0x8000);
    expect(float32ToFloat16Bits(1e-45)).toBe(0x0000);
    // The largest subnormal rounds up into the smallest normal.
    expect(float32ToFloat16Bits(2 ** -14 - 2 ** -26)).toBe(0x0400);
  });

  it('keeps NaN a NaN', () => {
    const bits = float32ToFloat16Bits(Number.NaN);
    expect(bits & 0x7c00).toBe(0x7c00);
    expect(bits & 0x3ff).not.toBe(0);
    expect(Number.isNaN(float16BitsToFloat32(bits))).toBe(true);
  });

  it('turns every NaN (sign, payload) into the canonical 0x7fff, as CUDA __float2half_rn does', () => {
    // cuda_fp16.hpp (__internal_float2half): NaN → 0x7fffU whatever its sign and payload.
    const f = new Float32Array(1);
    const u = new Uint32Array(f.buffer);
    for (const pattern of [0x7fc00000, 0xffc00000, 0x7f800001, 0xff800001, 0x7fffffff, 0x7fa00000]) {
      u[0] = pattern;
      expect(float32ToFloat16Bits(f[0] as number)).toBe(0x7fff);
    }
    expect(float32ToFloat16Bits(Number.NaN)).toBe(0x7fff);
    // Infinities keep their sign.
    expect(float32ToFloat16Bits(Number.POSITIVE_INFINITY)).toBe(0x7c00);
    expect(float32ToFloat16Bits(Number.NEGATIVE_INFINITY)).toBe(0xfc00);
  });
});

describe('float16BitsToFloat32', () => {
  it('round-trips all 63488 finite patterns exactly', () => {
    for (let bits = 0; bits < 0x10000; bits++) {
      if ((bits & 0x7c00) === 0x7c00) continue;
      expect(float32ToFloat16Bits(float16BitsToFloat32(bits))).toBe(bits);
    }
  });

  it('decodes specials', () => {
    expect(float16BitsToFloat32(0x7c00)).toBe(Number.POSITIVE_INFINITY);
    expect(float16BitsToFloat32(0xfc00)).toBe(Number.NEGATIVE_INFINITY);
    expect(Object.is(float16BitsToFloat32(0x8000), -0)).toBe(true);
    expect(float16BitsToFloat32(0x0001)).toBe(2 ** -24);
    expect(float16BitsToFloat32(0x3555)).toBe(0.333251953125);
  });

  it('converts arrays both ways', () => {
    const bits = toFloat16Bits([1, 0.5, -2]);
    expect([...bits]).toEqual([0x3c00, 0x3800, 0xc000]);
    expect([...fromFloat16Bits(bits)]).toEqual([1, 0.5, -2]);
  });
});
