// ByteList: what it keeps is exactly what was pushed, in order, and its cost stays bounded
// whatever the piece sizes: one byte per push must not cost a Buffer per byte (a client's 1-byte
// TLS records queued while the backend connects grew the heap ~300 times the bytes sent).
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { ByteList, COPY_BELOW } from '../../src/resp/byte-list.js';

interface Fields {
  pieces: Buffer[];
  tail: Buffer | null;
  tailLen: number;
}
const fields = (l: ByteList): Fields => l as unknown as Fields;

describe('ByteList', () => {
  it('keeps the bytes in order, in a bounded number of pieces and capacity', () => {
    fc.assert(
      fc.property(fc.array(fc.oneof(fc.integer({ min: 0, max: 3 }), fc.integer({ min: 900, max: 5000 })), { maxLength: 200 }), fc.integer({ min: 0, max: 2 }), (sizes, from) => {
        const list = new ByteList();
        const want: Buffer[] = [];
        let seq = 0;
        for (const size of sizes) {
          const chunk = Buffer.alloc(size + from, 0);
          for (let k = from; k < chunk.length; k++) chunk[k] = seq++ & 0xff;
          list.push(chunk, Math.min(from, chunk.length));
          want.push(chunk.subarray(Math.min(from, chunk.length)));
          const { pieces, tail, tailLen } = fields(list);
          assert.equal(pieces.reduce((n, b) => n + b.length, 0) + tailLen, list.bytes);
          assert.ok(pieces.length <= 2 * Math.floor(list.bytes / COPY_BELOW) + 1, `${pieces.length} pieces for ${list.bytes} bytes`);
          if (tail !== null) assert.ok(tail.length <= Math.max(256, 2 * tailLen), `capacity ${tail.length} for ${tailLen}`);
        }
        const taken = list.take();
        assert.ok(Buffer.concat(taken).equals(Buffer.concat(want)));
        assert.equal(list.bytes, 0);
        assert.deepEqual(list.take(), []);
      }),
    );
  });

  it('100,000 one-byte pushes: a few buffers, not one per byte', () => {
    const list = new ByteList();
    for (let i = 0; i < 100_000; i++) list.push(Buffer.from([i & 0xff]));
    const taken = list.take();
    assert.ok(taken.length <= 2, `${taken.length} buffers`);
    assert.equal(Buffer.concat(taken).length, 100_000);
  });

  it('a long piece is kept as a view, not copied', () => {
    const list = new ByteList();
    const big = Buffer.alloc(COPY_BELOW, 7);
    list.push(big);
    assert.equal(list.take()[0], big);
  });
});
