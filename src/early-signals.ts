// Imported first by cli.ts, so that it runs before the other modules load. From the process's
// first milliseconds until the proxy's own handlers are installed:
// - a SIGHUP (systemd's reload right after a restart, a certificate renewal hook) must neither
//   kill the process, its default action, nor be lost;
// - a SIGTERM or SIGINT (a deploy rolled back at once, Ctrl-C while it starts) must not kill it
//   by signal either (exit 143 and nothing logged), but stop it as documented: it is handed to
//   the stop handler as soon as there is one, which shuts down in order and exits 0. A start
//   that hangs (a config or certificate file on a dead mount, read synchronously: no JavaScript
//   runs until the read returns, so no handler could act) ends only by SIGKILL, which
//   supervisors send after their stop timeout.
// Commands other than the proxy (--check, stats, --version) give the stop signals back at once.
// Before this module runs, during Node's own start (~100 ms), SIGTERM and SIGINT still kill the
// process (Node's handler restores the terminal and dies by the signal): nothing can hold them
// there.
import os from 'node:os';

let sighup = false;
const stops: NodeJS.Signals[] = [];
const holdSighup = (): void => {
  sighup = true;
};
const holdStop = (signal: NodeJS.Signals): void => {
  stops.push(signal);
};
// SIGHUP last: once the process catches it (SigCgt in /proc, which Node's own SIGTERM and SIGINT
// handlers leave no trace of, as it catches those from its start) all three are held.
process.on('SIGTERM', holdStop);
process.on('SIGINT', holdStop);
process.on('SIGHUP', holdSighup);

/** Hands SIGHUP over to its real handler: true if one came in the meantime (reload once now). */
export function takeEarlySighup(): boolean {
  process.removeListener('SIGHUP', holdSighup);
  const came = sighup;
  sighup = false;
  return came;
}

/**
 * Hands SIGTERM and SIGINT over to the real stop handler: those that came in the meantime, in
 * order, for it to act on as if they came now (a second one means "close every connection now").
 */
export function takeEarlyStops(): NodeJS.Signals[] {
  process.removeListener('SIGTERM', holdStop);
  process.removeListener('SIGINT', holdStop);
  return stops.splice(0);
}

/**
 * For a command that is not the proxy: SIGTERM and SIGINT act as by default again, and one that
 * came ends the process now, with the status a shell reports for death by that signal (143,
 * 130). Not by sending it to ourselves: on Node 26 the signal can still reach the listener just
 * removed, and be ignored.
 */
export function releaseEarlyStops(): void {
  const came = takeEarlyStops();
  if (came.length > 0) process.exit(128 + os.constants.signals[came[0]!]);
}
