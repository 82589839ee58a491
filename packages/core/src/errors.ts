/**
 * Every error gpupool throws on purpose. Each class has a stable `code` (never reworded) so callers
 * can branch on it; messages are for people and may change.
 */

export type GpuPoolErrorCode =
  | 'ERR_GPUPOOL_ARGUMENT'
  | 'ERR_GPUPOOL_RANGE'
  | 'ERR_GPUPOOL_OUT_OF_MEMORY'
  | 'ERR_GPUPOOL_DOUBLE_RELEASE'
  | 'ERR_GPUPOOL_FOREIGN_BLOCK'
  | 'ERR_GPUPOOL_RELEASED_BLOCK'
  | 'ERR_GPUPOOL_POOL_DESTROYED'
  | 'ERR_GPUPOOL_DEVICE'
  | 'ERR_GPUPOOL_DEVICE_OUT_OF_MEMORY'
  | 'ERR_GPUPOOL_DEVICE_DESTROYED'
  | 'ERR_GPUPOOL_INJECTED_FAULT'
  | 'ERR_GPUPOOL_TRACE_FORMAT'
  | 'ERR_GPUPOOL_UNKNOWN_POLICY'
  | 'ERR_GPUPOOL_INVARIANT';

/**
 * Base class of every error of ours except the two argument errors below, which extend TypeError
 * and RangeError as Node's own argument errors do. `isGpuPoolError(e)` recognises all of them.
 */
export class GpuPoolError extends Error {
  readonly code: GpuPoolErrorCode;
  constructor(code: GpuPoolErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = new.target.name;
    this.code = code;
  }
}

/**
 * The `code` of an error, which the predicates below go by rather than by class: a device may throw
 * errors of another copy of core (a CommonJS and an ESM copy in one process: CudaDevice required in
 * a worker while the pool is imported), which `instanceof` would miss.
 */
function codeOf(error: unknown): unknown {
  return typeof error === 'object' && error !== null ? (error as { code?: unknown }).code : undefined;
}

/** True for every error gpupool throws on purpose: each carries a `code` starting `ERR_GPUPOOL_`. */
export function isGpuPoolError(error: unknown): error is Error & { code: string } {
  const code = codeOf(error);
  return error instanceof Error && typeof code === 'string' && code.startsWith('ERR_GPUPOOL_');
}

/** A public argument has the wrong type or shape (a `TypeError` for callers that check that). */
export class InvalidArgumentError extends TypeError {
  readonly code = 'ERR_GPUPOOL_ARGUMENT' as const;
  readonly argument: string;
  constructor(argument: string, rule: string, received?: unknown) {
    super(`${argument} ${rule}${received === undefined ? '' : `; received ${describe(received)}`}`);
    this.name = 'InvalidArgumentError';
    this.argument = argument;
  }
}

/** A public argument has the right type but is out of its allowed range. */
export class ArgumentRangeError extends RangeError {
  readonly code = 'ERR_GPUPOOL_RANGE' as const;
  readonly argument: string;
  constructor(argument: string, rule: string, received?: unknown) {
    super(`${argument} ${rule}${received === undefined ? '' : `; received ${describe(received)}`}`);
    this.name = 'ArgumentRangeError';
    this.argument = argument;
  }
}

/** Facts carried by an OutOfMemoryError, so callers can act on them without parsing text. */
export interface OutOfMemoryDetails {
  requestedBytes: number;
  liveBytes: number;
  reservedBytes: number;
  limitBytes: number;
  deviceFreeBytes: number;
  deviceTotalBytes: number;
  /**
   * The largest free run of the pool's address space (or, where the pool grows by segments, of a
   * new segment), bounded by what memory could back now (the limit and the device's free memory, in
   * whole pages): an upper bound on the block that could still be placed.
   */
  largestFreeBytes: number;
}

/** The device (or the pool's limit) refused memory even after the pool released its cache. */
export class OutOfMemoryError extends GpuPoolError {
  readonly details: OutOfMemoryDetails;
  constructor(details: OutOfMemoryDetails, cause?: unknown) {
    const d = details;
    super(
      'ERR_GPUPOOL_OUT_OF_MEMORY',
      `out of memory: requested ${formatBytes(d.requestedBytes)}; live ${formatBytes(d.liveBytes)}, ` +
        `reserved ${formatBytes(d.reservedBytes)}` +
        (Number.isFinite(d.limitBytes) ? ` of a ${formatBytes(d.limitBytes)} limit` : '') +
        `; device free ${formatBytes(d.deviceFreeBytes)} of ${formatBytes(d.deviceTotalBytes)}; ` +
        `largest free run ${formatBytes(d.largestFreeBytes)}. ` +
        'Try: release blocks you no longer need (pool.stats().leaks counts forgotten ones), ' +
        'call pool.trim(), raise limitBytes, or split the request into smaller blocks.',
      { cause },
    );
    this.details = details;
  }
}

export class DoubleReleaseError extends GpuPoolError {
  constructor(what: string) {
    super('ERR_GPUPOOL_DOUBLE_RELEASE', `${what} was already released`);
  }
}

export class ForeignBlockError extends GpuPoolError {
  constructor(what: string) {
    super('ERR_GPUPOOL_FOREIGN_BLOCK', `${what} belongs to another pool`);
  }
}

/** Reading the address or data of a block after release: the memory may already be someone else's. */
export class ReleasedBlockError extends GpuPoolError {
  constructor(what: string) {
    super('ERR_GPUPOOL_RELEASED_BLOCK', `${what}: the block was released; its memory is no longer yours`);
  }
}

export class PoolDestroyedError extends GpuPoolError {
  constructor(operation: string) {
    super('ERR_GPUPOOL_POOL_DESTROYED', `${operation}: the pool was destroyed`);
  }
}

/** A device call failed for a reason other than lack of memory. */
export class DeviceError extends GpuPoolError {
  readonly call: string;
  constructor(call: string, message: string, options?: { cause?: unknown; code?: GpuPoolErrorCode }) {
    super(options?.code ?? 'ERR_GPUPOOL_DEVICE', `${call}: ${message}`, options);
    this.call = call;
  }
}

/** A device refused memory. Pools turn this into OOM recovery, then OutOfMemoryError. */
export class DeviceOutOfMemoryError extends DeviceError {
  readonly requestedBytes: number;
  constructor(
    call: string,
    requestedBytes: number,
    message = 'device out of memory',
    code: GpuPoolErrorCode = 'ERR_GPUPOOL_DEVICE_OUT_OF_MEMORY',
  ) {
    super(call, message, { code });
    this.requestedBytes = requestedBytes;
  }
}

export class DeviceDestroyedError extends GpuPoolError {
  constructor(call: string) {
    super('ERR_GPUPOOL_DEVICE_DESTROYED', `${call}: the device was destroyed`);
  }
}

/** Raised by fault injection (SimulatedDevice `failOn`, FaultInjectingDevice). */
export class InjectedFaultError extends DeviceOutOfMemoryError {
  readonly callIndex: number;
  constructor(call: string, callIndex: number) {
    super(call, 0, `injected fault on device call #${callIndex}`, 'ERR_GPUPOOL_INJECTED_FAULT');
    this.callIndex = callIndex;
  }
}

/** Codes of the refusals: the device had no memory (DeviceOutOfMemoryError, injected faults included). */
const REFUSAL_CODES: ReadonlySet<unknown> = new Set([
  'ERR_GPUPOOL_DEVICE_OUT_OF_MEMORY',
  'ERR_GPUPOOL_INJECTED_FAULT',
]);
/** Codes of DeviceError and its subclasses. */
const DEVICE_ERROR_CODES: ReadonlySet<unknown> = new Set([...REFUSAL_CODES, 'ERR_GPUPOOL_DEVICE']);

/** A DeviceError or a subclass, of any copy of core (by code). */
export function isDeviceError(error: unknown): boolean {
  return DEVICE_ERROR_CODES.has(codeOf(error));
}

/** A device refused memory: DeviceOutOfMemoryError, injected faults included, of any copy of core (by code). */
export function isDeviceRefusal(error: unknown): boolean {
  return REFUSAL_CODES.has(codeOf(error));
}

export class TraceFormatError extends GpuPoolError {
  readonly line: number;
  constructor(line: number, message: string) {
    super('ERR_GPUPOOL_TRACE_FORMAT', `trace line ${line}: ${message}`);
    this.line = line;
  }
}

export class UnknownPolicyError extends GpuPoolError {
  constructor(name: string, known: readonly string[]) {
    super('ERR_GPUPOOL_UNKNOWN_POLICY', `unknown policy "${name}"; known policies: ${known.join(', ')}`);
  }
}

/** An internal invariant broke: a bug in gpupool, never the caller's fault. */
export class InvariantError extends GpuPoolError {
  constructor(message: string) {
    super('ERR_GPUPOOL_INVARIANT', `internal invariant violated: ${message}`);
  }
}

export function formatBytes(bytes: number): string {
  // NaN stands for a figure nobody could measure (memInfo refused; a pool that counts no bytes).
  if (Number.isNaN(bytes)) return 'unknown';
  if (!Number.isFinite(bytes)) return String(bytes);
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let value = bytes;
  let unit = 0;
  while (Math.abs(value) >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit++;
  }
  return unit === 0
    ? `${value} B`
    : `${value.toFixed(value >= 100 ? 0 : value >= 10 ? 1 : 2)} ${units[unit]}`;
}

function describe(value: unknown): string {
  if (typeof value === 'string') return JSON.stringify(value.length > 40 ? `${value.slice(0, 40)}…` : value);
  if (typeof value === 'bigint') return `${value}n`;
  if (value === null) return 'null';
  if (Array.isArray(value)) return `array(${value.length})`;
  if (typeof value === 'object') return `an object (${(value as object).constructor?.name ?? 'Object'})`;
  return String(value);
}
