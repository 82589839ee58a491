/**
 * Runs the pool conformance suite over every policy on the devices core ships:
 * SimulatedDevice in vmm and in segment mode, and HostDevice (real bytes in a SharedArrayBuffer).
 */
import { GiB, HostDevice, MiB, SimulatedDevice } from '../src/index.js';
import { poolConformanceSuite } from './conformance/pool-conformance.js';

poolConformanceSuite('SimulatedDevice (vmm)', () => new SimulatedDevice({ capacityBytes: 8 * GiB }));
poolConformanceSuite(
  'SimulatedDevice (segments)',
  () => new SimulatedDevice({ capacityBytes: 8 * GiB, vmm: false }),
);
poolConformanceSuite('HostDevice', () => new HostDevice({ capacityBytes: 160 * MiB }));
