// Resident memory of a process we started (the proxy), read from /proc/<pid>/status.
import { readFileSync } from 'node:fs';

/** VmRSS of `pid` in MiB (fractional). Throws when the process is gone. */
export function rssMiB(pid: number): number {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const m = /^VmRSS:\s+(\d+)\s+kB$/m.exec(status);
  if (!m) throw new Error(`no VmRSS in /proc/${pid}/status`);
  return Number(m[1]) / 1024;
}

/** Samples rssMiB(pid) every `intervalMs` until stop(); keeps the peak and the last value. */
export class RssSampler {
  peak: number;
  last: number;
  samples = 0;
  private readonly timer: NodeJS.Timeout;

  constructor(private readonly pid: number, intervalMs = 50) {
    this.peak = this.last = rssMiB(pid);
    this.timer = setInterval(() => this.sample(), intervalMs);
    this.timer.unref();
  }

  sample(): number {
    try {
      this.last = rssMiB(this.pid);
      this.samples++;
      if (this.last > this.peak) this.peak = this.last;
    } catch {
      // the process exited; the test will notice on its own
    }
    return this.last;
  }

  stop(): void {
    clearInterval(this.timer);
    this.sample();
  }
}

export const fmtMiB = (v: number): string => `${v.toFixed(1)} MiB`;
