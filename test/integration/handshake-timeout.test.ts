// tls.handshake_timeout_ms: a TCP peer that never finishes the TLS handshake (sends nothing, or
// half a ClientHello) is cut at the deadline and counted as a handshake failure "timeout"; the
// proxy keeps serving. The default (10 s) lets redis-benchmark's 50 parallel TLS connects through.
import assert from 'node:assert/strict';
import net from 'node:net';
import { describe, test } from 'node:test';
import { run } from '../helpers/common.js';
import { logTail, useStack } from '../helpers/fixture.js';
import { metricSamples, metricValue, waitForMetric } from '../helpers/proxy.js';
import { describe as showResult, strictClient } from '../helpers/strict-client.js';

const FAILURES = 'resp_tls_proxy_tls_handshake_failures_total';
const REDIS_BENCHMARK = process.env.REDIS_BENCHMARK_BIN ?? '/usr/bin/redis-benchmark';

interface Cut {
  /** ms from connect to the socket closing. */
  ms: number;
  /** how the proxy ended it: FIN or RST. */
  how: 'end' | 'reset';
  /** bytes the proxy sent before cutting (should be none, or a TLS alert at most). */
  received: number;
}

/** Connects over plain TCP, writes `send` (maybe nothing), then waits for the proxy to cut it. */
function connectAndStall(port: number, send: Buffer | null, giveUpMs: number): Promise<Cut> {
  return new Promise((resolve, reject) => {
    const started = performance.now();
    const sock = net.connect({ host: '127.0.0.1', port });
    let how: Cut['how'] = 'end';
    let received = 0;
    const timer = setTimeout(() => {
      sock.destroy();
      reject(new Error(`not cut within ${giveUpMs} ms`));
    }, giveUpMs);
    sock.on('connect', () => {
      if (send !== null) sock.write(send);
    });
    sock.on('data', (d: Buffer) => { received += d.length; });
    sock.on('error', (e: NodeJS.ErrnoException) => {
      if (e.code === 'ECONNRESET') how = 'reset';
    });
    sock.on('close', () => {
      clearTimeout(timer);
      resolve({ ms: performance.now() - started, how, received });
    });
  });
}

/**
 * The first 60 bytes of a TLS 1.2 ClientHello whose record header announces 512 bytes:
 * the server has to wait for the rest, which never comes.
 */
function halfClientHello(): Buffer {
  const record = Buffer.from([0x16, 0x03, 0x01, 0x02, 0x00]); // handshake record, 512 bytes
  const hs = Buffer.from([0x01, 0x00, 0x01, 0xfc, 0x03, 0x03]); // ClientHello, 508 bytes, TLS 1.2
  const random = Buffer.alloc(32, 0x5a);
  const sessionIdLen = Buffer.from([0x00]);
  const cipherSuites = Buffer.from([0x00, 0x04, 0xc0, 0x2b, 0xc0, 0x2f]);
  const buf = Buffer.concat([record, hs, random, sessionIdLen, cipherSuites]);
  return buf.subarray(0, Math.min(buf.length, 60));
}

const sum = (text: string, name: string): number => metricSamples(text, name).reduce((a, s) => a + s.value, 0);

describe('tls.handshake_timeout_ms: 500', { timeout: 90_000 }, () => {
  const stack = useStack({
    proxy: () => ({ tls: { cert_file: stack.certs.certFile, key_file: stack.certs.keyFile, handshake_timeout_ms: 500 } }),
  });

  test('a TCP client that sends nothing is cut within 0.4–3 s', { timeout: 30_000 }, async () => {
    const cut = await connectAndStall(stack.proxy.port, null, 15_000);
    console.log(`silent client cut after ${cut.ms.toFixed(0)} ms (${cut.how}, ${cut.received} bytes received)`);
    assert.ok(cut.ms >= 400 && cut.ms <= 3_000, `cut after ${cut.ms} ms\n${logTail(stack.proxy)}`);
  });

  test('a client that sends half a ClientHello is cut within 0.4–3 s', { timeout: 30_000 }, async () => {
    const cut = await connectAndStall(stack.proxy.port, halfClientHello(), 15_000);
    console.log(`half-ClientHello client cut after ${cut.ms.toFixed(0)} ms (${cut.how}, ${cut.received} bytes received)`);
    assert.ok(cut.ms >= 400 && cut.ms <= 3_000, `cut after ${cut.ms} ms\n${logTail(stack.proxy)}`);
  });

  test('ten stalled clients at once are all cut, and a real client is served meanwhile', { timeout: 30_000 }, async () => {
    const stalled = Array.from({ length: 10 }, (_, i) => connectAndStall(stack.proxy.port, i % 2 === 0 ? null : halfClientHello(), 15_000));
    const r = await strictClient({ port: stack.proxy.port, payload: Buffer.from('PING\r\n'), caFile: stack.certs.caFile, afterWrite: 'close_notify' });
    assert.equal(r.reply.toString('latin1'), '+PONG\r\n', showResult(r));
    assert.equal(r.close, 'close_notify', showResult(r));
    const cuts = await Promise.all(stalled);
    const worst = Math.max(...cuts.map((c) => c.ms));
    console.log(`10 stalled clients: slowest cut after ${worst.toFixed(0)} ms`);
    assert.ok(worst <= 3_000, `slowest cut after ${worst} ms`);
  });

  test('/metrics: 12 handshake failures, all reason="timeout"; no session was opened for them', { timeout: 15_000 }, async () => {
    const text = await waitForMetric(stack.proxy, FAILURES, { reason: 'timeout' }, (v) => v >= 12);
    assert.equal(metricValue(text, FAILURES, { reason: 'timeout' }), 12, text);
    assert.equal(sum(text, FAILURES), 12, text);
    assert.equal(metricValue(text, 'resp_tls_proxy_connections_total'), 1, text);
  });
});

describe('default handshake timeout (10 s)', { timeout: 120_000 }, () => {
  const stack = useStack();

  test('redis-benchmark --tls with 50 parallel connections: every connect succeeds, no handshake failure', { timeout: 90_000 }, async () => {
    const r = await run(REDIS_BENCHMARK, ['--tls', '--insecure', '-h', '127.0.0.1', '-p', String(stack.proxy.port),
      '-c', '50', '-n', '2000', '-t', 'ping', '-q'], { timeoutMs: 80_000 });
    const out = (r.stdout + r.stderr).replace(/\r/g, '\n');
    const results = out.split('\n').filter((l) => /requests per second/.test(l));
    console.log(`${results.join(' | ')}`);
    assert.equal(r.code, 0, out);
    assert.equal(results.length, 2, out); // PING_INLINE and PING_MBULK
    assert.doesNotMatch(out, /error|reset|refused/i, out);
    const text = await stack.proxy.metrics();
    const hsCount = metricValue(text, 'resp_tls_proxy_tls_handshake_duration_seconds_count');
    const hsSum = metricValue(text, 'resp_tls_proxy_tls_handshake_duration_seconds_sum');
    console.log(`handshakes: ${hsCount}, mean ${(1000 * hsSum / hsCount).toFixed(1)} ms; failures: ${sum(text, FAILURES)}`);
    assert.equal(sum(text, FAILURES), 0, text);
    // each run opens 50 connections (plus redis-benchmark's own config probe)
    assert.ok(metricValue(text, 'resp_tls_proxy_connections_total') >= 100, text);
  });

  test('clients that leave before the handshake ends (a TCP health check, a ClientHello then FIN or RST) free their socket at once: reason="reset", not a 10 s "timeout"', { timeout: 30_000 }, async () => {
    const before = sum(await stack.proxy.metrics(), FAILURES);
    const leave = (i: number): Promise<void> =>
      new Promise((resolve) => {
        const sock = net.connect({ host: '127.0.0.1', port: stack.proxy.port }, () => {
          if (i % 3 === 0) return sock.end(); // connect, FIN
          sock.write(halfClientHello());
          if (i % 3 === 1) sock.end();
          else sock.resetAndDestroy();
        });
        sock.on('error', () => undefined);
        sock.on('close', () => resolve());
      });
    await Promise.all(Array.from({ length: 90 }, (_, i) => leave(i)));
    // Half-open until the handshake timeout, they used to hold a socket (and a max_clients
    // slot) each for 10 s, and were counted "timeout".
    const text = await waitForMetric(stack.proxy, FAILURES, { reason: 'reset' }, (v) => v >= 90, 3_000);
    assert.equal(metricValue(text, FAILURES, { reason: 'reset' }), 90, text);
    assert.equal(sum(text, FAILURES) - before, 90, text);
  });
});
