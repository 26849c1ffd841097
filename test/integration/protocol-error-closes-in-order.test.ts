// The seed scenario: MSET with thousands of pairs in front of a proxy whose max_multibulk_len
// is 2. The client must be able to write its whole request, read the protocol error, and see a
// clean close_notify; the backend must never see the command; /metrics must count graceful
// protocol_error closes and no abrupt ones.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { logTail, useStack } from '../helpers/fixture.js';
import { metricSamples, metricValue, waitForMetric } from '../helpers/proxy.js';
import { redisCliTls } from '../helpers/redis-cli.js';
import { ERR, msetArgs, msetPayload, show } from '../helpers/resp.js';
import { describe as showResult, strictClient } from '../helpers/strict-client.js';

const CLOSES = 'resp_tls_proxy_client_closes_total';

describe('MSET over limits.max_multibulk_len: 2', { timeout: 180_000 }, () => {
  const stack = useStack({ proxy: () => ({ limits: { max_multibulk_len: 2 } }) });
  let expectedCloses = 0;

  test('redis-cli --tls MSET key1 val1 … key5000 val5000 prints the protocol error', { timeout: 30_000 }, async () => {
    const r = await redisCliTls(stack.proxy.port, stack.certs.caFile, 'MSET', ...msetArgs(5000));
    expectedCloses++;
    assert.equal(r.timedOut, false);
    assert.equal(r.stdout.trim(), 'ERR Protocol error: invalid multibulk length', `stdout=${show(r.stdout)} stderr=${show(r.stderr)}`);
    assert.equal(r.stderr, '', `redis-cli reported a transport problem: ${r.stderr}`);
    assert.equal(await stack.redis.cli('EXISTS', 'key1'), '0');
  });

  for (const [pairs, tlsVersion] of [[5_000, '1.3'], [50_000, '1.3'], [500_000, '1.3'], [50_000, '1.2']] as const) {
    test(`strict client, MSET with ${pairs} pairs over TLS ${tlsVersion}: whole write succeeds, error reply, close_notify`, { timeout: 60_000 }, async () => {
      const payload = msetPayload(pairs);
      const r = await strictClient({ port: stack.proxy.port, payload, caFile: stack.certs.caFile, tlsVersion });
      expectedCloses++;
      const why = `${showResult(r)}\nproxy log:\n${logTail(stack.proxy)}`;
      assert.equal(r.writeError, null, why);
      assert.equal(r.wrote, payload.length, why);
      assert.equal(r.reply.toString('latin1'), ERR.multibulk, why);
      assert.equal(r.close, 'close_notify', why);
      assert.equal(r.tcpEnd, 'fin', `close_notify must be followed by a FIN, not a reset\n${why}`);
      assert.equal(r.tlsVersion, `TLSv${tlsVersion}`);
      // The backend never received the command.
      assert.equal(await stack.redis.cli('DBSIZE'), '0');
      assert.equal(await stack.redis.cli('EXISTS', 'key1', `key${pairs}`), '0');
    });
  }

  test('the backend never saw an MSET', async () => {
    const stats = await stack.redis.cli('INFO', 'commandstats');
    assert.doesNotMatch(stats, /cmdstat_mset/, stats);
  });

  test('/metrics counts every close as graceful protocol_error and none as abrupt', { timeout: 15_000 }, async () => {
    const text = await waitForMetric(stack.proxy, CLOSES, { mode: 'graceful', reason: 'protocol_error' }, (v) => v >= expectedCloses);
    assert.equal(metricValue(text, CLOSES, { mode: 'graceful', reason: 'protocol_error' }), expectedCloses, text);
    const abrupt = metricSamples(text, CLOSES, { mode: 'abrupt' }).filter((s) => s.value > 0);
    assert.deepEqual(abrupt, [], 'no abrupt closes');
    const others = metricSamples(text, CLOSES).filter((s) => s.value > 0 && s.labels.reason !== 'protocol_error');
    assert.deepEqual(others, [], 'no closes for another reason');
    assert.equal(metricValue(text, 'resp_tls_proxy_protocol_errors_total', { limit: 'max_multibulk_len' }), expectedCloses, text);
    assert.equal(metricValue(text, 'resp_tls_proxy_connections_active'), 0, text);
  });

  test('one log record per closed connection, with reason protocol_error and mode graceful', async () => {
    const closes = stack.proxy.logs().filter((r) => r.reason !== undefined && r.mode !== undefined);
    assert.equal(closes.length, expectedCloses, logTail(stack.proxy, 30));
    for (const c of closes) {
      assert.equal(c.reason, 'protocol_error');
      assert.equal(c.mode, 'graceful');
    }
  });
});
