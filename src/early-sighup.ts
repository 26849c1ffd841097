// Imported first by cli.ts, so that it runs before the other modules load: from the process's
// first milliseconds until the reloader is installed, a SIGHUP (systemd's reload right after a
// restart, a certificate renewal hook) must neither kill the process, its default action, nor
// be lost.
let pending = false;
const hold = (): void => {
  pending = true;
};
process.on('SIGHUP', hold);

/** Hands SIGHUP over to its real handler: true if one came in the meantime (reload once now). */
export function takeEarlySighup(): boolean {
  process.removeListener('SIGHUP', hold);
  const came = pending;
  pending = false;
  return came;
}
