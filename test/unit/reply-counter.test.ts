// ReplyCounter: complete top-level replies in a RESP2/RESP3 reply stream; out-of-band pushes
// ('>') and attributes ('|') are not replies. Every vector fed whole, byte by byte and at every
// two-way split; random concatenations split at random points.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { ReplyCounter } from '../../src/resp/reply-counter.js';
import { cut } from '../helpers/chunks.js';

const B = (s: string): Buffer => Buffer.from(s, 'latin1');

interface Count {
  replies: number;
  broken: boolean;
}

function count(chunks: readonly Buffer[]): Count {
  const c = new ReplyCounter();
  for (const chunk of chunks) c.feed(chunk);
  return { replies: c.replies, broken: c.broken };
}


/** [name, stream, complete replies, broken] */
const VECTORS: [string, string, number, boolean?][] = [
  // RESP2
  ['simple string', '+OK\r\n', 1],
  ['error', '-ERR unknown command\r\n', 1],
  ['integer', ':1000\r\n', 1],
  ['negative integer', ':-1\r\n', 1],
  ['bulk string', '$5\r\nhello\r\n', 1],
  ['bulk string with CRLF inside', '$4\r\n\r\n\r\n\r\n', 1],
  ['empty bulk string', '$0\r\n\r\n', 1],
  ['null bulk string', '$-1\r\n', 1],
  ['array of bulks', '*2\r\n$3\r\nfoo\r\n$3\r\nbar\r\n', 1],
  ['empty array', '*0\r\n', 1],
  ['null array', '*-1\r\n', 1],
  ['nested array', '*2\r\n*2\r\n:1\r\n:2\r\n*1\r\n$-1\r\n', 1],
  ['array holding empty and null arrays', '*3\r\n*0\r\n*-1\r\n+x\r\n', 1],
  ['deeply nested', '*1\r\n'.repeat(30) + ':1\r\n', 1],
  // A Lua script returns as deep as it builds: EVAL "local t={1} for i=1,100 do t={t} end return t" 0
  ['nested 101 deep (a Lua reply), then another reply', '*1\r\n'.repeat(100) + '*1\r\n:1\r\n' + '*-1\r\n', 2],
  ['pipeline of replies', '+OK\r\n:1\r\n$1\r\na\r\n*1\r\n+b\r\n-ERR x\r\n$-1\r\n', 6],
  ['incomplete simple string', '+OK\r', 0],
  ['incomplete bulk body', '$5\r\nhel', 0],
  ['incomplete bulk trailing CRLF', '$5\r\nhello\r', 0],
  ['incomplete array', '*3\r\n:1\r\n:2\r\n', 0],
  ['complete then incomplete', '+OK\r\n*2\r\n:1\r\n', 1],
  // RESP3
  ['map', '%2\r\n+a\r\n:1\r\n+b\r\n:2\r\n', 1],
  ['empty map', '%0\r\n', 1],
  ['set', '~3\r\n:1\r\n:2\r\n:3\r\n', 1],
  ['double', ',3.14\r\n', 1],
  ['double inf', ',-inf\r\n', 1],
  ['boolean', '#t\r\n#f\r\n', 2],
  ['null', '_\r\n', 1],
  ['big number', '(3492890328409238509324850943850943825024385\r\n', 1],
  ['blob error', '!21\r\nSYNTAX invalid syntax\r\n', 1],
  ['verbatim string', '=15\r\ntxt:Some string\r\n', 1],
  ['map of arrays and maps', '%2\r\n+k\r\n*2\r\n:1\r\n%1\r\n+x\r\n_\r\n+k2\r\n~0\r\n', 1],
  ['nulls inside aggregates', '*3\r\n_\r\n$-1\r\n*-1\r\n', 1],
  // pushes are not replies
  ['push alone', '>3\r\n$7\r\nmessage\r\n$2\r\nch\r\n$5\r\nhello\r\n', 0],
  ['push between replies', '+OK\r\n>2\r\n+invalidate\r\n*1\r\n$1\r\nk\r\n:7\r\n', 2],
  ['push holding aggregates', '>2\r\n+pubsub\r\n%1\r\n*1\r\n:1\r\n~1\r\n_\r\n', 0],
  ['empty push', '>0\r\n', 0],
  ['empty push then a reply', '>0\r\n+OK\r\n', 1],
  ['push inside a reply array is part of the reply', '*2\r\n>1\r\n:1\r\n:2\r\n', 1],
  // attributes are not replies: they annotate the value that follows
  ['attribute then reply', '|1\r\n+key-popularity\r\n%1\r\n$1\r\na\r\n,0.19\r\n*2\r\n:2039123\r\n:9543892\r\n', 1],
  ['empty attribute then reply', '|0\r\n+OK\r\n', 1],
  ['attribute alone', '|1\r\n+a\r\n+b\r\n', 0],
  ['attribute inside an array', '*2\r\n|1\r\n+a\r\n+b\r\n:1\r\n:2\r\n', 1],
  ['attribute before a push', '|1\r\n+a\r\n+b\r\n>1\r\n+x\r\n', 0],
  ['attribute before a push then a reply', '|1\r\n+a\r\n+b\r\n>1\r\n+x\r\n:5\r\n', 1],
  // unparseable
  ['unknown type byte', '+OK\r\n?x\r\n', 1, true],
  ['bad digits in a length', '$1x\r\n', 0, true],
  ['nothing after broken counts', '@\r\n+OK\r\n', 0, true],
];

describe('reply counter vectors', () => {
  for (const [name, stream, replies, broken = false] of VECTORS) {
    it(name, () => {
      const input = B(stream);
      const want = { replies, broken };
      assert.deepEqual(count([input]), want, 'whole');
      assert.deepEqual(count([...input].map((b) => Buffer.from([b]))), want, 'byte by byte');
      for (let at = 1; at < input.length; at++) assert.deepEqual(count([input.subarray(0, at), input.subarray(at)]), want, `split at ${at}`);
    });
  }

  it('a large bulk reply is skipped without being read byte by byte', () => {
    const c = new ReplyCounter();
    c.feed(B('$10485760\r\n'));
    const chunk = Buffer.alloc(65536, 0x0a); // LFs: would confuse a line scanner
    for (let j = 0; j < 160; j++) c.feed(chunk);
    assert.equal(c.replies, 0);
    c.feed(B('\r\n+OK\r\n'));
    assert.deepEqual({ replies: c.replies, broken: c.broken }, { replies: 2, broken: false });
  });
});

// ---------------------------------------------------------------------------------------------
// Random reply streams: a value generator that knows how many top-level replies it made.

const line = fc.string({ maxLength: 12, unit: fc.constantFrom('a', 'Z', ' ', '0', '-', ':', '$', '*', '\r', '+') }).map((s) => s.replace(/\r/g, ' '));
const blob = fc.uint8Array({ maxLength: 40 }).map((a) => Buffer.from(a).toString('latin1'));

const { value } = fc.letrec<{ value: string; scalar: string; aggregate: string }>((tie) => ({
  scalar: fc.oneof(
    line.map((s) => `+${s}\r\n`),
    line.map((s) => `-ERR ${s}\r\n`),
    fc.integer().map((n) => `:${n}\r\n`),
    blob.map((s) => `$${s.length}\r\n${s}\r\n`),
    fc.constantFrom('$-1\r\n', '*-1\r\n', '_\r\n', '#t\r\n', ',1.5\r\n', '(12345678901234567890\r\n', '*0\r\n', '%0\r\n', '~0\r\n'),
    blob.map((s) => `!${s.length}\r\n${s}\r\n`),
    blob.map((s) => `=${s.length + 4}\r\ntxt:${s}\r\n`),
  ),
  aggregate: fc.oneof(
    fc.tuple(fc.constantFrom('*', '~'), fc.array(tie('value'), { minLength: 1, maxLength: 4 })).map(([t, vs]) => `${t}${vs.length}\r\n${vs.join('')}`),
    fc.array(fc.tuple(tie('value'), tie('value')), { minLength: 1, maxLength: 3 }).map((kv) => `%${kv.length}\r\n${kv.map(([k, v]) => k + v).join('')}`),
    // an attribute in front of a value is part of that value
    fc.tuple(fc.array(fc.tuple(tie('scalar'), tie('value')), { maxLength: 2 }), tie('value')).map(([kv, v]) => `|${kv.length}\r\n${kv.map(([k, x]) => k + x).join('')}${v}`),
  ),
  value: fc.oneof({ maxDepth: 4, depthIdentifier: 'v' }, tie('scalar'), tie('aggregate')),
}));
const push = fc.array(value, { maxLength: 4 }).map((vs) => `>${vs.length}\r\n${vs.join('')}`);
const stream = fc.array(fc.oneof({ arbitrary: value.map((v) => [v, 1] as const), weight: 4 }, { arbitrary: push.map((p) => [p, 0] as const), weight: 1 }), { maxLength: 10 });

describe('reply counter properties', () => {
  it('counts the top-level replies of any stream, however it is split', () => {
    fc.assert(
      fc.property(
        stream.chain((items) => {
          const bytes = B(items.map(([s]) => s).join(''));
          return fc.tuple(fc.constant(items), fc.constant(bytes), fc.array(fc.nat({ max: Math.max(0, bytes.length) }), { maxLength: 30 }));
        }),
        ([items, bytes, offsets]) => {
          const want = { replies: items.reduce((n, [, r]) => n + r, 0), broken: false };
          assert.deepEqual(count([bytes]), want, 'whole');
          assert.deepEqual(count(cut(bytes, offsets)), want, 'split');
        },
      ),
      { numRuns: 500 },
    );
  });

  it('counts only complete replies in any prefix', () => {
    fc.assert(
      fc.property(fc.array(value, { minLength: 1, maxLength: 5 }), fc.nat(), (values, k) => {
        const bytes = B(values.join(''));
        const at = k % (bytes.length + 1);
        let done = 0;
        let end = 0;
        for (const v of values) {
          end += Buffer.byteLength(v, 'latin1');
          if (end <= at) done++;
        }
        assert.deepEqual(count([bytes.subarray(0, at)]), { replies: done, broken: false });
      }),
      { numRuns: 500 },
    );
  });

  it('never throws on garbage', () => {
    fc.assert(
      fc.property(fc.array(fc.uint8Array({ maxLength: 30 }), { maxLength: 6 }), (chunks) => {
        const c = new ReplyCounter();
        for (const chunk of chunks) c.feed(Buffer.from(chunk));
        assert.ok(c.replies >= 0);
      }),
    );
  });
});

describe('reply counter: the type of one reply (watchFor)', () => {
  const typeOf = (stream: string, n: number): string => {
    const buf = B(stream);
    const seen = new Set<number>();
    for (let at = 0; at <= buf.length; at++) {
      const c = new ReplyCounter();
      c.watchFor = n;
      for (const part of at === 0 ? [buf] : [buf.subarray(0, at), buf.subarray(at)]) c.feed(part);
      seen.add(c.watched);
    }
    assert.equal(seen.size, 1, `the same at every split: ${[...seen].join(', ')}`);
    return String.fromCharCode([...seen][0]!);
  };

  it('records the type byte of the n-th top-level reply, skipping attributes and pushes', () => {
    assert.equal(typeOf('+OK\r\n%1\r\n+a\r\n+b\r\n', 2), '%');
    assert.equal(typeOf('+OK\r\n-ERR unknown command\r\n', 2), '-');
    assert.equal(typeOf('|1\r\n+key\r\n+val\r\n-WRONGPASS no\r\n', 1), '-');
    assert.equal(typeOf('>2\r\n+message\r\n*1\r\n:1\r\n%1\r\n$1\r\nx\r\n:2\r\n', 1), '%');
    assert.equal(typeOf('*2\r\n-ERR inner\r\n:1\r\n', 1), '*');
    assert.equal(typeOf('+OK\r\n', 2), '\0'); // not there yet
  });
});
