/**
 * Errors specific to @gpupool/workers, each with a stable `code` (never reworded). Argument errors
 * use core's InvalidArgumentError / ArgumentRangeError; memory refusals become core's
 * OutOfMemoryError through the slice pool's recovery path.
 */

export type WorkersErrorCode =
  | 'ERR_GPUPOOL_WORKERS_NO_ARENA'
  | 'ERR_GPUPOOL_WORKERS_UNKNOWN_ARENA'
  | 'ERR_GPUPOOL_WORKERS_SLICES_EXHAUSTED'
  | 'ERR_GPUPOOL_WORKERS_UNSHAREABLE_DEVICE'
  | 'ERR_GPUPOOL_WORKERS_NOT_EXPORTABLE'
  | 'ERR_GPUPOOL_WORKERS_DESTROYED';

export class WorkersError extends Error {
  readonly code: WorkersErrorCode;
  constructor(code: WorkersErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = new.target.name;
    this.code = code;
  }
}

/** `threadPool()` was called in a thread that was not started by `createWorkerPool` (and no arena was created here). */
export class NoArenaError extends WorkersError {
  constructor() {
    super(
      'ERR_GPUPOOL_WORKERS_NO_ARENA',
      'threadPool(): this thread has no shared arena; call it inside a task of a pool made by createWorkerPool(), ' +
        'or in the thread that created that pool',
    );
  }
}

/** A descriptor names an arena this thread is not attached to. */
export class UnknownArenaError extends WorkersError {
  constructor(arenaId: number) {
    super(
      'ERR_GPUPOOL_WORKERS_UNKNOWN_ARENA',
      `fromDescriptor(): arena ${arenaId} is not attached in this thread; descriptors only travel between threads of one worker pool`,
    );
  }
}

/** Every slice slot of the arena is in use (raise `maxSlices`). */
export class SlicesExhaustedError extends WorkersError {
  constructor(slots: number) {
    super(
      'ERR_GPUPOOL_WORKERS_SLICES_EXHAUSTED',
      `all ${slots} slice slots of the arena are in use; raise maxSlices or use fewer threads`,
    );
  }
}

/** The device cannot be opened from another thread. */
export class UnshareableDeviceError extends WorkersError {
  constructor(detail: string, cause?: unknown) {
    super(
      'ERR_GPUPOOL_WORKERS_UNSHAREABLE_DEVICE',
      `the device cannot be used from worker threads: ${detail}`,
      {
        cause,
      },
    );
  }
}

/** `toDescriptor` was given a block that does not come from a slice pool of this package. */
export class NotExportableError extends WorkersError {
  constructor(what: string) {
    super(
      'ERR_GPUPOOL_WORKERS_NOT_EXPORTABLE',
      `toDescriptor(): ${what} is not a live block of a thread pool (threadPool()) of @gpupool/workers`,
    );
  }
}

/** The worker pool or its arena was destroyed. */
export class WorkersDestroyedError extends WorkersError {
  constructor(operation: string) {
    super('ERR_GPUPOOL_WORKERS_DESTROYED', `${operation}: the worker pool was destroyed`);
  }
}
