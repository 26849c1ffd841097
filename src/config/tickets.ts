// Session ticket keys. A process, and every worker of it, issues and takes tickets under one key
// at a time. The key changes every tls.ticket_rotation_ms, at the clock's multiples of it, and the
// one before is forgotten: a ticket issued under it no longer resumes (the client makes a full
// handshake), and a copy of the process's memory taken later does not hold the keys of earlier
// periods, so it cannot open the tickets recorded then (under TLS 1.2 a ticket carries the
// session's master secret: with its key, a recorded session can be decrypted).
//
// Each period has a secret, made from the one before by a one-way step (HMAC-SHA-256), which is then
// wiped. The first is random, made at start; the primary hands its current one to each worker it
// forks, and every process steps its own on the same clock, so all agree without talking to each
// other. The ticket key itself comes from the period's secret and a digest of what decides who
// may resume (tls.ts: the server keys, the client CA): a reload that changes those ends every
// ticket issued before.
import cluster from 'node:cluster';
import { createHmac, hkdfSync, randomBytes } from 'node:crypto';

/** Hands the primary's current period and secret ("PERIOD:HEX") to the workers it forks. */
export const TICKET_STATE_ENV = 'RESP_TLS_PROXY_TICKET_STATE';

/**
 * Steps taken at once at most (a clock set far ahead, or a process stalled for that many
 * periods; ~5 µs a step): the secret still moves on, by this many steps, and processes that see
 * the same jump still agree.
 */
const MAX_STEPS = 10_000;

export class TicketSecrets {
  /** Index of the current period: whole rotationMs since the Unix epoch. */
  private period: number;
  private secret: Buffer;

  /** `inherited`: the primary's handDown(); anything else (or nothing) starts afresh. */
  constructor(
    private readonly rotationMs: number,
    inherited?: string,
    now = Date.now(),
  ) {
    const m = inherited === undefined ? null : /^(\d+):([0-9a-f]{64})$/.exec(inherited);
    if (m !== null) {
      this.period = Number(m[1]);
      this.secret = Buffer.from(m[2]!, 'hex');
    } else {
      this.period = Math.floor(now / rotationMs);
      this.secret = randomBytes(32);
    }
    this.advance(now);
  }

  /**
   * Steps the secret forward to the period `now` falls in, wiping each one left behind. Never
   * back: after the clock is set back, the current secret stays until its period's end comes
   * round again.
   */
  advance(now = Date.now()): void {
    const target = Math.floor(now / this.rotationMs);
    if (target <= this.period) return;
    const steps = Math.min(target - this.period, MAX_STEPS);
    for (let i = 0; i < steps; i++) {
      const next = createHmac('sha256', this.secret).update('resp-tls-proxy ticket secret step').digest();
      this.secret.fill(0);
      this.secret = next;
    }
    this.period = target;
  }

  /**
   * The 48 bytes Node takes as ticketKeys (key name, HMAC key, AES key) for the period `now` falls
   * in and the material digest `base`.
   */
  keys(base: Buffer, now = Date.now()): Buffer {
    this.advance(now);
    return Buffer.from(hkdfSync('sha256', this.secret, base, 'resp-tls-proxy session ticket keys', 48));
  }

  /** What a worker forked now starts from (TICKET_STATE_ENV). A secret: never logged. */
  handDown(now = Date.now()): string {
    this.advance(now);
    return `${this.period}:${this.secret.toString('hex')}`;
  }

  /** Milliseconds from `now` until the next period begins. */
  untilNext(now = Date.now()): number {
    return this.rotationMs - (now % this.rotationMs);
  }

  /**
   * Steps forward at every period's start from now on, for the life of the process (an unref'd
   * timer), calling `onStep` after each: without it a process that issues no ticket (the
   * primary) would keep an old secret in memory.
   */
  keepStepping(onStep: () => void = () => {}): void {
    const arm = (): void => {
      // A millisecond past the start: timers do not fire early, but Date.now() and the timers'
      // clock can disagree by a little. A look that still finds the old period arms again.
      setTimeout(() => {
        this.advance();
        onStep();
        arm();
      }, this.untilNext() + 1).unref();
    };
    arm();
  }
}

let shared: TicketSecrets | null = null;

/**
 * This process's ticket secrets, made at the first call with the rotation it starts with
 * (tls.ticket_rotation_ms is restart-only) and, in a worker, the state its primary handed down.
 */
export function ticketSecrets(rotationMs: number): TicketSecrets {
  if (shared === null) {
    const inherited = cluster.isWorker ? process.env[TICKET_STATE_ENV] : undefined;
    delete process.env[TICKET_STATE_ENV]; // out of diagnostic reports and child processes
    shared = new TicketSecrets(rotationMs, inherited);
  }
  return shared;
}
