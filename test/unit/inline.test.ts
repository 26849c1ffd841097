// splitArgs (a port of Redis's sdssplitargs) and encodeMultibulk. Every vector below that is a
// legal inline line (no LF, no NUL) was checked against redis-server 7.0 by sending
// `EVAL "return ARGV" 0 <line>` inline and comparing the array (or the error) it answers.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { encodeMultibulk, splitArgs } from '../../src/resp/inline.js';

const B = (s: string): Buffer => Buffer.from(s, 'latin1');
const split = (line: string): string[] | null => {
  const b = B(line);
  const args = splitArgs(b, 0, b.length);
  return args === null ? null : args.map((a) => a.toString('latin1'));
};

/** [line (latin1), the arguments, or null for "unbalanced quotes in request"] */
export const SPLIT_VECTORS: [string, string[] | null][] = [
  ['', []],
  ['   ', []],
  ['\t\v\f\r \r', []],
  ['SET a 1', ['SET', 'a', '1']],
  ['  GET   k  ', ['GET', 'k']],
  ['a\tb', ['a', 'b']],
  ['a\rb', ['a', 'b']],
  // \v and \f are blanks between tokens (isspace) but do not end an unquoted token
  ['a\vb', ['a\vb']],
  ['\va', ['a']],
  ['a\f b', ['a\f', 'b']],
  ['"a b"', ['a b']],
  ['"a b" "c"', ['a b', 'c']],
  ['"\\x41\\x4a\\x4A\\xe9"', ['AJJ\xe9']],
  ['"\\x4"', ['x4']],
  ['"\\xZZ"', ['xZZ']],
  ['"\\X41"', ['X41']],
  ['"\\x4g"', ['x4g']],
  ['"\\n\\r\\t\\b\\a"', ['\n\r\t\b\x07']],
  ['"\\q\\\\\\""', ['q\\"']],
  ['"a\rb"', ['a\rb']],
  ['"a\\"', null],
  ['"ab', null],
  ['"', null],
  ['"a"b', null],
  ['"a""b"', null],
  ['"a"\tb', ['a', 'b']],
  ['"a"\vb', ['a', 'b']],
  ['"a"\v', ['a']],
  ['"a"\r', ['a']],
  ["'a b'", ['a b']],
  ["'it\\'s'", ["it's"]],
  ["'a\\nb'", ['a\\nb']],
  ["'a\\\\b'", ['a\\\\b']],
  ["'a\"b'", ['a"b']],
  ["'a\\'", null],
  ["'a'b", null],
  ["'ab", null],
  ["''", ['']],
  ['""', ['']],
  ['a "" b', ['a', '', 'b']],
  ['" "', [' ']],
  // a quote inside an unquoted token opens a quoted section of the same token
  ['a"b c"', ['ab c']],
  ["a'b c'", ['ab c']],
  ['a"b"c', null],
  ['a""', ['a']],
  ['""a', null],
  ['a"\\x41"', ['aA']],
  ['a\'"b"\'', ['a"b"']],
  ['a"b', null],
  // no escapes outside quotes
  ['\\x41', ['\\x41']],
  ['a\\ b', ['a\\', 'b']],
  ['a\\"b c"', ['a\\b c']],
  ['\xe9 \xff\x80', ['\xe9', '\xff\x80']],
  ['*1 $3', ['*1', '$3']],
];

describe('splitArgs vectors (as sdssplitargs)', () => {
  for (const [line, want] of SPLIT_VECTORS) {
    it(JSON.stringify(line), () => assert.deepEqual(split(line), want));
  }

  it('a NUL ends the line, as it ends the C string', () => {
    assert.deepEqual(split('a\x00b c'), ['a']);
    assert.deepEqual(split('a \x00 b'), ['a']);
    assert.equal(split('"a\x00b"'), null);
  });

  it('splits only line[start, end)', () => {
    const b = B('xxSET a 1yy');
    assert.deepEqual(splitArgs(b, 2, 9)?.map(String), ['SET', 'a', '1']);
    const q = B('"ab" c');
    assert.equal(splitArgs(q, 0, 3), null, 'the closing quote is past end');
    assert.deepEqual(splitArgs(q, 0, 4)?.map(String), ['ab']);
    assert.equal(splitArgs(B('"a\\x41"'), 0, 5), null, '\\x4 cut: the quote is never closed');
    assert.deepEqual(splitArgs(B('"\\x41" tail'), 0, 6)?.map(String), ['A']);
    assert.deepEqual(splitArgs(B('ab\\'), 0, 2)?.map(String), ['ab']);
  });
});

/** Canonical multibulk, written independently of encodeMultibulk. */
function enc(args: readonly Buffer[]): Buffer {
  const parts: Buffer[] = [B(`*${args.length}\r\n`)];
  for (const a of args) parts.push(B(`$${a.length}\r\n`), a, B('\r\n'));
  return Buffer.concat(parts);
}

/** Renders an argument in double quotes so that sdssplitargs gives it back byte for byte; `style` varies the escapes used. */
function quote(arg: Buffer, style: number): string {
  let s = '"';
  for (const c of arg) {
    if (c === 34) s += '\\"';
    else if (c === 92) s += '\\\\';
    else if (c === 0 || style % 7 === 0) s += '\\x' + c.toString(16).padStart(2, '0');
    else if (c === 10) s += style % 2 === 0 ? '\\n' : '\\x0A';
    else if (c === 13 && style % 3 === 0) s += '\\r';
    else if (c === 9 && style % 5 === 0) s += '\\t';
    else s += String.fromCharCode(c); // anything else, CR, tab and bytes >= 0x80 included, is literal inside quotes
  }
  return s + '"';
}

describe('encodeMultibulk', () => {
  it('writes the exact wire form', () => {
    assert.equal(encodeMultibulk([B('SET'), B('a'), B('1')]).toString('latin1'), '*3\r\n$3\r\nSET\r\n$1\r\na\r\n$1\r\n1\r\n');
    assert.equal(encodeMultibulk([]).toString('latin1'), '*0\r\n');
    assert.equal(encodeMultibulk([B('')]).toString('latin1'), '*1\r\n$0\r\n\r\n');
    assert.equal(encodeMultibulk([B('0123456789')]).toString('latin1'), '*1\r\n$10\r\n0123456789\r\n');
    assert.equal(encodeMultibulk([B('\r\n\x00\xff')]).toString('latin1'), '*1\r\n$4\r\n\r\n\x00\xff\r\n');
  });

  it('matches the canonical encoding for any arguments', () => {
    fc.assert(
      fc.property(fc.array(fc.uint8Array({ maxLength: 300 }), { maxLength: 20 }), (arrays) => {
        const args = arrays.map((a) => Buffer.from(a));
        assert.deepEqual(encodeMultibulk(args), enc(args));
      }),
    );
  });

  it('has the exact size (no slack past the last CRLF)', () => {
    const out = encodeMultibulk(Array.from({ length: 12 }, (_, j) => Buffer.alloc(j * 37, 0x61)));
    assert.equal(out.length, enc(Array.from({ length: 12 }, (_, j) => Buffer.alloc(j * 37, 0x61))).length);
  });
});

describe('splitArgs properties', () => {
  it('any arguments, quoted and joined by blanks, split back byte for byte', () => {
    fc.assert(
      fc.property(
        fc.array(fc.tuple(fc.uint8Array({ maxLength: 30 }), fc.nat(), fc.constantFrom(' ', '\t', '  ', ' \v', '\r')), { maxLength: 8 }),
        fc.constantFrom('', ' ', '\t '),
        (items, lead) => {
          const line = lead + items.map(([a, style, sep]) => quote(Buffer.from(a), style) + sep).join('');
          assert.deepEqual(split(line), items.map(([a]) => Buffer.from(a).toString('latin1')));
        },
      ),
    );
  });

  it('never throws; when it succeeds, quoting the result splits back to the same', () => {
    const bytes = fc.array(fc.constantFrom(32, 9, 11, 13, 34, 39, 92, 120, 52, 70, 97, 98, 110, 0, 10, 0xe9), { maxLength: 40 });
    fc.assert(
      fc.property(fc.oneof(bytes, fc.array(fc.nat(255), { maxLength: 40 })), (arr) => {
        const line = Buffer.from(arr);
        const args = splitArgs(line, 0, line.length);
        if (args === null) return;
        for (const a of args) assert.ok(a.length <= line.length);
        const again = B(args.map((a) => quote(a, 1)).join(' '));
        assert.deepEqual(splitArgs(again, 0, again.length), args);
      }),
      { numRuns: 2000 },
    );
  });

  it('plain tokens split on spaces and tabs like String.split', () => {
    const token = fc.string({ minLength: 1, maxLength: 8, unit: fc.constantFrom('a', 'b', 'Z', '1', '-', ':', '$', '*', '\xe9') });
    fc.assert(
      fc.property(fc.array(token, { maxLength: 10 }), fc.constantFrom(' ', '\t', ' \t'), (tokens, sep) => {
        assert.deepEqual(split(tokens.join(sep)), tokens);
      }),
    );
  });
});

describe('splitArgs memory', () => {
  it('a 64 KiB line of 32,768 one-byte arguments takes one line-sized buffer, not one per argument', () => {
    const line = B('a '.repeat(32_768));
    const args = splitArgs(line, 0, line.length)!;
    assert.equal(args.length, 32_768);
    assert.ok(args.every((a) => a.length === 1 && a[0] === 97));
    const buffers = new Set(args.map((a) => a.buffer));
    const bytes = [...buffers].reduce((n, b) => n + b.byteLength, 0);
    assert.ok(bytes <= line.length + 8192, `${bytes} bytes of buffers for a ${line.length}-byte line`);
  });
});
