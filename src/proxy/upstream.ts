// Backend probes (the relayed backend socket itself lives in session.ts).
import net from 'node:net';
import { isPeerGone } from './close-reason.js';

/** Resolves true when the backend answers PING within timeoutMs (+PONG, or -NOAUTH: it is up). */
export function pingBackend(host: string, port: number, timeoutMs: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = net.connect({ host, port, noDelay: true });
    let reply = '';
    const done = (ok: boolean): void => {
      clearTimeout(timer);
      socket.destroy();
      resolve(ok);
    };
    const timer = setTimeout(() => done(false), timeoutMs);
    socket.on('connect', () => socket.write('PING\r\n'));
    socket.on('data', (d: Buffer) => {
      reply += d.toString('latin1');
      if (reply.includes('\r\n')) done(reply.startsWith('+PONG') || reply.startsWith('-NOAUTH') || reply.startsWith('-ERR'));
    });
    socket.on('error', () => done(false));
    socket.on('close', () => done(false));
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
