import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { DeviceError } from '@gpupool/core';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { benchAllocation } from '../src/bench.js';
import { classifyProbe, cuda, loadedAddon } from '../src/binding.js';
import { CudaDevice, cudaDeviceProperties } from '../src/cuda-device.js';
import { CudaUnavailableError } from '../src/errors.js';
import type { NativeProbe } from '../src/native-api.js';
import { allocatePinned } from '../src/pinned.js';
import { expectAddonRefusal } from './addon-refusal.js';

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

  it('says "built without CUDA" when the package’s own .node file is missing, without throwing', async () => {
    vi.stubEnv('GPUPOOL_NATIVE_ADDON', '');
    vi.resetModules();
    // As if the build had skipped the addon: no file where the package keeps it.
    vi.doMock('node:fs', async (importOriginal) => ({
      ...(await importOriginal<typeof import('node:fs')>()),
      existsSync: () => false,
    }));
    try {
      const fresh = await import('../src/binding.js');
      expect(fresh.cuda).toMatchObject({ available: false, status: 'not-built' });
      expect(fresh.cuda.reason).toMatch(/^built without CUDA: .*gpupool_native\.node does not exist.*nvcc/);
      expect(fresh.loadedAddon()).toBeUndefined();
    } finally {
      vi.doUnmock('node:fs');
    }
  });

  it('names GPUPOOL_NATIVE_ADDON when the file it names is missing, without throwing', async () => {
    vi.stubEnv('GPUPOOL_NATIVE_ADDON', '/nonexistent/gpupool_native.node');
    vi.resetModules();
    const fresh = await import('../src/binding.js');
    expect(fresh.cuda).toMatchObject({ available: false, status: 'load-failed' });
    expect(fresh.cuda.reason).toMatch(
      /^the addon GPUPOOL_NATIVE_ADDON names, \/nonexistent\/gpupool_native\.node, does not exist/,
    );
    expect(fresh.loadedAddon()).toBeUndefined();
  });

  it('resolves a relative GPUPOOL_NATIVE_ADDON against the working directory, for the check and the load alike', async () => {
    const dir = mkdtempSync(join(process.cwd(), 'tmp-addon-'));
    try {
      const file = join(dir, 'broken.node');
      writeFileSync(file, 'not an ELF file');
      vi.stubEnv('GPUPOOL_NATIVE_ADDON', relative(process.cwd(), file));
      vi.resetModules();
      const fresh = await import('../src/binding.js');
      expect(fresh.cuda.addonPath).toBe(file);
      // The file was found and loaded (and refused as not an ELF file), not looked up as a package.
      expect(fresh.cuda).toMatchObject({ available: false, status: 'load-failed' });
      expect(fresh.cuda.reason).not.toMatch(/Cannot find module/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
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

  it('refuses an addon of another interface version as "load-failed", naming both versions', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'gpupool-'));
    try {
      // A JavaScript stand-in (require() loads .cjs as JavaScript): an addon built from an older package.
      const file = join(dir, 'old-addon.cjs');
      writeFileSync(
        file,
        'module.exports = { abiVersion: 0, probe() { globalThis.__gpupoolProbed = true; } };',
      );
      vi.stubEnv('GPUPOOL_NATIVE_ADDON', file);
      vi.resetModules();
      const fresh = await import('../src/binding.js');
      const probed = (globalThis as { __gpupoolProbed?: boolean }).__gpupoolProbed === true;
      expect(fresh.cuda).toMatchObject({ available: false, status: 'load-failed' });
      expect(fresh.cuda.reason).toMatch(
        new RegExp(`has interface version 0, this package needs ${fresh.NATIVE_ABI_VERSION} .*rebuild it`),
      );
      expect(fresh.loadedAddon()).toBeUndefined();
      expect(probed).toBe(false); // refused before any of its functions ran
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
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

/**
 * The addon is loadable on its own, so its entry points check what the TypeScript wrapper would
 * have: these refusals come before any CUDA call, so they run wherever the addon is built (with or
 * without a GPU). The Context methods' checks are exercised in cuda-gpu.test.ts.
 */
describe.skipIf(loadedAddon() === undefined)(
  'the built addon checks its arguments before any CUDA call',
  () => {
    it('refuses sizes that are negative, fractional, not numbers or past 2^53 (no wrap-around to size_t)', () => {
      const addon = loadedAddon() as NonNullable<ReturnType<typeof loadedAddon>>;
      for (const bytes of [-1, -(2 ** 21), 0, 1.5, Number.NaN, Number.POSITIVE_INFINITY, 2 ** 53, '8', 8n]) {
        expectAddonRefusal(
          () => addon.allocPinned(bytes as number),
          /^allocPinned: bytes must be a (number|positive integer)/,
        );
      }
      expectAddonRefusal(() => addon.benchAllocation(0, 'malloc', -1, 1), /benchAllocation: bytes/);
    });

    it('refuses bad indices, counts and types', () => {
      const addon = loadedAddon() as NonNullable<ReturnType<typeof loadedAddon>>;
      expectAddonRefusal(
        () => addon.benchAllocation(0, 'malloc', 1024, 0),
        /benchAllocation: iterations must be an integer in 1\.\./,
      );
      expectAddonRefusal(
        () => addon.benchAllocation(0, 7 as unknown as string, 1024, 1),
        /benchAllocation: mode must be a string/,
      );
      expectAddonRefusal(() => addon.benchAllocation(-1, 'malloc', 1024, 1), /benchAllocation: deviceIndex/);
      expectAddonRefusal(() => addon.deviceProperties(0.5), /deviceProperties: deviceIndex/);
      expectAddonRefusal(() => new addon.Context(-1), /^deviceIndex must be an integer/);
      expectAddonRefusal(() => new addon.Context('0' as unknown as number), /^deviceIndex must be a number/);
      expectAddonRefusal(
        () => addon.freePinned(new Uint8Array(8) as unknown as ArrayBuffer),
        /freePinned: buffer must be an ArrayBuffer/,
      );
      let thrown: unknown;
      try {
        addon.freePinned(new ArrayBuffer(8));
      } catch (error) {
        thrown = error;
      }
      expect(thrown).toMatchObject({
        kind: 'handle',
        message: expect.stringMatching(/not a live pinned buffer/),
      });
    });
  },
);
