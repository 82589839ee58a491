/**
 * HostDevice across a real worker_thread: share() gives a handle that structured-clones, attach()
 * in the worker sees the same bytes and the same accounting, and writes made there are visible
 * here. Blocks cross as small descriptors ({ ptr, bytes }). The worker imports core's dist.
 */
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { Worker } from 'node:worker_threads';
import { describe, expect, it } from 'vitest';
import { createPool, HostDevice, MiB } from '../src/index.js';

const WORKER = fileURLToPath(new URL('./fixtures/host-device-worker.mjs', import.meta.url));
const DIST = fileURLToPath(new URL('../dist/index.js', import.meta.url));

interface WorkerAnswer {
  matches: boolean;
  usedBytes: number;
  carveError: string | null;
  name: string;
}

describe('HostDevice share / attach', () => {
  it('shares bytes and accounting with a worker thread', async () => {
    expect(existsSync(DIST), 'build core first (turbo runs build before test)').toBe(true);
    const device = new HostDevice({ capacityBytes: 32 * MiB });
    const pool = createPool({ device, detectLeaks: false });
    const input = pool.acquire(5000);
    const output = pool.acquire(3000);
    const pattern = 17;
    device.data.copyIn(
      input,
      Uint8Array.from({ length: 5000 }, (_, i) => (pattern + i) % 256),
    );
    const worker = new Worker(WORKER, {
      workerData: {
        handle: device.share(),
        input: { ptr: input.ptr, bytes: input.bytes },
        output: { ptr: output.ptr, bytes: output.bytes },
        pattern,
      },
    });
    const answer = await new Promise<WorkerAnswer>((resolve, reject) => {
      worker.once('message', resolve);
      worker.once('error', reject);
    });
    await worker.terminate();
    expect(answer.matches).toBe(true);
    expect(answer.usedBytes).toBe(device.usedBytes);
    expect(answer.name).toBe(device.name);
    // Only the creating instance carves address ranges.
    expect(answer.carveError).toBe('ERR_GPUPOOL_DEVICE');
    const back = new Uint8Array(3000);
    device.data.copyOut(output, back);
    expect(back.every((v, i) => v === ((255 - i) & 0xff))).toBe(true);
    input.release();
    output.release();
    pool.destroy();
    expect(device.usedBytes).toBe(0);
  });

  it('refuses a handle that did not come from share()', () => {
    for (const bad of [null, {}, { kind: 'host', memory: new ArrayBuffer(8) }]) {
      expect(() => HostDevice.attach(bad as never)).toThrow(
        expect.objectContaining({ code: 'ERR_GPUPOOL_ARGUMENT' }),
      );
    }
  });
});
