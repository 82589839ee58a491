/**
 * Records a pool's acquires and releases in the trace format, up to `maxOps` operations
 * (default 10 million; then recording stops and `truncated` is set).
 */
import { ArgumentRangeError } from '../errors.js';
import { formatTrace, OP_ALLOCATE, OP_FREE, parseTrace, type Trace, writeTrace } from './trace-format.js';

export interface TraceRecorderOptions {
  maxOps?: number;
  /** A comment line written at the top. */
  comment?: string;
}

export class TraceRecorder {
  private kinds: number[] = [];
  private ids: number[] = [];
  private bytes: number[] = [];
  private readonly maxOps: number;
  private readonly comment: string | undefined;
  private readonly onStop: () => void;
  private stopped = false;
  truncated = false;

  constructor(options: TraceRecorderOptions = {}, onStop: () => void) {
    const maxOps = options.maxOps ?? 10_000_000;
    if (!Number.isSafeInteger(maxOps) || maxOps <= 0)
      throw new ArgumentRangeError('maxOps', 'must be a positive integer', maxOps);
    this.maxOps = maxOps;
    this.comment = options.comment;
    this.onStop = onStop;
  }

  get length(): number {
    return this.kinds.length;
  }

  get recording(): boolean {
    return !this.stopped;
  }

  /** @internal */
  acquired(id: number, bytes: number): void {
    if (this.full()) return;
    this.kinds.push(OP_ALLOCATE);
    this.ids.push(id);
    this.bytes.push(bytes);
  }

  /** @internal */
  released(id: number): void {
    if (this.full()) return;
    this.kinds.push(OP_FREE);
    this.ids.push(id);
    this.bytes.push(0);
  }

  stop(): void {
    if (this.stopped) return;
    this.stopped = true;
    this.onStop();
  }

  toString(): string {
    return formatTrace({
      length: this.kinds.length,
      kinds: Uint8Array.from(this.kinds),
      ids: Int32Array.from(this.ids),
      bytes: Float64Array.from(this.bytes),
      comments: this.comment === undefined ? [] : [this.comment],
    });
  }

  /** The recording as a parsed Trace (frees of blocks acquired before recording started are dropped). */
  toTrace(name = 'recorded'): Trace {
    const acquiredHere = new Set<number>();
    const lines: string[] = [];
    for (let i = 0; i < this.kinds.length; i++) {
      const id = this.ids[i]!;
      if (this.kinds[i] === OP_ALLOCATE) {
        acquiredHere.add(id);
        lines.push(`a ${id} ${this.bytes[i]}`);
      } else if (acquiredHere.delete(id)) {
        lines.push(`f ${id}`);
      }
    }
    return parseTrace(lines.join('\n'), name);
  }

  /** Writes the recording (gzip when the path ends in .gz). */
  writeFile(path: string): void {
    writeTrace(path, this.toString());
  }

  private full(): boolean {
    if (this.stopped) return true;
    if (this.kinds.length >= this.maxOps) {
      this.truncated = true;
      this.stop();
      return true;
    }
    return false;
  }
}
