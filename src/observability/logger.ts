// pino, JSON lines on stdout; readable output when a person watches a terminal.
import { createRequire } from 'node:module';
import { pino, type Logger } from 'pino';

export type { Logger };

export function createLogger(level: string): Logger {
  const pretty = process.stdout.isTTY && process.env.NODE_ENV !== 'production' && canResolve('pino-pretty');
  const options = { level, base: { pid: process.pid }, timestamp: pino.stdTimeFunctions.isoTime };
  if (pretty) return pino({ ...options, transport: { target: 'pino-pretty', options: { colorize: true } } });
  // Synchronous writes: lines stay in order, a slow reader of stdout holds the process back
  // rather than have it queue log lines without bound, and a closed stdout (EPIPE) just ends
  // logging. pino's default asynchronous stdout flushes at exit in a loop that retries EPIPE
  // for ever (sonic-boom 4): the process never exited.
  return pino(options, pino.destination({ dest: 1, sync: true }));
}

function canResolve(name: string): boolean {
  try {
    createRequire(import.meta.url).resolve(name);
    return true;
  } catch {
    return false;
  }
}
