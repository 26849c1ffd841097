// TLS session resumption. A client that comes back with a session ticket resumes (no certificate
// exchange, no signature) on every worker, and after a reload that keeps the key files; a reload
// with a new server key, a new client CA or client certificates newly required makes the old
// tickets worthless, so a client resuming from before must do a full handshake and meet the new
// rules. Node's default (random ticket keys per process and per secure context) resumed on one
// worker in two and never after a reload.
import assert from 'node:assert/strict';
import { copyFileSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import tls from 'node:tls';
import { describe, test } from 'node:test';
import YAML from 'yaml';
import { makeLeafCert } from '../helpers/client-certs.js';
import { makeTempDir, waitFor } from '../helpers/common.js';
import { logTail, useStack, type Stack } from '../helpers/fixture.js';
import { metricValue, type Proxy } from '../helpers/proxy.js';

const RESUMED = 'resp_tls_proxy_tls_handshakes_resumed_total';
/** The system's monotonic clock (CLOCK_MONOTONIC, as the proxy's), in ms: the same in every process. */
const monotonicMs = (): number => Number(process.hrtime.bigint() / 1_000_000n);
/** tls.ticket_rotation_ms at its longest (~24.8 days), for tests that must not see a key change. */
const NO_ROTATION = 2_147_483_647;

interface Visit {
  /** The proxy answered PING with +PONG. */
  served: boolean;
  reused: boolean;
  /** The last session (ticket) the server gave, for the next visit. */
  session: Buffer | undefined;
  error?: string;
}

interface VisitOptions {
  ca: Buffer;
  session?: Buffer | undefined;
  version?: '1.2' | '1.3';
  cert?: { certFile: string; keyFile: string };
}

/** Connects (resuming `session` if given), sends PING, reads the reply (or the refusal), closes. */
function visit(port: number, o: VisitOptions): Promise<Visit> {
  return new Promise((resolve) => {
    const version = o.version === '1.2' ? 'TLSv1.2' : 'TLSv1.3';
    const socket = tls.connect({
      host: '127.0.0.1',
      port,
      servername: 'localhost',
      ca: o.ca,
      minVersion: version,
      maxVersion: version,
      ...(o.session !== undefined ? { session: o.session } : {}),
      ...(o.cert !== undefined ? { cert: readFileSync(o.cert.certFile), key: readFileSync(o.cert.keyFile) } : {}),
    });
    let session: Buffer | undefined;
    let reply = '';
    let error: string | undefined;
    let reused = false;
    socket.on('session', (s: Buffer) => (session = s));
    socket.on('secureConnect', () => {
      reused = socket.isSessionReused(); // null once the socket is closed
      socket.write('*1\r\n$4\r\nPING\r\n');
    });
    socket.on('data', (d: Buffer) => {
      reply += d.toString('latin1');
      if (reply.includes('\r\n')) socket.end();
    });
    socket.on('error', (err) => (error ??= err.message));
    const timer = setTimeout(() => socket.destroy(new Error('no reply in 10 s')), 10_000);
    socket.on('close', () => {
      clearTimeout(timer);
      resolve({ served: reply === '+PONG\r\n', reused, session, ...(error !== undefined ? { error } : {}) });
    });
  });
}

async function resumedCount(proxy: Proxy): Promise<number> {
  return metricValue(await proxy.metrics(), RESUMED);
}

/** Writes `config` over the proxy's config file, sends SIGHUP and waits for its reload line. */
async function reloadWith(proxy: Proxy, config: Record<string, unknown>): Promise<void> {
  const before = proxy.logs().filter((r) => r.msg === 'configuration reloaded' && r.trigger === 'SIGHUP').length;
  writeFileSync(proxy.configFile, YAML.stringify(config));
  proxy.proc.kill('SIGHUP');
  await waitFor(
    'the SIGHUP reload',
    () => proxy.logs().filter((r) => r.msg === 'configuration reloaded' && r.trigger === 'SIGHUP').length > before,
    5_000,
  );
}

describe('session resumption with workers: 2', { timeout: 120_000 }, () => {
  // The longest rotation: a key change within a test would fail it (one is tested below).
  const stack = useStack({ proxy: () => ({ workers: 2, tls: { ticket_rotation_ms: NO_ROTATION } }) });

  for (const version of ['1.3', '1.2'] as const) {
    test(`TLS ${version}: a ticket from one worker resumes on every worker`, { timeout: 60_000 }, async (t) => {
      const ca = readFileSync(stack.certs.caFile);
      const first = await visit(stack.proxy.port, { ca, version });
      assert.equal(first.served, true, `${first.error}\n${logTail(stack.proxy)}`);
      assert.equal(first.reused, false);
      assert.ok(first.session !== undefined, 'the server gave a session ticket');
      const before = await resumedCount(stack.proxy);
      const visits: Visit[] = [];
      // Connections are handed to the two workers in turn: eight reach both of them.
      for (let i = 0; i < 8; i++) visits.push(await visit(stack.proxy.port, { ca, version, session: first.session }));
      t.diagnostic(`resumed: ${visits.map((v) => (v.reused ? 'y' : 'n')).join('')}`);
      assert.deepEqual(visits.map((v) => v.served), Array(8).fill(true));
      assert.deepEqual(visits.map((v) => v.reused), Array(8).fill(true), 'every visit resumed, on either worker');
      await waitFor('the resumed handshakes counted', async () => (await resumedCount(stack.proxy)) === before + 8, 5_000);
    });
  }
});

describe('ticket keys rotate (tls.ticket_rotation_ms), in step on every worker', { timeout: 120_000 }, () => {
  const ROTATION_MS = 3_000;
  const stack = useStack({ proxy: () => ({ workers: 2, tls: { ticket_rotation_ms: ROTATION_MS } }) });

  /** Resolves `ms` into a period (periods start at the monotonic clock's multiples of ROTATION_MS). */
  async function intoPeriod(ms: number, next: boolean): Promise<void> {
    const now = monotonicMs();
    let wait = ROTATION_MS - (now % ROTATION_MS) + ms;
    if (!next && now % ROTATION_MS < ms) wait = ms - (now % ROTATION_MS); // early in one already
    await new Promise((resolve) => setTimeout(resolve, wait));
  }

  /** Eight visits with `session` (both workers, in turn): whether each resumed. */
  async function resumes(ca: Buffer, version: '1.2' | '1.3', session: Buffer | undefined): Promise<boolean[]> {
    const out: boolean[] = [];
    for (let i = 0; i < 8; i++) {
      const v = await visit(stack.proxy.port, { ca, version, session });
      assert.equal(v.served, true, `${v.error}\n${logTail(stack.proxy)}`);
      out.push(v.reused);
    }
    return out;
  }

  for (const version of ['1.3', '1.2'] as const) {
    test(`TLS ${version}: a ticket resumes on both workers until the period ends, and not after; the next period's tickets resume on both`, { timeout: 60_000 }, async () => {
      const ca = readFileSync(stack.certs.caFile);
      await intoPeriod(200, false);
      const started = monotonicMs();
      const first = await visit(stack.proxy.port, { ca, version });
      assert.equal(first.served, true, first.error);
      assert.deepEqual(await resumes(ca, version, first.session), Array(8).fill(true), 'within the period');
      assert.ok(monotonicMs() - started < ROTATION_MS - 500, 'the visits took most of the period: the test cannot tell');

      await intoPeriod(200, true);
      const after = await visit(stack.proxy.port, { ca, version, session: first.session });
      assert.equal(after.served, true, after.error);
      assert.equal(after.reused, false, 'a ticket from the last period does not resume');
      assert.deepEqual(await resumes(ca, version, after.session), Array(8).fill(true), 'the new period\'s ticket, on either worker');
    });
  }
});

describe('session resumption across reloads', { timeout: 120_000 }, () => {
  // Certificate files of its own, to change them.
  const dir = makeTempDir('resp-tls-proxy-resume-');
  const certFile = path.join(dir, 'server.crt');
  const keyFile = path.join(dir, 'server.key');
  const caFile = path.join(dir, 'client-ca.crt');
  let base: Record<string, unknown> = {};
  const stack: Stack = useStack({
    proxy: () => {
      copyFileSync(stack.certs.certFile, certFile);
      copyFileSync(stack.certs.keyFile, keyFile);
      return { tls: { cert_file: certFile, key_file: keyFile, ticket_rotation_ms: NO_ROTATION } };
    },
  });
  const config = (tlsExtra: Record<string, unknown> = {}): Record<string, unknown> => {
    base = YAML.parse(readFileSync(stack.proxy.configFile, 'utf8')) as Record<string, unknown>;
    return { ...base, tls: { ...(base.tls as Record<string, unknown>), ...tlsExtra } };
  };

  test('a reload that keeps the key files keeps the tickets; a new server key ends them', { timeout: 60_000 }, async () => {
    const ca = readFileSync(stack.certs.caFile);
    const port = stack.proxy.port;
    const first = await visit(port, { ca });
    assert.equal(first.served, true, first.error);
    await reloadWith(stack.proxy, config());
    const again = await visit(port, { ca, session: first.session });
    assert.equal(again.served, true, again.error);
    assert.equal(again.reused, true, `resumed after a reload with the same files\n${logTail(stack.proxy)}`);

    // A renewed certificate with a new key, signed by the same CA: the client verifies it in a
    // full handshake; its old ticket does not resume.
    const renewed = await makeLeafCert({ caFile: stack.certs.caFile, caKeyFile: stack.certs.caKeyFile }, 'localhost', 'DNS:localhost, IP:127.0.0.1', 'serverAuth');
    copyFileSync(renewed.keyFile, keyFile);
    copyFileSync(renewed.certFile, certFile);
    await reloadWith(stack.proxy, config());
    const afterNewKey = await visit(port, { ca, session: again.session ?? first.session });
    assert.equal(afterNewKey.served, true, afterNewKey.error);
    assert.equal(afterNewKey.reused, false, 'a session from before the new key is not resumed');
    const fresh = await visit(port, { ca, session: afterNewKey.session });
    assert.equal(fresh.reused, true, 'a ticket issued under the new key resumes');
  });

  test('client certificates newly required, or a new client CA: sessions from before do not resume', { timeout: 60_000 }, async () => {
    const c = stack.certs;
    const ca = readFileSync(c.caFile);
    const port = stack.proxy.port;
    const client = { certFile: c.clientCertFile, keyFile: c.clientKeyFile };

    // Without client certificates: a ticket.
    await reloadWith(stack.proxy, config({ ca_file: null, allow: null }));
    const anonymous = await visit(port, { ca });
    assert.equal(anonymous.served, true, anonymous.error);

    // Client certificates required from now on (and only test-client allowed): the anonymous
    // ticket does not get a client in without one.
    copyFileSync(c.caFile, caFile);
    await reloadWith(stack.proxy, config({ ca_file: caFile, allow: { cn: ['test-client'] } }));
    const sneaky = await visit(port, { ca, session: anonymous.session });
    assert.equal(sneaky.reused, false, 'the session from before client certificates were required is not resumed');
    assert.equal(sneaky.served, false, `no certificate, no service: ${sneaky.error}`);

    // With its certificate: served, and its ticket resumes (tls.allow still holds on resumption).
    const withCert = await visit(port, { ca, cert: client });
    assert.equal(withCert.served, true, `${withCert.error}\n${logTail(stack.proxy)}`);
    const resumed = await visit(port, { ca, cert: client, session: withCert.session });
    assert.equal(resumed.reused, true);
    assert.equal(resumed.served, true, `a resumed session of an allowed client is served: ${resumed.error}\n${logTail(stack.proxy)}`);

    // The client CA replaced by another one: the client's certificate no longer verifies, and its
    // ticket from before must not get it in.
    copyFileSync(c.otherCaFile, caFile);
    await reloadWith(stack.proxy, config({ ca_file: caFile, allow: { cn: ['test-client'] } }));
    const stale = await visit(port, { ca, cert: client, session: resumed.session ?? withCert.session });
    assert.equal(stale.reused, false, 'the session from under the old CA is not resumed');
    assert.equal(stale.served, false, `a certificate the new CA did not sign is refused: ${stale.error}`);
  });
});
