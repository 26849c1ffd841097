// Session ticket keys. A process, and every worker of it, issues and takes tickets under one key
// at a time. The key changes every tls.ticket_rotation_ms and the one before is forgotten: a
// ticket issued under it no longer resumes (the client makes a full handshake), and a copy of the
// process's memory taken later does not hold the keys of earlier periods, so it cannot open the
// tickets recorded then (under TLS 1.2 a ticket carries the session's master secret: with its
// key, a recorded session can be decrypted).
//
// Periods are counted on the system's monotonic clock (CLOCK_MONOTONIC, time since boot: the same
// for every process of the machine, and not moved when the time of day is set), so every worker
// changes key at the same moment and setting the clock back does not hold a key longer. Each
// period has a secret, made from the one before by a one-way step (HMAC-SHA-256), which is then
// wiped. The first is random, made at start; each worker asks its primary for the current one
// over IPC (not in its environment, which stays readable in /proc for the process's life) and
// steps its own from there, so all agree without talking again. The ticket key itself comes from
// the period's secret and a digest of what decides who may resume (tls.ts: the server keys, the
// client CA): a reload that changes those ends every ticket issued before.
import { createHmac, hkdfSync, randomBytes } from 'node:crypto';
import { MAX_MS } from './schema.js';

/**
 * Steps taken at once at most (~5 µs each): beyond, a process that stood still that long (11 days
 * of 1 s periods) starts afresh from a random secret, so its tickets resume on it alone, rather
 * than block.
 */
const MAX_STEPS = 1_000_000;

/** Milliseconds on the monotonic clock. */
export function monotonicMs(): number {
  return Number(process.hrtime.bigint() / 1_000_000n);
}

export class TicketSecrets {
  /** Index of the current period: whole rotationMs of the monotonic clock. */
  private period: number;
  private secret: Buffer;

  /** `inherited`: the primary's handDown(); anything else (or nothing) starts afresh. */
  constructor(
    private readonly rotationMs: number,
    inherited?: string,
    now = monotonicMs(),
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

  /** Steps the secret forward to the period `now` falls in, wiping each one left behind. */
  advance(now = monotonicMs()): void {
    const target = Math.floor(now / this.rotationMs);
    if (target <= this.period) return;
    if (target - this.period > MAX_STEPS) {
      this.secret.fill(0);
      this.secret = randomBytes(32);
    } else {
      for (let i = this.period; i < target; i++) {
        const next = createHmac('sha256', this.secret).update('resp-tls-proxy ticket secret step').digest();
        this.secret.fill(0);
        this.secret = next;
      }
    }
    this.period = target;
  }

  /**
   * The 48 bytes Node takes as ticketKeys (key name, HMAC key, AES key) for the period `now` falls
   * in and the material digest `base`. A copy: wipe it once handed to Node (which copies it too).
   */
  keys(base: Buffer, now = monotonicMs()): Buffer {
    this.advance(now);
    return Buffer.from(hkdfSync('sha256', this.secret, base, 'resp-tls-proxy session ticket keys', 48));
  }

  /** What a worker starts from ("PERIOD:HEX"), sent to it over IPC. A secret: never logged. */
  handDown(now = monotonicMs()): string {
    this.advance(now);
    return `${this.period}:${this.secret.toString('hex')}`;
  }

  /** Milliseconds from `now` until the next period begins. */
  untilNext(now = monotonicMs()): number {
    return this.rotationMs - (now % this.rotationMs);
  }

  /**
   * Steps forward at every period's start from now on, for the life of the process (an unref'd
   * timer), calling `onStep` after each: without it a process that issues no ticket (the
   * primary) would keep an old secret in memory.
   */
  keepStepping(onStep: () => void = () => {}): void {
    const arm = (): void => {
      // A millisecond past the start (timers run on the same monotonic clock, in whole ms); a
      // look that still finds the old period arms again. At most MAX_MS: Node fires a longer
      // timer at once.
      setTimeout(() => {
        this.advance();
        onStep();
        arm();
      }, Math.min(this.untilNext() + 1, MAX_MS)).unref();
    };
    arm();
  }
}

let shared: TicketSecrets | null = null;

/**
 * This process's ticket secrets, made at the first call with the rotation it starts with
 * (tls.ticket_rotation_ms is restart-only) and, in a worker, the state its primary sent.
 */
export function ticketSecrets(rotationMs: number, inherited?: string): TicketSecrets {
  shared ??= new TicketSecrets(rotationMs, inherited);
  return shared;
}
