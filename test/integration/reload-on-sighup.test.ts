// SIGHUP re-reads the config file: new connections are held to the new limits, connections
// already open keep the limits they started with; a broken file is counted as an error and the
// running configuration stays.
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { after, describe, test } from 'node:test';
import YAML from 'yaml';
import { sleep, waitFor } from '../helpers/common.js';
import { logTail, useStack } from '../helpers/fixture.js';
import { waitForMetric, metricValue, type Proxy } from '../helpers/proxy.js';
import { ERR, encodeCommand, show } from '../helpers/resp.js';
import { describe as showResult, strictClient } from '../helpers/strict-client.js';
import { openTls, type TlsConn } from '../helpers/tls-conn.js';

const RELOADS = 'resp_tls_proxy_reloads_total';

function rewriteConfig(proxy: Proxy, edit: (cfg: Record<string, unknown>) => void): void {
  const cfg = YAML.parse(readFileSync(proxy.configFile, 'utf8')) as Record<string, unknown>;
  edit(cfg);
  writeFileSync(proxy.configFile, YAML.stringify(cfg));
}

/** A 4-element command: over a limit of 3, within 10. */
const FOUR = encodeCommand(['DEL', 'k1', 'k2', 'k3']);
/** A 5-element command. */
const FIVE = encodeCommand(['DEL', 'k1', 'k2', 'k3', 'k4']);

describe('SIGHUP reload of limits.max_multibulk_len', { timeout: 120_000 }, () => {
  const stack = useStack({ proxy: () => ({ limits: { max_multibulk_len: 10 } }) });
  let connA: TlsConn | undefined;
  let originalText = '';
  after(() => connA?.close());

  test('before the reload: a 5-element command is within max_multibulk_len 10', { timeout: 30_000 }, async () => {
    originalText = readFileSync(stack.proxy.configFile, 'utf8');
    connA = await openTls(stack.proxy.port, { ca: readFileSync(stack.certs.caFile) });
    const [r] = await connA.request(FIVE);
    assert.equal(r!.toString('latin1'), ':0\r\n');
  });

  test('after max_multibulk_len: 3 and SIGHUP: a new connection is held to 3, connection A keeps 10', { timeout: 30_000 }, async (t) => {
    assert.ok(connA, 'connection A was not opened');
    const p = stack.proxy;
    const before = metricValue(await p.metrics(), RELOADS, { result: 'success' });
    rewriteConfig(p, (cfg) => {
      (cfg.limits as Record<string, unknown>).max_multibulk_len = 3;
    });
    const t0 = Date.now();
    process.kill(p.pid, 'SIGHUP');
    const text = await waitForMetric(p, RELOADS, { result: 'success' }, (v) => v >= before + 1, 10_000);
    const tookMs = Date.now() - t0;
    assert.equal(metricValue(text, RELOADS, { result: 'success' }), before + 1, logTail(p));
    // (the log line may reach us after the metric: two pipes)
    await waitFor('the reload log line', () => p.logs().some((r) => r.msg === 'configuration reloaded' && r.trigger === 'SIGHUP'), 5_000);
    t.diagnostic(`reload counted ${tookMs} ms after SIGHUP`);

    // A new connection: 3 elements pass, 4 are refused with Redis's error and an orderly close.
    const r = await strictClient({ port: p.port, payload: Buffer.concat([encodeCommand(['SET', 'a', '1']), FOUR]), caFile: stack.certs.caFile });
    const why = `${showResult(r)}\n${logTail(p)}`;
    assert.equal(r.reply.toString('latin1'), `+OK\r\n${ERR.multibulk}`, why);
    assert.equal(r.close, 'close_notify', why);

    // Connection A, opened under the old config, still takes 5 elements, and more commands.
    const [five] = await connA.request(FIVE);
    assert.equal(five!.toString('latin1'), ':0\r\n', show(five!));
    const [get] = await connA.request(encodeCommand(['GET', 'a']));
    assert.equal(get!.toString('latin1'), '$1\r\n1\r\n');
    assert.equal(connA.isEnded, false);
  });

  test('a broken file and SIGHUP: counted as an error, the running configuration stays', { timeout: 30_000 }, async () => {
    assert.ok(connA, 'connection A was not opened');
    const p = stack.proxy;
    const m0 = await p.metrics();
    const errors0 = metricValue(m0, RELOADS, { result: 'error' });
    const success0 = metricValue(m0, RELOADS, { result: 'success' });
    // max_multibulk_len back to 10, but with a negative bulk limit and an unknown key: must not apply.
    rewriteConfig(p, (cfg) => {
      const limits = cfg.limits as Record<string, unknown>;
      limits.max_multibulk_len = 10;
      limits.max_bulk_len = -1;
      cfg.no_such_key = true;
    });
    process.kill(p.pid, 'SIGHUP');
    const text = await waitForMetric(p, RELOADS, { result: 'error' }, (v) => v >= errors0 + 1, 10_000);
    assert.equal(metricValue(text, RELOADS, { result: 'error' }), errors0 + 1, logTail(p));
    assert.equal(metricValue(text, RELOADS, { result: 'success' }), success0, logTail(p));
    const failed = await waitFor('the reload-failed log line', () => p.logs().find((r) => r.msg === 'reload failed; keeping the running configuration'), 5_000);
    const problems = JSON.stringify(failed.problems);
    assert.match(problems, /limits\.max_bulk_len/);
    assert.match(problems, /no_such_key: unknown key/);

    // New connections: still the limit 3 of the last good reload.
    const r = await strictClient({ port: p.port, payload: Buffer.concat([encodeCommand(['PING']), FOUR]), caFile: stack.certs.caFile });
    const why = `${showResult(r)}\n${logTail(p)}`;
    assert.equal(r.reply.toString('latin1'), `+PONG\r\n${ERR.multibulk}`, why);
    assert.equal(r.close, 'close_notify', why);
    // Connection A is untouched.
    const [five] = await connA.request(FIVE);
    assert.equal(five!.toString('latin1'), ':0\r\n');

    // Repair the file: the next SIGHUP succeeds again and max_multibulk_len is 10 for new connections.
    writeFileSync(p.configFile, originalText);
    process.kill(p.pid, 'SIGHUP');
    await waitForMetric(p, RELOADS, { result: 'success' }, (v) => v >= success0 + 1, 10_000);
    const ok = await strictClient({ port: p.port, payload: FIVE, caFile: stack.certs.caFile, afterWrite: 'close_notify' });
    assert.equal(ok.reply.toString('latin1'), ':0\r\n', showResult(ok));
    assert.equal(ok.close, 'close_notify', showResult(ok));
  });

});

describe('SIGHUP: log.level applies at once; restart-only keys are named in a warning', { timeout: 60_000 }, () => {
  const stack = useStack();

  test('log.level warn and a new tls.handshake_timeout_ms, SIGHUP → a warning naming the key; closes (info) are no longer logged', { timeout: 30_000 }, async () => {
    const p = stack.proxy;
    const closes = (): number => p.logs().filter((r) => typeof r.reason === 'string' && typeof r.mode === 'string').length;
    const ping = async (): Promise<void> => {
      const r = await strictClient({ port: p.port, payload: encodeCommand(['PING']), caFile: stack.certs.caFile, afterWrite: 'close_notify' });
      assert.equal(r.reply.toString('latin1'), '+PONG\r\n', showResult(r));
    };
    await ping();
    await waitFor('the close logged at info', () => closes() === 1, 5_000);

    rewriteConfig(p, (cfg) => {
      cfg.log = { level: 'warn' };
      cfg.tls = { ...(cfg.tls as object), handshake_timeout_ms: 2_000 };
    });
    process.kill(p.pid, 'SIGHUP');
    const warning = await waitFor('the restart-only warning', () => p.logs().find((r) => r.msg === 'these changes take effect only on restart'), 5_000);
    assert.deepEqual(warning.keys, ['tls.handshake_timeout_ms'], logTail(p));
    // Still not applied at the next reload: said again, not only the first time.
    process.kill(p.pid, 'SIGHUP');
    await waitFor('the restart-only warning again', () => p.logs().filter((r) => r.msg === 'these changes take effect only on restart').length === 2, 5_000);
    await ping();
    await sleep(500);
    assert.equal(closes(), 1, `a close was logged at info after log.level warn\n${logTail(p)}`);
  });
});

describe('SIGHUP with a new tls.handshake_timeout_ms: connections waiting for a handshake place keep the running one', { timeout: 60_000 }, () => {
  const stack = useStack({ proxy: () => ({ tls: { max_handshakes: 1, handshake_timeout_ms: 3_000 } }) });

  test('reloaded to 500 ms (restart-only): a connection waiting behind a stalled handshake is still open after 1.5 s, and both are cut by the running 3 s', { timeout: 30_000 }, async (t) => {
    const p = stack.proxy;
    rewriteConfig(p, (cfg) => {
      cfg.tls = { ...(cfg.tls as object), handshake_timeout_ms: 500 };
    });
    process.kill(p.pid, 'SIGHUP');
    await waitFor('the restart-only warning', () => p.logs().find((r) => r.msg === 'these changes take effect only on restart'), 5_000);
    // Two TCP connections that never send a byte: the first holds the one handshake place, the
    // second waits for it. (The listener used to take the reloaded 500 ms for waiting ones.)
    const closedAt: number[] = [];
    const t0 = Date.now();
    const raws = [0, 1].map(() => {
      const s = net.connect({ host: '127.0.0.1', port: p.port });
      s.on('error', () => undefined);
      s.on('close', () => closedAt.push(Date.now() - t0));
      s.resume();
      return s;
    });
    t.after(() => raws.forEach((s) => s.destroy()));
    await sleep(1_500);
    assert.deepEqual(closedAt, [], `closed before the running handshake_timeout_ms (3 s)\n${logTail(p)}`);
    await waitFor('both cut', () => closedAt.length === 2, 15_000);
    assert.ok(closedAt.every((ms) => ms >= 2_900), `closed after ${closedAt.join(', ')} ms`);
  });
});
