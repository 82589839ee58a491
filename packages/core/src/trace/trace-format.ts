/**
 * The allocation-trace format (../shared/traces/README.md): text, optionally gzip, one
 * operation a line; `a ID BYTES` allocates, `f ID` frees; `#` starts a comment line.
 * Parsed into flat typed arrays so a replay touches no strings.
 */

import { readFileSync, writeFileSync } from 'node:fs';
import { gunzipSync, gzipSync } from 'node:zlib';
import { TraceFormatError } from '../errors.js';

export const OP_ALLOCATE = 0;
export const OP_FREE = 1;

export interface Trace {
  name: string;
  /** Comment lines, without the leading '#'. */
  comments: string[];
  length: number;
  /** OP_ALLOCATE or OP_FREE per operation. */
  kinds: Uint8Array;
  ids: Int32Array;
  /** Bytes for allocations; 0 for frees. */
  bytes: Float64Array;
  /** Largest ID + 1: the size of an array indexed by ID. */
  idCount: number;
  /** Peak of the sum of live bytes over the trace. */
  peakLiveBytes: number;
  allocations: number;
  /** IDs still live at the end. */
  liveAtEnd: number;
}

const MAX_TRACE_ID = 2 ** 31 - 1;
/** IDs and sizes are plain decimal digits: Number() alone would also take '1e3', '0x10' or ''. */
const DECIMAL = /^[0-9]+$/;

/** Parses trace text (or gzip bytes). Throws TraceFormatError with the line number on bad input. */
export function parseTrace(input: string | Uint8Array, name = 'trace'): Trace {
  let text: string;
  if (typeof input === 'string') text = input;
  else if (input.length >= 2 && input[0] === 0x1f && input[1] === 0x8b)
    text = gunzipSync(input).toString('utf8');
  else text = Buffer.from(input.buffer, input.byteOffset, input.byteLength).toString('utf8');

  const lines = text.split('\n');
  const kinds = new Uint8Array(lines.length);
  const ids = new Int32Array(lines.length);
  const bytes = new Float64Array(lines.length);
  const comments: string[] = [];
  const liveBytesById = new Map<number, number>();
  let n = 0;
  let live = 0;
  let peak = 0;
  let allocations = 0;
  let idCount = 0;
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i]!.trim();
    if (line === '') continue;
    if (line.startsWith('#')) {
      comments.push(line.slice(1).trim());
      continue;
    }
    const parts = line.split(/\s+/);
    const op = parts[0];
    if (op !== 'a' && op !== 'f') {
      throw new TraceFormatError(i + 1, `unknown operation "${op}" (expected "a" or "f")`);
    }
    const id = Number(parts[1]);
    // Decimal digits only: Number() would also accept '1e3' and '0x10'.
    if (!DECIMAL.test(parts[1] ?? '') || !Number.isInteger(id) || id < 0 || id > MAX_TRACE_ID)
      throw new TraceFormatError(i + 1, `bad block ID "${parts[1]}"`);
    if (op === 'a') {
      if (parts.length !== 3) throw new TraceFormatError(i + 1, 'expected "a ID BYTES"');
      const size = Number(parts[2]);
      if (!DECIMAL.test(parts[2]!) || !Number.isSafeInteger(size) || size < 0)
        throw new TraceFormatError(i + 1, `bad byte count "${parts[2]}"`);
      if (liveBytesById.has(id)) throw new TraceFormatError(i + 1, `block ${id} is allocated twice`);
      liveBytesById.set(id, size);
      kinds[n] = OP_ALLOCATE;
      bytes[n] = size;
      live += size;
      if (live > peak) peak = live;
      allocations++;
    } else {
      if (parts.length !== 2) throw new TraceFormatError(i + 1, 'expected "f ID"');
      const size = liveBytesById.get(id);
      if (size === undefined) throw new TraceFormatError(i + 1, `block ${id} is freed but not live`);
      liveBytesById.delete(id);
      live -= size;
      kinds[n] = OP_FREE;
    }
    ids[n] = id;
    if (id + 1 > idCount) idCount = id + 1;
    n++;
  }
  return {
    name,
    comments,
    length: n,
    kinds: kinds.slice(0, n),
    ids: ids.slice(0, n),
    bytes: bytes.slice(0, n),
    idCount,
    peakLiveBytes: peak,
    allocations,
    liveAtEnd: liveBytesById.size,
  };
}

/** Reads a trace file (gzip or plain). */
export function readTrace(path: string): Trace {
  const name = path
    .split('/')
    .pop()!
    .replace(/\.trace(\.gz)?$|\.gz$/, '');
  return parseTrace(readFileSync(path), name);
}

/** Formats operations as trace text. */
export function formatTrace(trace: Pick<Trace, 'length' | 'kinds' | 'ids' | 'bytes' | 'comments'>): string {
  const out: string[] = trace.comments.map((c) => `# ${c}`);
  for (let i = 0; i < trace.length; i++) {
    out.push(trace.kinds[i] === OP_ALLOCATE ? `a ${trace.ids[i]} ${trace.bytes[i]}` : `f ${trace.ids[i]}`);
  }
  return `${out.join('\n')}\n`;
}

/** Writes trace text, gzip-compressed when the path ends in .gz. */
export function writeTrace(path: string, text: string): void {
  writeFileSync(path, path.endsWith('.gz') ? gzipSync(text) : text);
}
