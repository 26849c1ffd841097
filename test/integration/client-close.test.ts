// The client leaves: with close_notify (or a bare TCP FIN) what it sent is forwarded, the
// replies still owed are relayed, then the proxy closes in order. A TCP reset is counted abrupt.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { describe, test } from 'node:test';
import { waitFor } from '../helpers/common.js';
import { logTail, useStack } from '../helpers/fixture.js';
import { metricValue, waitForMetric } from '../helpers/proxy.js';
import { encodeCommand, encodePipeline } from '../helpers/resp.js';
import { describe as showResult, strictClient } from '../helpers/strict-client.js';
import { sendThenReset } from '../helpers/tls-client.js';

const CLOSES = 'resp_tls_proxy_client_closes_total';

describe('client closes', { timeout: 120_000 }, () => {
  const stack = useStack();

  test('commands then close_notify → they take effect, their replies arrive, then close_notify', { timeout: 30_000 }, async () => {
    const payload = encodePipeline([['SET', 'cc1', 'v1'], ['RPUSH', 'cl', 'a', 'b', 'c']]);
    const r = await strictClient({ port: stack.proxy.port, payload, caFile: stack.certs.caFile, afterWrite: 'close_notify' });
    const why = `${showResult(r)}\n${logTail(stack.proxy)}`;
    assert.equal(r.reply.toString('latin1'), '+OK\r\n:3\r\n', why);
    assert.equal(r.close, 'close_notify', why);
    assert.equal(r.writeError, null, why);
    assert.equal(await stack.redis.cli('GET', 'cc1'), 'v1');
    assert.equal(await stack.redis.cli('LLEN', 'cl'), '3');
  });

  test('commands then a bare TCP FIN (no close_notify) → same', { timeout: 30_000 }, async () => {
    const payload = encodePipeline([['SET', 'cc2', 'v2'], ['GET', 'cc2']]);
    const r = await strictClient({ port: stack.proxy.port, payload, caFile: stack.certs.caFile, afterWrite: 'fin' });
    const why = `${showResult(r)}\n${logTail(stack.proxy)}`;
    assert.equal(r.reply.toString('latin1'), '+OK\r\n$2\r\nv2\r\n', why);
    assert.equal(r.close, 'close_notify', why);
    assert.equal(await stack.redis.cli('GET', 'cc2'), 'v2');
  });

  test('5,000 pipelined commands then close_notify at once → all 5,000 replies relayed before close_notify', { timeout: 60_000 }, async () => {
    const n = 5_000;
    const cmds: string[][] = [];
    for (let i = 0; i < n; i++) cmds.push(['SET', `many:${i}`, String(i)]);
    const payload = encodePipeline(cmds);
    const r = await strictClient({ port: stack.proxy.port, payload, caFile: stack.certs.caFile, afterWrite: 'close_notify' });
    const why = `${showResult(r)}\n${logTail(stack.proxy)}`;
    assert.equal(r.reply.toString('latin1'), '+OK\r\n'.repeat(n), why);
    assert.equal(r.close, 'close_notify', why);
    assert.equal(await stack.redis.cli('GET', `many:${n - 1}`), String(n - 1));
  });

  test('a client that resets (TCP RST) after a command: the command took effect', { timeout: 30_000 }, async () => {
    await sendThenReset({ port: stack.proxy.port, ca: readFileSync(stack.certs.caFile), payload: encodeCommand(['SET', 'reset-key', 'r']), waitMs: 300 });
    await waitFor('reset-key on the backend', async () => (await stack.redis.cli('GET', 'reset-key')) === 'r', 5_000);
  });

  test('/metrics: three graceful client_closed, one abrupt client_reset', { timeout: 15_000 }, async () => {
    const text = await waitForMetric(stack.proxy, CLOSES, { mode: 'abrupt', reason: 'client_reset' });
    assert.equal(metricValue(text, CLOSES, { mode: 'graceful', reason: 'client_closed' }), 3, text);
    assert.equal(metricValue(text, CLOSES, { mode: 'abrupt', reason: 'client_reset' }), 1, text);
    assert.equal(metricValue(text, CLOSES, { mode: 'abrupt', reason: 'client_closed' }), 0, text);
    assert.equal(metricValue(text, 'resp_tls_proxy_connections_active'), 0, text);
    assert.equal(metricValue(text, 'resp_tls_proxy_connections_total'), 4, text);
  });
});
