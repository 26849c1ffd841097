// Backend probes (the relayed backend socket itself lives in session.ts).
import net from 'node:net';
import { isPeerGone } from './close-reason.js';

/**
 * Replies to PING from a backend that serves clients: +PONG, -NOAUTH (the proxy does not
 * authenticate; its clients do) and other -ERR replies, except Redis at maxclients (it then
 * closes the connection). Anything else is not ready: -LOADING (loading its dataset),
 * -MASTERDOWN (a replica cut off from its master), -DENIED (protected mode, refusing every
 * client), -BUSY, or no RESP at all (another service on that port).
 */
function serves(line: string): boolean {
  if (line.startsWith('+PONG') || line.startsWith('-NOAUTH')) return true;
  return line.startsWith('-ERR') && !line.startsWith('-ERR max number of clients reached');
}

/**
 * PINGs the backend: null when it is up, else why not ("does not answer PING", or "answers
 * PING with …" when the reply says it does not serve clients).
 */
export function pingBackend(host: string, port: number, timeoutMs: number): Promise<string | null> {
  return new Promise((resolve) => {
    const socket = net.connect({ host, port, noDelay: true });
    let reply = '';
    const done = (why: string | null): void => {
      clearTimeout(timer);
      socket.destroy();
      resolve(why);
    };
    const silent = 'does not answer PING';
    const timer = setTimeout(() => done(silent), timeoutMs);
    socket.on('connect', () => socket.write('PING\r\n'));
    socket.on('data', (d: Buffer) => {
      reply += d.toString('latin1');
      const end = reply.indexOf('\r\n');
      if (end < 0) {
        if (reply.length > 4096) done('answers PING with no RESP line'); // another service, streaming
        return;
      }
      const line = reply.slice(0, end);
      done(serves(line) ? null : `answers PING with ${JSON.stringify(line.slice(0, 200))}`);
    });
    socket.on('error', () => done(silent));
    socket.on('close', () => done(silent));
  });
}

type WriteCallback = (err?: Error | null) => void;

/**
 * The backend socket. A write that fails because the backend closed on us (isPeerGone: EPIPE, ECONNRESET, ECONNABORTED)
 * does not destroy it, as it would a plain net.Socket: the backend's last replies (Redis's own
 * error text, typically) may still wait in the kernel's receive buffer, and destroying the
 * socket would throw them away. Such a write is dropped, later writes too, 'writeFailed' is
 * emitted once, and the socket is read until the backend's EOF or reset arrives.
 */
export class BackendSocket extends net.Socket {
  writeFailed: NodeJS.ErrnoException | null = null;

  // net.Socket's onread option (Node >= 12), missing from @types/node 20's constructor options.
  constructor(opts: net.SocketConstructorOpts & { onread?: { buffer: Buffer; callback: (n: number, buf: Buffer) => void } } = {}) {
    super(opts);
  }

  // Writable passes the same callback (its state.onwrite) to every _write: wrap it once.
  private guarded: WriteCallback | null = null;
  private guardedFor: WriteCallback | null = null;

  override _write(chunk: Buffer, encoding: BufferEncoding, cb: WriteCallback): void {
    if (this.writeFailed !== null) return cb();
    super._write(chunk, encoding, this.guard(cb));
  }

  override _writev(chunks: { chunk: Buffer; encoding: BufferEncoding }[], cb: WriteCallback): void {
    if (this.writeFailed !== null) return cb();
    super._writev!(chunks, this.guard(cb));
  }

  private guard(cb: WriteCallback): WriteCallback {
    if (cb === this.guardedFor) return this.guarded!;
    this.guardedFor = cb;
    return (this.guarded = (err) => {
      if (err && isPeerGone(err as NodeJS.ErrnoException)) {
        if (this.writeFailed === null) {
          this.writeFailed = err as NodeJS.ErrnoException;
          this.emit('writeFailed', err);
        }
        return cb();
      }
      cb(err);
    });
  }
}
