// A command stream sent one byte at a time (and in other small pieces) is answered exactly as
// the same stream sent whole: the scanner's state survives every chunk boundary.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { describe, test } from 'node:test';
import { logTail, useStack } from '../helpers/fixture.js';
import { ERR, encodeCommand, show } from '../helpers/resp.js';
import { describe as showResult, strictClient } from '../helpers/strict-client.js';
import { nodeTlsExchange, splitEvery } from '../helpers/tls-client.js';

const binary = Buffer.from(Array.from({ length: 256 }, (_, i) => i));

/**
 * A mixed stream — multibulk and inline, quotes and escapes, binary values with CR/LF inside,
 * empty lines, *0 and *-1 — whose replies do not depend on earlier runs because every key
 * carries the one-letter prefix `p`. It ends with `tail`.
 */
function stream(p: string, tail: Buffer): Buffer {
  return Buffer.concat([
    encodeCommand(['SET', `${p}:k1`, 'hello']),
    Buffer.from(`GET ${p}:k1\r\n`),
    Buffer.from('\r\n'),
    Buffer.from('*0\r\n'),
    Buffer.from('*-1\r\n'),
    Buffer.from(`INCR ${p}:n\r\nINCR ${p}:n\r\n  INCR   ${p}:n  \r\n`),
    Buffer.from(`SET ${p}:q "a b\\x41\\n"\r\n`),
    encodeCommand(['GET', `${p}:q`]),
    Buffer.from("ECHO 'it\\'s'\r\n"),
    encodeCommand(['SET', `${p}:bin`, binary]),
    encodeCommand(['GET', `${p}:bin`]),
    Buffer.from('PING\n'),
    encodeCommand(['ECHO', '']),
    encodeCommand(['RPUSH', `${p}:l`, 'a', 'b', 'c']),
    Buffer.from(`LRANGE ${p}:l 0 -1\r\n`),
    tail,
  ]);
}

const expectedReplies = Buffer.concat([
  Buffer.from('+OK\r\n'),
  Buffer.from('$5\r\nhello\r\n'),
  Buffer.from(':1\r\n:2\r\n:3\r\n'),
  Buffer.from('+OK\r\n'),
  Buffer.from('$5\r\na bA\n\r\n'),
  Buffer.from("$4\r\nit's\r\n"),
  Buffer.from('+OK\r\n'),
  Buffer.from('$256\r\n'), binary, Buffer.from('\r\n'),
  Buffer.from('+PONG\r\n'),
  Buffer.from('$0\r\n\r\n'),
  Buffer.from(':3\r\n'),
  Buffer.from('*3\r\n$1\r\na\r\n$1\r\nb\r\n$1\r\nc\r\n'),
]);

const QUIT = Buffer.from('QUIT\r\n');
const quitReply = Buffer.concat([expectedReplies, Buffer.from('+OK\r\n')]);
const OVER = Buffer.from('*1001\r\n$3\r\nDEL\r\n');
const overReply = Buffer.concat([expectedReplies, Buffer.from(ERR.multibulk)]);

function assertSame(got: Buffer, expected: Buffer, why: string): void {
  if (got.equals(expected)) return;
  let i = 0;
  while (i < got.length && i < expected.length && got[i] === expected[i]) i++;
  assert.fail(`replies differ at byte ${i} of ${expected.length}: got ${show(got.subarray(i, i + 60))}, expected ${show(expected.subarray(i, i + 60))}\n${why}`);
}

describe('a stream split anywhere is answered as when sent whole', { timeout: 240_000 }, () => {
  const stack = useStack({ proxy: () => ({ limits: { max_multibulk_len: 1000 } }) });
  let prefix = 0;
  const next = (): string => String.fromCharCode(97 + (prefix++ % 26));

  test('sent whole, ending with QUIT: every reply, +OK, close_notify', { timeout: 30_000 }, async () => {
    const r = await strictClient({ port: stack.proxy.port, payload: stream(next(), QUIT), caFile: stack.certs.caFile });
    const why = `${showResult(r)}\n${logTail(stack.proxy)}`;
    assertSame(r.reply, quitReply, why);
    assert.equal(r.close, 'close_notify', why);
  });

  for (const size of [1, 2, 3, 5, 7, 13]) {
    test(`strict client, ${size} byte(s) per TLS record, ending with QUIT`, { timeout: 60_000 }, async () => {
      const r = await strictClient({ port: stack.proxy.port, payload: stream(next(), QUIT), caFile: stack.certs.caFile, chunkSize: size, chunkDelayMs: 1 });
      const why = `${showResult(r)}\n${logTail(stack.proxy)}`;
      assertSame(r.reply, quitReply, why);
      assert.equal(r.close, 'close_notify', why);
      assert.equal(r.writeError, null, why);
    });
  }

  test('sent whole, ending with a command over max_multibulk_len: every reply, the error, close_notify', { timeout: 30_000 }, async () => {
    const r = await strictClient({ port: stack.proxy.port, payload: stream(next(), OVER), caFile: stack.certs.caFile });
    const why = `${showResult(r)}\n${logTail(stack.proxy)}`;
    assertSame(r.reply, overReply, why);
    assert.equal(r.close, 'close_notify', why);
  });

  test('strict client, 1 byte per TLS record, ending with a command over max_multibulk_len', { timeout: 60_000 }, async () => {
    const r = await strictClient({ port: stack.proxy.port, payload: stream(next(), OVER), caFile: stack.certs.caFile, chunkSize: 1, chunkDelayMs: 1 });
    const why = `${showResult(r)}\n${logTail(stack.proxy)}`;
    assertSame(r.reply, overReply, why);
    assert.equal(r.close, 'close_notify', why);
    assert.equal(r.writeError, null, why);
  });

  test("Node's TLS client, one write() per byte with setImmediate between: same replies", { timeout: 60_000 }, async () => {
    const ca = readFileSync(stack.certs.caFile);
    const r = await nodeTlsExchange({ port: stack.proxy.port, ca, chunks: splitEvery(stream(next(), QUIT), 1) });
    assert.equal(r.how, 'end', `${r.how} ${r.error ?? ''}\n${logTail(stack.proxy)}`);
    assertSame(r.data, quitReply, logTail(stack.proxy));
  });

  test('every key the streams wrote is on the backend (the splits lost no command)', async () => {
    for (let i = 0; i < prefix; i++) {
      const p = String.fromCharCode(97 + i);
      assert.equal(await stack.redis.cli('GET', `${p}:n`), '3', `prefix ${p}`);
      assert.equal(await stack.redis.cli('LLEN', `${p}:l`), '3', `prefix ${p}`);
    }
  });
});
