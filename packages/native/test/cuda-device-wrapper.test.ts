/**
 * CudaDevice's TypeScript side, against the fake addon (no GPU): validation of every entry point
 * happens before the addon is called; bookkeeping of ranges, pages, segments, streams and events;
 * CUDA errors become typed errors; data and kernels reach the right memory.
 */
import {
  ArgumentRangeError,
  DeviceDestroyedError,
  DeviceError,
  DeviceOutOfMemoryError,
  InvalidArgumentError,
} from '@gpupool/core';
import { describe, expect, it } from 'vitest';
import { benchAllocation } from '../src/bench.js';
import { cropResizeCpu, preprocessFrameCpu } from '../src/cpu-kernels.js';
import {
  CudaDevice,
  cudaDeviceProperties,
  cudaRangeRegistryLive,
  DEFAULT_ALLOCATION_BYTES,
  DEFAULT_PAGE_GRANULES,
} from '../src/cuda-device.js';
import { CudaError, CudaOutOfMemoryError } from '../src/errors.js';
import { toFloat16Bits } from '../src/float16.js';
import { allocatePinned, freePinned, isPinned } from '../src/pinned.js';
import { FakeAddon, FAKE_PAGE_BYTES as PAGE } from './fake-addon.js';

const blockOf = (segment: { base: bigint; bytes: number }) => ({ ptr: segment.base, bytes: segment.bytes });

function setup(mode: 'vmm' | 'malloc' | 'mallocAsync' = 'vmm', capacityPages = 64) {
  const addon = new FakeAddon({ capacityBytes: capacityPages * PAGE });
  const device = new CudaDevice({ mode, pageBytes: PAGE }, addon);
  return { addon, device };
}

/** Runs `fn`, expects it to throw `type`, and checks the addon saw no new call. */
function rejectsBeforeNative(
  addon: FakeAddon,
  fn: () => unknown,
  type: abstract new (...args: never[]) => Error,
  argument?: string,
) {
  const before = addon.calls.length;
  let thrown: unknown;
  try {
    fn();
  } catch (error) {
    thrown = error;
  }
  expect(thrown).toBeInstanceOf(type);
  if (argument !== undefined) expect((thrown as { argument?: string }).argument).toBe(argument);
  expect(addon.calls.slice(before)).toEqual([]);
}

describe('CudaDevice construction', () => {
  it('describes the device', () => {
    const { device } = setup();
    expect(device).toMatchObject({
      kind: 'cuda',
      name: 'Fake GPU',
      pageBytes: PAGE,
      vmm: true,
      mode: 'vmm',
      deviceIndex: 0,
    });
    expect(device.totalBytes).toBe(64 * PAGE);
    expect(device.properties).toMatchObject({ computeCapability: '9.0', multiprocessors: 132 });
    expect(setup('malloc').device.vmm).toBe(false);
  });

  it('validates options', () => {
    const addon = new FakeAddon();
    expect(() => new CudaDevice(null as never, addon)).toThrow(InvalidArgumentError);
    expect(() => new CudaDevice({ mode: 'cuMalloc' as 'vmm' }, addon)).toThrow(InvalidArgumentError);
    expect(() => new CudaDevice({ deviceIndex: 1.5 }, addon)).toThrow(ArgumentRangeError);
    expect(() => new CudaDevice({ deviceIndex: 1 }, addon)).toThrow(/device count/);
    expect(() => new CudaDevice({ deviceIndex: '0' as unknown as number }, addon)).toThrow(
      InvalidArgumentError,
    );
  });

  it('validates pageBytes and allocationBytes in every mode, before any native context exists', () => {
    for (const mode of ['vmm', 'malloc', 'mallocAsync'] as const) {
      const addon = new FakeAddon();
      const expectRefused = (
        options: object,
        type: typeof ArgumentRangeError | typeof InvalidArgumentError,
        argument: string,
      ) => {
        let thrown: unknown;
        try {
          new CudaDevice({ mode, ...options }, addon);
        } catch (error) {
          thrown = error;
        }
        expect(thrown, `${mode} ${JSON.stringify(options)}`).toBeInstanceOf(type);
        expect((thrown as { argument?: string }).argument).toBe(argument);
      };
      expectRefused({ pageBytes: '2097152' }, InvalidArgumentError, 'pageBytes');
      expectRefused({ pageBytes: PAGE + 1 }, ArgumentRangeError, 'pageBytes');
      expectRefused({ pageBytes: -PAGE }, ArgumentRangeError, 'pageBytes');
      expectRefused({ allocationBytes: 3 }, ArgumentRangeError, 'allocationBytes');
      expectRefused({ allocationBytes: Number.NaN }, ArgumentRangeError, 'allocationBytes');
      expectRefused(
        { pageBytes: 2 * PAGE, allocationBytes: 3 * PAGE },
        ArgumentRangeError,
        'allocationBytes',
      );
      // Every refusal gave back the context it may have opened.
      expect(addon.contexts.every((c) => c.destroyed)).toBe(true);
      // Valid values are accepted (segment modes do not use them).
      new CudaDevice({ mode, pageBytes: PAGE, allocationBytes: 4 * PAGE }, addon).destroy();
    }
  });

  it('refuses vmm mode on a GPU without VMM, and allows malloc there', () => {
    const addon = new FakeAddon({ vmm: false });
    expect(() => new CudaDevice({ mode: 'vmm', pageBytes: PAGE }, addon)).toThrow(
      /virtual memory management/,
    );
    expect(new CudaDevice({ mode: 'malloc', pageBytes: PAGE }, addon).vmm).toBe(false);
  });

  it('reads properties by index', () => {
    const addon = new FakeAddon();
    expect(cudaDeviceProperties(0, addon).name).toBe('Fake GPU');
    expect(() => cudaDeviceProperties(-1, addon)).toThrow(ArgumentRangeError);
    expect(() => cudaDeviceProperties(3, addon)).toThrow(CudaError);
  });
});

describe('CudaDevice VMM bookkeeping', () => {
  it('with one allocation per page, maps and unmaps any page-aligned run, however it was mapped', () => {
    const addon = new FakeAddon({ capacityBytes: 64 * PAGE });
    const device = new CudaDevice({ pageBytes: PAGE, allocationBytes: PAGE }, addon);
    const range = device.reserve(8 * PAGE);
    device.map(range, 0, 4 * PAGE);
    device.map(range, 4 * PAGE, 2 * PAGE);
    device.unmap(range, 3 * PAGE, 2 * PAGE); // spans both maps
    expect(device.live().mappedPages).toBe(4);
    device.unmap(range, 0, 3 * PAGE);
    device.unmap(range, 5 * PAGE, PAGE);
    device.releaseRange(range);
    expect(device.live()).toMatchObject({ ranges: 0, mappedPages: 0 });
    expect(device.calls).toMatchObject({ reserve: 1, map: 2, unmap: 3, releaseRange: 1 });
    expect(addon.usedBytes).toBe(0);
  });

  it('with allocationBytes, makes one allocation per window a map touches and unmaps whole ones only', () => {
    const addon = new FakeAddon({ capacityBytes: 64 * PAGE });
    const device = new CudaDevice({ pageBytes: PAGE, allocationBytes: 2 * PAGE }, addon);
    expect(device.allocationBytes).toBe(2 * PAGE);
    const range = device.reserve(8 * PAGE);
    device.map(range, PAGE, 4 * PAGE); // allocations [1], [2, 3], [4]
    expect(() => device.unmap(range, 2 * PAGE, PAGE)).toThrow(DeviceError); // half of [2, 3]
    expect(() => device.unmap(range, PAGE, 2 * PAGE)).toThrow(/whole allocations/);
    expect(device.live().mappedPages).toBe(4); // the refusals changed nothing
    device.unmap(range, 2 * PAGE, 3 * PAGE); // [2, 3] and [4] together
    device.unmap(range, PAGE, PAGE);
    device.releaseRange(range);
    expect(addon.usedBytes).toBe(0);
    device.destroy();
  });

  it('rejects bad reserve/map/unmap arguments before the addon', () => {
    const { device, addon } = setup();
    const range = device.reserve(4 * PAGE);
    rejectsBeforeNative(addon, () => device.reserve(0), ArgumentRangeError, 'bytes');
    rejectsBeforeNative(addon, () => device.reserve(-PAGE), ArgumentRangeError, 'bytes');
    rejectsBeforeNative(addon, () => device.reserve(PAGE + 1), ArgumentRangeError, 'bytes');
    rejectsBeforeNative(addon, () => device.reserve(2 ** 60), ArgumentRangeError, 'bytes');
    rejectsBeforeNative(addon, () => device.reserve('1' as unknown as number), InvalidArgumentError, 'bytes');
    rejectsBeforeNative(addon, () => device.map(range, -PAGE, PAGE), ArgumentRangeError, 'offsetBytes');
    rejectsBeforeNative(addon, () => device.map(range, 1, PAGE), ArgumentRangeError, 'offsetBytes');
    rejectsBeforeNative(addon, () => device.map(range, 0, PAGE / 2), ArgumentRangeError, 'bytes');
    rejectsBeforeNative(addon, () => device.map(range, 2 * PAGE, 3 * PAGE), ArgumentRangeError, 'bytes');
    rejectsBeforeNative(
      addon,
      () => device.map(range, Number.NaN, PAGE),
      InvalidArgumentError,
      'offsetBytes',
    );
    rejectsBeforeNative(addon, () => device.map({} as never, 0, PAGE), InvalidArgumentError, 'range');
    rejectsBeforeNative(addon, () => device.map({ id: 99, base: 1n, bytes: PAGE }, 0, PAGE), DeviceError);
    rejectsBeforeNative(addon, () => device.unmap(range, 0, PAGE), DeviceError); // not mapped
    device.map(range, 0, 2 * PAGE);
    rejectsBeforeNative(addon, () => device.map(range, PAGE, 2 * PAGE), DeviceError); // overlaps a mapped page
    device.unmap(range, 0, 2 * PAGE);
    rejectsBeforeNative(addon, () => device.unmap(range, 0, PAGE), DeviceError); // double unmap
  });

  it('refuses to release a range with mapped pages, and released or forged ranges', () => {
    const { device, addon } = setup();
    const range = device.reserve(2 * PAGE);
    device.map(range, PAGE, PAGE);
    rejectsBeforeNative(addon, () => device.releaseRange(range), DeviceError);
    device.unmap(range, PAGE, PAGE);
    device.releaseRange(range);
    rejectsBeforeNative(addon, () => device.releaseRange(range), DeviceError);
    rejectsBeforeNative(addon, () => device.map(range, 0, PAGE), DeviceError);
    const other = device.reserve(2 * PAGE);
    rejectsBeforeNative(addon, () => device.releaseRange({ ...other, base: other.base + 1n }), DeviceError);
  });

  it('has no reserve/map/unmap in segment modes', () => {
    for (const mode of ['malloc', 'mallocAsync'] as const) {
      const { device, addon } = setup(mode);
      rejectsBeforeNative(addon, () => device.reserve(PAGE), DeviceError);
    }
  });

  it('turns CUDA out-of-memory into CudaOutOfMemoryError (a DeviceOutOfMemoryError) and changes nothing', () => {
    const { device } = setup('vmm', 4);
    const range = device.reserve(8 * PAGE);
    device.map(range, 0, 3 * PAGE);
    let thrown: unknown;
    try {
      device.map(range, 3 * PAGE, 2 * PAGE);
    } catch (error) {
      thrown = error;
    }
    expect(thrown).toBeInstanceOf(CudaOutOfMemoryError);
    expect(thrown).toBeInstanceOf(DeviceOutOfMemoryError);
    expect(thrown).toMatchObject({
      code: 'ERR_GPUPOOL_DEVICE_OUT_OF_MEMORY',
      requestedBytes: 2 * PAGE,
      cudaCode: 2,
      call: 'map',
    });
    expect(device.calls.map).toBe(1);
    device.map(range, 3 * PAGE, PAGE); // the failed pages are still unmapped
  });

  it('turns other CUDA errors into CudaError with name, number and call', () => {
    const { device, addon } = setup();
    addon.failNext = { call: 'reserve', cudaCode: 1, cudaName: 'cudaErrorInvalidValue' };
    let thrown: unknown;
    try {
      device.reserve(PAGE);
    } catch (error) {
      thrown = error;
    }
    expect(thrown).toBeInstanceOf(CudaError);
    expect(thrown).toMatchObject({
      code: 'ERR_GPUPOOL_DEVICE',
      cudaCode: 1,
      cudaName: 'cudaErrorInvalidValue',
      cudaCall: 'reserve',
      call: 'reserve',
    });
    expect(device.calls.reserve).toBe(0);
  });
});

describe('CudaDevice segments', () => {
  it('allocates and frees in both segment modes', () => {
    for (const mode of ['malloc', 'mallocAsync'] as const) {
      const { device, addon } = setup(mode);
      const a = device.allocateSegment(1000);
      const b = device.allocateSegment(3 * PAGE);
      expect(a.bytes).toBe(1000);
      device.freeSegment(a);
      rejectsBeforeNative(addon, () => device.freeSegment(a), DeviceError);
      rejectsBeforeNative(addon, () => device.freeSegment({ ...b, base: 5n }), DeviceError);
      rejectsBeforeNative(addon, () => device.freeSegment(null as never), DeviceError);
      device.freeSegment(b);
      expect(device.calls).toMatchObject({ allocateSegment: 2, freeSegment: 2 });
    }
  });

  it('validates sizes and reports OOM as DeviceOutOfMemoryError', () => {
    const { device, addon } = setup('malloc', 2);
    rejectsBeforeNative(addon, () => device.allocateSegment(0), ArgumentRangeError, 'bytes');
    rejectsBeforeNative(addon, () => device.allocateSegment(-5), ArgumentRangeError, 'bytes');
    rejectsBeforeNative(addon, () => device.allocateSegment(2 ** 53), ArgumentRangeError, 'bytes');
    rejectsBeforeNative(
      addon,
      () => device.allocateSegment(10n as unknown as number),
      InvalidArgumentError,
      'bytes',
    );
    expect(() => device.allocateSegment(3 * PAGE)).toThrow(DeviceOutOfMemoryError);
    expect(device.memInfo()).toEqual({ freeBytes: 2 * PAGE, totalBytes: 2 * PAGE });
  });
});

describe('CudaDevice data', () => {
  it('copies in and out at offsets, across pages mapped separately', () => {
    const { device } = setup();
    const range = device.reserve(4 * PAGE);
    device.map(range, 0, PAGE);
    device.map(range, PAGE, PAGE);
    const block = { ptr: range.base + BigInt(PAGE - 8), bytes: 32 };
    const source = Uint32Array.from([1, 2, 3, 4]);
    device.data.copyIn(block, source, 4);
    const back = new Uint32Array(4);
    device.data.copyOut(block, back, 4);
    expect([...back]).toEqual([1, 2, 3, 4]);
    device.data.fill(block, 0xab);
    const bytes = new Uint8Array(32);
    device.data.copyOut(block, bytes);
    expect(bytes.every((b) => b === 0xab)).toBe(true);
  });

  it('bounds-checks every copy against the block before the addon', () => {
    const { device, addon } = setup('malloc');
    const segment = device.allocateSegment(64);
    const block = { ptr: segment.base, bytes: 64 };
    rejectsBeforeNative(
      addon,
      () => device.data.copyIn(block, new Uint8Array(65)),
      ArgumentRangeError,
      'byteOffset',
    );
    rejectsBeforeNative(
      addon,
      () => device.data.copyIn(block, new Uint8Array(8), 57),
      ArgumentRangeError,
      'byteOffset',
    );
    rejectsBeforeNative(
      addon,
      () => device.data.copyOut(block, new Uint8Array(8), -1),
      ArgumentRangeError,
      'byteOffset',
    );
    rejectsBeforeNative(
      addon,
      () => device.data.copyOut(block, new Uint8Array(8), 0.5),
      ArgumentRangeError,
      'byteOffset',
    );
    rejectsBeforeNative(
      addon,
      () => device.data.copyIn(block, [1, 2] as never),
      InvalidArgumentError,
      'source',
    );
    rejectsBeforeNative(
      addon,
      () => device.data.copyOut(block, 'x' as never),
      InvalidArgumentError,
      'target',
    );
    rejectsBeforeNative(
      addon,
      () => device.data.copyIn({ ptr: 5, bytes: 1 } as never, new Uint8Array(1)),
      InvalidArgumentError,
      'block.ptr',
    );
    rejectsBeforeNative(
      addon,
      () => device.data.copyIn({ ptr: 5n, bytes: -1 }, new Uint8Array(1)),
      ArgumentRangeError,
      'block.bytes',
    );
    rejectsBeforeNative(
      addon,
      () => device.data.copyIn(null as never, new Uint8Array(1)),
      InvalidArgumentError,
      'block',
    );
    rejectsBeforeNative(addon, () => device.data.fill(block, 256), ArgumentRangeError, 'byteValue');
    rejectsBeforeNative(addon, () => device.data.fill(block, -1), ArgumentRangeError, 'byteValue');
    // A block that claims more than its segment, or lies elsewhere.
    rejectsBeforeNative(
      addon,
      () => device.data.fill({ ptr: segment.base, bytes: 65 }, 0),
      ArgumentRangeError,
      'block',
    );
    rejectsBeforeNative(
      addon,
      () => device.data.fill({ ptr: 0x1000n, bytes: 1 }, 0),
      ArgumentRangeError,
      'block',
    );
    device.freeSegment(segment);
    rejectsBeforeNative(addon, () => device.data.fill(block, 0), ArgumentRangeError, 'block'); // freed
  });

  it('refuses detached sources and targets with a typed error before the addon', () => {
    const { device, addon } = setup('malloc');
    const block = blockOf(device.allocateSegment(64));
    const detach = (view: Uint8Array) => {
      structuredClone(view.buffer, { transfer: [view.buffer as ArrayBuffer] });
      return view;
    };
    rejectsBeforeNative(
      addon,
      () => device.data.copyIn(block, detach(new Uint8Array(8))),
      InvalidArgumentError,
      'source',
    );
    rejectsBeforeNative(
      addon,
      () => device.data.copyOut(block, detach(new Uint8Array(8))),
      InvalidArgumentError,
      'target',
    );
    const stream = device.streams.createStream();
    const view = new DataView(new ArrayBuffer(8));
    structuredClone(view.buffer, { transfer: [view.buffer] });
    rejectsBeforeNative(
      addon,
      () => device.data.copyOutAsync(block, view, stream),
      InvalidArgumentError,
      'target',
    );
    // A zero-length view of a live buffer is fine (nothing moves).
    device.data.copyIn(block, new Uint8Array(0));
    device.data.copyOut(block, new Uint8Array(new ArrayBuffer(4), 4, 0), 64);
  });

  it('copies from and into SharedArrayBuffer views and views with a byteOffset', () => {
    const { device } = setup('malloc');
    const block = blockOf(device.allocateSegment(64));
    const shared = new Uint8Array(new SharedArrayBuffer(48), 16, 32).map((_, i) => i + 1);
    device.data.copyIn(block, shared, 8);
    const back = new Uint16Array(new SharedArrayBuffer(64), 8, 16);
    device.data.copyOut(block, back, 8);
    expect(new Uint8Array(back.buffer, back.byteOffset, back.byteLength)).toEqual(shared.slice());
  });

  it('refuses copies into unmapped pages of a range', () => {
    const { device, addon } = setup();
    const range = device.reserve(2 * PAGE);
    device.map(range, 0, PAGE);
    rejectsBeforeNative(
      addon,
      () => device.data.fill({ ptr: range.base + BigInt(PAGE - 1), bytes: 2 }, 0),
      ArgumentRangeError,
      'block',
    );
    device.data.fill({ ptr: range.base + BigInt(PAGE - 2), bytes: 2 }, 7);
    device.unmap(range, 0, PAGE);
    rejectsBeforeNative(
      addon,
      () => device.data.fill({ ptr: range.base, bytes: 1 }, 0),
      ArgumentRangeError,
      'block',
    );
  });

  it('runs async variants on known streams only', () => {
    const { device, addon } = setup('malloc');
    const segment = device.allocateSegment(16);
    const stream = device.streams.createStream();
    device.data.copyInAsync(blockOf(segment), new Uint8Array(16).fill(3), stream);
    device.data.fillAsync({ ptr: segment.base, bytes: 8 }, 9, stream);
    const out = new Uint8Array(16);
    device.data.copyOutAsync({ ptr: segment.base, bytes: 16 }, out, stream);
    device.streams.synchronizeStream(stream);
    expect([...out]).toEqual([9, 9, 9, 9, 9, 9, 9, 9, 3, 3, 3, 3, 3, 3, 3, 3]);
    rejectsBeforeNative(
      addon,
      () => device.data.fillAsync({ ptr: segment.base, bytes: 8 }, 9, 12345),
      DeviceError,
    );
    device.streams.destroyStream(stream);
    rejectsBeforeNative(
      addon,
      () => device.data.copyInAsync({ ptr: segment.base, bytes: 1 }, new Uint8Array(1), stream),
      DeviceError,
    );
  });
});

describe('CudaDevice streams and events', () => {
  it('creates, records, queries and destroys', () => {
    const { device, addon } = setup();
    const s = device.streams.createStream();
    const e = device.streams.recordEvent(s);
    expect(device.streams.eventDone(e)).toBe(true);
    device.streams.synchronizeEvent(e);
    device.streams.destroyEvent(e);
    rejectsBeforeNative(addon, () => device.streams.eventDone(e), DeviceError);
    rejectsBeforeNative(addon, () => device.streams.destroyEvent(e), DeviceError);
    const e0 = device.streams.recordEvent(0);
    device.streams.destroyEvent(e0);
    rejectsBeforeNative(addon, () => device.streams.destroyStream(0), DeviceError);
    device.streams.destroyStream(s);
    rejectsBeforeNative(addon, () => device.streams.destroyStream(s), DeviceError);
    rejectsBeforeNative(addon, () => device.streams.recordEvent(s), DeviceError);
    rejectsBeforeNative(addon, () => device.streams.synchronizeStream('0' as never), DeviceError);
  });
});

describe('CudaDevice kernels (through the fake, which runs the CPU references)', () => {
  it('preprocesses a frame from one block into another', () => {
    const { device } = setup('malloc');
    const width = 20;
    const height = 10;
    const frame = Uint8Array.from({ length: width * height * 3 }, (_, i) => (i * 37) % 256);
    const source = blockOf(device.allocateSegment(frame.length));
    const target = blockOf(device.allocateSegment(3 * 16 * 8 * 2));
    device.data.copyIn(source, frame);
    device.kernels.preprocessFrame({ source, width, height, target, targetWidth: 16, targetHeight: 8 });
    const out = new Uint16Array(3 * 16 * 8);
    device.data.copyOut(target, out);
    expect([...out]).toEqual([
      ...preprocessFrameCpu(frame, width, height, { targetWidth: 16, targetHeight: 8 }),
    ]);
  });

  it('crop-resizes boxes', () => {
    const { device } = setup('malloc');
    const image = toFloat16Bits(Array.from({ length: 3 * 6 * 5 }, (_, i) => i / 7));
    const boxes = [0, 0, 5, 6, 1.5, 1, 4, 3];
    const imageBlock = blockOf(device.allocateSegment(image.byteLength));
    const target = blockOf(device.allocateSegment(2 * 3 * 4 * 2 * 2));
    device.data.copyIn(imageBlock, image);
    device.kernels.cropResize({
      image: imageBlock,
      width: 5,
      height: 6,
      boxes,
      target,
      outHeight: 4,
      outWidth: 2,
    });
    const out = new Uint16Array(2 * 3 * 4 * 2);
    device.data.copyOut(target, out);
    expect([...out]).toEqual([...cropResizeCpu(image, 5, 6, boxes, { outHeight: 4, outWidth: 2 })]);
  });

  it('refuses blocks whose dtype is not the one the kernel reads or writes', () => {
    const { device, addon } = setup('malloc');
    const frame = { ...blockOf(device.allocateSegment(4 * 4 * 3 * 4)), dtype: 'uint8' as const };
    const out = { ...blockOf(device.allocateSegment(3 * 4 * 4 * 4)), dtype: 'float16' as const };
    const args = { width: 4, height: 4, targetWidth: 4, targetHeight: 4 };
    // Pool blocks carry a dtype (BlockLike does not require one).
    const as = (block: typeof frame | typeof out, dtype: string) => ({ ...block, dtype });
    rejectsBeforeNative(
      addon,
      () => device.kernels.preprocessFrame({ ...args, source: as(frame, 'float16'), target: out }),
      InvalidArgumentError,
      'source',
    );
    rejectsBeforeNative(
      addon,
      () => device.kernels.preprocessFrame({ ...args, source: frame, target: as(out, 'float32') }),
      InvalidArgumentError,
      'target',
    );
    const crop = { width: 4, height: 4, boxes: [0, 0, 2, 2], outWidth: 2, outHeight: 2 };
    rejectsBeforeNative(
      addon,
      () => device.kernels.cropResize({ ...crop, image: as(out, 'uint8'), target: out }),
      InvalidArgumentError,
      'image',
    );
    rejectsBeforeNative(
      addon,
      () => device.kernels.cropResize({ ...crop, image: out, target: as(out, 'int32') }),
      InvalidArgumentError,
      'target',
    );
    // The right dtypes, or none (a block from acquire(bytes)), run.
    device.kernels.preprocessFrame({ ...args, source: frame, target: out });
    const crops = blockOf(device.allocateSegment(3 * 2 * 2 * 2));
    device.kernels.cropResize({ ...crop, image: out, target: crops });
  });

  it('validates shapes against block sizes before the addon', () => {
    const { device, addon } = setup('malloc');
    const small = blockOf(device.allocateSegment(100));
    const big = blockOf(device.allocateSegment(3 * 640 * 640 * 2));
    rejectsBeforeNative(
      addon,
      () => device.kernels.preprocessFrame({ source: small, width: 10, height: 10, target: big }),
      ArgumentRangeError,
      'byteOffset',
    );
    rejectsBeforeNative(
      addon,
      () => device.kernels.preprocessFrame({ source: small, width: 0, height: 10, target: big }),
      ArgumentRangeError,
      'width',
    );
    rejectsBeforeNative(
      addon,
      () => device.kernels.preprocessFrame({ source: small, width: 5, height: 5, target: small }),
      ArgumentRangeError,
    );
    rejectsBeforeNative(
      addon,
      () =>
        device.kernels.preprocessFrame({ source: small, width: 5, height: 5, target: big, std: [0, 1, 1] }),
      ArgumentRangeError,
      'std',
    );
    rejectsBeforeNative(
      addon,
      () => device.kernels.preprocessFrame({ source: small, width: 5, height: 5, target: big, stream: 77 }),
      DeviceError,
    );
    rejectsBeforeNative(
      addon,
      () => device.kernels.preprocessFrame(null as never),
      InvalidArgumentError,
      'args',
    );
    rejectsBeforeNative(
      addon,
      () => device.kernels.cropResize({ image: big, width: 4, height: 4, boxes: [0, 0, 1], target: big }),
      ArgumentRangeError,
      'boxes',
    );
    rejectsBeforeNative(
      addon,
      () =>
        device.kernels.cropResize({
          image: big,
          width: 4,
          height: 4,
          boxes: [0, 0, Number.POSITIVE_INFINITY, 1],
          target: big,
        }),
      ArgumentRangeError,
      'boxes',
    );
    rejectsBeforeNative(
      addon,
      () =>
        device.kernels.cropResize({ image: small, width: 40, height: 40, boxes: [0, 0, 1, 1], target: big }),
      ArgumentRangeError,
    );
    rejectsBeforeNative(
      addon,
      () =>
        device.kernels.cropResize({
          image: big,
          width: 4,
          height: 4,
          boxes: new Array(4 * 20).fill(1),
          target: big,
        }),
      ArgumentRangeError,
    );
  });
});

describe('CudaDevice ranges shared across devices of one process (adoptRange)', () => {
  /** `main` reserves; `worker` stands for a CudaDevice in another thread (same fake "process"). */
  function pair(capacityPages = 64) {
    const addon = new FakeAddon({ capacityBytes: capacityPages * PAGE });
    const main = new CudaDevice({ pageBytes: PAGE }, addon);
    const worker = CudaDevice.attach(structuredClone(main.share()), addon);
    return { addon, main, worker };
  }

  it('maps in one device, reads and unmaps in the other; the owner releases; nothing leaks', () => {
    const { addon, main, worker } = pair();
    const range = main.reserve(4 * PAGE);
    const adopted = worker.adoptRange(
      structuredClone({ id: range.id, base: range.base, bytes: range.bytes }),
    );
    expect(adopted).toEqual(range);
    expect(worker.adoptRange(adopted)).toBe(adopted); // idempotent
    expect(main.adoptRange(range)).toBe(range); // its own range
    expect(worker.ownsRange(adopted)).toBe(false);
    expect(main.ownsRange(range)).toBe(true);
    worker.map(adopted, PAGE, 2 * PAGE);
    expect(main.live()).toMatchObject({ ranges: 1, mappedPages: 2, adoptedRanges: 0 });
    expect(worker.live()).toMatchObject({ ranges: 0, mappedPages: 0, adoptedRanges: 1 });
    expect(cudaRangeRegistryLive(addon)).toEqual({ ranges: 1, mappedPages: 2 });
    // A block across both worker-mapped pages, written in the worker, read in the main device.
    const block = { ptr: range.base + BigInt(2 * PAGE - 64), bytes: 128 };
    const data = new Uint8Array(128).map((_, i) => (i * 7 + 1) & 0xff);
    worker.data.copyIn(block, data);
    const back = new Uint8Array(128);
    main.data.copyOut(block, back);
    expect(back).toEqual(data);
    // Pages no one mapped are still refused in both devices, before the addon.
    for (const d of [main, worker]) {
      rejectsBeforeNative(
        addon,
        () => d.data.fill({ ptr: range.base, bytes: 1 }, 0),
        ArgumentRangeError,
        'block',
      );
      rejectsBeforeNative(
        addon,
        () => d.data.fill({ ptr: range.base + BigInt(3 * PAGE - 1), bytes: 2 }, 0),
        ArgumentRangeError,
        'block',
      );
    }
    // Map state is shared: the main device sees the worker's pages as mapped.
    rejectsBeforeNative(addon, () => main.map(range, 2 * PAGE, PAGE), DeviceError);
    rejectsBeforeNative(addon, () => main.releaseRange(range), DeviceError);
    // The worker goes away; the main device unmaps what it mapped.
    worker.destroy();
    expect(cudaRangeRegistryLive(addon)).toEqual({ ranges: 1, mappedPages: 2 });
    main.unmap(range, PAGE, 2 * PAGE);
    rejectsBeforeNative(addon, () => main.data.fill(block, 0), ArgumentRangeError, 'block');
    main.releaseRange(range);
    expect(main.live()).toMatchObject({ ranges: 0, mappedPages: 0, adoptedRanges: 0 });
    expect(cudaRangeRegistryLive(addon)).toEqual({ ranges: 0, mappedPages: 0 });
    expect(addon.usedBytes).toBe(0);
  });

  it('validates adoptRange arguments before the addon', () => {
    const { addon, worker } = pair();
    rejectsBeforeNative(addon, () => worker.adoptRange(null as never), InvalidArgumentError, 'range');
    rejectsBeforeNative(addon, () => worker.adoptRange(7 as never), InvalidArgumentError, 'range');
    rejectsBeforeNative(
      addon,
      () => worker.adoptRange({ id: 1.5, base: 1n, bytes: PAGE }),
      ArgumentRangeError,
      'range.id',
    );
    rejectsBeforeNative(
      addon,
      () => worker.adoptRange({ id: 0, base: 1n, bytes: PAGE }),
      ArgumentRangeError,
      'range.id',
    );
    rejectsBeforeNative(
      addon,
      () => worker.adoptRange({ id: 1, base: 1 as never, bytes: PAGE }),
      InvalidArgumentError,
      'range.base',
    );
    rejectsBeforeNative(
      addon,
      () => worker.adoptRange({ id: 1, base: 1n, bytes: PAGE + 1 }),
      ArgumentRangeError,
      'range.bytes',
    );
    const malloc = new CudaDevice({ mode: 'malloc', pageBytes: PAGE }, addon);
    rejectsBeforeNative(addon, () => malloc.adoptRange({ id: 1, base: 1n, bytes: PAGE }), DeviceError);
  });

  it('refuses ranges that are not live ranges of this process on the same GPU', () => {
    const addon = new FakeAddon({ deviceCount: 2 });
    const main = new CudaDevice({ pageBytes: PAGE }, addon);
    const worker = CudaDevice.attach(main.share(), addon);
    const otherGpu = new CudaDevice({ deviceIndex: 1, pageBytes: PAGE }, addon);
    const range = main.reserve(2 * PAGE);
    const refuse = (d: CudaDevice, r: { id: number; base: bigint; bytes: number }) => {
      expect(() => d.adoptRange(r)).toThrow(DeviceError);
      expect(d.live().adoptedRanges).toBe(0);
    };
    refuse(worker, { id: 999, base: range.base, bytes: range.bytes }); // unknown id
    refuse(worker, { ...range, base: range.base + BigInt(PAGE) }); // forged base
    refuse(worker, { ...range, bytes: 4 * PAGE }); // forged size
    refuse(otherGpu, range); // another GPU
    const adopted = worker.adoptRange(range);
    expect(() => worker.adoptRange({ ...adopted, bytes: 4 * PAGE })).toThrow(DeviceError);
    main.releaseRange(range);
    const stale = new CudaDevice({ pageBytes: PAGE }, addon);
    refuse(stale, range); // released
    // The adopter learns about the release at its next call: typed errors, no wild access.
    expect(() => worker.map(adopted, 0, PAGE)).toThrow(DeviceError);
    expect(() => worker.data.fill({ ptr: adopted.base, bytes: 1 }, 0)).toThrow(ArgumentRangeError);
    worker.disownRange(adopted);
    expect(worker.live().adoptedRanges).toBe(0);
  });

  it("refuses to adopt a range whose pages differ from this device's (page arithmetic would be wrong)", () => {
    const addon = new FakeAddon({ capacityBytes: 64 * PAGE });
    const main = new CudaDevice({ pageBytes: 2 * PAGE }, addon);
    const worker = new CudaDevice({ pageBytes: PAGE }, addon);
    const range = main.reserve(8 * PAGE);
    main.map(range, 2 * PAGE, 2 * PAGE); // main's page 1 = bytes [2, 4) pages of PAGE
    expect(() => worker.adoptRange(range)).toThrow(DeviceError);
    expect(worker.live().adoptedRanges).toBe(0);
    // Had it been adopted, worker page 1 (bytes [PAGE, 2 PAGE)) would have looked mapped.
    expect(() => worker.data.fill({ ptr: range.base + BigInt(PAGE), bytes: 1 }, 0)).toThrow(
      ArgumentRangeError,
    );
    main.unmap(range, 2 * PAGE, 2 * PAGE);
    main.releaseRange(range);
    expect(addon.usedBytes).toBe(0);
  });

  it('a stale adopted range does not hide a live range later reserved at the same address', () => {
    const { addon, main, worker } = pair();
    const old = main.reserve(2 * PAGE);
    worker.adoptRange(old); // kept in the worker's books after the owner releases it
    main.releaseRange(old);
    addon.nextAddress = old.base; // the driver hands the same addresses out again
    const fresh = main.reserve(2 * PAGE);
    expect(fresh.base).toBe(old.base);
    main.map(fresh, 0, 2 * PAGE);
    worker.adoptRange(fresh);
    const block = { ptr: fresh.base + 8n, bytes: 16 };
    worker.data.fill(block, 0x5a);
    const back = new Uint8Array(16);
    main.data.copyOut(block, back);
    expect(back.every((b) => b === 0x5a)).toBe(true);
    // Where only the stale range matches, the refusal still says why.
    worker.disownRange(fresh);
    expect(() => worker.data.fill(block, 0)).toThrow(/released/);
  });

  it('only the reserving device releases; disownRange forgets an adopted range without touching it', () => {
    const { addon, main, worker } = pair();
    const range = main.reserve(2 * PAGE);
    const adopted = worker.adoptRange(range);
    rejectsBeforeNative(addon, () => worker.releaseRange(adopted), DeviceError);
    rejectsBeforeNative(addon, () => main.disownRange(range), DeviceError);
    worker.map(adopted, 0, PAGE);
    worker.disownRange(adopted);
    rejectsBeforeNative(addon, () => worker.unmap(adopted, 0, PAGE), DeviceError); // no longer in its books
    rejectsBeforeNative(addon, () => worker.disownRange(adopted), DeviceError);
    expect(main.live()).toMatchObject({ ranges: 1, mappedPages: 1 });
    // The owner's destroy releases the range and the pages another device mapped, once.
    const again = worker.adoptRange(range);
    main.destroy();
    expect(cudaRangeRegistryLive(addon)).toEqual({ ranges: 0, mappedPages: 0 });
    expect(addon.usedBytes).toBe(0);
    expect(() => worker.unmap(again, 0, PAGE)).toThrow(DeviceError);
    worker.destroy();
    expect(addon.usedBytes).toBe(0);
  });

  it('pageBytes: a multiple of the granularity makes larger VMM pages; anything else is a typed error', () => {
    const addon = new FakeAddon({ capacityBytes: 64 * PAGE });
    const byDefault = new CudaDevice({}, addon);
    expect(byDefault.pageBytes).toBe(DEFAULT_PAGE_GRANULES * PAGE);
    byDefault.destroy();
    const big = new CudaDevice({ pageBytes: 4 * PAGE }, addon);
    expect(big.pageBytes).toBe(4 * PAGE);
    const range = big.reserve(8 * PAGE);
    big.map(range, 4 * PAGE, 4 * PAGE);
    expect(() => big.map(range, PAGE, 4 * PAGE)).toThrow(ArgumentRangeError);
    big.unmap(range, 4 * PAGE, 4 * PAGE);
    big.releaseRange(range);
    const attached = CudaDevice.attach(big.share(), addon);
    expect(attached.pageBytes).toBe(4 * PAGE);
    for (const bad of [PAGE / 2, 3 * PAGE + 1, 0, -PAGE]) {
      expect(() => new CudaDevice({ pageBytes: bad }, addon)).toThrow(ArgumentRangeError);
    }
    expect(byDefault.allocationBytes).toBe(DEFAULT_ALLOCATION_BYTES);
    // A page size that does not divide the default: the default becomes the largest multiple below it.
    const odd = new CudaDevice({ pageBytes: 3 * PAGE }, addon);
    expect(odd.allocationBytes).toBe(Math.floor(DEFAULT_ALLOCATION_BYTES / (3 * PAGE)) * 3 * PAGE);
    odd.destroy();
    for (const bad of [PAGE / 2, 3 * PAGE, 0, -PAGE, Number.NaN]) {
      expect(() => new CudaDevice({ pageBytes: 2 * PAGE, allocationBytes: bad }, addon)).toThrow(
        /allocationBytes/,
      );
    }
    attached.destroy();
    big.destroy();
  });

  it('share() gives a structured-cloneable handle; attach() checks it', () => {
    const addon = new FakeAddon({ deviceCount: 2 });
    const main = new CudaDevice({ deviceIndex: 1, pageBytes: PAGE }, addon);
    const handle = structuredClone(main.share());
    expect(handle).toEqual({
      kind: 'cuda',
      deviceIndex: 1,
      mode: 'vmm',
      pciBusId: 2,
      pageBytes: PAGE,
      allocationBytes: DEFAULT_ALLOCATION_BYTES,
    });
    const attached = CudaDevice.attach(handle, addon);
    expect(attached).toMatchObject({
      deviceIndex: 1,
      mode: 'vmm',
      pageBytes: PAGE,
      allocationBytes: DEFAULT_ALLOCATION_BYTES,
    });
    expect(() => CudaDevice.attach(null as never, addon)).toThrow(InvalidArgumentError);
    expect(() => CudaDevice.attach({ ...handle, kind: 'host' } as never, addon)).toThrow(
      InvalidArgumentError,
    );
    expect(() => CudaDevice.attach({ ...handle, mode: 'nope' } as never, addon)).toThrow(
      InvalidArgumentError,
    );
    expect(() => CudaDevice.attach({ ...handle, pciBusId: 9 }, addon)).toThrow(DeviceError);
    main.destroy();
    expect(() => main.share()).toThrow(DeviceDestroyedError);
    expect(() => main.adoptRange({ id: 1, base: 1n, bytes: PAGE })).toThrow(DeviceDestroyedError);
  });
});

describe('CudaDevice lifetime', () => {
  it('destroy() releases everything and later calls throw DeviceDestroyedError', () => {
    const { device, addon } = setup();
    const range = device.reserve(4 * PAGE);
    device.map(range, 0, 2 * PAGE);
    device.streams.createStream();
    device.destroy();
    device.destroy();
    expect(addon.usedBytes).toBe(0);
    expect(addon.contexts[0]?.destroyed).toBe(true);
    expect(device.isDestroyed).toBe(true);
    expect(() => device.reserve(PAGE)).toThrow(DeviceDestroyedError);
    expect(() => device.unmap(range, 0, PAGE)).toThrow(DeviceDestroyedError);
    expect(() => device.memInfo()).toThrow(DeviceDestroyedError);
    expect(() => device.data.fill({ ptr: range.base, bytes: 1 }, 0)).toThrow(DeviceDestroyedError);
    expect(() => device.streams.createStream()).toThrow(DeviceDestroyedError);
  });

  it('supports `using`', () => {
    const addon = new FakeAddon();
    {
      using device = new CudaDevice({ pageBytes: PAGE }, addon);
      device.allocateSegment(10);
    }
    expect(addon.contexts[0]?.destroyed).toBe(true);
  });
});

describe('pinned buffers and raw timings (fake addon)', () => {
  it('allocates, recognizes and frees pinned buffers', () => {
    const addon = new FakeAddon();
    const buffer = allocatePinned(4096, addon);
    expect(buffer.byteLength).toBe(4096);
    expect(isPinned(buffer)).toBe(true);
    expect(isPinned(new ArrayBuffer(8))).toBe(false);
    freePinned(buffer, addon);
    expect(isPinned(buffer)).toBe(false);
    expect(() => freePinned(buffer, addon)).toThrow(InvalidArgumentError);
    expect(() => freePinned(new ArrayBuffer(8), addon)).toThrow(InvalidArgumentError);
    expect(() => allocatePinned(0, addon)).toThrow(ArgumentRangeError);
    expect(() => allocatePinned(2 ** 40, addon)).toThrow(ArgumentRangeError);
  });

  it('validates benchmark options', () => {
    const addon = new FakeAddon();
    expect(benchAllocation({ mode: 'vmm', bytes: PAGE, iterations: 5 }, addon)).toBe(1000);
    expect(() => benchAllocation({ mode: 'vmm', bytes: 0 }, addon)).toThrow(ArgumentRangeError);
    expect(() => benchAllocation({ mode: 'vmm', bytes: 1, iterations: 0 }, addon)).toThrow(
      ArgumentRangeError,
    );
    expect(() => benchAllocation(undefined as never, addon)).toThrow(InvalidArgumentError);
  });
});

describe('audit: checks before the addon', () => {
  it("adoptRange refuses a base of 2^64 or more and an id beyond the addon's 32-bit ids", () => {
    const { addon, device } = setup();
    rejectsBeforeNative(
      addon,
      () => device.adoptRange({ id: 1, base: 1n << 64n, bytes: PAGE }),
      ArgumentRangeError,
      'range.base',
    );
    rejectsBeforeNative(
      addon,
      () => device.adoptRange({ id: 2 ** 31, base: 1n << 40n, bytes: PAGE }),
      ArgumentRangeError,
      'range.id',
    );
    device.destroy();
  });

  it('kernels refuse a target that overlaps what they read (undefined on the GPU: __restrict__)', () => {
    const { addon, device } = setup();
    const range = device.reserve(4 * PAGE);
    device.map(range, 0, 4 * PAGE);
    const image = { ptr: range.base, bytes: 3 * 8 * 8 * 2 };
    rejectsBeforeNative(
      addon,
      () =>
        device.kernels.cropResize({
          image,
          width: 8,
          height: 8,
          boxes: [0, 0, 4, 4],
          target: { ptr: range.base + 16n, bytes: 3 * 4 * 4 * 2 },
          outWidth: 4,
          outHeight: 4,
        }),
      ArgumentRangeError,
      'target',
    );
    rejectsBeforeNative(
      addon,
      () =>
        device.kernels.preprocessFrame({
          source: { ptr: range.base, bytes: 8 * 8 * 3 },
          width: 8,
          height: 8,
          target: { ptr: range.base + 8n, bytes: 3 * 4 * 4 * 2 },
          targetWidth: 4,
          targetHeight: 4,
        }),
      ArgumentRangeError,
      'target',
    );
    // Adjacent (touching, not overlapping) blocks are fine.
    device.kernels.preprocessFrame({
      source: { ptr: range.base, bytes: 8 * 8 * 3 },
      width: 8,
      height: 8,
      target: { ptr: range.base + BigInt(8 * 8 * 3), bytes: 3 * 4 * 4 * 2 },
      targetWidth: 4,
      targetHeight: 4,
    });
    expect(addon.calls.at(-1)).toBe('preprocessFrame');
    device.unmap(range, 0, 4 * PAGE);
    device.releaseRange(range);
    device.destroy();
  });
});
