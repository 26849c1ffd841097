// Differential fuzzing: the same byte stream goes to a real redis-server directly (plain TCP) and
// through the proxy (TLS), and the replies are compared byte for byte, error texts included.
//
// Streams: valid pipelines of harmless commands (multibulk and inline forms, binary arguments),
// the same pipelines mutated (byte flips, inserted '*' '$' CR LF quotes digits NUL, deletions,
// truncation, duplicated header lines and ranges), and random garbage. Each stream is classified
// by a model of Redis 7's request parser (processMultibulkBuffer / processInlineBuffer /
// sdssplitargs, including strchr() stopping at a NUL):
//   - "same": Redis and the proxy read the stream alike → the proxy's bytes equal Redis's, and
//     the proxy closes exactly when Redis does (after a protocol error);
//   - one of the README's deliberate divergences → the proxy answers Redis's replies to the
//     commands before the divergence point, then the error the proxy gives there, then closes.
// The model is itself checked against Redis on every stream (how many replies Redis gave,
// whether it closed), so a wrong model fails the test instead of hiding a proxy bug.
//
// Neither side half-closes after its write (Redis drops replies it has not written yet when it
// reads EOF): each waits for what the model predicts — the server's close after a protocol
// error, or N replies and then SETTLE_MS more — or, where Redis reads on past a divergence, for
// SILENCE_MS without a byte; then it closes. Streams stay under 60,000 bytes (see MAX_STREAM).
// Replay: SEED is fixed; a failure prints fast-check's seed/path and the offending stream.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import tls from 'node:tls';
import { after, describe, test } from 'node:test';
import fc from 'fast-check';
import { repoRoot } from '../helpers/common.js';
import { logTail, useStack, type Stack } from '../helpers/fixture.js';
import { metricSamples, metricValue, waitForMetric } from '../helpers/proxy.js';
import { encodeCommand, show, splitReplies } from '../helpers/resp.js';

// DIFF_FUZZ_SEED / DIFF_FUZZ_RUNS override both for a longer hunt (the defaults keep the file near
// 30 s); DIFF_FUZZ_PATH replays one failure (fast-check's `path`).
const SEED = Number(process.env.DIFF_FUZZ_SEED ?? 20261128);
/** fast-check runs; each run sends STREAMS_PER_RUN streams at once (own database each). */
const NUM_RUNS = Number(process.env.DIFF_FUZZ_RUNS ?? 75);
const STREAMS_PER_RUN = 4;
/** Where the number of replies cannot be known: wait this long without a byte. */
const SILENCE_MS = 300;
/** After the predicted replies arrived: wait this long for unexpected extra bytes. */
const SETTLE_MS = 150;
/** Give up waiting for the predicted replies (the assertions then say what was missing). */
const WANT_TIMEOUT_MS = 5_000;

// ---- the deliberate divergences, exactly as README.md lists them ------------------------------

type DivergenceClass = 'line-endings' | 'early-rejection' | 'nul-in-inline' | 'long-inline' | 'inline-arg-count' | 'default-max-multibulk-len';

/** Class → the bold title of its bullet under "### Deliberate divergences from Redis". */
const DIVERGENCES: Record<DivergenceClass, string> = {
  'line-endings': 'Line endings.',
  'early-rejection': 'Early rejection.',
  'nul-in-inline': 'NUL in an inline line.',
  'long-inline': 'Inline lines longer than 64 KiB.', // the streams here keep inline lines shorter
  'inline-arg-count': 'Inline argument count.',
  'default-max-multibulk-len': 'Default `max_multibulk_len` of 1,048,576.',
};

// ---- the proxy's limits (its defaults) and the errors it may answer with ---------------------

const MAX_MULTIBULK = 1048576;
const MAX_BULK = 536870912; // also Redis's default proto-max-bulk-len
const INT_MAX = 2147483647;

const E = {
  multibulk: '-ERR Protocol error: invalid multibulk length\r\n',
  bulk: '-ERR Protocol error: invalid bulk length\r\n',
  crlf: '-ERR Protocol error: bulk data not followed by CRLF\r\n',
  inline: '-ERR Protocol error: too big inline request\r\n',
  /** Redis formats the byte with %c, maps CR/LF to spaces, and a NUL ends the text. */
  dollar: (c: number): string => (c === 0 ? "-ERR Protocol error: expected '$', got '\r\n" : `-ERR Protocol error: expected '$', got '${c === 13 || c === 10 ? ' ' : String.fromCharCode(c)}'\r\n`),
};

// ---- a model of Redis 7's request parser ------------------------------------------------------

type Verdict =
  /** Redis and the proxy read the stream alike: `commands` commands run, then a protocol error or not. */
  | { kind: 'same'; commands: number; error: boolean }
  /** They part at byte `at`, after `commands` commands; the proxy answers `reply` there and closes. */
  | { kind: 'divergent'; cls: DivergenceClass; commands: number; reply: string; at: number };

/** Redis's string2ll(): "0", or an optional '-' and [1-9][0-9]*, within a long long. */
function string2ll(b: Buffer): bigint | null {
  const t = b.toString('latin1');
  if (t === '0') return 0n;
  if (!/^-?[1-9][0-9]*$/.test(t) || t.length > 20) return null;
  const v = BigInt(t);
  return v > 9223372036854775807n || v < -9223372036854775808n ? null : v;
}

/** Could the proxy still accept a multibulk count that begins with these bytes (no CR yet)? */
function mbPrefixOk(h: Buffer): boolean {
  const t = h.toString('latin1');
  if (t === '' || t === '0' || t === '-') return true;
  if (t.startsWith('-')) {
    const d = t.slice(1);
    return /^[1-9][0-9]*$/.test(d) && d.length <= 19 && BigInt(d) <= 9223372036854775808n;
  }
  return /^[1-9][0-9]*$/.test(t) && BigInt(t) <= BigInt(MAX_MULTIBULK);
}
const mbFullOk = (h: Buffer): boolean => mbPrefixOk(h) && h.length > 0 && !(h.length === 1 && h[0] === 45);

function bulkPrefixOk(h: Buffer): boolean {
  const t = h.toString('latin1');
  if (t === '' || t === '0') return true;
  return /^[1-9][0-9]*$/.test(t) && BigInt(t) <= BigInt(MAX_BULK);
}
const bulkFullOk = (h: Buffer): boolean => bulkPrefixOk(h) && h.length > 0;

const cIsSpace = (c: number): boolean => c === 32 || (c >= 9 && c <= 13);
const hexVal = (c: number): number => (c >= 48 && c <= 57 ? c - 48 : c >= 97 && c <= 102 ? c - 87 : c >= 65 && c <= 70 ? c - 55 : -1);

/** sdssplitargs() on a line without NUL bytes; null = "unbalanced quotes". */
function sdssplitargs(line: Buffer): Buffer[] | null {
  const at = (i: number): number => (i < line.length ? line[i]! : 0);
  const out: Buffer[] = [];
  let p = 0;
  for (;;) {
    while (at(p) !== 0 && cIsSpace(at(p))) p++;
    if (at(p) === 0) return out;
    let inq = false;
    let insq = false;
    let done = false;
    const cur: number[] = [];
    while (!done) {
      const c = at(p);
      if (inq) {
        if (c === 92 && at(p + 1) === 120 && hexVal(at(p + 2)) >= 0 && hexVal(at(p + 3)) >= 0) {
          cur.push(hexVal(at(p + 2)) * 16 + hexVal(at(p + 3)));
          p += 3;
        } else if (c === 92 && at(p + 1) !== 0) {
          p++;
          const e = at(p);
          cur.push(e === 110 ? 10 : e === 114 ? 13 : e === 116 ? 9 : e === 98 ? 8 : e === 97 ? 7 : e);
        } else if (c === 34) {
          if (at(p + 1) !== 0 && !cIsSpace(at(p + 1))) return null;
          done = true;
        } else if (c === 0) return null;
        else cur.push(c);
      } else if (insq) {
        if (c === 92 && at(p + 1) === 39) {
          p++;
          cur.push(39);
        } else if (c === 39) {
          if (at(p + 1) !== 0 && !cIsSpace(at(p + 1))) return null;
          done = true;
        } else if (c === 0) return null;
        else cur.push(c);
      } else if (c === 32 || c === 10 || c === 13 || c === 9 || c === 0) done = true;
      else if (c === 34) inq = true;
      else if (c === 39) insq = true;
      else cur.push(c);
      if (at(p) !== 0) p++;
    }
    out.push(Buffer.from(cur));
  }
}

/**
 * Walks `s` as Redis does (the stream is small: under Redis's 64 KiB inline/header buffers) and
 * says where, if anywhere, the proxy's stricter grammar parts from it.
 */
function classify(s: Buffer): Verdict {
  const len = s.length;
  let p = 0;
  let commands = 0;
  const same = (error: boolean): Verdict => ({ kind: 'same', commands, error });
  const diverge = (cls: DivergenceClass, reply: string): Verdict => ({ kind: 'divergent', cls, commands, reply, at: p });
  while (p < len) {
    if (s[p] !== 42 /* * */) {
      // Inline: Redis looks for LF with strchr(), which stops at a NUL.
      const nl = s.indexOf(10, p);
      if (nl === -1) return same(false); // both wait for the line to end
      const z = s.indexOf(0, p);
      if (z !== -1 && z < nl) return diverge('nul-in-inline', E.inline); // Redis never finds this LF
      const end = nl > p && s[nl - 1] === 13 ? nl - 1 : nl;
      const args = sdssplitargs(s.subarray(p, end));
      if (args === null) return same(true); // unbalanced quotes, both
      if (args.length > MAX_MULTIBULK) return diverge('inline-arg-count', E.multibulk);
      if (args.length > 0) commands++;
      p = nl + 1;
      continue;
    }
    // Multibulk count: Redis looks for CR with strchr() and needs one more byte after it.
    {
      const r = s.indexOf(13, p);
      const z = s.indexOf(0, p);
      const nulFirst = z !== -1 && (r === -1 || z < r);
      if (nulFirst || r === -1 || r + 1 >= len) {
        // Redis waits on this line (for ever, if a NUL hides the CR from it).
        const h = s.subarray(p + 1, nulFirst ? z : r === -1 ? len : r);
        if (nulFirst || !mbPrefixOk(h) || (r !== -1 && !mbFullOk(h))) return diverge('early-rejection', E.multibulk);
        return same(false);
      }
      const v = string2ll(s.subarray(p + 1, r));
      if (v === null || v > BigInt(INT_MAX)) return same(true); // invalid multibulk length, both
      if (v > BigInt(MAX_MULTIBULK)) return diverge('default-max-multibulk-len', E.multibulk);
      if (s[r + 1] !== 10) return diverge('line-endings', E.multibulk); // Redis skips any byte
      p = r + 2;
      if (v <= 0n) continue; // *0, *-N: consumed without a reply
      for (let left = Number(v); left > 0; left--) {
        if (p >= len) return same(false);
        const r2 = s.indexOf(13, p);
        const z2 = s.indexOf(0, p);
        const nulFirst2 = z2 !== -1 && (r2 === -1 || z2 < r2);
        if (nulFirst2 || r2 === -1 || r2 + 1 >= len) {
          if (s[p] !== 36) return diverge('early-rejection', E.dollar(s[p]!));
          const h = s.subarray(p + 1, nulFirst2 ? z2 : r2 === -1 ? len : r2);
          if (nulFirst2 || !bulkPrefixOk(h) || (r2 !== -1 && !bulkFullOk(h))) return diverge('early-rejection', E.bulk);
          return same(false);
        }
        if (s[p] !== 36) return same(true); // expected '$', both
        const bl = string2ll(s.subarray(p + 1, r2));
        if (bl === null || bl < 0n || bl > BigInt(MAX_BULK)) return same(true); // invalid bulk length, both
        if (s[r2 + 1] !== 10) return diverge('line-endings', E.bulk);
        const body = r2 + 2;
        const n = Number(bl);
        if (len - body < n + 2) {
          // Redis waits for the body and the two bytes after it; the proxy checks them as they come.
          p = body + n;
          if (len - body > n && s[body + n] !== 13) return diverge('line-endings', E.crlf);
          return same(false);
        }
        p = body + n;
        if (s[p] !== 13 || s[p + 1] !== 10) return diverge('line-endings', E.crlf); // Redis ignores them
        p += 2;
      }
      commands++;
    }
  }
  return same(false);
}

// ---- stream generators ---------------------------------------------------------------------

const KEYS = ['k1', 'k2', 'k3', 'n', '{t}x'];
const key = fc.constantFrom(...KEYS);
const keys = fc.array(key, { minLength: 1, maxLength: 4 });
const binary = fc.uint8Array({ maxLength: 24 }).map((a) => Buffer.from(a));
const number = fc.integer({ min: -1000, max: 1000 }).map((n) => Buffer.from(String(n)));
/** Now and then a value past Redis's 32 KiB "big argument" threshold (PROTO_MBULK_BIG_ARG). */
const big = fc.tuple(fc.integer({ min: 16_000, max: 40_000 }), fc.integer({ min: 0x20, max: 0x7e })).map(([n, c]) => Buffer.alloc(n, c));
const value = fc.oneof(
  { arbitrary: binary, weight: 8 },
  { arbitrary: number, weight: 3 },
  { arbitrary: fc.constantFrom(Buffer.from('bar'), Buffer.from(''), Buffer.from('a b'), Buffer.from('"q"')), weight: 3 },
  { arbitrary: big, weight: 1 },
);

const command: fc.Arbitrary<Buffer[]> = fc.oneof(
  fc.tuple(key, value).map(([k, v]) => [Buffer.from('SET'), Buffer.from(k), v]),
  key.map((k) => [Buffer.from('GET'), Buffer.from(k)]),
  keys.map((ks) => [Buffer.from('DEL'), ...ks.map((k) => Buffer.from(k))]),
  key.map((k) => [Buffer.from('INCR'), Buffer.from(k)]),
  value.map((v) => [Buffer.from('ECHO'), v]),
  fc.option(value, { nil: undefined }).map((v) => (v === undefined ? [Buffer.from('PING')] : [Buffer.from('PING'), v])),
  keys.map((ks) => [Buffer.from('EXISTS'), ...ks.map((k) => Buffer.from(k))]),
  fc.tuple(key, value).map(([k, v]) => [Buffer.from('APPEND'), Buffer.from(k), v]),
  key.map((k) => [Buffer.from('STRLEN'), Buffer.from(k)]),
  keys.map((ks) => [Buffer.from('MGET'), ...ks.map((k) => Buffer.from(k))]),
);

const PLAIN = /^[\x21-\x7e]+$/;

/** One argument written so that sdssplitargs() gives it back: bare, "double" (\xHH escapes) or 'single'. */
function inlineArg(a: Buffer, style: number): string {
  const s = a.toString('latin1');
  if (style === 0 && PLAIN.test(s) && !/["'\\]/.test(s)) return s;
  if (style === 1 && /^[\x20-\x7e]*$/.test(s) && !/['\\]/.test(s)) return `'${s}'`;
  let out = '"';
  for (const c of a) {
    if (c === 34) out += '\\"';
    else if (c === 92) out += '\\\\';
    else if (c >= 32 && c <= 126) out += String.fromCharCode(c);
    else out += `\\x${c.toString(16).padStart(2, '0')}`;
  }
  return `${out}"`;
}

const inlineForm: fc.Arbitrary<(args: Buffer[]) => Buffer> = fc
  .tuple(fc.constantFrom(' ', '  ', '\t', ' \t'), fc.constantFrom('\r\n', '\n'), fc.array(fc.integer({ min: 0, max: 2 }), { minLength: 8, maxLength: 8 }))
  .map(([sep, eol, styles]) => (args: Buffer[]) => Buffer.from(args.map((a, i) => inlineArg(a, styles[i % styles.length]!)).join(sep) + eol, 'latin1'));

const framed: fc.Arbitrary<Buffer> = fc.oneof(
  { arbitrary: command.map((args) => encodeCommand(args)), weight: 6 },
  { arbitrary: fc.tuple(command, inlineForm).map(([args, form]) => form(args)), weight: 4 },
  { arbitrary: fc.constantFrom('*0\r\n', '*-1\r\n', '\r\n', '\n', '  \r\n').map((s) => Buffer.from(s)), weight: 1 },
);

const pipeline: fc.Arbitrary<Buffer> = fc.array(framed, { minLength: 1, maxLength: 8 }).map((parts) => Buffer.concat(parts));

const SPECIAL = [...'*$\r\n"\'\\0123456789- \t'].map((c) => c.charCodeAt(0)).concat([0]);
const special = fc.constantFrom(...SPECIAL);

type Mutation =
  | { op: 'flip'; at: number; bit: number }
  | { op: 'replace' | 'insert'; at: number; byte: number }
  | { op: 'insert-cut'; at: number; byte: number; keep: number }
  | { op: 'digits'; at: number; digits: string }
  | { op: 'delete'; at: number; n: number }
  | { op: 'truncate'; at: number }
  | { op: 'dup-header'; at: number }
  | { op: 'dup-range'; at: number; n: number };

const mutation: fc.Arbitrary<Mutation> = fc.oneof(
  fc.record({ op: fc.constant('flip' as const), at: fc.nat(), bit: fc.integer({ min: 0, max: 7 }) }),
  fc.record({ op: fc.constantFrom('replace' as const, 'insert' as const), at: fc.nat(), byte: special }),
  fc.record({ op: fc.constant('insert-cut' as const), at: fc.nat(), byte: special, keep: fc.integer({ min: 0, max: 2 }) }),
  fc.record({ op: fc.constant('digits' as const), at: fc.nat(), digits: fc.stringMatching(/^[0-9]{1,11}$/) }),
  fc.record({ op: fc.constant('delete' as const), at: fc.nat(), n: fc.integer({ min: 1, max: 3 }) }),
  fc.record({ op: fc.constant('truncate' as const), at: fc.nat() }),
  fc.record({ op: fc.constant('dup-header' as const), at: fc.nat() }),
  fc.record({ op: fc.constant('dup-range' as const), at: fc.nat(), n: fc.integer({ min: 1, max: 12 }) }),
);

function mutate(input: Buffer, m: Mutation): Buffer {
  const len = input.length;
  if (len === 0) return m.op === 'insert' ? Buffer.from([m.byte]) : input;
  const at = m.at % len;
  switch (m.op) {
    case 'flip': {
      const b = Buffer.from(input);
      b[at] = b[at]! ^ (1 << m.bit);
      return b;
    }
    case 'replace': {
      const b = Buffer.from(input);
      b[at] = m.byte;
      return b;
    }
    case 'insert':
      return Buffer.concat([input.subarray(0, m.at % (len + 1)), Buffer.from([m.byte]), input.subarray(m.at % (len + 1))]);
    case 'insert-cut': // a bad byte, then the stream ends soon after it (Redis still waits for the line)
      return Buffer.concat([input.subarray(0, m.at % (len + 1)), Buffer.from([m.byte]), input.subarray(m.at % (len + 1), m.at % (len + 1) + m.keep)]);
    case 'digits': // longer numbers: counts and lengths past the limits
      return Buffer.concat([input.subarray(0, m.at % (len + 1)), Buffer.from(m.digits, 'latin1'), input.subarray(m.at % (len + 1))]);
    case 'delete':
      return Buffer.concat([input.subarray(0, at), input.subarray(at + m.n)]);
    case 'truncate':
      return input.subarray(0, at);
    case 'dup-header': {
      // a header line "*N\r\n" or "$N\r\n": the at-th one, cyclically
      const starts: number[] = [];
      for (let i = 0; i < len; i++) if ((input[i] === 42 || input[i] === 36) && (i === 0 || input[i - 1] === 10)) starts.push(i);
      if (starts.length === 0) return input;
      const s = starts[m.at % starts.length]!;
      const e = input.indexOf(10, s);
      const end = e === -1 ? len : e + 1;
      return Buffer.concat([input.subarray(0, end), input.subarray(s, end), input.subarray(end)]);
    }
    case 'dup-range':
      return Buffer.concat([input.subarray(0, at + m.n), input.subarray(at, at + m.n), input.subarray(at + m.n)]);
  }
}

const mutated: fc.Arbitrary<Buffer> = fc
  .tuple(pipeline, fc.array(mutation, { minLength: 1, maxLength: 3 }))
  .map(([p, ms]) => ms.reduce(mutate, p));

const garbage: fc.Arbitrary<Buffer> = fc.oneof(
  fc.uint8Array({ maxLength: 256 }).map((a) => Buffer.from(a)),
  fc.array(fc.oneof(special, fc.constantFrom(...[...'PINGECHOabc'].map((c) => c.charCodeAt(0)))), { maxLength: 96 }).map((a) => Buffer.from(a)),
);

/**
 * Streams stay under 60,000 bytes: with less than 64 KiB buffered, Redis never gives its
 * "too big …" answers, which depend on how much it has read so far (the model assumes they do not happen).
 */
const MAX_STREAM = 60_000;
const capped = (b: Buffer): Buffer => (b.length > MAX_STREAM ? b.subarray(0, MAX_STREAM) : b);

type Kind = 'valid' | 'mutated' | 'garbage';
const stream: fc.Arbitrary<{ kind: Kind; bytes: Buffer }> = fc.oneof(
  { arbitrary: pipeline.map((bytes) => ({ kind: 'valid' as const, bytes: capped(bytes) })), weight: 3 },
  { arbitrary: mutated.map((bytes) => ({ kind: 'mutated' as const, bytes: capped(bytes) })), weight: 5 },
  { arbitrary: garbage.map((bytes) => ({ kind: 'garbage' as const, bytes })), weight: 2 },
);

// ---- sending a stream -------------------------------------------------------------------------

interface Exchange {
  reply: Buffer;
  /** The server closed the connection (after a protocol error) before we did. */
  closed: boolean;
}

/** Complete RESP2 replies in `buf` (a malformed tail counts as incomplete). */
function replyCount(buf: Buffer): number {
  try {
    return splitReplies(buf).replies.length;
  } catch {
    return 0;
  }
}

/** What to wait for: the server's close, or `replies` replies (null: unknown, wait for silence). */
interface Want {
  replies: number | null;
  /** With `replies` null: the silence counts only once this many replies arrived. */
  atLeast?: number;
  close: boolean;
}

/**
 * Writes `payload` and collects replies until the server closes; where no close is expected,
 * until `want.replies` replies arrived and then SETTLE_MS passed without a byte (or, with
 * `want.replies` null, until SILENCE_MS passed without a byte after `want.atLeast` replies). Waiting for what the model
 * predicts, rather than for silence alone, keeps a loaded machine's pauses from cutting a reply
 * short; the settle time still catches extra bytes; WANT_TIMEOUT_MS bounds it all.
 * Then closes politely: end(), and destroy() once the server closed or 2 s passed.
 */
function exchange(sock: net.Socket | tls.TLSSocket, connectEvent: 'connect' | 'secureConnect', payload: Buffer, want: Want): Promise<Exchange> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let timer: NodeJS.Timeout | undefined;
    let settled = false;
    let closed = false;
    const bound = setTimeout(() => finish(), WANT_TIMEOUT_MS);
    const finish = (err?: Error): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      clearTimeout(bound);
      const snapshot = Buffer.concat(chunks);
      sock.end();
      const gone = setTimeout(() => sock.destroy(), 2_000);
      sock.once('close', () => clearTimeout(gone));
      if (err) reject(err);
      else resolve({ reply: snapshot, closed });
    };
    const arm = (): void => {
      clearTimeout(timer);
      if (want.close) return; // only the close (or WANT_TIMEOUT_MS) ends it
      if (want.replies === null) {
        if (replyCount(Buffer.concat(chunks)) >= (want.atLeast ?? 0)) timer = setTimeout(() => finish(), SILENCE_MS);
      }
      else if (replyCount(Buffer.concat(chunks)) >= want.replies) timer = setTimeout(() => finish(), SETTLE_MS);
      // else: keep waiting (bounded by WANT_TIMEOUT_MS)
    };
    sock.on('data', (d: Buffer) => {
      chunks.push(d);
      if (!settled) arm();
    });
    sock.on('end', () => {
      closed = true;
      finish();
    });
    sock.on('close', () => {
      closed = true;
      finish();
    });
    sock.on('error', (e) => {
      // A reset after our close is noise; before it, the reply so far is what we compare.
      if (!settled) {
        closed = true;
        finish(e.message.includes('ECONNRESET') ? undefined : e);
      }
    });
    sock.once(connectEvent, () => sock.write(payload, () => arm()));
  });
}

function direct(port: number, payload: Buffer, want: Want): Promise<Exchange> {
  return exchange(net.connect({ host: '127.0.0.1', port, allowHalfOpen: true }), 'connect', payload, want);
}

function viaProxy(stack: Stack, payload: Buffer, want: Want): Promise<Exchange> {
  // allowHalfOpen (honoured by tls.connect, missing from its types): our side stays open after the proxy's close_notify.
  const opts = { host: '127.0.0.1', port: stack.proxy.port, servername: 'localhost', ca: readFileSync(stack.certs.caFile), allowHalfOpen: true };
  const sock = tls.connect(opts);
  return exchange(sock, 'secureConnect', payload, want);
}

/**
 * What the model predicts on each side: a close after a protocol error, or a number of replies
 * (SELECT's +OK included); null where Redis reads on past a divergence and nobody can say how
 * much more it answers.
 */
function wanted(v: Verdict): { redis: Want; proxy: Want } {
  if (v.kind === 'same') {
    const w = { replies: 1 + v.commands + (v.error ? 1 : 0), close: v.error };
    return { redis: w, proxy: w };
  }
  const waits = v.cls === 'early-rejection' || v.cls === 'nul-in-inline';
  // Redis reads on past the divergence: at least the replies before it, then silence.
  return { redis: waits ? { replies: 1 + v.commands, close: false } : { replies: null, atLeast: 1 + v.commands, close: false }, proxy: { replies: 1 + v.commands + 1, close: true } };
}

/** `SELECT db` — each stream of a run gets its own database, on each side. */
const select = (db: number): Buffer => encodeCommand(['SELECT', String(db)]);
const OK = Buffer.from('+OK\r\n');

/** A persistent plain connection to the backend for FLUSHALL between runs. */
async function controlConnection(port: number): Promise<{ flushAll(): Promise<void>; close(): void }> {
  const sock = net.connect({ host: '127.0.0.1', port });
  await new Promise<void>((resolve, reject) => {
    sock.once('connect', resolve);
    sock.once('error', reject);
  });
  let pending: Buffer = Buffer.alloc(0);
  let waiter: (() => void) | undefined;
  sock.on('data', (d: Buffer) => {
    pending = Buffer.concat([pending, d]);
    waiter?.();
  });
  return {
    flushAll: () => new Promise<void>((resolve, reject) => {
      pending = Buffer.alloc(0);
      const t = setTimeout(() => reject(new Error('FLUSHALL: no reply within 5 s')), 5_000);
      waiter = () => {
        if (pending.includes(OK)) {
          clearTimeout(t);
          waiter = undefined;
          resolve();
        }
      };
      sock.write('FLUSHALL\r\n');
    }),
    close: () => sock.destroy(),
  };
}

// ---- comparing ------------------------------------------------------------------------------

function strip(ex: Exchange, side: string, why: () => string): Buffer {
  assert.ok(ex.reply.subarray(0, OK.length).equals(OK), `${side}: SELECT was not answered +OK: ${show(ex.reply)}\n${why()}`);
  return ex.reply.subarray(OK.length);
}

function check(v: Verdict, r: Exchange, p: Exchange, why: () => string): void {
  const redis = strip(r, 'redis', why);
  const proxy = strip(p, 'proxy', why);
  const split = splitReplies(redis);
  assert.equal(split.rest.length, 0, `redis sent an incomplete reply: ${show(split.rest)}\n${why()}`);
  if (v.kind === 'same') {
    // The model says how Redis reads it: check that first, so a wrong model cannot hide anything.
    assert.equal(split.replies.length, v.commands + (v.error ? 1 : 0), `model: ${v.commands} commands${v.error ? ' + error' : ''}, redis sent ${split.replies.length} replies\n${why()}`);
    assert.equal(r.closed, v.error, `model: redis ${v.error ? 'closes' : 'keeps the connection'}\n${why()}`);
    assert.equal(show(proxy, 4000), show(redis, 4000), `the proxy's replies differ from redis-server's\n${why()}`);
    assert.equal(p.closed, r.closed, `redis ${r.closed ? 'closed' : 'did not close'}, the proxy ${p.closed ? 'closed' : 'did not'}\n${why()}`);
    return;
  }
  assert.ok(split.replies.length >= v.commands, `model: ${v.commands} commands before the divergence, redis sent ${split.replies.length} replies\n${why()}`);
  if (v.cls === 'early-rejection' || v.cls === 'nul-in-inline') {
    // Redis is still waiting for the end of the line.
    assert.equal(split.replies.length, v.commands, `model: redis waits after ${v.commands} replies\n${why()}`);
    assert.equal(r.closed, false, `model: redis waits, but it closed\n${why()}`);
  }
  const expected = Buffer.concat([...split.replies.slice(0, v.commands), Buffer.from(v.reply, 'latin1')]);
  assert.equal(show(proxy, 4000), show(expected, 4000), `divergence ${v.cls} at byte ${v.at}: the proxy must answer redis's first ${v.commands} replies, then its error\n${why()}`);
  assert.equal(p.closed, true, `divergence ${v.cls}: the proxy must close after its error\n${why()}`);
}

// ---- the tests -------------------------------------------------------------------------------

describe('differential fuzz: redis-server directly vs. through the proxy', { timeout: 180_000 }, () => {
  const stack = useStack();
  const counts: Record<string, number> = {};
  let proxied = 0; // connections made to the proxy (shrinking included)
  const bump = (k: string): void => {
    counts[k] = (counts[k] ?? 0) + 1;
  };

  test('the README lists exactly the divergences this test allows', () => {
    const readme = readFileSync(path.join(repoRoot, 'README.md'), 'utf8');
    const start = readme.indexOf('### Deliberate divergences from Redis');
    assert.ok(start >= 0, 'README has no "Deliberate divergences from Redis" section');
    const rest = readme.slice(start + 1);
    const next = rest.search(/\n#{2,3} /);
    const section = next === -1 ? rest : rest.slice(0, next);
    const titles = [...section.matchAll(/^- \*\*(.+?)\*\*/gm)].map((m) => m[1]);
    assert.deepEqual(titles, Object.values(DIVERGENCES));
  });

  test('the model agrees with hand-checked vectors', () => {
    const v = (s: string): string => {
      const r = classify(Buffer.from(s, 'latin1'));
      return r.kind === 'same' ? `same ${r.commands}${r.error ? ' error' : ''}` : `${r.cls} ${r.commands} ${r.reply.trim()}`;
    };
    assert.equal(v('PING\r\n*1\r\n$4\r\nPING\r\n'), 'same 2');
    assert.equal(v('*1\u0000\r\n$4\r\nPING\r\n'), 'early-rejection 0 -ERR Protocol error: invalid multibulk length');
    assert.equal(v('*1\r\n\u0000\r\n'), "early-rejection 0 -ERR Protocol error: expected '$', got '");
    assert.equal(v('*1\rX$4\r\nPING\r\n'), 'line-endings 0 -ERR Protocol error: invalid multibulk length');
    assert.equal(v('*1\r\n$4\rXPING\r\n'), 'line-endings 0 -ERR Protocol error: invalid bulk length');
    assert.equal(v('*1\r\n$4\r\nPINGab'), 'line-endings 0 -ERR Protocol error: bulk data not followed by CRLF');
    assert.equal(v('*1\r\n$4\r\nPINGx'), 'line-endings 0 -ERR Protocol error: bulk data not followed by CRLF');
    assert.equal(v('PING\r\nPI\u0000NG\r\nPING\r\n'), 'nul-in-inline 1 -ERR Protocol error: too big inline request');
    assert.equal(v('PING\r\n*1\r\nX'), "early-rejection 1 -ERR Protocol error: expected '$', got 'X'");
    assert.equal(v('*1\r\n$-'), 'early-rejection 0 -ERR Protocol error: invalid bulk length');
    assert.equal(v('*-\r'), 'early-rejection 0 -ERR Protocol error: invalid multibulk length');
    assert.equal(v('*1\r\nX\r\n'), 'same 0 error');
    assert.equal(v('*-0\r\n'), 'same 0 error');
    assert.equal(v('*2000000\r\n'), 'default-max-multibulk-len 0 -ERR Protocol error: invalid multibulk length');
    assert.equal(v('*3000000000\r\n'), 'same 0 error');
    assert.equal(v('ECHO "a"b\r\n'), 'same 0 error');
    assert.equal(v("ECHO 'a' \"b\"\r\n*0\r\n*-1\r\n\r\n"), 'same 1');
    assert.equal(v('*1\r\n$4\r\nPI'), 'same 0');
    assert.equal(v('PI\u0000NG'), 'same 0');
  });

  test('the generators reach every divergence the proxy can show with its default limits', (t) => {
    // Offline (no sockets): 3000 streams from the same seed, classified by the model.
    const seen: Record<string, number> = {};
    for (const s of fc.sample(stream, { seed: 20261128, numRuns: 3000 })) {
      const v = classify(s.bytes);
      const k = v.kind === 'same' ? (v.error ? 'same:protocol-error' : 'same') : v.cls;
      seen[k] = (seen[k] ?? 0) + 1;
    }
    for (const k of ['same', 'same:protocol-error', 'line-endings', 'early-rejection', 'nul-in-inline', 'default-max-multibulk-len']) {
      assert.ok((seen[k] ?? 0) > 0, `no stream of class ${k}: ${JSON.stringify(seen)}`);
    }
    // inline-arg-count needs more than 1,048,576 inline arguments: out of reach of small streams.
    t.diagnostic(`3000 streams offline: ${JSON.stringify(seen)}`);
  });

  test(`${NUM_RUNS} runs × ${STREAMS_PER_RUN} streams (seed ${SEED}): wherever redis-server answers, the proxy answers the same`, { timeout: 170_000 }, async (t) => {
    const control = await controlConnection(stack.redis.port);
    after(() => control.close());
    const started = Date.now();
    await fc.assert(
      fc.asyncProperty(fc.array(stream, { minLength: STREAMS_PER_RUN, maxLength: STREAMS_PER_RUN }), async (streams) => {
        await control.flushAll();
        await Promise.all(streams.map(async (s, i) => {
          const verdict = classify(s.bytes);
          const want = wanted(verdict);
          proxied++;
          const [r, p] = await Promise.all([
            direct(stack.redis.port, Buffer.concat([select(1 + i), s.bytes]), want.redis),
            viaProxy(stack, Buffer.concat([select(1 + STREAMS_PER_RUN + i), s.bytes]), want.proxy),
          ]);
          const why = (): string => `stream (${s.kind}, ${s.bytes.length} bytes): ${show(s.bytes, 2000)}\nhex: ${s.bytes.length <= 1000 ? s.bytes.toString('hex') : '(long)'}\nmodel: ${JSON.stringify(verdict)}\nredis: ${show(r.reply, 2000)} closed=${r.closed}\nproxy: ${show(p.reply, 2000)} closed=${p.closed}\n${logTail(stack.proxy, 5)}`;
          check(verdict, r, p, why);
          bump(`kind:${s.kind}`);
          bump(verdict.kind === 'same' ? (verdict.error ? 'same:protocol-error' : 'same') : `divergent:${verdict.cls}`);
          counts.commands = (counts.commands ?? 0) + verdict.commands;
        }));
      }),
      {
        seed: SEED,
        numRuns: NUM_RUNS,
        // Run first, on every seed: one stream of each divergence class the default limits allow.
        examples: [[[
          { kind: 'mutated', bytes: Buffer.from('*1\r\n$4\r\nPING\r\n*2000000\r\n$4\r\nPING\r\n') },
          { kind: 'mutated', bytes: Buffer.from('SET k1 v\r\nGET k1\r\n*2\r\n$3\r\nGET\r\n-') },
          { kind: 'mutated', bytes: Buffer.from('PING\r\nEC\u0000HO x\r\nPING\r\n') },
          { kind: 'mutated', bytes: Buffer.from('*2\r\n$4\r\nECHO\r\n$1\r\nab\r\n*1\r\n$4\r\nPING\r\n') },
        ]]],
        ...(process.env.DIFF_FUZZ_PATH !== undefined ? { path: process.env.DIFF_FUZZ_PATH } : {}),
        includeErrorInReport: true,
        interruptAfterTimeLimit: 150_000,
        markInterruptAsFailure: true,
      },
    );
    const streams = (counts['kind:valid'] ?? 0) + (counts['kind:mutated'] ?? 0) + (counts['kind:garbage'] ?? 0);
    t.diagnostic(`${streams} streams in ${((Date.now() - started) / 1000).toFixed(1)} s: ${JSON.stringify(counts)}`);
  });

  test('the proxy is alive, wrote nothing to stderr, and closed no connection abruptly', { timeout: 15_000 }, async () => {
    assert.equal(stack.proxy.proc.exitCode, null, 'the proxy exited');
    assert.doesNotMatch(stack.proxy.stderr(), /uncaught|unhandled|Error/i, stack.proxy.stderr());
    const text = await waitForMetric(stack.proxy, 'resp_tls_proxy_connections_active', {}, (v) => v === 0);
    assert.deepEqual(metricSamples(text, 'resp_tls_proxy_client_closes_total', { mode: 'abrupt' }).filter((s) => s.value > 0), [], text);
    const total = metricSamples(text, 'resp_tls_proxy_client_closes_total').reduce((a, s) => a + s.value, 0);
    assert.ok(total >= proxied, `closes counted: ${total}, connections made: ${proxied}`);
    assert.equal(metricValue(text, 'resp_tls_proxy_connections_active'), 0, text);
  });
});
