/**
 * What runPipeline gives back when creating or closing its worker pool fails. @gpupool/workers is
 * replaced by a fake whose createWorkerPool, run and destroy fail on request; the device is the
 * real HostDevice that makeRunner creates, its destroy() watched.
 */
import type { Device } from '@gpupool/core';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { runPipeline } from '../src/run.js';
import { closeThread, type FrameTask, runTask } from '../src/thread.js';

const fake = vi.hoisted(() => ({
  createError: undefined as Error | undefined,
  runError: undefined as Error | undefined,
  destroyError: undefined as Error | undefined,
  destroys: [] as unknown[],
  devices: [] as { destroy: ReturnType<typeof vi.fn> }[],
}));

vi.mock('@gpupool/workers', () => ({
  createWorkerPool: (options: { device: Device }) => {
    const device = options.device;
    const destroy = device.destroy.bind(device);
    const spy = vi.fn(() => destroy());
    device.destroy = spy;
    fake.devices.push({ destroy: spy });
    if (fake.createError !== undefined) throw fake.createError;
    return {
      // The frames run here, on a host pool of this thread (a worker's slice needs a real worker).
      run: async (task: FrameTask) => {
        if (fake.runError !== undefined) throw fake.runError;
        return runTask({ ...task, options: { device: 'host', pool: true } });
      },
      destroy: async () => {
        closeThread();
        fake.destroys.push(true);
        if (fake.destroyError !== undefined) throw fake.destroyError;
      },
    };
  },
}));

const options = {
  device: 'host' as const,
  pool: true,
  frames: 2,
  cameras: 1,
  workers: 1,
  workerFile: new URL('file:///not/used/worker.js'),
};

afterEach(() => {
  fake.createError = undefined;
  fake.runError = undefined;
  fake.destroyError = undefined;
  fake.destroys.length = 0;
  fake.devices.length = 0;
  closeThread();
});

describe('runPipeline cleans up after failures', () => {
  it('destroys the device when createWorkerPool throws, and throws what it threw', async () => {
    fake.createError = new Error('no workers today');
    await expect(runPipeline(options)).rejects.toBe(fake.createError);
    expect(fake.devices.length).toBe(1);
    expect(fake.devices[0]!.destroy).toHaveBeenCalledTimes(1);
  });

  it('destroys the device when the worker pool fails to close', async () => {
    fake.destroyError = new Error('workers did not end');
    await expect(runPipeline(options)).rejects.toBe(fake.destroyError);
    expect(fake.devices[0]!.destroy).toHaveBeenCalledTimes(1);
  });

  it('throws the close error when the run itself succeeded', async () => {
    fake.destroyError = new Error('close failed');
    const error = await runPipeline(options).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(error).toBe(fake.destroyError);
    expect((error as Error).cause).toBeUndefined();
  });

  it('keeps the run error when closing fails too, with the close error as its cause', async () => {
    fake.runError = new Error('frame failed');
    fake.destroyError = new Error('close failed');
    const error = await runPipeline(options).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(error).toBe(fake.runError);
    expect((error as Error).cause).toBe(fake.destroyError);
    expect(fake.destroys.length).toBe(1);
    expect(fake.devices[0]!.destroy).toHaveBeenCalledTimes(1);
  });

  it('keeps a run error that already has a cause in an AggregateError with the close error', async () => {
    const root = new Error('root');
    fake.runError = new Error('frame failed', { cause: root });
    fake.destroyError = new Error('close failed');
    const error = await runPipeline(options).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(error).toBeInstanceOf(AggregateError);
    expect((error as AggregateError).errors).toEqual([fake.runError, fake.destroyError]);
    expect((error as AggregateError).message).toMatch(/^frame failed/);
    expect(fake.runError.cause).toBe(root);
  });
});
