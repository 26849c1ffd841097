// Backend probes (the relayed backend socket itself lives in session.ts).
import net from 'node:net';

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
