// /metrics counts every close once, by mode and reason, and the log has one record per closed
// connection. A known sequence of closes must produce exactly the expected table.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { describe, test } from 'node:test';
import { waitFor } from '../helpers/common.js';
import { logTail, useStack } from '../helpers/fixture.js';
import { closeRecords, metricSamples, metricValue, waitForMetric } from '../helpers/proxy.js';
import { ERR, encodeCommand } from '../helpers/resp.js';
import { describe as showResult, strictClient } from '../helpers/strict-client.js';
import { sendThenReset } from '../helpers/tls-client.js';

const CLOSES = 'resp_tls_proxy_client_closes_total';

describe('a known sequence of closes', { timeout: 120_000 }, () => {
  const stack = useStack({ proxy: () => ({ limits: { max_multibulk_len: 100, idle_timeout_ms: 800 } }) });

  test('two protocol errors', { timeout: 30_000 }, async () => {
    const a = await strictClient({ port: stack.proxy.port, payload: Buffer.from('*101\r\n'), caFile: stack.certs.caFile });
    assert.equal(a.reply.toString('latin1'), ERR.multibulk, showResult(a));
    assert.equal(a.close, 'close_notify', showResult(a));
    const b = await strictClient({ port: stack.proxy.port, payload: Buffer.from('*1\r\nX\r\n'), caFile: stack.certs.caFile });
    assert.equal(b.reply.toString('latin1'), ERR.expectedDollar('X'), showResult(b));
    assert.equal(b.close, 'close_notify', showResult(b));
  });

  test('a client close', { timeout: 30_000 }, async () => {
    const r = await strictClient({ port: stack.proxy.port, payload: Buffer.from('PING\r\n'), caFile: stack.certs.caFile, afterWrite: 'close_notify' });
    assert.equal(r.reply.toString('latin1'), '+PONG\r\n', showResult(r));
    assert.equal(r.close, 'close_notify', showResult(r));
  });

  test('the client\'s QUIT (the backend closes after +OK: counted client_closed)', { timeout: 30_000 }, async () => {
    const r = await strictClient({ port: stack.proxy.port, payload: Buffer.from('QUIT\r\n'), caFile: stack.certs.caFile });
    assert.equal(r.reply.toString('latin1'), '+OK\r\n', showResult(r));
    assert.equal(r.close, 'close_notify', showResult(r));
  });

  test('a client reset', { timeout: 30_000 }, async () => {
    await sendThenReset({ port: stack.proxy.port, ca: readFileSync(stack.certs.caFile), payload: encodeCommand(['PING']), waitMs: 200 });
    await waitForMetric(stack.proxy, CLOSES, { mode: 'abrupt', reason: 'client_reset' });
  });

  test('an idle timeout (limits.idle_timeout_ms 800): the reply, then close_notify', { timeout: 30_000 }, async () => {
    const r = await strictClient({ port: stack.proxy.port, payload: Buffer.from('PING\r\n'), caFile: stack.certs.caFile, readTimeoutMs: 10_000 });
    const why = `${showResult(r)}\n${logTail(stack.proxy)}`;
    assert.equal(r.reply.toString('latin1'), '+PONG\r\n', why);
    assert.equal(r.close, 'close_notify', why);
    assert.ok(r.elapsedMs >= 700, `closed after ${r.elapsedMs} ms\n${why}`);
  });

  test('/metrics holds exactly this table', { timeout: 15_000 }, async () => {
    const text = await waitForMetric(stack.proxy, CLOSES, { mode: 'graceful', reason: 'idle_timeout' });
    const expected: Record<string, number> = {
      'graceful/protocol_error': 2,
      'graceful/client_closed': 2,
      'abrupt/client_reset': 1,
      'graceful/idle_timeout': 1,
    };
    const got: Record<string, number> = {};
    for (const s of metricSamples(text, CLOSES)) if (s.value > 0) got[`${s.labels.mode}/${s.labels.reason}`] = s.value;
    assert.deepEqual(got, expected, text);
    assert.equal(metricValue(text, 'resp_tls_proxy_protocol_errors_total', { limit: 'max_multibulk_len' }), 1, text);
    assert.equal(metricValue(text, 'resp_tls_proxy_protocol_errors_total', { limit: 'syntax' }), 1, text);
    assert.equal(metricValue(text, 'resp_tls_proxy_connections_total'), 6, text);
    assert.equal(metricValue(text, 'resp_tls_proxy_connections_active'), 0, text);
  });

  test('the log has one close record per connection, with the same reasons and modes', () => {
    const got = closeRecords(stack.proxy.logs()).map((r) => `${String(r.mode)}/${String(r.reason)}`).sort();
    assert.deepEqual(got, [
      'abrupt/client_reset',
      'graceful/client_closed',
      'graceful/client_closed',
      'graceful/idle_timeout',
      'graceful/protocol_error',
      'graceful/protocol_error',
    ], logTail(stack.proxy, 40));
  });
});

describe('shutdown (SIGTERM) with a client connected', { timeout: 60_000 }, () => {
  const stack = useStack({ proxy: () => ({ shutdown: { grace_ms: 500 } }) });

  test('after shutdown.grace_ms the client gets its reply and close_notify; the proxy exits 0', { timeout: 30_000 }, async () => {
    const client = strictClient({ port: stack.proxy.port, payload: Buffer.from('PING\r\n'), caFile: stack.certs.caFile, readTimeoutMs: 15_000 });
    await waitFor('the connection to be open', async () => metricValue(await stack.proxy.metrics(), 'resp_tls_proxy_connections_active') === 1, 10_000);
    const exit = await stack.proxy.stop('SIGTERM');
    const r = await client;
    const why = `${showResult(r)}\n${logTail(stack.proxy)}`;
    assert.equal(r.reply.toString('latin1'), '+PONG\r\n', why);
    assert.equal(r.close, 'close_notify', why);
    assert.deepEqual(exit, { code: 0, signal: null }, why);
    const closes = closeRecords(stack.proxy.logs()).map((x) => `${String(x.mode)}/${String(x.reason)}`);
    assert.deepEqual(closes, ['graceful/shutdown'], logTail(stack.proxy, 40));
  });
});
