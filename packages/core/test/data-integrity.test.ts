/**
 * Data integrity on HostDevice, whose memory is real: every live block holds its own byte
 * pattern, written with copyIn, and reads back intact (copyOut and view) after heavy churn of
 * other blocks' acquires, releases and trims, for every policy. Also the bounds and lifetime
 * rules of the data calls.
 */
import { describe, expect, it } from 'vitest';
import { type Block, createPool, HostDevice, MiB, policyNames } from '../src/index.js';
import { expectCode } from './conformance/pool-conformance.js';
import { prng } from './helpers/prng.js';

/** A block's own pattern: a 4 KiB tile derived from its id, repeated, then its id in the last bytes. */
function patternOf(id: number, bytes: number): Uint8Array {
  const tile = new Uint8Array(Math.min(bytes, 4096));
  for (let i = 0; i < tile.length; i++) tile[i] = (id * 131 + i * 7 + (i >>> 8)) & 0xff;
  const out = new Uint8Array(bytes);
  for (let at = 0; at < bytes; at += tile.length)
    out.set(tile.subarray(0, Math.min(tile.length, bytes - at)), at);
  if (bytes >= 4) new DataView(out.buffer).setUint32(bytes - 4, id);
  return out;
}

describe.each(policyNames())('policy %s on HostDevice', (policy) => {
  it('keeps each live block’s bytes intact through churn', () => {
    const device = new HostDevice({ capacityBytes: 96 * MiB });
    const pool = createPool({ device, policy, limitBytes: 24 * MiB, detectLeaks: false });
    const random = prng(policyNames().indexOf(policy) + 1);
    const live: { block: Block; pattern: Uint8Array }[] = [];
    const verify = () => {
      for (const { block, pattern } of live) {
        const back = new Uint8Array(block.bytes);
        device.data.copyOut(block, back);
        if (Buffer.compare(back, pattern) !== 0) throw new Error(`block #${block.id} was overwritten`);
      }
    };
    let verified = 0;
    for (let op = 0; op < 3000; op++) {
      const r = random();
      if (r < 0.5 || live.length === 0) {
        const bytes = r < 0.4 ? 1 + Math.floor(random() * 8192) : 1 + Math.floor(random() * MiB);
        let block: Block;
        try {
          block = pool.acquire(bytes);
        } catch (error) {
          expect((error as { code?: string }).code).toBe('ERR_GPUPOOL_OUT_OF_MEMORY');
          continue;
        }
        const pattern = patternOf(block.id, bytes);
        device.data.copyIn(block, pattern);
        live.push({ block, pattern });
      } else if (r < 0.97) {
        const index = Math.floor(random() * live.length);
        live.splice(index, 1)[0]!.block.release();
      } else {
        pool.trim();
      }
      if (op % 250 === 0) {
        verify();
        verified++;
      }
    }
    verify();
    expect(verified).toBeGreaterThan(10);
    expect(live.length).toBeGreaterThan(0);
    // The zero-copy view sees the same bytes.
    const { block, pattern } = live[0]!;
    expect(Buffer.compare(device.view(block), pattern)).toBe(0);
    for (const { block: b } of live) b.release();
    pool.destroy();
    expect(device.usedBytes).toBe(0);
  });
});

describe('HostDevice data calls', () => {
  it('refuses a capacity longer than one typed array can view, naming capacityBytes, before allocating', () => {
    expectCode(
      () => new HostDevice({ capacityBytes: 4 * 1024 * MiB + 1 }),
      'ERR_GPUPOOL_RANGE',
      'capacityBytes',
    );
  });

  it('copy at an offset, fill, and refuse to run past the block', () => {
    const device = new HostDevice({ capacityBytes: 16 * MiB });
    const pool = createPool({ device, detectLeaks: false });
    const a = pool.acquire(1000);
    const b = pool.acquire(1000);
    device.data.fill(a, 0x11);
    device.data.fill(b, 0x22);
    device.data.copyIn(a, Uint8Array.of(1, 2, 3), 997);
    const tail = new Uint8Array(4);
    device.data.copyOut(a, tail, 996);
    expect([...tail]).toEqual([0x11, 1, 2, 3]);
    const firstOfB = new Uint8Array(1);
    device.data.copyOut(b, firstOfB);
    expect(firstOfB[0]).toBe(0x22);
    expectCode(() => device.data.copyIn(a, new Uint8Array(4), 997), 'ERR_GPUPOOL_RANGE', 'byteOffset');
    expectCode(() => device.data.copyOut(a, new Uint8Array(1001)), 'ERR_GPUPOOL_RANGE', 'byteOffset');
    expectCode(() => device.data.copyIn(a, new Uint8Array(1), -1), 'ERR_GPUPOOL_RANGE', 'byteOffset');
    expectCode(() => device.data.fill(a, 256), 'ERR_GPUPOOL_RANGE', 'byteValue');
    expectCode(() => device.data.copyIn(a, [1, 2] as never), 'ERR_GPUPOOL_ARGUMENT', 'source');
    firstOfB[0] = 0;
    device.data.copyOut(b, firstOfB);
    expect(firstOfB[0]).toBe(0x22); // the refused writes changed nothing
    a.release();
    expectCode(() => device.data.copyIn(a, new Uint8Array(1)), 'ERR_GPUPOOL_RELEASED_BLOCK');
    b.release();
    pool.destroy();
  });

  it('view: a length or offset outside the block, or a block-like with a bad size, is a typed error', () => {
    const device = new HostDevice({ capacityBytes: 16 * MiB });
    const pool = createPool({ device, detectLeaks: false });
    const block = pool.acquire(100);
    expect(device.view(block, 40).length).toBe(60);
    expect(device.view(block, 100).length).toBe(0);
    expect(device.view(block, 10, 5).length).toBe(5);
    expectCode(() => device.view(block, 150), 'ERR_GPUPOOL_RANGE', 'byteOffset');
    expectCode(() => device.view(block, 50, 60), 'ERR_GPUPOOL_RANGE', 'byteOffset');
    for (const byteLength of [-10, 1.5, Number.NaN, Number.POSITIVE_INFINITY]) {
      expectCode(() => device.view(block, 50, byteLength), 'ERR_GPUPOOL_RANGE', 'byteLength');
    }
    for (const bytes of [-5, Number.NaN, 0.5]) {
      const fake = { ptr: block.ptr, bytes };
      expectCode(() => device.data.fill(fake, 1), 'ERR_GPUPOOL_ARGUMENT', 'block');
      expectCode(() => device.view(fake), 'ERR_GPUPOOL_ARGUMENT', 'block');
    }
    expectCode(() => device.view(null as never), 'ERR_GPUPOOL_ARGUMENT', 'block');
    block.release();
    pool.destroy();
  });

  it('scrubs memory given back to the device, so stale reads show up', () => {
    const device = new HostDevice({ capacityBytes: 16 * MiB, scrubByte: 0xdd });
    const pool = createPool({ device, detectLeaks: false });
    const block = pool.acquire(4096);
    device.data.fill(block, 0x5a);
    const raw = new Uint8Array(device.memory);
    const at = Number(block.ptr - 0x1_0000_0000n);
    expect(raw[at]).toBe(0x5a);
    block.release();
    pool.trim();
    expect(raw[at]).toBe(0xdd);
    pool.destroy();
  });
});
