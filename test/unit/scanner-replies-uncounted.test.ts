// RequestScanner.repliesUncounted: set once a command makes the backend's replies stop being one
// per command — SUBSCRIBE/PSUBSCRIBE/SSUBSCRIBE/MONITOR (subscribeSeen too), UNSUBSCRIBE and its
// P and S forms naming two or more channels (RESP2: one reply per channel) or after HELLO 3
// (RESP3: pushes, not replies), CLIENT REPLY (OFF and SKIP silence replies) and REPLCONF (ACK
// and GETACK get no reply) — so the session invents no "backend connection lost" replies
// and does not wait for replies that never come. Multibulk and inline, any case, at every split.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { RequestScanner } from '../../src/resp/scanner.js';

const LIMITS = { maxMultibulkLen: 1048576, maxBulkLen: 536870912, maxInlineLen: 65536 };

function mb(...args: string[]): string {
  return `*${args.length}\r\n${args.map((a) => `$${Buffer.byteLength(a, 'latin1')}\r\n${a}\r\n`).join('')}`;
}

/** The flags after feeding `stream` whole, and after every two-way split (must agree). */
function flags(stream: string): { uncounted: boolean; subscribe: boolean } {
  const buf = Buffer.from(stream, 'latin1');
  const feed = (parts: Buffer[]): { uncounted: boolean; subscribe: boolean } => {
    const s = new RequestScanner(LIMITS);
    for (const p of parts) s.feed(p, []);
    assert.equal(s.error, null, `unexpected error for ${JSON.stringify(stream)}`);
    return { uncounted: s.repliesUncounted, subscribe: s.subscribeSeen };
  };
  const whole = feed([buf]);
  for (let i = 1; i < buf.length; i++) assert.deepEqual(feed([buf.subarray(0, i), buf.subarray(i)]), whole, `split at ${i} of ${JSON.stringify(stream)}`);
  return whole;
}

describe('RequestScanner.repliesUncounted', () => {
  it('CLIENT REPLY OFF/SKIP/ON, multibulk and inline, any case', () => {
    for (const s of [mb('CLIENT', 'REPLY', 'OFF'), mb('client', 'reply', 'skip'), mb('ClIeNt', 'RePlY', 'ON'), 'CLIENT REPLY OFF\r\n', "client 'reply' skip\n", mb('PING') + mb('CLIENT', 'REPLY', 'OFF') + mb('SET', 'a', '1')]) {
      assert.deepEqual(flags(s), { uncounted: true, subscribe: false }, JSON.stringify(s));
    }
  });

  it('SUBSCRIBE and MONITOR set both flags', () => {
    for (const s of [mb('SUBSCRIBE', 'ch'), mb('psubscribe', 'c*'), 'SSUBSCRIBE x\r\n', mb('MONITOR')]) {
      assert.deepEqual(flags(s), { uncounted: true, subscribe: true }, JSON.stringify(s));
    }
  });

  it('UNSUBSCRIBE, PUNSUBSCRIBE and SUNSUBSCRIBE naming two or more channels stop counting (RESP2: a reply per channel), but are not subscriber mode', () => {
    for (const s of [mb('unsubscribe', 'a', 'b'), mb('PUNSUBSCRIBE', 'p*', 'q*', 'r*'), mb('SunSubscribe', 's', 't'), "punsubscribe 'a' b\n", mb('PING') + mb('SUNSUBSCRIBE', 'x', 'y') + mb('GET', 'k')]) {
      assert.deepEqual(flags(s), { uncounted: true, subscribe: false }, JSON.stringify(s));
    }
  });

  it('with none or one channel they are one reply under RESP2: still counted', () => {
    for (const s of [mb('UNSUBSCRIBE'), mb('unsubscribe', 'a'), mb('PUNSUBSCRIBE'), 'SUNSUBSCRIBE s\r\n', mb('HELLO', '2') + mb('UNSUBSCRIBE'), mb('HELLO') + mb('UNSUBSCRIBE'), mb('HELLO', '33') + mb('UNSUBSCRIBE')]) {
      assert.deepEqual(flags(s), { uncounted: false, subscribe: false }, JSON.stringify(s));
    }
  });

  it('after HELLO 3 any of them stops counting (RESP3 answers with pushes); HELLO 3 alone does not', () => {
    for (const s of [mb('HELLO', '3') + mb('UNSUBSCRIBE'), mb('hello', '3', 'AUTH', 'u', 'p') + mb('PUNSUBSCRIBE', 'p*'), 'HELLO 3\r\nunsubscribe\r\n', mb('HELLO', '3') + mb('GET', 'k') + 'SUNSUBSCRIBE\n']) {
      assert.deepEqual(flags(s), { uncounted: true, subscribe: false }, JSON.stringify(s));
    }
    for (const s of [mb('HELLO', '3'), 'HELLO 3\r\n', mb('HELLO', '3') + mb('PING')]) {
      assert.deepEqual(flags(s), { uncounted: false, subscribe: false }, JSON.stringify(s));
    }
  });

  it('a HELLO 3 that got an error leaves the connection RESP2: a bare UNSUBSCRIBE after it is counted', () => {
    const scanned = (parts: string[], refuse: (s: RequestScanner) => void): { uncounted: boolean; at: number } => {
      const s = new RequestScanner(LIMITS);
      s.feed(Buffer.from(parts[0]!, 'latin1'), []);
      const at = s.hello3At;
      refuse(s);
      for (const p of parts.slice(1)) s.feed(Buffer.from(p, 'latin1'), []);
      return { uncounted: s.repliesUncounted, at };
    };
    assert.deepEqual(scanned([mb('PING') + mb('HELLO', '3'), mb('UNSUBSCRIBE')], (s) => s.helloAnswered(2, true)), { uncounted: false, at: 2 });
    assert.deepEqual(scanned(['HELLO 3\r\n', mb('UNSUBSCRIBE')], (s) => s.helloAnswered(1, true)), { uncounted: false, at: 1 });
    assert.deepEqual(scanned([mb('HELLO', '3'), mb('UNSUBSCRIBE')], () => undefined), { uncounted: true, at: 1 });
    // A later HELLO 3 is not undone by the refusal of an earlier one.
    assert.deepEqual(scanned([mb('HELLO', '3') + mb('HELLO', '3', 'AUTH', 'u', 'p'), mb('UNSUBSCRIBE')], (s) => s.helloAnswered(1, true)), { uncounted: true, at: 2 });
  });

  it('REPLCONF (ACK and GETACK get no reply), multibulk and inline, any case', () => {
    for (const s of [mb('REPLCONF', 'ACK', '0'), mb('replconf', 'getack', '*'), 'ReplConf ack 0\r\n', mb('PING') + mb('REPLCONF', 'listening-port', '1') + mb('GET', 'k')]) {
      assert.deepEqual(flags(s), { uncounted: true, subscribe: false }, JSON.stringify(s));
    }
  });

  it('a refused HELLO 3 after an accepted one leaves the connection RESP3', () => {
    const s = new RequestScanner(LIMITS);
    s.feed(Buffer.from(mb('HELLO', '3'), 'latin1'), []);
    s.helloAnswered(1, false);
    s.feed(Buffer.from(mb('HELLO', '3', 'AUTH', 'nosuch', 'x'), 'latin1'), []);
    s.helloAnswered(2, true);
    s.feed(Buffer.from(mb('UNSUBSCRIBE'), 'latin1'), []);
    assert.equal(s.repliesUncounted, true, 'RESP3: the bare UNSUBSCRIBE is answered with a push only');
  });

  it('look-alikes do not', () => {
    for (const s of [mb('CLIENT', 'LIST'), mb('CLIENT', 'REPLYX', 'OFF'), mb('CLIENTS', 'REPLY', 'OFF'), mb('ECHO', 'CLIENT'), mb('ECHO', 'client', 'reply'), mb('SET', 'REPLY', 'x'),
      mb('CLIENT'), mb('CLIENT', 'ID') + mb('GET', 'reply'), 'ECHO client reply\r\n', 'CLIENT LIST\r\n', mb('CLIENT', 'REPL\xc9'), mb('CLIENT', 'SETNAME', 'reply'),
      mb('UNSUBSCRIBEX', 'a', 'b'), mb('XUNSUBSCRIBE', 'a', 'b'), mb('ECHO', 'unsubscribe', 'a', 'b'), mb('PUNSUBSCRIB', 'a', 'b'), 'ECHO sunsubscribe a b\r\n',
      mb('REPLCONFX', 'ACK', '0'), mb('ECHO', 'replconf'), 'ECHO replconf\r\n',
      mb('HELLOX', '3') + mb('UNSUBSCRIBE'), mb('ECHO', 'hello', '3') + mb('UNSUBSCRIBE'), mb('HELL', '3') + mb('UNSUBSCRIBE')]) {
      assert.deepEqual(flags(s), { uncounted: false, subscribe: false }, JSON.stringify(s));
    }
  });
});
