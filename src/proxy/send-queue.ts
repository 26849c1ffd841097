// How many bytes of a TCP socket's output the kernel holds that the peer has not acknowledged
// yet: tx_queue in /proc/net/tcp and /proc/net/tcp6 (Linux). An orderly close waits for a client
// that reads; Node tells us only when a write completes, and the kernel wakes a blocked writer
// only once a good part of its send buffer (grown to megabytes) has drained: for a client reading
// a few hundred KB a second, seconds apart. That this count changes is how a close tells such a
// client from one that does not read at all. Elsewhere (or on any surprise) it answers null.
import { readFile } from 'node:fs/promises';
import os from 'node:os';
import type { Socket } from 'node:net';

/** One read of the tables serves every look within this long, unless the caller asks for fresher. */
export const FRESH_MS = 200;

type Table = Map<string, number>;
const tables = new Map<string, { at: number; rows: Promise<Table | null> }>();

/**
 * tx_queue of the socket, or null when it cannot be told (not Linux, no /proc, an address that
 * does not parse, the socket not in the table). `maxAgeMs`: how old a table read for another look
 * may be; two looks meant to see a change must come further apart than this.
 */
export async function unacknowledged(socket: Socket, maxAgeMs = FRESH_MS): Promise<number | null> {
  const { localAddress, localPort, remoteAddress, remotePort, remoteFamily } = socket;
  if (localAddress === undefined || localPort === undefined || remoteAddress === undefined || remotePort === undefined) return null;
  const v6 = remoteFamily === 'IPv6';
  const local = procAddress(localAddress, v6);
  const remote = procAddress(remoteAddress, v6);
  if (local === null || remote === null) return null;
  const table = await tableOf(v6 ? '/proc/net/tcp6' : '/proc/net/tcp', port(localPort), maxAgeMs);
  return table?.get(`${local}:${port(localPort)} ${remote}:${port(remotePort)}`) ?? null;
}

/** The rows of `file` whose local port is `localPort` (hex): a client's sockets share the listening port. */
function tableOf(file: string, localPort: string, maxAgeMs: number): Promise<Table | null> {
  const key = `${file} ${localPort}`;
  const cached = tables.get(key);
  if (cached !== undefined && performance.now() - cached.at < maxAgeMs) return cached.rows;
  const entry = {
    at: Number.POSITIVE_INFINITY, // fresh while it is read
    rows: readFile(file, 'latin1')
      .then((text) => parseTable(text, localPort), () => null)
      .finally(() => (entry.at = performance.now())),
  };
  tables.set(key, entry);
  return entry.rows;
}

/**
 * "  sl  local_address rem_address   st tx_queue:rx_queue …" rows, keyed "LOCAL REMOTE" as printed.
 * The columns after "sl:" have fixed widths (the kernel prints them with %08X and %04X), so a row
 * is read at offsets, not split: a table of tens of thousands of sockets (every socket of the
 * network namespace is in it) parses in milliseconds, on the event loop every client shares.
 */
export function parseTable(text: string, localPort: string | null = null): Table {
  const rows: Table = new Map();
  let line = text.indexOf('\n') + 1; // past the header
  while (line > 0 && line < text.length) {
    let end = text.indexOf('\n', line);
    if (end === -1) end = text.length;
    const p = text.indexOf(': ', line) + 2; // after "   0:"
    if (p > 1 && p < end) {
      // LOCAL:PORT REMOTE:PORT ST TX:RX, the addresses 8 (IPv4) or 32 (IPv6) hex digits
      const w = text.charCodeAt(p + 8) === 58 /* : */ ? 8 : 32;
      const st = p + 2 * w + 12;
      const state = text.slice(st, st + 2);
      // skip other local ports, LISTEN (0A) and TIME_WAIT (06), ghosts of earlier connections
      const wanted = localPort === null || text.startsWith(localPort, p + w + 1);
      if (wanted && state !== '0A' && state !== '06' && st + 11 <= end && text.charCodeAt(st + 11) === 58) {
        const tx = Number.parseInt(text.slice(st + 3, st + 11), 16);
        if (Number.isFinite(tx)) rows.set(text.slice(p, st - 1), tx);
      }
    }
    line = end + 1;
  }
  return rows;
}

function port(p: number): string {
  return p.toString(16).toUpperCase().padStart(4, '0');
}

/**
 * An address as the kernel prints it: each 32-bit word as %08X of its value in host byte order.
 * An IPv4 address in an IPv6 table is v4-mapped (::ffff:a.b.c.d).
 */
export function procAddress(address: string, v6: boolean, littleEndian = os.endianness() === 'LE'): string | null {
  const bytes = v6 ? ipv6Bytes(address) : ipv4Bytes(address);
  if (bytes === null) return null;
  let out = '';
  for (let w = 0; w < bytes.length; w += 4) {
    const word = bytes.slice(w, w + 4);
    if (littleEndian) word.reverse();
    for (const b of word) out += b.toString(16).toUpperCase().padStart(2, '0');
  }
  return out;
}

function ipv4Bytes(address: string): number[] | null {
  const parts = address.split('.');
  if (parts.length !== 4) return null;
  const bytes = parts.map((p) => (/^\d{1,3}$/.test(p) ? Number(p) : 256));
  return bytes.every((b) => b <= 255) ? bytes : null;
}

function ipv6Bytes(address: string): number[] | null {
  let text = address.replace(/%.*$/, ''); // a zone: fe80::1%eth0
  let tail: number[] = [];
  const dotted = /:(\d+\.\d+\.\d+\.\d+)$/.exec(text);
  if (dotted !== null) {
    const v4 = ipv4Bytes(dotted[1]!);
    if (v4 === null) return null;
    tail = v4;
    text = text.slice(0, dotted.index); // "::ffff" from "::ffff:1.2.3.4", ":" from "::1.2.3.4"
    if (text.endsWith(':')) text += ':'; // "::" stood right before the dotted part
  }
  const halves = text.split('::');
  if (halves.length > 2) return null;
  const group = (s: string): number[] | null => {
    if (s === '') return [];
    const out: number[] = [];
    for (const g of s.split(':')) {
      if (!/^[0-9a-fA-F]{1,4}$/.test(g)) return null;
      const v = Number.parseInt(g, 16);
      out.push(v >> 8, v & 0xff);
    }
    return out;
  };
  const head = group(halves[0]!);
  const rest = halves.length === 2 ? group(halves[1]!) : [];
  if (head === null || rest === null) return null;
  const known = head.length + rest.length + tail.length;
  if (halves.length === 1 ? known !== 16 : known > 14) return null;
  return [...head, ...Array<number>(16 - known).fill(0), ...rest, ...tail];
}
