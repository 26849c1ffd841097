// A backend port with nothing listening: each complete command gets `-ERR backend unavailable`
// plus a short cause, then the close is orderly. A client that has not sent a command yet is
// waited for (up to close.drain_timeout_ms) so it learns why.
import assert from 'node:assert/strict';
import http from 'node:http';
import net from 'node:net';
import { after, before, describe, test, type TestContext } from 'node:test';
import { freePort, sleep, waitFor } from '../helpers/common.js';
import { sharedCerts, type TestCerts } from '../helpers/certs.js';
import { logTail } from '../helpers/fixture.js';
import { closeRecords, metricSamples, metricValue, startProxy, waitForMetric, type Proxy } from '../helpers/proxy.js';
import { redisCliTls } from '../helpers/redis-cli.js';
import { fullAcceptQueue } from '../helpers/full-accept-queue.js';
import { ERR, encodeCommand, msetPayload, show } from '../helpers/resp.js';
import { describe as showResult, strictClient, type StrictClientResult } from '../helpers/strict-client.js';

const CLOSES = 'resp_tls_proxy_client_closes_total';
const UNAVAILABLE_LINE = /^-ERR backend unavailable[^\r\n]{0,200}$/;

/** The reply must be exactly `n` backend-unavailable lines (then `tail`). */
function assertUnavailable(proxy: Proxy, r: StrictClientResult, n: number, tail = ''): void {
  const why = `${showResult(r)}\n${logTail(proxy)}`;
  const text = r.reply.toString('latin1');
  assert.ok(text.endsWith(tail), why);
  const body = text.slice(0, text.length - tail.length);
  assert.ok(body.endsWith('\r\n'), why);
  const lines = body.slice(0, -2).split('\r\n');
  assert.equal(lines.length, n, why);
  for (const l of lines) assert.match(l, UNAVAILABLE_LINE, why);
  assert.equal(r.close, 'close_notify', why);
  assert.equal(r.writeError, null, why);
}

describe('backend port with nothing listening', { timeout: 120_000 }, () => {
  let proxy: Proxy | undefined;
  let certs: TestCerts;
  let closes = 0;
  let racyCloses = 0;
  const p = (): Proxy => {
    if (!proxy) throw new Error('proxy not started');
    return proxy;
  };

  before(async () => {
    certs = await sharedCerts();
    const deadPort = await freePort();
    proxy = await startProxy({
      backend: { host: '127.0.0.1', port: deadPort, connect_timeout_ms: 1000 },
      close: { drain_timeout_ms: 1500 },
    });
  }, { timeout: 30_000 });
  after(async () => {
    await proxy?.stop();
  }, { timeout: 30_000 });

  test('three pipelined commands (multibulk and inline) → three backend-unavailable errors, then close_notify', { timeout: 30_000 }, async () => {
    const payload = Buffer.concat([Buffer.from('PING\r\n'), encodeCommand(['SET', 'a', '1']), Buffer.from('GET a\r\n')]);
    const r = await strictClient({ port: p().port, payload, caFile: certs.caFile });
    closes++;
    assertUnavailable(p(), r, 3);
    assert.equal(r.wrote, payload.length);
  });

  test('the first command arrives 300 ms after the handshake → it still gets the error', { timeout: 30_000 }, async () => {
    const r = await strictClient({ port: p().port, payload: Buffer.from('PING\r\n'), caFile: certs.caFile, initialDelayMs: 300 });
    closes++;
    assertUnavailable(p(), r, 1);
  });

  test('a command arriving byte by byte gets exactly one error', { timeout: 30_000 }, async () => {
    const r = await strictClient({ port: p().port, payload: encodeCommand(['GET', 'x']), caFile: certs.caFile, chunkSize: 1, chunkDelayMs: 5 });
    closes++;
    assertUnavailable(p(), r, 1);
  });

  test('a big request (MSET with 50,000 pairs) is written in full, answered once, close_notify', { timeout: 60_000 }, async () => {
    const payload = msetPayload(50_000);
    const r = await strictClient({ port: p().port, payload, caFile: certs.caFile });
    closes++;
    assertUnavailable(p(), r, 1);
    assert.equal(r.wrote, payload.length);
  });

  test('a command then a protocol error → the backend error, then the protocol error, then close_notify', { timeout: 30_000 }, async () => {
    const r = await strictClient({ port: p().port, payload: Buffer.from('PING\r\n*abc\r\n'), caFile: certs.caFile });
    // counted as backend_unavailable or protocol_error, depending on which the proxy saw first
    racyCloses++;
    assertUnavailable(p(), r, 1, ERR.multibulk);
  });

  test('a protocol error 300 ms after the handshake (the connect has failed) → the error, close_notify; the close is logged with the violation', { timeout: 30_000 }, async () => {
    const r = await strictClient({ port: p().port, payload: Buffer.from('*abc\r\n'), caFile: certs.caFile, initialDelayMs: 300 });
    closes++;
    const why = `${showResult(r)}\n${logTail(p())}`;
    assert.equal(r.reply.toString('latin1'), ERR.multibulk, why);
    assert.equal(r.close, 'close_notify', why);
    // Counted backend_unavailable (it came first), but the log still says what the client broke.
    const rec = await waitFor('the close record', () => closeRecords(p().logs()).find((c) => c.violation !== undefined && c.reason === 'backend_unavailable') ?? null, 5_000)
      .catch((e: unknown) => { throw new Error(`${String(e)}\n${why}`); });
    assert.equal(rec.violation, 'invalid_multibulk_length', why);
    assert.equal(rec.limit, 'syntax', why);
  });

  test('a client that sends nothing is closed in order after close.drain_timeout_ms, with no reply', { timeout: 30_000 }, async () => {
    const r = await strictClient({ port: p().port, payload: Buffer.alloc(0), caFile: certs.caFile, readTimeoutMs: 10_000 });
    closes++;
    const why = `${showResult(r)}\n${logTail(p())}`;
    assert.equal(r.close, 'close_notify', why);
    assert.equal(r.reply.length, 0, why);
    assert.ok(r.elapsedMs >= 1000, `closed after ${r.elapsedMs} ms, before the 1500 ms wait for a first command\n${why}`);
  });

  test('redis-cli --tls PING prints the backend-unavailable error', { timeout: 30_000 }, async () => {
    const r = await redisCliTls(p().port, certs.caFile, 'PING');
    assert.match(r.stdout.trim(), /^ERR backend unavailable/, `stdout=${show(r.stdout)} stderr=${show(r.stderr)}`);
    assert.equal(r.stderr, '');
  });

  test('/metrics: graceful backend_unavailable, none abrupt', { timeout: 15_000 }, async () => {
    // the strict-client closes, plus redis-cli's
    const text = await waitForMetric(p(), CLOSES, { mode: 'graceful', reason: 'backend_unavailable' }, (v) => v >= closes + 1);
    const unavailable = metricValue(text, CLOSES, { mode: 'graceful', reason: 'backend_unavailable' });
    assert.ok(unavailable >= closes + 1 && unavailable <= closes + 1 + racyCloses, text);
    const graceful = metricSamples(text, CLOSES, { mode: 'graceful' }).reduce((a, x) => a + x.value, 0);
    assert.equal(graceful, closes + 1 + racyCloses, text);
    assert.deepEqual(metricSamples(text, CLOSES, { mode: 'abrupt' }).filter((s) => s.value > 0), [], text);
  });
});

/** The premise of the tests below: a connect to `port` does not complete. */
async function assertConnectHangs(port: number): Promise<void> {
  const probe = net.connect({ host: '127.0.0.1', port });
  const connected = await Promise.race([new Promise<boolean>((r) => probe.once('connect', () => r(true))), sleep(500).then(() => false)]);
  probe.destroy();
  assert.equal(connected, false, 'the black-hole listener accepted a connection');
}

/**
 * A proxy whose backend connect hangs (connect_timeout_ms 8 s, close.drain_timeout_ms 400 ms), and
 * a strict client that sends `payload` and then close_notify at once. Returns both.
 */
async function closeWhileConnectHangs(t: TestContext, payload: Buffer): Promise<{ proxy: Proxy; r: StrictClientResult }> {
  const hole = await fullAcceptQueue();
  t.after(() => hole.close());
  await assertConnectHangs(hole.port);
  const proxy = await startProxy({ backend: { host: '127.0.0.1', port: hole.port, connect_timeout_ms: 8000 }, close: { drain_timeout_ms: 400 } });
  t.after(() => proxy.stop());
  const r = await strictClient({ port: proxy.port, payload, caFile: (await sharedCerts()).caFile, afterWrite: 'close_notify', initialDelayMs: 0 });
  return { proxy, r };
}

describe('a backend connect that hangs, and a client that closes meanwhile', { timeout: 60_000 }, () => {
  test('PING, then close_notify while the connect hangs → the backend-unavailable error and close_notify after close.drain_timeout_ms, not after connect_timeout_ms', { timeout: 30_000 }, async (t) => {
    const { proxy, r } = await closeWhileConnectHangs(t, encodeCommand(['PING']));
    assertUnavailable(proxy, r, 1);
    assert.ok(r.reply.toString('latin1').includes('ETIMEDOUT'), showResult(r));
    // It used to end() the connecting socket and wait out connect_timeout_ms (8 s).
    assert.ok(r.elapsedMs < 4000, `took ${r.elapsedMs} ms\n${showResult(r)}\n${logTail(proxy)}`);
    // The client left first, but its command got the error: counted backend_unavailable, not client_closed.
    const m = await waitForMetric(proxy, CLOSES, { mode: 'graceful', reason: 'backend_unavailable' }, (v) => v === 1, 5_000);
    assert.equal(metricValue(m, CLOSES, { mode: 'graceful', reason: 'client_closed' }), 0, m);
  });

  test('handshake, then close_notify at once, no command → close_notify back after close.drain_timeout_ms, and the session is gone', { timeout: 30_000 }, async (t) => {
    const { proxy, r } = await closeWhileConnectHangs(t, Buffer.alloc(0));
    const why = `${showResult(r)}\n${logTail(proxy)}`;
    assert.equal(r.reply.length, 0, why);
    assert.equal(r.close, 'close_notify', why);
    // It used to stay open: the given-up connect left no timer to end it.
    assert.ok(r.elapsedMs < 4000, `took ${r.elapsedMs} ms\n${why}`);
    const m = await waitForMetric(proxy, 'resp_tls_proxy_connections_active', {}, (v) => v === 0, 5_000);
    assert.match(m, /^resp_tls_proxy_connections_active 0$/m, m);
    // Nothing was sent, so nothing failed: the client's leaving is what ended it.
    assert.equal(metricValue(m, CLOSES, { mode: 'graceful', reason: 'client_closed' }), 1, m);
  });
});

describe('a backend port where something other than Redis answers', { timeout: 60_000 }, () => {
  test('/readyz 503 naming what it answered, backend_up 0 (an HTTP server as the backend)', { timeout: 30_000 }, async (t) => {
    const web = http.createServer((_req, res) => res.end('hello\n')); // answers PING with 400 Bad Request
    await new Promise<void>((resolve) => web.listen(0, '127.0.0.1', resolve));
    t.after(() => web.close());
    const port = (web.address() as net.AddressInfo).port;
    const proxy = await startProxy({ backend: { host: '127.0.0.1', port } });
    t.after(() => proxy.stop());
    const res = await fetch(`http://127.0.0.1:${proxy.adminPort}/readyz`);
    const body = await res.text();
    assert.equal(res.status, 503, body);
    assert.match(body, /backend 127\.0\.0\.1:\d+ answers PING with "HTTP\/1\.1 400 Bad Request"/);
    await waitForMetric(proxy, 'resp_tls_proxy_backend_up', {}, (v) => v === 0, 8_000);
  });
});
