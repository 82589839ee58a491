/**
 * SimulatedDevice: bookkeeping only, no bytes behind the addresses. Any capacity (80 GiB is
 * fine), 2 MiB pages by default, VMM or segment mode, fault injection through `failOn`.
 * Stream events stay pending until the stream or event is synchronized, or `completeAllWork()`
 * is called, so cross-stream reuse can be tested.
 */
import { alignUp, GiB } from '../units.js';
import { checkCapacity, StandInDevice, type StandInDeviceOptions } from './stand-in-device.js';

export type SimulatedDeviceOptions = StandInDeviceOptions;

export class SimulatedDevice extends StandInDevice {
  readonly kind = 'simulated';
  protected readonly baseAddress = 0x7f00_0000_0000n;

  constructor(options: SimulatedDeviceOptions) {
    const { capacityBytes, pageBytes } = checkCapacity(options, 'SimulatedDevice');
    // Address space: room to reserve an arena as large as the device, several times over, and never
    // less than 1 GiB, so tests can reserve ranges larger than capacity (reservation is not memory).
    const addressSpaceBytes = alignUp(Math.max(8 * capacityBytes, GiB), pageBytes);
    super({ name: `SimulatedDevice(${capacityBytes} B)`, ...options }, 'SimulatedDevice', {
      state: {
        pageMapped: new Uint8Array(addressSpaceBytes / pageBytes),
        used: new BigInt64Array(1),
      },
      addressSpaceBytes,
      carves: true,
      eventsCompleteAtOnce: false,
    });
  }

  /** Marks every recorded event complete, as if the GPU caught up with all queued work. */
  completeAllWork(): void {
    this.completeEvents();
  }
}
