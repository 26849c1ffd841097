// Inline commands ("SET a 1\r\n"): split exactly as Redis's sdssplitargs() splits them, then
// re-encode as multibulk so every backend reads the same arguments we checked.

const isSpace = (c: number): boolean => c === 32 || (c >= 9 && c <= 13); // C isspace(): \t \n \v \f \r and ' '

function hexValue(c: number): number {
  if (c >= 48 && c <= 57) return c - 48;
  if (c >= 97 && c <= 102) return c - 87;
  if (c >= 65 && c <= 70) return c - 55;
  return -1;
}

/**
 * Split `line[start, end)` into arguments. Returns null where Redis answers
 * "unbalanced quotes in request" (an unterminated quote, or a closing quote followed by
 * something other than a space).
 */
export function splitArgs(line: Buffer, start: number, end: number): Buffer[] | null {
  const args: Buffer[] = [];
  const at = (i: number): number => (i < end ? line[i]! : 0); // the C string's terminating NUL
  let p = start;
  // One buffer for the whole line: unescaping only shrinks a token, so every argument fits at a
  // running offset behind the read position. (A buffer per argument sized to the rest of the
  // line would cost O(length²) for a line of many short arguments.)
  const out = Buffer.allocUnsafe(end - start);
  let len = 0;
  for (;;) {
    while (p < end && isSpace(line[p]!)) p++;
    if (at(p) === 0) return args; // the end of the C string
    const from = len;
    let quote = 0; // 34 (") or 39 (') inside a quoted token, else 0
    for (let done = false; !done; ) {
      const c = at(p);
      if (quote === 34 && c === 92 /* \ */ && at(p + 1) === 120 /* x */ && hexValue(at(p + 2)) >= 0 && hexValue(at(p + 3)) >= 0) {
        out[len++] = hexValue(at(p + 2)) * 16 + hexValue(at(p + 3));
        p += 3;
      } else if (quote === 34 && c === 92 && at(p + 1) !== 0) {
        p++;
        const e = at(p);
        out[len++] = e === 110 ? 10 : e === 114 ? 13 : e === 116 ? 9 : e === 98 ? 8 : e === 97 ? 7 : e;
      } else if (quote === 39 && c === 92 && at(p + 1) === 39) {
        p++;
        out[len++] = 39;
      } else if (quote !== 0) {
        // The closing quote must end the token; a NUL is the string ending inside the quotes.
        if (c === quote) {
          if (at(p + 1) !== 0 && !isSpace(at(p + 1))) return null;
          done = true;
        } else if (c === 0) return null;
        else out[len++] = c;
      } else if (c === 32 || c === 10 || c === 13 || c === 9 || c === 0) {
        done = true;
      } else if (c === 34 || c === 39) {
        quote = c;
      } else {
        out[len++] = c;
      }
      if (c !== 0) p++;
    }
    args.push(out.subarray(from, len));
  }
}

/** `*N\r\n$len\r\narg\r\n...` for the given arguments. */
export function encodeMultibulk(args: readonly Buffer[]): Buffer {
  let size = 1 + String(args.length).length + 2;
  for (const a of args) size += 1 + String(a.length).length + 2 + a.length + 2;
  const out = Buffer.allocUnsafe(size);
  let o = out.write(`*${args.length}\r\n`, 0, 'latin1');
  for (const a of args) {
    o += out.write(`$${a.length}\r\n`, o, 'latin1');
    o += a.copy(out, o);
    out[o++] = 13;
    out[o++] = 10;
  }
  return out;
}
