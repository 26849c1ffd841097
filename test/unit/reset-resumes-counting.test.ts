// RESET turns reply counting back on. Every RESET is remembered until answered
// (RequestScanner.resetsPending), counted or not, since each +RESET the backend sends
// (ReplyCounter.onReset) answers the oldest. Once replies stop being one per command (SUBSCRIBE,
// MONITOR, CLIENT REPLY, REPLCONF, some UNSUBSCRIBEs), the +RESET of a RESET sent afterwards
// means every command up to it is answered, and counting resumes from it unless a later command
// stopped it again. After CLIENT REPLY SKIP Redis sends no +RESET for the next command, so a
// RESET there ends the matching for good, as does a 65th one waiting. Multibulk and inline, at
// every split.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { ReplyCounter } from '../../src/resp/reply-counter.js';
import { RequestScanner } from '../../src/resp/scanner.js';

const LIMITS = { maxMultibulkLen: 1048576, maxBulkLen: 536870912, maxInlineLen: 65536 };
const B = (s: string): Buffer => Buffer.from(s, 'latin1');

function mb(...args: string[]): string {
  return `*${args.length}\r\n${args.map((a) => `$${Buffer.byteLength(a, 'latin1')}\r\n${a}\r\n`).join('')}`;
}

interface Scanned {
  pending: number[];
  uncounted: boolean;
}

/** The pending RESETs after feeding `stream` whole, and after every two-way split (must agree). */
function scan(stream: string): Scanned {
  const buf = B(stream);
  const feed = (parts: Buffer[]): Scanned => {
    const s = new RequestScanner(LIMITS);
    for (const p of parts) s.feed(p, []);
    assert.equal(s.error, null, `unexpected error for ${JSON.stringify(stream)}`);
    return { pending: [...s.resetsPending], uncounted: s.repliesUncounted };
  };
  const whole = feed([buf]);
  for (let i = 1; i < buf.length; i++) assert.deepEqual(feed([buf.subarray(0, i), buf.subarray(i)]), whole, `split at ${i} of ${JSON.stringify(stream)}`);
  return whole;
}

function scanner(stream: string): RequestScanner {
  const s = new RequestScanner(LIMITS);
  s.feed(B(stream), []);
  assert.equal(s.error, null);
  return s;
}

describe('RequestScanner: RESET after replies stopped being counted', () => {
  it('is remembered by its command number, multibulk and inline, any case', () => {
    assert.deepEqual(scan(mb('SUBSCRIBE', 'a') + mb('RESET')), { pending: [2], uncounted: true });
    assert.deepEqual(scan(mb('PING') + mb('CLIENT', 'REPLY', 'OFF') + mb('SET', 'k', 'v') + 'reset\r\n'), { pending: [4], uncounted: true });
    assert.deepEqual(scan('MONITOR\r\n' + mb('ReSeT') + mb('PING') + 'RESET\n'), { pending: [2, 4], uncounted: true });
    assert.deepEqual(scan(mb('REPLCONF', 'ACK', '0') + '\r\n' + mb('RESET')), { pending: [2], uncounted: true }); // a blank line is no command
  });

  it('is remembered while replies are counted too: its +RESET must not answer a later one', () => {
    assert.deepEqual(scan(mb('RESET')), { pending: [1], uncounted: false });
    assert.deepEqual(scan('RESET\r\n' + mb('SUBSCRIBE', 'a') + mb('RESET') + mb('BLPOP', 'k', '1')), { pending: [1, 3], uncounted: true });
  });

  it('is not remembered with arguments (an arity error), or when it only looks like RESET', () => {
    for (const s of [mb('SUBSCRIBE', 'a') + mb('RESET', 'x'), mb('SUBSCRIBE', 'a') + 'RESET now\r\n',
      mb('MONITOR') + mb('RESETX'), mb('MONITOR') + mb('RESE'), mb('MONITOR') + mb('ECHO', 'RESET'), mb('MONITOR') + 'ECHO reset\r\n']) {
      assert.deepEqual(scan(s).pending, [], JSON.stringify(s));
    }
  });

  it('right after CLIENT REPLY (SKIP silences it) ends the matching for the connection', () => {
    assert.deepEqual(scan(mb('SUBSCRIBE', 'a') + mb('RESET') + mb('CLIENT', 'REPLY', 'SKIP') + mb('RESET')), { pending: [], uncounted: true });
    assert.deepEqual(scan('CLIENT REPLY SKIP\r\n*0\r\nRESET\r\n' + mb('PING') + mb('RESET')), { pending: [], uncounted: true });
    // One command between them: the SKIP silenced that one, not the RESET.
    assert.deepEqual(scan(mb('CLIENT', 'REPLY', 'SKIP') + mb('PING') + mb('RESET')), { pending: [3], uncounted: true });
  });

  it('64 are remembered; a 65th ends the matching for the connection (one left out would take a later one\'s +RESET)', () => {
    assert.deepEqual(scanner(mb('MONITOR') + mb('RESET').repeat(64)).resetsPending, Array.from({ length: 64 }, (_, i) => i + 2));
    const s = scanner(mb('MONITOR') + mb('RESET').repeat(65) + mb('RESET'));
    assert.deepEqual(s.resetsPending, []);
    assert.equal(s.resetAnswered(0), -1);
    assert.equal(s.repliesUncounted, true);
  });

  it('counted, a +RESET settles every RESET up to its reply number (one refused by an ACL got an error instead)', () => {
    const s = scanner(mb('RESET') + mb('GET', 'k') + mb('RESET') + mb('PING') + mb('RESET'));
    assert.deepEqual(s.resetsPending, [1, 3, 5]);
    assert.equal(s.resetAnswered(3), -1); // reply 3: the first RESET got -NOPERM, the second +RESET
    assert.deepEqual(s.resetsPending, [5]);
    assert.equal(s.repliesUncounted, false);
  });

  it('a RESET sent while counted, then SUBSCRIBE and another RESET: the first +RESET answers the first RESET, the second resumes counting', () => {
    const s = scanner(mb('RESET') + mb('SUBSCRIBE', 'a') + mb('RESET') + mb('BLPOP', 'k', '1'));
    assert.equal(s.resetAnswered(1), -1, 'the first RESET came before the SUBSCRIBE');
    assert.equal(s.repliesUncounted, true);
    assert.equal(s.resetAnswered(3), 3);
    assert.equal(s.repliesUncounted, false);
  });

  it('the answer resumes counting from the RESET, out of subscriber mode', () => {
    const s = scanner(mb('SUBSCRIBE', 'a', 'b') + mb('RESET') + mb('GET', 'k'));
    assert.equal(s.subscribeSeen, true);
    assert.equal(s.resetAnswered(0), 2);
    assert.equal(s.repliesUncounted, false);
    assert.equal(s.subscribeSeen, false);
    assert.deepEqual(s.resetsPending, []);
    s.feed(B(mb('SUBSCRIBE', 'c')), []);
    assert.equal(s.repliesUncounted, true, 'a later SUBSCRIBE stops counting again');
  });

  it('an answered RESET followed by a command that stops counting again does not resume it; a later RESET does', () => {
    const s = scanner(mb('SUBSCRIBE', 'a') + mb('RESET') + mb('CLIENT', 'REPLY', 'OFF') + mb('SET', 'k', 'v') + mb('RESET') + mb('PING'));
    assert.deepEqual(s.resetsPending, [2, 5]);
    assert.equal(s.resetAnswered(0), -1);
    assert.equal(s.repliesUncounted, true);
    assert.deepEqual(s.resetsPending, [5]);
    assert.equal(s.resetAnswered(0), 5);
    assert.equal(s.repliesUncounted, false);
    assert.equal(s.resetAnswered(0), -1, 'nothing left to answer');
  });

  it('goes back to RESP2: a bare UNSUBSCRIBE after it is counted again, unless HELLO 3 came after the RESET', () => {
    const s = scanner(mb('HELLO', '3') + mb('SUBSCRIBE', 'a') + mb('RESET'));
    s.helloAnswered(1, false);
    assert.equal(s.resetAnswered(0), 3);
    s.feed(B(mb('UNSUBSCRIBE')), []);
    assert.equal(s.repliesUncounted, false, 'RESP2: one reply');
    const t = scanner(mb('SUBSCRIBE', 'a') + mb('RESET') + mb('HELLO', '3'));
    assert.equal(t.resetAnswered(0), 2);
    t.feed(B(mb('UNSUBSCRIBE')), []);
    assert.equal(t.repliesUncounted, true, 'RESP3 again: a push, not a reply');
  });
});

describe('ReplyCounter: +RESET', () => {
  /** Replies and onReset calls after feeding `stream` in `parts`, with onReset answering `at`. */
  function count(parts: Buffer[], at: number): { replies: number; calls: number } {
    const c = new ReplyCounter();
    let calls = 0;
    c.onReset = () => {
      calls++;
      return at;
    };
    for (const p of parts) c.feed(p);
    return { replies: c.replies, calls };
  }

  function everySplit(stream: string, at: number): { replies: number; calls: number } {
    const buf = B(stream);
    const whole = count([buf], at);
    for (let i = 1; i < buf.length; i++) assert.deepEqual(count([buf.subarray(0, i), buf.subarray(i)], at), whole, `split at ${i} of ${JSON.stringify(stream)}`);
    assert.deepEqual(count([...buf].map((b) => Buffer.of(b)), at), whole, 'byte by byte');
    return whole;
  }

  const SUBSCRIBED_TWICE = '*3\r\n$9\r\nsubscribe\r\n$1\r\na\r\n:1\r\n*3\r\n$9\r\nsubscribe\r\n$1\r\nb\r\n:2\r\n';

  it('a top-level +RESET calls onReset once it is counted, and counting goes on from what it returns', () => {
    // SUBSCRIBE a b (two replies for one command), RESET (command 2), PING: three replies owed for three commands.
    assert.deepEqual(everySplit(`${SUBSCRIBED_TWICE}+RESET\r\n+PONG\r\n`, 2), { replies: 3, calls: 1 });
    assert.deepEqual(everySplit(`${SUBSCRIBED_TWICE}+RESET\r\n+PONG\r\n`, -1), { replies: 4, calls: 1 }); // -1: go on as before
  });

  it('look-alikes do not call it: other status lines, a bulk RESET, one inside an aggregate or a push', () => {
    for (const s of ['+RESETX\r\n', '+RESE\r\n', '+ RESET\r\n', '+RESET\n', '+reset\r\n', '$5\r\nRESET\r\n', '-RESET\r\n', '*1\r\n+RESET\r\n', '>2\r\n+RESET\r\n+RESET\r\n', '|1\r\n+a\r\n+RESET\r\n:1\r\n']) {
      assert.equal(everySplit(s, 0).calls, 0, JSON.stringify(s));
    }
    assert.equal(everySplit('|1\r\n+a\r\n:1\r\n+RESET\r\n', 7).calls, 1, 'an attribute before it changes nothing');
  });

  it('with onReset unset, +RESET is a reply like any other', () => {
    const c = new ReplyCounter();
    c.feed(B('+RESET\r\n+RESET\r\n'));
    assert.equal(c.replies, 2);
  });
});
