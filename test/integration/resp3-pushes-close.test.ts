// RESP3 pushes (client-side caching invalidations) during an orderly close: they are not
// replies to a command, so they neither keep the close waiting for ever nor may be cut in half.
import assert from 'node:assert/strict';
import net from 'node:net';
import { after, describe, test } from 'node:test';
import { logTail, useStack } from '../helpers/fixture.js';
import { ERR, encodeCommand, show } from '../helpers/resp.js';
import { describe as showResult, strictClient } from '../helpers/strict-client.js';

const DRAIN_MS = 1_000;

describe('RESP3 pushes during an orderly close', { timeout: 120_000 }, () => {
  const stack = useStack({ proxy: () => ({ close: { drain_timeout_ms: DRAIN_MS } }) });
  const writers: net.Socket[] = [];
  after(() => {
    for (const w of writers) w.destroy();
  });

  test('a tracking client blocked in BLPOP closes its side while keys keep changing → closed after close.drain_timeout_ms, not when the writes stop', { timeout: 30_000 }, async (t) => {
    // Another connection changes a key every 100 ms for 8 s: an invalidation push each time.
    const writer = net.connect({ host: '127.0.0.1', port: stack.redis.port });
    writers.push(writer);
    writer.on('error', () => {});
    writer.resume();
    let i = 0;
    const timer = setInterval(() => writer.write(encodeCommand(['SET', `tracked:${i++}`, 'v'])), 100);
    setTimeout(() => clearInterval(timer), 8_000).unref();
    t.after(() => clearInterval(timer));

    const payload = Buffer.concat([encodeCommand(['HELLO', '3']), encodeCommand(['CLIENT', 'TRACKING', 'ON', 'BCAST']), encodeCommand(['BLPOP', 'nothing-here', '0'])]);
    const r = await strictClient({ port: stack.proxy.port, payload, caFile: stack.certs.caFile, afterWrite: 'close_notify' });
    clearInterval(timer);
    const why = `${showResult(r)}\n${logTail(stack.proxy)}`;
    const reply = r.reply.toString('latin1');
    assert.equal(r.close, 'close_notify', why);
    assert.ok(reply.includes('$10\r\ninvalidate\r\n'), `no invalidation push reached the client\n${why}`);
    // The BLPOP never got its reply: the backend was half-closed after drain_timeout_ms without a
    // reply. The backend did not fail, so no error is made up for it: the close tells the client.
    assert.ok(!reply.includes('-ERR'), why);
    // Pushes used to count as progress: the close lasted as long as the writes (8 s).
    assert.ok(r.elapsedMs < 4 * DRAIN_MS, `closed after ${r.elapsedMs} ms\n${why}`);
    t.diagnostic(`closed ${r.elapsedMs} ms after its close_notify, with ${i} keys changed meanwhile`);
  });

  test('a push under way when the last reply is in (an 8 MiB key invalidated) → the whole push, then the error text', { timeout: 60_000 }, async () => {
    const key = 'k'.repeat(8 * 1024 * 1024);
    // The client's own SET invalidates the key for it (no NOLOOP): Redis sends +OK, then the push
    // with the 8 MiB key name, more than the socket buffers hold when the count reaches zero.
    const payload = Buffer.concat([
      encodeCommand(['HELLO', '3']),
      encodeCommand(['CLIENT', 'TRACKING', 'ON', 'BCAST']),
      encodeCommand(['SET', key, 'v']),
      Buffer.from('*x\r\n', 'latin1'),
    ]);
    const r = await strictClient({ port: stack.proxy.port, payload, caFile: stack.certs.caFile });
    const why = `${showResult(r)}\n${logTail(stack.proxy)}`;
    const push = `>2\r\n$10\r\ninvalidate\r\n*1\r\n$${key.length}\r\n${key}\r\n`;
    const tail = `+OK\r\n+OK\r\n${push}${ERR.multibulk}`;
    const reply = r.reply.toString('latin1');
    assert.ok(reply.endsWith(tail), `the reply ends ${show(reply.slice(-200))}, ${reply.length} bytes\n${why}`);
    assert.equal(r.close, 'close_notify', why);
  });
});
