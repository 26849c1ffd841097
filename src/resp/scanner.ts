// Streaming request scanner: validates a client's RESP request stream against the limits and
// decides which bytes may go to the backend. It follows Redis's processMultibulkBuffer and
// processInlineBuffer grammar, checks every limit on the header (never buffering from a
// declared length), and survives any chunk boundary. Pure: no sockets, no logging.
//
// Output: `feed(chunk, out)` appends to `out` the buffers to forward, in order. Complete
// multibulk commands go out as views into the caller's chunk (zero copy). The bytes of an
// incomplete command are held back until it completes, so a command rejected by a later header
// never reaches the backend; a command whose held bytes pass HOLD_MAX_BYTES (a large SET value,
// say) streams through instead, so memory stays bounded. Held bytes are a ByteList: long pieces
// as views, short ones copied together (see byte-list.ts).

import { ByteList, COPY_BELOW } from './byte-list.js';
import { encodeMultibulk, splitArgs } from './inline.js';
import { expectedDollar, violation, type ProtocolViolation } from './replies.js';

export interface ScannerLimits {
  maxMultibulkLen: number;
  maxBulkLen: number;
  maxInlineLen: number;
}

/** Held-back bytes of one incomplete multibulk command before it starts streaming. */
export const HOLD_MAX_BYTES = 64 * 1024;

/** A held piece shorter than this is copied; a longer one is kept as a view. */
export const HOLD_COPY_BELOW = COPY_BELOW;

/** Redis refuses multibulk counts above INT_MAX whatever its configuration. */
const INT_MAX = 2147483647;

// Scanner states.
const START = 0; // at a command boundary
const MB_FIRST = 1; // after '*'
const MB_DIGITS = 2;
const MB_ZERO = 3; // "*0" seen: only CR may follow
const MB_NEG_FIRST = 4; // "*-" seen
const MB_NEG_DIGITS = 5;
const MB_LF = 6;
const BULK_DOLLAR = 7; // expecting '$'
const BULK_FIRST = 8; // after '$'
const BULK_DIGITS = 9;
const BULK_ZERO = 10;
const BULK_LF = 11;
const BULK_BODY = 12;
const BULK_CR = 13;
const BULK_LF2 = 14;
const INLINE = 15; // inside an inline line, looking for LF
const FAILED = 16;
const QUIT = 17; // after a complete QUIT: Redis reads nothing more, nor do we

/** Commands that put the connection in subscriber or monitor mode: replies no longer one per command. */
const SUBSCRIBE_NAMES = new Set(['subscribe', 'psubscribe', 'ssubscribe', 'monitor']);
/**
 * Outside subscriber mode these answer once per channel named (once if none) under RESP2, and
 * with pushes, which are not replies, under RESP3. So counting stops after one that names two or
 * more channels, or after any sent once the client asked for RESP3 (HELLO 3), unless an error
 * answered that HELLO before it (helloRefused).
 */
const UNSUBSCRIBE_NAMES = new Set(['unsubscribe', 'punsubscribe', 'sunsubscribe']);
/** The same names as lowercase bytes, for the multibulk path (no strings per command). */
const SUBSCRIBE_BYTES = [...SUBSCRIBE_NAMES].map((name) => Buffer.from(name, 'latin1'));
const UNSUBSCRIBE_BYTES = [...UNSUBSCRIBE_NAMES].map((name) => Buffer.from(name, 'latin1'));
/** CLIENT REPLY OFF|SKIP silences replies: counting stops too (so does CLIENT REPLY ON, to keep it simple). */
const CLIENT_BYTES = Buffer.from('client', 'latin1');
const REPLY_BYTES = Buffer.from('reply', 'latin1');
/** HELLO 3: RESP3 from now on, until its reply says otherwise (helloAnswered). */
const HELLO_BYTES = Buffer.from('hello', 'latin1');
/** REPLCONF ACK and GETACK get no reply: counting stops after any REPLCONF. */
const REPLCONF_BYTES = Buffer.from('replconf', 'latin1');
/**
 * QUIT: Redis replies +OK and reads nothing after it, however it goes on; so nothing after it is
 * scanned (no protocol error from bytes Redis would never read) or forwarded.
 */
const QUIT_BYTES = Buffer.from('quit', 'latin1');
/**
 * RESET (no arguments): Redis leaves subscriber and monitor mode, turns replies back on and goes
 * back to RESP2, then answers +RESET. Once that reply comes, every later command is answered
 * once again: counting resumes from it (resetAnswered).
 */
const RESET_BYTES = Buffer.from('reset', 'latin1');
/** RESETs remembered until answered; one more ends the matching for the connection. */
const RESETS_PENDING_MAX = 64;
const NAME_MIN = 4; // "quit"
const NAME_MAX = 12; // "punsubscribe", "sunsubscribe"

/** -LLONG_MIN: the largest magnitude string2ll() accepts for "*-N" (19 digits). */
const NEG_BOUND = Buffer.from('9223372036854775808', 'latin1');

export class RequestScanner {
  /** Complete commands accepted so far (commands that expect a reply; `*0` and blank lines are not). */
  commands = 0;
  /** Set when the stream broke a limit or the grammar; nothing more is accepted after it. */
  error: ProtocolViolation | null = null;
  /**
   * After a violation in a header line (a count, a length, a missing '$'): that line up to the
   * offending byte, at most 24 bytes, printable. Empty for inline lines and bulk data, which may
   * hold secrets (AUTH arguments).
   */
  errorSample = '';
  /** Set once the client issued SUBSCRIBE/PSUBSCRIBE/SSUBSCRIBE/MONITOR. */
  subscribeSeen = false;
  /**
   * Set once replies stopped being one per command: after SUBSCRIBE/PSUBSCRIBE/SSUBSCRIBE/MONITOR,
   * CLIENT REPLY, REPLCONF, or an UNSUBSCRIBE/PUNSUBSCRIBE/SUNSUBSCRIBE naming two or more
   * channels or sent after a HELLO 3 not refused. Counting the backend's replies then says nothing about what is
   * unanswered, until the backend answers a later RESET (resetAnswered).
   */
  repliesUncounted = false;
  /**
   * The RESETs (their numbers, as counted in `commands`) not yet answered, oldest first, counted
   * or not: each +RESET the backend sends answers the oldest (resetAnswered), so none may be left
   * out (its +RESET would take a later one's place, and the count would run ahead of the replies).
   */
  readonly resetsPending: number[] = [];
  /** The last command that stopped counting (0 if none). */
  private uncountedAt = 0;
  /**
   * False once a +RESET may no longer be matched to its RESET: a RESET came right after CLIENT
   * REPLY (after SKIP Redis sends no +RESET for it), or more than RESETS_PENDING_MAX waited.
   */
  private resumable = true;
  /** The last CLIENT REPLY (it may have been SKIP, which silences the next command); -1 if none. */
  private clientReplyAt = -1;

  private readonly maxMultibulk: number;
  private readonly maxBulk: number;
  private readonly maxInline: number;

  private state = START;
  private acc = 0; // the number being read, or the element count while reading elements
  private elemsLeft = 0;
  private elemIndex = 0; // elements done in the current command
  private bulkLeft = 0;
  // "*-N", which Redis accepts and ignores: digits read, and how the digits so far compare with
  // the same-length prefix of NEG_BOUND (-1 below, 0 equal, 1 above).
  private negLen = 0;
  private negCmp = 0;
  // The first argument, when its length could be one of the names above: collected across
  // chunks into nameBuf; nameHit (SUBSCRIBE_BYTES) and unsubscribeHit record a match until the
  // command completes. The second argument is collected the same way when the first is CLIENT
  // (clientHit), to see REPLY, or HELLO (helloHit), to see 3.
  private nameLen = 0;
  private nameHit = false;
  private unsubscribeHit = false;
  private clientHit = false;
  private replyHit = false;
  private helloHit = false;
  private resp3Hit = false;
  private uncountedHit = false; // REPLCONF
  private quitHit = false;
  private resetHit = false;
  /** One of the hits above is set: the command matters to reply counting (commandDone). */
  private special = false;
  /** The client sent HELLO 3 and no error answered it (yet). */
  private resp3 = false;
  /** A HELLO 3 was answered without an error: RESP3 whatever later ones get. */
  private resp3Confirmed = false;
  /** Which command (1-based, as counted in `commands`) the last HELLO 3 was; 0 if none. */
  hello3At = 0;
  private readonly nameBuf = Buffer.alloc(NAME_MAX);
  private streaming = false; // the current command's first bytes already went out
  /** The current incomplete command's bytes from earlier chunks. */
  private readonly held = new ByteList();

  constructor(limits: ScannerLimits) {
    this.maxMultibulk = Math.min(limits.maxMultibulkLen, INT_MAX);
    this.maxBulk = limits.maxBulkLen;
    this.maxInline = limits.maxInlineLen;
  }

  /** True while a command has started but not finished (bytes held or streaming). */
  get midCommand(): boolean {
    return this.state !== START && this.state !== FAILED && this.state !== QUIT;
  }

  /** The client sent QUIT: whatever it sends from now on is dropped unread, as Redis does. */
  get quit(): boolean {
    return this.state === QUIT;
  }

  feed(chunk: Buffer, out: Buffer[]): void {
    if (this.state === FAILED || this.state === QUIT) return;
    const n = chunk.length;
    const maxMb = this.maxMultibulk;
    const maxBulk = this.maxBulk;
    let state = this.state;
    let acc = this.acc;
    let elemsLeft = this.elemsLeft;
    let bulkLeft = this.bulkLeft;
    let commands = this.commands;
    let i = 0;
    let emitStart = 0; // first byte of this chunk not yet forwarded
    let cmdStart = 0; // where the current command began in this chunk (0 if in an earlier one)

    while (i < n) {
      switch (state) {
        case START:
          cmdStart = i;
          if (chunk[i] === 42 /* * */) {
            state = MB_FIRST;
            i++;
          } else {
            state = INLINE;
          }
          break;
        case MB_FIRST: {
          const c = chunk[i++]!;
          if (c >= 49 && c <= 57) {
            acc = c - 48;
            if (acc > maxMb) return this.fail(violation('invalid_multibulk_length', 'max_multibulk_len'), chunk, out, emitStart, cmdStart, commands, i);
            state = MB_DIGITS;
          } else if (c === 48) {
            acc = 0;
            state = MB_ZERO;
          } else if (c === 45 /* - */) {
            state = MB_NEG_FIRST;
          } else return this.fail(violation('invalid_multibulk_length', 'syntax'), chunk, out, emitStart, cmdStart, commands, i);
          break;
        }
        case MB_DIGITS: {
          const c = chunk[i++]!;
          if (c >= 48 && c <= 57) {
            acc = acc * 10 + (c - 48);
            if (acc > maxMb) return this.fail(violation('invalid_multibulk_length', 'max_multibulk_len'), chunk, out, emitStart, cmdStart, commands, i);
          } else if (c === 13) state = MB_LF;
          else return this.fail(violation('invalid_multibulk_length', 'syntax'), chunk, out, emitStart, cmdStart, commands, i);
          break;
        }
        case MB_ZERO:
        case BULK_ZERO: {
          if (chunk[i++] !== 13) {
            const v = state === MB_ZERO ? violation('invalid_multibulk_length', 'syntax') : violation('invalid_bulk_length', 'syntax');
            return this.fail(v, chunk, out, emitStart, cmdStart, commands, i);
          }
          state = state === MB_ZERO ? MB_LF : BULK_LF;
          break;
        }
        case MB_NEG_FIRST:
        case MB_NEG_DIGITS: {
          // Like string2ll(): 1 to 19 digits, no leading zero, magnitude at most 2^63.
          const c = chunk[i++]!;
          if (c >= 48 && c <= 57 && !(state === MB_NEG_FIRST && c === 48)) {
            if (state === MB_NEG_FIRST) {
              this.negLen = 0;
              this.negCmp = 0;
            }
            if (this.negCmp === 0) {
              const b = NEG_BOUND[this.negLen]!;
              this.negCmp = c < b ? -1 : c > b ? 1 : 0;
            }
            // Already 19 digits, or 19 above the bound: no continuation can be valid.
            if (++this.negLen > 19 || (this.negLen === 19 && this.negCmp > 0)) {
              return this.fail(violation('invalid_multibulk_length', 'syntax'), chunk, out, emitStart, cmdStart, commands, i);
            }
            state = MB_NEG_DIGITS;
          } else if (c === 13 && state === MB_NEG_DIGITS) {
            acc = -1;
            state = MB_LF;
          } else return this.fail(violation('invalid_multibulk_length', 'syntax'), chunk, out, emitStart, cmdStart, commands, i);
          break;
        }
        case MB_LF:
          if (chunk[i++] !== 10) return this.fail(violation('invalid_multibulk_length', 'syntax'), chunk, out, emitStart, cmdStart, commands, i);
          if (acc <= 0) {
            // "*0" and "*-N": Redis consumes them without a reply. Nothing to forward.
            if (cmdStart > emitStart) out.push(chunk.subarray(emitStart, cmdStart));
            this.held.clear();
            emitStart = i;
            state = START;
          } else {
            elemsLeft = acc;
            this.elemIndex = 0;
            this.nameHit = false;
            this.unsubscribeHit = false;
            this.clientHit = false;
            this.replyHit = false;
            this.helloHit = false;
            this.resp3Hit = false;
            this.uncountedHit = false;
            this.quitHit = false;
            this.resetHit = false;
            this.special = false;
            state = BULK_DOLLAR;
          }
          break;
        case BULK_DOLLAR: {
          const c = chunk[i++]!;
          if (c !== 36 /* $ */) return this.fail(expectedDollar(c), chunk, out, emitStart, cmdStart, commands, i);
          state = BULK_FIRST;
          break;
        }
        case BULK_FIRST: {
          const c = chunk[i++]!;
          if (c >= 49 && c <= 57) {
            acc = c - 48;
            if (acc > maxBulk) return this.fail(violation('invalid_bulk_length', 'max_bulk_len'), chunk, out, emitStart, cmdStart, commands, i);
            state = BULK_DIGITS;
          } else if (c === 48) {
            acc = 0;
            state = BULK_ZERO;
          } else return this.fail(violation('invalid_bulk_length', 'syntax'), chunk, out, emitStart, cmdStart, commands, i);
          break;
        }
        case BULK_DIGITS: {
          const c = chunk[i++]!;
          if (c >= 48 && c <= 57) {
            acc = acc * 10 + (c - 48);
            if (acc > maxBulk) return this.fail(violation('invalid_bulk_length', 'max_bulk_len'), chunk, out, emitStart, cmdStart, commands, i);
          } else if (c === 13) state = BULK_LF;
          else return this.fail(violation('invalid_bulk_length', 'syntax'), chunk, out, emitStart, cmdStart, commands, i);
          break;
        }
        case BULK_LF:
          if (chunk[i++] !== 10) return this.fail(violation('invalid_bulk_length', 'syntax'), chunk, out, emitStart, cmdStart, commands, i);
          this.nameLen =
            (this.elemIndex === 0 && acc >= NAME_MIN && acc <= NAME_MAX) ||
            (this.elemIndex === 1 && ((this.clientHit && acc === REPLY_BYTES.length) || (this.helloHit && acc === 1)))
              ? acc
              : 0;
          bulkLeft = acc;
          state = acc === 0 ? BULK_CR : BULK_BODY;
          break;
        case BULK_BODY: {
          const avail = n - i;
          const take = avail < bulkLeft ? avail : bulkLeft;
          // A possible command name may arrive in pieces: collect it (at most NAME_MAX bytes).
          if (this.nameLen > 0) chunk.copy(this.nameBuf, this.nameLen - bulkLeft, i, i + take);
          i += take;
          bulkLeft -= take;
          if (bulkLeft === 0) state = BULK_CR;
          break;
        }
        case BULK_CR:
          if (chunk[i++] !== 13) return this.fail(violation('bulk_not_crlf', 'syntax'), chunk, out, emitStart, cmdStart, commands, i);
          state = BULK_LF2;
          break;
        case BULK_LF2:
          if (chunk[i++] !== 10) return this.fail(violation('bulk_not_crlf', 'syntax'), chunk, out, emitStart, cmdStart, commands, i);
          if (this.nameLen > 0) {
            if (this.elemIndex === 0) {
              this.nameHit = this.nameIn(SUBSCRIBE_BYTES);
              this.unsubscribeHit = this.nameIn(UNSUBSCRIBE_BYTES);
              this.clientHit = this.nameIs(CLIENT_BYTES);
              this.helloHit = this.nameIs(HELLO_BYTES);
              this.uncountedHit = this.nameIs(REPLCONF_BYTES);
              this.quitHit = this.nameIs(QUIT_BYTES);
              this.resetHit = this.nameIs(RESET_BYTES);
            } else if (this.clientHit) this.replyHit = this.nameIs(REPLY_BYTES);
            else this.resp3Hit = this.nameBuf[0] === 51; /* 3 */
            this.special = this.nameHit || this.unsubscribeHit || this.uncountedHit || this.resetHit || this.replyHit || this.resp3Hit;
            this.nameLen = 0;
          }
          this.elemIndex++;
          if (--elemsLeft === 0) {
            commands++;
            if (this.special) this.commandDone(commands, this.elemIndex);
            state = START;
            if (this.held.bytes > 0) this.flushHeld(out);
            this.streaming = false;
            if (this.quitHit) return this.quitAfter(chunk, out, emitStart, i, commands);
          } else state = BULK_DOLLAR;
          break;
        case INLINE: {
          const lf = chunk.indexOf(10, i);
          if (lf === -1) {
            if (this.held.bytes + (n - cmdStart) > this.maxInline + 1) {
              return this.fail(violation('too_big_inline', 'max_inline_len'), chunk, out, emitStart, cmdStart, commands, -1);
            }
            i = n;
            break;
          }
          // The whole line is here: [cmdStart, lf] of this chunk, after any held bytes.
          let line: Buffer;
          if (this.held.bytes > 0) {
            const pieces = this.held.take();
            pieces.push(chunk.subarray(0, lf));
            line = Buffer.concat(pieces);
          } else line = chunk.subarray(cmdStart, lf);
          const v = this.inlineLine(line, out, chunk, emitStart, cmdStart);
          if (v !== null) return this.fail(v, chunk, out, emitStart, cmdStart, commands, -1); // no sample of inline lines
          if (this.lastInlineArgs > 0) this.commandDone(++commands, this.lastInlineArgs);
          i = lf + 1;
          emitStart = i;
          state = START;
          if (this.quitHit) return this.quitAfter(chunk, out, emitStart, i, commands);
          break;
        }
        default:
          return;
      }
    }

    // End of chunk: forward what is complete, hold or stream the rest.
    if (state !== START && !this.streaming) {
      const part = n - cmdStart;
      if (state !== INLINE && this.held.bytes + part > HOLD_MAX_BYTES) {
        this.flushHeld(out);
        if (n > emitStart) out.push(chunk.subarray(emitStart));
        this.streaming = true;
      } else {
        if (cmdStart > emitStart) out.push(chunk.subarray(emitStart, cmdStart));
        this.held.push(chunk, cmdStart);
      }
    } else if (n > emitStart) {
      out.push(emitStart === 0 ? chunk : chunk.subarray(emitStart));
    }
    this.state = state;
    this.acc = acc;
    this.elemsLeft = elemsLeft;
    this.bulkLeft = bulkLeft;
    this.commands = commands;
  }

  private lastInlineArgs = 0;

  /** Handle one complete inline line (without its LF). Returns a violation, or null. */
  private inlineLine(line: Buffer, out: Buffer[], chunk: Buffer, emitStart: number, cmdStart: number): ProtocolViolation | null {
    let end = line.length;
    if (end > 0 && line[end - 1] === 13) end--; // "\r\n" ends the line too
    // Redis looks for the LF with strchr(), which stops at a NUL: it would wait for more input
    // until its 64 KiB inline buffer overflows. We answer with that final error at once.
    if (end > this.maxInline) return violation('too_big_inline', 'max_inline_len');
    if (line.subarray(0, end).includes(0)) return violation('too_big_inline', 'syntax'); // no limit was reached
    const args = splitArgs(line, 0, end);
    if (args === null) return violation('unbalanced_quotes', 'syntax');
    if (args.length > this.maxMultibulk) return violation('invalid_multibulk_length', 'max_multibulk_len');
    for (const a of args) if (a.length > this.maxBulk) return violation('invalid_bulk_length', 'max_bulk_len');
    if (cmdStart > emitStart) out.push(chunk.subarray(emitStart, cmdStart));
    this.held.clear();
    this.lastInlineArgs = args.length;
    const name = args.length > 0 ? args[0]!.toString('latin1').toLowerCase() : ''; // '' for a blank line: no command
    this.nameHit = SUBSCRIBE_NAMES.has(name);
    this.unsubscribeHit = UNSUBSCRIBE_NAMES.has(name);
    this.resp3Hit = name === 'hello' && args.length > 1 && args[1]!.length === 1 && args[1]![0] === 51;
    this.replyHit = name === 'client' && args.length > 1 && args[1]!.toString('latin1').toLowerCase() === 'reply';
    this.uncountedHit = name === 'replconf';
    this.quitHit = name === 'quit';
    this.resetHit = name === 'reset';
    if (args.length > 0) out.push(encodeMultibulk(args));
    return null;
  }

  /**
   * Command number `at`, of `elements` elements, is complete: what it does to reply counting.
   * Called for every inline command, and for a multibulk one only when `special` (the hot path).
   */
  private commandDone(at: number, elements: number): void {
    if (this.nameHit) this.subscribeSeen = true;
    if (this.nameHit || this.replyHit || this.uncountedHit || (this.unsubscribeHit && (this.resp3 || elements > 2))) {
      this.repliesUncounted = true;
      this.uncountedAt = at;
    } else if (this.resetHit && elements === 1 && this.resumable) {
      if (this.clientReplyAt === at - 1 || this.resetsPending.length >= RESETS_PENDING_MAX) {
        this.resumable = false;
        this.resetsPending.length = 0;
      } else this.resetsPending.push(at);
    }
    if (this.resp3Hit) this.hello3(at);
    if (this.replyHit) this.clientReplyAt = at;
  }

  /**
   * The backend sent +RESET, its reply number `replies` as counted. Counted, that reply answers
   * command number `replies`: every RESET up to it is done with (one refused, by an ACL, got an
   * error instead), and -1 is returned. Uncounted, it answers the oldest pending RESET, and
   * counting resumes if no command sent after that RESET stopped it again: the return value is
   * then the RESET's number (every command up to it is answered), and -1 otherwise.
   */
  resetAnswered(replies: number): number {
    if (!this.repliesUncounted) {
      while (this.resetsPending.length > 0 && this.resetsPending[0]! <= replies) this.resetsPending.shift();
      return -1;
    }
    const at = this.resetsPending.shift();
    if (at === undefined || this.uncountedAt > at) return -1;
    this.repliesUncounted = false;
    this.subscribeSeen = false;
    this.resetsPending.length = 0;
    if (this.hello3At < at) this.resp3 = this.resp3Confirmed = false; // RESET went back to RESP2
    return at;
  }

  private hello3(at: number): void {
    this.resp3 = true;
    this.hello3At = at;
    this.resp3Hit = false;
  }

  /**
   * The reply to the HELLO 3 that was command `at`: an error (an old server, NOAUTH) leaves the
   * protocol as it was, RESP3 if an earlier HELLO 3 was answered without one. Nothing changes if a
   * later HELLO 3 was sent meanwhile.
   */
  helloAnswered(at: number, refused: boolean): void {
    if (!refused) this.resp3Confirmed = true;
    else if (at === this.hello3At) this.resp3 = this.resp3Confirmed;
  }

  /** A QUIT ended at chunk[i): forward up to it, drop the rest, read nothing more. */
  private quitAfter(chunk: Buffer, out: Buffer[], emitStart: number, i: number, commands: number): void {
    if (i > emitStart) out.push(chunk.subarray(emitStart, i));
    this.commands = commands;
    this.state = QUIT;
  }

  /** nameBuf[0, nameLen) is one of `names`, ASCII case-insensitively. */
  private nameIn(names: readonly Buffer[]): boolean {
    for (const name of names) if (this.nameIs(name)) return true;
    return false;
  }

  /** nameBuf[0, nameLen) is `name` (lowercase letters), ASCII case-insensitively. */
  private nameIs(name: Buffer): boolean {
    const buf = this.nameBuf;
    const len = this.nameLen;
    if (name.length !== len) return false;
    let j = 0;
    while (j < len && (buf[j]! | 0x20) === name[j]!) j++; // names are letters only: | 0x20 lowercases
    return j === len;
  }

  /** Record a violation; forward the complete commands before it and nothing of the offender. */
  private fail(v: ProtocolViolation, chunk: Buffer, out: Buffer[], emitStart: number, cmdStart: number, commands: number, at: number): void {
    if (!this.streaming && cmdStart > emitStart) out.push(chunk.subarray(emitStart, cmdStart));
    this.errorSample = headerSample(v, chunk, at);
    this.held.clear();
    this.error = v;
    this.commands = commands;
    this.state = FAILED;
  }

  /** Forward the held bytes. The buffers now belong to `out`: never write to them again. */
  private flushHeld(out: Buffer[]): void {
    for (const b of this.held.take()) out.push(b);
  }
}

function headerSample(v: ProtocolViolation, chunk: Buffer, at: number): string {
  if (at < 0 || (v.code !== 'invalid_multibulk_length' && v.code !== 'invalid_bulk_length' && v.code !== 'expected_dollar')) return '';
  let from = Math.max(0, at - 24);
  const lf = chunk.lastIndexOf(10, at - 1);
  if (lf >= from) from = lf + 1;
  let text = '';
  for (let k = from; k < at; k++) {
    const c = chunk[k]!;
    text += c >= 0x20 && c < 0x7f ? String.fromCharCode(c) : `\\x${c.toString(16).padStart(2, '0')}`;
  }
  return text;
}
