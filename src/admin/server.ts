// Admin HTTP server: GET /metrics (Prometheus text), /healthz (alive), /readyz (ready to serve).
import http from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { listenOn } from '../config/error.js';
import type { Logger } from '../observability/logger.js';

export interface AdminHandlers {
  metrics(): Promise<{ contentType: string; body: string }>;
  /** null when ready, else why not. */
  notReady(): Promise<string | null>;
}

/**
 * The admin port serves a few probes and scrapers. It holds at most this many connections and
 * closes one idle this long, so silent connections cannot take the process's file descriptors,
 * which every TLS client needs too. Past the limit a new connection is not refused (silent ones
 * holding every place would then fail every health probe): the oldest connection with no request
 * under way is closed instead.
 */
export const ADMIN_LIMITS = { maxConnections: 100, idleMs: 10_000 };

export async function startAdmin(host: string, port: number, handlers: AdminHandlers, log: Logger, limits = ADMIN_LIMITS): Promise<http.Server> {
  // /metrics requests that come while a collection runs get its result: a collection walks
  // /proc/self/fd and every handle (tens of ms with thousands of clients) on the event loop every
  // client shares, so concurrent scrapes must not mean as many collections. Nothing is kept
  // after it: a later scrape collects anew.
  let collecting: ReturnType<AdminHandlers['metrics']> | null = null;
  const metrics = (): ReturnType<AdminHandlers['metrics']> => {
    collecting ??= handlers.metrics().finally(() => (collecting = null));
    return collecting;
  };
  const server = http.createServer((req, res) => {
    const path = (req.url ?? '/').split('?')[0];
    const send = (status: number, body: string, type = 'text/plain; charset=utf-8'): void => {
      res.writeHead(status, { 'content-type': type, 'cache-control': 'no-store' });
      res.end(body);
    };
    if (req.method !== 'GET' && req.method !== 'HEAD') return send(405, 'method not allowed\n');
    if (path === '/healthz') return send(200, 'ok\n');
    if (path === '/readyz') {
      handlers.notReady().then(
        (why) => (why === null ? send(200, 'ready\n') : send(503, `not ready: ${why}\n`)),
        (err: Error) => send(503, `not ready: ${err.message}\n`),
      );
      return;
    }
    if (path === '/metrics') {
      metrics().then(
        ({ contentType, body }) => send(200, body, contentType),
        (err: Error) => {
          log.error({ err: err.message }, 'metrics collection failed');
          send(500, 'metrics collection failed\n');
        },
      );
      return;
    }
    send(404, 'not found: try /metrics, /healthz or /readyz\n');
  });
  server.on('clientError', (_err, socket) => socket.destroy());
  const open = new Set<Socket>(); // oldest first
  const busy = new WeakSet<Socket>(); // a request under way
  server.on('connection', (socket: Socket) => {
    open.add(socket);
    socket.once('close', () => open.delete(socket));
    if (open.size <= limits.maxConnections) return;
    for (const old of open) {
      if (busy.has(old) || old === socket) continue;
      open.delete(old);
      old.destroy();
      return;
    }
  });
  server.on('request', (req: http.IncomingMessage, res: http.ServerResponse) => {
    busy.add(req.socket);
    res.once('close', () => busy.delete(req.socket));
  });
  server.setTimeout(limits.idleMs); // no 'timeout' listener: an idle socket is destroyed
  server.headersTimeout = Math.min(server.headersTimeout, limits.idleMs);
  server.requestTimeout = Math.min(server.requestTimeout, limits.idleMs);
  await listenOn(server, 'admin', host, port);
  // After listen(): an accept that fails (EMFILE) is an 'error' on the server; unheard, it
  // would end the process and every TLS session with it.
  server.on('error', (err) => log.error({ err: err.message }, 'admin server error'));
  return server;
}

export function boundPort(server: http.Server): number {
  return (server.address() as AddressInfo).port;
}
