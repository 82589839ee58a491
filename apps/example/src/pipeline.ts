/**
 * One frame through the pipeline, on whatever thread runs it:
 *   render (host stage buffer, pinned on CUDA) → upload into a pooled uint8 [1080, 1920, 3] block
 *   → preprocess to float16 [1, 3, 640, 640] → detect → crop-resize N boxes to float16
 *   [N, 3, 256, 128] → embed into float32 [N, 3].
 * Every device tensor comes from a `TensorSource` — the pool, or (--no-pool) the device directly —
 * and is released by `using` at the end of its scope, so nothing outlives the frame.
 *
 * Kernels: on HostDevice the CPU reference kernels of @gpupool/native run in place over
 * `device.view(block)`; on CudaDevice the CUDA kernels run on this thread's stream and results
 * come back through pinned buffers.
 */
import {
  type BlockLike,
  bytesOfShape,
  type Device,
  type DType,
  type Pool,
  type StreamHandle,
} from '@gpupool/core';
import {
  allocatePinned,
  CROP_HEIGHT,
  CROP_WIDTH,
  type CudaDevice,
  cropResizeCpu,
  freePinned,
  PREPROCESS_SIZE,
  preprocessFrameCpu,
} from '@gpupool/native';
import { FRAME_BYTES, FRAME_HEIGHT, FRAME_WIDTH, OBJECTS_PER_CAMERA, renderFrame } from './camera.js';
import type { FrameResult } from './check.js';
import { DETECT_BOXES_MAX, detect, EMBED_DIM, embed } from './detector.js';

export const FRAME_SHAPE = [FRAME_HEIGHT, FRAME_WIDTH, 3] as const;
export const INPUT_SHAPE = [1, 3, PREPROCESS_SIZE, PREPROCESS_SIZE] as const;

export interface TensorRequest {
  shape: readonly number[];
  dtype?: DType;
}

/** A device tensor for the length of a scope: an address, a size, and `using` gives it back. */
export type Tensor = BlockLike & Disposable;

/** Where tensors come from: a pool (the point of gpupool) or the device itself (--no-pool). */
export interface TensorSource {
  acquire(request: TensorRequest): Tensor;
}

/** The shapes a frame needs, for `prewarm`: one frame, one input, crops and embeddings for 1..N objects. */
export function prewarmSpecs(): { shape: number[]; dtype: DType; count: number }[] {
  const specs: { shape: number[]; dtype: DType; count: number }[] = [
    { shape: [...FRAME_SHAPE], dtype: 'uint8', count: 1 },
    { shape: [...INPUT_SHAPE], dtype: 'float16', count: 1 },
  ];
  for (let n = 1; n <= OBJECTS_PER_CAMERA; n++) {
    specs.push({ shape: [n, 3, CROP_HEIGHT, CROP_WIDTH], dtype: 'float16', count: 1 });
    specs.push({ shape: [n, EMBED_DIM], dtype: 'float32', count: 1 });
  }
  return specs;
}

/** Tensors from a pool, on one stream (the pool reuses a block on the same stream at once). */
export function poolSource(pool: Pool, stream: StreamHandle = 0): TensorSource {
  const options = { stream };
  return {
    acquire: (request) => pool.acquire({ shape: request.shape, dtype: request.dtype ?? 'float16' }, options),
  };
}

/** Counters of a `directSource`: what --no-pool reports instead of pool statistics. */
export interface DirectCounts {
  allocations: number;
  frees: number;
  liveBlocks: number;
  liveBytes: number;
  peakLiveBytes: number;
  reservedBytes: number;
  peakReservedBytes: number;
}

/**
 * --no-pool: every tensor is its own device segment (cudaMalloc / cudaFree on CUDA).
 * `beforeFree` runs before each free: on CUDA it waits for the stream, as a pipeline without a
 * stream-ordered pool must before handing memory back.
 */
export function directSource(
  device: Device,
  beforeFree?: () => void,
): TensorSource & { counts: DirectCounts } {
  const counts: DirectCounts = {
    allocations: 0,
    frees: 0,
    liveBlocks: 0,
    liveBytes: 0,
    peakLiveBytes: 0,
    reservedBytes: 0,
    peakReservedBytes: 0,
  };
  return {
    counts,
    acquire(request) {
      const bytes = bytesOfShape(request.shape, request.dtype ?? 'float16');
      const segment = device.allocateSegment(bytes);
      counts.allocations++;
      counts.liveBlocks++;
      counts.liveBytes += bytes;
      counts.reservedBytes += segment.bytes;
      counts.peakLiveBytes = Math.max(counts.peakLiveBytes, counts.liveBytes);
      counts.peakReservedBytes = Math.max(counts.peakReservedBytes, counts.reservedBytes);
      let freed = false;
      return {
        ptr: segment.base,
        bytes,
        [Symbol.dispose]() {
          if (freed) return;
          freed = true;
          beforeFree?.();
          device.freeSegment(segment);
          counts.frees++;
          counts.liveBlocks--;
          counts.liveBytes -= bytes;
          counts.reservedBytes -= segment.bytes;
        },
      };
    },
  };
}

/** What a frame needs from the device: upload, the two kernels, read-back. */
export interface Kernels {
  readonly kind: 'js' | 'cuda';
  /** A host buffer of FRAME_BYTES to render into (pinned on CUDA). */
  readonly stage: Uint8Array;
  upload(target: BlockLike, source: Uint8Array): void;
  preprocess(frame: BlockLike, input: BlockLike): void;
  cropResize(input: BlockLike, boxes: Float32Array, crops: BlockLike): void;
  /** The first `count` float16 values of a block, as host-readable bits (a view on HostDevice). */
  readHalf(block: BlockLike, count: number): Uint16Array;
  writeFloat(block: BlockLike, values: Float32Array): void;
  readFloat(block: BlockLike, count: number): Float32Array;
  /**
   * Gives back what the kernels hold on the host (the CUDA kernels' pinned buffers, ~19 MB, freed
   * with freePinned rather than left to the garbage collector). The kernels are unusable after it;
   * a second call does nothing.
   */
  close(): void;
}

interface ViewDevice extends Device {
  view(block: BlockLike, byteOffset?: number, byteLength?: number): Uint8Array;
  readonly memory: SharedArrayBuffer;
}

function isViewDevice(device: Device): device is ViewDevice {
  return typeof (device as Partial<ViewDevice>).view === 'function';
}

/** The CPU reference kernels of @gpupool/native, working in place in HostDevice memory. */
export function hostKernels(device: Device): Kernels {
  if (!isViewDevice(device)) {
    throw new TypeError(
      `device must be a HostDevice (one with view()) for the JS kernels; got ${device.kind}`,
    );
  }
  const u16 = (block: BlockLike, count: number) => {
    const bytes = device.view(block, 0, count * 2);
    return new Uint16Array(bytes.buffer, bytes.byteOffset, count);
  };
  const f32 = (block: BlockLike, count: number) => {
    const bytes = device.view(block, 0, count * 4);
    return new Float32Array(bytes.buffer, bytes.byteOffset, count);
  };
  const inputCount = 3 * PREPROCESS_SIZE * PREPROCESS_SIZE;
  return {
    kind: 'js',
    stage: new Uint8Array(FRAME_BYTES),
    upload: (target, source) => device.data!.copyIn(target, source),
    preprocess: (frame, input) => {
      preprocessFrameCpu(device.view(frame, 0, FRAME_BYTES), FRAME_WIDTH, FRAME_HEIGHT, {
        out: u16(input, inputCount),
      });
    },
    cropResize: (input, boxes, crops) => {
      const count = boxes.length / 4;
      cropResizeCpu(u16(input, inputCount), PREPROCESS_SIZE, PREPROCESS_SIZE, boxes, {
        out: u16(crops, count * 3 * CROP_HEIGHT * CROP_WIDTH),
      });
    },
    readHalf: u16,
    writeFloat: (block, values) => device.data!.copyIn(block, values),
    readFloat: (block, count) => f32(block, count).slice(),
    close: () => {},
  };
}

/** The CUDA kernels of @gpupool/native on `stream`; staging and read-back through pinned buffers. */
export function cudaKernels(device: CudaDevice, stream: StreamHandle): Kernels {
  const pinned: ArrayBuffer[] = [];
  const freeAll = () => {
    // Each buffer is taken off the list before it is freed: a throw leaves no buffer freed twice.
    for (let buffer = pinned.pop(); buffer !== undefined; buffer = pinned.pop()) freePinned(buffer);
  };
  const pinnedBytes = (bytes: number) => {
    const buffer = allocatePinned(bytes);
    pinned.push(buffer);
    return buffer;
  };
  let stage: Uint8Array;
  let halfBack: Uint16Array;
  let floatBack: Float32Array;
  try {
    stage = new Uint8Array(pinnedBytes(FRAME_BYTES));
    halfBack = new Uint16Array(
      pinnedBytes(Math.max(3 * PREPROCESS_SIZE ** 2, DETECT_BOXES_MAX * 3 * CROP_HEIGHT * CROP_WIDTH) * 2),
    );
    floatBack = new Float32Array(pinnedBytes(DETECT_BOXES_MAX * EMBED_DIM * 4));
  } catch (error) {
    // One allocation was refused: give back those already made (the caller gets no kernels to close).
    try {
      freeAll();
    } catch {
      // The refusal is the error to report; a buffer not freed here goes with the garbage collector.
    }
    throw error;
  }
  return {
    close: freeAll,
    kind: 'cuda',
    stage,
    upload: (target, source) => device.data.copyInAsync(target, source, stream),
    preprocess: (frame, input) =>
      device.kernels.preprocessFrame({
        source: frame,
        width: FRAME_WIDTH,
        height: FRAME_HEIGHT,
        target: input,
        stream,
      }),
    cropResize: (input, boxes, crops) =>
      device.kernels.cropResize({
        image: input,
        width: PREPROCESS_SIZE,
        height: PREPROCESS_SIZE,
        boxes,
        target: crops,
        stream,
      }),
    readHalf: (block, count) => {
      const out = halfBack.subarray(0, count);
      device.data.copyOutAsync(block, out, stream);
      device.streams.synchronizeStream(stream);
      return out;
    },
    writeFloat: (block, values) => device.data.copyInAsync(block, values, stream),
    readFloat: (block, count) => {
      const out = floatBack.subarray(0, count);
      device.data.copyOutAsync(block, out, stream);
      device.streams.synchronizeStream(stream);
      return out.slice();
    },
  };
}

/** Runs frame `frame` of camera `camera` through the pipeline. Every tensor is released on return. */
export function processFrame(
  source: TensorSource,
  kernels: Kernels,
  camera: number,
  frame: number,
  onBusiest?: (objects: number) => void,
): FrameResult {
  renderFrame(camera, frame, kernels.stage);
  using input = source.acquire({ shape: INPUT_SHAPE, dtype: 'float16' });
  {
    using frameTensor = source.acquire({ shape: FRAME_SHAPE, dtype: 'uint8' });
    kernels.upload(frameTensor, kernels.stage);
    kernels.preprocess(frameTensor, input);
    // On CUDA the frame block is reused only after this stream's work: the pool orders that.
  }
  const image = kernels.readHalf(input, 3 * PREPROCESS_SIZE * PREPROCESS_SIZE);
  const boxes = detect(image, PREPROCESS_SIZE, PREPROCESS_SIZE);
  const count = boxes.length / 4;
  const result: FrameResult = {
    camera,
    frame,
    boxes: Array.from(boxes),
    embeddings: [],
    imageSide: PREPROCESS_SIZE,
  };
  if (count === 0) {
    onBusiest?.(0);
    return result;
  }
  using crops = source.acquire({ shape: [count, 3, CROP_HEIGHT, CROP_WIDTH], dtype: 'float16' });
  kernels.cropResize(input, boxes, crops);
  const cropBits = kernels.readHalf(crops, count * 3 * CROP_HEIGHT * CROP_WIDTH);
  using embeddings = source.acquire({ shape: [count, EMBED_DIM], dtype: 'float32' });
  kernels.writeFloat(embeddings, embed(cropBits, count, CROP_WIDTH, CROP_HEIGHT));
  result.embeddings = Array.from(kernels.readFloat(embeddings, count * EMBED_DIM));
  onBusiest?.(count);
  return result;
}
