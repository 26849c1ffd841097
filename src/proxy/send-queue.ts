// How many bytes of a TCP socket's output the kernel holds that the peer has not acknowledged
// yet: tx_queue in /proc/net/tcp and /proc/net/tcp6 (Linux). An orderly close waits for a client
// that reads; Node tells us only when a write completes, and the kernel wakes a blocked writer
// only once a good part of its send buffer (grown to megabytes) has drained: for a client reading
// a few hundred KB a second, seconds apart. That this count changes is how a close tells such a
// client from one that does not read at all. Elsewhere (or on any surprise) it answers null.
import { readFile } from 'node:fs/promises';
import os from 'node:os';
import type { Socket } from 'node:net';

/** One read of the tables serves every look within this long. */
const FRESH_MS = 200;

type Table = Map<string, number>;
const tables = new Map<string, { at: number; rows: Promise<Table | null> }>();

/**
 * tx_queue of the socket, or null when it cannot be told (not Linux, no /proc, an address that
 * does not parse, the socket not in the table).
 */
export async function unacknowledged(socket: Socket): Promise<number | null> {
  const { localAddress, localPort, remoteAddress, remotePort, remoteFamily } = socket;
  if (localAddress === undefined || localPort === undefined || remoteAddress === undefined || remotePort === undefined) return null;
  const v6 = remoteFamily === 'IPv6';
  const local = procAddress(localAddress, v6);
  const remote = procAddress(remoteAddress, v6);
  if (local === null || remote === null) return null;
  const table = await tableOf(v6 ? '/proc/net/tcp6' : '/proc/net/tcp');
  return table?.get(`${local}:${port(localPort)} ${remote}:${port(remotePort)}`) ?? null;
}

function tableOf(file: string): Promise<Table | null> {
  const now = performance.now();
  const cached = tables.get(file);
  if (cached !== undefined && now - cached.at < FRESH_MS) return cached.rows;
  const rows = readFile(file, 'latin1').then(parseTable, () => null);
  tables.set(file, { at: now, rows });
  return rows;
}

/** "  sl  local_address rem_address   st tx_queue:rx_queue …" rows, keyed "LOCAL REMOTE" as printed. */
export function parseTable(text: string): Table {
  const rows: Table = new Map();
  for (const line of text.split('\n')) {
    const f = line.trim().split(/\s+/);
    // f[3] state: skip LISTEN (0A) and TIME_WAIT (06), ghosts of earlier connections
    if (f.length < 5 || f[3] === '0A' || f[3] === '06' || !f[0]!.endsWith(':')) continue;
    const tx = Number.parseInt(f[4]!.slice(0, f[4]!.indexOf(':')), 16);
    if (Number.isFinite(tx)) rows.set(`${f[1]} ${f[2]}`, tx);
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
