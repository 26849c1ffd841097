// The TLS listener: accepts clients, enforces max_clients, starts one Session per connection,
// counts handshakes. New connections use the current config; a reload swaps it (and the
// certificate) without touching connections already open.

import net, { type AddressInfo, type Socket } from 'node:net';
import tls from 'node:tls';
import { MAX_MS, clientsPerProcess, type Config, type WorkerPlace } from '../config/schema.js';
import { ticketSecrets, type TicketSecrets } from '../config/tickets.js';
import type { SniEntry, TlsMaterial } from '../config/tls.js';
import { listenOn } from '../config/error.js';
import type { Logger } from '../observability/logger.js';
import type { HandshakeFailureReason, Metrics } from '../observability/metrics.js';
import { isPeerGone } from './close-reason.js';
import { Session, dropWithoutTls, refuse } from './session.js';

function matchSni(entries: readonly SniEntry[], servername: string | false | null | undefined): SniEntry | undefined {
  if (!servername) return undefined;
  const name = servername.toLowerCase();
  return entries.find((e) => e.servername === name || (e.servername.startsWith('*.') && name.endsWith(e.servername.slice(1)) && !name.slice(0, -e.servername.length + 1).includes('.')));
}

/** Is this client certificate one of the identities in tls.allow? */
function allowed(allow: NonNullable<Config['tls']['allow']>, cert: tls.PeerCertificate): boolean {
  const cn = cert.subject?.CN;
  if (cn !== undefined && allow.cn.includes(Array.isArray(cn) ? cn[0]! : cn)) return true;
  for (const san of (cert.subjectaltname ?? '').split(', ')) {
    if (san.startsWith('DNS:') && allow.dns_san.includes(san.slice(4))) return true;
    if (san.startsWith('URI:') && allow.uri_san.includes(san.slice(4))) return true;
  }
  return false;
}

const kAcceptedAt = Symbol('acceptedAt');
const kHandshaking = Symbol('handshaking');
/** The timer that ends a handshake begun after a wait, when its time from accept is up. */
const kDeadline = Symbol('deadline');
const kTimedOut = Symbol('timedOut');
type Timed = Socket & { [kAcceptedAt]?: number; [kHandshaking]?: boolean; [kDeadline]?: NodeJS.Timeout; [kTimedOut]?: boolean };

export class Listener {
  /** Accepts TCP connections and hands those under the socket cap to `server`. */
  private readonly tcp: net.Server;
  /** Does TLS on the connections handed to it; never listens itself. */
  private readonly server: tls.Server;
  private readonly sessions = new Set<Session>();
  /** The sessions started (not turned away): what limits.max_clients counts, as Redis counts clients. */
  private served = 0;
  /** Every TCP connection held, handshaking or closing included (the socket cap). */
  private sockets = 0;
  private config: Config;
  private material: TlsMaterial;
  private readonly tickets: TicketSecrets;
  private accepting = false;
  /** Connections handed to `server` whose handshake has not ended. */
  private handshaking = 0;
  /** Connections waiting for a handshake place, oldest first, from waitingHead on. */
  private waiting: Timed[] = [];
  private waitingHead = 0;
  private expiry: NodeJS.Timeout | null = null;
  /** While sessions are open: each looks at what its TLS layer does for the client (Session.checkTls), a slice a tick. */
  private tlsCheck: NodeJS.Timeout | null = null;
  /** The next sessions to look at (a Set's iterator skips those closed and reaches those added). */
  private tlsCursor: Iterator<Session> | null = null;
  private tlsCheckedAt = 0;

  constructor(
    config: Config,
    material: TlsMaterial,
    private readonly metrics: Metrics,
    private readonly log: Logger,
    /** This process's place among the accepting ones, for its share of max_clients. */
    private readonly place: WorkerPlace = { slot: 0, of: 1 },
  ) {
    this.config = config;
    this.material = material;
    this.tickets = ticketSecrets(config.tls.ticket_rotation_ms);
    this.server = tls.createServer({
      ...material.options,
      handshakeTimeout: config.tls.handshake_timeout_ms,
      requestCert: config.tls.ca_file !== null,
      rejectUnauthorized: config.tls.ca_file !== null,
      SNICallback: (servername, cb) => cb(null, matchSni(this.material.sni, servername)?.context),
    });
    this.setTicketKeys();
    metrics.certExpiry.set(material.expiresAt);
    // A new ticket key at each period's start; the last one is forgotten (tickets.ts).
    this.tickets.keepStepping(() => this.setTicketKeys());
    // The socket cap is counted here, before any TLS state exists (tls.Server takes injected
    // connections, as its docs say). Not net.Server.maxConnections: under node:cluster a worker
    // at that limit hands the connection back to the primary, which offers it to the next
    // worker, and again, in a loop without delay while every worker is full, and nothing counts.
    this.tcp = net.createServer({
      // Not allowHalfOpen: until the handshake completes a client's FIN must end the socket at
      // once, or a client that connects and leaves holds it until handshakeTimeout. A Session
      // turns half-open on for its own socket.
      noDelay: true, // replies go out at once: no Nagle delay on the client side either
      // Nothing is read before the TLS server takes the socket (it reads through the handle;
      // bytes read here would be lost to it), so a connection can wait for a handshake place.
      pauseOnConnect: true,
    });
    this.tcp.on('connection', (raw: Timed) => {
      if (this.sockets >= this.socketCap(this.config)) {
        metrics.handshakeFailures.labels('socket_limit').inc();
        dropWithoutTls(raw);
        return;
      }
      this.sockets++;
      raw.once('close', () => {
        this.sockets--;
        this.handshakeEnded(raw);
      });
      raw[kAcceptedAt] = performance.now();
      // At most tls.max_handshakes at once: OpenSSL sets aside as much memory as a ClientHello
      // declares (up to 128 KiB) once its first 9 bytes arrive, so a few bytes on each of
      // thousands of sockets held gigabytes. Later connections wait with their bytes in the
      // kernel (no TLS state yet). A place is held for a handshake's CPU and round trips.
      if (this.handshaking < this.config.tls.max_handshakes) this.startHandshake(raw);
      else {
        this.waiting.push(raw);
        this.armExpiry();
      }
    });
    this.server.on('secureConnection', (socket: tls.TLSSocket) => this.onSecureConnection(socket));
    this.server.on('tlsClientError', (err: NodeJS.ErrnoException, socket: tls.TLSSocket) => {
      // A client certificate that does not verify (another CA, expired) is not an OpenSSL error:
      // Node checks it after the handshake, destroys the socket and reports "socket hang up";
      // only authorizationError tells why.
      const certError = socket.authorizationError as unknown as string | undefined;
      const timedOut = (socket as unknown as { _parent?: Timed })._parent?.[kTimedOut] === true;
      const reason = certError ? 'client_certificate' : timedOut ? 'timeout' : handshakeFailureReason(err);
      metrics.handshakeFailures.labels(reason).inc();
      this.log.debug({ reason, err: err.message, ...(certError ? { cert_error: String(certError) } : {}) }, 'TLS handshake failed');
      dropWithoutTls(socket);
    });
    this.server.on('error', (err) => this.log.error({ err: err.message }, 'listener error'));
  }

  async listen(): Promise<AddressInfo> {
    const { host, port } = this.config.listen;
    await listenOn(this.tcp, 'listen', host, port);
    // From now on an error (an accept that fails: EMFILE) is logged; unheard it would end the process.
    this.tcp.on('error', (err) => this.log.error({ err: err.message }, 'listener error'));
    this.accepting = true;
    return this.tcp.address() as AddressInfo;
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
    // tls.Server reads these per connection: setting or clearing ca_file turns mTLS on or off.
    const mtls = config.tls.ca_file !== null;
    Object.assign(this.server, { requestCert: mtls, rejectUnauthorized: mtls });
    this.metrics.certExpiry.set(material.expiresAt);
    this.config = config;
    this.material = material;
    this.setTicketKeys(); // the new context's, from the new material
  }

  /**
   * The current period's ticket key for the current material, leaving no copy of it in
   * JavaScript: Node copies it into the secure context, so our Buffer is wiped. (Never through
   * the ticketKeys option: tls.Server keeps that one in a field for its whole life.)
   */
  private setTicketKeys(): void {
    const keys = this.tickets.keys(this.material.ticketBase);
    this.server.setTicketKeys(keys);
    keys.fill(0);
  }

  /** Stop accepting; open connections go on. */
  stopAccepting(): void {
    this.accepting = false;
    this.tcp.close();
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

  /**
   * Close every open connection in order; resolves when all are closed. A close still under way
   * `withinMs` from now is cut then (Session.cut): each wait of a close restarts with progress, so
   * a client that reads slowly but steadily, or replies that keep coming, would hold the shutdown
   * for as long as they last. Called again (a second signal), it can bring that time closer.
   */
  closeAll(withinMs: number): Promise<void> {
    this.closingAll = true;
    // Still waiting for a handshake place: no TLS yet, nothing to close in order.
    for (const raw of this.waiting.splice(0).slice(this.waitingHead)) dropWithoutTls(raw);
    this.waitingHead = 0;
    if (this.sessions.size === 0) return Promise.resolve();
    const ms = Math.min(withinMs, MAX_MS); // a longer one would fire after 1 ms
    const cutAt = performance.now() + ms;
    if (this.cut === null || cutAt < this.cut.at) {
      if (this.cut !== null) clearTimeout(this.cut.timer);
      this.cut = { at: cutAt, timer: setTimeout(() => this.cutAll(ms), ms) };
    }
    return new Promise((resolve) => {
      this.whenEmpty.push(resolve);
      for (const s of this.sessions) s.close('shutdown');
    });
  }

  /** closeAll's time is up: what is still closing is torn down. */
  private cutAll(withinMs: number): void {
    this.cut = null;
    this.log.warn({ closing: this.sessions.size, within_ms: withinMs }, 'shutdown: cutting the closes still under way');
    for (const s of this.sessions) s.cut();
  }

  /** When closeAll cuts what is left, while connections are open. */
  private cut: { at: number; timer: NodeJS.Timeout } | null = null;

  private whenEmpty: (() => void)[] = [];
  /** Set by closeAll(): a handshake that completes after it is closed at once (reason shutdown). */
  private closingAll = false;

  /**
   * Every session each TLS_CHECK_TICK_MS, at most TLS_CHECK_SLICE of them per tick: with more
   * open, a slice a tick. Counted from the time since the last tick, not the ticks: a busy event
   * loop (a flood is handled inside socket reads) runs timers late, and each tick then covers more.
   */
  private checkTls(): void {
    const now = performance.now();
    const elapsed = Math.max(TLS_CHECK_TICK_MS, now - this.tlsCheckedAt);
    this.tlsCheckedAt = now;
    let n = Math.ceil(Math.min(this.sessions.size, (TLS_CHECK_SLICE * elapsed) / TLS_CHECK_TICK_MS));
    while (n-- > 0) {
      let next = this.tlsCursor?.next();
      if (next === undefined || next.done === true) {
        this.tlsCursor = this.sessions.values();
        next = this.tlsCursor.next();
        if (next.done === true) return;
      }
      next.value.checkTls();
    }
  }

  /**
   * Sockets the listener holds at most, handshaking or not. max_clients counts only connections
   * past the handshake (they get the "-ERR max number of clients reached" reply); this bounds a
   * flood of handshakes that never finish, with room for the over-limit replies. Past it the
   * connection is closed at accept, without a word (no TLS yet to say it in), and counted as
   * tls_handshake_failures_total{reason="socket_limit"}.
   */
  private socketCap(config: Config): number {
    return clientsPerProcess(config, this.place) * 2 + 100;
  }

  private startHandshake(raw: Timed): void {
    this.handshaking++;
    raw[kHandshaking] = true;
    // A connection that waited for its place has the rest of handshake_timeout_ms (counted from
    // accept), not all of it again: stalled ones that waited must not hold the places anew.
    const left = (raw[kAcceptedAt] ?? 0) + this.config.tls.handshake_timeout_ms - performance.now();
    if (left < this.config.tls.handshake_timeout_ms - 100) {
      raw[kDeadline] = setTimeout(() => {
        raw[kTimedOut] = true;
        dropWithoutTls(raw); // tlsClientError counts it, as a timeout
      }, Math.max(0, left));
    }
    this.server.emit('connection', raw);
  }

  /** A handshake succeeded, failed or its socket closed: the next waiting connection may start. */
  private handshakeEnded(raw: Timed): void {
    if (raw[kHandshaking] !== true) return;
    raw[kHandshaking] = false;
    clearTimeout(raw[kDeadline]);
    this.handshaking--;
    this.expireWaiting();
    while (this.handshaking < this.config.tls.max_handshakes && this.waitingHead < this.waiting.length) {
      const next = this.waiting[this.waitingHead++]!;
      if (!next.destroyed) this.startHandshake(next);
    }
    if (this.waitingHead > 1024 && this.waitingHead * 2 > this.waiting.length) {
      this.waiting = this.waiting.slice(this.waitingHead);
      this.waitingHead = 0;
    }
  }

  /** Connections that waited for a place longer than a handshake may take are closed (a timeout). */
  private expireWaiting(): void {
    const oldest = performance.now() - this.config.tls.handshake_timeout_ms;
    while (this.waitingHead < this.waiting.length && (this.waiting[this.waitingHead]![kAcceptedAt] ?? 0) <= oldest) {
      const raw = this.waiting[this.waitingHead++]!;
      this.metrics.handshakeFailures.labels('timeout').inc();
      dropWithoutTls(raw);
    }
  }

  /** A timer for the oldest waiting connection's timeout, while any waits. */
  private armExpiry(): void {
    if (this.expiry !== null || this.waitingHead >= this.waiting.length) return;
    const due = (this.waiting[this.waitingHead]![kAcceptedAt] ?? 0) + this.config.tls.handshake_timeout_ms - performance.now();
    this.expiry = setTimeout(() => {
      this.expiry = null;
      this.expireWaiting();
      this.armExpiry();
    }, Math.max(0, due) + 1);
    this.expiry.unref();
  }

  private onSecureConnection(socket: tls.TLSSocket): void {
    // Not a documented property: a TLSSocket made from a net.Socket keeps it as _parent (read on
    // Node 20 and 26). The session's flood check needs it: the flood tests fail without it.
    const raw = (socket as unknown as { _parent?: Timed })._parent;
    if (raw !== undefined) this.handshakeEnded(raw);
    const acceptedAt = raw?.[kAcceptedAt];
    if (acceptedAt !== undefined) this.metrics.handshakeDuration.observe((performance.now() - acceptedAt) / 1000);
    if (socket.isSessionReused()) this.metrics.handshakesResumed.inc();
    socket.disableRenegotiation();
    const m = this.metrics;
    const { allow } = this.config.tls;
    if (allow !== null && !allowed(allow, socket.getPeerCertificate())) {
      m.handshakeFailures.labels('not_allowed').inc();
      this.log.info({ subject: socket.getPeerCertificate().subject?.CN }, 'client certificate not in tls.allow; refused');
      refuse(socket, this.config.close);
      return;
    }
    const sni = matchSni(this.material.sni, socket.servername);
    const cfg = sni?.backend ? { ...this.config, backend: { ...this.config.backend, ...sni.backend } } : this.config;
    m.connectionsTotal.inc();
    m.connectionsActive.inc();
    const session = new Session(socket, cfg, {
      metrics: m,
      log: this.log,
      onClosed: (s) => {
        if (s.isServed) this.served--;
        this.sessions.delete(s);
        m.connectionsActive.dec();
        if (this.sessions.size === 0) {
          clearInterval(this.tlsCheck ?? undefined);
          this.tlsCheck = null;
          this.tlsCursor = null;
          if (this.cut !== null) clearTimeout(this.cut.timer);
          this.cut = null;
          for (const f of this.whenEmpty.splice(0)) f();
        }
      },
    }, raw);
    this.sessions.add(session);
    if (this.tlsCheck === null) {
      this.tlsCheckedAt = performance.now();
      this.tlsCheck = setInterval(() => this.checkTls(), TLS_CHECK_TICK_MS).unref();
    }
    if (this.closingAll) session.turnAway('shutdown');
    else if (this.served >= clientsPerProcess(this.config, this.place)) session.turnAway('max_clients');
    else {
      this.served++;
      session.start();
    }
  }
}

/** The TLS check (Session.checkTls) runs this often: on every session while at most 250 are open. */
const TLS_CHECK_TICK_MS = 100;
/**
 * Sessions looked at per TLS_CHECK_TICK_MS at most. Looking at one costs ~1-2 µs (its counters
 * alone, 0.5-0.9 µs over 1,000 sockets; 10,000 sessions at once held the event loop ~20 ms):
 * with many sessions open each is looked at less often instead (1,250: every 500 ms; 10,000:
 * every 4 s), at ~0.5 % of a core.
 */
const TLS_CHECK_SLICE = 250;

function handshakeFailureReason(err: NodeJS.ErrnoException): HandshakeFailureReason {
  const code = err.code ?? '';
  if (code === 'ERR_TLS_HANDSHAKE_TIMEOUT') return 'timeout';
  if (isPeerGone(err)) return 'reset';
  // An alert from the client about the proxy's own certificate (expired, from a CA it does not
  // trust): the client refused us. Checked first, as the names hold CERTIFICATE too.
  if (/_ALERT_(BAD_CERTIFICATE|CERTIFICATE_|UNKNOWN_CA|UNSUPPORTED_CERTIFICATE)/.test(code)) return 'server_certificate';
  if (/CERTIFICATE|PEER_DID_NOT_RETURN/.test(code)) return 'client_certificate';
  // WRONG_VERSION_NUMBER is what any non-TLS bytes (port scans, plaintext RESP, HTTP) produce:
  // garbage, not an old client. A real version mismatch is UNSUPPORTED_PROTOCOL or a
  // protocol_version alert.
  if (/UNSUPPORTED_PROTOCOL|PROTOCOL_VERSION|NO_PROTOCOLS_AVAILABLE/.test(code)) return 'version';
  if (code.startsWith('ERR_SSL_')) return 'protocol';
  return 'other';
}
