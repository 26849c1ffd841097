// Every metric the proxy exports, declared once. Labels come only from the bounded sets below.
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import { CLIENT_CLOSES_METRIC, CLOSE_REASONS } from '../proxy/close-reason.js';
import type { LimitLabel } from '../resp/replies.js';

export const PREFIX = 'resp_tls_proxy_';


export const LIMIT_LABELS: readonly LimitLabel[] = ['max_multibulk_len', 'max_bulk_len', 'max_inline_len', 'syntax'];

export const HANDSHAKE_FAILURE_REASONS = ['timeout', 'reset', 'client_certificate', 'server_certificate', 'not_allowed', 'version', 'protocol', 'socket_limit', 'other'] as const;
export type HandshakeFailureReason = (typeof HANDSHAKE_FAILURE_REASONS)[number];

export type Metrics = ReturnType<typeof createMetrics>;

/**
 * Per-chunk tallies kept as plain numbers on the hot path; prom-client reads them at scrape
 * time (each counter's collect() adds what accrued since the last scrape).
 */
export interface HotCounters {
  commands: number;
  toBackend: number;
  toClient: number;
}

export function createMetrics(version: string) {
  const registry = new Registry();
  const registers = [registry];
  const hot: HotCounters = { commands: 0, toBackend: 0, toClient: 0 };
  collectDefaultMetrics({ register: registry, prefix: PREFIX });

  const m = {
    registry,
    clientCloses: new Counter({
      name: CLIENT_CLOSES_METRIC,
      help: 'Client connections closed, by mode (graceful: close_notify written before teardown) and reason.',
      labelNames: ['mode', 'reason'] as const,
      registers,
    }),
    protocolErrors: new Counter({
      name: `${PREFIX}protocol_errors_total`,
      help: 'Requests rejected by the scanner, by the limit or rule they broke.',
      labelNames: ['limit'] as const,
      registers,
    }),
    connectionsActive: new Gauge({ name: `${PREFIX}connections_active`, help: 'Client connections open now.', registers }),
    connectionsTotal: new Counter({ name: `${PREFIX}connections_total`, help: 'Client connections accepted (TLS handshake done).', registers }),
    handshakeFailures: new Counter({
      name: `${PREFIX}tls_handshake_failures_total`,
      help: 'TLS handshakes that failed, by reason.',
      labelNames: ['reason'] as const,
      registers,
    }),
    handshakeDuration: new Histogram({
      name: `${PREFIX}tls_handshake_duration_seconds`,
      help: 'Time from TCP accept to a completed TLS handshake.',
      buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5],
      registers,
    }),
    handshakesResumed: new Counter({
      name: `${PREFIX}tls_handshakes_resumed_total`,
      help: 'Completed TLS handshakes that resumed an earlier session (a session ticket) instead of a full handshake.',
      registers,
    }),
    backendConnectDuration: new Histogram({
      name: `${PREFIX}backend_connect_duration_seconds`,
      help: 'Time to open the plaintext TCP connection to the backend.',
      buckets: [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1],
      registers,
    }),
    hot,
    commands: new Counter({
      name: `${PREFIX}commands_total`,
      help: 'Complete commands forwarded to the backend.',
      registers,
      collect() {
        this.inc(hot.commands);
        hot.commands = 0;
      },
    }),
    bytes: new Counter({
      name: `${PREFIX}bytes_total`,
      help: 'Payload bytes relayed, by direction.',
      labelNames: ['direction'] as const,
      registers,
      collect() {
        this.labels('to_backend').inc(hot.toBackend);
        this.labels('to_client').inc(hot.toClient);
        hot.toBackend = 0;
        hot.toClient = 0;
      },
    }),
    connectionDuration: new Histogram({
      name: `${PREFIX}connection_duration_seconds`,
      help: 'Lifetime of client connections, from handshake to close.',
      buckets: [0.001, 0.01, 0.1, 1, 10, 60, 300, 1800, 3600, 21600, 86400],
      registers,
    }),
    certExpiry: new Gauge({
      name: `${PREFIX}tls_cert_expiry_timestamp_seconds`,
      help: 'Expiry (notAfter, Unix seconds) of the serving certificate that expires first.',
      aggregator: 'min',
      registers,
    }),
    reloads: new Counter({
      name: `${PREFIX}reloads_total`,
      help: 'Configuration and certificate reloads, by result.',
      labelNames: ['result'] as const,
      // Every worker reloads at each SIGHUP and certificate change: one reload, counted once.
      aggregator: 'max',
      registers,
    }),
    draining: new Gauge({ name: `${PREFIX}draining`, help: '1 while shutting down (not accepting), else 0.', aggregator: 'max', registers }),
    buildInfo: new Gauge({
      name: `${PREFIX}build_info`,
      help: 'Always 1; the version label names the running build.',
      labelNames: ['version'] as const,
      aggregator: 'max',
      registers,
    }),
  };

  // Make every bounded label combination visible from the start, at zero.
  for (const reason of CLOSE_REASONS) for (const mode of ['graceful', 'abrupt']) m.clientCloses.labels(mode, reason).inc(0);
  for (const limit of LIMIT_LABELS) m.protocolErrors.labels(limit).inc(0);
  for (const reason of HANDSHAKE_FAILURE_REASONS) m.handshakeFailures.labels(reason).inc(0);
  for (const direction of ['to_backend', 'to_client']) m.bytes.labels(direction).inc(0);
  for (const result of ['success', 'error']) m.reloads.labels(result).inc(0);
  m.buildInfo.labels(version).set(1);
  m.draining.set(0);
  return m;
}

/**
 * 1 when the backend answered the last PING probe (every few seconds), else 0. Declared
 * separately because with workers the primary process, which probes, owns it.
 */
export function backendUpGauge(registers: Registry[]): Gauge {
  return new Gauge({ name: `${PREFIX}backend_up`, help: 'Whether the backend answered the last PING probe (1) or not (0).', aggregator: 'min', registers });
}
