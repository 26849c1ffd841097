// Every protocol violation is answered with Redis's own error text, byte for byte, after the
// replies to the commands before it, and then the connection closes with close_notify. Where
// Redis itself rejects the same bytes, the proxy's reply is compared with a real redis-server's.
import assert from 'node:assert/strict';
import net from 'node:net';
import { describe, test } from 'node:test';
import { logTail, useStack, type Stack } from '../helpers/fixture.js';
import { metricValue, waitForMetric } from '../helpers/proxy.js';
import { ERR, encodeCommand, show } from '../helpers/resp.js';
import { describe as showResult, strictClient } from '../helpers/strict-client.js';

async function expectClose(stack: Stack, payload: Buffer, reply: string): Promise<void> {
  const r = await strictClient({ port: stack.proxy.port, payload, caFile: stack.certs.caFile });
  const why = `payload=${show(payload, 200)}\n${showResult(r)}\n${logTail(stack.proxy)}`;
  assert.equal(r.reply.toString('latin1'), reply, why);
  assert.equal(r.close, 'close_notify', why);
  assert.equal(r.writeError, null, why);
  assert.equal(r.wrote, payload.length, why);
}

describe('limits: max_bulk_len 16, max_inline_len 64', { timeout: 120_000 }, () => {
  const stack = useStack({ proxy: () => ({ limits: { max_bulk_len: 16, max_inline_len: 64 } }) });

  test('a bulk of max_bulk_len bytes passes; one byte more is invalid bulk length, and never reaches the backend', { timeout: 30_000 }, async () => {
    const ok = 'x'.repeat(16);
    const payload = Buffer.concat([
      encodeCommand(['SET', 'k16', ok]),
      encodeCommand(['SET', 'k17', 'y'.repeat(17)]),
    ]);
    await expectClose(stack, payload, `+OK\r\n${ERR.bulk}`);
    assert.equal(await stack.redis.cli('GET', 'k16'), ok);
    assert.equal(await stack.redis.cli('EXISTS', 'k17'), '0');
  });

  test('a huge declared bulk length is rejected on its header, without the body', { timeout: 30_000 }, async () => {
    await expectClose(stack, Buffer.from('PING\r\n*2\r\n$4\r\nECHO\r\n$999999999999\r\n'), `+PONG\r\n${ERR.bulk}`);
  });

  test("an array element that is not a bulk string → expected '$', got 'X'", { timeout: 30_000 }, async () => {
    await expectClose(stack, Buffer.from('PING\r\n*2\r\n$4\r\nECHO\r\nXYZ\r\n'), `+PONG\r\n${ERR.expectedDollar('X')}`);
  });

  test('an inline line over max_inline_len → too big inline request', { timeout: 30_000 }, async () => {
    const payload = Buffer.from(`SET short 1\r\nSET long ${'z'.repeat(200)}\r\n`);
    await expectClose(stack, payload, `+OK\r\n${ERR.inlineTooBig}`);
    assert.equal(await stack.redis.cli('GET', 'short'), '1');
    assert.equal(await stack.redis.cli('EXISTS', 'long'), '0');
  });

  test('an inline line over max_inline_len with no newline at all → too big inline request', { timeout: 30_000 }, async () => {
    await expectClose(stack, Buffer.from('x'.repeat(1000)), ERR.inlineTooBig);
  });

  test('unbalanced quotes → unbalanced quotes in request', { timeout: 30_000 }, async () => {
    await expectClose(stack, Buffer.from('SET q1 "ok"\r\nSET q2 "abc\r\n'), `+OK\r\n${ERR.unbalancedQuotes}`);
    assert.equal(await stack.redis.cli('GET', 'q1'), 'ok');
    assert.equal(await stack.redis.cli('EXISTS', 'q2'), '0');
  });

  test('a closing quote followed by a non-space → unbalanced quotes in request', { timeout: 30_000 }, async () => {
    await expectClose(stack, Buffer.from("ECHO \"a\"b\r\n"), ERR.unbalancedQuotes);
  });

  test('/metrics counts each limit', { timeout: 15_000 }, async () => {
    const text = await waitForMetric(stack.proxy, 'resp_tls_proxy_client_closes_total', { mode: 'graceful', reason: 'protocol_error' }, (v) => v >= 7);
    assert.equal(metricValue(text, 'resp_tls_proxy_protocol_errors_total', { limit: 'max_bulk_len' }), 2, text);
    assert.equal(metricValue(text, 'resp_tls_proxy_protocol_errors_total', { limit: 'max_inline_len' }), 2, text);
    assert.equal(metricValue(text, 'resp_tls_proxy_protocol_errors_total', { limit: 'syntax' }), 3, text);
    assert.equal(metricValue(text, 'resp_tls_proxy_client_closes_total', { mode: 'graceful', reason: 'protocol_error' }), 7, text);
    assert.equal(metricValue(text, 'resp_tls_proxy_client_closes_total', { mode: 'abrupt', reason: 'protocol_error' }), 0, text);
  });
});

/** Sends `payload` straight to redis-server over TCP and collects its reply until it closes. */
function redisDirect(port: number, payload: Buffer): Promise<{ reply: Buffer; closed: boolean }> {
  return new Promise((resolve) => {
    const sock = net.connect({ host: '127.0.0.1', port });
    const chunks: Buffer[] = [];
    const timer = setTimeout(() => { sock.destroy(); resolve({ reply: Buffer.concat(chunks), closed: false }); }, 5_000);
    sock.on('data', (d: Buffer) => chunks.push(d));
    sock.on('error', () => {});
    sock.on('close', () => { clearTimeout(timer); resolve({ reply: Buffer.concat(chunks), closed: true }); });
    sock.write(payload);
  });
}

describe('the same bad bytes: the proxy (default limits) answers exactly as redis-server does', { timeout: 120_000 }, () => {
  const stack = useStack();
  // [name, request, expected reply, whether redis-server rejects the same bytes the same way]
  const vectors: Array<[string, Buffer, string, boolean]> = [
    ['multibulk count not a number', Buffer.from('*abc\r\n'), ERR.multibulk, true],
    // Redis 7 itself accepts counts up to INT_MAX; the proxy's default limit is 1048576.
    ['multibulk count over the default 1048576', Buffer.from('*1048577\r\n'), ERR.multibulk, false],
    ['bulk length not a number', Buffer.from('*1\r\n$abc\r\n'), ERR.bulk, true],
    ['negative bulk length', Buffer.from('*1\r\n$-1\r\n'), ERR.bulk, true],
    ["element starting with ':'", Buffer.from('*1\r\n:5\r\n'), ERR.expectedDollar(':'), true],
    ['element line that is empty (CR shown as a space)', Buffer.from('*1\r\n\r\n'), ERR.expectedDollar(' '), true],
    ['unbalanced double quote', Buffer.from('SET k "abc\r\n'), ERR.unbalancedQuotes, true],
    ['unbalanced single quote', Buffer.from("SET k 'abc\r\n"), ERR.unbalancedQuotes, true],
    ['64 KiB of inline bytes with no newline', Buffer.from('v'.repeat(70_000)), ERR.inlineTooBig, true],
    // Redis only rejects a long inline line while its newline has not arrived; the proxy's
    // max_inline_len (default 65536) holds for the whole line.
    ['inline line over the default max_inline_len, newline included', Buffer.from(`SET k ${'v'.repeat(70_000)}\r\n`), ERR.inlineTooBig, false],
    ['PING then a bad element: PONG first', Buffer.from('PING\r\n*1\r\nX\r\n'), `+PONG\r\n${ERR.expectedDollar('X')}`, true],
  ];
  for (const [name, payload, expected, redisToo] of vectors) {
    test(name, { timeout: 30_000 }, async () => {
      if (redisToo) {
        const direct = await redisDirect(stack.redis.port, payload);
        assert.equal(direct.reply.toString('latin1'), expected, `redis-server itself answers ${show(direct.reply)}`);
        assert.equal(direct.closed, true, 'redis-server closes after a protocol error');
      }
      await expectClose(stack, payload, expected);
      assert.equal(await stack.redis.cli('EXISTS', 'k'), '0');
    });
  }
});
