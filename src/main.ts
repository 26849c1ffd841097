// Composition root: config → logger and metrics → listener and admin server → signals.
import { watch, type FSWatcher } from 'node:fs';
import path from 'node:path';
import { startAdmin, boundPort } from './admin/server.js';
import { ConfigError, loadConfigFile } from './config/load.js';
import type { Config } from './config/schema.js';
import { createLogger, type Logger } from './observability/logger.js';
import { createMetrics, type Metrics } from './observability/metrics.js';
import { Listener, loadTlsMaterial, type TlsMaterial } from './proxy/listener.js';
import { pingBackend } from './proxy/upstream.js';
import { packageVersion } from './version.js';

const READY_PING_TIMEOUT_MS = 1000;
const CERT_WATCH_DEBOUNCE_MS = 250;


/** Run the proxy until SIGTERM/SIGINT; the process exits 0 after an orderly shutdown. */
export async function runProxy(config: Config, configPath: string): Promise<void> {
  const log = createLogger(config.log.level);
  const version = packageVersion();
  const metrics = createMetrics(version);
  process.on('uncaughtException', (err) => {
    log.fatal({ err: err.stack ?? String(err) }, 'uncaught exception; exiting');
    process.exit(1);
  });

  const listener = new Listener(config, loadTlsMaterial(config.tls), metrics, log);
  const address = await listener.listen();
  let draining = false;
  let current = config;
  const admin = await startAdmin(
    config.admin.host,
    config.admin.port,
    {
      metrics: async () => ({ contentType: metrics.registry.contentType, body: await metrics.registry.metrics() }),
      notReady: async () => {
        if (draining) return 'shutting down';
        if (!listener.isAccepting) return 'not listening';
        const ok = await pingBackend(current.backend.host, current.backend.port, READY_PING_TIMEOUT_MS);
        return ok ? null : `backend ${current.backend.host}:${current.backend.port} does not answer PING`;
      },
    },
    log,
  );
  log.info(
    { port: address.port, host: address.address, admin_port: boundPort(admin), backend: `${config.backend.host}:${config.backend.port}`, version },
    'listening',
  );

  const reloader = new Reloader(configPath, listener, metrics, log, (next) => {
    current = next;
  });
  reloader.watchCertificates(config);
  process.on('SIGHUP', () => reloader.reload('SIGHUP'));

  const shutdown = async (signal: string): Promise<void> => {
    if (draining) {
      log.warn({ signal }, 'second signal: closing every connection now');
      await listener.closeAll();
      return;
    }
    draining = true;
    metrics.draining.set(1);
    reloader.stop();
    listener.stopAccepting();
    const grace = current.shutdown.grace_ms;
    log.info({ signal, active: listener.activeSessions, grace_ms: grace }, 'shutting down: not accepting, letting clients finish');
    await listener.idle(grace);
    await listener.closeAll();
    admin.close();
    log.info('shutdown complete');
    process.exit(0);
  };
  process.on('SIGTERM', () => void shutdown('SIGTERM'));
  process.on('SIGINT', () => void shutdown('SIGINT'));
}

/** SIGHUP and certificate-file changes: re-read everything; keep the old config on any problem. */
class Reloader {
  private watchers: FSWatcher[] = [];
  private timer: NodeJS.Timeout | null = null;
  private lastPem: string;

  constructor(
    private readonly configPath: string,
    private readonly listener: Listener,
    private readonly metrics: Metrics,
    private readonly log: Logger,
    private readonly onConfig: (config: Config) => void,
  ) {
    this.lastPem = '';
  }

  reload(trigger: string): boolean {
    let next: Config;
    let material: TlsMaterial;
    try {
      next = loadConfigFile(this.configPath);
      material = loadTlsMaterial(next.tls);
    } catch (err) {
      const problems = err instanceof ConfigError ? err.problems : [(err as Error).message];
      this.metrics.reloads.labels('error').inc();
      this.log.error({ trigger, problems }, 'reload failed; keeping the running configuration');
      return false;
    }
    this.listener.reload(next, material);
    this.lastPem = pemOf(material);
    this.metrics.reloads.labels('success').inc();
    this.log.info({ trigger, cert_expires: new Date(material.expiresAt * 1000).toISOString() }, 'configuration reloaded');
    this.onConfig(next);
    this.watchCertificates(next);
    return true;
  }

  /**
   * Watch the folders of the certificate files, not the files: a Kubernetes Secret update swaps
   * a symlink in the folder, which a watch on the old file would never see.
   */
  watchCertificates(config: Config): void {
    this.stop();
    const dirs = new Set([config.tls.cert_file, config.tls.key_file, config.tls.ca_file].filter((f): f is string => f !== null).map((f) => path.dirname(f)));
    if (this.lastPem === '') {
      try {
        this.lastPem = pemOf(loadTlsMaterial(config.tls));
      } catch {
        // reported on the next reload
      }
    }
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

  stop(): void {
    for (const w of this.watchers) w.close();
    this.watchers = [];
    if (this.timer !== null) clearTimeout(this.timer);
    this.timer = null;
  }

  private certificatesTouched(): void {
    if (this.timer !== null) clearTimeout(this.timer);
    this.timer = setTimeout(() => {
      this.timer = null;
      let pem: string;
      try {
        pem = pemOf(loadTlsMaterial(loadConfigFile(this.configPath).tls));
      } catch {
        pem = '';
      }
      // Only a real change counts: editors and kubelet touch files without changing them.
      if (pem !== this.lastPem) this.reload('certificate files changed');
    }, CERT_WATCH_DEBOUNCE_MS);
  }
}

function pemOf(material: TlsMaterial): string {
  const o = material.options;
  return `${String(o.cert)}\n${String(o.key)}\n${String(o.ca ?? '')}`;
}
