// The TLS listener: accepts clients, enforces max_clients, starts one Session per connection,
// counts handshakes. New connections use the current config; a reload swaps it (and the
// certificate) without touching connections already open.

import { X509Certificate } from 'node:crypto';
import { readFileSync } from 'node:fs';
import type { AddressInfo, Socket } from 'node:net';
import tls from 'node:tls';
import type { Config } from '../config/schema.js';
import type { Logger } from '../observability/logger.js';
import type { HandshakeFailureReason, Metrics } from '../observability/metrics.js';
import { Session } from './session.js';

/** Certificates and keys read from the files a config names. */
export interface TlsMaterial {
  options: tls.SecureContextOptions;
  /** notAfter of the serving certificate, Unix seconds. */
  expiresAt: number;
}

export function loadTlsMaterial(cfg: Config['tls']): TlsMaterial {
  const cert = readFileSync(cfg.cert_file);
  const key = readFileSync(cfg.key_file);
  const options: tls.SecureContextOptions = { cert, key, minVersion: cfg.min_version };
  if (cfg.ca_file !== null) options.ca = readFileSync(cfg.ca_file);
  // Throws when the key does not match the certificate, before anything is swapped in.
  tls.createSecureContext(options);
  const expiresAt = Date.parse(new X509Certificate(cert).validTo) / 1000;
  return { options, expiresAt };
}

const kAcceptedAt = Symbol('acceptedAt');
type Timed = Socket & { [kAcceptedAt]?: number };

export class Listener {
  private readonly server: tls.Server;
  private readonly sessions = new Set<Session>();
  private config: Config;
  private accepting = false;

  constructor(
    config: Config,
    material: TlsMaterial,
    private readonly metrics: Metrics,
    private readonly log: Logger,
  ) {
    this.config = config;
    this.server = tls.createServer({
      ...material.options,
      allowHalfOpen: true,
      handshakeTimeout: config.tls.handshake_timeout_ms,
      requestCert: config.tls.ca_file !== null,
      rejectUnauthorized: config.tls.ca_file !== null,
    });
    metrics.certExpiry.set(material.expiresAt);
    this.server.on('connection', (raw: Timed) => {
      raw[kAcceptedAt] = performance.now();
    });
    this.server.on('secureConnection', (socket: tls.TLSSocket) => this.onSecureConnection(socket));
    this.server.on('tlsClientError', (err: NodeJS.ErrnoException, socket: tls.TLSSocket) => {
      const reason = handshakeFailureReason(err);
      metrics.handshakeFailures.labels(reason).inc();
      this.log.debug({ reason, err: err.message }, 'TLS handshake failed');
      socket.destroy();
    });
    this.server.on('error', (err) => this.log.error({ err: err.message }, 'listener error'));
  }

  async listen(): Promise<AddressInfo> {
    const { host, port } = this.config.listen;
    await new Promise<void>((resolve, reject) => {
      this.server.once('error', reject);
      this.server.listen({ host, port }, () => {
        this.server.off('error', reject);
        resolve();
      });
    });
    this.accepting = true;
    return this.server.address() as AddressInfo;
  }

  get isAccepting(): boolean {
    return this.accepting;
  }

  get activeSessions(): number {
    return this.sessions.size;
  }

  /** New connections get this config and certificate; open ones keep theirs. */
  reload(config: Config, material: TlsMaterial): void {
    this.server.setSecureContext(material.options);
    this.metrics.certExpiry.set(material.expiresAt);
    this.config = config;
  }

  /** Stop accepting; open connections go on. */
  stopAccepting(): void {
    this.accepting = false;
    this.server.close();
  }

  /** Resolves when no connection is open, or after ms. */
  idle(ms: number): Promise<void> {
    if (this.sessions.size === 0) return Promise.resolve();
    return new Promise((resolve) => {
      const timer = setTimeout(resolve, ms);
      this.whenEmpty.push(() => {
        clearTimeout(timer);
        resolve();
      });
    });
  }

  /** Close every open connection in order; resolves when all are closed. */
  closeAll(): Promise<void> {
    if (this.sessions.size === 0) return Promise.resolve();
    return new Promise((resolve) => {
      this.whenEmpty.push(resolve);
      for (const s of this.sessions) s.close('shutdown');
    });
  }

  private whenEmpty: (() => void)[] = [];

  private onSecureConnection(socket: tls.TLSSocket): void {
    const raw = (socket as unknown as { _parent?: Timed })._parent;
    const acceptedAt = raw?.[kAcceptedAt];
    if (acceptedAt !== undefined) this.metrics.handshakeDuration.observe((performance.now() - acceptedAt) / 1000);
    const m = this.metrics;
    m.connectionsTotal.inc();
    m.connectionsActive.inc();
    const session = new Session(socket, this.config, {
      metrics: m,
      log: this.log,
      onClosed: (s) => {
        this.sessions.delete(s);
        m.connectionsActive.dec();
        if (this.sessions.size === 0) for (const f of this.whenEmpty.splice(0)) f();
      },
    });
    this.sessions.add(session);
    if (this.sessions.size > this.config.limits.max_clients) session.rejectMaxClients();
    else session.start();
  }
}

function handshakeFailureReason(err: NodeJS.ErrnoException): HandshakeFailureReason {
  const code = err.code ?? '';
  if (code === 'ERR_TLS_HANDSHAKE_TIMEOUT') return 'timeout';
  if (code === 'ECONNRESET' || code === 'EPIPE') return 'reset';
  if (/CERTIFICATE|PEER_DID_NOT_RETURN/.test(code)) return 'client_certificate';
  if (/VERSION|PROTOCOL_VERSION/.test(code)) return 'version';
  if (code.startsWith('ERR_SSL_')) return 'protocol';
  return 'other';
}
