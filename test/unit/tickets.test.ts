import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { TicketSecrets, monotonicMs } from '../../src/config/tickets.js';

const HOUR = 3_600_000;
const T0 = 1_800_000_000_000; // a whole number of hours: a period starts here
const BASE = Buffer.alloc(32, 1);

describe('TicketSecrets: one ticket key per period, each secret stepped one way from the last', () => {
  it('a worker started from the primary\'s state makes the same keys, now and in later periods', () => {
    const primary = new TicketSecrets(HOUR, undefined, T0 + 10);
    const worker = new TicketSecrets(HOUR, primary.handDown(T0 + 20), T0 + 20);
    assert.deepEqual(worker.keys(BASE, T0 + 30), primary.keys(BASE, T0 + 30));
    assert.equal(worker.keys(BASE, T0).length, 48);
    // One steps every period, the other only once, three periods later: they still agree.
    for (const p of [1, 2, 3]) primary.advance(T0 + p * HOUR);
    assert.deepEqual(worker.keys(BASE, T0 + 3 * HOUR + 5), primary.keys(BASE, T0 + 3 * HOUR + 5));
  });

  it('a worker forked with an earlier period\'s state catches up', () => {
    const primary = new TicketSecrets(HOUR, undefined, T0);
    const state = primary.handDown(T0);
    const late = new TicketSecrets(HOUR, state, T0 + 2 * HOUR + 1);
    assert.deepEqual(late.keys(BASE, T0 + 2 * HOUR + 1), primary.keys(BASE, T0 + 2 * HOUR + 1));
  });

  it('the key changes at each period\'s start, and only then', () => {
    const s = new TicketSecrets(HOUR, undefined, T0);
    const first = s.keys(BASE, T0);
    assert.deepEqual(s.keys(BASE, T0 + HOUR - 1), first);
    const second = s.keys(BASE, T0 + HOUR);
    assert.notDeepEqual(second, first);
    assert.notDeepEqual(s.keys(BASE, T0 + 2 * HOUR), second);
  });

  it('a look at an earlier time changes nothing (the secret never steps back)', () => {
    const s = new TicketSecrets(HOUR, undefined, T0 + HOUR);
    const now = s.keys(BASE, T0 + HOUR);
    assert.deepEqual(s.keys(BASE, T0), now);
    assert.deepEqual(s.keys(BASE, T0 + HOUR + 5), now);
  });

  it('periods are counted on the monotonic clock', () => {
    const s = new TicketSecrets(HOUR);
    const t = monotonicMs();
    assert.ok(Math.abs(s.untilNext() - (HOUR - (t % HOUR))) <= 5, `${s.untilNext()}`);
    assert.ok(Math.abs(t - Number(process.hrtime.bigint() / 1_000_000n)) <= 5);
  });

  it('the key depends on the material digest: new server keys or client CA, new tickets', () => {
    const s = new TicketSecrets(HOUR, undefined, T0);
    assert.notDeepEqual(s.keys(Buffer.alloc(32, 2), T0), s.keys(BASE, T0));
  });

  it('each process started without a state, or with a malformed one, has its own secret', () => {
    const a = new TicketSecrets(HOUR, undefined, T0);
    const b = new TicketSecrets(HOUR, 'not a state', T0);
    assert.notDeepEqual(a.keys(BASE, T0), b.keys(BASE, T0));
    assert.match(a.handDown(T0), /^\d+:[0-9a-f]{64}$/);
  });

  it('processes that stepped at different times agree: the secret depends on the period alone', () => {
    const a = new TicketSecrets(1000, undefined, T0);
    const b = new TicketSecrets(1000, a.handDown(T0), T0);
    a.advance(T0 + 5_000);
    const later = T0 + 20_000_000; // 20,000 periods on
    assert.deepEqual(a.keys(BASE, later), b.keys(BASE, later));
  });

  it('a process that stood still for over a million periods starts afresh rather than block', () => {
    const a = new TicketSecrets(1000, undefined, T0);
    const b = new TicketSecrets(1000, a.handDown(T0), T0);
    const far = T0 + 10 * 365 * 24 * HOUR; // ten years of 1 s periods
    const started = performance.now();
    const there = a.keys(BASE, far);
    assert.ok(performance.now() - started < 1_000, `${performance.now() - started} ms`);
    assert.notDeepEqual(b.keys(BASE, far), there);
    assert.notDeepEqual(a.keys(BASE, far + 1000), there);
  });

  it('untilNext: the time left in the current period', () => {
    const s = new TicketSecrets(HOUR, undefined, T0);
    assert.equal(s.untilNext(T0), HOUR);
    assert.equal(s.untilNext(T0 + HOUR - 1), 1);
  });
});
