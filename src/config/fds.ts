// How many file descriptors the process may hold, against what limits.max_clients asks for: each
// client served holds two (its TLS socket and its backend connection), and clients being
// accepted, refused or closed hold more for a while. Past the limit, accepts fail (the kernel's
// EMFILE: libuv closes the connection unanswered) and backend connects fail (the client gets
// "backend unavailable"), well before max_clients turns anyone away with Redis's error. Node
// raises its soft limit to the hard one at start, so the soft one read here is what it has.
import { readFileSync } from 'node:fs';

/**
 * File descriptors a process serving `clients` at once needs at least: two per client. The few
 * more it holds besides (listeners, the admin server, watches; ~25 in all) are left out, so a
 * limit that falls short by those alone, 20,000 for the default 10,000 clients, passes.
 */
export function fdsNeeded(clients: number): number {
  return 2 * clients;
}

/** The soft "Max open files" of /proc/self/limits (Linux); null where it cannot be read or is unlimited. */
export function openFileLimit(text: string | null = readLimits()): number | null {
  const m = text === null ? null : /^Max open files\s+(\d+)\s/m.exec(text);
  return m === null ? null : Number(m[1]);
}

function readLimits(): string | null {
  try {
    return readFileSync('/proc/self/limits', 'latin1');
  } catch {
    return null;
  }
}
