// limits.idle_timeout_ms: an idle client is closed in order (close_notify, reason idle_timeout);
// a client waiting on a blocking command is not idle, nor one held back while the backend does
// not read; SUBSCRIBE/MONITOR clients are exempt
// unless limits.idle_timeout_pubsub is true.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { after, describe, test } from 'node:test';
import { sleep, waitFor } from '../helpers/common.js';
import { logTail, useStack } from '../helpers/fixture.js';
import { closeRecords, metricValue, waitForMetric } from '../helpers/proxy.js';
import { encodeCommand } from '../helpers/resp.js';
import { describe as showResult, strictClient } from '../helpers/strict-client.js';
import { openTls, type TlsConn } from '../helpers/tls-conn.js';

const IDLE_MS = 300;
const CLOSES = 'resp_tls_proxy_client_closes_total';

describe('limits.idle_timeout_ms: 300', { timeout: 120_000 }, () => {
  const stack = useStack({ proxy: () => ({ limits: { idle_timeout_ms: IDLE_MS } }) });
  const conns: TlsConn[] = [];
  after(() => {
    for (const c of conns) c.close();
  });

  test('an idle client is closed with close_notify, counted idle_timeout graceful', { timeout: 30_000 }, async (t) => {
    const p = stack.proxy;
    // Sends nothing at all; then one that sent a PING and went quiet.
    const [silent, pinged] = await Promise.all([
      strictClient({ port: p.port, payload: Buffer.alloc(0), caFile: stack.certs.caFile }),
      strictClient({ port: p.port, payload: encodeCommand(['PING']), caFile: stack.certs.caFile }),
    ]);
    for (const [r, reply] of [[silent, ''], [pinged, '+PONG\r\n']] as const) {
      const why = `${showResult(r)}\n${logTail(p)}`;
      assert.equal(r.close, 'close_notify', why);
      assert.equal(r.tcpEnd, 'fin', why);
      assert.equal(r.reply.toString('latin1'), reply, why);
      assert.ok(r.elapsedMs >= IDLE_MS - 50, `closed after ${r.elapsedMs} ms, sooner than the idle timeout`);
      assert.ok(r.elapsedMs < IDLE_MS + 5_000, `closed only after ${r.elapsedMs} ms`);
    }
    const m = await waitForMetric(p, CLOSES, { mode: 'graceful', reason: 'idle_timeout' }, (v) => v >= 2, 5_000);
    assert.equal(metricValue(m, CLOSES, { mode: 'graceful', reason: 'idle_timeout' }), 2, logTail(p));
    assert.equal(metricValue(m, CLOSES, { mode: 'abrupt', reason: 'idle_timeout' }), 0, logTail(p));
    // (the log lines may reach us after the metric: two pipes)
    const recs = await waitFor('two idle_timeout close records', () => {
      const found = closeRecords(p.logs()).filter((r) => r.reason === 'idle_timeout');
      return found.length >= 2 ? found : null;
    }, 5_000);
    assert.equal(recs.length, 2);
    assert.ok(recs.every((r) => r.mode === 'graceful' && r.msg === 'closing because idle timeout'), logTail(p));
    t.diagnostic(`idle clients closed after ${silent.elapsedMs} ms (silent) and ${pinged.elapsedMs} ms (after a PING), both close_notify`);
  });

  test('a subscriber stays open past the timeout and still receives messages', { timeout: 30_000 }, async () => {
    const p = stack.proxy;
    const sub = await openTls(p.port, { ca: readFileSync(stack.certs.caFile) });
    conns.push(sub);
    const [confirm] = await sub.request(encodeCommand(['SUBSCRIBE', 'news']));
    assert.equal(confirm!.toString('latin1'), '*3\r\n$9\r\nsubscribe\r\n$4\r\nnews\r\n:1\r\n');
    await sleep(1_000);
    assert.equal(sub.isEnded, false, `subscriber cut after ${IDLE_MS} ms idle\n${logTail(p)}`);
    const message = sub.next(1, 5_000);
    assert.equal(await stack.redis.cli('PUBLISH', 'news', 'hello'), '1');
    assert.equal((await message)[0]!.toString('latin1'), '*3\r\n$7\r\nmessage\r\n$4\r\nnews\r\n$5\r\nhello\r\n');
  });

  test('a MONITOR client stays open past the timeout', { timeout: 30_000 }, async () => {
    const p = stack.proxy;
    const mon = await openTls(p.port, { ca: readFileSync(stack.certs.caFile) });
    conns.push(mon);
    assert.equal((await mon.request(encodeCommand(['MONITOR'])))[0]!.toString('latin1'), '+OK\r\n');
    await sleep(1_000);
    assert.equal(mon.isEnded, false, `MONITOR client cut\n${logTail(p)}`);
  });

  test('a client waiting on BLPOP (2 s timeout) is not cut at 300 ms: it gets its nil reply', { timeout: 30_000 }, async (t) => {
    const p = stack.proxy;
    const c = await openTls(p.port, { ca: readFileSync(stack.certs.caFile) });
    conns.push(c);
    const t0 = Date.now();
    const [nil] = await c.request(encodeCommand(['BLPOP', 'empty-list', '2']), 1, 10_000);
    const waited = Date.now() - t0;
    assert.equal(nil!.toString('latin1'), '*-1\r\n', logTail(p));
    assert.ok(waited >= 1_900, `BLPOP answered after ${waited} ms`);
    // Idle again afterwards: closed by the idle timeout.
    const endedAt = await Promise.race([c.ended.then(() => Date.now()), sleep(5_000).then(() => 0)]);
    assert.ok(endedAt > 0, 'not closed after BLPOP returned and the client went idle');
    // The two idle clients of the first test, and this one.
    const m = await waitForMetric(p, CLOSES, { mode: 'graceful', reason: 'idle_timeout' }, (v) => v >= 3, 5_000);
    assert.equal(metricValue(m, CLOSES, { mode: 'graceful', reason: 'idle_timeout' }), 3, logTail(p));
    t.diagnostic(`BLPOP nil reply after ${waited} ms; closed ${endedAt - t0 - waited} ms after it`);
  });
});

describe('limits.idle_timeout_ms: 300 with idle_timeout_pubsub: true', { timeout: 120_000 }, () => {
  const stack = useStack({ proxy: () => ({ limits: { idle_timeout_ms: IDLE_MS, idle_timeout_pubsub: true } }) });

  test('the subscriber is closed too, with close_notify', { timeout: 30_000 }, async (t) => {
    const p = stack.proxy;
    const r = await strictClient({ port: p.port, payload: encodeCommand(['SUBSCRIBE', 'news']), caFile: stack.certs.caFile });
    const why = `${showResult(r)}\n${logTail(p)}`;
    assert.equal(r.reply.toString('latin1'), '*3\r\n$9\r\nsubscribe\r\n$4\r\nnews\r\n:1\r\n', why);
    assert.equal(r.close, 'close_notify', why);
    assert.ok(r.elapsedMs < IDLE_MS + 5_000, why);
    const m = await waitForMetric(p, CLOSES, { mode: 'graceful', reason: 'idle_timeout' }, (v) => v >= 1, 5_000);
    assert.equal(metricValue(m, CLOSES, { mode: 'graceful', reason: 'idle_timeout' }), 1, logTail(p));
    t.diagnostic(`subscriber closed after ${r.elapsedMs} ms`);
  });
});

describe('limits.idle_timeout_ms: 800 and a backend that stops reading', { timeout: 120_000 }, () => {
  const stack = useStack({ redis: { args: ['--enable-debug-command', 'yes'] }, proxy: () => ({ limits: { idle_timeout_ms: 800 } }) });

  test('a client held back in the middle of a 30 MiB SET while Redis sleeps 3 s is not idle: the SET runs, +OK, then the idle close', { timeout: 60_000 }, async () => {
    // Redis reads nothing while DEBUG SLEEP runs, so the proxy pauses the client mid-command (the
    // SET is not counted until it ends): no traffic on the client's socket for seconds.
    const size = 30 * 1024 * 1024;
    const sleeping = stack.redis.cli('DEBUG', 'SLEEP', '3');
    await sleep(200);
    const payload = Buffer.concat([Buffer.from(`*3\r\n$3\r\nSET\r\n$4\r\nheld\r\n$${size}\r\n`, 'latin1'), Buffer.alloc(size, 0x61), Buffer.from('\r\n', 'latin1')]);
    const r = await strictClient({ port: stack.proxy.port, payload, caFile: stack.certs.caFile, initialDelayMs: 0, readTimeoutMs: 15_000 });
    await sleeping;
    const why = `${showResult(r)}\n${logTail(stack.proxy)}`;
    assert.equal(r.reply.toString('latin1'), '+OK\r\n', why);
    assert.equal(r.close, 'close_notify', why);
    assert.equal(await stack.redis.cli('STRLEN', 'held'), String(size), why);
    assert.ok(r.elapsedMs >= 2_500, `closed after ${r.elapsedMs} ms: before Redis woke up\n${why}`);
  });
});
