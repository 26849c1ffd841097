// A close that starts before the backend connection is up (the first flight of a pipelining
// client carries an offending command, and the connect is slow): once the queued commands go out
// to the backend, the client must still be read (and its input discarded) until it has read the
// replies, the error and close_notify. A full backend socket used to pause the client then, and
// nothing resumed it: the client's next writes went unread and ended in a reset.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { sleep } from '../helpers/common.js';
import { proxyBehindDoor } from '../helpers/full-accept-queue.js';
import { logTail } from '../helpers/fixture.js';
import { waitForMetric } from '../helpers/proxy.js';
import { ERR } from '../helpers/resp.js';
import { describe as showResult, strictClient } from '../helpers/strict-client.js';

describe('a close that starts while the backend connects', { timeout: 90_000 }, () => {
  test('24 KB of PINGs and *x in the first flight, the backend let in 1 s later, then 8 MB more from the client: every PONG, the error, close_notify, and no write fails', { timeout: 60_000 }, async (t) => {
    // The door: connections to it hang until released (its accept queue is full), then go on to Redis.
    const { door, proxy } = await proxyBehindDoor(t, { connectMs: 10_000, drainMs: 3_000 });

    const pings = Buffer.from('PING\r\n'.repeat(4000));
    const firstFlight = Buffer.concat([pings, Buffer.from('*x\r\n')]);
    const payload = Buffer.concat([firstFlight, Buffer.alloc(8 << 20, 0x78)]);
    const client = strictClient({ port: proxy.port, payload, caFile: proxy.certs.caFile, pauseAt: firstFlight.length, pauseMs: 1_500, readTimeoutMs: 15_000 });
    client.catch(() => undefined); // awaited below; not unhandled if the wait throws first
    // The session has started, its backend connect hanging (a fixed delay from here could let
    // the connect in at once on a machine slow to start the client).
    await waitForMetric(proxy, 'resp_tls_proxy_connections_total', {}, (v) => v >= 1, 15_000);
    await sleep(300); // the first flight in, the close begun
    door.release(); // the connect completes with the SYN sent again, ~1 s after the first
    const r = await client;
    const why = `${showResult(r)}\n${logTail(proxy)}`;
    assert.equal(r.reply.toString('latin1'), `${'+PONG\r\n'.repeat(4000)}${ERR.multibulk}`, why);
    assert.equal(r.writeError, null, why);
    assert.equal(r.wrote, payload.length, why);
    assert.equal(r.close, 'close_notify', why);
    assert.equal(r.tcpEnd, 'fin', why);
  });
});
