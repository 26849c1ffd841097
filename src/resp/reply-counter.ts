// Counts complete top-level replies in a backend's RESP2/RESP3 reply stream, so the session
// knows how many forwarded commands are still unanswered. It never copies or changes bytes.
// Out-of-band RESP3 pushes ('>') and attributes ('|') are not replies to a command.

const LINE = 0; // reading a type byte's line (up to CRLF)
const BODY = 1; // skipping a blob body plus its CRLF
const BROKEN = 2;

/**
 * Deepest aggregate nesting we follow. Replies can nest deep: a Lua script returns thousands of
 * levels (`local t={1} for i=1,5000 do t={t} end return t`), so this is only a bound on memory
 * (two numbers a level; the backend sent at least 4 bytes for each).
 */
const MAX_DEPTH = 1 << 20;

/** A top-level status reply "+RESET\r\n", up to its LF. */
const RESET_LINE = Buffer.from('RESET\r', 'latin1');

export class ReplyCounter {
  /** Complete top-level replies seen. */
  replies = 0;
  /** Set when the stream stopped parsing as RESP; counting is then unreliable. */
  broken = false;
  /** The type byte of reply number `watchFor` (1-based) is put in `watched` when that reply completes. */
  watchFor = 0;
  watched = 0;
  /** The type byte of the last complete top-level reply (0 before the first). */
  last = 0;
  /**
   * While set, a top-level `+RESET` status reply calls it once counted. It returns the number to
   * count on from (the place of the RESET it answers among the commands, when counting resumes
   * there), or -1 to go on as before.
   */
  onReset: (() => number) | null = null;

  /**
   * True while the stream stands inside a reply: some of it has been seen, not all. Bytes
   * written to the client now would be read as part of that reply.
   */
  get midReply(): boolean {
    return this.state === BODY || this.type !== 0 || this.stack.length > 0 || this.annotated;
  }

  /** True while the stream stands inside an out-of-band push ('>' at top level). */
  get inPush(): boolean {
    return this.kinds.length > 0 ? this.kinds[0] === 62 : this.type === 62;
  }

  private state = LINE;
  private type = 0; // type byte of the line being read, 0 before it
  private topType = 0; // type byte of the top-level reply being read (not an attribute or a push)
  private acc = 0;
  private neg = false;
  private digits = 0;
  private bodyLeft = 0;
  /** Remaining elements of each open aggregate, innermost last, and its type byte. */
  private readonly stack: number[] = [];
  private readonly kinds: number[] = [];
  /** A top-level attribute ended: the value it annotates has not come yet. */
  private annotated = false;
  /** Bytes of RESET_LINE the current top-level status line matched so far; -1 if it cannot be one. */
  private resetMatched = -1;

  feed(chunk: Buffer): void {
    const n = chunk.length;
    let i = 0;
    while (i < n) {
      if (this.state === BODY) {
        const take = Math.min(this.bodyLeft, n - i);
        i += take;
        this.bodyLeft -= take;
        if (this.bodyLeft === 0) {
          this.state = LINE;
          this.valueDone();
        }
        continue;
      }
      if (this.state === BROKEN) return;
      if (this.type === 0) {
        const t = (this.type = chunk[i++]!);
        if (this.stack.length === 0 && t !== 124 /* | */ && t !== 62 /* > */) {
          this.topType = t;
          if (t === 43 /* + */ && this.onReset !== null) this.resetMatched = 0;
        }
        this.acc = 0;
        this.neg = false;
        this.digits = 0;
        continue;
      }
      // Inside a line: numeric types accumulate their number; others just look for LF.
      const t = this.type;
      if (t === 43 /* + */ || t === 45 /* - */ || t === 58 /* : */ || t === 44 /* , */ || t === 40 /* ( */ || t === 35 /* # */ || t === 95 /* _ */) {
        const lf = chunk.indexOf(10, i);
        if (this.resetMatched >= 0) this.matchReset(chunk, i, lf === -1 ? n : lf);
        if (lf === -1) return;
        i = lf + 1;
        this.type = 0;
        this.valueDone();
        if (this.resetMatched >= 0) this.resetDone();
        continue;
      }
      const c = chunk[i++]!;
      if (c >= 48 && c <= 57) {
        this.acc = this.acc * 10 + (c - 48);
        this.digits++;
      } else if (c === 45 && this.digits === 0 && !this.neg) {
        this.neg = true;
      } else if (c === 13) {
        // wait for LF
      } else if (c === 10) {
        this.type = 0;
        this.header(t, this.neg ? -this.acc : this.acc);
      } else {
        this.fail();
        return;
      }
    }
  }

  private header(t: number, len: number): void {
    switch (t) {
      case 36: // $ bulk string
      case 33: // ! blob error
      case 61: // = verbatim string
        if (len < 0) this.valueDone(); // $-1: null
        else {
          this.bodyLeft = len + 2;
          this.state = BODY;
        }
        return;
      case 42: // * array
      case 126: // ~ set
      case 62: // > push
      case 37: // % map
      case 124: {
        // | attribute
        const count = t === 37 || t === 124 ? len * 2 : len;
        if (len < 0 || count === 0) {
          if (t === 124) {
            if (this.stack.length === 0) this.annotated = true;
            return; // an empty attribute annotates the next value
          }
          if (t === 62 && this.stack.length === 0) return; // an empty top-level push is no reply either
          this.valueDone();
          return;
        }
        if (this.stack.length >= MAX_DEPTH) return this.fail();
        this.stack.push(count);
        this.kinds.push(t);
        return;
      }
      default:
        this.fail();
    }
  }

  /** One value finished: complete enclosing aggregates; count it if it was top level. */
  private valueDone(): void {
    for (;;) {
      const depth = this.stack.length;
      if (depth === 0) {
        if (++this.replies === this.watchFor) this.watched = this.topType;
        this.last = this.topType;
        this.annotated = false;
        return;
      }
      const left = --this.stack[depth - 1]!;
      if (left > 0) return;
      this.stack.pop();
      const kind = this.kinds.pop();
      if (kind === 124) {
        if (this.stack.length === 0) this.annotated = true;
        return; // attribute done: the annotated value follows
      }
      if (kind === 62 && this.stack.length === 0) return; // a top-level push is not a reply
    }
  }

  /** Match chunk[from, to) of a top-level status line against RESET_LINE. */
  private matchReset(chunk: Buffer, from: number, to: number): void {
    let m = this.resetMatched;
    for (let j = from; j < to && m >= 0; j++) m = m < RESET_LINE.length && chunk[j] === RESET_LINE[m] ? m + 1 : -1;
    this.resetMatched = m;
  }

  /** A top-level status line was counted: if it was +RESET, the session may resume counting from it. */
  private resetDone(): void {
    const reset = this.resetMatched === RESET_LINE.length;
    this.resetMatched = -1;
    if (!reset || this.onReset === null) return;
    const at = this.onReset();
    if (at >= 0) this.replies = at;
  }

  private fail(): void {
    this.broken = true;
    this.state = BROKEN;
  }
}
