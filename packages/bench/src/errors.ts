/**
 * The bench package's typed errors. Each has a stable `code`; the CLI turns them into one clear
 * line on stderr and a non-zero exit status (2 for usage, 3 for an unavailable device, 4 for
 * unreadable input, 5 for output that cannot be written).
 */

export type BenchErrorCode =
  | 'ERR_GPUPOOL_BENCH_USAGE'
  | 'ERR_GPUPOOL_BENCH_DEVICE'
  | 'ERR_GPUPOOL_BENCH_INPUT'
  | 'ERR_GPUPOOL_BENCH_OUTPUT';

export class BenchError extends Error {
  readonly code: BenchErrorCode;
  /** The process exit status the CLI uses for this error. */
  readonly exitCode: number;
  constructor(code: BenchErrorCode, message: string, exitCode: number, options?: { cause?: unknown }) {
    super(message, options);
    this.name = new.target.name;
    this.code = code;
    this.exitCode = exitCode;
  }
}

/** A bad command line: unknown command or option, a missing or malformed value. */
export class BenchUsageError extends BenchError {
  constructor(message: string) {
    super('ERR_GPUPOOL_BENCH_USAGE', message, 2);
  }
}

/** The requested device cannot be used here (e.g. `--device cuda` without a CUDA GPU). */
export class BenchDeviceError extends BenchError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('ERR_GPUPOOL_BENCH_DEVICE', message, 3, options);
  }
}

/** An input file (trace, results JSON) that cannot be read or understood. */
export class BenchInputError extends BenchError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('ERR_GPUPOOL_BENCH_INPUT', message, 4, options);
  }
}

/** An output file (the HTML report) that cannot be written once the results are in. */
export class BenchOutputError extends BenchError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('ERR_GPUPOOL_BENCH_OUTPUT', message, 5, options);
  }
}
