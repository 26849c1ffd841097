// A client that reads slowly but steadily is reading: an orderly close waits for it (as the
// README says: the wait gives up after close.drain_timeout_ms without progress, the client
// reading being progress) and delivers every reply. The kernel wakes a blocked writer only once
// a good part of a send buffer grown to megabytes has drained, seconds apart for such a client,
// so the proxy's own write completions (and 'drain') are too coarse to tell; the kernel's count
// of bytes the client has not yet acknowledged is not. Without it the close cut the replies off
// in the middle of one, and still counted the close graceful.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { waitFor } from '../helpers/common.js';
import { logTail, useStack } from '../helpers/fixture.js';
import { closeRecords } from '../helpers/proxy.js';
import { ERR, encodeCommand } from '../helpers/resp.js';
import { describe as showResult, strictClient } from '../helpers/strict-client.js';

const VALUE = 100_000;

describe('a slow but steady reader while the connection closes', { timeout: 120_000 }, () => {
  const stack = useStack({ proxy: () => ({ close: { drain_timeout_ms: 1_000 } }) });

  test('40 GETs of 100 KB then *x, read at 500 KB/s: every reply, the error, close_notify', { timeout: 60_000 }, async () => {
    await stack.redis.cli('SET', 'big', 'v'.repeat(VALUE));
    const n = 40;
    const payload = Buffer.concat([...Array.from({ length: n }, () => encodeCommand(['GET', 'big'])), Buffer.from('*x\r\n')]);
    const r = await strictClient({ port: stack.proxy.port, payload, caFile: stack.certs.caFile, readRate: 500_000, readTimeoutMs: 15_000 });
    const why = `${showResult(r)}\n${logTail(stack.proxy)}`;
    const bulk = `$${VALUE}\r\n${'v'.repeat(VALUE)}\r\n`;
    assert.equal(r.reply.length, n * bulk.length + ERR.multibulk.length, why);
    assert.equal(r.reply.toString('latin1'), bulk.repeat(n) + ERR.multibulk, why);
    assert.equal(r.close, 'close_notify', why);
    assert.equal(r.writeError, null, why);
  });

  test('the same for a client that does not read (1 byte a second): still closed within a few drain timeouts', { timeout: 60_000 }, async (t) => {
    const n = 40;
    const payload = Buffer.concat([...Array.from({ length: n }, () => encodeCommand(['GET', 'big'])), Buffer.from('*x\r\n')]);
    const closes = (): number => closeRecords(stack.proxy.logs()).filter((r) => r.reason === 'protocol_error').length;
    const before = closes();
    const startedAt = Date.now();
    const client = strictClient({ port: stack.proxy.port, payload, caFile: stack.certs.caFile, readRate: 1, readTimeoutMs: 12_000, deadlineMs: 12_000 });
    await waitFor('the close', () => closes() > before, 15_000, 20).catch((err: Error) => {
      throw new Error(`${err.message}\n${logTail(stack.proxy)}`);
    });
    const tookMs = Date.now() - startedAt;
    // Phase 2 gives up on the backend, then the flush on the client: each after drain_timeout_ms
    // (1 s) and a second look at the kernel (1 s), the backend twice (end, then destroy).
    t.diagnostic(`closed ${tookMs} ms after the start`);
    assert.ok(tookMs < 10_000, `closed ${tookMs} ms after the start`);
    await client;
  });
});
