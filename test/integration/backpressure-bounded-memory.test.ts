// Backpressure keeps the proxy's memory bounded.
//  (a) A client pipelines GETs of a 1 MiB value — 3 GiB of replies — and does not read. The proxy
//      must stop reading the backend once the client's socket is full (the replies wait in the
//      backend's output buffer, where Redis accounts for them), so its RSS grows by at most
//      128 MiB; when the client then reads, every reply arrives intact and in order.
//  (b) A 256 MiB SET, written in 64 KiB chunks with backpressure, streams through (the scanner
//      never buffers a bulk body): RSS growth within 128 MiB, the value intact on the backend.
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import net from 'node:net';
import tls from 'node:tls';
import { once } from 'node:events';
import { describe, test } from 'node:test';
import { sleep } from '../helpers/common.js';
import { logTail, useStack } from '../helpers/fixture.js';
import { metricValue } from '../helpers/proxy.js';
import { encodeCommand } from '../helpers/resp.js';
import { RssSampler, fmtMiB, rssMiB } from '../helpers/rss.js';

const MiB = 1024 * 1024;
const RSS_BOUND_MIB = 128;
const TO_CLIENT = { direction: 'to_client' };
const BYTES = 'resp_tls_proxy_bytes_total';

function connectTls(port: number): Promise<tls.TLSSocket> {
  return new Promise((resolve, reject) => {
    const sock = tls.connect({ host: '127.0.0.1', port, servername: 'localhost', rejectUnauthorized: false });
    sock.once('secureConnect', () => resolve(sock));
    sock.once('error', reject);
  });
}

/** One command on a plain TCP connection to the backend; resolves the raw reply once `complete` says it is whole. */
function backendCommand(port: number, args: string[], complete: (b: Buffer) => boolean): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const sock = net.connect({ host: '127.0.0.1', port });
    const chunks: Buffer[] = [];
    sock.on('connect', () => sock.write(encodeCommand(args)));
    sock.on('data', (d: Buffer) => {
      chunks.push(d);
      const all = Buffer.concat(chunks);
      if (complete(all)) {
        sock.destroy();
        resolve(all);
      }
    });
    sock.on('error', reject);
    setTimeout(() => {
      sock.destroy();
      reject(new Error(`no complete reply to ${args[0]}`));
    }, 15_000).unref();
  });
}

/** Bulk reply body of `len` bytes: `$len\r\n` + body + `\r\n`. */
const bulkDone = (len: number) => (b: Buffer): boolean => b.length >= `$${len}\r\n`.length + len + 2;

/** Let the proxy settle, then record its RSS and start sampling it every 50 ms. */
async function startSampling(pid: number): Promise<{ before: number; sampler: RssSampler; started: number }> {
  await sleep(500);
  return { before: rssMiB(pid), sampler: new RssSampler(pid, 50), started: performance.now() };
}

describe('backpressure keeps memory bounded', { timeout: 180_000 }, () => {
  const stack = useStack();

  test('(a) 3 GiB of 1 MiB GET replies pending for a client that does not read: proxy RSS within +128 MiB, then every reply intact', { timeout: 120_000 }, async () => {
    const value = randomBytes(MiB);
    const set = await connectTls(stack.proxy.port);
    set.write(encodeCommand(['SET', 'bp:big', value]));
    const [ok] = (await once(set, 'data')) as [Buffer];
    assert.equal(ok.toString('latin1'), '+OK\r\n');
    set.end();

    const n = 3072; // × 1 MiB = 3 GiB of replies
    const template = Buffer.concat([Buffer.from(`$${MiB}\r\n`), value, Buffer.from('\r\n')]);
    const gets = Buffer.alloc(encodeCommand(['GET', 'bp:big']).length * n, encodeCommand(['GET', 'bp:big']));

    const { before, sampler, started } = await startSampling(stack.proxy.pid);

    // The client: no 'data' listener, so Node stops reading its socket once 16 KiB are buffered.
    const client = await connectTls(stack.proxy.port);
    client.on('error', () => {});
    let wroteAll = false;
    client.write(gets, () => { wroteAll = true; });

    // Wait until the backend has produced every reply (they sit in its output buffer: CLIENT
    // LIST omem) and the proxy has stopped sending: bytes to the client unchanged between polls.
    const total = n * template.length;
    let sentAtStall = -1;
    let omem = 0;
    for (;;) {
      const sent = metricValue(await stack.proxy.metrics(), BYTES, TO_CLIENT);
      const list = await stack.redis.cli('CLIENT', 'LIST'); // blocks while Redis builds the replies
      omem = Math.max(0, ...list.split('\n').filter((l) => / cmd=get /.test(l)).map((l) => Number(/ omem=(\d+)/.exec(l)?.[1] ?? 0)));
      if (sent === sentAtStall && omem + sent >= 0.99 * total) break;
      sentAtStall = sent;
      if (performance.now() - started > 60_000) break;
      await sleep(1_000);
    }
    await sleep(2_000); // hold the stall a little longer, sampling
    const stalledRss = sampler.sample();
    const pending = total - sentAtStall;
    console.log(`(a) stalled after ${((performance.now() - started) / 1000).toFixed(1)} s: client wrote all ${n} GETs: ${wroteAll}; proxy sent ${(sentAtStall / MiB).toFixed(1)} MiB to the client, then stopped; ${(pending / MiB / 1024).toFixed(2)} GiB of replies pending (backend output buffer ${(omem / MiB).toFixed(0)} MiB); proxy RSS ${fmtMiB(before)} → ${fmtMiB(stalledRss)} (peak ${fmtMiB(sampler.peak)})`);
    assert.equal(metricValue(await stack.proxy.metrics(), BYTES, TO_CLIENT), sentAtStall, 'the proxy kept sending to a client that does not read');
    assert.ok(omem + sentAtStall >= 0.99 * total, `the backend holds only ${omem} bytes of replies`);
    assert.ok(pending > 2.9 * 1024 * MiB, `only ${pending} bytes pending — the proxy did not stop`);
    assert.ok(sampler.peak - before <= RSS_BOUND_MIB, `proxy RSS grew ${fmtMiB(sampler.peak - before)} while the client did not read\n${logTail(stack.proxy)}`);

    // Now read everything, checking every byte against the expected reply stream.
    const readStarted = performance.now();
    let pos = 0;
    let replies = 0;
    let mismatch: string | null = null;
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`read ${replies} of ${n} replies before the deadline`)), 90_000);
      client.on('data', (d: Buffer) => {
        let i = 0;
        while (i < d.length) {
          const k = Math.min(d.length - i, template.length - pos);
          if (mismatch === null && d.compare(template, pos, pos + k, i, i + k) !== 0) mismatch = `reply ${replies} differs near byte ${pos}`;
          i += k;
          pos += k;
          if (pos === template.length) {
            pos = 0;
            replies++;
          }
        }
        if (replies === n) {
          clearTimeout(timer);
          resolve();
        }
      });
      client.on('close', () => {
        clearTimeout(timer);
        if (replies < n) reject(new Error(`connection closed after ${replies} of ${n} replies`));
      });
    });
    sampler.stop();
    const readS = (performance.now() - readStarted) / 1000;
    console.log(`(a) read ${replies} replies (${(n * template.length / MiB / 1024).toFixed(2)} GiB) in ${readS.toFixed(1)} s; proxy RSS peak over the whole run ${fmtMiB(sampler.peak)} (+${fmtMiB(sampler.peak - before)}), after ${fmtMiB(sampler.last)}`);
    assert.equal(mismatch, null);
    assert.equal(replies, n);
    assert.equal(pos, 0, 'trailing bytes after the last reply');
    assert.ok(sampler.peak - before <= RSS_BOUND_MIB, `proxy RSS grew ${fmtMiB(sampler.peak - before)} while relaying\n${logTail(stack.proxy)}`);
    client.end();
    await stack.redis.cli('DEL', 'bp:big');
  });

  test('(b) a 256 MiB SET streams through in 64 KiB chunks: proxy RSS within +128 MiB, the value intact', { timeout: 120_000 }, async () => {
    const size = 256 * MiB;
    const chunkSize = 64 * 1024;
    const chunks = size / chunkSize;
    const block = randomBytes(chunkSize);
    /** Chunk i: the random block with i in its first 8 bytes, so every chunk differs. */
    const chunkAt = (i: number): Buffer => {
      const c = Buffer.from(block);
      c.writeBigUInt64LE(BigInt(i), 0);
      return c;
    };

    const { before, sampler, started } = await startSampling(stack.proxy.pid);
    const client = await connectTls(stack.proxy.port);
    let reply = '';
    client.setEncoding('latin1');
    client.on('data', (d: string) => { reply += d; });
    let waits = 0;
    const write = async (b: Buffer): Promise<void> => {
      if (!client.write(b)) {
        waits++;
        await once(client, 'drain');
      }
    };
    await write(Buffer.from(`*3\r\n$3\r\nSET\r\n$6\r\nbp:set\r\n$${size}\r\n`));
    for (let i = 0; i < chunks; i++) await write(chunkAt(i));
    await write(Buffer.from('\r\n'));
    const deadline = Date.now() + 60_000;
    while (!reply.includes('\r\n') && Date.now() < deadline) await sleep(20);
    sampler.stop();
    const s = (performance.now() - started) / 1000;
    console.log(`(b) 256 MiB SET answered ${JSON.stringify(reply)} in ${s.toFixed(1)} s (${(256 / s).toFixed(0)} MiB/s; the client waited for 'drain' ${waits} times); proxy RSS ${fmtMiB(before)} → peak ${fmtMiB(sampler.peak)} (+${fmtMiB(sampler.peak - before)})`);
    assert.equal(reply, '+OK\r\n', logTail(stack.proxy));
    assert.ok(sampler.peak - before <= RSS_BOUND_MIB, `proxy RSS grew ${fmtMiB(sampler.peak - before)}\n${logTail(stack.proxy)}`);
    client.end();

    assert.equal(await stack.redis.cli('STRLEN', 'bp:set'), String(size));
    for (const i of [0, 1, chunks / 2, chunks - 1, 1 + Math.floor(Math.random() * (chunks - 2))]) {
      const start = i * chunkSize;
      const got = await backendCommand(stack.redis.port, ['GETRANGE', 'bp:set', String(start), String(start + chunkSize - 1)], bulkDone(chunkSize));
      const body = got.subarray(`$${chunkSize}\r\n`.length, `$${chunkSize}\r\n`.length + chunkSize);
      const want = createHash('sha256').update(chunkAt(i)).digest('hex');
      assert.equal(createHash('sha256').update(body).digest('hex'), want, `chunk ${i} differs on the backend`);
    }
    await stack.redis.cli('DEL', 'bp:set');
  });
});
