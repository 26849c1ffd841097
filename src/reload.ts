// Reloads without restart: SIGHUP, and certificate files changing on disk.
import { watch, type FSWatcher } from 'node:fs';
import path from 'node:path';
import { ConfigError, loadConfigFile } from './config/load.js';
import { type Config, keepRestartOnly, restartOnlyChanges } from './config/schema.js';
import type { Logger } from './observability/logger.js';
import type { Metrics } from './observability/metrics.js';
import { loadTlsMaterial, warnIfExpired, readTlsFilesAsync, tlsFiles, tlsFingerprint, type TlsFileBytes, type TlsMaterial } from './config/tls.js';
import type { Listener } from './proxy/listener.js';

/** A folder event is looked at this long after it (later events do not push the look back). */
const CERT_WATCH_DEBOUNCE_MS = 250;
/**
 * Certificate files that do not load after a folder event (or at a poll) are looked at once more
 * after this long before it counts as a failed reload: a copy may still be under way (half a
 * certificate, a new certificate next to the old key).
 */
const CERT_SETTLE_MS = 2000;

/**
 * SIGHUP re-reads the config file and the certificates; a certificate-file change re-reads the
 * certificates of the running config (an edit to the file waits for SIGHUP). Any problem: the
 * running config and certificates stay.
 */
export class Reloader {
  private watchers: FSWatcher[] = [];
  private poll: NodeJS.Timeout | null = null;
  /** The next look at the certificate files: after a folder event, or the settle retry. */
  private timer: NodeJS.Timeout | null = null;
  /** A look is reading the files (off the event loop); a folder event meanwhile means one more. */
  private looking = false;
  private changedDuringLook = false;
  private current: Config;
  private lastFingerprint: string;
  /** The content whose reload last counted as failed: folder events alone do not count it again. */
  private failedFingerprint: string | null = null;
  private stopped = false;

  /** `served`: the config and the fingerprint of the TLS material the listener serves. */
  constructor(
    private readonly configPath: string,
    private readonly listener: Listener,
    private readonly metrics: Metrics,
    private readonly log: Logger,
    served: { config: Config; fingerprint: string },
    /** After a reload, with the config now running (the restart-only keys as they were). */
    private readonly onConfig: (running: Config) => void,
  ) {
    this.current = served.config;
    this.lastFingerprint = served.fingerprint;
  }

  /** SIGHUP: the config file and the certificates it names. */
  reload(trigger: string): boolean {
    if (this.stopped) {
      this.log.info({ trigger }, 'shutting down: reload ignored');
      return false;
    }
    let next: Config;
    try {
      next = loadConfigFile(this.configPath);
    } catch (err) {
      return this.failed(trigger, err);
    }
    return this.apply(next, trigger);
  }

  /**
   * `files`: the TLS files' bytes, already read (or why they could not be). `mayRetry`: a failure
   * is only logged at debug level and not counted (the caller looks again).
   */
  private apply(next: Config, trigger: string, mayRetry = false, files?: TlsFileBytes | Error): boolean {
    let material: TlsMaterial;
    try {
      if (files instanceof Error) throw files;
      material = loadTlsMaterial(next.tls, files);
    } catch (err) {
      if (mayRetry) {
        this.log.debug({ trigger, err: (err as Error).message }, 'certificates do not load yet; looking again shortly');
        return false;
      }
      return this.failed(trigger, err);
    }
    // The restart-only keys stay as they run (tls.handshake_timeout_ms: tls.Server took it once).
    const ignored = restartOnlyChanges(this.current, next);
    const running = keepRestartOnly(this.current, next);
    this.listener.reload(running, material);
    this.current = running;
    this.lastFingerprint = material.fingerprint;
    this.metrics.reloads.labels('success').inc();
    this.log.info({ trigger, cert_expires: new Date(material.expiresAt * 1000).toISOString() }, 'configuration reloaded');
    warnIfExpired(material, this.log); // each worker too: a certificate file's change reaches only them
    this.onConfig(running);
    // Said at every reload while the file differs from what runs, not only the first time.
    if (ignored.length > 0) this.log.warn({ keys: ignored }, 'these changes take effect only on restart');
    this.watchCertificates(running);
    return true;
  }

  private failed(trigger: string, err: unknown): false {
    const problems = err instanceof ConfigError ? err.problems : [(err as Error).message];
    this.metrics.reloads.labels('error').inc();
    this.log.error({ trigger, problems }, 'reload failed; keeping the running configuration');
    return false;
  }

  /**
   * Watch the folders of the certificate files, not the files: a Kubernetes Secret update swaps
   * a symlink in the folder, which a watch on the old file would never see. And read the files
   * every tls.poll_interval_ms, for changes no folder event reports: a symlink swapped above the
   * folder (`current -> v2`), a filesystem without inotify (NFS), a folder removed and made again.
   * Files that stay broken are reported at every poll, so the reload-failure alert holds.
   */
  watchCertificates(config: Config): void {
    this.unwatch();
    if (this.stopped) return;
    if (config.tls.poll_interval_ms > 0) {
      this.poll = setInterval(() => {
        if (this.timer === null && !this.looking) void this.look('poll'); // else a look is due or under way
      }, config.tls.poll_interval_ms).unref();
    }
    const dirs = new Set(tlsFiles(config.tls).map((f) => path.dirname(f)));
    for (const dir of dirs) {
      try {
        const w = watch(dir, () => this.certificatesTouched());
        w.on('error', (err) => this.log.warn({ dir, err: err.message }, 'certificate watch failed'));
        this.watchers.push(w);
      } catch (err) {
        this.log.warn({ dir, err: (err as Error).message }, 'cannot watch the certificate folder; use SIGHUP to reload');
      }
    }
  }

  /** For good (shutdown): no more watching or looking, and a SIGHUP is ignored. */
  stop(): void {
    this.stopped = true;
    this.unwatch();
    if (this.timer !== null) clearTimeout(this.timer);
    this.timer = null;
  }

  /** The watches and the poll; a look already due stays due (it reads the config current then). */
  private unwatch(): void {
    for (const w of this.watchers) w.close();
    this.watchers = [];
    if (this.poll !== null) clearInterval(this.poll);
    this.poll = null;
  }

  /**
   * A folder event: look soon. A look already due (after another event, or the settle retry)
   * is not pushed back, so a folder that never goes quiet is still looked at.
   */
  private certificatesTouched(): void {
    if (this.looking) this.changedDuringLook = true;
    else if (this.timer === null) this.lookAfter(CERT_WATCH_DEBOUNCE_MS, 'event');
  }

  private lookAfter(ms: number, why: Look): void {
    if (this.timer !== null) clearTimeout(this.timer);
    this.timer = setTimeout(() => {
      this.timer = null;
      void this.look(why);
    }, ms);
  }

  /**
   * Read the files (off the event loop, one look at a time); reload them if their bytes are not
   * what is served. A first look that fails is retried after CERT_SETTLE_MS before it counts;
   * after a folder event, content that already failed is left alone (a busy folder would count
   * it again and again); a poll counts it again.
   */
  private async look(why: Look): Promise<void> {
    this.looking = true;
    this.changedDuringLook = false;
    const config = this.current;
    let files: TlsFileBytes | Error;
    try {
      files = await readTlsFilesAsync(config.tls);
    } catch (err) {
      files = err as Error; // unreadable now: apply() reports it
    }
    this.looking = false;
    if (this.stopped || config !== this.current) return; // a SIGHUP reloaded meanwhile
    try {
      this.consider(config, files, why);
    } catch (err) {
      this.failed('certificate files changed', err); // not an unhandled rejection
    }
    if (this.changedDuringLook && this.timer === null) this.lookAfter(CERT_WATCH_DEBOUNCE_MS, 'event');
  }

  private consider(config: Config, files: TlsFileBytes | Error, why: Look): void {
    // Only a real change counts: editors and kubelet touch files without changing them.
    const fingerprint = files instanceof Error ? `unreadable: ${files.message}` : tlsFingerprint(files);
    if (fingerprint === this.lastFingerprint) {
      this.failedFingerprint = null;
      return;
    }
    if (why === 'event' && fingerprint === this.failedFingerprint) return;
    const firstLook = why !== 'settle';
    if (this.apply(config, 'certificate files changed', firstLook, files)) return;
    if (firstLook) this.lookAfter(CERT_SETTLE_MS, 'settle');
    else this.failedFingerprint = fingerprint;
  }
}

/** What a look at the certificate files follows from. */
type Look = 'event' | 'poll' | 'settle';
