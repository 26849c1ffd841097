// Why a client connection ended: the `reason` label, and how loudly each one is logged.

export const CLOSE_REASONS = [
  'client_closed',
  'client_reset',
  'protocol_error',
  'backend_closed',
  'backend_error',
  'backend_unavailable',
  'idle_timeout',
  'max_clients',
  'shutdown',
  'output_buffer_limit',
  'tls_flood',
] as const;
export type CloseReason = (typeof CLOSE_REASONS)[number];

/** graceful: our close_notify was written out before the socket was torn down; abrupt: it was not. */
export type CloseMode = 'graceful' | 'abrupt';

/**
 * Log level of the one record written per closed connection: warn for what an operator should
 * see at `log.level: warn`, an abrupt close or a backend that failed, crashed or closed on its
 * own (killed, restarted, CLIENT KILL, its idle timeout); info for the routine ones (a backend
 * closing after the client's QUIT is `client_closed`).
 */
export function closeLogLevel(reason: CloseReason, mode: CloseMode): 'info' | 'warn' {
  if (mode === 'abrupt') return 'warn';
  return reason === 'backend_closed' || reason === 'backend_error' || reason === 'backend_unavailable' ? 'warn' : 'info';
}

/** Socket errors that mean the peer went away, as opposed to a fault on our side. */
export function isPeerGone(err: NodeJS.ErrnoException): boolean {
  return err.code === 'ECONNRESET' || err.code === 'EPIPE' || err.code === 'ECONNABORTED';
}

/** The counter of client closes by mode and reason (defined in observability/metrics.ts, read by `stats`). */
export const CLIENT_CLOSES_METRIC = 'resp_tls_proxy_client_closes_total';
