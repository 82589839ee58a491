/**
 * A progress bar on stderr for long runs. Draws nothing during the first second (short runs stay
 * quiet), nothing when stderr is not a terminal (logs and pipes stay clean), at most 10 times a
 * second, and erases itself when done.
 */

export interface Progress {
  /** Sets the work done so far (0..total) and an optional label for the current item. */
  update(done: number, label?: string): void;
  /** Changes the amount of work (when the caller knows it only later). */
  setTotal(total: number): void;
  done(): void;
}

export interface ProgressOptions {
  /** Default: process.stderr. */
  stream?: NodeJS.WriteStream;
  /** Force on or off; default: on when the stream is a TTY. */
  enabled?: boolean;
  /** Quiet period before the first draw (default 1000 ms). */
  delayMs?: number;
}

const BAR_WIDTH = 28;
const REDRAW_MS = 100;

export function createProgress(title: string, total: number, options: ProgressOptions = {}): Progress {
  const stream = options.stream ?? process.stderr;
  const enabled = options.enabled ?? stream.isTTY === true;
  const delayMs = options.delayMs ?? 1000;
  const startMs = Date.now();
  let lastDrawMs = 0;
  let drawn = false;
  let current = 0;
  let currentLabel = '';
  const draw = (): void => {
    const fraction = total > 0 ? Math.min(1, current / total) : 0;
    const filled = Math.round(fraction * BAR_WIDTH);
    const elapsedS = (Date.now() - startMs) / 1000;
    const etaS = fraction > 0 ? (elapsedS / fraction) * (1 - fraction) : Number.NaN;
    const eta = Number.isFinite(etaS) ? ` eta ${etaS.toFixed(0)}s` : '';
    const text = `${title} [${'#'.repeat(filled)}${'.'.repeat(BAR_WIDTH - filled)}] ${(fraction * 100).toFixed(0)}%${eta} ${currentLabel}`;
    stream.write(`\r${text.slice(0, (stream.columns ?? 120) - 1)}\x1b[K`);
    drawn = true;
  };
  return {
    update(done, label) {
      current = done;
      if (label !== undefined) currentLabel = label;
      if (!enabled) return;
      const now = Date.now();
      if (now - startMs < delayMs || now - lastDrawMs < REDRAW_MS) return;
      lastDrawMs = now;
      draw();
    },
    setTotal(n) {
      total = n;
    },
    done() {
      if (drawn) stream.write('\r\x1b[K');
    },
  };
}
