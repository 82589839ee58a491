/**
 * Checks one frame's pipeline result against what the camera drew: the same number of objects,
 * each detected box within BOX_TOLERANCE_PX (frame pixels) of the drawn rectangle on every edge,
 * and each embedding within COLOR_TOLERANCE of the drawn colour (0..1 RGB, every channel).
 */
import { FRAME_HEIGHT, FRAME_WIDTH, objectsAt, type SceneObject } from './camera.js';
import { EMBED_DIM } from './detector.js';

/** Resampling 1080p to 640 × 640 moves an edge by at most ~1 input pixel: 3 frame pixels across, 1.7 down. */
export const BOX_TOLERANCE_PX = 6;
export const COLOR_TOLERANCE = 0.04;

export interface FrameResult {
  camera: number;
  frame: number;
  /** Detected boxes [x0, y0, x1, y1, …] in pixels of the `imageSide` × `imageSide` model input. */
  boxes: number[];
  /** EMBED_DIM values per box. */
  embeddings: number[];
  imageSide: number;
}

export interface FrameCheck {
  ok: boolean;
  objects: number;
  /** Why the frame is wrong (empty when ok). */
  problems: string[];
}

/** A detected box in frame pixels. */
export function toFramePixels(box: readonly number[], imageSide: number): [number, number, number, number] {
  const sx = FRAME_WIDTH / imageSide;
  const sy = FRAME_HEIGHT / imageSide;
  return [(box[0] as number) * sx, (box[1] as number) * sy, (box[2] as number) * sx, (box[3] as number) * sy];
}

function overlap(a: readonly number[], o: SceneObject): number {
  const w = Math.min(a[2] as number, o.x1) - Math.max(a[0] as number, o.x0);
  const h = Math.min(a[3] as number, o.y1) - Math.max(a[1] as number, o.y0);
  return w > 0 && h > 0 ? w * h : 0;
}

export function checkFrame(result: FrameResult): FrameCheck {
  const truth = objectsAt(result.camera, result.frame);
  const problems: string[] = [];
  const count = result.boxes.length / 4;
  if (result.embeddings.length !== count * EMBED_DIM) {
    problems.push(`${count} boxes but ${result.embeddings.length / EMBED_DIM} embeddings`);
  }
  if (count !== truth.length) problems.push(`found ${count} objects, drew ${truth.length}`);
  const used = new Set<number>();
  for (const o of truth) {
    let best = -1;
    let bestArea = 0;
    for (let n = 0; n < count; n++) {
      if (used.has(n)) continue;
      const area = overlap(toFramePixels(result.boxes.slice(n * 4, n * 4 + 4), result.imageSide), o);
      if (area > bestArea) {
        bestArea = area;
        best = n;
      }
    }
    const name = `camera ${result.camera} frame ${result.frame} object ${o.id}`;
    if (best < 0) {
      problems.push(`${name}: not detected`);
      continue;
    }
    used.add(best);
    const box = toFramePixels(result.boxes.slice(best * 4, best * 4 + 4), result.imageSide);
    const drawn = [o.x0, o.y0, o.x1, o.y1];
    const worst = Math.max(...box.map((v, k) => Math.abs(v - (drawn[k] as number))));
    if (worst > BOX_TOLERANCE_PX) {
      problems.push(
        `${name}: box [${box.map((v) => v.toFixed(1)).join(', ')}] is ${worst.toFixed(1)} px from drawn [${drawn.join(', ')}]`,
      );
    }
    const e = result.embeddings.slice(best * EMBED_DIM, best * EMBED_DIM + 3);
    const colorMiss = Math.max(...o.color.map((v, c) => Math.abs(v / 255 - (e[c] ?? Number.NaN))));
    if (!(colorMiss <= COLOR_TOLERANCE)) {
      problems.push(
        `${name}: embedding [${e.map((v) => v.toFixed(3)).join(', ')}] is not colour [${o.color.map((v) => (v / 255).toFixed(3)).join(', ')}]`,
      );
    }
  }
  return { ok: problems.length === 0, objects: truth.length, problems };
}
