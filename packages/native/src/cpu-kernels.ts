/**
 * CPU reference implementations of the pipeline kernels. They run anywhere (no CUDA) and compute in
 * float32 (Math.fround after every operation) in the same order as src/native/kernels.cu, which is
 * built without fused multiply-add, so GPU and CPU results agree bit for bit. The example pipeline
 * uses these as its kernels on HostDevice; the GPU tests compare the CUDA kernels against them.
 *
 * Sampling: bilinear with half-pixel centers (align_corners=false); source coordinates below 0 are
 * clamped to 0 and neighbours past the last row/column are clamped to it (edge clamp).
 */
import { ArgumentRangeError, InvalidArgumentError } from '@gpupool/core';
import { float16BitsToFloat32, float32ToFloat16Bits } from './float16.js';
import { checkFiniteArray, checkSafeInteger } from './validate.js';

/** ImageNet channel statistics (RGB), the defaults of preprocessFrame. */
export const IMAGENET_MEAN: readonly [number, number, number] = [0.485, 0.456, 0.406];
export const IMAGENET_STD: readonly [number, number, number] = [0.229, 0.224, 0.225];
export const PREPROCESS_SIZE = 640;
export const CROP_HEIGHT = 256;
export const CROP_WIDTH = 128;
/** Largest image side the kernels accept (keeps every index inside 32-bit arithmetic). */
export const IMAGE_SIDE_MAX = 16384;
/** Most boxes per cropResize call (the CUDA grid's z limit). */
export const CROP_BOXES_MAX = 65535;

export interface PreprocessOptions {
  /** Output width and height; 640 × 640 by default. */
  targetWidth?: number;
  targetHeight?: number;
  mean?: ArrayLike<number>;
  std?: ArrayLike<number>;
}

export interface CropResizeOptions {
  outWidth?: number;
  outHeight?: number;
}

export interface ResolvedPreprocess {
  targetWidth: number;
  targetHeight: number;
  mean: Float32Array;
  std: Float32Array;
}

/** Validates preprocess options (shared with the CUDA wrapper). */
export function resolvePreprocess(options: PreprocessOptions | undefined): ResolvedPreprocess {
  if (options !== undefined && (typeof options !== 'object' || options === null)) {
    throw new InvalidArgumentError('options', 'must be an object', options);
  }
  const o = options ?? {};
  const targetWidth = checkSafeInteger('targetWidth', o.targetWidth ?? PREPROCESS_SIZE, 1, IMAGE_SIDE_MAX);
  const targetHeight = checkSafeInteger('targetHeight', o.targetHeight ?? PREPROCESS_SIZE, 1, IMAGE_SIDE_MAX);
  const mean = checkFiniteArray('mean', channels(o.mean, IMAGENET_MEAN), 3);
  const std = checkFiniteArray('std', channels(o.std, IMAGENET_STD), 3);
  for (const s of std) if (s === 0) throw new ArgumentRangeError('std', 'must not contain 0', s);
  return { targetWidth, targetHeight, mean, std };
}

/**
 * A per-channel option as checkFiniteArray takes it: the default when undefined, an array-like
 * (any typed array, an array) copied to an array; anything else (null, a number, a string) is
 * passed through as is, for checkFiniteArray to refuse with a typed error.
 */
function channels(value: unknown, fallback: readonly number[]): unknown {
  if (value === undefined) return [...fallback];
  if (typeof value === 'object' && value !== null && typeof (value as ArrayLike<unknown>).length === 'number')
    return Array.from(value as ArrayLike<unknown>);
  return value;
}

/** `options.out` of a CPU kernel: undefined, or a Uint16Array (float16 bit patterns) of at least `length` elements. */
function checkOut(out: unknown, length: number): Uint16Array | undefined {
  if (out === undefined) return undefined;
  if (!(out instanceof Uint16Array))
    throw new InvalidArgumentError('out', 'must be a Uint16Array (float16 bit patterns)', out);
  if (out.length < length) throw new ArgumentRangeError('out', `must hold ${length} elements`, out.length);
  return out;
}

/** Whether two views share any byte of memory (the kernels read one while writing the other). */
export function viewsOverlap(a: ArrayBufferView, b: ArrayBufferView): boolean {
  return (
    a.buffer === b.buffer &&
    a.byteOffset < b.byteOffset + b.byteLength &&
    b.byteOffset < a.byteOffset + a.byteLength
  );
}

export function resolveCrop(options: CropResizeOptions | undefined): { outWidth: number; outHeight: number } {
  if (options !== undefined && (typeof options !== 'object' || options === null)) {
    throw new InvalidArgumentError('options', 'must be an object', options);
  }
  const o = options ?? {};
  return {
    outWidth: checkSafeInteger('outWidth', o.outWidth ?? CROP_WIDTH, 1, IMAGE_SIDE_MAX),
    outHeight: checkSafeInteger('outHeight', o.outHeight ?? CROP_HEIGHT, 1, IMAGE_SIDE_MAX),
  };
}

/** Validates boxes: a multiple of 4 finite numbers (x0, y0, x1, y1 in pixels), at most CROP_BOXES_MAX boxes. */
export function checkBoxes(boxes: unknown): Float32Array {
  const array = checkFiniteArray('boxes', boxes);
  if (array.length % 4 !== 0)
    throw new ArgumentRangeError('boxes', 'must hold 4 numbers (x0, y0, x1, y1) per box', array.length);
  if (array.length / 4 > CROP_BOXES_MAX) {
    throw new ArgumentRangeError('boxes', `must hold at most ${CROP_BOXES_MAX} boxes`, array.length / 4);
  }
  return array;
}

const fr = Math.fround;

interface Tap {
  i0: number;
  i1: number;
  lo: number;
  hi: number;
}

/** The two neighbours of source coordinate `s` and their weights (kernels.cu: Tap). */
function tap(s: number, size: number): Tap {
  // biome-ignore lint/complexity/useMathMinMax: mirrors the CUDA comparison exactly (keeps -0, as kernels.cu does)
  const c = s < 0 ? 0 : s;
  let i = Math.floor(c);
  if (i > size - 1) i = size - 1;
  const hi = fr(c - i);
  return { i0: i, i1: i + 1 < size ? i + 1 : size - 1, lo: fr(1 - hi), hi };
}

function lerp2(x: Tap, y: Tap, p00: number, p01: number, p10: number, p11: number): number {
  const top = fr(fr(x.lo * p00) + fr(x.hi * p01));
  const bottom = fr(fr(x.lo * p10) + fr(x.hi * p11));
  return fr(fr(y.lo * top) + fr(y.hi * bottom));
}

/**
 * uint8 HWC RGB frame (width × height) → float16 CHW (3 × targetHeight × targetWidth) as bit
 * patterns: bilinear resize, then (x / 255 − mean[c]) / std[c].
 */
export function preprocessFrameCpu(
  frame: Uint8Array,
  width: number,
  height: number,
  options?: PreprocessOptions & { out?: Uint16Array },
): Uint16Array {
  if (!(frame instanceof Uint8Array))
    throw new InvalidArgumentError('frame', 'must be a Uint8Array (HWC RGB)', frame);
  checkSafeInteger('width', width, 1, IMAGE_SIDE_MAX);
  checkSafeInteger('height', height, 1, IMAGE_SIDE_MAX);
  if (frame.length < width * height * 3) {
    throw new ArgumentRangeError(
      'frame',
      `must hold width × height × 3 = ${width * height * 3} bytes`,
      frame.length,
    );
  }
  const { targetWidth, targetHeight, mean, std } = resolvePreprocess(options);
  const plane = targetWidth * targetHeight;
  const out = checkOut(options?.out, 3 * plane) ?? new Uint16Array(3 * plane);
  // The resize reads source rows while it writes: an output over the frame would read its own results.
  if (viewsOverlap(out, frame)) throw new ArgumentRangeError('out', 'must not overlap frame', options?.out);
  const scaleX = fr(width / targetWidth);
  const scaleY = fr(height / targetHeight);
  const xs: Tap[] = [];
  for (let ox = 0; ox < targetWidth; ox++) xs.push(tap(fr(fr((ox + 0.5) * scaleX) - 0.5), width));
  for (let oy = 0; oy < targetHeight; oy++) {
    const y = tap(fr(fr((oy + 0.5) * scaleY) - 0.5), height);
    const r0 = y.i0 * width * 3;
    const r1 = y.i1 * width * 3;
    for (let ox = 0; ox < targetWidth; ox++) {
      const x = xs[ox] as Tap;
      for (let c = 0; c < 3; c++) {
        const v = lerp2(
          x,
          y,
          frame[r0 + x.i0 * 3 + c] as number,
          frame[r0 + x.i1 * 3 + c] as number,
          frame[r1 + x.i0 * 3 + c] as number,
          frame[r1 + x.i1 * 3 + c] as number,
        );
        const n = fr(fr(fr(v / 255) - (mean[c] as number)) / (std[c] as number));
        out[c * plane + oy * targetWidth + ox] = float32ToFloat16Bits(n);
      }
    }
  }
  return out;
}

/**
 * float16 CHW image (3 × height × width, bit patterns) and N boxes (x0, y0, x1, y1 pixels) →
 * float16 N × 3 × outHeight × outWidth (256 × 128 by default), bilinear, clamped to the image.
 */
export function cropResizeCpu(
  image: Uint16Array,
  width: number,
  height: number,
  boxes: Float32Array | readonly number[],
  options?: CropResizeOptions & { out?: Uint16Array },
): Uint16Array {
  if (!(image instanceof Uint16Array))
    throw new InvalidArgumentError('image', 'must be a Uint16Array of float16 bits (CHW)', image);
  checkSafeInteger('width', width, 1, IMAGE_SIDE_MAX);
  checkSafeInteger('height', height, 1, IMAGE_SIDE_MAX);
  if (image.length < 3 * width * height) {
    throw new ArgumentRangeError(
      'image',
      `must hold 3 × height × width = ${3 * width * height} elements`,
      image.length,
    );
  }
  const b = checkBoxes(boxes);
  const { outWidth, outHeight } = resolveCrop(options);
  const count = b.length / 4;
  const outPlane = outWidth * outHeight;
  const out = checkOut(options?.out, count * 3 * outPlane) ?? new Uint16Array(count * 3 * outPlane);
  const plane = width * height;
  const values = new Float32Array(image.length);
  for (let i = 0; i < 3 * plane; i++) values[i] = float16BitsToFloat32(image[i] as number);
  for (let n = 0; n < count; n++) {
    const bx0 = b[n * 4] as number;
    const by0 = b[n * 4 + 1] as number;
    const scaleX = fr(fr((b[n * 4 + 2] as number) - bx0) / outWidth);
    const scaleY = fr(fr((b[n * 4 + 3] as number) - by0) / outHeight);
    for (let oy = 0; oy < outHeight; oy++) {
      const y = tap(clamp(fr(by0 + fr(fr((oy + 0.5) * scaleY) - 0.5)), height - 1), height);
      for (let ox = 0; ox < outWidth; ox++) {
        const x = tap(clamp(fr(bx0 + fr(fr((ox + 0.5) * scaleX) - 0.5)), width - 1), width);
        for (let c = 0; c < 3; c++) {
          const p = c * plane;
          const v = lerp2(
            x,
            y,
            values[p + y.i0 * width + x.i0] as number,
            values[p + y.i0 * width + x.i1] as number,
            values[p + y.i1 * width + x.i0] as number,
            values[p + y.i1 * width + x.i1] as number,
          );
          out[(n * 3 + c) * outPlane + oy * outWidth + ox] = float32ToFloat16Bits(v);
        }
      }
    }
  }
  return out;
}

function clamp(v: number, hi: number): number {
  // biome-ignore lint/complexity/useMathMinMax: mirrors the CUDA comparison exactly (keeps -0, as kernels.cu does)
  return v < 0 ? 0 : v > hi ? hi : v;
}
