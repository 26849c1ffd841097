// One client connection and its backend connection: relays bytes both ways with backpressure,
// and owns the one close path. Every trigger calls close(reason); it is idempotent and the
// first reason wins. Only this file calls end() or destroy() on a client or backend socket (the
// admin HTTP server and the backend PING of /readyz close their own sockets).
//
// The orderly close, whatever the reason:
//   1. stop accepting client input (it is read and discarded from now on);
//   2. let the backend answer every command already forwarded (counted reply by reply), then
//      half-close it and relay what it still sends until it closes;
//   3. write the error reply, if one applies;
//   4. end() the client: close_notify, then FIN;
//   5. keep reading and discarding the client's input until it closes, close.drain_timeout_ms
//      passes or close.drain_max_bytes are discarded; then destroy().
// Phases 2 and 4 give up after close.drain_timeout_ms without progress. A client with replies
// queued for it makes progress while it reads: the kernel's count of what it has not yet
// acknowledged changes (send-queue.ts), which Node's write completions show only seconds apart
// for a slow reader.

import type { Socket } from 'node:net';
import type { TLSSocket } from 'node:tls';
import type { Logger } from '../observability/logger.js';
import type { Metrics } from '../observability/metrics.js';
import { ByteList } from '../resp/byte-list.js';
import { ReplyCounter } from '../resp/reply-counter.js';
import { BACKEND_LOST_REPLY, MAX_CLIENTS_REPLY, backendUnavailableReply } from '../resp/replies.js';
import { RequestScanner } from '../resp/scanner.js';
import { FRESH_MS, unacknowledged } from './send-queue.js';
import { BackendSocket } from './upstream.js';
import { closeLogLevel, isPeerGone, type CloseMode, type CloseReason } from './close-reason.js';

/** The part of the configuration one session uses; a session keeps the snapshot it started with. */
export interface SessionConfig {
  backend: { host: string; port: number; connect_timeout_ms: number };
  limits: { max_multibulk_len: number; max_bulk_len: number; max_inline_len: number; idle_timeout_ms: number; idle_timeout_pubsub: boolean; tcp_keepalive_ms: number; tls_overhead_bytes: number };
  close: { drain_timeout_ms: number; drain_max_bytes: number };
}

export interface SessionDeps {
  metrics: Metrics;
  log: Logger;
  onClosed(session: Session): void;
}

type Status = 'connecting' | 'proxying' | 'closing' | 'closed';
const TRANSITIONS: Record<Status, readonly Status[]> = {
  connecting: ['proxying', 'closing'],
  proxying: ['closing'],
  closing: ['closed'],
  closed: [],
};

/** Where an orderly close stands. */
type ClosePhase = 'backend' | 'flush' | 'drain';

/**
 * Replies the proxy cannot count (after SUBSCRIBE, MONITOR or CLIENT REPLY): an orderly close
 * half-closes the backend once its replies have paused this long at a reply boundary, or after
 * close.drain_timeout_ms. Redis drops what it has not sent yet when it reads EOF, so ending at
 * once would cut off the replies still coming.
 */
const UNCOUNTED_SETTLE_MS = 200;

/**
 * A wait on a client with replies queued for it ran out with no look at the kernel in it: look
 * again this much later (at most; close.drain_timeout_ms when shorter) to tell whether it reads.
 */
const LOOK_AGAIN_MS = 1000;

/** Bytes queued for a backend that is still connecting before we stop reading the client. */
const CONNECT_QUEUE_MAX = 1024 * 1024;

/**
 * Backend replies are read into this one buffer, shared by every session of the process (a read
 * is a synchronous callback, one at a time): no allocation per read. A view of it reaches the
 * client socket only when TLS encrypts it on the spot; otherwise writeClient() copies it first.
 */
const READ_BUFFER = Buffer.allocUnsafe(64 * 1024);

let nextId = 1;

export class Session {
  readonly id: string;
  private served = false;
  private status: Status = 'connecting';
  private readonly scanner: RequestScanner;
  private readonly counter = new ReplyCounter();
  private readonly out: Buffer[] = [];
  private backend: BackendSocket | null = null;
  private backendConnected = false;
  private backendClosed = false;
  private backendEnded = false; // we half-closed it
  /** Replies counted when the client's QUIT was scanned (-1 before): did one come after it? */
  private repliesAtQuit = -1;
  /** Commands for a backend still connecting (short pieces copied together: a client's 1-byte reads). */
  private readonly queued = new ByteList();

  private reason: CloseReason | null = null;
  private finalReply: Buffer | null = null;
  private phase: ClosePhase | null = null;
  private closeNotifySent = false;
  private deadline: NodeJS.Timeout | null = null;
  private connectTimer: NodeJS.Timeout | null = null;
  private settleTimer: NodeJS.Timeout | null = null;
  /** Closing with uncounted replies: when the backend last connected, sent, drained or was resumed. */
  private backendActiveAt = 0;
  private drained = 0;
  private flushLeft = 0; // client bytes still queued when the deadline was last armed
  private arms = 0; // deadlines armed: which wait a look belongs to
  /** The kernel's unacknowledged client bytes at the last look, in the wait `arm`. */
  private look: { unacked: number; arm: number } | null = null;
  private unavailable: string | null = null; // cause, once the backend could not be reached
  private answered = 0; // commands answered by the proxy itself (backend unavailable)
  private readonly openedAt = performance.now();
  private bytesIn = 0;
  private bytesOut = 0;
  private clientError: string | null = null; // first client socket error, logged with an abrupt close
  /** The client reset its connection (onClientGone): its socket is destroyed while phase 2 goes on. */
  private clientGone = false;
  /** The client stream's own high-water mark while pauseClient() holds it at 1 (0 otherwise). */
  private clientHighWaterMark = 0;
  private tlsOutput = 0; // TLS's own output when it passed TLS_OWN_OUTPUT_MAX, logged with the close
  /** The TCP socket under the client's TLS: its bytesRead counts what came in encrypted. */
  private readonly raw: Socket | undefined;
  /** Encrypted and clear bytes in when the current overhead window began (the handshake's end at first). */
  private encryptedSeen: number;
  private clearSeen: number;
  private overheadFrom = performance.now();
  private tlsOverhead: { bytes: number; data: number } | null = null; // when it passed the limit, logged with the close

  /** `raw`: the TCP socket the listener accepted and handed to TLS, if known (checkTls). */
  constructor(
    private readonly client: TLSSocket,
    private readonly cfg: SessionConfig,
    private readonly deps: SessionDeps,
    raw?: Socket,
  ) {
    this.id = `${process.pid}-${nextId++}`;
    this.raw = raw;
    this.encryptedSeen = this.raw?.bytesRead ?? 0;
    this.clearSeen = client.bytesRead;
    this.scanner = new RequestScanner({
      maxMultibulkLen: cfg.limits.max_multibulk_len,
      maxBulkLen: cfg.limits.max_bulk_len,
      maxInlineLen: cfg.limits.max_inline_len,
    });
    // The client's FIN is one of our close triggers (onClientEnd): our side stays open to answer.
    client.allowHalfOpen = true;
    if (cfg.limits.tcp_keepalive_ms > 0) client.setKeepAlive(true, cfg.limits.tcp_keepalive_ms);
    client.on('data', (chunk: Buffer) => this.onClientData(chunk));
    client.on('end', () => this.onClientEnd());
    client.on('error', (err) => this.onClientError(err));
    client.on('close', () => this.onClientClose());
    client.on('drain', () => this.onClientDrain());
    client.on('finish', () => this.onClientFinish());
  }

  /**
   * Called by the listener every 100 ms while up to 250 sessions are open (less often beyond:
   * every 500 ms at 1,250): what TLS does for this client without our knowing, in both directions.
   *
   * Output. Replies cannot pile up (a client that does not read them pauses the backend), but
   * what TLS writes of its own can: a TLS 1.3 client that sends KeyUpdate requests and reads
   * nothing has OpenSSL queue an answer to each, which never reaches JavaScript and which Node
   * keeps without a limit. Past TLS_OWN_OUTPUT_MAX the connection is torn down at once: a
   * close_notify could not get through, and waiting lets the queue grow on.
   *
   * Input. Each TLS record costs a decryption, and each record with data a call into JavaScript,
   * however little it carries; records with none (KeyUpdate, padding) never reach JavaScript at
   * all. A client that sends records carrying (next to) no data makes the process work for
   * nothing, and its reads hold up every other client's (Node reads a socket up to 32 times in a
   * row). What came in encrypted beyond the data it carried is TLS's overhead, ~22 to 29 bytes a
   * record. Past limits.tls_overhead_bytes (128 KiB by default: some 5,000 records with no data,
   * far more than a client sends outside a flood; the handshake is not counted) plus
   * TLS_OVERHEAD_PER_BYTE per data byte within a window of TLS_OVERHEAD_WINDOW_MS (256 KiB/s
   * sustained, by default) the connection is torn down at once: reading on would go on paying
   * for the flood. The listener looks more often than the window is long, so a flood is found
   * within ~100 ms of passing the limit while a few hundred sessions are open.
   */
  checkTls(): void {
    if (this.status === 'closed') return;
    const own = tlsOwnOutput(this.client);
    if (own > TLS_OWN_OUTPUT_MAX) {
      this.tlsOutput = own; // in the close record
      return this.closeNow('output_buffer_limit');
    }
    const free = this.cfg.limits.tls_overhead_bytes;
    if (this.raw === undefined || free === 0) return;
    const encrypted = this.raw.bytesRead;
    const data = this.client.bytesRead - this.clearSeen;
    const overhead = encrypted - this.encryptedSeen - data;
    const now = performance.now();
    // A look that comes late (a busy event loop) sees a longer window, with room to match.
    const windows = Math.max(1, (now - this.overheadFrom) / TLS_OVERHEAD_WINDOW_MS);
    if (overhead > free * windows + TLS_OVERHEAD_PER_BYTE * data) {
      this.tlsOverhead = { bytes: overhead, data }; // in the close record
      return this.closeNow('tls_flood');
    }
    if (now - this.overheadFrom >= TLS_OVERHEAD_WINDOW_MS) {
      this.overheadFrom = now;
      this.encryptedSeen = encrypted;
      this.clearSeen += data;
    }
  }

  /**
   * The shutdown's time for closing is up: tear the connection down now, whatever its close was
   * waiting for (counted abrupt unless its close_notify was already out).
   */
  cut(): void {
    this.closeNow('shutdown');
  }

  /** Served (start()), not turned away. */
  get isServed(): boolean {
    return this.served;
  }

  /** Start proxying: open the backend connection. */
  start(): void {
    this.served = true;
    if (this.cfg.limits.idle_timeout_ms > 0) {
      // on(), not setTimeout(ms, cb): that registers cb once, so a re-armed timer would fire unheard.
      this.client.on('timeout', () => this.onIdle());
      this.client.setTimeout(this.cfg.limits.idle_timeout_ms);
    }
    const started = performance.now();
    const backend = new BackendSocket({ onread: { buffer: READ_BUFFER, callback: (n, buf) => this.onBackendData(buf.subarray(0, n)) } });
    backend.setNoDelay(true);
    if (this.cfg.limits.tcp_keepalive_ms > 0) backend.setKeepAlive(true, this.cfg.limits.tcp_keepalive_ms);
    backend.connect({ host: this.cfg.backend.host, port: this.cfg.backend.port });
    this.backend = backend;
    this.connectTimer = setTimeout(() => this.giveUpConnect(`connect timeout after ${this.cfg.backend.connect_timeout_ms} ms`), this.cfg.backend.connect_timeout_ms);
    backend.on('connect', () => {
      clearTimeout(this.connectTimer!);
      this.deps.metrics.backendConnectDuration.observe((performance.now() - started) / 1000);
      this.onBackendConnect();
    });
    backend.on('drain', () => {
      if (this.status === 'proxying') this.resumeClient();
      this.backendActive(); // closing: the last commands are out now
    });
    backend.on('error', (err: NodeJS.ErrnoException) => this.onBackendError(err));
    // The backend closed while we were still writing: stop reading the client and relay what
    // the backend still sends until its EOF or reset ends the connection ('close' below).
    backend.on('writeFailed', () => {
      if (this.status === 'proxying') this.pauseClient();
    });
    // The backend's EOF. Redis closes both ways at once, so 'close' follows; something that
    // half-closes and then reads nothing (another server, a middlebox) would keep our queued
    // writes, and with them the 'close' that ends phase 2, pending for good: it will answer none
    // of them, so drop them and close.
    backend.on('end', () => {
      if (backend.writableLength > 0) backend.destroy();
    });
    backend.on('close', () => this.onBackendClose());
  }

  /**
   * Turn the connection away instead of start(): the proxy is at limits.max_clients (the client
   * gets Redis's error), or shutting down (a handshake that finished after the final close).
   */
  turnAway(reason: 'max_clients' | 'shutdown'): void {
    // Not synchronously: 'secureConnection' is emitted from inside OpenSSL's handshake, and under
    // TLS 1.3 an end() made there loses its close_notify (the client sees a ragged EOF).
    this.pauseClient(); // read nothing until close() turns input into discarding
    setImmediate(() => this.close(reason, reason === 'max_clients' ? MAX_CLIENTS_REPLY : null));
  }

  // ---- the one close path -------------------------------------------------------------------

  /**
   * Tear the connection down now, without an orderly close (the client reset us, or keeping the
   * connection costs more than it may): for `reason` unless it is closing already (its reason stays).
   */
  private closeNow(reason: CloseReason): void {
    if (this.status === 'closed') return;
    if (this.status !== 'closing') {
      this.reason = reason;
      this.setStatus('closing');
    }
    this.finalize();
  }

  /** End this connection in order. Idempotent: the first reason wins. */
  close(reason: CloseReason, reply: Buffer | null = null): void {
    if (this.status === 'closing' || this.status === 'closed') return;
    // The backend closing once the client's QUIT is answered is the client leaving. (What follows
    // still goes by `reason`: the backend is gone either way.)
    this.reason = reason === 'backend_closed' && this.quitAnswered() ? 'client_closed' : reason;
    this.finalReply = reply;
    this.setStatus('closing');
    this.client.setTimeout(0);
    this.resumeClient(); // from now on client input is read and discarded
    if (reason === 'max_clients') return this.endClient();
    if (reason === 'backend_closed' || reason === 'backend_error') {
      this.replyToLost(BACKEND_LOST_REPLY);
      return this.endClient();
    }
    this.phase = 'backend';
    this.armDeadline();
    this.backendActive();
  }

  private setStatus(next: Status): void {
    if (!TRANSITIONS[this.status].includes(next)) throw new Error(`session ${this.id}: ${this.status} -> ${next} is not allowed`);
    this.status = next;
  }

  /** Phase 2: wait for the replies owed, half-close the backend, wait for it to close. */
  private finishBackend(): void {
    if (this.phase !== 'backend' || this.status === 'closed') return;
    if (this.backendClosed || this.backend === null) return this.endClient();
    if (!this.backendConnected || this.backendEnded) return; // onBackendConnect or onBackendError continues
    // Counted: not while a reply, or a RESP3 push, is under way (Redis drops the rest on EOF).
    if (this.countable() ? this.owed() > 0 || this.counter.midReply : !this.repliesSettled()) return;
    this.backendEnded = true;
    this.backend.end();
  }

  /**
   * With uncounted replies: none under way, none held back (commands still being written, a
   * slow client), and nothing from the backend for UNCOUNTED_SETTLE_MS. What ends a wait looks
   * again (backend data, either side's 'drain', the connect) and restarts the quiet period; a
   * timer sees the quiet period out. The deadline bounds it all.
   */
  private repliesSettled(): boolean {
    const backend = this.backend!;
    if ((!this.counter.broken && this.counter.midReply) || this.client.writableNeedDrain || backend.writableNeedDrain) return false;
    // Commands still being written, with no 'drain' to come (no write returned false): the
    // quiet period starts over until they are out.
    if (backend.writableLength > 0) this.backendActiveAt = performance.now();
    const quietMs = performance.now() - this.backendActiveAt;
    if (quietMs >= UNCOUNTED_SETTLE_MS) return true;
    this.settleTimer ??= setTimeout(() => {
      // After the next poll: when the loop was held up, due timers run before reads of what has
      // already arrived, which must count as activity first.
      setImmediate(() => {
        this.settleTimer = null;
        this.finishBackend();
      });
    }, UNCOUNTED_SETTLE_MS - quietMs);
    return false;
  }

  /** Closing with uncounted replies: something moved, so the quiet period starts again. */
  private backendActive(): void {
    if (this.phase !== 'backend') return;
    this.backendActiveAt = performance.now();
    this.finishBackend();
  }

  /** Phase 4: the error reply, close_notify and FIN. */
  private endClient(): void {
    if (this.client.destroyed) return this.finalize(); // a client gone: no one to send them to
    this.phase = 'flush';
    if (this.backend !== null && !this.backendClosed) this.backend.destroy();
    if (this.finalReply !== null && this.madeUpReplyFits()) this.writeClient(this.finalReply);
    this.client.end();
    this.armDeadline(); // with what is queued now: see onDeadline
  }

  /** end() has flushed: close_notify and FIN are out. Phase 5: drain. */
  private onClientFinish(): void {
    if (this.status !== 'closing') return;
    this.closeNotifySent = true;
    this.phase = 'drain';
    this.armDeadline();
  }

  /** No progress for drain_timeout_ms (phases 2 and 4), or the drain time is up (phase 5). */
  private onDeadline(): void {
    this.deadline = null;
    // Phase 4: after end() no 'drain' comes to tell that the client reads; its queue tells.
    if (this.phase === 'flush' && this.client.writableLength < this.flushLeft) return this.armDeadline();
    // Replies queued for the client: while it reads, that is progress too.
    if (this.progressExtends() && this.client.writableLength > 0) return this.lookAtClient();
    this.giveUp();
  }

  /**
   * Whether the client reads, from the kernel: what it has not acknowledged changed since the
   * last look in this wait (a new wait), or did not (give up). With no look in this wait yet,
   * look again shortly; where the kernel cannot tell, give up as before.
   */
  private lookAtClient(): void {
    const arm = this.arms;
    const phase = this.phase;
    // Looks come close.drain_timeout_ms apart (or LOOK_AGAIN_MS): a table read for another
    // session may serve this one only if it is younger than half that, so that two looks never
    // see the same read (which would take a client that reads for one that does not).
    void unacknowledged(this.client, Math.min(FRESH_MS, this.cfg.close.drain_timeout_ms / 2)).then((unacked) => {
      if (this.status === 'closed' || this.phase !== phase || this.arms !== arm || this.deadline !== null) return; // moved on meanwhile
      if (unacked === null) return this.giveUp();
      const before = this.look?.arm === arm ? this.look.unacked : null;
      if (before === null) {
        this.look = { unacked, arm };
        this.deadline = setTimeout(() => this.onDeadline(), Math.min(LOOK_AGAIN_MS, this.cfg.close.drain_timeout_ms));
        return;
      }
      if (unacked === before) {
        this.deps.log.debug({ conn: this.id, phase, unacked }, 'closing: the client does not read');
        return this.giveUp();
      }
      this.deps.log.debug({ conn: this.id, phase, unacked, before }, 'closing: the client reads; waiting on');
      this.armDeadline(); // it reads: a new wait, which this look begins
      this.look = { unacked, arm: this.arms };
    });
  }

  /** A wait ran out: phase 2 moves on without the backend, 4 and 5 end. */
  private giveUp(): void {
    if (this.phase === 'backend') {
      if (this.backend === null || this.backendClosed) return this.endClient();
      // Still connecting: end() now would make the queued commands a write after end. Give up on
      // the backend instead: the queued commands get the backend-unavailable error.
      if (!this.backendConnected) return this.giveUpConnect(`not connected within close.drain_timeout_ms (${this.cfg.close.drain_timeout_ms} ms)`);
      if (!this.backendEnded) {
        this.backendEnded = true;
        this.backend.end();
        this.armDeadline();
      } else {
        this.backend.destroy(); // 'close' moves on to endClient()
      }
      return;
    }
    this.finalize();
  }

  /** Progress in phases 2 and 4 restarts their deadline; the drain phase has a fixed one. */
  private armDeadline(): void {
    if (this.deadline !== null) clearTimeout(this.deadline);
    this.arms++;
    this.flushLeft = this.client.writableLength;
    this.deadline = setTimeout(() => this.onDeadline(), this.cfg.close.drain_timeout_ms);
  }

  /**
   * Progress (a reply coming in, the client reading) restarts the wait; phase 4 also looks at
   * its queue when the deadline comes (onDeadline).
   */
  private progress(): void {
    if (this.progressExtends()) this.armDeadline();
  }

  /**
   * Whether progress starts a new wait: in phases 2 and 4, but not in phase 2 with uncounted
   * replies (a busy channel never ends: only the first deadline counts), nor in the drain.
   */
  private progressExtends(): boolean {
    return this.phase === 'flush' || (this.phase === 'backend' && this.countable());
  }

  /** The end of every close: destroys what is still open and records the close. Idempotent. */
  private finalize(): void {
    if (this.status === 'closed') return;
    if (this.status !== 'closing') {
      // The socket closed under us without a trigger (destroyed elsewhere).
      this.reason = 'client_reset';
      this.setStatus('closing');
    }
    this.setStatus('closed');
    if (this.deadline !== null) clearTimeout(this.deadline);
    if (this.settleTimer !== null) clearTimeout(this.settleTimer);
    if (this.connectTimer !== null) clearTimeout(this.connectTimer);
    this.backend?.destroy();
    if (!this.client.destroyed) this.client.destroy();
    const reason = this.reason!;
    const mode: CloseMode = this.closeNotifySent ? 'graceful' : 'abrupt';
    const ageS = (performance.now() - this.openedAt) / 1000;
    const m = this.deps.metrics;
    m.clientCloses.labels(mode, reason).inc();
    m.connectionDuration.observe(ageS);
    const violation = this.scanner.error;
    this.deps.log[closeLogLevel(reason, mode)](
      {
        conn: this.id,
        reason,
        mode,
        age_ms: Math.round(ageS * 1000),
        bytes_in: this.bytesIn,
        bytes_out: this.bytesOut,
        commands: this.scanner.commands,
        // Also when another reason came first (the backend unreachable): the error was still sent and counted.
        ...(violation !== null
          ? { violation: violation.code, limit: violation.limit, ...(this.scanner.errorSample !== '' ? { sample: this.scanner.errorSample } : {}) }
          : {}),
        ...(this.unavailable !== null ? { cause: this.unavailable } : {}),
        ...(mode === 'abrupt' && this.clientError !== null ? { client_error: this.clientError } : {}),
        ...(this.tlsOutput > 0 ? { tls_output: this.tlsOutput } : {}),
        ...(this.tlsOverhead !== null ? { tls_overhead: this.tlsOverhead.bytes, tls_data: this.tlsOverhead.data } : {}),
      },
      `closing because ${reason.replace(/_/g, ' ')}`,
    );
    this.deps.onClosed(this);
  }

  // ---- client side --------------------------------------------------------------------------

  private onClientData(chunk: Buffer): void {
    this.bytesIn += chunk.length;
    if (this.status === 'closing' || this.status === 'closed') {
      if (this.unavailable !== null && this.phase === 'backend') return this.scanWhileUnavailable(chunk);
      this.drained += chunk.length;
      if (this.drained > this.cfg.close.drain_max_bytes && this.phase === 'drain') this.finalize();
      return;
    }
    const out = this.out;
    const before = this.scanner.commands;
    this.scanner.feed(chunk, out);
    this.counter.watchFor = this.scanner.hello3At; // its reply says whether the connection is RESP3
    if (this.scanner.resetsPending.length > 0) this.counter.onReset = this.onResetReply;
    if (this.scanner.quit && this.repliesAtQuit < 0) this.repliesAtQuit = this.counter.replies;
    this.deps.metrics.hot.commands += this.scanner.commands - before;
    if (out.length > 0) {
      this.toBackend(out);
      out.length = 0;
    }
    const v = this.scanner.error;
    if (v !== null) {
      this.deps.metrics.protocolErrors.labels(v.limit).inc();
      this.close('protocol_error', v.reply);
    }
  }

  private onClientEnd(): void {
    if (this.phase === 'drain') return this.finalize(); // both sides are done
    // Before our FIN: a connection the kernel no longer has was reset (after the client's FIN,
    // when our replies reached it; or with an error Node dropped).
    if (this.status !== 'closed' && connectionGone(this.client)) {
      this.clientError ??= 'ENOTCONN';
      return this.onClientGone();
    }
    if (this.status === 'connecting' || this.status === 'proxying') return this.close('client_closed');
    if (this.phase === 'backend' && this.unavailable !== null) this.endClient(); // no command will come
  }

  private onClientError(err: NodeJS.ErrnoException): void {
    if (this.status === 'closed') return;
    this.clientError ??= err.code ?? err.message;
    if (isPeerGone(err)) return this.onClientGone();
    // After end() errors are expected noise; before it, the stream is broken (a TLS error).
    if (this.status !== 'closing') this.deps.log.warn({ conn: this.id, err: err.message, code: err.code }, 'client socket error');
    this.closeNow('client_reset');
  }

  /**
   * The client went away without reading (a reset, reported or found through the kernel): there
   * is no one left to answer, nor input to drain, and writes to it may never complete. What it
   * sent is still forwarded and waited for (phase 2), as for a client that leaves with a FIN;
   * then the close ends without phase 4, with nothing written to it. Already closing: past phase
   * 2, or waiting in it for a first command to answer with the backend-unavailable error (none
   * will come), the close is over.
   */
  private onClientGone(): void {
    this.clientGone = true;
    this.client.destroy(); // nothing more is written to it (its 'close' waits for phase 2: onClientClose)
    if (this.backend !== null && !this.backendClosed) this.backend.resume(); // paused for the client, maybe
    if (this.status === 'closing' && (this.phase !== 'backend' || this.unavailable !== null)) return this.finalize();
    this.close('client_reset'); // when already closing, phase 2 goes on
  }

  /** The client's socket closed: the end, unless phase 2 still forwards what a client gone sent. */
  private onClientClose(): void {
    if (this.clientGone && this.status === 'closing' && this.phase === 'backend') return;
    this.finalize();
  }

  private onClientDrain(): void {
    this.progress(); // a slow client read what it had: the backend's replies can come on
    if (this.backend !== null && !this.backendClosed) this.backend.resume();
    this.backendActive(); // what it held back comes now
  }

  private onIdle(): void {
    if (this.status === 'closing' || this.status === 'closed') return;
    // Uncounted replies (CLIENT REPLY, SUBSCRIBE…): a BLPOP may be waiting; pub/sub clients only
    // time out when idle_timeout_pubsub says so.
    const waiting = this.countable() ? this.owed() > 0 : !(this.scanner.subscribeSeen && this.cfg.limits.idle_timeout_pubsub);
    // Nor is a client the proxy holds back: commands the backend has not read yet (the client
    // may be paused in the middle of a large one, which is not counted until it ends).
    const held = this.backend !== null && this.backend.writableLength > 0;
    if (this.status === 'connecting' || waiting || held) {
      this.client.setTimeout(this.cfg.limits.idle_timeout_ms); // busy, or exempt: look again later
      return;
    }
    this.close('idle_timeout');
  }

  /**
   * Stop reading the client. Readable.pause() alone stops only the 'data' events: the stream goes
   * on reading ahead until it buffers its high-water mark in bytes, one Buffer per TLS record, so
   * a client sending 2-byte records (under the tls_flood limit) made a paused connection hold
   * 8,000 of them on Node 20 and 33,000 on Node 26 (several MB of RSS). While paused, the mark is
   * 1 byte: Node stops the handle's reads at the next record it passes on, and keeps at most the
   * records of the one read under way; what is unread stays in the kernel.
   */
  private pauseClient(): void {
    this.client.pause();
    const state = readableState(this.client);
    if (state !== null && state.highWaterMark !== 1) {
      this.clientHighWaterMark = state.highWaterMark;
      state.highWaterMark = 1;
    }
  }

  /** Read the client again, with its own high-water mark back. */
  private resumeClient(): void {
    const state = readableState(this.client);
    if (state !== null && this.clientHighWaterMark !== 0) {
      state.highWaterMark = this.clientHighWaterMark;
      this.clientHighWaterMark = 0;
    }
    this.client.resume();
  }

  private writeClient(data: Buffer): void {
    if (this.client.destroyed) return;
    this.bytesOut += data.length;
    this.deps.metrics.hot.toClient += data.length;
    if (data.buffer === READ_BUFFER.buffer && (this.client.writableLength > 0 || this.client.writableCorked > 0)) {
      // Queued behind other writes, the view would be read after the next backend read reuses
      // READ_BUFFER: copy it. With nothing queued, write() reaches TLSWrap::DoWrite at once, and
      // that encrypts the bytes (or copies them, if OpenSSL cannot take them yet) before it returns.
      const copy = Buffer.allocUnsafe(data.length);
      data.copy(copy);
      data = copy;
    }
    if (!this.client.write(data)) this.backend?.pause();
  }

  // ---- backend side -------------------------------------------------------------------------

  private toBackend(out: Buffer[]): void {
    let bytes = 0;
    for (const b of out) bytes += b.length;
    if (!this.backendConnected) {
      for (const b of out) this.queued.push(b);
      if (this.queued.bytes > CONNECT_QUEUE_MAX) this.pauseClient();
      return;
    }
    this.deps.metrics.hot.toBackend += bytes;
    const backend = this.backend!;
    // Once closing, client input is read and discarded (the client must be able to write until
    // it reads our reply): a full backend must not pause it then, and 'drain' would not resume it.
    const mayPause = this.status !== 'closing' && this.status !== 'closed';
    if (out.length === 1) {
      if (!backend.write(out[0]!) && mayPause) this.pauseClient();
      return;
    }
    backend.cork();
    for (const b of out) backend.write(b);
    backend.uncork();
    if (backend.writableNeedDrain && mayPause) this.pauseClient();
  }

  private onBackendConnect(): void {
    this.backendConnected = true;
    if (this.status === 'connecting') this.setStatus('proxying');
    if (this.queued.bytes > 0) {
      this.toBackend(this.queued.take());
      if (this.status === 'proxying' && !this.backend!.writableNeedDrain) this.resumeClient();
    }
    this.backendActive(); // closing already: the queued commands went out just now
  }

  private onBackendData(chunk: Buffer): void {
    const repliesBefore = this.counter.replies;
    // Fed even when the count means nothing (after SUBSCRIBE…): it still tells where replies end.
    this.counter.feed(chunk);
    if (this.counter.watched !== 0) {
      this.scanner.helloAnswered(this.counter.watchFor, this.counter.watched === 45 /* - */);
      this.counter.watched = 0;
    }
    this.writeClient(chunk);
    if (this.phase === 'backend') {
      // Progress is a reply coming in, not a RESP3 push (client tracking): those may never stop.
      if (this.counter.replies > repliesBefore || (this.counter.midReply && !this.counter.inPush)) this.progress();
      this.backendActive();
    }
  }

  private onBackendError(err: NodeJS.ErrnoException): void {
    if (!this.backendConnected) return this.onBackendUnreachable(err);
    // A reset after the backend closed on us (it had unread input) is still the backend closing.
    if (this.status === 'closing') return;
    if (isPeerGone(err)) this.close('backend_closed');
    else {
      this.deps.log.warn({ conn: this.id, err: err.message, code: err.code }, 'backend socket error');
      this.close('backend_error');
    }
  }

  private onBackendClose(): void {
    this.backendClosed = true;
    if (this.status === 'closed') return; // finalize() destroyed it
    if (this.status === 'connecting' || this.status === 'proxying') {
      if (this.backendConnected) this.close('backend_closed');
      return;
    }
    if (this.phase === 'backend' && this.unavailable === null) {
      this.replyToLost(BACKEND_LOST_REPLY); // it went away before answering everything
      this.endClient();
    }
  }

  /** The connect takes too long: its 'error' leads to onBackendUnreachable(). */
  private giveUpConnect(why: string): void {
    this.backend!.destroy(Object.assign(new Error(why), { code: 'ETIMEDOUT' }));
  }

  /** Connect failed or timed out: answer each complete command with the cause, then close. */
  private onBackendUnreachable(err: NodeJS.ErrnoException): void {
    clearTimeout(this.connectTimer!);
    this.backendClosed = true;
    this.unavailable = err.code ?? err.message;
    this.deps.log.warn({ conn: this.id, backend: `${this.cfg.backend.host}:${this.cfg.backend.port}`, err: err.message }, 'backend unavailable');
    if (this.status === 'connecting') {
      this.reason = 'backend_unavailable';
      this.setStatus('closing');
      this.client.setTimeout(0);
      this.resumeClient();
      this.phase = 'backend';
      this.armDeadline(); // wait this long for a first command to answer
    } else if (this.reason === 'client_closed' && this.scanner.commands > 0) {
      // The client finished sending before the connect failed; what it sent gets the error, so
      // the backend is what ended it (counted, and logged at warn, as such).
      this.reason = 'backend_unavailable';
    }
    this.queued.clear();
    this.answerUnavailable();
  }

  /** While waiting for a first command to tell the backend is unavailable, keep scanning. */
  private scanWhileUnavailable(chunk: Buffer): void {
    this.scanner.feed(chunk, this.out);
    this.out.length = 0;
    const v = this.scanner.error;
    if (v !== null && this.finalReply === null) {
      this.deps.metrics.protocolErrors.labels(v.limit).inc();
      this.finalReply = v.reply;
    }
    this.answerUnavailable();
  }

  private answerUnavailable(): void {
    const n = this.scanner.commands - this.answered;
    if (n > 0) {
      this.writeClient(repeat(backendUnavailableReply(`${this.cfg.backend.host}:${this.cfg.backend.port}: ${this.unavailable}`), n));
      this.answered += n;
    }
    // Wait for a first command, to tell the client why, only when the session closes because of
    // this: one already closing (the client ended, shutdown) has nothing more to wait for.
    if (this.answered > 0 || this.finalReply !== null || this.reason !== 'backend_unavailable') this.endClient();
  }

  /**
   * The backend went away owing replies: fail exactly the commands it did not answer. Not when it
   * stopped in the middle of a reply: the client would read our error text as the rest of that
   * reply (a value ending in "-ERR backend conn…"); it sees the reply cut short by the close instead.
   * Nor when we ended it after a wait ran out (gaveUpOnReplies).
   */
  private replyToLost(reply: Buffer): void {
    const owed = this.owed();
    if (owed > 0 && this.countable() && this.madeUpReplyFits()) this.writeClient(repeat(reply, owed));
  }

  /**
   * Whether a reply the proxy makes up (for lost commands, the final error) is read where it
   * belongs: not as the rest of a reply the backend cut off, nor as the reply to a command we
   * stopped waiting for.
   */
  private madeUpReplyFits(): boolean {
    return !this.replyCutOff() && !this.gaveUpOnReplies();
  }

  /**
   * We half-closed the backend with commands unanswered: a wait ran out (a BLPOP 0, a backend that
   * stopped answering, a client that does not read). Whether the backend failed we cannot tell,
   * and the commands may still run, so nothing is made up for them: the close tells the client.
   */
  private gaveUpOnReplies(): boolean {
    return this.backendEnded && this.countable() && this.owed() > 0;
  }

  /** The backend's reply stream stopped in the middle of a reply (as far as counting tells). */
  private replyCutOff(): boolean {
    return !this.counter.broken && this.counter.midReply;
  }

  /** Commands forwarded that the backend has not answered yet. */
  private owed(): number {
    return this.scanner.commands - this.counter.replies;
  }

  /**
   * The client sent QUIT and Redis answered it: nothing is owed (QUIT is the last command
   * forwarded) or, with replies uncounted, the last reply was a status (`+OK`) that came after
   * the QUIT was sent, not a RESP3 push or a map: a subscriber blocked in BLPOP leaves the QUIT
   * unread, and a backend that dies then did fail. (A status reply to a command pipelined just
   * before the QUIT can still pass for its +OK.)
   */
  private quitAnswered(): boolean {
    if (this.repliesAtQuit < 0) return false;
    if (this.countable()) return this.owed() === 0;
    return this.counter.replies > this.repliesAtQuit && this.counter.last === 43 /* + */;
  }

  /**
   * The backend answered a RESET: with replies uncounted, counting resumes from it unless a later
   * command stopped it again. Called by the counter as it counts the +RESET.
   */
  private readonly onResetReply = (): number => {
    const at = this.scanner.resetAnswered(this.counter.replies);
    if (this.scanner.resetsPending.length === 0) this.counter.onReset = null;
    if (at >= 0) this.progress(); // a reply came, and the count now says what is owed
    return at;
  };

  /** Reply counting holds: no subscribe/monitor mode or CLIENT REPLY, and the reply stream parsed. */
  private countable(): boolean {
    return !this.scanner.repliesUncounted && !this.counter.broken;
  }
}

/**
 * The client stream's Readable state. Not a documented API, but its highWaterMark is what
 * Readable and Node's stream reads check (readableHighWaterMark reads it); the same on Node 20 and 26.
 */
function readableState(client: TLSSocket): { highWaterMark: number } | null {
  const state = (client as unknown as { _readableState?: { highWaterMark?: unknown } })._readableState;
  return state !== undefined && typeof state.highWaterMark === 'number' ? (state as { highWaterMark: number }) : null;
}

/**
 * Replies the proxy writes for the backend (lost, unavailable) in one go: at most this many bytes.
 * A client may have pipelined millions of commands that will never be answered; one error per
 * command past this bound would cost memory the client could make us allocate at will. The
 * commands past it get no reply: the close that follows tells the client they failed.
 */
export const MADE_UP_REPLIES_MAX_BYTES = 1024 * 1024;

function repeat(reply: Buffer, times: number): Buffer {
  const n = Math.min(times, Math.max(1, Math.floor(MADE_UP_REPLIES_MAX_BYTES / reply.length)));
  return n === 1 ? reply : Buffer.alloc(reply.length * n, reply);
}

/**
 * What a client's TLS layer may hold of its own output (beyond our writes) for a client that does
 * not read. A connection holds a few hundred bytes of it at most (session tickets, close_notify,
 * the answer to an occasional KeyUpdate); a KeyUpdate answer is a 27-byte record, so this is
 * some 2,400 of them left unread.
 */
export const TLS_OWN_OUTPUT_MAX = 64 * 1024;

/** The window TLS overhead is counted in: a window starts at the first look this long after the last began. */
export const TLS_OVERHEAD_WINDOW_MS = 500;

/**
 * TLS overhead allowed per data byte: a record costs 22 bytes (TLS 1.3) to 29 (TLS 1.2 AES-GCM),
 * so a stream of records averaging under 1.4 (TLS 1.3) to 1.8 bytes (TLS 1.2) of data fails it
 * once its overhead passes limits.tls_overhead_bytes. A client that writes each RESP
 * token as a record of its own ("$3\r\n", "SET", "\r\n": ~2.7 bytes a record) stays under it.
 */
export const TLS_OVERHEAD_PER_BYTE = 16;

/**
 * What TLS holds for the socket beyond our own writes: its own messages. Node's TLS handle reports
 * all that OpenSSL's output holds as writeQueueSize (not a documented API: read on Node 20 and 26,
 * and the KeyUpdate test fails if it ever reads 0); a write of ours stays in writableLength until
 * the handle has written it all, so the difference is TLS's own (and the records' headers, tags
 * and padding: measured for a 1 MiB write, the largest we make, 1.4 KiB under TLS 1.3 and up to
 * 5.6 KiB under TLS 1.2 with a CBC suite).
 */
function tlsOwnOutput(socket: TLSSocket): number {
  const queued = (socket as unknown as { _handle?: { writeQueueSize?: number } | null })._handle?.writeQueueSize ?? 0;
  return queued - socket.writableLength;
}

/**
 * Whether the kernel has closed the client's TCP connection under us: getpeername fails
 * (ENOTCONN) once a reset has closed it, while after the client's FIN alone (CLOSE_WAIT) it still
 * answers. (After both sides' FINs it fails too: asked only before ours is out.) A reset can
 * come before the end of the input is read: a client closes, and resets when our replies reach
 * it. And Node can drop its error: a reset that comes while TLS writes the TLS 1.3 session
 * tickets (a write of its own) is reported to no one, the reads that follow see only the end of
 * the input, and the session's writes never complete. Asked of the TLS handle, which passes it
 * to the TCP handle (not a documented API: read on Node 20 and 26, and the reset test fails if
 * it ever stops answering); false when it cannot be told.
 */
function connectionGone(socket: TLSSocket): boolean {
  const handle = (socket as unknown as { _handle?: { getpeername?: (out: object) => number | undefined } | null })._handle;
  const err = typeof handle?.getpeername === 'function' ? handle.getpeername({}) : undefined;
  return typeof err === 'number' && err < 0;
}

/**
 * A connection without TLS to close in: one whose handshake failed (Node has destroyed the
 * socket itself for OpenSSL errors and refused client certificates, but not on a handshake
 * timeout: there this call is what closes the connection), or one past the listener's socket
 * cap, closed before any TLS.
 */
export function dropWithoutTls(socket: Socket): void {
  socket.destroy();
}

/**
 * Turn away a client that completed the handshake but may not be served (tls.allow): no
 * reply, close_notify and FIN, then its input read and discarded as in a session's drain (phase
 * 5), until close.drain_timeout_ms passes or close.drain_max_bytes are discarded; then destroy.
 */
export function refuse(socket: TLSSocket, close: SessionConfig['close']): void {
  let drained = 0;
  socket.on('error', () => socket.destroy());
  socket.on('data', (chunk: Buffer) => {
    drained += chunk.length;
    if (drained > close.drain_max_bytes) socket.destroy();
  });
  socket.resume(); // a 'data' listener does not resume a socket paused explicitly
  setImmediate(() => socket.end()); // not inside the handshake: see Session.turnAway
  const timer = setTimeout(() => socket.destroy(), close.drain_timeout_ms);
  socket.once('close', () => clearTimeout(timer));
}
