// Commands that arrived complete before the offending one are forwarded and answered, in order,
// before the error reply — exactly what Redis does with a pipeline. The offending command never
// reaches the backend.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { logTail, useStack } from '../helpers/fixture.js';
import { ERR, encodeCommand, encodePipeline, msetPayload, show } from '../helpers/resp.js';
import { describe as showResult, strictClient } from '../helpers/strict-client.js';

describe('pipeline, then a command over max_multibulk_len', { timeout: 120_000 }, () => {
  // 3, so that inline `SET a 1` (three arguments) is within the limit and MSET with 2+ pairs is not.
  const stack = useStack({ proxy: () => ({ limits: { max_multibulk_len: 3 } }) });

  test('inline SET a 1, GET a, then MSET with 5000 pairs → +OK, $1 1, the error, close_notify', { timeout: 30_000 }, async () => {
    const payload = Buffer.concat([Buffer.from('SET a 1\r\nGET a\r\n'), msetPayload(5000)]);
    const r = await strictClient({ port: stack.proxy.port, payload, caFile: stack.certs.caFile });
    const why = `${showResult(r)}\n${logTail(stack.proxy)}`;
    assert.equal(r.reply.toString('latin1'), `+OK\r\n$1\r\n1\r\n${ERR.multibulk}`, why);
    assert.equal(r.close, 'close_notify', why);
    assert.equal(r.writeError, null, why);
    assert.equal(r.wrote, payload.length, why);
    assert.equal(await stack.redis.cli('GET', 'a'), '1');
    assert.equal(await stack.redis.cli('EXISTS', 'key1', 'key5000'), '0');
  });

  test('the same as multibulk, with the offending header split from the rest', { timeout: 30_000 }, async () => {
    const payload = Buffer.concat([
      encodePipeline([['SET', 'b', 'two'], ['GET', 'b'], ['DEL', 'b']]),
      Buffer.from('*4\r\n$4\r\nMSET\r\n$4\r\nkey1\r\n$4\r\nval1\r\n$4\r\nkey2\r\n$4\r\nval2\r\n'),
    ]);
    const r = await strictClient({ port: stack.proxy.port, payload, caFile: stack.certs.caFile });
    const why = `${showResult(r)}\n${logTail(stack.proxy)}`;
    assert.equal(r.reply.toString('latin1'), `+OK\r\n$3\r\ntwo\r\n:1\r\n${ERR.multibulk}`, why);
    assert.equal(r.close, 'close_notify', why);
    assert.equal(r.writeError, null, why);
    assert.equal(await stack.redis.cli('EXISTS', 'key1', 'key2', 'b'), '0');
  });

  test('commands after the offending one are not forwarded either', { timeout: 30_000 }, async () => {
    const payload = Buffer.concat([
      encodeCommand(['SET', 'before', 'x']),
      Buffer.from('*5\r\n'),
      encodeCommand(['SET', 'after', 'y']),
    ]);
    const r = await strictClient({ port: stack.proxy.port, payload, caFile: stack.certs.caFile });
    const why = `${showResult(r)}\n${logTail(stack.proxy)}`;
    assert.equal(r.reply.toString('latin1'), `+OK\r\n${ERR.multibulk}`, why);
    assert.equal(r.close, 'close_notify', why);
    assert.equal(await stack.redis.cli('GET', 'before'), 'x');
    assert.equal(await stack.redis.cli('EXISTS', 'after'), '0');
  });

  test('an inline command with more arguments than max_multibulk_len is rejected too', { timeout: 30_000 }, async () => {
    const payload = Buffer.from('SET c 1\r\nMSET k1 v1 k2 v2\r\nSET d 1\r\n');
    const r = await strictClient({ port: stack.proxy.port, payload, caFile: stack.certs.caFile });
    const why = `${showResult(r)}\n${logTail(stack.proxy)}`;
    assert.equal(r.reply.toString('latin1'), `+OK\r\n${ERR.multibulk}`, why);
    assert.equal(r.close, 'close_notify', why);
    assert.equal(await stack.redis.cli('EXISTS', 'k1', 'k2', 'd'), '0');
    assert.equal(await stack.redis.cli('GET', 'c'), '1');
  });
});

describe('10,000 pipelined INCR, then a protocol error', { timeout: 120_000 }, () => {
  const stack = useStack({ proxy: () => ({ limits: { max_multibulk_len: 1000 } }) });

  test('10,000 integer replies 1..10000 in order, then the error, then close_notify', { timeout: 60_000 }, async () => {
    const n = 10_000;
    const incr = encodeCommand(['INCR', 'n']);
    const payload = Buffer.concat([Buffer.alloc(incr.length * n, incr), Buffer.from('*1001\r\n')]);
    const r = await strictClient({ port: stack.proxy.port, payload, caFile: stack.certs.caFile });
    let expected = '';
    for (let i = 1; i <= n; i++) expected += `:${i}\r\n`;
    expected += ERR.multibulk;
    const got = r.reply.toString('latin1');
    const why = `${showResult(r)}\n${logTail(stack.proxy)}`;
    if (got !== expected) {
      let i = 0;
      while (i < got.length && got[i] === expected[i]) i++;
      assert.fail(`reply differs from byte ${i}: got ${show(got.slice(i, i + 80))}, expected ${show(expected.slice(i, i + 80))}\n${why}`);
    }
    assert.equal(r.close, 'close_notify', why);
    assert.equal(r.writeError, null, why);
    assert.equal(await stack.redis.cli('GET', 'n'), String(n));
  });

  test('large replies (20 × 1 MB GET) all arrive before the error reply', { timeout: 60_000 }, async () => {
    const value = Buffer.alloc(1024 * 1024, 'v');
    const setup = await strictClient({
      port: stack.proxy.port,
      payload: Buffer.concat([encodeCommand(['SET', 'big', value]), Buffer.from('*1001\r\n')]),
      caFile: stack.certs.caFile,
    });
    assert.equal(setup.reply.toString('latin1'), `+OK\r\n${ERR.multibulk}`, showResult(setup));
    const gets = 20;
    const get = encodeCommand(['GET', 'big']);
    const payload = Buffer.concat([Buffer.alloc(get.length * gets, get), Buffer.from('*1001\r\n')]);
    const r = await strictClient({ port: stack.proxy.port, payload, caFile: stack.certs.caFile });
    const one = Buffer.concat([Buffer.from(`$${value.length}\r\n`), value, Buffer.from('\r\n')]);
    const expected = Buffer.concat([Buffer.alloc(one.length * gets, one), Buffer.from(ERR.multibulk)]);
    const why = `${showResult(r)}\n${logTail(stack.proxy)}`;
    assert.equal(r.reply.length, expected.length, why);
    assert.ok(r.reply.equals(expected), why);
    assert.equal(r.close, 'close_notify', why);
    assert.equal(r.writeError, null, why);
  });
});

describe('a deeply nested reply, then a command still running, then a protocol error', { timeout: 60_000 }, () => {
  const stack = useStack();

  test('EVAL returning 101 nested arrays, BLPOP for 1 s, *x → every reply, *-1 after the wait, then the error', { timeout: 30_000 }, async () => {
    // Replies nest as deep as a script builds them; the proxy still counts them, so it waits for
    // the BLPOP's reply before its error (it gave up after 200 ms and lost the *-1 at 65 levels).
    const script = 'local t={1} for i=1,100 do t={t} end return t';
    const payload = Buffer.concat([encodePipeline([['EVAL', script, '0'], ['BLPOP', 'nothing-here', '1']]), Buffer.from('*x\r\n')]);
    const r = await strictClient({ port: stack.proxy.port, payload, caFile: stack.certs.caFile });
    const why = `${showResult(r)}\n${logTail(stack.proxy)}`;
    assert.equal(r.reply.toString('latin1'), `${'*1\r\n'.repeat(101)}:1\r\n*-1\r\n${ERR.multibulk}`, why);
    assert.equal(r.close, 'close_notify', why);
  });
});
