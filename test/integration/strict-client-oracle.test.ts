// The strict TLS client is the oracle for every orderly-close test, so it must be able to fail:
// against small Node TLS servers that close with close_notify, without it, with a reset,
// or never, it has to tell each apart — for TLS 1.2 and 1.3.
import assert from 'node:assert/strict';
import net from 'node:net';
import tls from 'node:tls';
import { after, before, describe, test } from 'node:test';
import { readFileSync } from 'node:fs';
import { sharedCerts, type TestCerts } from '../helpers/certs.js';
import { describe as show, strictClient } from '../helpers/strict-client.js';

let certs: TestCerts;
const servers: net.Server[] = [];

before(async () => {
  certs = await sharedCerts();
});

after(async () => {
  await Promise.all(servers.map((s) => new Promise<void>((resolve) => s.close(() => resolve()))));
});

type Handler = (sock: tls.TLSSocket, received: () => Buffer, onBytes: (n: number, fn: () => void) => void) => void;

/** A TLS server whose per-connection behaviour is `handler`; resolves its port. Data is always read. */
async function fixture(handler: Handler, opts: { raw?: (raw: net.Socket, sock: tls.TLSSocket) => void } = {}): Promise<number> {
  const key = readFileSync(certs.keyFile);
  const cert = readFileSync(certs.certFile);
  const context = tls.createSecureContext({ key, cert });
  // Plain TCP server + TLSSocket on top, so a test can reach the raw socket (for resetAndDestroy).
  const srv = net.createServer({ allowHalfOpen: true }, (raw) => {
    const sock = new tls.TLSSocket(raw, { isServer: true, secureContext: context });
    sock.on('error', () => {});
    raw.on('error', () => {});
    const chunks: Buffer[] = [];
    let total = 0;
    const waiters: Array<{ n: number; fn: () => void }> = [];
    sock.on('data', (d: Buffer) => {
      chunks.push(d);
      total += d.length;
      for (let i = 0; i < waiters.length;) {
        const w = waiters[i]!;
        if (total >= w.n) {
          waiters.splice(i, 1);
          w.fn();
        } else i++;
      }
    });
    const onBytes = (n: number, fn: () => void): void => {
      if (total >= n) fn();
      else waiters.push({ n, fn });
    };
    opts.raw?.(raw, sock);
    handler(sock, () => Buffer.concat(chunks), onBytes);
  });
  servers.push(srv);
  await new Promise<void>((resolve) => srv.listen(0, '127.0.0.1', resolve));
  return (srv.address() as net.AddressInfo).port;
}

const small = Buffer.from('PING\r\n');
const big = Buffer.alloc(12 * 1024 * 1024, 0x61); // 12 MB

for (const tlsVersion of ['1.2', '1.3'] as const) {
  describe(`strict client, TLS ${tlsVersion}`, { timeout: 60_000 }, () => {
    test('reply then end() → close_notify, and the whole payload was written', async () => {
      let got: Buffer = Buffer.alloc(0);
      const port = await fixture((sock, received, onBytes) => {
        onBytes(small.length, () => {
          got = received();
          sock.end('+PONG\r\n');
        });
      });
      const r = await strictClient({ port, payload: small, caFile: certs.caFile, tlsVersion });
      assert.equal(r.close, 'close_notify', show(r));
      assert.equal(r.tlsVersion, `TLSv${tlsVersion}`);
      assert.equal(r.writeError, null, show(r));
      assert.equal(r.wrote, small.length);
      assert.equal(r.reply.toString('latin1'), '+PONG\r\n');
      assert.equal(r.tcpEnd, 'fin', show(r));
      assert.deepEqual(got, small);
    });

    test('reply then destroy() → ragged_eof (no close_notify)', async () => {
      const port = await fixture((sock, _received, onBytes) => {
        onBytes(small.length, () => {
          sock.write('+PONG\r\n', () => setTimeout(() => sock.destroy(), 20));
        });
      });
      const r = await strictClient({ port, payload: small, caFile: certs.caFile, tlsVersion });
      assert.equal(r.close, 'ragged_eof', show(r));
      assert.equal(r.reply.toString('latin1'), '+PONG\r\n');
      assert.equal(r.writeError, null, show(r));
    });

    test('TCP reset → reset', async () => {
      let rawSock: net.Socket | undefined;
      const port = await fixture((sock, _received, onBytes) => {
        onBytes(small.length, () => {
          sock.write('+PONG\r\n', () => setTimeout(() => rawSock!.resetAndDestroy(), 20));
        });
      }, { raw: (raw) => { rawSock = raw; } });
      const r = await strictClient({ port, payload: small, caFile: certs.caFile, tlsVersion });
      assert.equal(r.close, 'reset', show(r));
    });

    test('early reply + end() while the client still writes 12 MB, server keeps reading → all written, close_notify', async () => {
      let drained = 0;
      const port = await fixture((sock, received, onBytes) => {
        onBytes(1, () => {
          sock.end('-ERR early\r\n');
          // keep reading and discarding (the 'data' listener already consumes)
          sock.on('data', (d: Buffer) => { drained += d.length; });
          void received;
        });
      });
      const r = await strictClient({ port, payload: big, caFile: certs.caFile, tlsVersion });
      assert.equal(r.writeError, null, show(r));
      assert.equal(r.wrote, big.length, show(r));
      assert.equal(r.close, 'close_notify', show(r));
      assert.equal(r.reply.toString('latin1'), '-ERR early\r\n');
      assert.ok(drained > 0);
    });

    test('early reply + end() then destroy() while the client still writes → the oracle reports the failure', async () => {
      const port = await fixture((sock, _received, onBytes) => {
        onBytes(1, () => {
          // destroy() as soon as the close_notify is out, so the client is surely still writing
          // (a fixed delay let a fast client finish all 12 MB first on Node 26).
          sock.end('-ERR early\r\n', () => sock.destroy());
        });
      });
      const r = await strictClient({ port, payload: big, caFile: certs.caFile, tlsVersion });
      assert.ok(r.writeError !== null || r.close !== 'close_notify', `expected a failure, got ${show(r)}`);
      assert.ok(r.wrote < big.length, show(r));
    });

    test('server that never answers or closes → timeout', async () => {
      const port = await fixture(() => {});
      const r = await strictClient({ port, payload: small, caFile: certs.caFile, tlsVersion, readTimeoutMs: 300 });
      assert.equal(r.close, 'timeout', show(r));
      assert.equal(r.reply.length, 0);
    });

    test('afterWrite close_notify: the server sees end, its late reply is still read, then close_notify', async () => {
      let got: Buffer = Buffer.alloc(0);
      const port = await fixture((sock, received) => {
        sock.on('end', () => {
          got = received();
          sock.end('+BYE\r\n');
        });
      });
      const r = await strictClient({ port, payload: small, caFile: certs.caFile, tlsVersion, afterWrite: 'close_notify' });
      assert.equal(r.close, 'close_notify', show(r));
      assert.equal(r.reply.toString('latin1'), '+BYE\r\n');
      assert.deepEqual(got, small);
    });

    test('afterWrite fin (TCP FIN without close_notify): the server sees end, its late reply is still read', async () => {
      const port = await fixture((sock) => {
        sock.on('end', () => sock.end('+BYE\r\n'));
      });
      const r = await strictClient({ port, payload: small, caFile: certs.caFile, tlsVersion, afterWrite: 'fin' });
      assert.equal(r.close, 'close_notify', show(r));
      assert.equal(r.reply.toString('latin1'), '+BYE\r\n');
    });

    test('chunkSize 1 sends one byte per TLS record, all of it arrives', async () => {
      let events = 0;
      let got: Buffer = Buffer.alloc(0);
      const payload = Buffer.from('*1\r\n$4\r\nPING\r\n');
      const port = await fixture((sock, received, onBytes) => {
        sock.on('data', () => { events++; });
        onBytes(payload.length, () => {
          got = received();
          sock.end('+PONG\r\n');
        });
      });
      const r = await strictClient({ port, payload, caFile: certs.caFile, tlsVersion, chunkSize: 1, chunkDelayMs: 2 });
      assert.equal(r.close, 'close_notify', show(r));
      assert.deepEqual(got, payload);
      assert.equal(events, payload.length, 'one data event per byte');
    });
  });
}

test('a server certificate the CA did not sign fails the handshake', { timeout: 30_000 }, async () => {
  const port = await fixture(() => {});
  const r = await strictClient({ port, payload: small, caFile: certs.otherCaFile, readTimeoutMs: 5_000 });
  assert.equal(r.close, 'handshake_failed', show(r));
  assert.match(r.error ?? '', /CERTIFICATE_VERIFY_FAILED|certificate verify failed/i);
});
