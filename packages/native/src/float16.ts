/**
 * IEEE 754 binary16 ("float16", "half") bit conversions. float32 → float16 rounds to nearest, ties
 * to even, exactly as CUDA's __float2half_rn: overflow goes to ±Infinity, tiny values to
 * subnormals or ±0, and every NaN (any sign or payload) becomes the canonical float16 NaN 0x7fff
 * (CUDART_NAN_FP16; cuda_fp16.hpp's host implementation of __float2half_rn does the same). Inputs
 * are first rounded to float32 (as the kernels compute in float32). float16 → float32 is exact.
 */

/** The NaN that CUDA's float → half conversion gives for every NaN input (CUDART_NAN_FP16). */
export const FLOAT16_CANONICAL_NAN = 0x7fff;

const f32 = new Float32Array(1);
const u32 = new Uint32Array(f32.buffer);

/** The float16 bit pattern (0..0xffff) nearest to `value` rounded to float32. */
export function float32ToFloat16Bits(value: number): number {
  f32[0] = value;
  const x = u32[0] as number;
  const sign = (x >>> 16) & 0x8000;
  const exponent = (x >>> 23) & 0xff;
  const mantissa = x & 0x7fffff;
  if (exponent === 0xff) {
    // Infinity keeps its sign; NaN is canonical, as on the GPU (the kernels' results match bit for bit).
    return mantissa === 0 ? sign | 0x7c00 : FLOAT16_CANONICAL_NAN;
  }
  const e = exponent - 127 + 15;
  if (e >= 0x1f) return sign | 0x7c00;
  if (e <= 0) {
    // Subnormal float16 (or zero): shift the full significand, round to nearest even.
    if (e < -10) return sign;
    const significand = mantissa | 0x800000;
    const shift = 14 - e;
    const half = 1 << (shift - 1);
    let result = significand >>> shift;
    const rest = significand & ((1 << shift) - 1);
    if (rest > half || (rest === half && (result & 1) === 1)) result++;
    return sign | result;
  }
  let result = (e << 10) | (mantissa >>> 13);
  const rest = mantissa & 0x1fff;
  // A carry out of the mantissa correctly bumps the exponent (up to Infinity).
  if (rest > 0x1000 || (rest === 0x1000 && (result & 1) === 1)) result++;
  return sign | result;
}

/** The value of a float16 bit pattern, exactly. */
export function float16BitsToFloat32(bits: number): number {
  const sign = bits & 0x8000 ? -1 : 1;
  const exponent = (bits >>> 10) & 0x1f;
  const mantissa = bits & 0x3ff;
  if (exponent === 0) return sign * mantissa * 2 ** -24;
  if (exponent === 0x1f) return mantissa === 0 ? sign * Number.POSITIVE_INFINITY : Number.NaN;
  return sign * (1 + mantissa / 1024) * 2 ** (exponent - 15);
}

/** Converts every element (rounded to float32 first) to float16 bits. */
export function toFloat16Bits(values: ArrayLike<number>, out = new Uint16Array(values.length)): Uint16Array {
  for (let i = 0; i < values.length; i++) out[i] = float32ToFloat16Bits(values[i] as number);
  return out;
}

/** Converts float16 bit patterns to their values. */
export function fromFloat16Bits(bits: ArrayLike<number>, out = new Float32Array(bits.length)): Float32Array {
  for (let i = 0; i < bits.length; i++) out[i] = float16BitsToFloat32(bits[i] as number);
  return out;
}
