// Node's own TLS client, for driving the proxy in ways the strict client does not (one write
// per byte with setImmediate between, a TCP reset). It cannot tell close_notify from a ragged
// EOF — use strict-client.ts for that.
import net from 'node:net';
import tls from 'node:tls';

export interface NodeTlsResult {
  /** Every byte received until the connection ended. */
  data: Buffer;
  /** 'end' = the server ended the stream (Node does not say whether with close_notify). */
  how: 'end' | 'error' | 'timeout';
  error?: string;
}

function connect(port: number, caFile: Buffer | string | undefined): Promise<{ sock: tls.TLSSocket; raw: net.Socket }> {
  return new Promise((resolve, reject) => {
    const raw = net.connect({ host: '127.0.0.1', port });
    raw.on('error', () => {});
    const sock = tls.connect({
      socket: raw,
      servername: 'localhost',
      ...(caFile !== undefined ? { ca: caFile } : { rejectUnauthorized: false }),
    });
    sock.once('secureConnect', () => resolve({ sock, raw }));
    sock.once('error', reject);
  });
}

/**
 * Sends `chunks`, one socket.write() each, waiting for each write's callback and a setImmediate
 * (or `gapMs`) in between, then collects the reply until the server ends the connection.
 */
export async function nodeTlsExchange(opts: { port: number; ca?: Buffer | string; chunks: Buffer[]; gapMs?: number; timeoutMs?: number; endAfterWrite?: boolean }): Promise<NodeTlsResult> {
  const { sock } = await connect(opts.port, opts.ca);
  const data: Buffer[] = [];
  let done: ((r: NodeTlsResult) => void) | undefined;
  const result = new Promise<NodeTlsResult>((resolve) => { done = resolve; });
  let settled = false;
  const finish = (how: NodeTlsResult['how'], error?: string): void => {
    if (settled) return;
    settled = true;
    clearTimeout(timer);
    const r: NodeTlsResult = { data: Buffer.concat(data), how };
    if (error !== undefined) r.error = error;
    sock.destroy();
    done!(r);
  };
  const timer = setTimeout(() => finish('timeout'), opts.timeoutMs ?? 20_000);
  sock.on('data', (d: Buffer) => data.push(d));
  sock.on('end', () => finish('end'));
  sock.on('error', (e) => finish('error', e.message));
  for (const c of opts.chunks) {
    if (settled) break;
    await new Promise<void>((resolve) => sock.write(c, () => resolve()));
    if (opts.gapMs) await new Promise((resolve) => setTimeout(resolve, opts.gapMs));
    else await new Promise((resolve) => setImmediate(resolve));
  }
  if (opts.endAfterWrite && !settled) sock.end();
  return result;
}

/** Connects, sends `payload`, waits `waitMs`, then resets the TCP connection (RST, no close_notify, no FIN). */
export async function sendThenReset(opts: { port: number; ca?: Buffer | string; payload: Buffer; waitMs?: number; fromWrite?: boolean }): Promise<Buffer> {
  const { sock, raw } = await connect(opts.port, opts.ca);
  const data: Buffer[] = [];
  sock.on('data', (d: Buffer) => data.push(d));
  sock.on('error', () => {});
  // fromWrite: waitMs counts from the write() call, not from its completion.
  if (opts.fromWrite) sock.write(opts.payload);
  else await new Promise<void>((resolve) => sock.write(opts.payload, () => resolve()));
  await new Promise((resolve) => setTimeout(resolve, opts.waitMs ?? 200));
  raw.resetAndDestroy();
  sock.destroy();
  return Buffer.concat(data);
}

/** Splits a buffer into pieces of `size` bytes (the last may be shorter). */
export function splitEvery(buf: Buffer, size: number): Buffer[] {
  const out: Buffer[] = [];
  for (let i = 0; i < buf.length; i += size) out.push(buf.subarray(i, i + size));
  return out;
}
