// When the backend ends the connection — QUIT, CLIENT KILL, its own protocol error, a crash —
// every byte it sent reaches the client, then the close is orderly (close_notify).
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import net, { type AddressInfo } from 'node:net';
import { describe, test } from 'node:test';
import { logTail, useStack, type Stack } from '../helpers/fixture.js';
import { closeRecords, metricSamples, metricValue, startProxy, waitForMetric } from '../helpers/proxy.js';
import { startRedis } from '../helpers/redis.js';
import { openTls } from '../helpers/tls-conn.js';
import { redisCliTls } from '../helpers/redis-cli.js';
import { sleep, waitFor } from '../helpers/common.js';
import { encodeCommand, encodePipeline, msetArgs, msetPayload, show } from '../helpers/resp.js';
import { describe as showResult, strictClient, type StrictClientResult } from '../helpers/strict-client.js';

const CLOSES = 'resp_tls_proxy_client_closes_total';

function assertOrderly(stack: Stack, r: StrictClientResult, reply: string, payloadLength?: number): void {
  const why = `${showResult(r)}\n${logTail(stack.proxy)}`;
  assert.equal(r.reply.toString('latin1'), reply, why);
  assert.equal(r.close, 'close_notify', why);
  assert.equal(r.writeError, null, why);
  if (payloadLength !== undefined) assert.equal(r.wrote, payloadLength, why);
}

/** /metrics once `n` graceful closes, whatever their reason, are counted. */
async function afterGracefulCloses(stack: Stack, n: number): Promise<string> {
  return waitFor(`${n} graceful closes`, async () => {
    const text = await stack.proxy.metrics();
    return metricSamples(text, CLOSES, { mode: 'graceful' }).reduce((a, s) => a + s.value, 0) >= n ? text : undefined;
  }, 10_000);
}

/** The `id=` of each backend client whose last command was `cmd` (CLIENT LIST, run directly on redis). */
async function backendClientIds(stack: Stack, cmd: string): Promise<string[]> {
  const list = await stack.redis.cli('CLIENT', 'LIST');
  return list.split('\n').filter((l) => l.includes(` cmd=${cmd} `)).map((l) => /^id=(\d+)/.exec(l)?.[1] ?? '').filter(Boolean);
}

/**
 * Sends `payload` through the proxy, waits until Redis lists the proxy's backend connection with
 * `cmd` as its last command, kills that connection (CLIENT KILL ID, directly on Redis), and
 * returns what the client read until the proxy closed.
 */
async function killBackendDuring(stack: Stack, payload: Buffer, cmd: string): Promise<StrictClientResult> {
  const client = strictClient({ port: stack.proxy.port, payload, caFile: stack.certs.caFile, readTimeoutMs: 15_000 });
  const ids = await waitFor(`the proxy's backend connection in CLIENT LIST with cmd=${cmd}`, async () => {
    const found = await backendClientIds(stack, cmd);
    return found.length === 1 ? found : undefined;
  }, 10_000);
  assert.equal(await stack.redis.cli('CLIENT', 'KILL', 'ID', ids[0]!), '1');
  return client;
}

describe('backend closes: QUIT and CLIENT KILL', { timeout: 120_000 }, () => {
  const stack = useStack();

  test('SET then QUIT → +OK +OK, then close_notify', { timeout: 30_000 }, async () => {
    const payload = encodePipeline([['SET', 'quit-key', 'v'], ['QUIT']]);
    const r = await strictClient({ port: stack.proxy.port, payload, caFile: stack.certs.caFile });
    assertOrderly(stack, r, '+OK\r\n+OK\r\n', payload.length);
    assert.equal(await stack.redis.cli('GET', 'quit-key'), 'v');
  });

  test('CLIENT KILL of the proxy\'s backend connection → the reply already produced, then close_notify', { timeout: 30_000 }, async () => {
    // ECHO marks the proxy's backend connection in CLIENT LIST (cmd=echo) while the client waits.
    const payload = encodeCommand(['ECHO', 'before-kill']);
    const r = await killBackendDuring(stack, payload, 'echo');
    assertOrderly(stack, r, '$11\r\nbefore-kill\r\n', payload.length);
  });

  test('CLIENT KILL TYPE normal SKIPME yes (every client but the killer) → close_notify', { timeout: 30_000 }, async () => {
    const payload = encodePipeline([['SET', 'kill2', 'x'], ['GET', 'kill2']]);
    const client = strictClient({ port: stack.proxy.port, payload, caFile: stack.certs.caFile, readTimeoutMs: 15_000 });
    await waitFor('the proxy\'s backend connection in CLIENT LIST', async () => (await backendClientIds(stack, 'get')).length === 1, 10_000);
    assert.equal(await stack.redis.cli('CLIENT', 'KILL', 'TYPE', 'normal', 'SKIPME', 'yes'), '1');
    const r = await client;
    assertOrderly(stack, r, '+OK\r\n$1\r\nx\r\n', payload.length);
  });

  test('/metrics: the CLIENT KILLs are graceful backend_closed, the QUIT graceful client_closed, none abrupt', { timeout: 15_000 }, async () => {
    const text = await waitForMetric(stack.proxy, CLOSES, { mode: 'graceful', reason: 'backend_closed' }, (v) => v >= 2);
    assert.equal(metricValue(text, CLOSES, { mode: 'graceful', reason: 'backend_closed' }), 2, text);
    // The backend closes after the client's QUIT too, but that is the client leaving.
    assert.equal(metricValue(text, CLOSES, { mode: 'graceful', reason: 'client_closed' }), 1, text);
    assert.deepEqual(metricSamples(text, CLOSES, { mode: 'abrupt' }).filter((s) => s.value > 0), [], text);
    // Logged at warn after the two CLIENT KILLs (an operator at log.level warn sees a backend that
    // closed on its clients), at info after the client's QUIT.
    const levels = stack.proxy.logs().filter((r) => r.reason === 'backend_closed' || r.reason === 'client_closed').map((r) => `${String(r.reason)}:${String(r.level)}`);
    assert.deepEqual(levels.sort(), ['backend_closed:40', 'backend_closed:40', 'client_closed:30'], logTail(stack.proxy));
  });
});

describe('a backend that rejects the command itself (redis-server --requirepass)', { timeout: 120_000 }, () => {
  // The proxy's max_multibulk_len stays at its default (1048576): it is Redis that says no.
  const stack = useStack({ redis: { password: 'secret' } });
  const MBULK = '-ERR Protocol error: unauthenticated multibulk length\r\n';

  test('unauthenticated MSET with 50,000 pairs → Redis\'s own error, then close_notify, whole write succeeded', { timeout: 60_000 }, async () => {
    const payload = msetPayload(50_000);
    const r = await strictClient({ port: stack.proxy.port, payload, caFile: stack.certs.caFile });
    assertOrderly(stack, r, MBULK, payload.length);
  });

  test('PING, then the same MSET → -NOAUTH, the error, close_notify', { timeout: 60_000 }, async () => {
    const payload = Buffer.concat([Buffer.from('PING\r\n'), msetPayload(50_000)]);
    const r = await strictClient({ port: stack.proxy.port, payload, caFile: stack.certs.caFile });
    assertOrderly(stack, r, `-NOAUTH Authentication required.\r\n${MBULK}`, payload.length);
  });

  test('over TLS 1.2 as well', { timeout: 60_000 }, async () => {
    const payload = msetPayload(50_000);
    const r = await strictClient({ port: stack.proxy.port, payload, caFile: stack.certs.caFile, tlsVersion: '1.2' });
    assertOrderly(stack, r, MBULK, payload.length);
  });

  test('redis-cli --tls MSET with 5000 pairs prints Redis\'s error', { timeout: 30_000 }, async () => {
    const r = await redisCliTls(stack.proxy.port, stack.certs.caFile, 'MSET', ...msetArgs(5000));
    assert.equal(r.stdout.trim(), 'ERR Protocol error: unauthenticated multibulk length', `stdout=${show(r.stdout)} stderr=${show(r.stderr)}`);
    assert.equal(r.stderr, '');
  });

  test('nothing was stored; AUTH then the same MSET succeeds through the proxy', { timeout: 60_000 }, async () => {
    assert.equal(await stack.redis.cli('DBSIZE'), '0');
    const payload = Buffer.concat([encodeCommand(['AUTH', 'secret']), msetPayload(50_000), encodeCommand(['QUIT'])]);
    const r = await strictClient({ port: stack.proxy.port, payload, caFile: stack.certs.caFile });
    assertOrderly(stack, r, '+OK\r\n+OK\r\n+OK\r\n', payload.length);
    assert.equal(await stack.redis.cli('DBSIZE'), '50000');
  });

  test('/metrics: graceful backend_closed, none abrupt', { timeout: 15_000 }, async () => {
    // Three closes came from Redis's own error to the strict client; redis-cli's may race the
    // backend's close and count as client_closed, as does the last test's QUIT.
    const text = await afterGracefulCloses(stack, 5);
    assert.ok(metricValue(text, CLOSES, { mode: 'graceful', reason: 'backend_closed' }) >= 3, text);
    assert.ok(metricValue(text, CLOSES, { mode: 'graceful', reason: 'client_closed' }) >= 1, text);
    const graceful = metricSamples(text, CLOSES, { mode: 'graceful' }).reduce((a, s) => a + s.value, 0);
    assert.equal(graceful, 5, text);
    assert.deepEqual(metricSamples(text, CLOSES, { mode: 'abrupt' }).filter((s) => s.value > 0), [], text);
  });
});

describe('the backend crashes (SIGKILL) while a command is pending', { timeout: 60_000 }, () => {
  const stack = useStack();

  test('replies already produced arrive, the pending command gets one -ERR line, then close_notify', { timeout: 30_000 }, async () => {
    const payload = encodePipeline([['SET', 'crash', '1'], ['BLPOP', 'nothing-here', '0']]);
    const client = strictClient({ port: stack.proxy.port, payload, caFile: stack.certs.caFile, readTimeoutMs: 15_000 });
    await waitFor('BLPOP to block on the backend', async () => (await backendClientIds(stack, 'blpop')).length === 1, 10_000);
    process.kill(stack.redis.pid, 'SIGKILL');
    const r = await client;
    const why = `${showResult(r)}\n${logTail(stack.proxy)}`;
    assert.match(r.reply.toString('latin1'), /^\+OK\r\n-ERR [^\r\n]+\r\n$/, why);
    assert.equal(r.close, 'close_notify', why);
    assert.equal(r.writeError, null, why);
  });
});

describe('QUIT with replies uncounted (after SUBSCRIBE)', { timeout: 120_000 }, () => {
  const stack = useStack();

  test('SUBSCRIBE, QUIT → the subscribe reply, +OK, close_notify', { timeout: 30_000 }, async () => {
    const payload = encodePipeline([['SUBSCRIBE', 'quit-ch'], ['QUIT']]);
    const r = await strictClient({ port: stack.proxy.port, payload, caFile: stack.certs.caFile });
    assertOrderly(stack, r, '*3\r\n$9\r\nsubscribe\r\n$7\r\nquit-ch\r\n:1\r\n+OK\r\n', payload.length);
  });

  test('HELLO 3, SUBSCRIBE, BLPOP 0, QUIT (unread behind the BLPOP), then CLIENT KILL of the backend connection → close_notify', { timeout: 30_000 }, async () => {
    const payload = encodePipeline([['HELLO', '3'], ['SUBSCRIBE', 'quit-ch2'], ['BLPOP', 'quit-never', '0'], ['QUIT']]);
    const r = await killBackendDuring(stack, payload, 'blpop');
    const why = `${showResult(r)}\n${logTail(stack.proxy)}`;
    assert.ok(r.reply.toString('latin1').endsWith('>3\r\n$9\r\nsubscribe\r\n$8\r\nquit-ch2\r\n:1\r\n'), why);
    assert.equal(r.close, 'close_notify', why);
  });

  test('/metrics: the QUIT Redis answered is client_closed; the one it never read is backend_closed, logged at warn', { timeout: 15_000 }, async () => {
    const text = await afterGracefulCloses(stack, 2);
    assert.equal(metricValue(text, CLOSES, { mode: 'graceful', reason: 'client_closed' }), 1, text);
    assert.equal(metricValue(text, CLOSES, { mode: 'graceful', reason: 'backend_closed' }), 1, text);
    const levels = stack.proxy.logs().filter((r) => r.reason === 'backend_closed').map((r) => r.level as number);
    assert.deepEqual(levels, [40], logTail(stack.proxy));
  });
});

describe('something between the proxy and Redis half-closes and stops reading', { timeout: 60_000 }, () => {
  test('its FIN with a large command still being written (then the client resets): the session ends, counted backend_closed, not held for good', { timeout: 30_000 }, async (t) => {
    // Redis closes both ways at once; a middlebox (or another server) may send its FIN and then
    // read nothing. With writes still queued, the socket's 'close' never came, and the client,
    // paused for them, was never read again: its reset went unseen.
    const redis = await startRedis();
    t.after(() => redis.stop());
    let stopReading: (() => void) | null = null;
    let halfClose: (() => void) | null = null;
    const relay = net.createServer((down) => {
      const up = net.connect({ host: '127.0.0.1', port: redis.port });
      down.on('error', () => undefined);
      up.on('error', () => undefined);
      down.pipe(up);
      up.on('data', (d: Buffer) => down.write(d));
      stopReading = () => {
        down.unpipe(up);
        down.pause(); // reads nothing more (beyond what fills its buffer)
      };
      halfClose = () => {
        down.end(); // FIN to the proxy
        up.destroy();
      };
    });
    await new Promise<void>((resolve) => relay.listen({ host: '127.0.0.1', port: 0 }, resolve));
    t.after(() => relay.close());
    const proxy = await startProxy({ backend: { host: '127.0.0.1', port: (relay.address() as AddressInfo).port }, close: { drain_timeout_ms: 1000 } });
    t.after(() => proxy.stop());
    const c = await openTls(proxy.port, { ca: readFileSync(proxy.certs.caFile) });
    t.after(() => c.close());
    assert.equal((await c.request(encodeCommand(['PING'])))[0]!.toString('latin1'), '+PONG\r\n');
    stopReading!();
    const size = 20 * 1024 * 1024;
    c.socket.write(Buffer.concat([Buffer.from(`*3\r\n$3\r\nSET\r\n$3\r\nbig\r\n$${size}\r\n`, 'latin1'), Buffer.alloc(size, 0x62), Buffer.from('\r\n', 'latin1')]));
    await sleep(500); // the proxy's writes to the relay are queued by now
    halfClose!();
    await sleep(300);
    c.socket.resetAndDestroy();
    await waitFor('the session gone', async () => metricValue(await proxy.metrics(), 'resp_tls_proxy_connections_active') === 0, 5_000)
      .catch((e: unknown) => { throw new Error(`${String(e)}\n${logTail(proxy)}`); });
    assert.equal(await redis.cli('EXISTS', 'big'), '0', 'the SET reached Redis: the test did not test it');
    assert.deepEqual(closeRecords(proxy.logs()).map((r) => r.reason), ['backend_closed'], logTail(proxy));
  });
});
