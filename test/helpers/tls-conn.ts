// A long-lived Node TLS client for tests that keep a connection open across a proxy event
// (reload, shutdown, idle timeout, pub/sub): send a command, wait for a number of complete
// replies. It cannot tell close_notify from a ragged EOF — use strict-client.ts for that.
import tls from 'node:tls';
import { splitReplies } from './resp.js';

export interface TlsConn {
  readonly socket: tls.TLSSocket;
  /** Sends `data` and resolves the next `replies` complete top-level replies (default 1). */
  request(data: Buffer | string, replies?: number, timeoutMs?: number): Promise<Buffer[]>;
  /** Resolves the next `replies` complete replies without sending anything. */
  next(replies?: number, timeoutMs?: number): Promise<Buffer[]>;
  /** Resolves when the server ended or the socket closed; `data` is what arrived unconsumed. */
  readonly ended: Promise<{ how: 'end' | 'close' | 'error'; error?: string }>;
  /** True once the server ended the stream or the socket closed. */
  readonly isEnded: boolean;
  /** The certificate the server presented. */
  peerCertificate(): tls.PeerCertificate;
  /** Ends our side (close_notify, FIN) and resolves when the connection has ended. */
  end(timeoutMs?: number): Promise<void>;
  close(): void;
}

/** Connects (TLS, SNI localhost) and resolves once the handshake is done. */
export function openTls(port: number, opts: { ca?: string | Buffer; timeoutMs?: number } = {}): Promise<TlsConn> {
  return new Promise((resolve, reject) => {
    const socket = tls.connect({
      host: '127.0.0.1',
      port,
      servername: 'localhost',
      ...(opts.ca !== undefined ? { ca: opts.ca } : { rejectUnauthorized: false }),
    });
    let buf: Buffer = Buffer.alloc(0);
    let waiter: { n: number; resolve: (r: Buffer[]) => void; reject: (e: Error) => void; timer: NodeJS.Timeout } | null = null;
    let ended = false;
    let endInfo: { how: 'end' | 'close' | 'error'; error?: string } | null = null;
    let onEnded: (v: { how: 'end' | 'close' | 'error'; error?: string }) => void = () => {};
    const endedP = new Promise<{ how: 'end' | 'close' | 'error'; error?: string }>((r) => { onEnded = r; });

    const pump = (): void => {
      if (waiter === null) return;
      const { replies, rest } = splitReplies(buf);
      if (replies.length >= waiter.n) {
        const take = replies.slice(0, waiter.n);
        const used = take.reduce((s, b) => s + b.length, 0);
        buf = Buffer.from(buf.subarray(used));
        const w = waiter;
        waiter = null;
        clearTimeout(w.timer);
        w.resolve(take.map((b) => Buffer.from(b)));
        return;
      }
      void rest;
      if (ended) {
        const w = waiter;
        waiter = null;
        clearTimeout(w.timer);
        w.reject(new Error(`connection ended (${endInfo?.how ?? '?'}${endInfo?.error ? `: ${endInfo.error}` : ''}) with ${replies.length} of ${w.n} replies; buffered ${JSON.stringify(buf.toString('latin1').slice(0, 300))}`));
      }
    };
    const finish = (how: 'end' | 'close' | 'error', error?: string): void => {
      if (ended) return;
      ended = true;
      endInfo = error !== undefined ? { how, error } : { how };
      onEnded(endInfo);
      pump();
    };
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new Error(`TLS handshake with 127.0.0.1:${port} did not complete within ${opts.timeoutMs ?? 10_000} ms`));
    }, opts.timeoutMs ?? 10_000);
    socket.on('data', (d: Buffer) => {
      buf = buf.length === 0 ? d : Buffer.concat([buf, d]);
      pump();
    });
    socket.on('end', () => finish('end'));
    socket.on('close', () => finish('close'));
    socket.on('error', (e) => {
      clearTimeout(timer);
      reject(e);
      finish('error', e.message);
    });
    socket.once('secureConnect', () => {
      clearTimeout(timer);
      const next = (n = 1, timeoutMs = 10_000): Promise<Buffer[]> => new Promise((res, rej) => {
        if (waiter !== null) {
          rej(new Error('a request is already waiting'));
          return;
        }
        waiter = {
          n,
          resolve: res,
          reject: rej,
          timer: setTimeout(() => {
            waiter = null;
            rej(new Error(`no ${n} replies within ${timeoutMs} ms; buffered ${JSON.stringify(buf.toString('latin1').slice(0, 300))}`));
          }, timeoutMs),
        };
        pump();
      });
      resolve({
        socket,
        request: (data, n = 1, timeoutMs = 10_000) => {
          const p = next(n, timeoutMs);
          socket.write(data);
          return p;
        },
        next,
        ended: endedP,
        get isEnded() {
          return ended;
        },
        peerCertificate: () => socket.getPeerCertificate(),
        end: async (timeoutMs = 10_000) => {
          socket.end();
          let timer: NodeJS.Timeout | undefined;
          await Promise.race([endedP, new Promise((res) => { timer = setTimeout(res, timeoutMs); })]);
          clearTimeout(timer);
          socket.destroy();
        },
        close: () => socket.destroy(),
      });
    });
  });
}
