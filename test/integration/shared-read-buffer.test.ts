// Backend replies are read into one buffer shared by every session of a proxy process, and written
// to the client straight from it only when TLS encrypts them on the spot; a reply that has to wait
// (the client is not reading, or earlier replies are still queued) is copied first. If it were
// not, a later backend read — this session's or another's — would overwrite it while it waits.
// Here every reply is different (distinct values of varied sizes, so reply boundaries fall
// anywhere in a read), several clients share the proxy, and each stalls before reading: every
// byte each client receives must be the reply stream Redis produced, in order.
import { randomBytes } from 'node:crypto';
import tls from 'node:tls';
import { once } from 'node:events';
import { describe, test } from 'node:test';
import { sleep } from '../helpers/common.js';
import { logTail, useStack } from '../helpers/fixture.js';
import { encodeCommand } from '../helpers/resp.js';

const KEYS = 300;
const ROUNDS = 4; // each client GETs every key this many times: ~5 MiB of replies per client
const CLIENTS = 4;

function connectTls(port: number): Promise<tls.TLSSocket> {
  return new Promise((resolve, reject) => {
    const sock = tls.connect({ host: '127.0.0.1', port, servername: 'localhost', rejectUnauthorized: false });
    sock.once('secureConnect', () => resolve(sock));
    sock.once('error', reject);
  });
}

/** Reads until `expected.length` bytes arrived (or the deadline), then compares them byte for byte. */
function readExactly(sock: tls.TLSSocket, expected: Buffer, label: string): Promise<void> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let got = 0;
    const timer = setTimeout(() => reject(new Error(`${label}: ${got} of ${expected.length} bytes before the deadline`)), 60_000);
    sock.on('data', (d: Buffer) => {
      chunks.push(d);
      got += d.length;
      if (got < expected.length) return;
      clearTimeout(timer);
      const all = Buffer.concat(chunks);
      if (all.length !== expected.length) return reject(new Error(`${label}: ${all.length} bytes, expected ${expected.length}`));
      if (all.equals(expected)) return resolve();
      let at = 0;
      while (all[at] === expected[at]) at++;
      reject(new Error(`${label}: replies differ from byte ${at} on`));
    });
    sock.on('error', reject);
  });
}

describe('replies waiting for a slow client are not overwritten by later backend reads', { timeout: 120_000 }, () => {
  const stack = useStack();

  test(`${CLIENTS} clients pipeline ${KEYS * ROUNDS} GETs of distinct 1–12 KiB values each, stall 400 ms, then read: every byte matches`, async () => {
    // Distinct values, sizes spread so that replies start at every offset of a read.
    const values = Array.from({ length: KEYS }, (_, i) => randomBytes(1024 + ((i * 7919) % (11 * 1024))));
    const setter = await connectTls(stack.proxy.port);
    setter.write(Buffer.concat(values.map((v, i) => encodeCommand(['SET', `srb:${i}`, v]))));
    const oks = Buffer.from('+OK\r\n'.repeat(KEYS));
    await readExactly(setter, oks, 'SETs');
    setter.end();

    const clients = await Promise.all(Array.from({ length: CLIENTS }, () => connectTls(stack.proxy.port)));
    const expected: Buffer[] = [];
    clients.forEach((c, k) => {
      // Each client walks the keys from a different start, so the sessions' reads interleave
      // different bytes through the shared buffer.
      const order = Array.from({ length: KEYS * ROUNDS }, (_, j) => (j * (k + 1) + k * 37) % KEYS);
      c.pause(); // read nothing yet: the proxy's writes to this client back up
      c.write(Buffer.concat(order.map((i) => encodeCommand(['GET', `srb:${i}`]))));
      expected.push(Buffer.concat(order.map((i) => Buffer.concat([Buffer.from(`$${values[i]!.length}\r\n`), values[i]!, Buffer.from('\r\n')]))));
    });
    await sleep(400);
    const reads = clients.map((c, k) => readExactly(c, expected[k]!, `client ${k}`));
    for (const c of clients) c.resume();
    try {
      await Promise.all(reads);
    } catch (err) {
      throw new Error(`${(err as Error).message}\n${logTail(stack.proxy)}`);
    }
    for (const c of clients) {
      c.end();
      await once(c, 'close');
    }
  });
});
