// SIGTERM: /readyz answers 503 at once, new connections are refused, connected clients are
// served for shutdown.grace_ms and then closed in order (close_notify), the process exits 0.
// A second signal closes every client at once, still with close_notify, a client whose reply
// never comes (BLPOP 0) included. A close that keeps making progress (a client reading slowly
// but steadily) is cut 4 × close.drain_timeout_ms after the grace, or 2 × close.drain_timeout_ms
// after a second signal: it does not hold the shutdown until the supervisor's SIGKILL.
import assert from 'node:assert/strict';
import net from 'node:net';
import { describe, test } from 'node:test';
import { request } from 'undici';
import { waitFor } from '../helpers/common.js';
import { logTail } from '../helpers/fixture.js';
import { closeRecords, metricValue, startProxy, type Proxy } from '../helpers/proxy.js';
import { startRedis } from '../helpers/redis.js';
import { encodeCommand } from '../helpers/resp.js';
import { describe as showResult, strictClient } from '../helpers/strict-client.js';

async function readyz(proxy: Proxy): Promise<number> {
  const res = await request(`http://127.0.0.1:${proxy.adminPort}/readyz`, { headersTimeout: 5_000, bodyTimeout: 5_000 });
  await res.body.text();
  return res.statusCode;
}

/** Resolves the error code of a plain TCP connect to the port ('connected' if it was accepted). */
function tcpConnect(port: number): Promise<string> {
  return new Promise((resolve) => {
    const s = net.connect({ host: '127.0.0.1', port });
    const timer = setTimeout(() => {
      s.destroy();
      resolve('timeout');
    }, 3_000);
    s.once('connect', () => {
      clearTimeout(timer);
      s.destroy();
      resolve('connected');
    });
    s.once('error', (e: NodeJS.ErrnoException) => {
      clearTimeout(timer);
      resolve(e.code ?? e.message);
    });
  });
}

/** Resolves once the proxy's stdout has ended ('exit' may come before the last log lines). */
function outputDone(proxy: Proxy): Promise<void> {
  const out = proxy.proc.stdout;
  if (out === null || out.readableEnded || out.destroyed) return Promise.resolve();
  return new Promise((resolve) => {
    const timer = setTimeout(resolve, 5_000);
    out.once('close', () => {
      clearTimeout(timer);
      resolve();
    });
  });
}

/** Waits until the proxy counts `n` open client connections. */
function activeConnections(proxy: Proxy, n: number): Promise<boolean> {
  return waitFor(`${n} active connection(s)`, async () => metricValue(await proxy.metrics(), 'resp_tls_proxy_connections_active') === n, 15_000, 25);
}

describe('SIGTERM drains in order', { timeout: 120_000 }, () => {
  test('grace period: readyz 503, new connections refused, the command sent during grace is answered, then close_notify, exit 0', { timeout: 60_000 }, async (t) => {
    const GRACE_MS = 2000;
    const redis = await startRedis();
    t.after(() => redis.stop());
    const proxy = await startProxy({ backend: { host: '127.0.0.1', port: redis.port }, shutdown: { grace_ms: GRACE_MS } });
    t.after(() => proxy.stop('SIGKILL'));

    assert.equal(await readyz(proxy), 200, 'readyz before the signal');

    // A client that sends PING 1 s after its handshake, then reads until the server closes.
    const client = strictClient({
      port: proxy.port,
      payload: encodeCommand(['PING']),
      caFile: proxy.certs.caFile,
      initialDelayMs: 1000,
      readTimeoutMs: 15_000,
    });
    await activeConnections(proxy, 1);

    const signalAt = performance.now();
    process.kill(proxy.pid, 'SIGTERM');
    const exitedAt = proxy.exited.then((e) => ({ ...e, at: performance.now() }));

    await waitFor('readyz 503', async () => (await readyz(proxy)) === 503, 3_000, 20);
    const readyz503Ms = Math.round(performance.now() - signalAt);
    const m = await proxy.metrics();
    assert.equal(metricValue(m, 'resp_tls_proxy_draining'), 1, 'draining gauge');
    assert.equal(metricValue(m, 'resp_tls_proxy_connections_active'), 1, 'the client is still connected');
    const refused = await tcpConnect(proxy.port);
    assert.equal(refused, 'ECONNREFUSED', 'a new connection during grace');
    // A SIGHUP now (a config-management run racing the stop) changes nothing: no reload, no new watch.
    process.kill(proxy.pid, 'SIGHUP');
    await waitFor('the ignored SIGHUP logged', () => proxy.logs().some((l) => l.msg === 'shutting down: reload ignored'), 3_000);
    const reloads = (mm: string) => metricValue(mm, 'resp_tls_proxy_reloads_total', { result: 'success' }) + metricValue(mm, 'resp_tls_proxy_reloads_total', { result: 'error' });
    assert.equal(reloads(await proxy.metrics()), reloads(m), logTail(proxy));

    const r = await client;
    const closedMs = Math.round(performance.now() - signalAt);
    const why = `${showResult(r)}\n${logTail(proxy)}`;
    assert.equal(r.reply.toString('latin1'), '+PONG\r\n', why);
    assert.equal(r.close, 'close_notify', why);
    assert.equal(r.tcpEnd, 'fin', why);
    assert.equal(r.writeError, null, why);
    // Closed by the end of the grace period, not before it.
    assert.ok(closedMs >= GRACE_MS - 100, `closed ${closedMs} ms after SIGTERM, before the grace period of ${GRACE_MS} ms ended`);

    const exit = await exitedAt;
    await outputDone(proxy);
    assert.deepEqual({ code: exit.code, signal: exit.signal }, { code: 0, signal: null }, logTail(proxy));
    const exitMs = Math.round(exit.at - signalAt);
    assert.ok(exitMs < GRACE_MS + 3_000, `exit ${exitMs} ms after SIGTERM`);

    const closes = closeRecords(proxy.logs());
    assert.equal(closes.length, 1, logTail(proxy));
    assert.equal(closes[0]!.reason, 'shutdown', logTail(proxy));
    assert.equal(closes[0]!.mode, 'graceful', logTail(proxy));
    assert.equal(closes[0]!.commands, 1, logTail(proxy));
    assert.ok(proxy.logs().some((l) => l.msg === 'shutdown complete'), logTail(proxy));
    t.diagnostic(`readyz 503 after ${readyz503Ms} ms; client closed (close_notify) after ${closedMs} ms; exit 0 after ${exitMs} ms (grace ${GRACE_MS} ms)`);
  });

  test('a second SIGTERM closes every client at once, still with close_notify', { timeout: 60_000 }, async (t) => {
    const GRACE_MS = 20_000;
    const redis = await startRedis();
    t.after(() => redis.stop());
    const proxy = await startProxy({ backend: { host: '127.0.0.1', port: redis.port }, shutdown: { grace_ms: GRACE_MS } });
    t.after(() => proxy.stop('SIGKILL'));

    // Two clients: one idle (sends nothing), one that got a reply and stays.
    const idle = strictClient({ port: proxy.port, payload: Buffer.alloc(0), caFile: proxy.certs.caFile, readTimeoutMs: 30_000 });
    const served = strictClient({ port: proxy.port, payload: encodeCommand(['SET', 'k', 'v']), caFile: proxy.certs.caFile, readTimeoutMs: 30_000 });
    await activeConnections(proxy, 2);

    const signalAt = performance.now();
    process.kill(proxy.pid, 'SIGTERM');
    await waitFor('readyz 503', async () => (await readyz(proxy)) === 503, 3_000, 20);
    await new Promise((resolve) => setTimeout(resolve, 300));
    assert.equal(metricValue(await proxy.metrics(), 'resp_tls_proxy_connections_active'), 2, 'both clients wait out the grace period');
    const secondAt = performance.now();
    process.kill(proxy.pid, 'SIGTERM');

    const [a, b] = await Promise.all([idle, served]);
    const exit = await proxy.exited;
    await outputDone(proxy);
    const exitMs = Math.round(performance.now() - secondAt);
    for (const [r, reply] of [[a, ''], [b, '+OK\r\n']] as const) {
      const why = `${showResult(r)}\n${logTail(proxy)}`;
      assert.equal(r.reply.toString('latin1'), reply, why);
      assert.equal(r.close, 'close_notify', why);
      assert.equal(r.writeError, null, why);
    }
    assert.deepEqual(exit, { code: 0, signal: null }, logTail(proxy));
    assert.ok(exitMs < 5_000, `exit ${exitMs} ms after the second SIGTERM (grace ${GRACE_MS} ms)`);
    const closes = closeRecords(proxy.logs());
    assert.deepEqual(closes.map((c) => `${c.reason}/${c.mode}`), ['shutdown/graceful', 'shutdown/graceful'], logTail(proxy));
    assert.ok(proxy.logs().some((l) => l.msg === 'second signal: closing every connection now'), logTail(proxy));
    t.diagnostic(`second SIGTERM ${Math.round(secondAt - signalAt)} ms after the first; both clients close_notify; exit 0 ${exitMs} ms after it`);
  });

  // 60 replies of 1 MB read at 1 MB/s: the close would take a minute, every wait restarting with
  // progress (the backend's replies come as the client reads).
  const SLOW = { value: 1_000_000, gets: 60, readRate: 1_000_000 };
  const slowReader = async (t: { after(fn: () => unknown): void }, config: Record<string, unknown>) => {
    const redis = await startRedis();
    t.after(() => redis.stop());
    await redis.cli('SETRANGE', 'big', String(SLOW.value - 1), 'v'); // zeros, then 'v': 1 MB
    const proxy = await startProxy({ backend: { host: '127.0.0.1', port: redis.port }, ...config });
    t.after(() => proxy.stop('SIGKILL'));
    const payload = Buffer.concat(Array.from({ length: SLOW.gets }, () => encodeCommand(['GET', 'big'])));
    const client = strictClient({ port: proxy.port, payload, caFile: proxy.certs.caFile, readRate: SLOW.readRate, rcvbuf: 64 * 1024, readTimeoutMs: 30_000, deadlineMs: 90_000 });
    await activeConnections(proxy, 1);
    await new Promise((resolve) => setTimeout(resolve, 500)); // replies flowing
    return { proxy, client };
  };
  /**
   * Runs `stop` (its signals), then checks the outcome: exit 0, the slow reader cut short, its
   * close counted shutdown/abrupt and logged. Resolves the ms from the end of `stop` to the exit.
   */
  const stopAndCut = async (proxy: Proxy, client: ReturnType<typeof strictClient>, stop: () => Promise<void>): Promise<{ exitMs: number; read: number }> => {
    await stop();
    const from = performance.now();
    const exit = await proxy.exited;
    const exitMs = Math.round(performance.now() - from);
    await outputDone(proxy);
    const r = await client;
    assert.deepEqual(exit, { code: 0, signal: null }, logTail(proxy));
    assert.ok(r.reply.length < SLOW.gets * SLOW.value, `the client read everything: the test did not test it\n${showResult(r)}`);
    const closes = closeRecords(proxy.logs());
    assert.deepEqual(closes.map((c) => `${c.reason}/${c.mode}`), ['shutdown/abrupt'], logTail(proxy));
    assert.ok(proxy.logs().some((l) => l.msg === 'shutdown: cutting the closes still under way'), logTail(proxy));
    return { exitMs, read: r.reply.length };
  };

  test('a client reading slowly but steadily is cut 4 × close.drain_timeout_ms after the grace: exit 0 in time', { timeout: 60_000 }, async (t) => {
    const GRACE_MS = 300;
    const DRAIN_MS = 1000;
    const { proxy, client } = await slowReader(t, { shutdown: { grace_ms: GRACE_MS }, close: { drain_timeout_ms: DRAIN_MS } });
    const { exitMs, read } = await stopAndCut(proxy, client, async () => {
      process.kill(proxy.pid, 'SIGTERM');
    });
    assert.ok(exitMs < GRACE_MS + 4 * DRAIN_MS + 2_000, `exit ${exitMs} ms after SIGTERM\n${logTail(proxy)}`);
    assert.ok(exitMs >= GRACE_MS + 4 * DRAIN_MS - 200, `exit ${exitMs} ms after SIGTERM: cut before its time\n${logTail(proxy)}`);
    t.diagnostic(`exit 0 ${exitMs} ms after SIGTERM; the client had read ${read} bytes`);
  });

  test('a second SIGTERM while a client waits in BLPOP 0: its close gives up on the reply after close.drain_timeout_ms, then close_notify', { timeout: 60_000 }, async (t) => {
    // The close begun by the second signal waits close.drain_timeout_ms for the BLPOP's reply;
    // a cut at that same moment (as it was) always came first and tore the connection down.
    const DRAIN_MS = 1000;
    const redis = await startRedis();
    t.after(() => redis.stop());
    const proxy = await startProxy({ backend: { host: '127.0.0.1', port: redis.port }, shutdown: { grace_ms: 20_000 }, close: { drain_timeout_ms: DRAIN_MS } });
    t.after(() => proxy.stop('SIGKILL'));
    const blocked = strictClient({ port: proxy.port, payload: encodeCommand(['BLPOP', 'never', '0']), caFile: proxy.certs.caFile, readTimeoutMs: 30_000 });
    await waitFor('the BLPOP blocked on the backend', async () => /blocked_clients:1\r?\n/.test(await redis.cli('INFO', 'clients')), 10_000);
    process.kill(proxy.pid, 'SIGTERM');
    await waitFor('readyz 503', async () => (await readyz(proxy)) === 503, 3_000, 20);
    const secondAt = performance.now();
    process.kill(proxy.pid, 'SIGTERM');
    const r = await blocked;
    const exit = await proxy.exited;
    await outputDone(proxy);
    const exitMs = Math.round(performance.now() - secondAt);
    const why = `${showResult(r)}\n${logTail(proxy)}`;
    assert.equal(r.reply.toString('latin1'), '', why);
    assert.equal(r.close, 'close_notify', why);
    assert.deepEqual(exit, { code: 0, signal: null }, why);
    assert.deepEqual(closeRecords(proxy.logs()).map((c) => `${c.reason}/${c.mode}`), ['shutdown/graceful'], why);
    assert.ok(exitMs < 2 * DRAIN_MS + 2_000, `exit ${exitMs} ms after the second SIGTERM\n${why}`);
    t.diagnostic(`close_notify, exit 0 ${exitMs} ms after the second SIGTERM`);
  });

  test('after a second SIGTERM a close still under way is cut 2 × close.drain_timeout_ms later', { timeout: 60_000 }, async (t) => {
    const DRAIN_MS = 1000;
    const { proxy, client } = await slowReader(t, { shutdown: { grace_ms: 20_000 }, close: { drain_timeout_ms: DRAIN_MS } });
    const { exitMs, read } = await stopAndCut(proxy, client, async () => {
      process.kill(proxy.pid, 'SIGTERM');
      await waitFor('readyz 503', async () => (await readyz(proxy)) === 503, 3_000, 20);
      process.kill(proxy.pid, 'SIGTERM');
    });
    assert.ok(exitMs < 2 * DRAIN_MS + 2_000, `exit ${exitMs} ms after the second SIGTERM\n${logTail(proxy)}`);
    assert.ok(exitMs >= 2 * DRAIN_MS - 200, `exit ${exitMs} ms after the second SIGTERM: cut before its time\n${logTail(proxy)}`);
    t.diagnostic(`exit 0 ${exitMs} ms after the second SIGTERM; the client had read ${read} bytes`);
  });

  test('a close.drain_timeout_ms whose 4 × is past what a timer holds does not cut at once', { timeout: 30_000 }, async (t) => {
    // 4 × 700,000,000 ms does not fit a Node timer, which then fires after 1 ms.
    const redis = await startRedis();
    t.after(() => redis.stop());
    const proxy = await startProxy({ backend: { host: '127.0.0.1', port: redis.port }, shutdown: { grace_ms: 200 }, close: { drain_timeout_ms: 700_000_000 } });
    t.after(() => proxy.stop('SIGKILL'));
    const client = strictClient({ port: proxy.port, payload: encodeCommand(['PING']), caFile: proxy.certs.caFile, readTimeoutMs: 15_000 });
    await activeConnections(proxy, 1);
    process.kill(proxy.pid, 'SIGTERM');
    const r = await client;
    const exit = await proxy.exited;
    await outputDone(proxy);
    assert.equal(r.reply.toString('latin1'), '+PONG\r\n', showResult(r));
    assert.equal(r.close, 'close_notify', `${showResult(r)}\n${logTail(proxy)}`);
    assert.deepEqual(exit, { code: 0, signal: null }, logTail(proxy));
    assert.deepEqual(closeRecords(proxy.logs()).map((c) => `${c.reason}/${c.mode}`), ['shutdown/graceful'], logTail(proxy));
    assert.ok(!proxy.logs().some((l) => l.msg === 'shutdown: cutting the closes still under way'), logTail(proxy));
  });
});
