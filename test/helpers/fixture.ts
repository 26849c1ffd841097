// One real redis-server and one proxy in front of it, per test file (or per describe block):
// started in before(), stopped in after() even when a test or the start itself failed.
import { after, before } from 'node:test';
import { sharedCerts, type TestCerts } from './certs.js';
import { startProxy, type LogRecord, type Proxy } from './proxy.js';
import { startRedis, type RedisServer, type StartRedisOptions } from './redis.js';

export interface Stack {
  readonly redis: RedisServer;
  readonly proxy: Proxy;
  readonly certs: TestCerts;
}

export interface StackOptions {
  redis?: StartRedisOptions;
  /** Proxy config; `backend.host/port` point at the redis-server unless given. */
  proxy?: (redis: RedisServer) => Record<string, unknown>;
}

/** Registers before/after hooks in the current suite; the returned object is usable inside tests. */
export function useStack(opts: StackOptions = {}): Stack {
  let redis: RedisServer | undefined;
  let proxy: Proxy | undefined;
  let certs: TestCerts | undefined;
  before(async () => {
    certs = await sharedCerts();
    redis = await startRedis(opts.redis);
    const cfg = opts.proxy?.(redis) ?? {};
    const backend = { host: '127.0.0.1', port: redis.port, ...((cfg.backend as Record<string, unknown> | undefined) ?? {}) };
    proxy = await startProxy({ ...cfg, backend });
  }, { timeout: 30_000 });
  after(async () => {
    const results = await Promise.allSettled([proxy?.stop(), redis?.stop()]);
    for (const r of results) if (r.status === 'rejected') throw r.reason;
  }, { timeout: 30_000 });
  return {
    get redis() {
      if (!redis) throw new Error('redis-server not started');
      return redis;
    },
    get proxy() {
      if (!proxy) throw new Error('proxy not started');
      return proxy;
    },
    get certs() {
      if (!certs) throw new Error('certs not made');
      return certs;
    },
  };
}

/** The last `n` proxy log lines, for assertion messages. */
export function logTail(proxy: Proxy, n = 15): string {
  return proxy.logs().slice(-n).map((r: LogRecord) => JSON.stringify(r)).join('\n');
}
