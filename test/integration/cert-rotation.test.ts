// Certificate rotation the way a Kubernetes Secret volume does it: the files are symlinks through
// `..data`, which the kubelet swaps atomically to a new timestamped folder. New handshakes must
// present the new certificate within seconds, without a restart or a signal; reloads_total counts
// it; the expiry gauge follows; open connections are untouched. A pair whose key does not match
// is refused (reloads_total{result="error"}) and the last good certificate stays.
import assert from 'node:assert/strict';
import { cpSync, mkdirSync, readFileSync, renameSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { describe, test, type TestContext } from 'node:test';
import YAML from 'yaml';
import { createSelfSignedCertificate } from '../../src/config/devcert.js';
import { OPENSSL } from '../helpers/certs.js';
import { makeTempDir, run, sleep, waitFor } from '../helpers/common.js';
import { logTail } from '../helpers/fixture.js';
import { metricValue, startProxy, waitForMetric, type Proxy } from '../helpers/proxy.js';
import { startRedis } from '../helpers/redis.js';
import { encodeCommand } from '../helpers/resp.js';
import { openTls } from '../helpers/tls-conn.js';

const RELOADS = 'resp_tls_proxy_reloads_total';
const EXPIRY = 'resp_tls_proxy_tls_cert_expiry_timestamp_seconds';
/** The proxy's second look at files that did not load (src/reload.ts). */
const CERT_SETTLE_MS = 2_000;

async function openssl(cwd: string, ...args: string[]): Promise<void> {
  const r = await run(OPENSSL, args, { cwd, timeoutMs: 30_000 });
  if (r.code !== 0) throw new Error(`openssl ${args.join(' ')} failed (${r.code}): ${r.stderr}${r.stdout}`);
}

/** A self-signed localhost certificate valid for `days`, as tls.crt and tls.key in `dir`. */
async function makeCert(dir: string, days: number): Promise<void> {
  mkdirSync(dir, { recursive: true });
  await openssl(dir, 'genpkey', '-algorithm', 'EC', '-pkeyopt', 'ec_paramgen_curve:P-256', '-out', 'tls.key');
  await openssl(dir, 'req', '-x509', '-new', '-key', 'tls.key', '-sha256', '-days', String(days), '-subj', '/CN=localhost',
    '-addext', 'subjectAltName=DNS:localhost,IP:127.0.0.1', '-out', 'tls.crt');
}

/** Lays out a Secret volume as the kubelet does: `..data` → `first`, tls.crt and tls.key through `..data`. */
function linkSecretVolume(volume: string, first: string): void {
  symlinkSync(first, path.join(volume, '..data'));
  symlinkSync(path.join('..data', 'tls.crt'), path.join(volume, 'tls.crt'));
  symlinkSync(path.join('..data', 'tls.key'), path.join(volume, 'tls.key'));
}

/** Points `volume/link` (`..data`) at `target` atomically: a new symlink renamed over the old one (what the kubelet's AtomicWriter does). */
function swapData(volume: string, target: string, link = '..data'): void {
  const tmp = path.join(volume, `${link}_tmp`);
  symlinkSync(target, tmp);
  renameSync(tmp, path.join(volume, link));
}

/** A redis-server and a proxy serving the Secret volume's tls.crt and tls.key; both stopped after the test. */
async function proxyOnVolume(t: TestContext, volume: string, { tls, ...extra }: Record<string, unknown> = {}): Promise<Proxy> {
  const redis = await startRedis();
  t.after(() => redis.stop());
  const proxy = await startProxy({
    backend: { host: '127.0.0.1', port: redis.port },
    tls: { cert_file: path.join(volume, 'tls.crt'), key_file: path.join(volume, 'tls.key'), ...(tls as object | undefined) },
    ...extra,
  });
  t.after(() => proxy.stop());
  return proxy;
}

async function servedCert(port: number): Promise<{ fingerprint: string; serial: string; validTo: number }> {
  const conn = await openTls(port);
  try {
    const c = conn.peerCertificate();
    return { fingerprint: c.fingerprint256, serial: c.serialNumber, validTo: Date.parse(c.valid_to) / 1000 };
  } finally {
    conn.close();
  }
}

describe('certificate rotation through a Kubernetes Secret volume', { timeout: 120_000 }, () => {
  test('swapping ..data makes new handshakes present the new certificate; a mismatched pair is refused', { timeout: 90_000 }, async (t) => {
    const volume = makeTempDir('resp-tls-proxy-secret-');
    const first = '..2026_01_01_00_00_00.000000001';
    const second = '..2026_02_01_00_00_00.000000002';
    const third = '..2026_03_01_00_00_00.000000003';
    await makeCert(path.join(volume, first), 30);
    await makeCert(path.join(volume, second), 400);
    // The third: the key of one certificate next to another one's certificate.
    await makeCert(path.join(volume, third), 10);
    await makeCert(path.join(volume, 'other'), 10);
    renameSync(path.join(volume, 'other', 'tls.key'), path.join(volume, third, 'tls.key'));
    linkSecretVolume(volume, first);

    const proxy = await proxyOnVolume(t, volume);

    const before = await servedCert(proxy.port);
    const m0 = await proxy.metrics();
    assert.equal(metricValue(m0, EXPIRY), before.validTo, 'expiry gauge = notAfter of the first certificate');
    const success0 = metricValue(m0, RELOADS, { result: 'success' });
    const errors0 = metricValue(m0, RELOADS, { result: 'error' });

    // A connection opened before the rotation.
    const open = await openTls(proxy.port);
    t.after(() => open.close());
    assert.equal((await open.request(encodeCommand(['PING'])))[0]!.toString(), '+PONG\r\n');

    // Rotate: new folder, ..data swapped, old folder removed (as the kubelet does).
    const swappedAt = Date.now();
    swapData(volume, second);
    rmSync(path.join(volume, first), { recursive: true, force: true });
    const after = await waitFor('the new certificate on a new handshake', async () => {
      const c = await servedCert(proxy.port);
      return c.fingerprint !== before.fingerprint ? c : null;
    }, 10_000, 100);
    const tookMs = Date.now() - swappedAt;
    assert.notEqual(after.serial, before.serial);
    assert.ok(after.validTo > before.validTo + 300 * 86400, `new notAfter ${after.validTo} vs old ${before.validTo}`);

    // Counted once (later folder events that do not change the content are not reloads).
    await sleep(1_000);
    const m1 = await proxy.metrics();
    assert.equal(metricValue(m1, RELOADS, { result: 'success' }), success0 + 1, logTail(proxy));
    assert.equal(metricValue(m1, RELOADS, { result: 'error' }), errors0, logTail(proxy));
    assert.equal(metricValue(m1, EXPIRY), after.validTo, 'expiry gauge follows the new certificate');
    await waitFor('the reload log line', () => proxy.logs().some((r) => r.msg === 'configuration reloaded' && r.trigger === 'certificate files changed'), 5_000);

    // The connection opened before the rotation goes on.
    assert.equal((await open.request(encodeCommand(['PING'])))[0]!.toString(), '+PONG\r\n');
    assert.equal(open.isEnded, false);

    // A key that does not match its certificate: counted as an error, the second certificate stays.
    swapData(volume, third);
    const m2 = await waitForMetric(proxy, RELOADS, { result: 'error' }, (v) => v >= errors0 + 1, 10_000);
    assert.equal(metricValue(m2, RELOADS, { result: 'error' }), errors0 + 1, logTail(proxy));
    assert.equal(metricValue(m2, RELOADS, { result: 'success' }), success0 + 1, logTail(proxy));
    const still = await servedCert(proxy.port);
    assert.equal(still.fingerprint, after.fingerprint, 'the last good certificate is still served');
    assert.equal(metricValue(m2, EXPIRY), after.validTo);
    assert.equal(proxy.proc.exitCode, null, 'the proxy runs on');
    t.diagnostic(`new certificate served ${tookMs} ms after the ..data swap (serial ${before.serial} → ${after.serial}, notAfter +${Math.round((after.validTo - before.validTo) / 86400)} days); reloads success ${success0}→${success0 + 1}, error ${errors0}→${errors0 + 1} after the mismatched pair`);
  });

  test('folder events that change no byte are not reloads; the next real change is', { timeout: 60_000 }, async (t) => {
    const volume = makeTempDir('resp-tls-proxy-touch-');
    const first = '..2026_01_01_00_00_00.000000001';
    const copy = '..2026_01_02_00_00_00.000000002';
    const next = '..2026_02_01_00_00_00.000000003';
    await makeCert(path.join(volume, first), 30);
    await makeCert(path.join(volume, next), 400);
    cpSync(path.join(volume, first), path.join(volume, copy), { recursive: true });
    linkSecretVolume(volume, first);

    const proxy = await proxyOnVolume(t, volume);
    const success0 = metricValue(await proxy.metrics(), RELOADS, { result: 'success' });

    // The same bytes: rewritten in place, then re-projected into a new folder.
    const crt = path.join(volume, first, 'tls.crt');
    writeFileSync(crt, readFileSync(crt));
    swapData(volume, copy);
    rmSync(path.join(volume, first), { recursive: true, force: true });
    await sleep(1_500); // > the watch's 250 ms debounce
    assert.equal(metricValue(await proxy.metrics(), RELOADS, { result: 'success' }), success0, logTail(proxy));

    // A new certificate: one reload.
    swapData(volume, next);
    await waitForMetric(proxy, RELOADS, { result: 'success' }, (v) => v >= success0 + 1, 10_000);
    await sleep(1_000);
    assert.equal(metricValue(await proxy.metrics(), RELOADS, { result: 'success' }), success0 + 1, logTail(proxy));
  });

  test('a certificate and key copied over in place, in pieces, 0.6 s apart: one reload, no failed one counted', { timeout: 60_000 }, async (t) => {
    const dir = makeTempDir('resp-tls-proxy-copy-');
    const fresh = makeTempDir('resp-tls-proxy-copy-src-');
    await makeCert(dir, 30);
    await makeCert(fresh, 400);
    const proxy = await proxyOnVolume(t, dir);
    const before = await servedCert(proxy.port);
    const m0 = await proxy.metrics();
    const success0 = metricValue(m0, RELOADS, { result: 'success' });
    const errors0 = metricValue(m0, RELOADS, { result: 'error' });

    // What a plain copy (cp, an Ansible task) looks like to the watcher: half a certificate, the
    // whole new certificate next to the old key, then the new key.
    const crt = readFileSync(path.join(fresh, 'tls.crt'));
    writeFileSync(path.join(dir, 'tls.crt'), crt.subarray(0, crt.length >> 1));
    await sleep(600);
    writeFileSync(path.join(dir, 'tls.crt'), crt);
    await sleep(600);
    writeFileSync(path.join(dir, 'tls.key'), readFileSync(path.join(fresh, 'tls.key')));
    await waitForMetric(proxy, RELOADS, { result: 'success' }, (v) => v >= success0 + 1, 10_000);
    await sleep(2_500); // past the second look a failure would have had
    const m1 = await proxy.metrics();
    // Each piece used to count as a failed reload (and fire the reload-failed alert).
    assert.equal(metricValue(m1, RELOADS, { result: 'error' }), errors0, logTail(proxy));
    assert.equal(metricValue(m1, RELOADS, { result: 'success' }), success0 + 1, logTail(proxy));
    assert.notEqual((await servedCert(proxy.port)).fingerprint, before.fingerprint);
  });

  test('a certificate change reloads the certificates only: an edit of the config file waits for SIGHUP', { timeout: 60_000 }, async (t) => {
    const volume = makeTempDir('resp-tls-proxy-certs-only-');
    const first = '..2026_01_01_00_00_00.000000001';
    const next = '..2026_02_01_00_00_00.000000002';
    await makeCert(path.join(volume, first), 30);
    await makeCert(path.join(volume, next), 400);
    linkSecretVolume(volume, first);
    const proxy = await proxyOnVolume(t, volume, { limits: { max_multibulk_len: 10 } });
    const success0 = metricValue(await proxy.metrics(), RELOADS, { result: 'success' });

    // An edit not applied yet (no SIGHUP), then a certificate rotation.
    const cfg = YAML.parse(readFileSync(proxy.configFile, 'utf8')) as { limits: Record<string, number> };
    cfg.limits.max_multibulk_len = 3;
    writeFileSync(proxy.configFile, YAML.stringify(cfg));
    swapData(volume, next);
    await waitForMetric(proxy, RELOADS, { result: 'success' }, (v) => v >= success0 + 1, 10_000);

    // New connections: the new certificate, and still the running limit (10).
    const conn = await openTls(proxy.port);
    t.after(() => conn.close());
    assert.ok(Date.parse(conn.peerCertificate().valid_to) / 1000 > Date.now() / 1000 + 300 * 86400, 'the new certificate');
    const [reply] = await conn.request(encodeCommand(['DEL', 'k1', 'k2', 'k3', 'k4']));
    assert.equal(reply!.toString('latin1'), ':0\r\n', logTail(proxy));
  });

  test('a symlink swapped above the certificate folder, which no folder event reports, is found by the poll; a broken pair is counted at every poll', { timeout: 60_000 }, async (t) => {
    // certs/current -> v1 holds tls.crt and tls.key; the proxy watches certs/current, i.e. v1.
    // Pointing current at v2, with v1 kept, changes nothing in v1.
    const base = makeTempDir('resp-tls-proxy-above-');
    await makeCert(path.join(base, 'v1'), 30);
    await makeCert(path.join(base, 'v2'), 400);
    await makeCert(path.join(base, 'v3'), 10);
    await makeCert(path.join(base, 'other'), 10);
    renameSync(path.join(base, 'other', 'tls.key'), path.join(base, 'v3', 'tls.key')); // v3: a key of another certificate
    symlinkSync('v1', path.join(base, 'current'));
    const swapCurrent = (target: string) => swapData(base, target, 'current');
    const POLL_MS = 400;
    const proxy = await proxyOnVolume(t, path.join(base, 'current'), { tls: { poll_interval_ms: POLL_MS } });
    const before = await servedCert(proxy.port);
    const m0 = await proxy.metrics();
    const success0 = metricValue(m0, RELOADS, { result: 'success' });
    const errors0 = metricValue(m0, RELOADS, { result: 'error' });

    swapCurrent('v2');
    const after = await waitFor('the new certificate on a new handshake', async () => {
      const c = await servedCert(proxy.port);
      return c.fingerprint !== before.fingerprint ? c : null;
    }, 10_000, 100);
    assert.ok(after.validTo > before.validTo + 300 * 86400, `new notAfter ${after.validTo} vs old ${before.validTo}`);
    assert.equal(metricValue(await proxy.metrics(), RELOADS, { result: 'success' }), success0 + 1, logTail(proxy));

    // A mismatched pair: a failed reload at every poll while it stays (the reload-failure alert
    // holds), and the last good certificate stays.
    swapCurrent('v3');
    await waitForMetric(proxy, RELOADS, { result: 'error' }, (v) => v >= errors0 + 2, 15_000);
    assert.equal((await servedCert(proxy.port)).fingerprint, after.fingerprint, 'the last good certificate is still served');

    // Back to the served pair: no more failures, and no reload either.
    swapCurrent('v2');
    await sleep(CERT_SETTLE_MS + 2 * POLL_MS); // a look under way may still count one
    const errors1 = metricValue(await proxy.metrics(), RELOADS, { result: 'error' });
    await sleep(CERT_SETTLE_MS + 4 * POLL_MS);
    const m2 = await proxy.metrics();
    assert.equal(metricValue(m2, RELOADS, { result: 'error' }), errors1, logTail(proxy));
    assert.equal(metricValue(m2, RELOADS, { result: 'success' }), success0 + 1, logTail(proxy));
  });

  test('a folder that never goes quiet (another file written every 100 ms) still gets its certificate changes looked at: a good one is served, a broken one counted once', { timeout: 60_000 }, async (t) => {
    const dir = makeTempDir('resp-tls-proxy-busy-');
    const fresh = makeTempDir('resp-tls-proxy-busy-src-');
    await makeCert(dir, 30);
    await makeCert(fresh, 400);
    const proxy = await proxyOnVolume(t, dir, { tls: { poll_interval_ms: 0 } }); // the folder watch alone
    const before = await servedCert(proxy.port);
    let n = 0;
    const noise = setInterval(() => writeFileSync(path.join(dir, 'access.log'), `${n++}\n`), 100);
    t.after(() => clearInterval(noise));
    await sleep(500);
    // Both files replaced at once (renamed into place), while the noise goes on.
    for (const f of ['tls.key', 'tls.crt']) {
      cpSync(path.join(fresh, f), path.join(dir, `${f}.new`));
      renameSync(path.join(dir, `${f}.new`), path.join(dir, f));
    }
    const after = await waitFor('the new certificate, with the folder still busy', async () => {
      const c = await servedCert(proxy.port);
      return c.fingerprint !== before.fingerprint ? c : null;
    }, 5_000, 100);
    assert.ok(after.validTo > before.validTo + 300 * 86400, logTail(proxy));

    // A key of another certificate, with the noise still going: one failed reload, counted after
    // the 2 s second look (events do not postpone it), and not again at every later event.
    const errors0 = metricValue(await proxy.metrics(), RELOADS, { result: 'error' });
    const other = makeTempDir('resp-tls-proxy-busy-other-');
    await makeCert(other, 10);
    cpSync(path.join(other, 'tls.key'), path.join(dir, 'tls.key.new'));
    renameSync(path.join(dir, 'tls.key.new'), path.join(dir, 'tls.key'));
    await waitForMetric(proxy, RELOADS, { result: 'error' }, (v) => v >= errors0 + 1, 6_000);
    await sleep(3_000);
    assert.equal(metricValue(await proxy.metrics(), RELOADS, { result: 'error' }), errors0 + 1, logTail(proxy));
    assert.equal((await servedCert(proxy.port)).fingerprint, after.fingerprint, 'the last good certificate is still served');
  });

  test('a tls.sni certificate in its own folder is watched too: swapping it reloads, and the expiry gauge follows it', { timeout: 60_000 }, async (t) => {
    const main = makeTempDir('resp-tls-proxy-main-');
    const volume = makeTempDir('resp-tls-proxy-sni-secret-');
    await makeCert(main, 400);
    const first = '..2026_01_01_00_00_00.000000001';
    const second = '..2026_02_01_00_00_00.000000002';
    await makeCert(path.join(volume, first), 30); // expires before the main certificate
    await makeCert(path.join(volume, second), 200);
    linkSecretVolume(volume, first);

    const redis = await startRedis();
    t.after(() => redis.stop());
    const proxy = await startProxy({
      backend: { host: '127.0.0.1', port: redis.port },
      tls: {
        cert_file: path.join(main, 'tls.crt'),
        key_file: path.join(main, 'tls.key'),
        sni: [{ servername: 'sni.test', cert_file: path.join(volume, 'tls.crt'), key_file: path.join(volume, 'tls.key') }],
      },
    });
    t.after(() => proxy.stop());

    const m0 = await proxy.metrics();
    const success0 = metricValue(m0, RELOADS, { result: 'success' });
    const expiry0 = metricValue(m0, EXPIRY);
    assert.ok(Math.abs(expiry0 - (Date.now() / 1000 + 30 * 86400)) < 2 * 86400, `expiry gauge ${expiry0}: the 30-day SNI certificate expires first`);

    swapData(volume, second);
    rmSync(path.join(volume, first), { recursive: true, force: true });
    const m1 = await waitForMetric(proxy, RELOADS, { result: 'success' }, (v) => v >= success0 + 1, 10_000);
    await sleep(1_000);
    const m2 = await proxy.metrics();
    assert.equal(metricValue(m2, RELOADS, { result: 'success' }), success0 + 1, logTail(proxy));
    const expiry1 = metricValue(m2, EXPIRY);
    assert.ok(Math.abs(expiry1 - (Date.now() / 1000 + 200 * 86400)) < 2 * 86400, `expiry gauge ${expiry1} after the swap: the new 200-day SNI certificate`);
    assert.ok(metricValue(m1, RELOADS, { result: 'error' }) === metricValue(m0, RELOADS, { result: 'error' }), logTail(proxy));
  });
});

describe('an expired certificate', { timeout: 60_000 }, () => {
  test('the proxy starts with it (--check rejects it), and warns at start and after a reload that keeps it', { timeout: 30_000 }, async (t) => {
    const dir = makeTempDir();
    const notAfter = new Date(Date.now() - 86_400_000);
    const { certPem, keyPem } = await createSelfSignedCertificate({ notBefore: new Date(Date.now() - 10 * 86_400_000), notAfter });
    writeFileSync(path.join(dir, 'old.crt'), certPem);
    writeFileSync(path.join(dir, 'old.key'), keyPem);
    const proxy = await startProxy({ tls: { cert_file: path.join(dir, 'old.crt'), key_file: path.join(dir, 'old.key') } });
    t.after(() => proxy.stop());
    const warnings = (): number => proxy.logs().filter((r) => r.msg === 'a certificate served has expired: clients that verify it refuse the handshake').length;
    await waitFor('the warning at start', () => warnings() === 1 || null, 5_000).catch((e: unknown) => { throw new Error(`${String(e)}\n${logTail(proxy)}`); });
    const rec = proxy.logs().find((r) => r.cert_expired !== undefined)!;
    assert.equal(rec.level, 40, logTail(proxy));
    assert.equal(Math.floor(Date.parse(String(rec.cert_expired)) / 1000), Math.floor(notAfter.getTime() / 1000), logTail(proxy));
    process.kill(proxy.pid, 'SIGHUP');
    await waitFor('the warning after the reload', () => warnings() === 2 || null, 5_000).catch((e: unknown) => { throw new Error(`${String(e)}\n${logTail(proxy)}`); });
  });
});
