/**
 * CudaDevice on a real GPU: skipped where CUDA is not available (CI). Run by scripts/gpu-check.sh on
 * the GPU machine, also under compute-sanitizer memcheck (GPUPOOL_GPU_LIGHT=1 skips the slow
 * out-of-memory cases there). Raw allocation timings are printed as GPUPOOL_BENCH lines, not asserted.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { Worker } from 'node:worker_threads';
import { ArgumentRangeError, DeviceError, DeviceOutOfMemoryError, InvalidArgumentError } from '@gpupool/core';
import { describe, expect, it } from 'vitest';
// Core's test helper, by path (as cuda-conformance.test.ts imports core's suite).
import { prng } from '../../core/test/helpers/prng.js';
import { ALLOCATION_BENCH_MODES, benchAllocation } from '../src/bench.js';
import { cuda, loadedAddon } from '../src/binding.js';
import { cropResizeCpu, preprocessFrameCpu } from '../src/cpu-kernels.js';
import {
  CudaDevice,
  type CudaDeviceMode,
  cudaRangeRegistryLive,
  DEFAULT_PAGE_GRANULES,
} from '../src/cuda-device.js';
import { CudaError, CudaOutOfMemoryError } from '../src/errors.js';
import { float16BitsToFloat32, float32ToFloat16Bits } from '../src/float16.js';
import { allocatePinned, freePinned } from '../src/pinned.js';
import { expectAddonRefusal } from './addon-refusal.js';

const light = process.env.GPUPOOL_GPU_LIGHT === '1';
const MiB = 1024 * 1024;
/** These tests move and check every byte of their pages: the 2 MiB granularity keeps them small. */
const TEST_PAGE_BYTES = 2 * MiB;
/** 2 MiB pages, one physical allocation each: any page run unmaps, every byte is checked. */
const PER_PAGE = { pageBytes: TEST_PAGE_BYTES, allocationBytes: TEST_PAGE_BYTES };

/**
 * Runs `body` in a worker thread with the built package as `m` (and `workerData`, `parentPort`);
 * resolves with the last message it posts, rejects if it exits non-zero.
 */
function runWorker(body: string, workerData?: unknown): Promise<unknown> {
  const distEntry = join(dirname(fileURLToPath(import.meta.url)), '..', 'dist', 'index.js');
  const code = `
    const { parentPort, workerData } = require('node:worker_threads');
    import(${JSON.stringify(pathToFileURL(distEntry).href)}).then(async (m) => {
      ${body}
    }).catch((e) => parentPort.postMessage({ error: String(e && e.stack || e) }));`;
  return new Promise((resolve, reject) => {
    const worker = new Worker(code, { eval: true, workerData });
    let result: unknown;
    worker.on('message', (m) => {
      result = m;
    });
    worker.on('error', reject);
    worker.on('exit', (exitCode) =>
      exitCode === 0 ? resolve(result) : reject(new Error(`worker exited ${exitCode}`)),
    );
  });
}

/** Index of the first byte where a and b differ, or -1 (toEqual on MiBs of bytes overflows the heap when it fails). */
function firstDifference(a: Uint8Array, b: Uint8Array): number {
  if (a.length !== b.length) return Math.min(a.length, b.length);
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return i;
  return -1;
}

function pattern(bytes: number, seed: number): Uint8Array {
  const out = new Uint8Array(bytes);
  for (let i = 0; i < bytes; i++) out[i] = (i * 131 + seed * 17 + (i >>> 8)) & 0xff;
  return out;
}

/**
 * Byte-for-byte equality of large buffers at memcmp speed: vitest's toEqual walks a typed array
 * element by element (an 8 MiB compare took 11 s on one GPU host's CPU, past the test timeout).
 * On a mismatch, names the first differing byte.
 */
function expectSameBytes(actual: Uint8Array, expected: Uint8Array): void {
  expect(actual.length).toBe(expected.length);
  if (
    Buffer.from(actual.buffer, actual.byteOffset, actual.byteLength).equals(
      Buffer.from(expected.buffer, expected.byteOffset, expected.byteLength),
    )
  )
    return;
  let i = 0;
  while (actual[i] === expected[i]) i++;
  expect({ index: i, byte: actual[i] }).toEqual({ index: i, byte: expected[i] });
}

/** Largest distance in float16 units in the last place between two float16 bit arrays (NaN-free). */
function maxUlp(a: Uint16Array, b: Uint16Array): { max: number; exact: number } {
  const order = (bits: number) => (bits & 0x8000 ? -(bits & 0x7fff) : bits);
  let max = 0;
  let exact = 0;
  for (let i = 0; i < a.length; i++) {
    const d = Math.abs(order(a[i] as number) - order(b[i] as number));
    if (d === 0) exact++;
    if (d > max) max = d;
  }
  return { max, exact };
}

function writeResult(name: string, value: unknown): void {
  const dir = process.env.GPUPOOL_RESULTS_DIR;
  console.log(`GPUPOOL_${name} ${JSON.stringify(value)}`);
  if (dir) {
    mkdirSync(dir, { recursive: true });
    writeFileSync(join(dir, `${name.toLowerCase()}.json`), `${JSON.stringify(value, null, 2)}\n`);
  }
}

describe.skipIf(!cuda.available)('CudaDevice on a GPU', () => {
  it('reports the device', () => {
    const device = new CudaDevice({ mode: 'vmm' });
    const info = device.memInfo();
    writeResult('DEVICE', {
      ...device.properties,
      pageBytes: device.pageBytes,
      allocationBytes: device.allocationBytes,
      runtime: cuda.runtimeVersion,
      driver: cuda.driverVersion,
    });
    expect(device.pageBytes).toBe(DEFAULT_PAGE_GRANULES * 2 * MiB); // 2 MiB granularity on Hopper
    expect(info.totalBytes).toBeGreaterThan(info.freeBytes);
    expect(device.totalBytes).toBe(info.totalBytes);
    expect(device.properties.multiprocessors).toBeGreaterThan(0);
    device.destroy();
  });

  describe('VMM arenas', () => {
    it('maps pages on demand; any page-aligned run unmaps however it was mapped; memory returns', () => {
      const device = new CudaDevice({ mode: 'vmm', ...PER_PAGE });
      const before = device.memInfo().freeBytes;
      const page = device.pageBytes;
      const range = device.reserve(64 * page);
      device.map(range, 0, 8 * page);
      device.map(range, 8 * page, 4 * page);
      device.map(range, 12 * page, page);
      expect(before - device.memInfo().freeBytes).toBeGreaterThanOrEqual(13 * page);
      device.unmap(range, 6 * page, 4 * page); // crosses the first two maps
      device.unmap(range, 12 * page, page);
      device.unmap(range, 0, 6 * page);
      device.unmap(range, 10 * page, 2 * page);
      expect(device.live()).toMatchObject({ ranges: 1, mappedPages: 0 });
      device.releaseRange(range);
      expect(Math.abs(device.memInfo().freeBytes - before)).toBeLessThan(64 * MiB);
      device.destroy();
    });

    it('keeps byte patterns intact through map/unmap churn', () => {
      const device = new CudaDevice({ mode: 'vmm', ...PER_PAGE });
      const page = device.pageBytes;
      const pages = 48;
      const range = device.reserve(pages * page);
      const mapped = new Array<number>(pages).fill(-1); // seed written to the page, -1 = unmapped
      const random = prng(7);
      const probe = 4096; // bytes checked at the start, the middle and the end of each page
      const rounds = light ? 40 : 300;
      for (let round = 0; round < rounds; round++) {
        const first = Math.floor(random() * pages);
        const count = 1 + Math.floor(random() * Math.min(6, pages - first));
        const run = mapped.slice(first, first + count);
        if (run.every((s) => s === -1)) {
          device.map(range, first * page, count * page);
          for (let p = first; p < first + count; p++) {
            const block = { ptr: range.base + BigInt(p * page), bytes: page };
            device.data.fill(block, p & 0xff);
            device.data.copyIn(block, pattern(probe, round), 0);
            device.data.copyIn(block, pattern(probe, round + 1), page - probe);
            mapped[p] = round;
          }
        } else if (run.every((s) => s !== -1)) {
          device.unmap(range, first * page, count * page);
          for (let p = first; p < first + count; p++) mapped[p] = -1;
        }
        if (round % 10 === 9 || round === rounds - 1) {
          for (let p = 0; p < pages; p++) {
            const seed = mapped[p] as number;
            if (seed === -1) continue;
            const block = { ptr: range.base + BigInt(p * page), bytes: page };
            const head = new Uint8Array(probe);
            const middle = new Uint8Array(probe);
            const tail = new Uint8Array(probe);
            device.data.copyOut(block, head, 0);
            device.data.copyOut(block, middle, page / 2);
            device.data.copyOut(block, tail, page - probe);
            expect(head).toEqual(pattern(probe, seed));
            expect(middle.every((b) => b === (p & 0xff))).toBe(true);
            expect(tail).toEqual(pattern(probe, seed + 1));
          }
        }
      }
      device.destroy();
    });

    it('with allocationBytes, maps one allocation per window, refuses part of one, and keeps the data', () => {
      const device = new CudaDevice({
        mode: 'vmm',
        pageBytes: TEST_PAGE_BYTES,
        allocationBytes: 4 * TEST_PAGE_BYTES,
      });
      const page = device.pageBytes;
      const before = device.memInfo().freeBytes;
      const range = device.reserve(16 * page);
      device.map(range, 2 * page, 8 * page); // allocations [2, 4), [4, 8), [8, 10)
      expect(device.live().mappedPages).toBe(8);
      const block = { ptr: range.base + BigInt(2 * page), bytes: 8 * page };
      const data = pattern(8 * page, 11);
      device.data.copyIn(block, data);
      const back = new Uint8Array(8 * page);
      device.data.copyOut(block, back);
      expect(firstDifference(back, data)).toBe(-1);
      expect(() => device.unmap(range, 4 * page, page)).toThrow(DeviceError); // half of [4, 8)
      expect(() => device.unmap(range, 2 * page, 3 * page)).toThrow(/whole allocations/);
      expect(device.live().mappedPages).toBe(8); // the refusals changed nothing
      back.fill(0);
      device.data.copyOut(block, back);
      expect(firstDifference(back, data)).toBe(-1);
      device.unmap(range, 4 * page, 6 * page); // two allocations in one call
      expect(device.live().mappedPages).toBe(2);
      const head = new Uint8Array(2 * page);
      device.data.copyOut({ ptr: block.ptr, bytes: 2 * page }, head);
      expect(firstDifference(head, data.subarray(0, 2 * page))).toBe(-1);
      device.unmap(range, 2 * page, 2 * page);
      device.releaseRange(range);
      expect(device.live()).toMatchObject({ ranges: 0, mappedPages: 0 });
      expect(Math.abs(device.memInfo().freeBytes - before)).toBeLessThan(64 * MiB);
      device.destroy();
    });

    it('copies across pages that were mapped separately', () => {
      const device = new CudaDevice({ mode: 'vmm', ...PER_PAGE });
      const page = device.pageBytes;
      const range = device.reserve(4 * page);
      device.map(range, 0, page);
      device.map(range, page, page);
      device.map(range, 2 * page, page);
      const block = { ptr: range.base + BigInt(page / 2), bytes: 2 * page };
      const data = pattern(2 * page, 3);
      device.data.copyIn(block, data);
      const back = new Uint8Array(2 * page);
      device.data.copyOut(block, back);
      expect(firstDifference(back, data)).toBe(-1);
      device.destroy();
    });

    it('refuses double unmaps, double maps, unknown ranges and copies into unmapped pages', () => {
      const device = new CudaDevice({ mode: 'vmm', ...PER_PAGE });
      const page = device.pageBytes;
      const range = device.reserve(4 * page);
      device.map(range, 0, 2 * page);
      expect(() => device.map(range, page, 2 * page)).toThrow(DeviceError);
      device.unmap(range, 0, page);
      expect(() => device.unmap(range, 0, page)).toThrow(DeviceError);
      expect(() => device.data.fill({ ptr: range.base, bytes: 1 }, 0)).toThrow(ArgumentRangeError);
      expect(() =>
        device.data.copyIn({ ptr: range.base + BigInt(page), bytes: 8 }, new Uint8Array(9)),
      ).toThrow(ArgumentRangeError);
      expect(() => device.releaseRange(range)).toThrow(DeviceError);
      expect(() => device.unmap({ ...range, id: 12345 }, 0, page)).toThrow(DeviceError);
      device.destroy();
    });

    it('survives the addon being called directly with bad handles (typed errors, no abort)', () => {
      const addon = loadedAddon();
      if (addon === undefined) throw new Error('addon missing');
      const context = new addon.Context(0);
      expect(() => context.releaseRange(999)).toThrow(/unknown or released address range/);
      expect(() => context.unmap(999, 0, 2 * MiB)).toThrow();
      const [id] = context.reserve(4 * MiB);
      expect(() => context.unmap(id, 0, 2 * MiB)).toThrow(/not mapped/);
      expect(() => context.map(id, 2 * MiB, 4 * MiB)).toThrow(/inside the range/);
      expect(() => context.freeSegment(42)).toThrow(/unknown or released segment/);
      expect(() => context.destroyStream(0)).toThrow(/default stream/);
      expect(() => context.eventDone(77)).toThrow(/unknown or destroyed event/);
      let thrown: unknown;
      try {
        context.copyIn(16n, new Uint8Array(8), 0, false); // a wild pointer: CUDA refuses it
      } catch (error) {
        thrown = error;
      }
      expect(thrown).toMatchObject({ kind: 'cuda' });
      expect(typeof (thrown as { cudaName: string }).cudaName).toBe('string');
      context.destroy();
      expect(() => context.reserve(2 * MiB)).toThrow(/destroyed/);
    });

    it.skipIf(light)('reports running out of device memory as CudaOutOfMemoryError and rolls back', () => {
      const device = new CudaDevice({ mode: 'vmm', ...PER_PAGE });
      const page = device.pageBytes;
      const total = Math.ceil(device.totalBytes / page) * page;
      const range = device.reserve(total + 64 * page);
      const freeBefore = device.memInfo().freeBytes;
      let thrown: unknown;
      try {
        device.map(range, 0, total + 64 * page);
      } catch (error) {
        thrown = error;
      }
      expect(thrown).toBeInstanceOf(CudaOutOfMemoryError);
      expect(thrown).toBeInstanceOf(DeviceOutOfMemoryError);
      expect(device.live().mappedPages).toBe(0);
      expect(Math.abs(device.memInfo().freeBytes - freeBefore)).toBeLessThan(64 * MiB);
      device.map(range, 0, page); // still usable
      device.destroy();
    });
  });

  describe.each(['malloc', 'mallocAsync'] as CudaDeviceMode[])('%s segments', (mode) => {
    it('keeps byte patterns intact through allocate/free churn', () => {
      const device = new CudaDevice({ mode, ...PER_PAGE });
      expect(device.vmm).toBe(false);
      const random = prng(mode === 'malloc' ? 11 : 13);
      const live: { segment: ReturnType<CudaDevice['allocateSegment']>; seed: number }[] = [];
      const rounds = light ? 60 : 400;
      for (let round = 0; round < rounds; round++) {
        if (live.length > 0 && random() < 0.45) {
          const [victim] = live.splice(Math.floor(random() * live.length), 1);
          if (victim) device.freeSegment(victim.segment);
        } else {
          const bytes = 1 + Math.floor(random() ** 3 * 8 * MiB);
          const segment = device.allocateSegment(bytes);
          const block = { ptr: segment.base, bytes };
          device.data.copyIn(block, pattern(Math.min(bytes, 65536), round));
          if (bytes > 65536)
            device.data.fill({ ptr: segment.base + 65536n, bytes: bytes - 65536 }, round & 0xff);
          live.push({ segment, seed: round });
        }
      }
      for (const { segment, seed } of live) {
        const head = new Uint8Array(Math.min(segment.bytes, 65536));
        device.data.copyOut({ ptr: segment.base, bytes: segment.bytes }, head);
        expect(head).toEqual(pattern(head.length, seed));
        if (segment.bytes > 65536) {
          const last = new Uint8Array(1);
          device.data.copyOut({ ptr: segment.base, bytes: segment.bytes }, last, segment.bytes - 1);
          expect(last[0]).toBe(seed & 0xff);
        }
      }
      expect(device.live().segments).toBe(live.length);
      device.destroy();
    });

    it.skipIf(light)('reports an impossible allocation as CudaOutOfMemoryError', () => {
      const device = new CudaDevice({ mode, ...PER_PAGE });
      let thrown: unknown;
      try {
        device.allocateSegment(device.totalBytes * 2);
      } catch (error) {
        thrown = error;
      }
      expect(thrown).toBeInstanceOf(CudaOutOfMemoryError);
      expect(thrown).toMatchObject({ cudaCode: 2, requestedBytes: device.totalBytes * 2 });
      const segment = device.allocateSegment(1024); // the error did not stick
      device.freeSegment(segment);
      device.destroy();
    });
  });

  describe('streams, events and pinned buffers', () => {
    it('orders async copies and fills on a stream, with events', () => {
      const device = new CudaDevice({ mode: 'malloc' });
      const bytes = 8 * MiB;
      const segment = device.allocateSegment(bytes);
      const block = { ptr: segment.base, bytes };
      const stream = device.streams.createStream();
      const staging = allocatePinned(bytes);
      const view = new Uint8Array(staging);
      view.set(pattern(bytes, 5));
      device.data.fillAsync(block, 0, stream);
      device.data.copyInAsync(block, view, stream);
      const event = device.streams.recordEvent(stream);
      device.streams.synchronizeEvent(event);
      expect(device.streams.eventDone(event)).toBe(true);
      const out = allocatePinned(bytes);
      device.data.copyOutAsync(block, new Uint8Array(out), stream);
      device.streams.synchronizeStream(stream);
      expectSameBytes(new Uint8Array(out), pattern(bytes, 5));
      device.streams.destroyEvent(event);
      device.streams.destroyStream(stream);
      freePinned(staging);
      freePinned(out);
      expect(staging.byteLength).toBe(0);
      expect(() => freePinned(out)).toThrow(InvalidArgumentError);
      expect(() => device.streams.synchronizeStream(stream)).toThrow(DeviceError);
      device.destroy();
    });
  });

  describe('freePinned and copies still in flight', () => {
    it('waits for an async copy into the buffer before giving it back', () => {
      const device = new CudaDevice({ mode: 'malloc' });
      const bytes = 64 * MiB;
      const segment = device.allocateSegment(bytes);
      const block = { ptr: segment.base, bytes };
      const stream = device.streams.createStream();
      const out = allocatePinned(bytes);
      // Milliseconds of queued fills ahead of the copy, so the copy is still queued at the free.
      for (let i = 0; i < 100; i++) device.data.fillAsync(block, i & 0xff, stream);
      device.data.copyOutAsync(block, new Uint8Array(out), stream);
      const copied = device.streams.recordEvent(stream);
      freePinned(out);
      // Asked without waiting: the copy was done before the pinned memory went back.
      expect(device.streams.eventDone(copied)).toBe(true);
      expect(out.byteLength).toBe(0);
      device.streams.synchronizeStream(stream); // no error from the copy
      device.streams.destroyEvent(copied);
      device.streams.destroyStream(stream);
      device.freeSegment(segment);
      device.destroy();
    });

    it.skipIf(cuda.deviceCount < 2)('waits for copies on another GPU too', () => {
      const gpu1 = new CudaDevice({ mode: 'malloc', deviceIndex: 1 });
      const gpu0 = new CudaDevice({ mode: 'malloc', deviceIndex: 0 });
      const bytes = 64 * MiB;
      const segment = gpu1.allocateSegment(bytes);
      const block = { ptr: segment.base, bytes };
      const stream = gpu1.streams.createStream();
      const source = allocatePinned(bytes);
      new Uint8Array(source).fill(7);
      for (let i = 0; i < 100; i++) gpu1.data.fillAsync(block, i & 0xff, stream);
      gpu1.data.copyInAsync(block, new Uint8Array(source), stream);
      const copied = gpu1.streams.recordEvent(stream);
      gpu0.memInfo(); // GPU 0 is now current on this thread
      freePinned(source);
      expect(gpu1.streams.eventDone(copied)).toBe(true);
      const back = new Uint8Array(16);
      gpu1.data.copyOut({ ptr: segment.base, bytes: 16 }, back);
      expect(back.every((b) => b === 7)).toBe(true);
      gpu1.streams.destroyEvent(copied);
      gpu1.streams.destroyStream(stream);
      gpu1.freeSegment(segment);
      gpu0.destroy();
      gpu1.destroy();
    });
  });

  describe('kernels match the CPU references', () => {
    it('preprocessFrame: random 1920×1080 frame → 3×640×640 float16', () => {
      const device = new CudaDevice({ mode: 'vmm', ...PER_PAGE });
      const width = 1920;
      const height = 1080;
      const random = prng(21);
      const frame = Uint8Array.from({ length: width * height * 3 }, () => Math.floor(random() * 256));
      const source = device.allocateSegment(frame.length);
      const target = device.allocateSegment(3 * 640 * 640 * 2);
      const stream = device.streams.createStream();
      device.data.copyIn({ ptr: source.base, bytes: source.bytes }, frame);
      device.kernels.preprocessFrame({
        source: { ptr: source.base, bytes: source.bytes },
        width,
        height,
        target: { ptr: target.base, bytes: target.bytes },
        stream,
      });
      device.streams.synchronizeStream(stream);
      const gpu = new Uint16Array(3 * 640 * 640);
      device.data.copyOut({ ptr: target.base, bytes: target.bytes }, gpu);
      const cpu = preprocessFrameCpu(frame, width, height);
      const { max, exact } = maxUlp(gpu, cpu);
      writeResult('KERNEL_PREPROCESS', { elements: gpu.length, exact, maxUlp: max });
      expect(max).toBeLessThanOrEqual(1);
      device.destroy();
    });

    it('preprocessFrame: odd sizes, upsampling and custom statistics', () => {
      const device = new CudaDevice({ mode: 'malloc' });
      const random = prng(22);
      for (const [w, h, tw, th] of [
        [37, 23, 64, 48],
        [1, 1, 5, 3],
        [333, 111, 17, 290],
      ] as const) {
        const frame = Uint8Array.from({ length: w * h * 3 }, () => Math.floor(random() * 256));
        const options = { targetWidth: tw, targetHeight: th, mean: [0.1, 0.2, 0.3], std: [0.5, 0.25, 2] };
        const source = device.allocateSegment(frame.length);
        const target = device.allocateSegment(3 * tw * th * 2);
        device.data.copyIn({ ptr: source.base, bytes: source.bytes }, frame);
        device.kernels.preprocessFrame({
          source: { ptr: source.base, bytes: source.bytes },
          width: w,
          height: h,
          target: { ptr: target.base, bytes: target.bytes },
          ...options,
        });
        const gpu = new Uint16Array(3 * tw * th);
        device.data.copyOut({ ptr: target.base, bytes: target.bytes }, gpu);
        expect(maxUlp(gpu, preprocessFrameCpu(frame, w, h, options)).max).toBeLessThanOrEqual(1);
      }
      device.destroy();
    });

    it('cropResize: random boxes on a 3×640×640 float16 image → N×3×256×128', () => {
      const device = new CudaDevice({ mode: 'vmm', ...PER_PAGE });
      const random = prng(23);
      const width = 640;
      const height = 640;
      const image = Uint16Array.from({ length: 3 * width * height }, () =>
        float32ToFloat16Bits(random() * 8 - 4),
      );
      const boxes: number[] = [];
      for (let n = 0; n < 16; n++) {
        const x0 = random() * 700 - 30;
        const y0 = random() * 700 - 30;
        boxes.push(x0, y0, x0 + 5 + random() * 300, y0 + 5 + random() * 400);
      }
      boxes.push(0, 0, 640, 640, 100.25, 50.5, 100.75, 51); // whole image, and a sub-pixel box
      const count = boxes.length / 4;
      const page = device.pageBytes;
      const imageBytes = image.byteLength;
      const outBytes = count * 3 * 256 * 128 * 2;
      const rangeBytes = Math.ceil((imageBytes + outBytes) / page + 1) * page;
      const range = device.reserve(rangeBytes);
      device.map(range, 0, rangeBytes);
      const imageBlock = { ptr: range.base, bytes: imageBytes };
      const target = { ptr: range.base + BigInt(Math.ceil(imageBytes / 256) * 256), bytes: outBytes };
      device.data.copyIn(imageBlock, image);
      device.kernels.cropResize({ image: imageBlock, width, height, boxes, target });
      const gpu = new Uint16Array(count * 3 * 256 * 128);
      device.data.copyOut(target, gpu);
      const cpu = cropResizeCpu(image, width, height, boxes);
      const { max, exact } = maxUlp(gpu, cpu);
      writeResult('KERNEL_CROP', { elements: gpu.length, exact, maxUlp: max });
      expect(max).toBeLessThanOrEqual(1);
      expect(Number.isFinite(float16BitsToFloat32(gpu[0] as number))).toBe(true);
      device.destroy();
    });

    it('cropResize: Inf and NaN in the image give the CPU reference bit for bit (canonical NaN 0x7fff)', () => {
      const device = new CudaDevice({ mode: 'vmm', ...PER_PAGE });
      const width = 4;
      const height = 4;
      const image = new Uint16Array(3 * width * height).fill(float32ToFloat16Bits(1));
      // +Inf, -Inf and NaNs of both signs: the taps multiply them by 0 weights and add them to each
      // other, so the outputs hold NaN from 0 × Inf and Inf − Inf as well as the NaNs themselves.
      image.set([0x7c00, 0xfc00, 0x7e01, 0xfe00], 5);
      image.set([0xfc00, 0x7c00], 16 + 9);
      image.set([0x7d00], 32 + 10);
      const boxes = [0, 0, 4, 4, 0.5, 0.5, 3.5, 3.5, 1, 1, 2, 2];
      const outWidth = 7;
      const outHeight = 5;
      const count = boxes.length / 4;
      const range = device.reserve(device.pageBytes);
      device.map(range, 0, device.pageBytes);
      const imageBlock = { ptr: range.base, bytes: image.byteLength };
      const outBytes = count * 3 * outHeight * outWidth * 2;
      const target = { ptr: range.base + 4096n, bytes: outBytes };
      device.data.copyIn(imageBlock, image);
      device.kernels.cropResize({ image: imageBlock, width, height, boxes, target, outWidth, outHeight });
      const gpu = new Uint16Array(outBytes / 2);
      device.data.copyOut(target, gpu);
      const cpu = cropResizeCpu(image, width, height, boxes, { outWidth, outHeight });
      expect(gpu.includes(0x7fff)).toBe(true);
      expectSameBytes(new Uint8Array(gpu.buffer), new Uint8Array(cpu.buffer));
      device.unmap(range, 0, device.pageBytes);
      device.releaseRange(range);
      device.destroy();
    });
  });

  describe('threads and lifetime', () => {
    it('works in a worker thread, and the cleanup hook frees what a worker leaves behind', async () => {
      const device = new CudaDevice({ mode: 'malloc' });
      const before = device.memInfo().freeBytes;
      const result = await runWorker(`
        const device = new m.CudaDevice({ mode: 'vmm' });
        const range = device.reserve(64 * 1024 * 1024);
        device.map(range, 0, 64 * 1024 * 1024);
        const block = { ptr: range.base, bytes: 16 };
        device.data.copyIn(block, new Uint8Array([1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16]));
        const out = new Uint8Array(16);
        device.data.copyOut(block, out);
        const leaked = new m.CudaDevice({ mode: 'malloc' });
        leaked.allocateSegment(256 * 1024 * 1024); // never freed: the env cleanup hook must free it
        parentPort.postMessage({ sum: out.reduce((a, b) => a + b, 0), name: device.name });
        device.destroy();
      `);
      expect(result).toMatchObject({ sum: 136 });
      await new Promise((r) => setTimeout(r, 200));
      expect(before - device.memInfo().freeBytes).toBeLessThan(64 * MiB);
      device.destroy();
    });
  });

  describe('one range, several threads (process-wide range registry)', () => {
    it('a worker maps pages of a range reserved here and writes them; this thread reads, then unmaps after the worker exits', async () => {
      // Other test files may run in other threads of this process (--pool=threads): check liveness
      // by range (a live range can be adopted, a released one cannot), not by process-wide counts.
      const device = new CudaDevice({ mode: 'vmm', ...PER_PAGE });
      const probe = new CudaDevice({ mode: 'vmm', ...PER_PAGE });
      const range = device.reserve(16 * MiB);
      const bytes = 4096;
      const result = (await runWorker(
        `
        const device = m.CudaDevice.attach(workerData.handle);
        const range = device.adoptRange(workerData.range);
        device.map(range, 2 * 1024 * 1024, 4 * 1024 * 1024); // pages 1 and 2
        const block = { ptr: range.base + BigInt(4 * 1024 * 1024 - ${bytes / 2}), bytes: ${bytes} }; // across pages 1|2
        const data = new Uint8Array(${bytes});
        for (let i = 0; i < data.length; i++) data[i] = (i * 13 + 5) & 0xff;
        device.data.copyIn(block, data);
        let refused = 'none';
        try { device.data.fill({ ptr: range.base, bytes: 1 }, 0); } catch (e) { refused = e.name; }
        // Its own range, left behind: the env cleanup hook must release it (and only it).
        const own = device.reserve(2 * 1024 * 1024);
        device.map(own, 0, 2 * 1024 * 1024);
        const registry = m.cudaRangeRegistryLive();
        parentPort.postMessage({ live: device.live(), refused, owns: device.ownsRange(range), registry,
          own: { id: own.id, base: own.base, bytes: own.bytes } });
        // No destroy(): the worker exits holding the adopted range; only its own range is released.
      `,
        { handle: device.share(), range: { id: range.id, base: range.base, bytes: range.bytes } },
      )) as {
        error?: string;
        live: { ranges: number; mappedPages: number; adoptedRanges: number };
        refused: string;
        owns: boolean;
        registry: { ranges: number; mappedPages: number };
        own: { id: number; base: bigint; bytes: number };
      };
      expect(result.error).toBeUndefined();
      expect(result.live).toMatchObject({ ranges: 1, mappedPages: 1, adoptedRanges: 1 });
      expect(result.refused).toBe('ArgumentRangeError');
      expect(result.owns).toBe(false);
      expect(result.registry.ranges).toBeGreaterThanOrEqual(2);
      expect(result.registry.mappedPages).toBeGreaterThanOrEqual(3);
      expect(result.own.id).not.toBe(range.id); // process-unique ids
      // The worker has exited: its cleanup hook released its own range, not the adopted one.
      expect(() => probe.adoptRange(result.own)).toThrow(DeviceError);
      expect(probe.adoptRange(range)).toEqual(range);
      probe.disownRange(range);
      expect(device.live()).toMatchObject({ ranges: 1, mappedPages: 2, adoptedRanges: 0 });
      const block = { ptr: range.base + BigInt(4 * MiB - bytes / 2), bytes };
      const back = new Uint8Array(bytes);
      device.data.copyOut(block, back);
      const want = new Uint8Array(bytes).map((_, i) => (i * 13 + 5) & 0xff);
      expect(Buffer.from(back).equals(Buffer.from(want))).toBe(true);
      expect(() => device.data.fill({ ptr: range.base, bytes: 1 }, 0)).toThrow(ArgumentRangeError);
      // This thread unmaps what the dead worker mapped, then releases the range.
      device.unmap(range, 2 * MiB, 4 * MiB);
      expect(() => device.data.copyOut(block, back)).toThrow(ArgumentRangeError);
      device.releaseRange(range);
      expect(device.live()).toMatchObject({ ranges: 0, mappedPages: 0, adoptedRanges: 0 });
      expect(() => probe.adoptRange(range)).toThrow(DeviceError);
      expect(probe.live()).toMatchObject({ ranges: 0, mappedPages: 0, adoptedRanges: 0 });
      probe.destroy();
      device.destroy();
    });

    it('several workers map and unmap disjoint pages of one range at once; the owner sees every byte', async () => {
      const device = new CudaDevice({ mode: 'vmm', ...PER_PAGE });
      const probe = new CudaDevice({ mode: 'vmm', ...PER_PAGE });
      const workers = 4;
      const range = device.reserve(workers * 8 * MiB);
      const results = (await Promise.all(
        Array.from({ length: workers }, (_, w) =>
          runWorker(
            `
            const device = m.CudaDevice.attach(workerData.handle);
            const range = device.adoptRange(workerData.range);
            const at = workerData.w * 8 * 1024 * 1024;
            for (let round = 0; round < 20; round++) {
              device.map(range, at, 8 * 1024 * 1024);
              if (round < 19) device.unmap(range, at, 8 * 1024 * 1024);
            }
            device.data.fill({ ptr: range.base + BigInt(at), bytes: 8 * 1024 * 1024 }, workerData.w + 1);
            device.destroy();
            parentPort.postMessage({ ok: true });
          `,
            { handle: device.share(), range: { id: range.id, base: range.base, bytes: range.bytes }, w },
          ),
        ),
      )) as { ok?: boolean; error?: string }[];
      for (const r of results) expect(r).toEqual({ ok: true });
      expect(device.live()).toMatchObject({ ranges: 1, mappedPages: workers * 4 });
      for (let w = 0; w < workers; w++) {
        const out = new Uint8Array(8 * MiB);
        device.data.copyOut({ ptr: range.base + BigInt(w * 8 * MiB), bytes: 8 * MiB }, out);
        expect(out.every((b) => b === w + 1)).toBe(true);
      }
      // The owner's destroy releases the range and every page the workers mapped, once.
      const pagesInProcess = cudaRangeRegistryLive().mappedPages;
      expect(pagesInProcess).toBeGreaterThanOrEqual(workers * 4);
      device.destroy();
      expect(() => probe.adoptRange(range)).toThrow(DeviceError);
      probe.destroy();
    });
  });

  describe('argument and lifetime hardening', () => {
    it('copies from and into SharedArrayBuffer views (and crop boxes in one), at their byte offsets', () => {
      const device = new CudaDevice({ mode: 'vmm', ...PER_PAGE });
      const range = device.reserve(2 * MiB);
      device.map(range, 0, 2 * MiB);
      const block = { ptr: range.base, bytes: 4096 };
      const source = new Uint8Array(new SharedArrayBuffer(4096 + 64), 64, 4096);
      source.set(pattern(4096, 9));
      device.data.copyIn(block, source);
      const target = new Uint8Array(new SharedArrayBuffer(4096 + 32), 32, 4096);
      device.data.copyOut(block, target);
      expectSameBytes(target, pattern(4096, 9));
      const stream = device.streams.createStream();
      const out = new Uint8Array(new SharedArrayBuffer(4096));
      device.data.copyOutAsync(block, out, stream);
      device.streams.synchronizeStream(stream);
      expectSameBytes(out, pattern(4096, 9));
      // cropResize reads its boxes from host memory: a Float32Array over a SharedArrayBuffer.
      const width = 8;
      const height = 8;
      const image = Uint16Array.from({ length: 3 * width * height }, (_, i) => float32ToFloat16Bits(i / 16));
      const imageBlock = { ptr: range.base + 65536n, bytes: image.byteLength };
      const cropBlock = { ptr: range.base + 131072n, bytes: 3 * 4 * 2 * 2 };
      device.data.copyIn(imageBlock, image);
      const boxes = new Float32Array(new SharedArrayBuffer(32), 16, 4);
      boxes.set([1, 1, 6, 7]);
      device.kernels.cropResize({
        image: imageBlock,
        width,
        height,
        boxes,
        target: cropBlock,
        outHeight: 4,
        outWidth: 2,
      });
      const crop = new Uint16Array(3 * 4 * 2);
      device.data.copyOut(cropBlock, crop);
      const cpu = cropResizeCpu(image, width, height, [1, 1, 6, 7], { outHeight: 4, outWidth: 2 });
      expect(maxUlp(crop, cpu).max).toBeLessThanOrEqual(1);
      device.destroy();
    });

    it('stream and event ids wrap after 2^31 − 1 and skip ids still in use', () => {
      const addon = loadedAddon();
      if (addon === undefined) throw new Error('addon missing');
      const context = new addon.Context(0);
      const stream = context.createStream();
      expect(stream).toBe(1);
      // As after 2^31 − 3 handles (a server recording an event per release gets there in days).
      context.setNextIdForTest!(2 ** 31 - 2);
      const events = [context.recordEvent(stream), context.recordEvent(stream), context.recordEvent(stream)];
      // The third wraps to 1, which the stream still has: 2.
      expect(events).toEqual([2 ** 31 - 2, 2 ** 31 - 1, 2]);
      context.synchronizeEvent(events[2]!);
      for (const event of events) {
        expect(context.eventDone(event)).toBe(true);
        context.destroyEvent(event);
      }
      expectAddonRefusal(() => context.setNextIdForTest!(0), /setNextIdForTest/);
      context.destroyStream(stream);
      context.destroy();
    });

    it('refuses malformed arguments to the addon called directly, without launching anything or poisoning the context', () => {
      const addon = loadedAddon();
      if (addon === undefined) throw new Error('addon missing');
      const context = new addon.Context(0);
      const [id, base] = context.reserve(4 * MiB);
      context.map(id, 0, 2 * MiB);
      const floats = (n: number) => new Float32Array(n).fill(1);
      // A zero or negative width would read before the source: refused before the launch.
      expectAddonRefusal(
        () => context.preprocessFrame(base, 0, 4, base, 4, 4, floats(3), floats(3), 0),
        /width/,
      );
      expectAddonRefusal(
        () => context.preprocessFrame(base, 4, -4, base, 4, 4, floats(3), floats(3), 0),
        /height/,
      );
      expectAddonRefusal(
        () => context.preprocessFrame(base, 4, 4, base, 4, 4, floats(2), floats(3), 0),
        /mean/,
      );
      expectAddonRefusal(() => context.cropResize(base, 4, 4, floats(3), base, 2, 2, 0), /boxes/);
      expectAddonRefusal(() => context.cropResize(base, 4, 4, floats(4), base, 0, 2, 0), /outHeight/);
      // Sizes never wrap around to huge size_t values; pointers are unsigned 64-bit bigints.
      expectAddonRefusal(() => context.fill(base, 0, -1, 0, false), /fill: bytes/);
      expectAddonRefusal(() => context.fill(base, 256, 1, 0, false), /fill: byteValue/);
      expectAddonRefusal(() => context.fill(-1n, 0, 1, 0, false), /fill: ptr/);
      expectAddonRefusal(() => context.map(id, 2 * MiB, 2 * MiB + 0.5), /map: bytes/);
      expectAddonRefusal(() => context.unmap(id, -2 * MiB, 2 * MiB), /unmap: offsetBytes/);
      expectAddonRefusal(
        () => context.copyIn(base, [1, 2] as unknown as Uint8Array, 0, false),
        /copyIn: source/,
      );
      // The context still works: nothing was launched on a bad address.
      context.fill(base, 7, 16, 0, false);
      const out = new Uint8Array(16);
      context.copyOut(base, out, 0, false);
      expect(out.every((b) => b === 7)).toBe(true);
      context.synchronize();
      context.destroy();
      // After destroy no kernel launches (stream 0 included), and unmap says why.
      expect(() => context.preprocessFrame(base, 4, 4, base, 4, 4, floats(3), floats(3), 0)).toThrow(
        /destroyed/,
      );
      expect(() => context.cropResize(base, 4, 4, floats(4), base, 2, 2, 0)).toThrow(/destroyed/);
      expect(() => context.unmap(id, 0, 2 * MiB)).toThrow(/destroyed/);
      expect(() => context.map(id, 0, 2 * MiB)).toThrow(/destroyed/);
      const probe = new CudaDevice({ mode: 'malloc' });
      probe.synchronize(); // no sticky error in the process
      probe.destroy();
    });

    it('refuses to adopt a range whose page size differs from the adopting device', () => {
      const owner = new CudaDevice({
        mode: 'vmm',
        pageBytes: 2 * TEST_PAGE_BYTES,
        allocationBytes: 2 * TEST_PAGE_BYTES,
      });
      const other = new CudaDevice({ mode: 'vmm', ...PER_PAGE });
      const range = owner.reserve(8 * TEST_PAGE_BYTES);
      expect(() => other.adoptRange(range)).toThrow(/pages/);
      expect(other.live().adoptedRanges).toBe(0);
      other.destroy();
      owner.destroy();
    });

    it.skipIf(cuda.deviceCount < 2)(
      'unmap waits for work on its own GPU even when another GPU was used last on this thread',
      () => {
        const gpu0 = new CudaDevice({ mode: 'vmm', deviceIndex: 0, ...PER_PAGE });
        const gpu1 = new CudaDevice({ mode: 'malloc', deviceIndex: 1 });
        const bytes = 64 * MiB;
        const range = gpu0.reserve(bytes);
        gpu0.map(range, 0, bytes);
        const stream = gpu0.streams.createStream();
        // Milliseconds of queued writes into the pages about to be unmapped.
        for (let i = 0; i < 200; i++) gpu0.data.fillAsync({ ptr: range.base, bytes }, i & 0xff, stream);
        gpu1.memInfo(); // GPU 1 is now current on this thread
        gpu0.unmap(range, 0, bytes); // must synchronize GPU 0, not GPU 1
        gpu0.streams.synchronizeStream(stream); // no illegal-address fault from the writes
        gpu0.map(range, 0, 2 * MiB);
        gpu0.data.fill({ ptr: range.base, bytes: 16 }, 3);
        const out = new Uint8Array(16);
        gpu0.data.copyOut({ ptr: range.base, bytes: 16 }, out);
        expect(out.every((b) => b === 3)).toBe(true);
        gpu1.destroy();
        gpu0.destroy();
      },
    );
  });

  it('measures raw allocation timings inside C++ (not asserted)', () => {
    const timings: Record<string, Record<string, number>> = {};
    for (const bytes of [2 * MiB, 64 * MiB]) {
      for (const mode of ALLOCATION_BENCH_MODES) {
        const iterations = light
          ? 5
          : mode === 'malloc'
            ? 200
            : mode === 'vmm' && bytes > 2 * MiB
              ? 100
              : 1000;
        const ns = benchAllocation({ mode, bytes, iterations });
        expect(ns).toBeGreaterThan(0);
        timings[`${bytes / MiB}MiB`] = { ...timings[`${bytes / MiB}MiB`], [mode]: Math.round(ns) };
      }
    }
    writeResult('BENCH', timings);
  });

  it('turns a CUDA failure into CudaError with the CUDA name', () => {
    let thrown: unknown;
    try {
      new CudaDevice({ deviceIndex: cuda.deviceCount });
    } catch (error) {
      thrown = error;
    }
    expect(thrown).toBeInstanceOf(ArgumentRangeError);
    const addon = loadedAddon();
    try {
      addon?.deviceProperties(cuda.deviceCount + 5);
    } catch (error) {
      thrown = error;
    }
    expect(thrown).toMatchObject({ kind: 'cuda', cudaName: 'cudaErrorInvalidDevice' });
    expect(CudaError).toBeDefined();
  });
});
