/**
 * The trace format (shared/traces/README.md): parse and format round trip, gzip, comments,
 * every malformed line → TraceFormatError with its line number; recording a pool reproduces its
 * operations; a recorded trace replays into a fresh pool with the same peak.
 */
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { describe, expect, it } from 'vitest';
import {
  type Block,
  createPool,
  formatTrace,
  MiB,
  OP_ALLOCATE,
  OP_FREE,
  parseTrace,
  readTrace,
  replayTrace,
  SimulatedDevice,
  TraceFormatError,
  writeTrace,
} from '../src/index.js';

const SAMPLE = '# a comment\na 0 100\na 1 2048\n\nf 0\n# another\na 2 0\nf 1\n';

describe('parseTrace', () => {
  it('reads operations, comments, peak and live-at-end', () => {
    const t = parseTrace(SAMPLE, 'sample');
    expect(t.name).toBe('sample');
    expect(t.comments).toEqual(['a comment', 'another']);
    expect(t.length).toBe(5);
    expect([...t.kinds]).toEqual([OP_ALLOCATE, OP_ALLOCATE, OP_FREE, OP_ALLOCATE, OP_FREE]);
    expect([...t.ids]).toEqual([0, 1, 0, 2, 1]);
    expect([...t.bytes]).toEqual([100, 2048, 0, 0, 0]);
    expect(t.peakLiveBytes).toBe(2148);
    expect(t.allocations).toBe(3);
    expect(t.liveAtEnd).toBe(1);
    expect(t.idCount).toBe(3);
  });

  it('accepts gzip bytes, plain bytes, CRLF line ends and extra spaces', () => {
    const plain = parseTrace(SAMPLE);
    const fromGzip = parseTrace(gzipSync(SAMPLE));
    const fromBytes = parseTrace(new TextEncoder().encode(SAMPLE));
    const fromCrlf = parseTrace(SAMPLE.replace(/\n/g, '\r\n').replace('a 1 2048', '  a   1\t2048 '));
    for (const t of [fromGzip, fromBytes, fromCrlf]) {
      expect([...t.kinds]).toEqual([...plain.kinds]);
      expect([...t.ids]).toEqual([...plain.ids]);
      expect([...t.bytes]).toEqual([...plain.bytes]);
      expect(t.peakLiveBytes).toBe(plain.peakLiveBytes);
    }
  });

  const malformed: [string, string, number][] = [
    ['an unknown operation', 'a 0 1\nx 1 2', 2],
    ['a missing ID', 'a', 1],
    ['a negative ID', 'a -1 5', 1],
    ['a fractional ID', 'a 1.5 5', 1],
    ['an ID in exponent notation', 'a 1e3 5', 1],
    ['a hexadecimal ID', 'a 0x10 5', 1],
    ['an ID past 2^31', 'a 4294967296 5', 1],
    ['a missing size', '# c\na 1', 2],
    ['a negative size', 'a 1 -5', 1],
    ['a fractional size', 'a 1 1.5', 1],
    ['a size in exponent notation', 'a 1 1e3', 1],
    ['a size that is not a number', 'a 1 many', 1],
    ['an unsafe size', `a 1 ${2 ** 60}`, 1],
    ['a trailing field on an allocation', 'a 1 5 6', 1],
    ['a trailing field on a free', 'a 1 5\nf 1 5', 2],
    ['a free without ID', 'a 1 5\nf', 2],
    ['a free of an unknown block', 'a 1 5\n\nf 2', 3],
    ['a double free', 'a 1 5\nf 1\nf 1', 3],
    ['an ID allocated twice while live', 'a 1 5\na 1 6', 2],
  ];

  it.each(malformed)('rejects %s with TraceFormatError and the line number', (_what, text, line) => {
    let error: unknown;
    try {
      parseTrace(text);
    } catch (e) {
      error = e;
    }
    expect(error).toBeInstanceOf(TraceFormatError);
    expect((error as TraceFormatError).code).toBe('ERR_GPUPOOL_TRACE_FORMAT');
    expect((error as TraceFormatError).line).toBe(line);
    expect((error as Error).message).toContain(`line ${line}`);
  });

  it.each([
    ['a line that is one word', 'hello'],
    ['an operation with an ID', 'x 1 2'],
  ])('names an unknown operation as such, before its ID: %s', (_what, text) => {
    expect(() => parseTrace(text)).toThrow(/line 1: unknown operation "(hello|x)"/);
  });

  it('allows an ID to be reused once freed', () => {
    const t = parseTrace('a 1 5\nf 1\na 1 7\n');
    expect(t.allocations).toBe(2);
    expect(t.peakLiveBytes).toBe(7);
  });
});

describe('formatTrace and files', () => {
  it('round-trips: format(parse(text)) parses to the same trace', () => {
    const t = parseTrace(SAMPLE);
    const text = formatTrace(t);
    expect(text).toBe('# a comment\n# another\na 0 100\na 1 2048\nf 0\na 2 0\nf 1\n');
    const again = parseTrace(text);
    expect(formatTrace(again)).toBe(text);
  });

  it('round-trips a shared trace exactly', () => {
    const t = readTrace(new URL('./fixtures/train_resnet.trace.gz', import.meta.url).pathname);
    expect(t.name).toBe('train_resnet');
    const again = parseTrace(formatTrace(t));
    expect(again.length).toBe(t.length);
    expect(Buffer.compare(Buffer.from(again.ids.buffer), Buffer.from(t.ids.buffer))).toBe(0);
    expect(Buffer.compare(Buffer.from(again.bytes.buffer), Buffer.from(t.bytes.buffer))).toBe(0);
    expect(again.peakLiveBytes).toBe(t.peakLiveBytes);
  });

  it('writes gzip when the path ends in .gz, plain text otherwise, and reads both', () => {
    const dir = mkdtempSync(join(tmpdir(), 'gpupool-trace-'));
    try {
      writeTrace(join(dir, 'x.trace.gz'), SAMPLE);
      writeTrace(join(dir, 'x.trace'), SAMPLE);
      expect([...readFileSync(join(dir, 'x.trace.gz')).subarray(0, 2)]).toEqual([0x1f, 0x8b]);
      expect(readFileSync(join(dir, 'x.trace'), 'utf8')).toBe(SAMPLE);
      const a = readTrace(join(dir, 'x.trace.gz'));
      const b = readTrace(join(dir, 'x.trace'));
      expect(a.name).toBe('x');
      expect(formatTrace(a)).toBe(formatTrace(b));
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('recording a pool', () => {
  it('reproduces its operations, and the recording replays with the same peak', () => {
    const device = new SimulatedDevice({ capacityBytes: 512 * MiB });
    const pool = createPool({ device, detectLeaks: false });
    const before = pool.acquire(999); // acquired before recording: its release is dropped from toTrace()
    const recorder = pool.record({ comment: 'unit test' });
    expect(recorder.recording).toBe(true);
    const expected: string[] = ['# unit test'];
    const live: Block[] = [];
    for (let i = 0; i < 200; i++) {
      const bytes = ((i * 7919) % 50_000) + (i % 5 === 0 ? MiB : 0);
      const b = pool.acquire(bytes);
      live.push(b);
      expected.push(`a ${b.id} ${bytes}`);
      if (i % 3 === 2) {
        const gone = live.splice(i % live.length, 1)[0]!;
        gone.release();
        expected.push(`f ${gone.id}`);
      }
    }
    before.release();
    expected.push(`f ${before.id}`);
    expect(recorder.toString()).toBe(`${expected.join('\n')}\n`);
    expect(recorder.length).toBe(expected.length - 1);

    const recorded = recorder.toTrace('mine');
    expect(recorded.allocations).toBe(200);
    expect(recorded.liveAtEnd).toBe(live.length);
    recorder.stop();
    expect(recorder.recording).toBe(false);
    pool.acquire(1).release(); // not recorded once stopped
    expect(recorder.length).toBe(expected.length - 1);

    const fresh = createPool({
      device: new SimulatedDevice({ capacityBytes: 512 * MiB }),
      detectLeaks: false,
    });
    const result = replayTrace(recorded, fresh);
    expect(result.ops).toBe(recorded.length);
    expect(result.peakLiveBytes).toBe(recorded.peakLiveBytes);
    expect(fresh.stats().liveBlocks).toBe(0);
    for (const b of live) b.release();
    pool.destroy();
    fresh.destroy();
  });

  it('counts the page faults the replay took', () => {
    const pool = createPool({
      device: new SimulatedDevice({ capacityBytes: 512 * MiB }),
      detectLeaks: false,
    });
    const quiet = replayTrace(parseTrace('a 1 100\nf 1\n'), pool);
    expect(Number.isInteger(quiet.pageFaults) && quiet.pageFaults >= 0).toBe(true);
    // 64 MiB of fresh memory, touched during the replay: at least one fault per 2 MiB, even with
    // transparent huge pages (an allocation this size is always mapped fresh).
    let fresh: Uint8Array | undefined;
    const touched = replayTrace(parseTrace('a 1 100\nf 1\n'), pool, {
      afterEach: (i) => {
        if (i !== 0) return;
        fresh = new Uint8Array(64 * MiB);
        for (let at = 0; at < fresh.length; at += 4096) fresh[at] = 1;
      },
    });
    expect(fresh?.[4096]).toBe(1);
    expect(touched.pageFaults).toBeGreaterThanOrEqual(32);
    pool.destroy();
  });

  it('stops at maxOps and says so; stopping a replaced recorder leaves the new one recording', () => {
    const pool = createPool({ device: new SimulatedDevice({ capacityBytes: 64 * MiB }), detectLeaks: false });
    const small = pool.record({ maxOps: 3 });
    for (let i = 0; i < 3; i++) pool.acquire(100).release();
    expect(small.length).toBe(3);
    expect(small.truncated).toBe(true);
    expect(small.recording).toBe(false);

    const first = pool.record();
    const second = pool.record();
    first.stop();
    pool.acquire(10).release();
    expect(second.length).toBe(2);
    expect(() => pool.record({ maxOps: 0 })).toThrow(expect.objectContaining({ code: 'ERR_GPUPOOL_RANGE' }));
    pool.destroy();
  });

  it('writes a file that readTrace reads back: frees of earlier blocks dropped, each comment line a comment', () => {
    const dir = mkdtempSync(join(tmpdir(), 'gpupool-recording-'));
    const pool = createPool({ device: new SimulatedDevice({ capacityBytes: 64 * MiB }), detectLeaks: false });
    try {
      const before = pool.acquire(999);
      const recorder = pool.record({ comment: 'two lines:\nthe second' });
      const a = pool.acquire(100);
      before.release(); // acquired before recording: the file must not free a block it never allocated
      pool.acquire(200).release();
      recorder.writeFile(join(dir, 'r.trace.gz'));
      const read = readTrace(join(dir, 'r.trace.gz'));
      expect(read.comments).toEqual(['two lines:', 'the second']);
      expect(formatTrace(read)).toBe(formatTrace(recorder.toTrace()));
      expect(read.allocations).toBe(2);
      expect(read.liveAtEnd).toBe(1);
      expect(read.peakLiveBytes).toBe(300);
      expect(() => pool.record({ comment: 5 as never })).toThrow(
        expect.objectContaining({ code: 'ERR_GPUPOOL_ARGUMENT', argument: 'comment' }),
      );
      a.release();
    } finally {
      pool.destroy();
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('records a pool past 2^31 blocks: exact IDs in toString(), a trace counted from the first', () => {
    const pool = createPool({ device: new SimulatedDevice({ capacityBytes: 64 * MiB }), detectLeaks: false });
    // A pool that has handed out 2^31 blocks (an hour of a busy pipeline); the trace format's IDs stop there.
    (pool as unknown as { nextBlockId: number }).nextBlockId = 2 ** 31;
    const recorder = pool.record();
    const a = pool.acquire(100);
    pool.acquire(200).release();
    a.release();
    expect(recorder.toString()).toBe(
      `a ${2 ** 31} 100\na ${2 ** 31 + 1} 200\nf ${2 ** 31 + 1}\nf ${2 ** 31}\n`,
    );
    expect(formatTrace(recorder.toTrace())).toBe('a 0 100\na 1 200\nf 1\nf 0\n');
    pool.destroy();
  });

  it('records a block reclaimed as a leak as a free', () => {
    // Covered end to end in leaks.test.ts; here, the trace text of a replay into a recording pool.
    const pool = createPool({ device: new SimulatedDevice({ capacityBytes: 64 * MiB }), detectLeaks: false });
    const rec = pool.record();
    replayTrace(parseTrace('a 5 100\na 6 200\nf 5\nf 6\n'), pool);
    expect(rec.toString()).toBe('a 0 100\na 1 200\nf 0\nf 1\n');
    pool.destroy();
  });
});
