// ReplyCounter.midReply: true exactly while part of a reply has been seen and not all of it — the
// session then writes no "backend connection lost" text, which the client would read as the rest
// of that reply. Checked at every byte of RESP2 and RESP3 streams.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { ReplyCounter } from '../../src/resp/reply-counter.js';

/** Feeds `stream` one byte at a time; returns midReply after each byte. */
function midAfterEach(stream: string): boolean[] {
  const c = new ReplyCounter();
  const buf = Buffer.from(stream, 'latin1');
  const out: boolean[] = [];
  for (let i = 0; i < buf.length; i++) {
    c.feed(buf.subarray(i, i + 1));
    out.push(c.midReply);
  }
  return out;
}

/** Byte offsets (exclusive ends) where a top-level reply, or an out-of-band push, is complete. */
function expectBoundaries(stream: string, ends: number[]): void {
  const mids = midAfterEach(stream);
  const boundaryAt = new Set(ends.map((e) => e - 1));
  mids.forEach((mid, i) => {
    assert.equal(mid, !boundaryAt.has(i), `after byte ${i} (${JSON.stringify(stream.slice(0, i + 1))})`);
  });
}

function ends(...parts: string[]): number[] {
  let n = 0;
  return parts.map((p) => (n += p.length));
}

describe('ReplyCounter.midReply', () => {
  it('is false before anything, and between replies', () => {
    assert.equal(new ReplyCounter().midReply, false);
    const parts = ['+OK\r\n', '$3\r\nbar\r\n', ':12\r\n', '$-1\r\n', '*2\r\n$1\r\na\r\n*0\r\n', '-ERR x\r\n', '*-1\r\n'];
    expectBoundaries(parts.join(''), ends(...parts));
  });

  it('is true inside a bulk body, including its CRLF, and inside nested arrays', () => {
    const parts = ['$5\r\nhello\r\n', '*2\r\n*1\r\n:1\r\n$2\r\nab\r\n'];
    expectBoundaries(parts.join(''), ends(...parts));
  });

  it('RESP3: maps, sets, doubles, verbatim strings; a push is not a reply but still a unit; an attribute binds to the next value', () => {
    const parts = [
      '%1\r\n+k\r\n,1.5\r\n',
      '~2\r\n#t\r\n_\r\n',
      '=7\r\ntxt:abc\r\n',
      '>2\r\n+message\r\n+x\r\n', // push: complete here, no reply counted
      '|1\r\n+ttl\r\n:3\r\n+value\r\n', // attribute then its value: one unit
      '|0\r\n:1\r\n',
    ];
    expectBoundaries(parts.join(''), ends(...parts));
    const c = new ReplyCounter();
    c.feed(Buffer.from(parts.join(''), 'latin1'));
    assert.equal(c.replies, 5);
  });

  it('a reply cut short stays mid-reply', () => {
    const c = new ReplyCounter();
    c.feed(Buffer.from('+OK\r\n$10\r\nabc', 'latin1'));
    assert.equal(c.replies, 1);
    assert.equal(c.midReply, true);
  });
});
