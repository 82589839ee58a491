import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DeviceError } from '@gpupool/core';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { benchAllocation } from '../src/bench.js';
import { classifyProbe, cuda } from '../src/binding.js';
import { CudaDevice, cudaDeviceProperties } from '../src/cuda-device.js';
import { CudaUnavailableError } from '../src/errors.js';
import type { NativeProbe } from '../src/native-api.js';
import { allocatePinned } from '../src/pinned.js';

const probe = (over: Partial<NativeProbe>): NativeProbe => ({
  runtimeVersion: 13000,
  driverVersion: 0,
  deviceCount: 0,
  status: 0,
  statusName: 'cudaSuccess',
  statusMessage: 'no error',
  driverApi: false,
  ...over,
});

describe('classifyProbe', () => {
  it('reports available with one or more devices', () => {
    const s = classifyProbe(probe({ deviceCount: 2, driverApi: true, driverVersion: 13000 }), '/x.node');
    expect(s).toMatchObject({ available: true, status: 'ok', vmm: true, deviceCount: 2 });
    expect(s.reason).toBeUndefined();
  });

  it('says "no driver" for CUDA error 35', () => {
    const s = classifyProbe(probe({ status: 35, statusName: 'cudaErrorInsufficientDriver' }), '/x.node');
    expect(s).toMatchObject({
      available: false,
      status: 'no-driver',
      cudaCode: 35,
      cudaName: 'cudaErrorInsufficientDriver',
    });
    expect(s.reason).toMatch(/^no driver: CUDA error 35 \(cudaErrorInsufficientDriver\).*13\.0/);
  });

  it('says "no device" for CUDA error 100', () => {
    const s = classifyProbe(probe({ status: 100, statusName: 'cudaErrorNoDevice' }), '/x.node');
    expect(s).toMatchObject({ available: false, status: 'no-device', cudaCode: 100 });
    expect(s.reason).toMatch(/^no device: CUDA error 100 \(cudaErrorNoDevice\)/);
  });

  it('names any other CUDA error', () => {
    const s = classifyProbe(
      probe({ status: 3, statusName: 'cudaErrorInitializationError', statusMessage: 'initialization error' }),
      '/x.node',
    );
    expect(s).toMatchObject({ available: false, status: 'cuda-error', cudaCode: 3 });
    expect(s.reason).toBe('CUDA error 3 (cudaErrorInitializationError): initialization error');
  });
});

describe('loading the addon', () => {
  afterEach(() => {
    vi.unstubAllEnvs();
    vi.resetModules();
  });

  it('says "built without CUDA" when the .node file is missing, without throwing', async () => {
    vi.stubEnv('GPUPOOL_NATIVE_ADDON', '/nonexistent/gpupool_native.node');
    vi.resetModules();
    const fresh = await import('../src/binding.js');
    expect(fresh.cuda).toMatchObject({ available: false, status: 'not-built' });
    expect(fresh.cuda.reason).toMatch(/^built without CUDA: .*gpupool_native\.node does not exist.*nvcc/);
    expect(fresh.loadedAddon()).toBeUndefined();
  });

  it('reports a broken addon as "load-failed", without throwing', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'gpupool-'));
    const file = join(dir, 'broken.node');
    writeFileSync(file, 'not an ELF file');
    vi.stubEnv('GPUPOOL_NATIVE_ADDON', file);
    vi.resetModules();
    const fresh = await import('../src/binding.js');
    expect(fresh.cuda).toMatchObject({ available: false, status: 'load-failed' });
    expect(fresh.cuda.reason).toMatch(/failed to load/);
  });

  it('exposes a frozen status', () => {
    expect(Object.isFrozen(cuda)).toBe(true);
    expect(typeof cuda.available).toBe('boolean');
  });
});

describe.skipIf(cuda.available)('without CUDA (this machine)', () => {
  it('explains why', () => {
    expect(cuda.available).toBe(false);
    expect(cuda.reason).toMatch(/^(built without CUDA|no driver|no device|the addon|CUDA error)/);
    expect(['not-built', 'load-failed', 'no-driver', 'no-device', 'cuda-error']).toContain(cuda.status);
  });

  it('refuses CudaDevice with CudaUnavailableError carrying the reason', () => {
    let thrown: unknown;
    try {
      new CudaDevice();
    } catch (error) {
      thrown = error;
    }
    expect(thrown).toBeInstanceOf(CudaUnavailableError);
    expect(thrown).toBeInstanceOf(DeviceError);
    expect((thrown as CudaUnavailableError).reason).toBe(cuda.reason);
    expect((thrown as Error).message).toContain(cuda.reason);
  });

  it('refuses the other entry points the same way, after validating arguments', () => {
    expect(() => cudaDeviceProperties(0)).toThrow(CudaUnavailableError);
    expect(() => allocatePinned(4096)).toThrow(CudaUnavailableError);
    expect(() => allocatePinned(-1)).toThrow(RangeError);
    expect(() => benchAllocation({ mode: 'malloc', bytes: 1024 })).toThrow(CudaUnavailableError);
    expect(() => benchAllocation({ mode: 'nope' as 'malloc', bytes: 1024 })).toThrow(TypeError);
    expect(() => new CudaDevice({ mode: 'bogus' as 'vmm' })).toThrow(TypeError);
    expect(() => new CudaDevice({ deviceIndex: -1 })).toThrow(RangeError);
  });

  it('keeps the process alive when the built addon is called directly without a driver', async () => {
    const { loadedAddon } = await import('../src/binding.js');
    const addon = loadedAddon();
    if (addon === undefined) return; // built without CUDA: nothing to call
    expect(addon.probe().status).not.toBe(0);
    let thrown: unknown;
    try {
      new addon.Context(0);
    } catch (error) {
      thrown = error;
    }
    expect(thrown).toMatchObject({ kind: 'cuda', cudaCode: cuda.cudaCode, cudaName: cuda.cudaName });
    expect(() => addon.allocPinned(16)).toThrow(/cudaHostAlloc/);
    expect(() => addon.benchAllocation(0, 'malloc', 1024, 1)).toThrow();
  });
});
