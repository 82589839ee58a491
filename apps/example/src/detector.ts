/**
 * The deterministic "models" of the pipeline, run on float16 tensors (bit patterns):
 * - `detect`: thresholds the preprocessed 3 × S × S image (any channel brighter than 0.5 after
 *   undoing the ImageNet normalization) and returns the bounding box of every 4-connected
 *   component of at least DETECT_MIN_AREA pixels, in image pixels [x0, y0, x1, y1) — the stand-in
 *   for a detector network.
 * - `embed`: per-crop channel means (in 0..1 RGB) over the crop's central region — the stand-in
 *   for a re-identification network; it must match the colour the object was drawn with.
 *
 * Limits: at most DETECT_BOXES_MAX boxes per image (a limit on everything).
 */
import { IMAGENET_MEAN, IMAGENET_STD } from '@gpupool/native';

export const DETECT_MIN_AREA = 24;
export const DETECT_BOXES_MAX = 64;
export const EMBED_DIM = 3;

let halfTable: Float32Array | undefined;

/** float16 bits → float32 value, as a 64 Ki-entry table (the detector reads 1.2 M values a frame). */
function halfToFloat(): Float32Array {
  if (halfTable === undefined) {
    halfTable = new Float32Array(65536);
    const f32 = new Float32Array(1);
    const u32 = new Uint32Array(f32.buffer);
    for (let bits = 0; bits < 65536; bits++) {
      const sign = bits & 0x8000 ? -1 : 1;
      const exponent = (bits >>> 10) & 0x1f;
      const mantissa = bits & 0x3ff;
      if (exponent === 0) f32[0] = sign * mantissa * 2 ** -24;
      else if (exponent === 0x1f)
        u32[0] = mantissa === 0 ? (bits & 0x8000 ? 0xff800000 : 0x7f800000) : 0x7fc00000;
      else f32[0] = sign * (1 + mantissa / 1024) * 2 ** (exponent - 15);
      halfTable[bits] = f32[0] as number;
    }
  }
  return halfTable;
}

/** Normalized value of a pixel whose 0..1 intensity is exactly `level`, per channel. */
function normalizedLevel(level: number, c: number): number {
  return (level - (IMAGENET_MEAN[c] as number)) / (IMAGENET_STD[c] as number);
}

/**
 * Bounding boxes of the bright components of a float16 CHW image (3 × height × width), as a flat
 * array [x0, y0, x1, y1, …] in image pixels (x1, y1 exclusive), ordered by y0 then x0.
 */
export function detect(image: Uint16Array, width: number, height: number): Float32Array {
  const plane = width * height;
  if (image.length < 3 * plane) throw new RangeError(`image must hold 3 × ${height} × ${width} values`);
  const table = halfToFloat();
  const t0 = normalizedLevel(0.5, 0);
  const t1 = normalizedLevel(0.5, 1);
  const t2 = normalizedLevel(0.5, 2);
  const mask = new Uint8Array(plane);
  for (let i = 0; i < plane; i++) {
    if (
      (table[image[i] as number] as number) > t0 ||
      (table[image[plane + i] as number] as number) > t1 ||
      (table[image[2 * plane + i] as number] as number) > t2
    ) {
      mask[i] = 1;
    }
  }
  const boxes: number[][] = [];
  const stack = new Int32Array(plane);
  for (let start = 0; start < plane; start++) {
    if (mask[start] !== 1) continue;
    // Flood fill (iterative, 4-connected); visited pixels become 2.
    let top = 0;
    stack[top++] = start;
    mask[start] = 2;
    let x0 = width;
    let y0 = height;
    let x1 = -1;
    let y1 = -1;
    let area = 0;
    while (top > 0) {
      const p = stack[--top] as number;
      const x = p % width;
      const y = (p - x) / width;
      area++;
      if (x < x0) x0 = x;
      if (x > x1) x1 = x;
      if (y < y0) y0 = y;
      if (y > y1) y1 = y;
      if (x > 0 && mask[p - 1] === 1) {
        mask[p - 1] = 2;
        stack[top++] = p - 1;
      }
      if (x + 1 < width && mask[p + 1] === 1) {
        mask[p + 1] = 2;
        stack[top++] = p + 1;
      }
      if (y > 0 && mask[p - width] === 1) {
        mask[p - width] = 2;
        stack[top++] = p - width;
      }
      if (y + 1 < height && mask[p + width] === 1) {
        mask[p + width] = 2;
        stack[top++] = p + width;
      }
    }
    if (area >= DETECT_MIN_AREA) boxes.push([x0, y0, x1 + 1, y1 + 1]);
    if (boxes.length > DETECT_BOXES_MAX) {
      throw new RangeError(`more than ${DETECT_BOXES_MAX} objects in one image: is the threshold wrong?`);
    }
  }
  boxes.sort((a, b) => (a[1] as number) - (b[1] as number) || (a[0] as number) - (b[0] as number));
  return Float32Array.from(boxes.flat());
}

/**
 * Embeddings of `count` float16 crops (count × 3 × cropHeight × cropWidth): the mean 0..1 RGB of
 * each crop's central half (away from edges, where resampling blends in the background).
 */
export function embed(
  crops: Uint16Array,
  count: number,
  cropWidth: number,
  cropHeight: number,
  out = new Float32Array(count * EMBED_DIM),
): Float32Array {
  const plane = cropWidth * cropHeight;
  if (crops.length < count * 3 * plane)
    throw new RangeError(`crops must hold ${count} × 3 × ${plane} values`);
  const table = halfToFloat();
  const ya = cropHeight >> 2;
  const yb = cropHeight - ya;
  const xa = cropWidth >> 2;
  const xb = cropWidth - xa;
  const samples = (yb - ya) * (xb - xa);
  for (let n = 0; n < count; n++) {
    for (let c = 0; c < 3; c++) {
      const base = (n * 3 + c) * plane;
      let sum = 0;
      for (let y = ya; y < yb; y++) {
        const row = base + y * cropWidth;
        for (let x = xa; x < xb; x++) sum += table[crops[row + x] as number] as number;
      }
      const normalized = sum / samples;
      out[n * EMBED_DIM + c] = normalized * (IMAGENET_STD[c] as number) + (IMAGENET_MEAN[c] as number);
    }
  }
  return out;
}
