// RequestScanner.repliesUncounted: set once a command makes the backend's replies stop being one
// per command — SUBSCRIBE/PSUBSCRIBE/SSUBSCRIBE/MONITOR (subscribeSeen too), UNSUBSCRIBE and its
// P and S forms (RESP2: one reply per channel; RESP3: pushes, not replies) and CLIENT REPLY (OFF
// and SKIP silence replies) — so the session invents no "backend connection lost" replies
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

  it('UNSUBSCRIBE, PUNSUBSCRIBE and SUNSUBSCRIBE stop counting but are not subscriber mode', () => {
    for (const s of [mb('UNSUBSCRIBE'), mb('unsubscribe', 'a', 'b'), mb('PUNSUBSCRIBE', 'p*'), mb('SunSubscribe', 's'), 'UNSUBSCRIBE\r\n', "punsubscribe 'a'\n", mb('PING') + mb('SUNSUBSCRIBE') + mb('GET', 'k')]) {
      assert.deepEqual(flags(s), { uncounted: true, subscribe: false }, JSON.stringify(s));
    }
  });

  it('look-alikes do not', () => {
    for (const s of [mb('CLIENT', 'LIST'), mb('CLIENT', 'REPLYX', 'OFF'), mb('CLIENTS', 'REPLY', 'OFF'), mb('ECHO', 'CLIENT'), mb('ECHO', 'client', 'reply'), mb('SET', 'REPLY', 'x'),
      mb('CLIENT'), mb('CLIENT', 'ID') + mb('GET', 'reply'), 'ECHO client reply\r\n', 'CLIENT LIST\r\n', mb('CLIENT', 'REPL\xc9'), mb('CLIENT', 'SETNAME', 'reply'),
      mb('UNSUBSCRIBEX'), mb('XUNSUBSCRIBE'), mb('ECHO', 'unsubscribe'), mb('PUNSUBSCRIB'), 'ECHO sunsubscribe\r\n']) {
      assert.deepEqual(flags(s), { uncounted: false, subscribe: false }, JSON.stringify(s));
    }
  });
});
