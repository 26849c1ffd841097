// After SUBSCRIBE, MONITOR or CLIENT REPLY the proxy cannot count replies per command. An
// orderly close must still not cut off the replies on their way: Redis drops what it has not
// sent yet when it reads EOF, so the proxy half-closes the backend only once its replies have
// paused at a reply boundary, and never writes its own error text inside a reply.
import assert from 'node:assert/strict';
import net from 'node:net';
import { readFileSync } from 'node:fs';
import { after, describe, test } from 'node:test';
import { sharedCerts } from '../helpers/certs.js';
import { logTail, useStack } from '../helpers/fixture.js';
import { fullAcceptQueue } from '../helpers/full-accept-queue.js';
import { metricValue, startProxy, waitForMetric } from '../helpers/proxy.js';
import { ERR, encodeCommand } from '../helpers/resp.js';
import { describe as showResult, strictClient } from '../helpers/strict-client.js';
import { openTls, type TlsConn } from '../helpers/tls-conn.js';

const BIG = 16 * 1024 * 1024; // more than loopback socket buffers hold: Redis is still sending at the close

/** What redis-server itself sends for these bytes, read until it closes (plaintext, no proxy). */
function direct(port: number, payload: Buffer): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    const s = net.connect({ host: '127.0.0.1', port }, () => s.write(payload));
    s.on('data', (d) => chunks.push(d));
    s.on('error', reject);
    s.on('close', () => resolve(Buffer.concat(chunks)));
    s.setTimeout(20_000, () => s.destroy(new Error('redis-server did not close')));
  });
}

describe('uncounted replies: an orderly close waits for them', { timeout: 120_000 }, () => {
  const stack = useStack({ proxy: () => ({ close: { drain_timeout_ms: 2_000 } }) });

  test('SUBSCRIBE, UNSUBSCRIBE, a 16 MiB GET, then a protocol error → every byte redis-server itself sends, the error after the value', { timeout: 60_000 }, async () => {
    await stack.redis.cli('EVAL', `redis.call('SET', KEYS[1], string.rep('x', ${BIG}))`, '1', 'big');
    const payload = Buffer.from('SUBSCRIBE a\r\nUNSUBSCRIBE a\r\nGET big\r\n*x\r\n', 'latin1');
    const expected = await direct(stack.redis.port, payload);
    assert.ok(expected.toString('latin1').endsWith(`x\r\n${ERR.multibulk}`), 'redis-server answered something else');
    const r = await strictClient({ port: stack.proxy.port, payload, caFile: stack.certs.caFile, initialDelayMs: 0 });
    const why = `${showResult(r)}\n${logTail(stack.proxy)}`;
    assert.equal(r.reply.length, expected.length, why);
    assert.ok(r.reply.equals(expected), why);
    assert.equal(r.close, 'close_notify', why);
  });

  test('HELLO 3, SUBSCRIBE, a 5 MiB GET and PING, then close_notify → the whole value and +PONG', { timeout: 60_000 }, async () => {
    const size = 5 * 1024 * 1024; // a subscriber's output is capped at 32 MB by Redis itself
    await stack.redis.cli('EVAL', `redis.call('SET', KEYS[1], string.rep('y', ${size}))`, '1', 'big5');
    const payload = Buffer.from('HELLO 3\r\nSUBSCRIBE a\r\nGET big5\r\nPING\r\n', 'latin1');
    const r = await strictClient({ port: stack.proxy.port, payload, caFile: stack.certs.caFile, afterWrite: 'close_notify', initialDelayMs: 0 });
    const why = `${showResult(r)}\n${logTail(stack.proxy)}`;
    const reply = r.reply.toString('latin1');
    assert.ok(reply.endsWith(`$${size}\r\n${'y'.repeat(size)}\r\n+PONG\r\n`), why);
    assert.equal(r.close, 'close_notify', why);
  });

  test('a subscriber of a busy channel that closes its side still gets messages, and is closed within close.drain_timeout_ms', { timeout: 30_000 }, async (t) => {
    // One connection publishing every 20 ms (a redis-cli process per message could leave gaps
    // longer than the proxy's 200 ms settle time on a loaded machine).
    const publisher = net.connect({ host: '127.0.0.1', port: stack.redis.port });
    publisher.on('data', () => undefined);
    let lastTick = Date.now();
    let longestGap = 0; // a stall of this process stops the messages, and the proxy may then close early
    const ticking = setInterval(() => {
      const now = Date.now();
      longestGap = Math.max(longestGap, now - lastTick);
      lastTick = now;
      publisher.write(encodeCommand(['PUBLISH', 'busy', 'tick']));
    }, 20);
    try {
      const r = await strictClient({ port: stack.proxy.port, payload: encodeCommand(['SUBSCRIBE', 'busy']), caFile: stack.certs.caFile, afterWrite: 'close_notify', initialDelayMs: 300 });
      const why = `${showResult(r)}\n${logTail(stack.proxy)}`;
      assert.equal(r.close, 'close_notify', why);
      const reply = r.reply.toString('latin1');
      assert.ok(reply.startsWith('*3\r\n$9\r\nsubscribe\r\n$4\r\nbusy\r\n:1\r\n'), why);
      // Messages kept coming until close.drain_timeout_ms (2 s) after its close_notify: one
      // every ~20 ms, so dozens (a deadline never fires early, so the lower bound is safe).
      const messages = reply.split('$7\r\nmessage\r\n').length - 1;
      assert.ok(messages >= 20, `${messages} messages\n${why}`);
      // Messages more than the proxy's 200 ms settle time apart may end the wait early, as they should.
      if (longestGap < 150) assert.ok(r.elapsedMs >= 300 + 1_900, `closed after ${r.elapsedMs} ms, before the deadline\n${why}`);
      else t.diagnostic(`this process stalled ${longestGap} ms between messages: the lower bound is not checked`);
      assert.ok(r.elapsedMs < 300 + 2_000 + 1_500, `closed after ${r.elapsedMs} ms\n${why}`);
    } finally {
      clearInterval(ticking);
      publisher.destroy();
    }
  });
});

describe('RESET turns reply counting back on', { timeout: 60_000 }, () => {
  const stack = useStack({ proxy: () => ({ close: { drain_timeout_ms: 5_000 } }) });
  const SUBSCRIBED = '*3\r\n$9\r\nsubscribe\r\n$1\r\na\r\n:1\r\n';

  test('SUBSCRIBE, RESET, a BLPOP that times out after 1 s, then close_notify → the nil reply, then close_notify', { timeout: 30_000 }, async () => {
    // Uncounted, the close would end the backend once replies paused for 200 ms: Redis, blocked
    // in BLPOP, would then drop the connection and the client its reply.
    const payload = Buffer.from('SUBSCRIBE a\r\nRESET\r\nBLPOP reset-empty 1\r\n', 'latin1');
    const r = await strictClient({ port: stack.proxy.port, payload, caFile: stack.certs.caFile, afterWrite: 'close_notify', initialDelayMs: 0 });
    const why = `${showResult(r)}\n${logTail(stack.proxy)}`;
    assert.equal(r.reply.toString('latin1'), `${SUBSCRIBED}+RESET\r\n*-1\r\n`, why);
    assert.equal(r.close, 'close_notify', why);
    assert.ok(r.elapsedMs >= 900, `closed after ${r.elapsedMs} ms, before BLPOP could answer\n${why}`);
  });

  test('RESET while counted, SUBSCRIBE, RESET, a BLPOP that times out after 1 s, then close_notify → every reply, the nil included', { timeout: 30_000 }, async () => {
    // The first +RESET answers the first RESET: taken for the second one's, it resumed counting
    // too early and the close ended before the BLPOP's reply.
    const payload = Buffer.from('RESET\r\nSUBSCRIBE a\r\nRESET\r\nBLPOP reset-empty 1\r\n', 'latin1');
    const r = await strictClient({ port: stack.proxy.port, payload, caFile: stack.certs.caFile, afterWrite: 'close_notify', initialDelayMs: 0 });
    const why = `${showResult(r)}\n${logTail(stack.proxy)}`;
    assert.equal(r.reply.toString('latin1'), `+RESET\r\n${SUBSCRIBED}+RESET\r\n*-1\r\n`, why);
    assert.equal(r.close, 'close_notify', why);
  });

  test('CLIENT REPLY OFF, SET, RESET, INCR, a BLPOP that times out after 1 s, then a protocol error → the replies after RESET, then the error text', { timeout: 30_000 }, async () => {
    const payload = Buffer.from('CLIENT REPLY OFF\r\nSET reset-k 1\r\nRESET\r\nINCR reset-k\r\nBLPOP reset-empty 1\r\n*x\r\n', 'latin1');
    const r = await strictClient({ port: stack.proxy.port, payload, caFile: stack.certs.caFile, initialDelayMs: 0 });
    const why = `${showResult(r)}\n${logTail(stack.proxy)}`;
    assert.equal(r.reply.toString('latin1'), `+RESET\r\n:2\r\n*-1\r\n${ERR.multibulk}`, why);
    assert.equal(r.close, 'close_notify', why);
  });
});

describe('uncounted replies and a backend that connects late', { timeout: 60_000 }, () => {
  const stack = useStack();

  test('SUBSCRIBE, UNSUBSCRIBE, a 16 MiB GET, close_notify at once, the backend connect done ~1 s later → the whole value', { timeout: 30_000 }, async (t) => {
    await stack.redis.cli('EVAL', `redis.call('SET', KEYS[1], string.rep('z', ${BIG}))`, '1', 'big');
    const relay = await fullAcceptQueue(stack.redis.port);
    t.after(() => relay.close());
    const proxy = await startProxy({ backend: { host: '127.0.0.1', port: relay.port, connect_timeout_ms: 8000 }, close: { drain_timeout_ms: 5000 } });
    t.after(() => proxy.stop());
    const payload = Buffer.from('SUBSCRIBE a\r\nUNSUBSCRIBE a\r\nGET big\r\n', 'latin1');
    const client = strictClient({ port: proxy.port, payload, caFile: (await sharedCerts()).caFile, afterWrite: 'close_notify', initialDelayMs: 0 });
    client.catch(() => undefined); // awaited below; not unhandled if the wait throws first
    // The session has started (its backend connect hangs, to be let in on its SYN's retry ~1 s
    // on), whenever the client's start and handshake took (a fixed delay could let it in at once).
    await waitForMetric(proxy, 'resp_tls_proxy_connections_total', {}, (v) => v >= 1, 15_000);
    relay.release();
    const r = await client;
    const why = `${showResult(r)}\n${logTail(proxy)}`;
    // The premise: the connect came well after the close began (it used to end the backend at once then).
    const connectS = metricValue(await proxy.metrics(), 'resp_tls_proxy_backend_connect_duration_seconds_sum');
    assert.ok(connectS >= 0.5, `the backend connected after ${connectS} s: too soon to test anything\n${why}`);
    assert.ok(r.reply.toString('latin1').endsWith(`$${BIG}\r\n${'z'.repeat(BIG)}\r\n`), why);
    assert.equal(r.close, 'close_notify', why);
  });
});

describe('uncounted replies and limits.idle_timeout_ms', { timeout: 60_000 }, () => {
  const stack = useStack({ proxy: () => ({ limits: { idle_timeout_ms: 300 } }) });
  const conns: TlsConn[] = [];
  after(() => {
    for (const c of conns) c.close();
  });

  test('after CLIENT REPLY ON a client waiting on BLPOP (2 s) is not cut as idle: it gets its nil reply', { timeout: 30_000 }, async () => {
    const c = await openTls(stack.proxy.port, { ca: readFileSync(stack.certs.caFile) });
    conns.push(c);
    assert.equal((await c.request(encodeCommand(['CLIENT', 'REPLY', 'ON'])))[0]!.toString('latin1'), '+OK\r\n');
    const [nil] = await c.request(encodeCommand(['BLPOP', 'empty-list', '2']), 1, 10_000);
    assert.equal(nil!.toString('latin1'), '*-1\r\n', logTail(stack.proxy));
    assert.equal(c.isEnded, false, logTail(stack.proxy));
  });

  test('after SUBSCRIBE and RESET a client is counted again: idle, it is closed as idle_timeout', { timeout: 30_000 }, async () => {
    const payload = Buffer.from('SUBSCRIBE a\r\nRESET\r\nPING\r\n', 'latin1');
    const r = await strictClient({ port: stack.proxy.port, payload, caFile: stack.certs.caFile, initialDelayMs: 0, readTimeoutMs: 5_000 });
    const why = `${showResult(r)}\n${logTail(stack.proxy)}`;
    assert.equal(r.reply.toString('latin1'), '*3\r\n$9\r\nsubscribe\r\n$1\r\na\r\n:1\r\n+RESET\r\n+PONG\r\n', why);
    assert.equal(r.close, 'close_notify', why);
    assert.ok(r.elapsedMs >= 250, `closed after ${r.elapsedMs} ms, sooner than the idle timeout\n${why}`);
  });
});
