// tls.max_handshakes: at most that many TLS handshakes run at once per process; later connections
// wait their turn with their bytes in the kernel. OpenSSL sets aside as much memory as a
// ClientHello declares (up to 128 KiB) once the first 9 bytes arrive, so without the bound a few
// bytes on each of many sockets held ~160 KB each. A client behind the stalled ones still gets in
// once their handshakes time out; the ones that waited past the timeout are closed and counted.
import assert from 'node:assert/strict';
import net from 'node:net';
import { describe, test } from 'node:test';
import { waitFor } from '../helpers/common.js';
import { logTail, useStack } from '../helpers/fixture.js';
import { metricValue } from '../helpers/proxy.js';
import { rssMiB } from '../helpers/rss.js';
import { openTls } from '../helpers/tls-conn.js';
import { readFileSync } from 'node:fs';

const STALLED = 400;
const MAX = 16;
/** A TLS record header and a handshake header declaring a 131,000-byte ClientHello: 9 bytes. */
const BIG_HELLO = Buffer.from([22, 3, 1, 0, 4, 1, 0x01, 0xff, 0xb8]);

describe('tls.max_handshakes: 16', { timeout: 120_000 }, () => {
  const stack = useStack({ proxy: () => ({ tls: { max_handshakes: MAX, handshake_timeout_ms: 3000 } }) });

  test(`${STALLED} connections that declare a 128 KiB ClientHello and stall: bounded memory; a real client gets in after them`, { timeout: 60_000 }, async (t) => {
    const before = rssMiB(stack.proxy.pid);
    const stalled: net.Socket[] = [];
    const closed = { n: 0 };
    try {
      for (let i = 0; i < STALLED; i++) {
        const s = net.connect({ host: '127.0.0.1', port: stack.proxy.port });
        s.on('error', () => undefined);
        s.on('close', () => closed.n++);
        s.on('connect', () => s.write(BIG_HELLO));
        stalled.push(s);
      }
      await waitFor('every stalled connection open', () => stalled.every((s) => s.writableLength === 0 && !s.connecting), 10_000);
      await new Promise((r) => setTimeout(r, 500));
      const grown = rssMiB(stack.proxy.pid) - before;
      t.diagnostic(`RSS +${grown.toFixed(1)} MiB with ${STALLED} stalled handshakes (${MAX} at once)`);
      // Unbounded, ~160 KB each: ~60 MiB. Bounded: 16 of them and a socket each for the rest.
      assert.ok(grown < 20, `RSS grew ${grown.toFixed(1)} MiB\n${logTail(stack.proxy)}`);

      // A real client now waits behind them, and is served once their time is up (3 s).
      const t0 = performance.now();
      const conn = await openTls(stack.proxy.port, { ca: readFileSync(stack.certs.caFile), timeoutMs: 15_000 });
      const waited = performance.now() - t0;
      const [reply] = await conn.request('PING\r\n');
      await conn.end();
      t.diagnostic(`the real client waited ${Math.round(waited)} ms`);
      assert.equal(reply!.toString('latin1'), '+PONG\r\n');
      await waitFor('the stalled connections closed', () => closed.n === STALLED, 10_000);
      const text = await stack.proxy.metrics();
      assert.equal(metricValue(text, 'resp_tls_proxy_tls_handshake_failures_total', { reason: 'timeout' }), STALLED, text);
    } finally {
      for (const s of stalled) s.destroy();
    }
  });
});
