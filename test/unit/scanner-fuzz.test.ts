// Property tests of the request scanner on hostile input: random bytes, RESP-shaped garbage and
// mutated pipelines, fed whole and in random splits (and byte by byte). The scanner never
// throws; where a stream is cut makes no difference to what it forwards, whether and how it
// fails, how many commands it counts, or whether it saw SUBSCRIBE/MONITOR; and what it forwards
// is exactly `commands` well-formed multibulk commands — nothing of a rejected or incomplete one.
// Streams stay under HOLD_MAX_BYTES, below which the scanner never streams a partial command.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { HOLD_MAX_BYTES, RequestScanner, type ScannerLimits } from '../../src/resp/scanner.js';
import { cut as cutAt } from '../helpers/chunks.js';

/** Cut `buf` at the given offsets, taken modulo its length + 1. */
const cut = (buf: Buffer, at: number[]): Buffer[] => cutAt(buf, at.map((a) => a % (buf.length + 1)));

const SEED = 424242;
const DEFAULTS: ScannerLimits = { maxMultibulkLen: 1048576, maxBulkLen: 536870912, maxInlineLen: 65536 };

interface Outcome {
  forwarded: Buffer;
  error: string | null;
  reply: string | null;
  commands: number;
  subscribeSeen: boolean;
}

function run(limits: ScannerLimits, chunks: Buffer[]): Outcome {
  const s = new RequestScanner(limits);
  const out: Buffer[] = [];
  for (const c of chunks) {
    s.feed(c, out);
  }
  return {
    forwarded: Buffer.concat(out),
    error: s.error?.code ?? null,
    reply: s.error?.reply.toString('latin1') ?? null,
    commands: s.commands,
    subscribeSeen: s.subscribeSeen,
  };
}


/**
 * Parses `buf` as strict multibulk commands (*N>0, then N × $len CRLF body CRLF) and returns how
 * many; throws on anything else, including a trailing partial command.
 */
function countStrictCommands(buf: Buffer): number {
  let p = 0;
  let n = 0;
  const line = (): number => {
    const e = buf.indexOf('\r\n', p, 'latin1');
    if (e < 0) throw new Error(`no CRLF after offset ${p}`);
    const t = buf.toString('latin1', p + 1, e);
    if (!/^[1-9][0-9]*$|^0$/.test(t)) throw new Error(`bad number ${JSON.stringify(t)} at ${p}`);
    p = e + 2;
    return Number(t);
  };
  while (p < buf.length) {
    if (buf[p] !== 42) throw new Error(`expected '*' at ${p}`);
    const count = line();
    if (count < 1) throw new Error(`*${count} forwarded at ${p}`);
    for (let i = 0; i < count; i++) {
      if (buf[p] !== 36) throw new Error(`expected '$' at ${p}`);
      const len = line();
      if (p + len + 2 > buf.length || buf[p + len] !== 13 || buf[p + len + 1] !== 10) throw new Error(`bulk body not followed by CRLF at ${p}`);
      p += len + 2;
    }
    n++;
  }
  return n;
}

// ---- inputs ----------------------------------------------------------------------------------

const RESP_BYTES = [...'*$\r\n"\'\\0123456789- \tPINGSUBCRIBEmonitor'].map((c) => c.charCodeAt(0)).concat([0, 0xff]);
const respByte = fc.constantFrom(...RESP_BYTES);

const arg = fc.oneof(fc.uint8Array({ maxLength: 20 }).map((a) => Buffer.from(a)), fc.constantFrom('PING', 'SUBSCRIBE', 'monitor', 'GET', 'a b', '"q"').map((s) => Buffer.from(s)));
const multibulk = fc.array(arg, { minLength: 1, maxLength: 5 }).map((args) => Buffer.concat([
  Buffer.from(`*${args.length}\r\n`),
  ...args.flatMap((a) => [Buffer.from(`$${a.length}\r\n`), a, Buffer.from('\r\n')]),
]));
const inline = fc.array(fc.constantFrom('PING', 'SUBSCRIBE', 'ECHO', '"a b"', "'c'", 'x\\y', '"\\x00"', '""'), { minLength: 0, maxLength: 4 })
  .chain((words) => fc.constantFrom('\r\n', '\n').map((eol) => Buffer.from(words.join(' ') + eol, 'latin1')));
const valid = fc.array(fc.oneof(multibulk, inline, fc.constantFrom(Buffer.from('*0\r\n'), Buffer.from('*-1\r\n'))), { maxLength: 6 }).map((p) => Buffer.concat(p));

const mutation = fc.tuple(fc.nat(), fc.constantFrom('replace', 'insert', 'delete', 'truncate'), respByte);
const mutated = fc.tuple(valid, fc.array(mutation, { minLength: 1, maxLength: 4 })).map(([b, ms]) => {
  let buf = b;
  for (const [at, op, byte] of ms) {
    const i = at % (buf.length + 1);
    if (op === 'replace' && i < buf.length) {
      buf = Buffer.from(buf);
      buf[i] = byte;
    } else if (op === 'insert') buf = Buffer.concat([buf.subarray(0, i), Buffer.from([byte]), buf.subarray(i)]);
    else if (op === 'delete') buf = Buffer.concat([buf.subarray(0, i), buf.subarray(i + 1)]);
    else if (op === 'truncate') buf = buf.subarray(0, i);
  }
  return buf;
});

const hostile: fc.Arbitrary<Buffer> = fc.oneof(
  fc.uint8Array({ maxLength: 300 }).map((a) => Buffer.from(a)),
  fc.array(respByte, { maxLength: 200 }).map((a) => Buffer.from(a)),
  mutated,
  fc.tuple(valid, fc.uint8Array({ maxLength: 100 })).map(([v, g]) => Buffer.concat([v, Buffer.from(g)])),
);

const smallLimits: fc.Arbitrary<ScannerLimits> = fc.record({
  maxMultibulkLen: fc.integer({ min: 1, max: 8 }),
  maxBulkLen: fc.integer({ min: 1, max: 32 }),
  maxInlineLen: fc.integer({ min: 1, max: 48 }),
});
const limits = fc.oneof(fc.constant(DEFAULTS), smallLimits);

// ---- properties ------------------------------------------------------------------------------

describe('scanner on hostile input', () => {
  it('never throws; random splits forward the same bytes and reach the same verdict as feeding whole', () => {
    fc.assert(
      fc.property(hostile, fc.array(fc.nat(), { maxLength: 30 }), limits, (input, at, lim) => {
        assert.ok(input.length < HOLD_MAX_BYTES);
        const whole = run(lim, [input]);
        const split = run(lim, cut(input, at));
        assert.deepEqual(split, whole);
      }),
      { seed: SEED, numRuns: 3000 },
    );
  });

  it('byte by byte is the same as whole', () => {
    fc.assert(
      fc.property(hostile, limits, (input, lim) => {
        const bytes: Buffer[] = [];
        for (let i = 0; i < input.length; i++) bytes.push(input.subarray(i, i + 1));
        assert.deepEqual(run(lim, bytes), run(lim, [input]));
      }),
      { seed: SEED + 1, numRuns: 1000 },
    );
  });

  it('forwards exactly `commands` strict multibulk commands, nothing partial and nothing after an error', () => {
    fc.assert(
      fc.property(hostile, fc.array(fc.nat(), { maxLength: 10 }), limits, (input, at, lim) => {
        const r = run(lim, cut(input, at));
        assert.equal(countStrictCommands(r.forwarded), r.commands);
      }),
      { seed: SEED + 2, numRuns: 3000 },
    );
  });

  it('after an error, feeding more changes nothing', () => {
    fc.assert(
      fc.property(hostile, fc.uint8Array({ minLength: 1, maxLength: 50 }), limits, (input, more, lim) => {
        const s = new RequestScanner(lim);
        const out: Buffer[] = [];
        s.feed(input, out);
        if (s.error === null) return;
        const before = { n: out.length, commands: s.commands, error: s.error };
        s.feed(Buffer.from(more), out);
        assert.deepEqual({ n: out.length, commands: s.commands, error: s.error }, before);
      }),
      { seed: SEED + 3, numRuns: 2000 },
    );
  });
});
