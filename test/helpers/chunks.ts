// Cutting a byte stream into chunks, for feeding parsers at every boundary.

/** Cuts `input` at the given offsets (any order; duplicates and out-of-range offsets ignored). */
export function cut(input: Buffer, offsets: readonly number[]): Buffer[] {
  const points = [...new Set(offsets.filter((o) => o > 0 && o < input.length))].sort((a, b) => a - b);
  const chunks: Buffer[] = [];
  let from = 0;
  for (const p of points) {
    chunks.push(input.subarray(from, p));
    from = p;
  }
  chunks.push(input.subarray(from));
  return chunks;
}
