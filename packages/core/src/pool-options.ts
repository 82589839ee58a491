/**
 * The pool's options: their types, and the checks and defaults that turn them into a policy and a
 * backing. Every check throws a typed error naming the option and the rule, before anything is
 * reserved on the device.
 */
import type { Backing } from './backing.js';
import type { Device, StreamHandle } from './device.js';
import type { DType } from './dtype.js';
import { ArgumentRangeError, InvalidArgumentError } from './errors.js';
import type { LeakReport } from './leak-detector.js';
import type { Policy, PolicyFactory } from './policies/policy.js';
import { createPolicy, DEFAULT_POLICY, DEFAULT_POLICY_GROUPED } from './policies/registry.js';
import { alignUp } from './units.js';
import { VmmBacking } from './vmm-backing.js';

export type AcquireRequest = number | { shape: readonly number[]; dtype?: DType };

export interface AcquireOptions {
  /** The stream the block will be used on (default 0). */
  stream?: StreamHandle;
  /** Power of two; at least 256 is always given. */
  alignmentBytes?: number;
}

export interface PrewarmSpec {
  shape: readonly number[];
  dtype?: DType;
  count: number;
}

export interface PoolOptions {
  device: Device;
  /**
   * A registered policy name ('bestFit', 'bestFitPools', 'sizeClass', 'tlsf', 'exactShape'), a
   * factory, or an instance. Default: 'bestFitPools' where the pool maps pages on a device whose
   * allocations span several pages (CudaDevice), else 'bestFit' (defaultPolicyName).
   */
  policy?: string | Policy | PolicyFactory;
  /** Most device memory the pool may hold. Default: the device's total. */
  limitBytes?: number;
  /** 'vmm' maps pages of one arena; 'segments' allocates whole segments. Default: vmm if the device has it. */
  mode?: 'vmm' | 'segments';
  /** Address space reserved for the arena (vmm). Default: twice limitBytes, or once if the device refuses that. */
  arenaBytes?: number;
  /** Most empty memory kept mapped, as a fraction of reserved bytes (vmm; default 1: bounded by the high-water swap). */
  retainFraction?: number;
  /** Room above the peak of pages live blocks needed before empty pages are swapped out (vmm; default 0). */
  highWaterSlack?: number;
  /** Page swaps at the high-water mark allowed before the mark rises instead (vmm; default unlimited, 64 where the device's allocations span several pages). */
  swapsPerRaise?: number;
  /**
   * When the policy's choice needs new pages, take a mapped free block up to this many times the
   * request instead (vmm; default 8 where the device's allocations span several pages, else 0: off).
   * Used by bestFit; bestFitPools, the default there, places without it (it measured worse inside
   * the two pools: docs/benchmarks.md).
   */
  mappedFitFactor?: number;
  /** Map ahead to the allocation window's end when the high-water mark rises, within this fraction of touched pages (vmm; default 0: off). */
  mapAheadFraction?: number;
  /** Empty bytes always kept mapped (vmm; default 2 pages). */
  retainMinBytes?: number;
  /**
   * Give back pages that stayed empty this long (vmm): a timer, never keeping the process alive,
   * runs pool.releaseIdle() every releaseAfterMs, so a page is unmapped after being empty between
   * one and two periods. Default: off (memory is kept up to the high-water mark until trim()).
   */
  releaseAfterMs?: number;
  /**
   * Report blocks garbage-collected without release. 'sampled' (default) watches one block in
   * `leakSampleEvery` (256): a leak that repeats is caught at almost no cost, while watching every
   * block ('all' or true) costs ~0.6 µs per block in V8's FinalizationRegistry. false or 'off'
   * turns it off. Aged blocks (leakAgeMs) are checked for every block regardless.
   */
  detectLeaks?: boolean | 'all' | 'sampled' | 'off';
  /** With detectLeaks 'sampled': watch one block in this many (a power of two; default 256). */
  leakSampleEvery?: number;
  /**
   * Bytes of recently released small blocks kept whole for immediate reuse by an acquire of the
   * same size (default 1 MiB; 0 turns the cache off). Caching policies (exactShape) have their own.
   */
  blockCacheBytes?: number;
  /** Record each block's allocation stack for leak reports and snapshots (default false; costly). */
  captureStacks?: boolean;
  /** Report blocks live longer than this as suspected leaks (default: off). */
  leakAgeMs?: number;
  onLeak?: (report: LeakReport) => void;
  /** Advanced: a custom backing (used by @gpupool/workers for per-thread slices). */
  backing?: Backing;
  /** A label for snapshots and reports. */
  name?: string;
}

/**
 * The policy a pool gets when none is given: DEFAULT_POLICY_GROUPED where the pool maps pages
 * itself (vmm mode, its own backing) on a device whose allocations span several pages, since only
 * whole allocations unmap there; DEFAULT_POLICY elsewhere.
 */
export function defaultPolicyName(device: Device, options: Pick<PoolOptions, 'mode' | 'backing'>): string {
  const grouped = (device.allocationBytes ?? device.pageBytes) > device.pageBytes;
  return grouped && options.backing === undefined && mapsPages(device, options.mode)
    ? DEFAULT_POLICY_GROUPED
    : DEFAULT_POLICY;
}

/** Whether a pool maps pages itself ('vmm') rather than taking segments: `mode`, else what the device offers. */
export function mapsPages(device: Device, mode: PoolOptions['mode']): boolean {
  return (mode ?? (device.vmm ? 'vmm' : 'segments')) === 'vmm';
}

export function resolvePolicy(policy: PoolOptions['policy'], defaultName: string = DEFAULT_POLICY): Policy {
  if (policy === undefined) return createPolicy(defaultName);
  if (typeof policy === 'string') return createPolicy(policy);
  if (typeof policy === 'function') {
    // Checked before the pool reserves anything: a bad factory must not leave a reservation behind.
    const made = policy();
    if (isPolicy(made)) return made;
    throw new InvalidArgumentError(
      'policy',
      `is a factory, so it must return a Policy (${POLICY_RULE})`,
      made,
    );
  }
  if (isPolicy(policy)) return policy;
  throw new InvalidArgumentError(
    'policy',
    `must be a policy name, a factory or a Policy (${POLICY_RULE})`,
    policy,
  );
}

/** The methods a pool calls on its policy: one missing would fail later, inside acquire or release. */
const POLICY_METHODS = [
  'addRange',
  'removeRange',
  'allocate',
  'addressOf',
  'sizeOf',
  'free',
  'flush',
  'freeBytes',
  'largestFreeBytes',
  'forEachFree',
] as const;

const POLICY_RULE = `an object with ${POLICY_METHODS.join(', ')} methods`;

/** The methods a pool calls on its backing (see Policy's). */
const BACKING_METHODS = [
  'attach',
  'grow',
  'occupy',
  'vacate',
  'trim',
  'arenaOf',
  'snapshot',
  'destroy',
] as const;

function isPolicy(value: unknown): value is Policy {
  return (
    typeof value === 'object' &&
    value !== null &&
    POLICY_METHODS.every((method) => typeof (value as Policy)[method] === 'function')
  );
}

/** Whether `value` is a Backing: every method the pool calls, and a page size. */
export function isBacking(value: unknown): value is Backing {
  return (
    typeof value === 'object' &&
    value !== null &&
    BACKING_METHODS.every((method) => typeof (value as Backing)[method] === 'function') &&
    typeof (value as Backing).pageBytes === 'number' &&
    (value as Backing).pageBytes > 0
  );
}

export function makeVmmBacking(device: Device, limitBytes: number, options: PoolOptions): VmmBacking {
  const page = device.pageBytes;
  const base = {
    device,
    limitBytes,
    retainFraction: options.retainFraction,
    retainMinBytes: options.retainMinBytes,
    highWaterSlack: options.highWaterSlack,
    swapsPerRaise: options.swapsPerRaise,
    mappedFitFactor: options.mappedFitFactor,
    mapAheadFraction: options.mapAheadFraction,
  };
  if (options.arenaBytes !== undefined) {
    const arenaBytes = checkOptionalPositive(options.arenaBytes, 'arenaBytes')!;
    return new VmmBacking({ ...base, arenaBytes: alignUp(arenaBytes, page) });
  }
  const once = alignUp(Math.min(limitBytes, device.totalBytes), page);
  try {
    return new VmmBacking({ ...base, arenaBytes: 2 * once });
  } catch {
    return new VmmBacking({ ...base, arenaBytes: once });
  }
}

export function checkOptionalPositive(
  value: unknown,
  argument: string,
  allowZero = false,
): number | undefined {
  if (value === undefined) return undefined;
  if (typeof value !== 'number' || Number.isNaN(value))
    throw new InvalidArgumentError(argument, 'must be a number', value);
  if (!(allowZero ? value >= 0 : value > 0) || !Number.isFinite(value)) {
    throw new ArgumentRangeError(
      argument,
      allowZero ? 'must be a finite number ≥ 0' : 'must be a finite number > 0',
      value,
    );
  }
  return value;
}

export function checkOptionalFraction(value: unknown, argument: string): void {
  if (value === undefined) return;
  if (typeof value !== 'number' || !(value >= 0 && value <= 1)) {
    throw new ArgumentRangeError(argument, 'must be a number in [0, 1]', value);
  }
}
