// One request over Node's TLS client with full control of the handshake (SNI name, client
// certificate, versions, ciphers), reporting what was negotiated. Not an oracle for close_notify
// (use strict-client.ts for that).
import tls from 'node:tls';

export interface TlsRequestOptions {
  port: number;
  /** SNI name (default 'localhost'); false sends none. */
  servername?: string | false;
  /** Verify the server against this CA (and the hostname `servername`); default: no verification. */
  ca?: Buffer | string;
  cert?: Buffer | string;
  key?: Buffer | string;
  minVersion?: tls.SecureVersion;
  maxVersion?: tls.SecureVersion;
  ciphers?: string;
  payload?: Buffer | string;
  /** Resolve as soon as the data received satisfies this (then end the connection). */
  until?: (data: Buffer) => boolean;
  timeoutMs?: number;
}

export interface TlsRequestResult {
  /** Whether the handshake completed (secureConnect). */
  connected: boolean;
  data: Buffer;
  /** How it ended: 'until' (we had what we wanted), 'end' (the server ended), 'error', 'timeout'. */
  how: 'until' | 'end' | 'error' | 'timeout';
  error?: string;
  errorCode?: string;
  protocol: string | null;
  cipher: string | null;
  /** Subject CN of the certificate the server presented. */
  peerCN: string | null;
  /** Subject alternative names of the server's certificate. */
  peerSAN: string | null;
}

export function tlsRequest(opts: TlsRequestOptions): Promise<TlsRequestResult> {
  return new Promise((resolve) => {
    const servername = opts.servername === undefined ? 'localhost' : opts.servername;
    const sock = tls.connect({
      host: '127.0.0.1',
      port: opts.port,
      ...(servername !== false ? { servername } : {}),
      ...(opts.ca !== undefined ? { ca: opts.ca } : { rejectUnauthorized: false }),
      ...(opts.ca !== undefined && servername !== false ? { checkServerIdentity: (_h: string, cert: tls.PeerCertificate) => tls.checkServerIdentity(servername, cert) } : {}),
      ...(opts.cert !== undefined ? { cert: opts.cert, key: opts.key } : {}),
      ...(opts.minVersion !== undefined ? { minVersion: opts.minVersion } : {}),
      ...(opts.maxVersion !== undefined ? { maxVersion: opts.maxVersion } : {}),
      ...(opts.ciphers !== undefined ? { ciphers: opts.ciphers } : {}),
    });
    const chunks: Buffer[] = [];
    let connected = false;
    let settled = false;
    const res: Omit<TlsRequestResult, 'data' | 'how' | 'connected'> = { protocol: null, cipher: null, peerCN: null, peerSAN: null };
    const finish = (how: TlsRequestResult['how'], err?: NodeJS.ErrnoException): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      const r: TlsRequestResult = { connected, data: Buffer.concat(chunks), how, ...res };
      if (err) {
        r.error = err.message;
        if (err.code !== undefined) r.errorCode = err.code;
      }
      if (how === 'until') sock.end();
      sock.destroySoon();
      setTimeout(() => sock.destroy(), 1_000).unref();
      resolve(r);
    };
    const timer = setTimeout(() => finish('timeout'), opts.timeoutMs ?? 15_000);
    sock.on('secureConnect', () => {
      connected = true;
      res.protocol = sock.getProtocol();
      res.cipher = sock.getCipher()?.name ?? null;
      const peer = sock.getPeerCertificate();
      const cn = peer.subject?.CN;
      res.peerCN = cn === undefined ? null : Array.isArray(cn) ? cn.join(',') : cn;
      res.peerSAN = peer.subjectaltname ?? null;
      if (opts.payload !== undefined) sock.write(opts.payload);
      else if (opts.until === undefined) finish('until');
    });
    sock.on('data', (d: Buffer) => {
      chunks.push(d);
      if (opts.until?.(Buffer.concat(chunks))) finish('until');
    });
    sock.on('end', () => finish('end'));
    sock.on('error', (e: NodeJS.ErrnoException) => finish('error', e));
    sock.on('close', () => finish('end'));
  });
}

/** `until` for a reply stream: resolves once `text` has arrived in full. */
export const untilText = (text: string) => (data: Buffer): boolean => data.length >= text.length;
