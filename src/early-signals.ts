// Imported first by cli.ts, so that it runs before the other modules load. From the process's
// first milliseconds until the proxy's own handlers are installed:
// - a SIGHUP (systemd's reload right after a restart, a certificate renewal hook) must neither
//   kill the process, its default action, nor be lost;
// - a SIGTERM or SIGINT (a deploy rolled back at once, Ctrl-C while it starts) must not kill it
//   by signal either (exit 143 and nothing logged), but stop it as documented: it is handed to
//   the stop handler as soon as there is one, which shuts down in order and exits 0. A second
//   one before then ends the process as by default.
// Commands other than the proxy (--check, stats, --version) give the stop signals back at once.
// Before this module runs, during Node's own start (~100 ms), SIGTERM and SIGINT still kill the
// process (Node's handler restores the terminal and dies by the signal): nothing can hold them
// there.
let sighup = false;
const stops: NodeJS.Signals[] = [];
const holdSighup = (): void => {
  sighup = true;
};
const holdStop = (signal: NodeJS.Signals): void => {
  stops.push(signal);
  // A second one while it starts: someone means it (a start hung reading a file on a dead
  // mount, say). Act as by default: the process dies of the signal.
  if (stops.length > 1) releaseEarlyStops();
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

/** For a command that is not the proxy: SIGTERM and SIGINT act as by default again, one that came ends it now. */
export function releaseEarlyStops(): void {
  const came = takeEarlyStops();
  if (came.length > 0) process.kill(process.pid, came[0]!);
}
