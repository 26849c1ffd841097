// A client that reads slowly but steadily is reading: an orderly close waits for it (as the
// README says: the wait gives up after close.drain_timeout_ms without progress, the client
// reading being progress) and delivers every reply. The kernel wakes a blocked writer only once
// a good part of its send buffer (grown to megabytes) has drained, so the proxy's own write
// completions (and 'drain') come far apart for such a client; the kernel's count of bytes the
// client has not yet acknowledged does not. Without it the close cut the replies off in the
// middle of one, and still counted the close graceful.
//
// The replies (8 MB) outgrow what the kernel holds (the proxy's send buffer, at most 4 MB by
// default, and the client's receive buffer, fixed at 64 KB), so part of them waits in the proxy
// when a wait of close.drain_timeout_ms (300 ms) runs out; the debug lines show the kernel was
// looked at.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { waitFor } from '../helpers/common.js';
import { logTail, useStack } from '../helpers/fixture.js';
import { closeRecords } from '../helpers/proxy.js';
import { ERR, encodeCommand } from '../helpers/resp.js';
import { describe as showResult, strictClient } from '../helpers/strict-client.js';

const VALUE = 100_000;
const GETS = 80;
const RCVBUF = 64 * 1024;

describe('a slow but steady reader while the connection closes', { timeout: 120_000 }, () => {
  const stack = useStack({ proxy: () => ({ close: { drain_timeout_ms: 300 }, log: { level: 'debug' } }) });
  const payload = Buffer.concat([...Array.from({ length: GETS }, () => encodeCommand(['GET', 'big'])), Buffer.from('*x\r\n')]);
  const looks = (msg: string): number => stack.proxy.logs().filter((r) => r.msg === msg).length;

  test('80 GETs of 100 KB then *x, read at 1 MB/s: every reply, the error, close_notify', { timeout: 60_000 }, async () => {
    await stack.redis.cli('SET', 'big', 'v'.repeat(VALUE));
    const before = looks('closing: the client reads; waiting on');
    const r = await strictClient({ port: stack.proxy.port, payload, caFile: stack.certs.caFile, readRate: 1_000_000, rcvbuf: RCVBUF, readTimeoutMs: 15_000 });
    const why = `${showResult(r)}\n${logTail(stack.proxy)}`;
    const bulk = `$${VALUE}\r\n${'v'.repeat(VALUE)}\r\n`;
    assert.equal(r.reply.length, GETS * bulk.length + ERR.multibulk.length, why);
    assert.equal(r.reply.toString('latin1'), bulk.repeat(GETS) + ERR.multibulk, why);
    assert.equal(r.close, 'close_notify', why);
    assert.equal(r.writeError, null, why);
    assert.ok(looks('closing: the client reads; waiting on') > before, `the kernel was never looked at: the test did not test it\n${why}`);
  });

  test('the same for a client that does not read (1 byte a second): still closed within a few drain timeouts', { timeout: 60_000 }, async (t) => {
    const closes = (): number => closeRecords(stack.proxy.logs()).filter((r) => r.reason === 'protocol_error').length;
    const before = closes();
    const startedAt = Date.now();
    const client = strictClient({ port: stack.proxy.port, payload, caFile: stack.certs.caFile, readRate: 1, rcvbuf: RCVBUF, readTimeoutMs: 8_000, deadlineMs: 8_000 });
    await waitFor('the close', () => closes() > before, 15_000, 20).catch((err: Error) => {
      throw new Error(`${err.message}\n${logTail(stack.proxy)}`);
    });
    const tookMs = Date.now() - startedAt;
    t.diagnostic(`closed ${tookMs} ms after the start`);
    // Phase 2 gives up on the backend (twice: end, then destroy), then the flush on the client:
    // each after drain_timeout_ms (300 ms) and a second look at the kernel (300 ms).
    assert.ok(looks('closing: the client does not read') >= 1, logTail(stack.proxy));
    assert.ok(tookMs < 6_000, `closed ${tookMs} ms after the start`);
    await client;
  });
});

describe('a slow but steady reader with close.drain_timeout_ms: 150', { timeout: 120_000 }, () => {
  // Shorter than the 200 ms one read of the kernel's table serves: the second look at the client
  // saw the same table, and a client that reads was taken for one that does not (cut after
  // about half the replies).
  const stack = useStack({ proxy: () => ({ close: { drain_timeout_ms: 150 }, log: { level: 'debug' } }) });
  const payload = Buffer.concat([...Array.from({ length: GETS }, () => encodeCommand(['GET', 'big'])), Buffer.from('*x\r\n')]);

  test('80 GETs of 100 KB then *x, read at 1 MB/s: every reply, the error, close_notify', { timeout: 60_000 }, async () => {
    await stack.redis.cli('SET', 'big', 'v'.repeat(VALUE));
    const r = await strictClient({ port: stack.proxy.port, payload, caFile: stack.certs.caFile, readRate: 1_000_000, rcvbuf: RCVBUF, readTimeoutMs: 15_000 });
    const why = `${showResult(r)}\n${logTail(stack.proxy)}`;
    const bulk = `$${VALUE}\r\n${'v'.repeat(VALUE)}\r\n`;
    assert.equal(r.reply.length, GETS * bulk.length + ERR.multibulk.length, why);
    assert.equal(r.close, 'close_notify', why);
    assert.equal(stack.proxy.logs().filter((l) => l.msg === 'closing: the client does not read').length, 0, why);
  });
});
