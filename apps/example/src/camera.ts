/**
 * Synthetic cameras: 1080p uint8 HWC RGB frames of bright, flat-coloured rectangles moving over a
 * dark, slightly textured background. Everything is a pure function of (camera, frame), so the
 * checker can recompute exactly what was drawn and compare the pipeline's results against it.
 *
 * Invariants: objects of one camera live in disjoint horizontal lanes (they never touch, so the
 * detector sees one component per object); every object lies fully inside the frame; background
 * bytes stay ≤ BACKGROUND_MAX and every object colour has one channel ≥ 200, so a 0.5 threshold
 * separates them with a wide margin.
 */

export const FRAME_WIDTH = 1920;
export const FRAME_HEIGHT = 1080;
export const FRAME_BYTES = FRAME_WIDTH * FRAME_HEIGHT * 3;
/** Objects per camera (one per lane). Each is visible for part of a cycle, so frames hold 0..N objects. */
export const OBJECTS_PER_CAMERA = 4;
export const BACKGROUND_MAX = 40;

const LANE_HEIGHT = Math.floor(FRAME_HEIGHT / OBJECTS_PER_CAMERA);
const LANE_MARGIN = 16;

/** Saturated colours, far apart from each other (so the embedding tells them apart). */
export const PALETTE: readonly (readonly [number, number, number])[] = [
  [230, 40, 40],
  [40, 220, 60],
  [50, 80, 235],
  [235, 220, 40],
  [40, 215, 220],
  [220, 50, 220],
  [240, 140, 30],
  [140, 90, 240],
];

/** One object as drawn: [x0, x1) × [y0, y1) in frame pixels, and its RGB colour. */
export interface SceneObject {
  id: number;
  x0: number;
  y0: number;
  x1: number;
  y1: number;
  color: readonly [number, number, number];
}

/** A small deterministic hash (integers in, uint32 out): the generator's only randomness. */
function hash(a: number, b: number, c: number): number {
  let h =
    (Math.imul(a, 0x9e3779b1) ^ Math.imul(b + 0x7f4a7c15, 0x85ebca6b) ^ Math.imul(c + 1, 0xc2b2ae35)) >>> 0;
  h ^= h >>> 16;
  h = Math.imul(h, 0x7feb352d) >>> 0;
  h ^= h >>> 15;
  h = Math.imul(h, 0x846ca68b) >>> 0;
  h ^= h >>> 16;
  return h >>> 0;
}

/** Position on a bouncing path: 0..span and back, `speed` pixels per frame. */
function bounce(start: number, speed: number, frame: number, span: number): number {
  if (span <= 0) return 0;
  const period = 2 * span;
  const p = (((start + speed * frame) % period) + period) % period;
  return p <= span ? p : period - p;
}

function checkIndex(name: string, value: number): void {
  if (!Number.isSafeInteger(value) || value < 0) {
    throw new RangeError(`${name} must be a non-negative safe integer (got ${String(value)})`);
  }
}

/** The objects visible in frame `frame` of camera `camera`, in lane order. */
export function objectsAt(camera: number, frame: number): SceneObject[] {
  checkIndex('camera', camera);
  checkIndex('frame', frame);
  const objects: SceneObject[] = [];
  for (let i = 0; i < OBJECTS_PER_CAMERA; i++) {
    const h = (k: number) => hash(camera, i, k);
    // Visible for `on` frames out of every `period`, with a per-object phase.
    const period = 24 + (h(1) % 25);
    const on = Math.floor(period * (0.55 + (h(2) % 30) / 100));
    if ((frame + (h(3) % period)) % period >= on) continue;
    const width = 96 + (h(4) % 161); // 96..256
    const height = 64 + (h(5) % (LANE_HEIGHT - 2 * LANE_MARGIN - 64 + 1)); // 64..lane
    const speedX = (4 + (h(6) % 13)) * (h(7) & 1 ? 1 : -1);
    const speedY = 1 + (h(8) % 3);
    const x0 = Math.round(bounce(h(9) % FRAME_WIDTH, speedX, frame, FRAME_WIDTH - width));
    const laneTop = i * LANE_HEIGHT + LANE_MARGIN;
    const ySpan = LANE_HEIGHT - 2 * LANE_MARGIN - height;
    const y0 = laneTop + Math.round(bounce(h(10) % (ySpan + 1), speedY, frame, ySpan));
    const color = PALETTE[(camera * 3 + i) % PALETTE.length] as readonly [number, number, number];
    objects.push({ id: i, x0, y0, x1: x0 + width, y1: y0 + height, color });
  }
  return objects;
}

let background: Uint8Array | undefined;

/** The shared background: dark, with a fixed low-amplitude texture (so it is not trivially flat). */
function backgroundBytes(): Uint8Array {
  if (background === undefined) {
    background = new Uint8Array(FRAME_BYTES);
    for (let y = 0; y < FRAME_HEIGHT; y++) {
      for (let x = 0; x < FRAME_WIDTH; x++) {
        const at = (y * FRAME_WIDTH + x) * 3;
        const n = hash(x, y, 7) & 0x0f;
        background[at] = 8 + n + ((x >> 6) & 7);
        background[at + 1] = 10 + n + ((y >> 6) & 7);
        background[at + 2] = 14 + n;
      }
    }
  }
  return background;
}

/** Draws frame `frame` of camera `camera` into `out` (HWC RGB, FRAME_BYTES bytes). Returns its objects. */
export function renderFrame(camera: number, frame: number, out: Uint8Array): SceneObject[] {
  if (!(out instanceof Uint8Array) || out.length < FRAME_BYTES) {
    throw new RangeError(`out must be a Uint8Array of at least ${FRAME_BYTES} bytes`);
  }
  const objects = objectsAt(camera, frame);
  out.set(backgroundBytes());
  for (const o of objects) {
    const [r, g, b] = o.color;
    // Draw one row, then copy it down: rows of a flat rectangle are identical.
    const rowStart = (o.y0 * FRAME_WIDTH + o.x0) * 3;
    const rowBytes = (o.x1 - o.x0) * 3;
    for (let k = 0; k < rowBytes; k += 3) {
      out[rowStart + k] = r;
      out[rowStart + k + 1] = g;
      out[rowStart + k + 2] = b;
    }
    const row = out.subarray(rowStart, rowStart + rowBytes);
    for (let y = o.y0 + 1; y < o.y1; y++) out.set(row, (y * FRAME_WIDTH + o.x0) * 3);
  }
  return objects;
}
