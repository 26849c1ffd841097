// TLS hardening: TLS 1.2 minimum by default (TLS 1.0/1.1 refused, counted reason="version"),
// TLS 1.3 supported, tls.min_version: TLSv1.3 refuses a TLS 1.2-only client; TLS 1.2 suites are
// forward-secret AEAD only (a CBC-only client is refused); renegotiation is refused without
// harming the proxy; SNI picks the certificate — and, where configured, the backend — by name.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import tls from 'node:tls';
import { after, before, describe, test } from 'node:test';
import { makeLeafCert, type Leaf } from '../helpers/client-certs.js';
import { makeTempDir, run } from '../helpers/common.js';
import { logTail, useStack } from '../helpers/fixture.js';
import { metricValue, startProxy, waitForMetric, type Proxy } from '../helpers/proxy.js';
import { startRedis, type RedisServer } from '../helpers/redis.js';
import { encodeCommand } from '../helpers/resp.js';
import { PYTHON, describe as showResult, strictClient } from '../helpers/strict-client.js';
import { tlsRequest, untilText } from '../helpers/tls-request.js';
import { makeCerts, sharedCerts } from '../helpers/certs.js';

const FAILURES = 'resp_tls_proxy_tls_handshake_failures_total';

// A legacy client: Python's ssl pinned to one old protocol version, security level 0 (OpenSSL 3
// refuses TLS 1.0/1.1 otherwise). Prints {"ok": bool, "version"|"error"}.
const LEGACY_CLIENT = `
import json, socket, ssl, sys, warnings
warnings.simplefilter('ignore')
c = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
c.check_hostname = False
c.verify_mode = ssl.CERT_NONE
c.set_ciphers('DEFAULT@SECLEVEL=0')
v = getattr(ssl.TLSVersion, sys.argv[2])
c.minimum_version = v
c.maximum_version = v
s = socket.create_connection(('127.0.0.1', int(sys.argv[1])), timeout=10)
try:
    t = c.wrap_socket(s, server_hostname='localhost')
    print(json.dumps({'ok': True, 'version': t.version()}))
except Exception as e:
    print(json.dumps({'ok': False, 'error': '%s: %s' % (type(e).__name__, e)}))
`;

async function legacyHandshake(port: number, version: 'TLSv1' | 'TLSv1_1'): Promise<{ ok: boolean; version?: string; error?: string }> {
  const r = await run(PYTHON, ['-S', '-c', LEGACY_CLIENT, String(port), version], { timeoutMs: 20_000 });
  try {
    return JSON.parse(r.stdout) as { ok: boolean; version?: string; error?: string };
  } catch {
    throw new Error(`legacy client gave no report (exit ${r.code}): ${r.stdout}${r.stderr}`);
  }
}

/**
 * Whether this machine's Python/OpenSSL can speak `version` at all: a Node server that accepts
 * TLS 1.0+ with legacy ciphers must let it in. Otherwise a refusal by the proxy proves nothing.
 */
async function legacyClientWorks(version: 'TLSv1' | 'TLSv1_1'): Promise<boolean> {
  const certs = await sharedCerts();
  const server = tls.createServer({
    cert: readFileSync(certs.certFile), key: readFileSync(certs.keyFile), minVersion: 'TLSv1', ciphers: 'DEFAULT@SECLEVEL=0',
  });
  server.on('secureConnection', (s) => s.end());
  server.on('tlsClientError', () => {});
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  try {
    const r = await legacyHandshake((server.address() as { port: number }).port, version);
    return r.ok;
  } finally {
    server.close();
  }
}

describe('TLS versions and ciphers (defaults)', { timeout: 120_000 }, () => {
  const stack = useStack();
  let legacyRefused = 0;

  for (const version of ['TLSv1', 'TLSv1_1'] as const) {
    test(`a ${version} client is refused at the handshake`, { timeout: 40_000 }, async (t) => {
      if (!(await legacyClientWorks(version))) {
        t.skip(`this Python/OpenSSL cannot speak ${version} even to a permissive server`);
        return;
      }
      const r = await legacyHandshake(stack.proxy.port, version);
      console.log(`${version} client: ${JSON.stringify(r)}`);
      assert.equal(r.ok, false, JSON.stringify(r));
      assert.match(r.error ?? '', /version|unsupported protocol/i);
      legacyRefused++;
    });
  }

  test('TLS 1.2 and TLS 1.3 clients are served; TLS 1.2 negotiates an ECDHE AEAD suite', { timeout: 30_000 }, async () => {
    for (const v of ['1.2', '1.3'] as const) {
      const r = await strictClient({ port: stack.proxy.port, payload: encodeCommand(['PING']), caFile: stack.certs.caFile, tlsVersion: v, afterWrite: 'close_notify' });
      assert.equal(r.reply.toString('latin1'), '+PONG\r\n', showResult(r));
      assert.equal(r.tlsVersion, `TLSv${v}`, showResult(r));
      assert.equal(r.close, 'close_notify', showResult(r));
    }
    const r12 = await tlsRequest({ port: stack.proxy.port, maxVersion: 'TLSv1.2', payload: encodeCommand(['PING']), until: untilText('+PONG\r\n') });
    console.log(`TLS 1.2 default client negotiated ${r12.cipher}`);
    assert.equal(r12.data.toString('latin1'), '+PONG\r\n');
    assert.match(r12.cipher ?? '', /^ECDHE-.*(GCM|CHACHA20)/, JSON.stringify(r12));
  });

  test('a TLS 1.2 client offering only CBC suites (no AEAD) is refused', { timeout: 30_000 }, async () => {
    const r = await tlsRequest({ port: stack.proxy.port, maxVersion: 'TLSv1.2', ciphers: 'ECDHE-ECDSA-AES128-SHA:ECDHE-ECDSA-AES256-SHA:ECDHE-ECDSA-AES128-SHA256', payload: encodeCommand(['PING']), until: untilText('+PONG\r\n') });
    assert.equal(r.connected, false, `negotiated ${r.cipher}: ${JSON.stringify(r)}`);
    assert.equal(r.data.length, 0);
  });

  test('renegotiation (TLS 1.2) is refused: no second handshake, nothing more is served on that connection, the proxy lives on', { timeout: 30_000 }, async () => {
    const sock = tls.connect({ host: '127.0.0.1', port: stack.proxy.port, servername: 'localhost', rejectUnauthorized: false, maxVersion: 'TLSv1.2' });
    let data = '';
    const events: string[] = [];
    sock.setEncoding('latin1');
    sock.on('data', (d: string) => { data += d; });
    sock.on('error', (e: NodeJS.ErrnoException) => events.push(`error ${e.code ?? e.message}`));
    const closed = new Promise<void>((resolve) => sock.on('close', () => resolve()));
    await new Promise<void>((resolve, reject) => {
      sock.once('secureConnect', resolve);
      sock.once('error', reject);
    });
    sock.write(encodeCommand(['PING']));
    while (!data.includes('+PONG\r\n')) await new Promise((resolve) => setTimeout(resolve, 20));
    let renegotiated: string | null = null;
    sock.renegotiate({ rejectUnauthorized: false }, (err) => { renegotiated = err ? `failed: ${err.message}` : 'ok'; });
    await new Promise((resolve) => setTimeout(resolve, 1_000));
    if (!sock.destroyed) sock.write(encodeCommand(['ECHO', 'after-renegotiation']));
    await Promise.race([closed, new Promise((resolve) => setTimeout(resolve, 3_000))]);
    sock.destroy();
    console.log(`renegotiation: callback ${renegotiated ?? 'never called'}; events ${events.join(', ') || 'none'}; connection closed`);
    assert.notEqual(renegotiated, 'ok', 'the proxy accepted a renegotiation');
    assert.ok(!data.includes('after-renegotiation'), `served after renegotiating: ${JSON.stringify(data)}`);
    // the proxy is alive and serving
    assert.equal(stack.proxy.proc.exitCode, null);
    const r = await strictClient({ port: stack.proxy.port, payload: encodeCommand(['PING']), caFile: stack.certs.caFile, afterWrite: 'close_notify' });
    assert.equal(r.reply.toString('latin1'), '+PONG\r\n', `${showResult(r)}\n${logTail(stack.proxy)}`);
  });

  test('/metrics: legacy versions counted reason="version", the CBC-only client reason="protocol"', { timeout: 15_000 }, async () => {
    const text = await stack.proxy.metrics();
    console.log(`handshake failures: version=${metricValue(text, FAILURES, { reason: 'version' })} protocol=${metricValue(text, FAILURES, { reason: 'protocol' })}`);
    assert.equal(metricValue(text, FAILURES, { reason: 'version' }), legacyRefused, text);
    assert.equal(metricValue(text, FAILURES, { reason: 'protocol' }), 1, text); // no shared cipher
  });
});

describe('tls.min_version: TLSv1.3', { timeout: 120_000 }, () => {
  const stack = useStack({
    proxy: () => ({ tls: { cert_file: stack.certs.certFile, key_file: stack.certs.keyFile, min_version: 'TLSv1.3' } }),
  });

  test('a TLS 1.2-only client is refused at the handshake (reason="version"); TLS 1.3 is served', { timeout: 30_000 }, async () => {
    const r12 = await strictClient({ port: stack.proxy.port, payload: encodeCommand(['SET', 'v12', '1']), caFile: stack.certs.caFile, tlsVersion: '1.2' });
    assert.equal(r12.close, 'handshake_failed', showResult(r12));
    assert.equal(r12.reply.length, 0);
    assert.equal(await stack.redis.cli('EXISTS', 'v12'), '0');
    const r13 = await strictClient({ port: stack.proxy.port, payload: encodeCommand(['PING']), caFile: stack.certs.caFile, tlsVersion: '1.3', afterWrite: 'close_notify' });
    assert.equal(r13.reply.toString('latin1'), '+PONG\r\n', showResult(r13));
    const text = await waitForMetric(stack.proxy, FAILURES, { reason: 'version' });
    assert.equal(metricValue(text, FAILURES, { reason: 'version' }), 1, text);
  });

  test('a client that does not trust the proxy\'s certificate (another CA) → counted reason="server_certificate", not client_certificate', { timeout: 30_000 }, async () => {
    const other = await makeCerts(makeTempDir('resp-tls-proxy-other-ca-'));
    const r = await strictClient({ port: stack.proxy.port, payload: encodeCommand(['PING']), caFile: other.caFile });
    assert.equal(r.close, 'handshake_failed', showResult(r));
    const text = await waitForMetric(stack.proxy, FAILURES, { reason: 'server_certificate' });
    assert.equal(metricValue(text, FAILURES, { reason: 'server_certificate' }), 1, text);
    assert.equal(metricValue(text, FAILURES, { reason: 'client_certificate' }), 0, text);
  });
});

describe('tls.sni: a certificate per name, optionally its own backend', { timeout: 120_000 }, () => {
  let main: RedisServer | undefined;
  let other: RedisServer | undefined;
  let proxy: Proxy | undefined;
  let caPem: Buffer;
  const p = (): Proxy => proxy ?? assert.fail('proxy not started');

  before(async () => {
    const certs = await sharedCerts();
    caPem = readFileSync(certs.caFile);
    const a: Leaf = await makeLeafCert(certs, 'a.test', 'DNS:a.test', 'serverAuth');
    const b: Leaf = await makeLeafCert(certs, 'b.test', 'DNS:*.b.test', 'serverAuth');
    main = await startRedis();
    other = await startRedis();
    proxy = await startProxy({
      backend: { host: '127.0.0.1', port: main.port },
      tls: {
        cert_file: certs.certFile,
        key_file: certs.keyFile,
        sni: [
          { servername: 'a.test', cert_file: a.certFile, key_file: a.keyFile, backend: { host: '127.0.0.1', port: other.port } },
          { servername: '*.b.test', cert_file: b.certFile, key_file: b.keyFile },
        ],
      },
    });
  }, { timeout: 60_000 });

  after(async () => {
    await Promise.allSettled([proxy?.stop(), main?.stop(), other?.stop()]);
  }, { timeout: 30_000 });

  /** SET key through the proxy asking for `name`, verifying the certificate against the test CA for that name. */
  async function setVia(name: string | false, key: string, verify = true): Promise<{ cn: string | null }> {
    const r = await tlsRequest({
      port: p().port, servername: name, ...(verify ? { ca: caPem } : {}),
      payload: encodeCommand(['SET', key, name === false ? '(none)' : name]), until: untilText('+OK\r\n'),
    });
    assert.equal(r.data.toString('latin1'), '+OK\r\n', `${String(name)}: ${JSON.stringify(r)}\n${logTail(p())}`);
    return { cn: r.peerCN };
  }

  test('name a.test → certificate a.test (verified), and the key lands on a.test\'s own backend', { timeout: 30_000 }, async () => {
    const { cn } = await setVia('a.test', 'sni:a');
    assert.equal(cn, 'a.test');
    assert.equal(await other!.cli('GET', 'sni:a'), 'a.test');
    assert.equal(await main!.cli('EXISTS', 'sni:a'), '0');
  });

  test('name x.b.test → wildcard certificate *.b.test (verified), main backend', { timeout: 30_000 }, async () => {
    const { cn } = await setVia('x.b.test', 'sni:b');
    assert.equal(cn, 'b.test');
    assert.equal(await main!.cli('GET', 'sni:b'), 'x.b.test');
    assert.equal(await other!.cli('EXISTS', 'sni:b'), '0');
  });

  test('an unknown name, a two-label name under the wildcard, and no name → default certificate, main backend', { timeout: 30_000 }, async () => {
    for (const [name, key] of [['c.test', 'sni:c'], ['y.x.b.test', 'sni:yx'], [false, 'sni:none']] as const) {
      const { cn } = await setVia(name, key, false);
      assert.equal(cn, 'localhost', `${String(name)}`);
      assert.equal(await main!.cli('EXISTS', key), '1', `${String(name)}`);
      assert.equal(await other!.cli('EXISTS', key), '0', `${String(name)}`);
    }
  });
});
