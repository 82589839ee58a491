/**
 * Records a pool's acquires and releases in the trace format, up to `maxOps` operations
 * (default 10 million; then recording stops and `truncated` is set).
 */
import { ArgumentRangeError, InvalidArgumentError } from '../errors.js';
import { OP_ALLOCATE, OP_FREE, parseTrace, type Trace, writeTrace } from './trace-format.js';

export interface TraceRecorderOptions {
  maxOps?: number;
  /** A comment written at the top (one comment line per line of it). */
  comment?: string;
}

export class TraceRecorder {
  private kinds: number[] = [];
  private ids: number[] = [];
  private bytes: number[] = [];
  private readonly maxOps: number;
  private readonly comments: string[];
  private readonly onStop: () => void;
  private stopped = false;
  truncated = false;

  constructor(options: TraceRecorderOptions = {}, onStop: () => void) {
    const maxOps = options.maxOps ?? 10_000_000;
    if (!Number.isSafeInteger(maxOps) || maxOps <= 0)
      throw new ArgumentRangeError('maxOps', 'must be a positive integer', maxOps);
    this.maxOps = maxOps;
    const comment = options.comment;
    if (comment !== undefined && typeof comment !== 'string')
      throw new InvalidArgumentError('comment', 'must be a string', comment);
    // Each line its own comment: a line break inside one would start a line that is no operation.
    this.comments = comment === undefined ? [] : comment.split(/\r?\n|\r/);
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

  /** The operations as recorded, with the pool's block IDs (frees of earlier blocks included). */
  toString(): string {
    // Not through formatTrace's Int32Array: a long-running pool's IDs pass 2^31.
    const lines = this.comments.map((c) => `# ${c}`);
    for (let i = 0; i < this.kinds.length; i++) {
      lines.push(this.kinds[i] === OP_ALLOCATE ? `a ${this.ids[i]} ${this.bytes[i]}` : `f ${this.ids[i]}`);
    }
    return `${lines.join('\n')}\n`;
  }

  /**
   * The recording as a parsed Trace (frees of blocks acquired before recording started are dropped).
   * IDs count from 0 at the first block acquired while recording: the format's IDs stop at 2^31,
   * which a pool's own pass after 2^31 acquires.
   */
  toTrace(name = 'recorded'): Trace {
    return parseTrace(this.traceText(), name);
  }

  /** Writes the recording as toTrace() reads it, so readTrace() reads it back (gzip when the path ends in .gz). */
  writeFile(path: string): void {
    writeTrace(path, this.traceText());
  }

  /** The recording in the trace format: see toTrace(). */
  private traceText(): string {
    const acquiredHere = new Set<number>();
    const lines = this.comments.map((c) => `# ${c}`);
    let firstId = -1;
    for (let i = 0; i < this.kinds.length; i++) {
      const id = this.ids[i]!;
      if (this.kinds[i] === OP_ALLOCATE) {
        if (firstId < 0) firstId = id;
        acquiredHere.add(id);
        lines.push(`a ${id - firstId} ${this.bytes[i]}`);
      } else if (acquiredHere.delete(id)) {
        lines.push(`f ${id - firstId}`);
      }
    }
    return `${lines.join('\n')}\n`;
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
