// The request scanner against byte vectors (each fed whole, byte by byte and at every two-way
// split), a reference model on random garbage, and its memory bound. Expected replies are the
// exact bytes redis-server 7.0 sends (checked against a real server) except where DESIGN.md
// names a deliberate divergence (marked "stricter than Redis" below).
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { splitArgs } from '../../src/resp/inline.js';
import { HOLD_COPY_BELOW, HOLD_MAX_BYTES, RequestScanner, type ScannerLimits } from '../../src/resp/scanner.js';
import { cut } from '../helpers/chunks.js';

const LIMITS: ScannerLimits = { maxMultibulkLen: 64, maxBulkLen: 512, maxInlineLen: 128 };

const B = (s: string): Buffer => Buffer.from(s, 'latin1');

/** Canonical multibulk encoding, written independently of src/resp/inline.ts. */
function enc(...args: (string | Buffer)[]): Buffer {
  const parts: Buffer[] = [B(`*${args.length}\r\n`)];
  for (const a of args) {
    const b = typeof a === 'string' ? B(a) : a;
    parts.push(B(`$${b.length}\r\n`), b, B('\r\n'));
  }
  return Buffer.concat(parts);
}
const mb = (...args: string[]): string => enc(...args).toString('latin1');

const MBLEN = '-ERR Protocol error: invalid multibulk length\r\n';
const BULKLEN = '-ERR Protocol error: invalid bulk length\r\n';
const NOT_CRLF = '-ERR Protocol error: bulk data not followed by CRLF\r\n';
const TOO_BIG = '-ERR Protocol error: too big inline request\r\n';
const QUOTES = '-ERR Protocol error: unbalanced quotes in request\r\n';
const dollar = (got: string): string => `-ERR Protocol error: expected '$', got '${got}'\r\n`;

interface Outcome {
  forwarded: string; // latin1, so assert.deepEqual shows readable diffs
  commands: number;
  error: string | null;
  subscribeSeen: boolean;
}

function scan(chunks: readonly Buffer[], limits: ScannerLimits = LIMITS): Outcome {
  const s = new RequestScanner(limits);
  const forwarded: Buffer[] = [];
  const out: Buffer[] = [];
  for (const c of chunks) {
    s.feed(c, out);
    forwarded.push(...out);
    out.length = 0;
  }
  return {
    forwarded: Buffer.concat(forwarded).toString('latin1'),
    commands: s.commands,
    error: s.error === null ? null : s.error.reply.toString('latin1'),
    subscribeSeen: s.subscribeSeen,
  };
}

const whole = (input: Buffer, limits?: ScannerLimits): Outcome => scan([input], limits);
const byteByByte = (input: Buffer, limits?: ScannerLimits): Outcome => scan([...input].map((b) => Buffer.from([b])), limits);
const splitAt = (input: Buffer, at: number, limits?: ScannerLimits): Outcome => scan([input.subarray(0, at), input.subarray(at)], limits);

interface Vector {
  name: string;
  input: string; // latin1
  forwarded: string; // latin1
  commands: number;
  error?: string; // the exact reply; none when absent
  subscribe?: boolean;
  limits?: Partial<ScannerLimits>;
}

const big = 'x'.repeat(300);

export const VECTORS: Vector[] = [
  // ---- multibulk: the plain cases
  { name: 'GET', input: mb('GET', 'k'), forwarded: mb('GET', 'k'), commands: 1 },
  { name: 'SET', input: mb('SET', 'key', 'value'), forwarded: mb('SET', 'key', 'value'), commands: 1 },
  { name: 'binary-safe value (CR, LF, NUL, 0xff, "*$")', input: mb('SET', 'k', '\r\n\x00\xff*$\r'), forwarded: mb('SET', 'k', '\r\n\x00\xff*$\r'), commands: 1 },
  { name: 'pipeline of three', input: mb('SET', 'a', '1') + mb('GET', 'a') + mb('PING'), forwarded: mb('SET', 'a', '1') + mb('GET', 'a') + mb('PING'), commands: 3 },
  { name: 'value of 300 bytes', input: mb('SET', 'k', big), forwarded: mb('SET', 'k', big), commands: 1 },
  { name: 'zero-length bulk', input: '*2\r\n$4\r\nECHO\r\n$0\r\n\r\n', forwarded: '*2\r\n$4\r\nECHO\r\n$0\r\n\r\n', commands: 1 },
  { name: 'incomplete command is held, not forwarded', input: mb('PING') + '*2\r\n$3\r\nGET\r\n$1\r\nk', forwarded: mb('PING'), commands: 1 },
  { name: 'incomplete header is held', input: mb('PING') + '*1', forwarded: mb('PING'), commands: 1 },
  { name: 'incomplete bulk header is held', input: '*1\r\n$12', forwarded: '', commands: 0 },
  { name: 'bulk exactly at max_bulk_len', input: mb('ECHO', 'y'.repeat(512)), forwarded: mb('ECHO', 'y'.repeat(512)), commands: 1 },
  { name: 'count exactly at max_multibulk_len', input: enc(...Array(64).fill('a')).toString('latin1'), forwarded: enc(...Array(64).fill('a')).toString('latin1'), commands: 1 },

  // ---- multibulk count (string2ll rules)
  { name: '*0 is consumed without a reply', input: '*0\r\n', forwarded: '', commands: 0 },
  { name: '*-1 is consumed without a reply', input: '*-1\r\n', forwarded: '', commands: 0 },
  { name: '*0 and *-5 between commands are dropped', input: '*0\r\n' + mb('PING') + '*-5\r\n' + mb('GET', 'a') + '*0\r\n', forwarded: mb('PING') + mb('GET', 'a'), commands: 2 },
  { name: '*-9223372036854775808 (LLONG_MIN) is accepted', input: '*-9223372036854775808\r\n' + mb('PING'), forwarded: mb('PING'), commands: 1 },
  { name: '*-9223372036854775809 overflows', input: mb('PING') + '*-9223372036854775809\r\n', forwarded: mb('PING'), commands: 1, error: MBLEN },
  { name: '*-9999999999999999999 (19 digits, over the bound)', input: '*-9999999999999999999\r\n', forwarded: '', commands: 0, error: MBLEN },
  { name: '*-1000000000000000000 (19 digits, under the bound)', input: '*-1000000000000000000\r\n' + mb('PING'), forwarded: mb('PING'), commands: 1 },
  { name: '*- with 20 digits', input: '*-10000000000000000000\r\n', forwarded: '', commands: 0, error: MBLEN },
  { name: '*-0 is invalid', input: '*-0\r\n', forwarded: '', commands: 0, error: MBLEN },
  { name: '*-01 is invalid', input: '*-01\r\n', forwarded: '', commands: 0, error: MBLEN },
  { name: '*- alone is invalid', input: '*-\r\n', forwarded: '', commands: 0, error: MBLEN },
  { name: '*-1x is invalid', input: '*-1x\r\n', forwarded: '', commands: 0, error: MBLEN },
  { name: '*01 is invalid (leading zero)', input: '*01\r\n$4\r\nPING\r\n', forwarded: '', commands: 0, error: MBLEN },
  { name: '*00 is invalid', input: '*00\r\n', forwarded: '', commands: 0, error: MBLEN },
  { name: '*+1 is invalid', input: '*+1\r\n$4\r\nPING\r\n', forwarded: '', commands: 0, error: MBLEN },
  { name: '* then CR (empty count)', input: '*\r\n', forwarded: '', commands: 0, error: MBLEN },
  { name: '* then LF', input: '*\n', forwarded: '', commands: 0, error: MBLEN },
  { name: '*1x (trailing garbage)', input: '*1x\r\n', forwarded: '', commands: 0, error: MBLEN },
  { name: '* space 1', input: '* 1\r\n', forwarded: '', commands: 0, error: MBLEN },
  { name: 'count over the limit at a later digit', input: mb('PING') + '*65\r\n', forwarded: mb('PING'), commands: 1, error: MBLEN },
  { name: 'count over the limit at the first digit', input: '*7\r\n', forwarded: '', commands: 0, error: MBLEN, limits: { maxMultibulkLen: 5 } },
  { name: 'count at the limit, single digit', input: enc('a', 'b', 'c', 'd', 'e').toString('latin1'), forwarded: enc('a', 'b', 'c', 'd', 'e').toString('latin1'), commands: 1, limits: { maxMultibulkLen: 5 } },
  { name: 'huge count, 40 nines, no CR yet', input: '*' + '9'.repeat(40), forwarded: '', commands: 0, error: MBLEN },
  { name: 'huge count, 1 then 40 zeros', input: '*1' + '0'.repeat(40) + '\r\n', forwarded: '', commands: 0, error: MBLEN },
  { name: 'count INT_MAX is accepted (waits for elements)', input: '*2147483647\r\n', forwarded: '', commands: 0, limits: { maxMultibulkLen: 2 ** 40 } },
  { name: 'count INT_MAX+1 is refused whatever the limit', input: '*2147483648\r\n', forwarded: '', commands: 0, error: MBLEN, limits: { maxMultibulkLen: 2 ** 40 } },
  // Stricter than Redis: a CR in a header must be followed by LF.
  { name: 'count CR not followed by LF', input: '*1\rX$4\r\nPING\r\n', forwarded: '', commands: 0, error: MBLEN },
  { name: '*0 CR not followed by LF', input: '*0\r\r\n', forwarded: '', commands: 0, error: MBLEN },
  { name: '*-1 CR not followed by LF', input: '*-1\rx', forwarded: '', commands: 0, error: MBLEN },

  // ---- elements must be bulk strings
  { name: "element 'G' instead of '$'", input: '*1\r\nGET\r\n', forwarded: '', commands: 0, error: dollar('G') },
  { name: "second element ':' instead of '$'", input: mb('PING') + '*2\r\n$3\r\nGET\r\n:1\r\n', forwarded: mb('PING'), commands: 1, error: dollar(':') },
  { name: "element CR: shown as a space", input: '*1\r\n\r\n', forwarded: '', commands: 0, error: dollar(' ') },
  { name: "element LF: shown as a space", input: '*1\r\n\nab\r\n', forwarded: '', commands: 0, error: dollar(' ') },
  { name: 'element byte 0xe9: the reply carries that raw byte', input: '*1\r\n\xe9abc\r\n', forwarded: '', commands: 0, error: dollar('\xe9') },
  { name: 'element byte 0xff', input: '*1\r\n\xff', forwarded: '', commands: 0, error: dollar('\xff') },
  { name: "element '*' (nested array)", input: '*1\r\n*1\r\n$4\r\nPING\r\n', forwarded: '', commands: 0, error: dollar('*') },
  // Stricter than Redis (which waits forever: its strchr() stops at the NUL): the reply Redis's
  // %c formatting would give, cut at the NUL.
  { name: 'element NUL', input: '*1\r\n\x00ab\r\n', forwarded: '', commands: 0, error: "-ERR Protocol error: expected '$', got '\r\n" },

  // ---- bulk length
  { name: '$-1 is invalid in a request', input: '*1\r\n$-1\r\n', forwarded: '', commands: 0, error: BULKLEN },
  { name: '$01 is invalid (leading zero)', input: '*1\r\n$01\r\nx\r\n', forwarded: '', commands: 0, error: BULKLEN },
  { name: '$00 is invalid', input: '*1\r\n$00\r\n\r\n', forwarded: '', commands: 0, error: BULKLEN },
  { name: '$ then CR (empty length)', input: '*1\r\n$\r\n', forwarded: '', commands: 0, error: BULKLEN },
  { name: '$+1 is invalid', input: '*1\r\n$+1\r\nx\r\n', forwarded: '', commands: 0, error: BULKLEN },
  { name: '$1x is invalid', input: '*1\r\n$1x\r\n', forwarded: '', commands: 0, error: BULKLEN },
  { name: 'bulk over the limit at a later digit', input: mb('PING') + '*2\r\n$4\r\nECHO\r\n$513\r\n', forwarded: mb('PING'), commands: 1, error: BULKLEN },
  { name: 'bulk over the limit at the first digit', input: '*1\r\n$9\r\n', forwarded: '', commands: 0, error: BULKLEN, limits: { maxBulkLen: 8 } },
  { name: 'huge bulk length digit string', input: '*1\r\n$' + '9'.repeat(50), forwarded: '', commands: 0, error: BULKLEN },
  { name: 'bulk length CR not followed by LF', input: '*1\r\n$4\rXPING\r\n', forwarded: '', commands: 0, error: BULKLEN },
  { name: '$0 CR not followed by LF', input: '*1\r\n$0\r\r\n', forwarded: '', commands: 0, error: BULKLEN },
  // Stricter than Redis: the two bytes after a bulk body must be CRLF.
  { name: 'bulk body longer than declared', input: '*1\r\n$3\r\nGETX\r\n', forwarded: '', commands: 0, error: NOT_CRLF },
  { name: 'bulk body followed by CR then not LF', input: '*1\r\n$3\r\nGET\rX', forwarded: '', commands: 0, error: NOT_CRLF },
  { name: 'bulk body followed by LF CR', input: '*1\r\n$3\r\nGET\n\r', forwarded: '', commands: 0, error: NOT_CRLF },
  { name: 'zero-length bulk not followed by CRLF', input: '*1\r\n$0\r\nx\r\n', forwarded: '', commands: 0, error: NOT_CRLF },
  { name: 'missing CRLF in the middle of a pipeline', input: mb('GET', 'a') + '*2\r\n$3\r\nGET\r\n$1\r\nbXX' + mb('PING'), forwarded: mb('GET', 'a'), commands: 1, error: NOT_CRLF },

  // ---- the offender is never forwarded, nor anything after it
  { name: 'held offender of 300 bytes is dropped whole', input: mb('PING') + `*2\r\n$4\r\nECHO\r\n$300\r\n${big}XX` + mb('PING'), forwarded: mb('PING'), commands: 1, error: NOT_CRLF },
  { name: 'nothing after the offender', input: '*1\r\nX\r\n' + mb('PING'), forwarded: '', commands: 0, error: dollar('X') },
  { name: 'inline and multibulk before an offender', input: 'PING\r\n' + mb('PING') + '*1\r\nX', forwarded: mb('PING') + mb('PING'), commands: 2, error: dollar('X') },
  { name: 'offender after *0 and blank lines', input: '*0\r\n\r\n' + mb('GET', 'a') + '\n*1\r\n$-1\r\n', forwarded: mb('GET', 'a'), commands: 1, error: BULKLEN },

  // ---- inline commands: split like sdssplitargs, re-encoded as multibulk
  { name: 'inline SET re-encoded exactly', input: 'SET a 1\r\n', forwarded: '*3\r\n$3\r\nSET\r\n$1\r\na\r\n$1\r\n1\r\n', commands: 1 },
  { name: 'inline with LF only', input: 'PING\n', forwarded: mb('PING'), commands: 1 },
  { name: 'inline CRLF and LF give the same', input: 'GET a\nGET b\r\n', forwarded: mb('GET', 'a') + mb('GET', 'b'), commands: 2 },
  { name: 'inline tabs and runs of spaces', input: '\t GET\t\tk  \r\n', forwarded: mb('GET', 'k'), commands: 1 },
  { name: 'inline lone CR splits like a space', input: 'ECHO a\rb\r\n', forwarded: mb('ECHO', 'a', 'b'), commands: 1 },
  { name: 'inline VT/FF are blanks only between tokens', input: 'ECHO \x0ba\x0c\r\n', forwarded: mb('ECHO', 'a\x0c'), commands: 1 },
  { name: 'inline double quotes keep spaces', input: 'SET "a b" "c d"\r\n', forwarded: mb('SET', 'a b', 'c d'), commands: 1 },
  { name: 'inline escapes \\x41 \\n \\" \\\\ \\q', input: 'ECHO "\\x41\\n\\"\\\\\\q"\r\n', forwarded: mb('ECHO', 'A\n"\\q'), commands: 1 },
  { name: 'inline \\x with bad hex is literal', input: 'ECHO "\\xZZ\\x4"\r\n', forwarded: mb('ECHO', 'xZZx4'), commands: 1 },
  { name: "inline single quotes with \\'", input: "ECHO 'it\\'s \\n'\r\n", forwarded: mb('ECHO', "it's \\n"), commands: 1 },
  { name: 'inline empty quoted argument', input: 'ECHO ""\r\n', forwarded: mb('ECHO', ''), commands: 1 },
  { name: 'inline quote inside a token opens a quoted section', input: 'ECHO a"b c"\r\n', forwarded: mb('ECHO', 'ab c'), commands: 1 },
  { name: 'inline closing quote followed by a letter', input: mb('PING') + 'ECHO "a"b\r\n', forwarded: mb('PING'), commands: 1, error: QUOTES },
  { name: 'inline closing single quote followed by a letter', input: "ECHO 'a'b\r\n", forwarded: '', commands: 0, error: QUOTES },
  { name: 'inline closing quote followed by a tab is fine', input: 'ECHO "a"\tb\r\n', forwarded: mb('ECHO', 'a', 'b'), commands: 1 },
  { name: 'inline unterminated quote', input: 'ECHO "ab\r\n', forwarded: '', commands: 0, error: QUOTES },
  { name: 'inline quote ended by an escaped quote', input: 'ECHO "a\\"\r\n', forwarded: '', commands: 0, error: QUOTES },
  { name: 'inline empty line consumed without reply', input: '\r\n', forwarded: '', commands: 0 },
  { name: 'inline bare LF consumed without reply', input: '\n', forwarded: '', commands: 0 },
  { name: 'inline only spaces consumed without reply', input: '   \t \r\n', forwarded: '', commands: 0 },
  { name: 'blank lines around a command', input: '\r\n\n   \r\nPING\n\r\n', forwarded: mb('PING'), commands: 1 },
  { name: 'inline line starting with a space then *', input: ' *1\r\n', forwarded: mb('*1'), commands: 1 },
  { name: 'inline incomplete line is held', input: 'PING\r\nGET a', forwarded: mb('PING'), commands: 1 },
  { name: 'inline line exactly max_inline_len', input: 'ECHO ' + 'z'.repeat(123) + '\r\n', forwarded: mb('ECHO', 'z'.repeat(123)), commands: 1 },
  { name: 'inline line one over max_inline_len', input: mb('PING') + 'ECHO ' + 'z'.repeat(124) + '\r\n', forwarded: mb('PING'), commands: 1, error: TOO_BIG },
  { name: 'inline line over max_inline_len, no LF yet', input: 'z'.repeat(130), forwarded: '', commands: 0, error: TOO_BIG },
  { name: 'inline line of max_inline_len + CR, no LF yet, waits', input: 'z'.repeat(128) + '\r', forwarded: '', commands: 0 },
  { name: 'inline argument count over max_multibulk_len', input: 'DEL' + ' k'.repeat(64) + '\r\n', forwarded: '', commands: 0, error: MBLEN, limits: { maxInlineLen: 256 } },
  { name: 'inline argument count at max_multibulk_len', input: 'DEL' + ' k'.repeat(63) + '\r\n', forwarded: mb('DEL', ...Array<string>(63).fill('k')), commands: 1, limits: { maxInlineLen: 256 } },
  { name: 'inline argument over max_bulk_len', input: 'ECHO hello\r\n', forwarded: '', commands: 0, error: BULKLEN, limits: { maxBulkLen: 4 } },
  // Stricter than Redis (which waits until 64 KiB): a NUL in an inline line.
  { name: 'inline NUL', input: 'PI\x00NG\r\n', forwarded: '', commands: 0, error: TOO_BIG },
  { name: 'inline bytes >= 0x80 pass through', input: 'ECHO \xe9\xff\r\n', forwarded: mb('ECHO', '\xe9\xff'), commands: 1 },
  { name: 'mixed inline and multibulk pipeline', input: 'SET a 1\r\n' + mb('GET', 'a') + 'GET a\n', forwarded: mb('SET', 'a', '1') + mb('GET', 'a') + mb('GET', 'a'), commands: 3 },

  // ---- subscribe / monitor detection
  { name: 'SUBSCRIBE', input: mb('SUBSCRIBE', 'ch'), forwarded: mb('SUBSCRIBE', 'ch'), commands: 1, subscribe: true },
  { name: 'psubscribe (lower case)', input: mb('psubscribe', 'p*'), forwarded: mb('psubscribe', 'p*'), commands: 1, subscribe: true },
  { name: 'SSUBSCRIBE', input: mb('SSUBSCRIBE', 's'), forwarded: mb('SSUBSCRIBE', 's'), commands: 1, subscribe: true },
  { name: 'MONITOR', input: mb('MONITOR'), forwarded: mb('MONITOR'), commands: 1, subscribe: true },
  { name: 'MoNiToR after a pipeline', input: mb('PING') + mb('GET', 'k') + mb('MoNiToR'), forwarded: mb('PING') + mb('GET', 'k') + mb('MoNiToR'), commands: 3, subscribe: true },
  { name: 'inline subscribe', input: 'subscribe ch\r\n', forwarded: mb('subscribe', 'ch'), commands: 1, subscribe: true },
  { name: 'inline MONITOR', input: 'MONITOR\n', forwarded: mb('MONITOR'), commands: 1, subscribe: true },
  { name: 'UNSUBSCRIBE is not', input: mb('UNSUBSCRIBE'), forwarded: mb('UNSUBSCRIBE'), commands: 1, subscribe: false },
  { name: 'SUBSCRIBER is not', input: mb('SUBSCRIBER'), forwarded: mb('SUBSCRIBER'), commands: 1, subscribe: false },
  { name: 'MONITOR! is not', input: mb('MONITOR!'), forwarded: mb('MONITOR!'), commands: 1, subscribe: false },
  { name: 'subscribe as an argument is not', input: mb('GET', 'subscribe'), forwarded: mb('GET', 'subscribe'), commands: 1, subscribe: false },
  { name: 'incomplete SUBSCRIBE is not (yet)', input: '*2\r\n$9\r\nSUBSCRIBE\r\n$2\r\nc', forwarded: '', commands: 0, subscribe: false },
  { name: 'rejected SUBSCRIBE is not', input: '*2\r\n$9\r\nSUBSCRIBE\r\n$-1\r\n', forwarded: '', commands: 0, error: BULKLEN, subscribe: false },
  { name: 'rejected inline subscribe is not', input: 'SUBSCRIBE "a\r\n', forwarded: '', commands: 0, error: QUOTES, subscribe: false },
  // ---- QUIT: Redis replies +OK and reads nothing after it (so no protocol error from what follows)
  { name: 'QUIT then a bad header', input: mb('PING') + mb('QUIT') + '*x\r\n', forwarded: mb('PING') + mb('QUIT'), commands: 2 },
  { name: 'quit with arguments, then commands', input: mb('quit', 'now') + mb('SET', 'k', 'v') + 'PING\r\n', forwarded: mb('quit', 'now'), commands: 1 },
  { name: 'inline QUIT then garbage', input: 'GET k\r\nQuIt\r\n*1\r\nX', forwarded: mb('GET', 'k') + mb('QuIt'), commands: 2 },
  { name: 'QUIT then a SUBSCRIBE never read', input: mb('QUIT') + mb('SUBSCRIBE', 'c'), forwarded: mb('QUIT'), commands: 1, subscribe: false },
  { name: 'QUITX and an argument quit are not', input: mb('QUITX') + mb('ECHO', 'quit') + '*x\r\n', forwarded: mb('QUITX') + mb('ECHO', 'quit'), commands: 2, error: MBLEN },
  { name: 'an incomplete QUIT is not (yet)', input: '*1\r\n$4\r\nQUI', forwarded: '', commands: 0 },
];

function expected(v: Vector): Outcome {
  return { forwarded: v.forwarded, commands: v.commands, error: v.error ?? null, subscribeSeen: v.subscribe ?? false };
}

describe('scanner vectors', () => {
  for (const v of VECTORS) {
    it(v.name, () => {
      const limits = { ...LIMITS, ...v.limits };
      const input = B(v.input);
      const want = expected(v);
      assert.deepEqual(whole(input, limits), want, 'fed whole');
      assert.deepEqual(byteByByte(input, limits), want, 'fed byte by byte');
      for (let at = 1; at < input.length; at++) assert.deepEqual(splitAt(input, at, limits), want, `split at ${at}`);
    });
  }

  it('forwards complete multibulk commands as views of the chunk (no copy)', () => {
    const s = new RequestScanner(LIMITS);
    const chunk = Buffer.concat([enc('GET', 'a'), enc('GET', 'b')]);
    const out: Buffer[] = [];
    s.feed(chunk, out);
    assert.equal(out.length, 1);
    assert.equal(out[0], chunk);
  });

  it('accepts nothing after an error', () => {
    const s = new RequestScanner(LIMITS);
    const out: Buffer[] = [];
    s.feed(B('*1\r\nX'), out);
    assert.notEqual(s.error, null);
    s.feed(enc('PING'), out);
    assert.deepEqual(out, []);
    assert.equal(s.commands, 0);
  });

  it('violations carry stable codes and limit labels', () => {
    const cases: [string, string, string, Partial<ScannerLimits>?][] = [
      ['*99\r\n', 'invalid_multibulk_length', 'max_multibulk_len'],
      ['*x', 'invalid_multibulk_length', 'syntax'],
      ['*1\r\n$999\r\n', 'invalid_bulk_length', 'max_bulk_len'],
      ['*1\r\n$-1', 'invalid_bulk_length', 'syntax'],
      ['*1\r\nx', 'expected_dollar', 'syntax'],
      ['*1\r\n$1\r\nab', 'bulk_not_crlf', 'syntax'],
      ['x'.repeat(200), 'too_big_inline', 'max_inline_len'],
      ['"a\n', 'unbalanced_quotes', 'syntax'],
      ['DEL' + ' k'.repeat(65) + '\n', 'invalid_multibulk_length', 'max_multibulk_len', { maxInlineLen: 1000 }],
      ['ECHO hello\n', 'invalid_bulk_length', 'max_bulk_len', { maxBulkLen: 4 }],
      ['a\x00\n', 'too_big_inline', 'syntax'], // Redis's text, but no limit was reached
    ];
    for (const [input, code, limit, extra] of cases) {
      const s = new RequestScanner({ ...LIMITS, ...extra });
      s.feed(B(input), []);
      assert.equal(s.error?.code, code, input);
      assert.equal(s.error?.limit, limit, input);
    }
  });

  it('midCommand tells a started command apart from a boundary', () => {
    const s = new RequestScanner(LIMITS);
    const out: Buffer[] = [];
    assert.equal(s.midCommand, false);
    s.feed(B('*1\r\n$4\r\nPI'), out);
    assert.equal(s.midCommand, true);
    s.feed(B('NG\r\n'), out);
    assert.equal(s.midCommand, false);
    s.feed(B('PIN'), out);
    assert.equal(s.midCommand, true);
    s.feed(B('G\r\n'), out);
    assert.equal(s.midCommand, false);
    assert.equal(s.commands, 2);
  });

  it('ignores empty chunks anywhere', () => {
    const input = B('PING\r\n' + mb('SET', 'k', 'v') + '*0\r\n');
    const chunks = cut(input, [3, 9, 20]).flatMap((c) => [Buffer.alloc(0), c, Buffer.alloc(0)]);
    assert.deepEqual(scan(chunks), whole(input));
  });

  it('forwarded buffers are not changed by later feeds', () => {
    // Held bytes go out as an owned buffer; later feeds must not write into a buffer already handed out.
    const s = new RequestScanner(LIMITS);
    const kept: Buffer[] = [];
    const out: Buffer[] = [];
    const stream = B(mb('SET', 'a', 'x'.repeat(200)) + mb('SET', 'b', 'y'.repeat(300)) + 'ECHO ' + 'w'.repeat(100) + '\r\n' + mb('GET', 'a'));
    for (const chunk of cut(stream, [5, 100, 230, 231, 400, 560, 561, 570])) {
      s.feed(chunk, out);
      for (const b of out) kept.push(b);
      out.length = 0;
    }
    const snapshot = kept.map((b) => Buffer.from(b));
    s.feed(B('*1\r\n$3\r\nabc'), out); // held again
    s.feed(B('\r\n'), out);
    kept.forEach((b, j) => assert.deepEqual(b, snapshot[j]));
    assert.equal(s.commands, 5);
  });
});

// ---------------------------------------------------------------------------------------------
// Reference model: a direct, non-streaming reading of the grammar over the whole input. The
// scanner must agree with it on every input below HOLD_MAX_BYTES (above that a command streams
// and a late violation cannot take back what went out).

const NAMES = new Set(['subscribe', 'psubscribe', 'ssubscribe', 'monitor']);
const INT_MAX = 2147483647n;
const LLONG_MIN_ABS = 9223372036854775808n;

type Step = { kind: 'more' } | { kind: 'error'; reply: string } | { kind: 'ok'; end: number; forward: Buffer | null; name: string | null };

interface Model {
  forwarded: string;
  commands: number;
  error: string | null;
  subscribeSeen: boolean;
}

/** Whether `s` (the bytes of a count or length so far, no CR yet) can still become valid. */
function numberPrefixOk(s: string, allowNeg: boolean, max: bigint): boolean {
  if (s === '') return true;
  if (allowNeg && s.startsWith('-')) {
    const d = s.slice(1);
    if (d === '') return true;
    if (!/^[1-9][0-9]*$/.test(d) || d.length > 19) return false;
    return d.length < 19 || BigInt(d) <= LLONG_MIN_ABS;
  }
  if (s === '0') return true;
  return /^[1-9][0-9]*$/.test(s) && BigInt(s) <= max;
}

/** Reads "<number>\r\n" at p: the value, or 'more', or 'bad'. */
function readNumber(input: Buffer, p: number, allowNeg: boolean, max: bigint): { end: number; value: bigint } | 'more' | 'bad' {
  let q = p;
  while (q < input.length && input[q] !== 13) {
    if (!numberPrefixOk(input.toString('latin1', p, q + 1), allowNeg, max)) return 'bad';
    q++;
  }
  if (q >= input.length) return 'more';
  const s = input.toString('latin1', p, q);
  if (s === '' || s === '-' || !numberPrefixOk(s, allowNeg, max)) return 'bad';
  if (q + 1 >= input.length) return 'more';
  if (input[q + 1] !== 10) return 'bad';
  return { end: q + 2, value: BigInt(s) };
}

function modelMultibulk(input: Buffer, start: number, limits: ScannerLimits): Step {
  const maxCount = BigInt(limits.maxMultibulkLen) < INT_MAX ? BigInt(limits.maxMultibulkLen) : INT_MAX;
  const count = readNumber(input, start + 1, true, maxCount);
  if (count === 'more') return { kind: 'more' };
  if (count === 'bad') return { kind: 'error', reply: MBLEN };
  if (count.value <= 0n) return { kind: 'ok', end: count.end, forward: null, name: null };
  let p = count.end;
  let name: string | null = null;
  for (let e = 0n; e < count.value; e++) {
    if (p >= input.length) return { kind: 'more' };
    const c = input[p]!;
    if (c !== 36) {
      const shown = c === 13 || c === 10 ? ' ' : String.fromCharCode(c);
      return { kind: 'error', reply: c === 0 ? "-ERR Protocol error: expected '$', got '\r\n" : dollar(shown) };
    }
    const len = readNumber(input, p + 1, false, BigInt(limits.maxBulkLen));
    if (len === 'more') return { kind: 'more' };
    if (len === 'bad') return { kind: 'error', reply: BULKLEN };
    const bodyEnd = len.end + Number(len.value);
    if (bodyEnd >= input.length) return { kind: 'more' };
    if (input[bodyEnd] !== 13) return { kind: 'error', reply: NOT_CRLF };
    if (bodyEnd + 1 >= input.length) return { kind: 'more' };
    if (input[bodyEnd + 1] !== 10) return { kind: 'error', reply: NOT_CRLF };
    if (e === 0n) name = input.toString('latin1', len.end, bodyEnd);
    p = bodyEnd + 2;
  }
  return { kind: 'ok', end: p, forward: input.subarray(start, p), name };
}

function modelInline(input: Buffer, start: number, limits: ScannerLimits): Step {
  const lf = input.indexOf(10, start);
  if (lf === -1) return input.length - start > limits.maxInlineLen + 1 ? { kind: 'error', reply: TOO_BIG } : { kind: 'more' };
  let end = lf;
  if (end > start && input[end - 1] === 13) end--;
  if (end - start > limits.maxInlineLen || input.subarray(start, end).includes(0)) return { kind: 'error', reply: TOO_BIG };
  const args = splitArgs(input, start, end);
  if (args === null) return { kind: 'error', reply: QUOTES };
  if (args.length > limits.maxMultibulkLen) return { kind: 'error', reply: MBLEN };
  if (args.some((a) => a.length > limits.maxBulkLen)) return { kind: 'error', reply: BULKLEN };
  if (args.length === 0) return { kind: 'ok', end: lf + 1, forward: null, name: null };
  return { kind: 'ok', end: lf + 1, forward: enc(...args), name: args[0]!.toString('latin1') };
}

function model(input: Buffer, limits: ScannerLimits = LIMITS): Model {
  const forwarded: Buffer[] = [];
  let commands = 0;
  let subscribeSeen = false;
  let p = 0;
  while (p < input.length) {
    const step = input[p] === 42 ? modelMultibulk(input, p, limits) : modelInline(input, p, limits);
    if (step.kind === 'more') break;
    if (step.kind === 'error') return { forwarded: Buffer.concat(forwarded).toString('latin1'), commands, error: step.reply, subscribeSeen };
    if (step.forward !== null) {
      forwarded.push(step.forward);
      commands++;
      if (step.name !== null && NAMES.has(step.name.toLowerCase())) subscribeSeen = true;
      if (step.name !== null && step.name.toLowerCase() === 'quit') break; // Redis reads nothing after it
    }
    p = step.end;
  }
  return { forwarded: Buffer.concat(forwarded).toString('latin1'), commands, error: null, subscribeSeen };
}

/** Strictly parses canonical multibulk commands; returns how many, or throws. */
function countCanonical(bytes: Buffer): number {
  let p = 0;
  let n = 0;
  const line = (): number => {
    const cr = bytes.indexOf(13, p);
    assert.ok(cr > p && bytes[cr + 1] === 10, `header at ${p}`);
    const v = bytes.toString('latin1', p, cr);
    assert.match(v, /^(0|[1-9][0-9]*)$/);
    p = cr + 2;
    return Number(v);
  };
  while (p < bytes.length) {
    assert.equal(bytes[p++], 42, 'array');
    const count = line();
    assert.ok(count > 0);
    for (let e = 0; e < count; e++) {
      assert.equal(bytes[p++], 36, 'bulk');
      const len = line();
      p += len;
      assert.ok(bytes[p] === 13 && bytes[p + 1] === 10, 'bulk CRLF');
      p += 2;
    }
    n++;
  }
  assert.equal(p, bytes.length);
  return n;
}

describe('reference model', () => {
  it('agrees with every vector', () => {
    for (const v of VECTORS) assert.deepEqual(model(B(v.input), { ...LIMITS, ...v.limits }), expected(v), v.name);
  });
});

// ---------------------------------------------------------------------------------------------
// Generators

const binaryArg = fc.uint8Array({ maxLength: 40 }).map((a) => Buffer.from(a));
/** Bytes that need no quoting in an inline command. */
const plainChars = fc.constantFrom(...'abcXYZ019-_:.{}@*$+éÿ'.split('').map((c) => c.charCodeAt(0)));
const plainArg = fc.array(plainChars, { minLength: 1, maxLength: 12 }).map((a) => Buffer.from(a));

/** One inline argument rendered in a random legal way; returns [text, value]. */
const inlineArg: fc.Arbitrary<[string, Buffer]> = fc.oneof(
  plainArg.map((b): [string, Buffer] => [b.toString('latin1'), b]),
  binaryArg.map((b): [string, Buffer] => {
    // double quotes: \xHH for anything unprintable, \" and \\ for the two specials
    let text = '"';
    for (const c of b) {
      if (c === 34) text += '\\"';
      else if (c === 92) text += '\\\\';
      else if (c >= 32 && c < 127) text += String.fromCharCode(c);
      else if (c === 10) text += '\\n';
      else text += '\\x' + c.toString(16).padStart(2, '0');
    }
    return [text + '"', b];
  }),
  fc.string({ maxLength: 10, unit: fc.constantFrom('a', 'b', ' ', '"', "'", '\t', '$', '*') }).map((s): [string, Buffer] => [
    "'" + s.replace(/'/g, "\\'") + "'",
    B(s),
  ]),
);
const separator = fc.constantFrom(' ', '  ', '\t', ' \t ');

/** A valid command: its wire bytes, its canonical forwarded bytes and whether it expects a reply. */
interface Cmd {
  wire: Buffer;
  canonical: Buffer;
  replies: number;
}

const multibulkCmd: fc.Arbitrary<Cmd> = fc.array(fc.oneof(binaryArg, plainArg), { minLength: 1, maxLength: 6 }).map((args) => {
  const e = enc(...args);
  return { wire: e, canonical: e, replies: 1 };
});
const inlineCmd: fc.Arbitrary<Cmd> = fc
  .tuple(fc.array(fc.tuple(separator, inlineArg), { minLength: 1, maxLength: 6 }), fc.constantFrom('\r\n', '\n'), fc.boolean(), fc.constantFrom('', ' ', '\t'))
  .map(([args, eol, lead, trail]) => {
    // Leading blanks are optional, but a line starting with '*' would be multibulk.
    let line = args.map(([sep, [text]], j) => (j === 0 && !lead ? '' : sep) + text).join('') + trail;
    if (line.startsWith('*')) line = ' ' + line;
    return { wire: B(line + eol), canonical: enc(...args.map(([, [, v]]) => v)), replies: 1 };
  });
const noReplyCmd: fc.Arbitrary<Cmd> = fc
  .constantFrom('*0\r\n', '*-1\r\n', '*-42\r\n', '\r\n', '\n', '  \t\r\n')
  .map((s) => ({ wire: B(s), canonical: Buffer.alloc(0), replies: 0 }));
const bigCmd: fc.Arbitrary<Cmd> = fc.integer({ min: HOLD_MAX_BYTES - 100, max: HOLD_MAX_BYTES + 5000 }).map((n) => {
  const e = enc('SET', 'big', Buffer.alloc(n, 0x61));
  return { wire: e, canonical: e, replies: 1 };
});

const PROP_LIMITS: ScannerLimits = { maxMultibulkLen: 1000, maxBulkLen: 1 << 20, maxInlineLen: 65536 };

/** Random cut points for a buffer of length n, a few to many. */
const cuts = (n: number): fc.Arbitrary<number[]> => fc.array(fc.integer({ min: 1, max: Math.max(1, n - 1) }), { maxLength: Math.min(n, 40) });

const alphabet = fc.constantFrom(...[42, 36, 13, 10, 48, 49, 50, 57, 45, 43, 34, 39, 92, 32, 9, 0, 97, 120, 0xe9, 0xff]);

/** A valid stream with random damage: bytes replaced, inserted or removed. */
const mutated: fc.Arbitrary<Buffer> = fc
  .tuple(
    fc.array(fc.oneof(multibulkCmd, inlineCmd, noReplyCmd), { minLength: 1, maxLength: 6 }),
    fc.array(fc.tuple(fc.nat(), fc.constantFrom('replace', 'insert', 'delete'), alphabet), { minLength: 1, maxLength: 4 }),
  )
  .map(([cmds, edits]) => {
    const bytes = [...Buffer.concat(cmds.map((c) => c.wire))];
    for (const [pos, op, byte] of edits) {
      const at = pos % (bytes.length + 1);
      if (op === 'insert') bytes.splice(at, 0, byte);
      else if (at < bytes.length) {
        if (op === 'replace') bytes[at] = byte;
        else bytes.splice(at, 1);
      }
    }
    return Buffer.from(bytes);
  });
const garbage: fc.Arbitrary<Buffer> = fc.array(alphabet, { maxLength: 80 }).map((a) => Buffer.from(a));
const rawBytes: fc.Arbitrary<Buffer> = fc.uint8Array({ maxLength: 200 }).map((a) => Buffer.from(a));
/** Valid commands, then damage: what came before the damage must go out, nothing after. */
const validThenDamaged: fc.Arbitrary<Buffer> = fc
  .tuple(fc.array(fc.oneof(multibulkCmd, inlineCmd), { minLength: 1, maxLength: 4 }), fc.oneof(mutated, garbage))
  .map(([cmds, tail]) => Buffer.concat([...cmds.map((c) => c.wire), tail]));
const hostile = fc.oneof({ arbitrary: mutated, weight: 3 }, { arbitrary: validThenDamaged, weight: 2 }, { arbitrary: garbage, weight: 1 }, { arbitrary: rawBytes, weight: 1 });

describe('scanner properties', () => {
  it('valid commands, split anywhere, come out canonical and counted', () => {
    fc.assert(
      fc.property(
        fc.array(fc.oneof({ arbitrary: multibulkCmd, weight: 4 }, { arbitrary: inlineCmd, weight: 4 }, { arbitrary: noReplyCmd, weight: 1 }, { arbitrary: bigCmd, weight: 1 }), { maxLength: 12 }).chain((cmds) => {
          const wire = Buffer.concat(cmds.map((c) => c.wire));
          return fc.tuple(fc.constant(cmds), fc.constant(wire), cuts(wire.length));
        }),
        ([cmds, wire, offsets]) => {
          const got = scan(cut(wire, offsets), PROP_LIMITS);
          assert.equal(got.error, null);
          assert.equal(got.forwarded, Buffer.concat(cmds.map((c) => c.canonical)).toString('latin1'));
          assert.equal(got.commands, cmds.reduce((n, c) => n + c.replies, 0));
        },
      ),
      { numRuns: 300 },
    );
  });

  it('garbage and damaged streams: never throw, agree with the model, split or whole', () => {
    const limitsArb = fc.record({ maxMultibulkLen: fc.integer({ min: 1, max: 12 }), maxBulkLen: fc.integer({ min: 1, max: 64 }), maxInlineLen: fc.integer({ min: 1, max: 64 }) });
    fc.assert(
      fc.property(
        hostile.chain((input) => fc.tuple(fc.constant(input), cuts(input.length), fc.oneof(fc.constant(PROP_LIMITS), limitsArb))),
        ([input, offsets, limits]) => {
          const once = whole(input, limits);
          assert.deepEqual(once, model(input, limits), 'model');
          assert.deepEqual(scan(cut(input, offsets), limits), once, 'split');
          // What went out is whole, valid commands — never a piece of the offender.
          assert.equal(countCanonical(B(once.forwarded)), once.commands);
        },
      ),
      { numRuns: 3000 },
    );
  });

  it('damaged streams fed byte by byte agree with whole', () => {
    fc.assert(
      fc.property(mutated, (input) => {
        assert.deepEqual(byteByByte(input, PROP_LIMITS), whole(input, PROP_LIMITS));
      }),
      { numRuns: 500 },
    );
  });
});

// ---------------------------------------------------------------------------------------------
// Memory: what a scanner keeps between feeds is bounded whatever the client sends.

interface Internals {
  held: Buffer[];
  heldBytes: number;
  tail: Buffer | null;
  tailLen: number;
}
/** The scanner's held bytes (a ByteList) as its fields. */
const internals = (s: RequestScanner): Internals => {
  const list = (s as unknown as { held: { pieces: Buffer[]; bytes: number; tail: Buffer | null; tailLen: number } }).held;
  return { held: list.pieces, heldBytes: list.bytes, tail: list.tail, tailLen: list.tailLen };
};

/** Checks the hold's bookkeeping and returns the bytes it keeps alive beyond the held data. */
function checkHold(s: RequestScanner): void {
  const { held, heldBytes, tail, tailLen } = internals(s);
  assert.equal(held.reduce((n, b) => n + b.length, 0) + tailLen, heldBytes, 'heldBytes is the sum of the pieces');
  if (heldBytes === 0) assert.ok(held.length === 0 && tail === null, 'nothing kept once nothing is held');
  // Views are pieces of at least HOLD_COPY_BELOW bytes, each possibly followed by one sealed copy.
  assert.ok(held.length <= 2 * Math.floor(heldBytes / HOLD_COPY_BELOW) + 1, `${held.length} pieces for ${heldBytes} bytes`);
  if (tail !== null) assert.ok(tail.length <= Math.max(256, 2 * tailLen), `tail capacity ${tail.length} for ${tailLen} bytes`);
}

describe('scanner memory bound', () => {
  it('held bytes never pass HOLD_MAX_BYTES + one chunk, in a bounded number of pieces', () => {
    const holdCap = Math.max(HOLD_MAX_BYTES, PROP_LIMITS.maxInlineLen + 1);
    fc.assert(
      fc.property(
        fc.array(fc.oneof(multibulkCmd, inlineCmd, bigCmd), { minLength: 1, maxLength: 5 }),
        fc.array(fc.oneof(fc.integer({ min: 1, max: 40000 }), fc.integer({ min: 1, max: 3 }), fc.integer({ min: 900, max: 1100 })), { minLength: 1, maxLength: 20 }),
        (cmds, sizes) => {
          const wire = Buffer.concat(cmds.map((c) => c.wire));
          const s = new RequestScanner(PROP_LIMITS);
          const out: Buffer[] = [];
          const forwarded: Buffer[] = [];
          let p = 0;
          for (let k = 0; p < wire.length; k++) {
            const chunk = wire.subarray(p, p + sizes[k % sizes.length]!);
            p += chunk.length;
            s.feed(chunk, out);
            forwarded.push(...out);
            out.length = 0;
            const { heldBytes } = internals(s);
            assert.ok(heldBytes <= HOLD_MAX_BYTES + chunk.length, `held ${heldBytes}`);
            assert.ok(heldBytes <= holdCap, `held ${heldBytes}`);
            checkHold(s);
          }
          assert.equal(s.error, null);
          assert.ok(Buffer.concat(forwarded).equals(Buffer.concat(cmds.map((c) => c.canonical))));
        },
      ),
      { numRuns: 200 },
    );
  });

  it('a 10 MB bulk value fed in 16 KiB chunks streams through without accumulating', () => {
    const size = 10 * 1024 * 1024;
    const value = Buffer.alloc(size);
    for (let j = 0; j < size; j += 4096) value[j] = j & 0xff;
    const wire = Buffer.concat([B(`*3\r\n$3\r\nSET\r\n$3\r\nbig\r\n$${size}\r\n`), value, B('\r\n'), enc('PING')]);
    const s = new RequestScanner({ maxMultibulkLen: 1048576, maxBulkLen: 536870912, maxInlineLen: 65536 });
    const out: Buffer[] = [];
    const forwarded: Buffer[] = [];
    let maxHeld = 0;
    let lastHeld = 0;
    for (let p = 0; p < wire.length; p += 16384) {
      const chunk = wire.subarray(p, p + 16384);
      s.feed(chunk, out);
      forwarded.push(...out);
      out.length = 0;
      lastHeld = internals(s).heldBytes;
      maxHeld = Math.max(maxHeld, lastHeld);
      if (p > 2 * HOLD_MAX_BYTES && p + 16384 < wire.length - 100) {
        // streaming: each chunk goes straight out, nothing is kept
        assert.equal(lastHeld, 0);
        assert.equal(forwarded[forwarded.length - 1], chunk);
      }
    }
    assert.ok(maxHeld <= HOLD_MAX_BYTES, `held at most ${maxHeld}`);
    assert.equal(lastHeld, 0);
    assert.equal(s.commands, 2);
    assert.equal(s.error, null);
    assert.ok(Buffer.concat(forwarded).equals(wire));
  });

  it('a client trickling one byte per read costs no more than the bytes it sent', () => {
    const s = new RequestScanner(PROP_LIMITS);
    const out: Buffer[] = [];
    s.feed(B('*1\r\n$60000\r\n'), out);
    for (let j = 0; j < 60000; j++) s.feed(Buffer.from([0x78]), out);
    assert.deepEqual(out, []);
    const { heldBytes, held, tail } = internals(s);
    assert.equal(heldBytes, 60012);
    assert.equal(held.length, 0, 'no view per read');
    assert.ok(tail !== null && tail.length <= 2 * heldBytes, 'one owned buffer');
    checkHold(s);
    s.feed(B('\r\n'), out);
    assert.equal(s.commands, 1);
    assert.equal(Buffer.concat(out).length, 60014);
  });

  it('long held pieces stay views of the chunk (no copy)', () => {
    const s = new RequestScanner(PROP_LIMITS);
    const value = Buffer.alloc(16384, 0x76);
    const wire = Buffer.concat([enc('SET', 'a', value), enc('SET', 'b', value), enc('SET', 'c', value)]);
    const chunks = cut(wire, [16384, 32768]);
    const out: Buffer[] = [];
    for (const c of chunks) s.feed(c, out);
    assert.equal(s.commands, 3);
    assert.ok(Buffer.concat(out).equals(wire));
    for (const b of out) assert.ok(chunks.some((c) => c.buffer === b.buffer), 'every piece is a view of an input chunk');
  });

  it('an offender longer than HOLD_MAX_BYTES has gone out in part; what came before it is whole', () => {
    const offender = Buffer.concat([B(`*2\r\n$3\r\nSET\r\n$${HOLD_MAX_BYTES + 40000}\r\n`), Buffer.alloc(HOLD_MAX_BYTES + 40000, 0x61), B('XX')]);
    const wire = Buffer.concat([enc('PING'), offender, enc('PING')]);
    for (const size of [1000, 16384, 65536]) {
      const got = scan(cut(wire, Array.from({ length: Math.ceil(wire.length / size) }, (_, j) => j * size)), PROP_LIMITS);
      assert.equal(got.error, NOT_CRLF);
      assert.equal(got.commands, 1);
      assert.ok(B(got.forwarded).equals(wire.subarray(0, got.forwarded.length)), 'a prefix of the input');
      assert.ok(got.forwarded.length >= enc('PING').length && got.forwarded.length < enc('PING').length + offender.length - 2);
      // Streaming starts once the held bytes would pass HOLD_MAX_BYTES (with 64 KiB chunks, the
      // second chunk already holds the violation, so nothing of the offender went out).
      if (size < HOLD_MAX_BYTES) assert.ok(got.forwarded.length > HOLD_MAX_BYTES - size);
      else assert.equal(got.forwarded, mb('PING'));
    }
    // fed whole, the violation is seen before anything of the offender goes out
    assert.deepEqual(whole(wire, PROP_LIMITS), { forwarded: mb('PING'), commands: 1, error: NOT_CRLF, subscribeSeen: false });
  });

  it('an incomplete inline line is held up to max_inline_len + 1 bytes, then refused', () => {
    const s = new RequestScanner({ maxMultibulkLen: 10, maxBulkLen: 1000, maxInlineLen: 1000 });
    const out: Buffer[] = [];
    for (let j = 0; j < 1001; j++) s.feed(B('a'), out);
    assert.equal(s.error === null, true);
    assert.equal(internals(s).heldBytes, 1001);
    s.feed(B('a'), out);
    assert.equal(s.error?.code, 'too_big_inline');
    assert.equal(internals(s).heldBytes, 0);
    assert.deepEqual(out, []);
  });
});
