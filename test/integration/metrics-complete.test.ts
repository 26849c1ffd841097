// After one connection (a PING), /metrics (scraped with undici) carries every metric of the
// DESIGN.md table and the operational ones, with labels only from the bounded sets; the counters
// moved by exactly that PING. /healthz and /readyz answer as documented, and
// `resp-tls-proxy stats` prints the closes table from the same endpoint.
import assert from 'node:assert/strict';
import { X509Certificate } from 'node:crypto';
import { once } from 'node:events';
import { readFileSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { describe, test } from 'node:test';
import { request } from 'undici';
import { repoRoot, run, sleep, waitFor } from '../helpers/common.js';
import { logTail, useStack } from '../helpers/fixture.js';
import { PROXY_CLI, metricValue, parseMetrics, waitForMetric } from '../helpers/proxy.js';
import { encodeCommand } from '../helpers/resp.js';
import { describe as showResult, strictClient } from '../helpers/strict-client.js';

const P = 'resp_tls_proxy_';
const VERSION = (JSON.parse(readFileSync(path.join(repoRoot, 'package.json'), 'utf8')) as { version: string }).version;

const CLOSE_REASONS = ['client_closed', 'client_reset', 'protocol_error', 'backend_closed', 'backend_error', 'backend_unavailable', 'idle_timeout', 'max_clients', 'shutdown', 'output_buffer_limit', 'tls_flood'];

/** name → Prometheus type, for every metric the table and issue 3 promise. */
const EXPECTED_TYPES: Record<string, string> = {
  client_closes_total: 'counter',
  protocol_errors_total: 'counter',
  connections_active: 'gauge',
  connections_total: 'counter',
  tls_handshake_failures_total: 'counter',
  tls_handshake_duration_seconds: 'histogram',
  tls_handshakes_resumed_total: 'counter',
  backend_connect_duration_seconds: 'histogram',
  commands_total: 'counter',
  bytes_total: 'counter',
  connection_duration_seconds: 'histogram',
  tls_cert_expiry_timestamp_seconds: 'gauge',
  reloads_total: 'counter',
  draining: 'gauge',
  build_info: 'gauge',
  process_resident_memory_bytes: 'gauge',
};

/** The only labels (and values) each of our own metrics may carry. */
const BOUNDED: Record<string, Record<string, readonly string[] | null>> = {
  client_closes_total: { mode: ['graceful', 'abrupt'], reason: CLOSE_REASONS },
  protocol_errors_total: { limit: ['max_multibulk_len', 'max_bulk_len', 'max_inline_len', 'syntax'] },
  tls_handshake_failures_total: { reason: ['timeout', 'reset', 'client_certificate', 'server_certificate', 'not_allowed', 'version', 'protocol', 'socket_limit', 'other'] },
  bytes_total: { direction: ['to_backend', 'to_client'] },
  reloads_total: { result: ['success', 'error'] },
  build_info: { version: [VERSION] },
  connections_active: {},
  connections_total: {},
  tls_handshakes_resumed_total: {},
  commands_total: {},
  draining: {},
  tls_cert_expiry_timestamp_seconds: {},
  // histograms: only `le` (any bucket bound) on _bucket
  tls_handshake_duration_seconds: { le: null },
  backend_connect_duration_seconds: { le: null },
  connection_duration_seconds: { le: null },
};

const PING = encodeCommand(['PING']);

async function get(port: number, urlPath: string): Promise<{ status: number; type: string; body: string }> {
  const res = await request(`http://127.0.0.1:${port}${urlPath}`, { headersTimeout: 5_000, bodyTimeout: 5_000 });
  return { status: res.statusCode, type: String(res.headers['content-type']), body: await res.body.text() };
}

describe('metrics, health and stats after one connection', { timeout: 120_000 }, () => {
  const stack = useStack();

  test('every metric is on /metrics, labels bounded, counters moved by one PING', { timeout: 30_000 }, async (t) => {
    const p = stack.proxy;
    const before = await get(p.adminPort, '/metrics');
    assert.equal(before.status, 200);
    assert.equal(metricValue(before.body, `${P}commands_total`), 0);

    const r = await strictClient({ port: p.port, payload: PING, caFile: stack.certs.caFile, afterWrite: 'close_notify' });
    assert.equal(r.reply.toString('latin1'), '+PONG\r\n', showResult(r));
    await waitForMetric(p, `${P}client_closes_total`, { mode: 'graceful', reason: 'client_closed' }, (v) => v >= 1, 10_000);

    const res = await get(p.adminPort, '/metrics');
    assert.equal(res.status, 200);
    assert.match(res.type, /^text\/plain; version=0\.0\.4/);
    const text = res.body;
    const samples = parseMetrics(text);

    // Every metric declared with its type, and present as samples.
    for (const [name, type] of Object.entries(EXPECTED_TYPES)) {
      assert.match(text, new RegExp(`^# TYPE ${P}${name} ${type}$`, 'm'), `${P}${name} (${type}) missing`);
      const sampleName = type === 'histogram' ? `${P}${name}_count` : `${P}${name}`;
      assert.ok(samples.some((s) => s.name === sampleName), `no sample of ${sampleName}`);
    }
    assert.ok(samples.some((s) => s.name.startsWith(`${P}nodejs_`)), 'no nodejs_* default metric');

    // Labels only from the bounded sets; never an address, a port or a certificate name.
    for (const s of samples) {
      const base = s.name.slice(P.length).replace(/_(bucket|sum|count)$/, '');
      const bounded = BOUNDED[base] ?? BOUNDED[s.name.slice(P.length)];
      if (s.name.startsWith(P) && bounded !== undefined) {
        for (const [k, v] of Object.entries(s.labels)) {
          assert.ok(k in bounded, `${s.name} has an unexpected label ${k}="${v}"`);
          const allowed = bounded[k];
          if (allowed) assert.ok(allowed.includes(v), `${s.name}{${k}="${v}"} is outside the bounded set`);
        }
      }
      for (const v of Object.values(s.labels)) {
        assert.doesNotMatch(v, /127\.0\.0\.1|localhost|test-client|::1/, `${s.name} carries an address or a certificate name: ${v}`);
        assert.notEqual(v, String(stack.redis.port));
      }
    }
    for (const reason of CLOSE_REASONS) {
      for (const mode of ['graceful', 'abrupt']) {
        assert.ok(samples.some((s) => s.name === `${P}client_closes_total` && s.labels.reason === reason && s.labels.mode === mode), `client_closes_total{mode="${mode}",reason="${reason}"} not exported`);
      }
    }

    // What one PING moved.
    const v = (name: string, labels: Record<string, string> = {}): number => metricValue(text, `${P}${name}`, labels);
    assert.equal(v('commands_total'), 1);
    assert.equal(v('bytes_total', { direction: 'to_backend' }), PING.length);
    assert.equal(v('bytes_total', { direction: 'to_client' }), '+PONG\r\n'.length);
    assert.equal(v('connections_total'), 1);
    assert.equal(v('connections_active'), 0);
    assert.equal(v('client_closes_total', { mode: 'graceful', reason: 'client_closed' }), 1, logTail(p));
    assert.ok(v('tls_handshake_duration_seconds_count') >= 1);
    assert.ok(v('backend_connect_duration_seconds_count') >= 1);
    assert.equal(v('connection_duration_seconds_count'), 1);
    assert.equal(v('build_info', { version: VERSION }), 1);
    assert.equal(v('draining'), 0);
    assert.equal(v('reloads_total', { result: 'success' }), 0);
    assert.equal(v('reloads_total', { result: 'error' }), 0);
    const notAfter = Date.parse(new X509Certificate(readFileSync(stack.certs.certFile)).validTo) / 1000;
    assert.equal(v('tls_cert_expiry_timestamp_seconds'), notAfter);
    assert.ok(v('process_resident_memory_bytes') > 1e6);
    t.diagnostic(`${samples.length} samples; commands_total 1, bytes to_backend ${PING.length} to_client 7, handshake count ${v('tls_handshake_duration_seconds_count')}, RSS ${Math.round(v('process_resident_memory_bytes') / 1e6)} MB`);
  });

  test('`resp-tls-proxy stats --admin URL` prints the closes table', { timeout: 30_000 }, async () => {
    const r = await run(process.execPath, [PROXY_CLI, 'stats', '--admin', `http://127.0.0.1:${stack.proxy.adminPort}`], { timeoutMs: 20_000 });
    assert.equal(r.code, 0, r.stderr);
    const lines = r.stdout.split('\n');
    assert.match(lines[0]!, /^reason\s+graceful\s+abrupt$/);
    assert.ok(lines.some((l) => /^client_closed\s+1\s+0$/.test(l)), r.stdout);
    assert.ok(lines.some((l) => /^total\s+1\s+0$/.test(l)), r.stdout);
  });

  test('/readyz: 50 requests at once cost the backend one PING connection, not 50', { timeout: 30_000 }, async () => {
    const p = stack.proxy;
    const received = async () => Number(/total_connections_received:(\d+)/.exec(await stack.redis.cli('INFO', 'stats'))![1]);
    await sleep(1_100); // past the reuse window of any earlier /readyz
    const before = await received();
    const answers = await Promise.all(Array.from({ length: 50 }, () => get(p.adminPort, '/readyz')));
    assert.ok(answers.every((a) => a.status === 200), answers.map((a) => a.status).join(' '));
    // (minus our own INFO connection; the backend_up gauge may probe meanwhile: at most one more)
    const opened = (await received()) - before - 1;
    assert.ok(opened >= 1 && opened <= 2, `the backend saw ${opened} connections`);
  });

  test('/readyz and backend_up: 503 and 0 while the backend refuses new clients (maxclients reached), back when it has room', { timeout: 30_000 }, async () => {
    const p = stack.proxy;
    assert.equal((await get(p.adminPort, '/readyz')).status, 200);
    // One connection of our own, open throughout, lowers maxclients.
    const admin = net.connect({ host: '127.0.0.1', port: stack.redis.port });
    const say = async (cmd: string): Promise<string> => {
      admin.write(cmd);
      const [data] = (await once(admin, 'data')) as [Buffer];
      return data.toString('latin1');
    };
    try {
      await once(admin, 'connect');
      // Redis refuses a new client while it has maxclients or more: ours alone is enough. The
      // value before is put back (10000 needs a file limit only root may raise).
      const maxclients = /^\*2\r\n\$10\r\nmaxclients\r\n\$\d+\r\n(\d+)\r\n$/.exec(await say('CONFIG GET maxclients\r\n'))?.[1];
      assert.ok(maxclients !== undefined, 'CONFIG GET maxclients');
      assert.equal(await say('CONFIG SET maxclients 1\r\n'), '+OK\r\n');
      await sleep(1_100); // past the reuse window of any earlier /readyz
      const res = await get(p.adminPort, '/readyz');
      assert.equal(res.status, 503, res.body);
      assert.match(res.body, /answers PING with "-ERR max number of clients reached"/);
      await waitForMetric(p, 'resp_tls_proxy_backend_up', {}, (v) => v === 0, 8_000);
      assert.equal(await say(`CONFIG SET maxclients ${maxclients}\r\n`), '+OK\r\n');
      await sleep(1_100);
      assert.equal((await get(p.adminPort, '/readyz')).status, 200);
      await waitForMetric(p, 'resp_tls_proxy_backend_up', {}, (v) => v === 1, 8_000);
    } finally {
      admin.destroy();
    }
  });

  test('/healthz 200; /readyz 200 with the backend up, 503 with it stopped', { timeout: 30_000 }, async () => {
    const p = stack.proxy;
    assert.equal((await get(p.adminPort, '/healthz')).status, 200);
    assert.equal((await get(p.adminPort, '/readyz')).status, 200);
    await stack.redis.stop();
    const t0 = Date.now();
    const res = await waitFor('readyz 503', async () => {
      const g = await get(p.adminPort, '/readyz');
      return g.status === 503 ? g : null;
    }, 5_000);
    assert.match(res.body, /backend .* does not answer PING/);
    assert.ok(Date.now() - t0 < 3_000);
    assert.equal((await get(p.adminPort, '/healthz')).status, 200, 'healthz: the process is alive');
    assert.equal((await get(p.adminPort, '/nope')).status, 404);
  });
});
