/**
 * Core's pool conformance suite, run against CudaDevice: on a GPU in 'vmm' and 'malloc' modes
 * (skipped where CUDA is not available), and everywhere against CudaDevice over the fake addon, which
 * checks the wrapper's Device contract on CI. The suite lives in core's tests and is imported by path.
 */
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import type { Device } from '@gpupool/core';
import { describe, it } from 'vitest';
import { cuda } from '../src/binding.js';
import { CudaDevice } from '../src/cuda-device.js';
import { FAKE_PAGE_BYTES, FakeAddon } from './fake-addon.js';

type Suite = (deviceName: string, makeDevice: () => Device) => void;

const suiteUrl = new URL('../../core/test/conformance/pool-conformance.ts', import.meta.url);
const suite: Suite | undefined = existsSync(fileURLToPath(suiteUrl))
  ? ((await import(suiteUrl.href)) as { poolConformanceSuite?: Suite }).poolConformanceSuite
  : undefined;

if (suite === undefined) {
  describe('core pool conformance suite', () => {
    it.skip('is not in packages/core/test/conformance yet', () => {});
  });
} else {
  describe('CudaDevice over the fake addon (CI)', () => {
    suite('CudaDevice(fake vmm)', () =>
      new CudaDevice({ mode: 'vmm' }, new FakeAddon({ capacityBytes: 512 * FAKE_PAGE_BYTES })));
    suite('CudaDevice(fake malloc)', () =>
      new CudaDevice({ mode: 'malloc' }, new FakeAddon({ capacityBytes: 512 * FAKE_PAGE_BYTES })));
  });
  describe.skipIf(!cuda.available)('CudaDevice on a GPU', () => {
    suite('CudaDevice(vmm)', () => new CudaDevice({ mode: 'vmm' }));
    suite('CudaDevice(malloc)', () => new CudaDevice({ mode: 'malloc' }));
  });
}
