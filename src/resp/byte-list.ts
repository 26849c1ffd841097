// Bytes kept for later, in order, at a bounded cost per byte. A piece of COPY_BELOW bytes or
// more is kept as a view (no copy); shorter pieces are copied together into one owned buffer,
// which doubles as it fills. A view per piece would cost ~100 bytes of heap per byte to a peer
// that sends one byte per read (and pin each whole parent chunk for a few bytes of it).

/** A piece shorter than this is copied into the owned tail buffer; a longer one is kept as a view. */
export const COPY_BELOW = 1024;

export class ByteList {
  /** Bytes kept, the open tail's included. */
  bytes = 0;
  /** Views and sealed copies, in order; the open tail's data comes after them. */
  private pieces: Buffer[] = [];
  /** Owned buffer collecting short pieces after `pieces`; only tail[0, tailLen) is data. */
  private tail: Buffer | null = null;
  private tailLen = 0;

  /** Keep chunk[from, end). A view of it may be kept: the caller must not change those bytes. */
  push(chunk: Buffer, from = 0): void {
    const part = chunk.length - from;
    if (part === 0) return;
    this.bytes += part;
    if (part >= COPY_BELOW) {
      this.seal();
      this.pieces.push(from === 0 ? chunk : chunk.subarray(from));
      return;
    }
    let tail = this.tail;
    const len = this.tailLen;
    if (tail === null || tail.length - len < part) {
      // Doubling: a peer trickling bytes costs at most twice what it sent, in one buffer.
      const grown = Buffer.allocUnsafe(Math.max(len + part, tail === null ? 256 : tail.length * 2));
      if (tail !== null) tail.copy(grown, 0, 0, len);
      tail = this.tail = grown;
    }
    chunk.copy(tail, len, from);
    this.tailLen = len + part;
  }

  /** Every byte kept, as buffers in order; the list is empty afterwards and the buffers are the caller's. */
  take(): Buffer[] {
    this.seal();
    const pieces = this.pieces;
    this.clear();
    return pieces;
  }

  clear(): void {
    if (this.bytes === 0) return;
    this.pieces = [];
    this.bytes = 0;
    this.tail = null;
    this.tailLen = 0;
  }

  /** Move the tail's data into `pieces`; the next short piece starts a new tail buffer. */
  private seal(): void {
    if (this.tail === null) return;
    this.pieces.push(this.tail.subarray(0, this.tailLen));
    this.tail = null;
    this.tailLen = 0;
  }
}
