// Building request streams and expected reply bytes for the integration tests.

/** One command in RESP multibulk encoding: *N\r\n$len\r\narg\r\n… */
export function encodeCommand(args: ReadonlyArray<string | Buffer>): Buffer {
  const parts: Buffer[] = [Buffer.from(`*${args.length}\r\n`)];
  for (const a of args) {
    const b = typeof a === 'string' ? Buffer.from(a) : a;
    parts.push(Buffer.from(`$${b.length}\r\n`), b, Buffer.from('\r\n'));
  }
  return Buffer.concat(parts);
}

/** Several commands back to back (a pipeline). */
export function encodePipeline(cmds: ReadonlyArray<ReadonlyArray<string | Buffer>>): Buffer {
  return Buffer.concat(cmds.map(encodeCommand));
}

/** The `key1 val1 … keyN valN` argument list of the seed reproduction. */
export function msetArgs(pairs: number): string[] {
  const out = new Array<string>(pairs * 2);
  for (let i = 1; i <= pairs; i++) {
    out[2 * i - 2] = `key${i}`;
    out[2 * i - 1] = `val${i}`;
  }
  return out;
}

/** MSET key1 val1 … keyN valN as one multibulk request (500,000 pairs ≈ 16 MB), built without per-arg Buffers. */
export function msetPayload(pairs: number): Buffer {
  const chunks: string[] = [`*${1 + 2 * pairs}\r\n$4\r\nMSET\r\n`];
  let batch = '';
  for (let i = 1; i <= pairs; i++) {
    const k = `key${i}`;
    const v = `val${i}`;
    batch += `$${k.length}\r\n${k}\r\n$${v.length}\r\n${v}\r\n`;
    if (batch.length > 1 << 16) {
      chunks.push(batch);
      batch = '';
    }
  }
  chunks.push(batch);
  return Buffer.from(chunks.join(''), 'latin1');
}

export const ERR = {
  multibulk: '-ERR Protocol error: invalid multibulk length\r\n',
  bulk: '-ERR Protocol error: invalid bulk length\r\n',
  expectedDollar: (got: string) => `-ERR Protocol error: expected '$', got '${got}'\r\n`,
  inlineTooBig: '-ERR Protocol error: too big inline request\r\n',
  unbalancedQuotes: '-ERR Protocol error: unbalanced quotes in request\r\n',
  backendUnavailablePrefix: '-ERR backend unavailable',
} as const;

/** Shows bytes readably in assertion messages (CR/LF escaped, long values abbreviated). */
export function show(b: Buffer | string, max = 600): string {
  const s = typeof b === 'string' ? b : b.toString('latin1');
  if (s.length <= max) return JSON.stringify(s);
  return `${JSON.stringify(s.slice(0, max / 2))} … ${JSON.stringify(s.slice(-max / 2))} (${s.length} bytes)`;
}

/**
 * Splits a reply stream into top-level RESP2 replies (simple, error, integer, bulk, array; nested arrays ok).
 * Throws on malformed input; returns the remainder that is not yet a complete reply as `rest`.
 */
export function splitReplies(buf: Buffer): { replies: Buffer[]; rest: Buffer } {
  const replies: Buffer[] = [];
  let pos = 0;
  const lineEnd = (from: number): number => {
    const i = buf.indexOf('\r\n', from, 'latin1');
    return i;
  };
  const one = (from: number): number => {
    if (from >= buf.length) return -1;
    const t = String.fromCharCode(buf[from] as number);
    const e = lineEnd(from);
    if (e < 0) return -1;
    const header = buf.toString('latin1', from + 1, e);
    switch (t) {
      case '+': case '-': case ':':
        return e + 2;
      case '$': {
        const n = Number(header);
        if (!Number.isInteger(n)) throw new Error(`bad bulk header ${header}`);
        if (n < 0) return e + 2;
        const end = e + 2 + n + 2;
        return end <= buf.length ? end : -1;
      }
      case '*': {
        const n = Number(header);
        if (!Number.isInteger(n)) throw new Error(`bad array header ${header}`);
        let p = e + 2;
        for (let i = 0; i < n; i++) {
          p = one(p);
          if (p < 0) return -1;
        }
        return p;
      }
      default:
        throw new Error(`unexpected reply type byte ${JSON.stringify(t)} at ${from}`);
    }
  };
  for (;;) {
    const end = one(pos);
    if (end < 0) break;
    replies.push(buf.subarray(pos, end));
    pos = end;
  }
  return { replies, rest: buf.subarray(pos) };
}
