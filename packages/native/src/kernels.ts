/**
 * The pipeline kernels on a CudaDevice (`device.kernels`). Arguments are validated here, block
 * sizes are checked against the shapes, and every block must lie in memory the device backs.
 * Results match preprocessFrameCpu / cropResizeCpu bit for bit (see cpu-kernels.ts).
 * Kernels are stream-ordered: synchronize the stream (or copy out on it) before reading results.
 */
import {
  ArgumentRangeError,
  type BlockLike,
  type DType,
  InvalidArgumentError,
  type StreamHandle,
} from '@gpupool/core';
import {
  type CropResizeOptions,
  checkBoxes,
  IMAGE_SIDE_MAX,
  type PreprocessOptions,
  resolveCrop,
  resolvePreprocess,
} from './cpu-kernels.js';
import type { NativeContext } from './native-api.js';
import { checkSafeInteger } from './validate.js';

/** What the kernels need from their device; supplied by CudaDevice. */
export interface KernelHost {
  locate(argument: string, block: unknown, length: number): bigint;
  stream(stream: unknown, call: string): number;
  invoke<T>(call: string, fn: () => T): T;
}

export interface PreprocessFrameArgs extends PreprocessOptions {
  /** uint8 HWC RGB, at least width × height × 3 bytes. */
  source: BlockLike;
  width: number;
  height: number;
  /** float16 CHW, at least 3 × targetHeight × targetWidth × 2 bytes. */
  target: BlockLike;
  stream?: StreamHandle;
}

export interface CropResizeArgs extends CropResizeOptions {
  /** float16 CHW 3 × height × width. */
  image: BlockLike;
  width: number;
  height: number;
  /** x0, y0, x1, y1 per box, in pixels. */
  boxes: Float32Array | readonly number[];
  /** float16, at least boxes × 3 × outHeight × outWidth × 2 bytes. */
  target: BlockLike;
  stream?: StreamHandle;
}

/**
 * A block that says what it holds (a pool block acquired with a dtype) must hold what the kernel
 * reads or writes; one that does not say (acquire(bytes), a plain { ptr, bytes }) is taken as is.
 */
function checkDtype(argument: string, block: unknown, dtype: DType): void {
  const actual = (block as { dtype?: unknown }).dtype;
  if (actual !== undefined && actual !== null && actual !== dtype) {
    throw new InvalidArgumentError(argument, `must hold ${dtype}; this block holds ${String(actual)}`);
  }
}

/**
 * The kernels read one block while writing the other through __restrict__ pointers: an overlap is
 * undefined behaviour on the GPU (and would not match the CPU reference), so it is refused.
 */
function checkDisjoint(
  readArgument: string,
  read: bigint,
  readBytes: number,
  writeArgument: string,
  write: bigint,
  writeBytes: number,
): void {
  if (read < write + BigInt(writeBytes) && write < read + BigInt(readBytes)) {
    throw new ArgumentRangeError(
      writeArgument,
      `must not overlap ${readArgument} (the bytes the kernel reads)`,
      `[0x${write.toString(16)}, +${writeBytes}) against [0x${read.toString(16)}, +${readBytes})`,
    );
  }
}

export class CudaKernels {
  readonly #host: KernelHost;
  readonly #native: NativeContext;

  constructor(host: KernelHost, native: NativeContext) {
    this.#host = host;
    this.#native = native;
  }

  preprocessFrame(args: PreprocessFrameArgs): void {
    if (typeof args !== 'object' || args === null)
      throw new InvalidArgumentError('args', 'must be an object', args);
    const stream = this.#host.stream(args.stream ?? 0, 'preprocessFrame');
    const width = checkSafeInteger('width', args.width, 1, IMAGE_SIDE_MAX);
    const height = checkSafeInteger('height', args.height, 1, IMAGE_SIDE_MAX);
    const { targetWidth, targetHeight, mean, std } = resolvePreprocess(args);
    const sourceBytes = width * height * 3;
    const targetBytes = 3 * targetWidth * targetHeight * 2;
    const source = this.#host.locate('source', args.source, sourceBytes);
    const target = this.#host.locate('target', args.target, targetBytes);
    checkDtype('source', args.source, 'uint8');
    checkDtype('target', args.target, 'float16');
    checkDisjoint('source', source, sourceBytes, 'target', target, targetBytes);
    this.#host.invoke('preprocessFrame', () =>
      this.#native.preprocessFrame(
        source,
        width,
        height,
        target,
        targetWidth,
        targetHeight,
        mean,
        std,
        stream,
      ),
    );
  }

  cropResize(args: CropResizeArgs): void {
    if (typeof args !== 'object' || args === null)
      throw new InvalidArgumentError('args', 'must be an object', args);
    const stream = this.#host.stream(args.stream ?? 0, 'cropResize');
    const width = checkSafeInteger('width', args.width, 1, IMAGE_SIDE_MAX);
    const height = checkSafeInteger('height', args.height, 1, IMAGE_SIDE_MAX);
    const boxes = checkBoxes(args.boxes);
    const { outWidth, outHeight } = resolveCrop(args);
    const imageBytes = 3 * width * height * 2;
    const targetBytes = (boxes.length / 4) * 3 * outWidth * outHeight * 2;
    const image = this.#host.locate('image', args.image, imageBytes);
    const target = this.#host.locate('target', args.target, targetBytes);
    checkDtype('image', args.image, 'float16');
    checkDtype('target', args.target, 'float16');
    if (boxes.length === 0) return;
    checkDisjoint('image', image, imageBytes, 'target', target, targetBytes);
    this.#host.invoke('cropResize', () =>
      this.#native.cropResize(image, height, width, boxes, target, outHeight, outWidth, stream),
    );
  }
}
