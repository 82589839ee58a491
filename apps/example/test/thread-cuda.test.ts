/**
 * The CUDA path of a pipeline thread (--device cuda --workers 0) without a GPU: @gpupool/native's
 * CudaDevice, allocatePinned and freePinned are replaced by fakes that record what is allocated and
 * freed (ordinary ArrayBuffers stand in for pinned memory, the fake kernels do nothing, so the frame
 * is blank and has no objects). What is checked is who frees what, not the CUDA work itself.
 */
import { afterEach, describe, expect, it, vi } from 'vitest';
import { closeThread, runTask } from '../src/thread.js';

const fake = vi.hoisted(() => ({
  allocated: [] as ArrayBuffer[],
  freed: [] as ArrayBuffer[],
  devices: [] as { destroyed: number }[],
  /** allocatePinned refuses its call number `failAt` (1-based); 0: never. */
  failAt: 0,
}));

vi.mock('@gpupool/native', async (importOriginal) => {
  const original = await importOriginal<typeof import('@gpupool/native')>();
  class FakeCudaDevice {
    readonly kind = 'cuda';
    readonly name = 'fake CUDA device';
    readonly calls = { map: 0, unmap: 0, allocateSegment: 0, freeSegment: 0 };
    readonly streams = { createStream: () => 1, synchronizeStream: () => {} };
    readonly data = { copyInAsync: () => {}, copyOutAsync: () => {} };
    readonly kernels = { preprocessFrame: () => {}, cropResize: () => {} };
    destroyed = 0;
    #next = 1;
    constructor() {
      fake.devices.push(this);
    }
    allocateSegment(bytes: number) {
      this.calls.allocateSegment++;
      return { id: this.#next, base: BigInt(this.#next++) << 32n, bytes };
    }
    freeSegment() {
      this.calls.freeSegment++;
    }
    destroy() {
      this.destroyed++;
    }
  }
  return {
    ...original,
    CudaDevice: FakeCudaDevice,
    allocatePinned: (bytes: number) => {
      if (fake.allocated.length + 1 === fake.failAt) throw new Error('pinned memory refused');
      const buffer = new ArrayBuffer(bytes);
      fake.allocated.push(buffer);
      return buffer;
    },
    freePinned: (buffer: ArrayBuffer) => {
      if (!fake.allocated.includes(buffer)) throw new Error('not a pinned buffer');
      if (fake.freed.includes(buffer)) throw new Error('freed twice');
      fake.freed.push(buffer);
    },
  };
});

const task = { camera: 0, frame: 0, options: { device: 'cuda' as const, pool: false } };

afterEach(() => {
  closeThread();
  fake.allocated.length = 0;
  fake.freed.length = 0;
  fake.devices.length = 0;
  fake.failAt = 0;
});

describe('a CUDA pipeline thread on the main thread (--workers 0)', () => {
  it('closeThread frees the pinned staging buffers with freePinned, then destroys the device', async () => {
    const out = await runTask(task);
    expect(out.report.kernels).toBe('cuda');
    expect(fake.allocated.length).toBe(3); // stage, half read-back, float read-back
    expect(fake.freed).toEqual([]);
    closeThread();
    expect(fake.freed.length).toBe(3);
    for (const buffer of fake.allocated) expect(fake.freed).toContain(buffer);
    expect(fake.devices.map((d) => d.destroyed)).toEqual([1]);
    closeThread(); // a second close does nothing (fake freePinned throws on a second free)
    expect(fake.freed.length).toBe(3);
  });

  it('gives back the buffers already pinned and the device when a pinned allocation is refused', async () => {
    fake.failAt = 2;
    await expect(runTask(task)).rejects.toThrow('pinned memory refused');
    expect(fake.allocated.length).toBe(1);
    expect(fake.freed.length).toBe(1);
    expect(fake.freed[0]).toBe(fake.allocated[0]);
    expect(fake.devices.map((d) => d.destroyed)).toEqual([1]);
  });
});
