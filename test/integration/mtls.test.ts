// Mutual TLS. With tls.ca_file set, a client without a certificate, or with one from another
// CA, is refused at the handshake (counted reason="client_certificate") and nothing it sent
// reaches the backend; a certificate from the CA is served. With tls.allow, a certificate from
// the CA whose identity (CN, DNS SAN, URI SAN) is not listed is refused after the handshake —
// no reply, close_notify — and counted reason="not_allowed"; a listed one is served.
import assert from 'node:assert/strict';
import { before, describe, test } from 'node:test';
import { makeLeafCert, type Leaf } from '../helpers/client-certs.js';
import { logTail, useStack, type Stack } from '../helpers/fixture.js';
import { metricSamples, metricValue, waitForMetric } from '../helpers/proxy.js';
import { encodeCommand } from '../helpers/resp.js';
import { describe as showResult, strictClient, type StrictClientResult } from '../helpers/strict-client.js';

const FAILURES = 'resp_tls_proxy_tls_handshake_failures_total';
const sumOf = (text: string, name: string): number => metricSamples(text, name).reduce((a, s) => a + s.value, 0);

interface Attempt {
  r: StrictClientResult;
  /** Whether the SET the client sent took effect on the backend. */
  landed: boolean;
}

/** Sends `SET key 1` then PING with the given client certificate (or none); reports the result and whether the SET landed. */
async function attempt(stack: Stack, key: string, leaf: Leaf | null, tlsVersion?: '1.2' | '1.3'): Promise<Attempt> {
  const payload = Buffer.concat([encodeCommand(['SET', key, '1']), encodeCommand(['PING'])]);
  const r = await strictClient({
    port: stack.proxy.port,
    payload,
    caFile: stack.certs.caFile,
    afterWrite: 'close_notify',
    readTimeoutMs: 10_000,
    ...(leaf !== null ? { certFile: leaf.certFile, keyFile: leaf.keyFile } : {}),
    ...(tlsVersion !== undefined ? { tlsVersion } : {}),
  });
  const landed = (await stack.redis.cli('EXISTS', key)) === '1';
  return { r, landed };
}

function assertServed(stack: Stack, a: Attempt): void {
  const why = `${showResult(a.r)}\n${logTail(stack.proxy)}`;
  assert.equal(a.r.reply.toString('latin1'), '+OK\r\n+PONG\r\n', why);
  assert.equal(a.r.close, 'close_notify', why);
  assert.equal(a.landed, true, why);
}

/**
 * Refused at the handshake: no application data either way. Without a certificate OpenSSL
 * itself fails the handshake with an alert (the client sees a failed handshake, or under TLS 1.3
 * a fatal alert on its first read). A certificate that does not verify is checked by Node after
 * OpenSSL's handshake and the socket is destroyed without an alert, so such a client may also see
 * a ragged EOF or a reset — never data, never a served command.
 */
function assertRefusedAtHandshake(stack: Stack, a: Attempt, closes: readonly string[] = ['handshake_failed', 'ssl_error']): void {
  const why = `${showResult(a.r)}\n${logTail(stack.proxy)}`;
  assert.equal(a.r.reply.length, 0, why);
  assert.ok(closes.includes(a.r.close), why);
  assert.equal(a.landed, false, why);
}
const UNVERIFIED_CLOSES = ['handshake_failed', 'ssl_error', 'ragged_eof', 'reset'] as const;

describe('tls.ca_file: client certificates required', { timeout: 120_000 }, () => {
  const stack = useStack({
    proxy: () => ({ tls: { cert_file: stack.certs.certFile, key_file: stack.certs.keyFile, ca_file: stack.certs.caFile } }),
  });

  test('no client certificate (TLS 1.3) → refused at the handshake, the SET never reaches the backend', { timeout: 30_000 }, async () => {
    assertRefusedAtHandshake(stack, await attempt(stack, 'nocert13', null, '1.3'));
  });

  test('no client certificate (TLS 1.2) → refused at the handshake', { timeout: 30_000 }, async () => {
    const a = await attempt(stack, 'nocert12', null, '1.2');
    assertRefusedAtHandshake(stack, a);
    assert.equal(a.r.close, 'handshake_failed', showResult(a.r));
  });

  test('a certificate from another CA → refused at the handshake', { timeout: 30_000 }, async () => {
    const c = stack.certs;
    for (const v of ['1.3', '1.2'] as const) {
      const a = await attempt(stack, `rogue${v}`, { certFile: c.otherClientCertFile, keyFile: c.otherClientKeyFile }, v);
      console.log(`another CA, TLS ${v}: the client saw ${a.r.close}${a.r.error ? ` (${a.r.error.slice(0, 90)})` : ''}`);
      assertRefusedAtHandshake(stack, a, UNVERIFIED_CLOSES);
    }
  });

  test('a certificate from the CA → served (TLS 1.3 and 1.2)', { timeout: 30_000 }, async () => {
    const c = stack.certs;
    assertServed(stack, await attempt(stack, 'good13', { certFile: c.clientCertFile, keyFile: c.clientKeyFile }, '1.3'));
    assertServed(stack, await attempt(stack, 'good12', { certFile: c.clientCertFile, keyFile: c.clientKeyFile }, '1.2'));
  });

  test('/metrics: four handshake failures, reason="client_certificate"; two connections served', { timeout: 15_000 }, async () => {
    const text = await waitForMetric(stack.proxy, FAILURES, { reason: 'client_certificate' }, (v) => v >= 4);
    assert.equal(metricValue(text, FAILURES, { reason: 'client_certificate' }), 4, text);
    assert.equal(sumOf(text, FAILURES), 4, text);
    assert.equal(metricValue(text, 'resp_tls_proxy_connections_total'), 2, text);
  });
});

describe('tls.allow: client identities', { timeout: 120_000 }, () => {
  const leaves: Record<string, Leaf> = {};
  const stack = useStack({
    proxy: () => ({
      tls: {
        cert_file: stack.certs.certFile,
        key_file: stack.certs.keyFile,
        ca_file: stack.certs.caFile,
        allow: { cn: ['allowed-cn'], dns_san: ['allowed.example.com'], uri_san: ['spiffe://test/allowed'] },
      },
    }),
  });

  before(async () => {
    const ca = stack.certs;
    const specs: [string, string, string | null][] = [
      ['byCn', 'allowed-cn', null],
      ['byDns', 'dns-client', 'DNS:allowed.example.com'],
      ['byUri', 'uri-client', 'URI:spiffe://test/allowed'],
      // valid CA, identities close to but not in the list
      ['stranger', 'stranger', 'DNS:other.example.com, URI:spiffe://test/other'],
      ['lookalike', 'allowed-cn.evil', 'DNS:allowed.example.com.evil, DNS:x.allowed.example.com, URI:spiffe://test/allowed/x'],
      // listed names in the wrong field: the allowed DNS SAN as CN, the allowed CN as a DNS SAN
      ['crossed', 'allowed.example.com', 'DNS:allowed-cn'],
    ];
    for (const [k, cn, san] of specs) leaves[k] = await makeLeafCert(ca, cn, san, 'clientAuth');
  }, { timeout: 60_000 });

  test('a certificate from the CA whose identity is not listed → no reply, close_notify; the SET never reaches the backend', { timeout: 60_000 }, async () => {
    for (const k of ['stranger', 'lookalike', 'crossed']) {
      const a = await attempt(stack, `refused-${k}`, leaves[k]!);
      const why = `${k}: ${showResult(a.r)}\n${logTail(stack.proxy)}`;
      assert.equal(a.r.reply.length, 0, why);
      assert.equal(a.r.close, 'close_notify', why);
      assert.equal(a.landed, false, why);
    }
  });

  test('listed by CN, by DNS SAN, by URI SAN → served', { timeout: 60_000 }, async () => {
    for (const k of ['byCn', 'byDns', 'byUri']) assertServed(stack, await attempt(stack, `served-${k}`, leaves[k]!));
  });

  test('the test CA\'s own client certificate (CN test-client, not listed) → refused', { timeout: 30_000 }, async () => {
    const c = stack.certs;
    const a = await attempt(stack, 'refused-test-client', { certFile: c.clientCertFile, keyFile: c.clientKeyFile });
    assert.equal(a.r.reply.length, 0, showResult(a.r));
    assert.equal(a.landed, false, showResult(a.r));
  });

  test('a listed CN from another CA → refused at the handshake, before the allow-list', { timeout: 30_000 }, async () => {
    const rogue = await makeLeafCert({ caFile: stack.certs.otherCaFile, caKeyFile: stack.certs.otherCaKeyFile }, 'allowed-cn', null, 'clientAuth');
    assertRefusedAtHandshake(stack, await attempt(stack, 'refused-rogue', rogue), UNVERIFIED_CLOSES);
  });

  test('/metrics: four not_allowed, one client_certificate; three connections served', { timeout: 15_000 }, async () => {
    const text = await waitForMetric(stack.proxy, FAILURES, { reason: 'not_allowed' }, (v) => v >= 4);
    assert.equal(metricValue(text, FAILURES, { reason: 'not_allowed' }), 4, text);
    assert.equal(metricValue(text, FAILURES, { reason: 'client_certificate' }), 1, text);
    assert.equal(sumOf(text, FAILURES), 5, text);
    assert.equal(metricValue(text, 'resp_tls_proxy_connections_total'), 3, text);
  });
});

describe('tls.allow: a refused client that keeps sending', { timeout: 120_000 }, () => {
  // A refused connection drains like a session's close (phase 5): bounded by close.drain_max_bytes
  // as well as close.drain_timeout_ms, not by the timer alone.
  const DRAIN_MAX = 1 << 20;
  const stack = useStack({
    proxy: () => ({
      tls: { cert_file: stack.certs.certFile, key_file: stack.certs.keyFile, ca_file: stack.certs.caFile, allow: { cn: ['allowed-cn'] } },
      close: { drain_timeout_ms: 60_000, drain_max_bytes: DRAIN_MAX },
    }),
  });

  test('past close.drain_max_bytes it is torn down, not drained until close.drain_timeout_ms', { timeout: 60_000 }, async () => {
    const c = stack.certs;
    const payload = Buffer.alloc(32 << 20, 'x'); // far past the byte cap and the kernel's buffers
    const r = await strictClient({
      port: stack.proxy.port,
      payload,
      caFile: c.caFile,
      certFile: c.clientCertFile, // CN test-client: not listed
      keyFile: c.clientKeyFile,
      afterWrite: 'read',
      readTimeoutMs: 10_000,
      deadlineMs: 40_000,
    });
    const why = `${showResult(r)}\n${logTail(stack.proxy)}`;
    assert.equal(r.reply.length, 0, why);
    assert.ok(r.writeError !== null || r.wrote < payload.length, `the client wrote all ${payload.length} bytes: drained past close.drain_max_bytes\n${why}`);
    assert.ok(r.elapsedMs < 30_000, why);
  });
});
