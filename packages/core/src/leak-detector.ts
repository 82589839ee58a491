/**
 * Leak detection. Two ways a block is reported:
 * - it was garbage-collected without release (FinalizationRegistry): a certain leak. The pool
 *   then reclaims its memory, since nothing can reach the handle any more;
 * - it is older than `leakAgeMs` (the seed's age threshold): a suspected leak, reported once,
 *   not reclaimed. The check runs on a timer that never keeps the process alive.
 */
import type { DType } from './dtype.js';

export interface LeakReport {
  kind: 'collected' | 'aged';
  blockId: number;
  bytes: number;
  shape: readonly number[] | undefined;
  dtype: DType | undefined;
  ageMs: number;
  /** Allocation stack, when the pool was created with captureStacks. */
  stack: string | undefined;
}

export class LeakDetector {
  private readonly registry: FinalizationRegistry<number>;
  private timer: ReturnType<typeof setInterval> | undefined;

  /** `onCollected` receives the slot of a block that was collected without release. */
  constructor(onCollected: (slot: number) => void) {
    this.registry = new FinalizationRegistry(onCollected);
  }

  watch(block: object, slot: number): void {
    // The held value is the slot number (no allocation); release unregisters, so a slot seen
    // by the callback still belongs to the collected block.
    this.registry.register(block, slot, block);
  }

  unwatch(block: object): void {
    this.registry.unregister(block);
  }

  /** Runs `check` every intervalMs without keeping the process alive. */
  startAgeChecks(intervalMs: number, check: () => void): void {
    this.stopAgeChecks();
    this.timer = setInterval(check, intervalMs);
    this.timer.unref?.();
  }

  stopAgeChecks(): void {
    if (this.timer !== undefined) clearInterval(this.timer);
    this.timer = undefined;
  }
}
