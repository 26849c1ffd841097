// Composition root: config → logger and metrics → listener and admin server → signals.
//
// `workers: 1` runs everything in one process. With more (or 0 = one per CPU) the primary
// process forks node:cluster workers that share the TLS listener; the primary serves the admin
// endpoints, with /metrics summed across workers, forwards SIGHUP and the stop (SIGTERM, SIGINT:
// as a message) to them and replaces a worker that dies.
import cluster, { type Worker } from 'node:cluster';
import { AggregatorRegistry, Counter, Registry, type Gauge } from 'prom-client';
import { startAdmin, boundPort, type AdminHandlers } from './admin/server.js';
import { WORKER_CONFIG_ENV, loadConfigFile } from './config/load.js';
import { type Config, type WorkerPlace, clientsPerProcess, keepRestartOnly, workerCount, workersAsked } from './config/schema.js';
import { createLogger, type Logger } from './observability/logger.js';
import { PREFIX, backendUpGauge, createMetrics, type Metrics } from './observability/metrics.js';
import { ticketSecrets } from './config/tickets.js';
import { loadTlsMaterial, warnIfExpired } from './config/tls.js';
import { usableCpus } from './config/cpus.js';
import { fdsNeeded, openFileLimit } from './config/fds.js';
import { Listener } from './proxy/listener.js';
import { pingBackend } from './proxy/upstream.js';
import { takeEarlySighup, takeEarlyStops } from './early-signals.js';
import { Reloader } from './reload.js';
import { packageVersion } from './version.js';

const READY_PING_TIMEOUT_MS = 1000;
/** /readyz requests within this long of a backend PING share its answer. */
const READY_PING_REUSE_MS = 1000;
/** How often the backend_up gauge probes the backend. */
const BACKEND_PROBE_INTERVAL_MS = 5000;
/**
 * Workers that die in a row in one slot, each before it listened or within RESPAWN_STABLE_MS of
 * its start, are replaced after a delay that doubles with each (1 s, 2 s, 4 s … at most
 * RESPAWN_BACKOFF_MAX_MS), except the first of them if it had listened: replaced at once, as is
 * one that ran longer (which clears the slot's count).
 */
const RESPAWN_BACKOFF_MS = 1000;
const RESPAWN_BACKOFF_MAX_MS = 60_000;
const RESPAWN_STABLE_MS = 60_000;
/**
 * Replacements in a row that died before they listened, with no worker serving, after which the
 * primary gives up and exits 1, as a single process that cannot start does: a supervisor or
 * Kubernetes then sees the failure (and the primary's own start names it) instead of a process
 * that lives on, answers /healthz and serves nothing.
 */
const RESPAWN_FAILURES_MAX = 5;
/** A worker that does not answer the primary's metrics request this soon is left out of the scrape. */
const WORKER_METRICS_TIMEOUT_MS = 2000;
// prom-client's cluster protocol: the worker side is installed by `new AggregatorRegistry()`.
const METRICS_REQUEST = 'prom-client:getMetricsReq';
const METRICS_RESPONSE = 'prom-client:getMetricsRes';

/**
 * A worker's place among the workers, "slot/of" (slot from 0 to of - 1): its share of
 * limits.max_clients. A replacement takes the dead worker's.
 */
const WORKER_PLACE_ENV = 'RESP_TLS_PROXY_WORKER_PLACE';

type WorkerMessage =
  | { type: 'listening'; port: number; host: string }
  | { type: 'draining' }
  /** At start: the ticket secret's state, please (tickets.ts). */
  | { type: 'ticket-state?' }
  /** Its metrics as it exits after a shutdown: what it counted since the last scrape (the shutdown closes) is not lost. */
  | { type: 'final-metrics'; metrics: MetricList[] };
/** From the primary: shut down (now: close every connection at once, the second signal). */
type PrimaryMessage = { type: 'stop'; now: boolean } | { type: 'ticket-state'; state: string };

/** Run the proxy until SIGTERM/SIGINT; the process exits 0 after an orderly shutdown. */
export async function runProxy(config: Config, configPath: string): Promise<void> {
  const log = createLogger(config.log.level);
  process.on('uncaughtException', (err) => {
    log.fatal({ err: err.stack ?? String(err) }, 'uncaught exception; exiting');
    process.exit(1);
  });
  // A worker is one because the primary forked it: the config it was handed may say otherwise
  // (a reload lowered max_clients below the worker count, workers: 0 on fewer CPUs).
  if (cluster.isWorker) return runWorker(config, configPath, log.child({ worker: cluster.worker!.id }));
  const workers = workerCount(config);
  if (workersAsked(config) > workers) {
    // Each worker takes at least one of max_clients.
    log.warn({ workers: workersAsked(config), running: workers, max_clients: config.limits.max_clients }, 'fewer workers than configured: no more than limits.max_clients');
  }
  if (workers <= 1) return runSingle(config, configPath, log);
  return runPrimary(config, configPath, workers, log);
}

/** The serving half, the same in a single process and in a worker. */
async function startServing(config: Config, configPath: string, metrics: Metrics, log: Logger, place?: WorkerPlace) {
  const material = loadTlsMaterial(config.tls);
  if (!cluster.isWorker) warnIfExpired(material, log); // with workers, the primary says it
  const listener = new Listener(config, material, metrics, log, place);
  const address = await listener.listen();
  const state = { current: config, draining: false };
  const reloader = new Reloader(configPath, listener, metrics, log, { config, fingerprint: material.fingerprint }, (running) => {
    log.level = running.log.level;
    state.current = running;
  });
  reloader.watchCertificates(config);
  process.on('SIGHUP', () => reloader.reload('SIGHUP'));
  if (takeEarlySighup()) reloader.reload('SIGHUP'); // it came while we started: the file may be newer

  const shutdown = async (signal: string, onDrain: () => void): Promise<void> => {
    // Closes get 4 × close.drain_timeout_ms (about the longest one takes without progress: the
    // backend's replies, the client reading our close, the drain, and up to three looks at the
    // kernel of up to 1 s each), then are cut; after a second signal, 2 × close.drain_timeout_ms:
    // one wait for the replies owed (a BLPOP 0 never answers) and one for the client to read the
    // close_notify that follows, so that a close begun by the second signal still ends in order.
    const drainMs = state.current.close.drain_timeout_ms;
    if (state.draining) {
      log.warn({ signal }, 'second signal: closing every connection now');
      await listener.closeAll(2 * drainMs);
      return;
    }
    state.draining = true;
    metrics.draining.set(1);
    onDrain();
    reloader.stop();
    listener.stopAccepting();
    const grace = state.current.shutdown.grace_ms;
    log.info({ signal, active: listener.activeSessions, grace_ms: grace }, 'shutting down: not accepting, letting clients finish');
    await listener.idle(grace);
    await listener.closeAll(4 * drainMs);
    log.info('shutdown complete');
  };
  return { listener, address, state, shutdown };
}

/** Keep a backend_up gauge current: the process that serves /metrics PINGs the backend now and then. */
function probeBackend(state: { current: Config }, gauge: Gauge): void {
  const probe = (): void => {
    const { host, port } = state.current.backend;
    void pingBackend(host, port, READY_PING_TIMEOUT_MS).then((why) => gauge.set(why === null ? 1 : 0));
  };
  probe();
  setInterval(probe, BACKEND_PROBE_INTERVAL_MS).unref();
}

function readiness(state: { current: Config; draining: boolean }, listening: () => boolean): AdminHandlers['notReady'] {
  // One PING answers every request that comes while it runs or within READY_PING_REUSE_MS of
  // its start: a flood of /readyz costs the backend a connection a second, not one a request.
  let last: { backend: string; at: number; down: Promise<string | null> } | null = null;
  return async () => {
    if (state.draining) return 'shutting down';
    if (!listening()) return 'not listening';
    const { host, port } = state.current.backend;
    const backend = `${host}:${port}`;
    const now = performance.now();
    if (last === null || last.backend !== backend || now - last.at >= READY_PING_REUSE_MS) {
      last = { backend, at: now, down: pingBackend(host, port, READY_PING_TIMEOUT_MS) };
    }
    const why = await last.down;
    return why === null ? null : `backend ${backend} ${why}`;
  };
}

async function runSingle(config: Config, configPath: string, log: Logger): Promise<void> {
  warnIfFewFds(config, config.limits.max_clients, log);
  const version = packageVersion();
  const metrics = createMetrics(version);
  const serving = await startServing(config, configPath, metrics, log);
  probeBackend(serving.state, backendUpGauge([metrics.registry]));
  const admin = await startAdmin(
    config.admin.host,
    config.admin.port,
    {
      metrics: async () => ({ contentType: metrics.registry.contentType, body: await metrics.registry.metrics() }),
      notReady: readiness(serving.state, () => serving.listener.isAccepting),
    },
    log,
  );
  log.info(
    { port: serving.address.port, host: serving.address.address, admin_port: boundPort(admin), backend: backendOf(config), workers: 1, version },
    'listening',
  );
  const onSignal = (signal: string): void => {
    void serving.shutdown(signal, () => undefined).then(() => {
      admin.close();
      process.exit(0);
    });
  };
  process.on('SIGTERM', () => onSignal('SIGTERM'));
  process.on('SIGINT', () => onSignal('SIGINT'));
  for (const signal of takeEarlyStops()) onSignal(signal); // it came while we started
}

async function runWorker(config: Config, configPath: string, log: Logger): Promise<void> {
  const metrics = createMetrics(packageVersion());
  AggregatorRegistry.setRegistries([metrics.registry]);
  new AggregatorRegistry(); // its constructor installs the worker's answer to the primary's metrics requests
  const [slot, of] = (process.env[WORKER_PLACE_ENV] ?? '0/1').split('/').map(Number) as [number, number];
  const ticketState = await askTicketState();
  if (ticketState === undefined) log.warn('the primary sent no session ticket state in 5 s: tickets this worker issues resume on it alone');
  ticketSecrets(config.tls.ticket_rotation_ms, ticketState);
  const serving = await startServing(config, configPath, metrics, log, { slot, of });
  send({ type: 'listening', port: serving.address.port, host: serving.address.address });
  let exiting = false;
  const onSignal = (signal: string): void => {
    void serving.shutdown(signal, () => send({ type: 'draining' })).then(async () => {
      if (exiting) return;
      exiting = true;
      if (!process.connected) process.exit(0);
      const final: WorkerMessage = { type: 'final-metrics', metrics: [await metrics.registry.getMetricsAsJSON()] };
      process.send!(final, () => process.exit(0)); // called once it is written, or failed
    });
  };
  // The primary's stop comes as a message: a signal to the whole process group (Ctrl-C, systemd's
  // KillMode=control-group, `kill -- -PGID`) reaches every worker itself as well as through the
  // primary, in either order, so a worker's own signals only start the drain. "Close now" is the
  // primary's second stop (its own second signal). SIGINT is left to the primary altogether.
  const stop = (now: boolean): void => {
    if (!serving.state.draining) onSignal('SIGTERM');
    if (now) onSignal('SIGTERM');
  };
  process.on('message', (msg: PrimaryMessage) => {
    if (msg?.type === 'stop') stop(msg.now);
  });
  process.on('SIGTERM', () => stop(false));
  process.on('SIGINT', () => undefined);
  if (takeEarlyStops().includes('SIGTERM')) stop(false); // it came while we started
}

function send(message: WorkerMessage): void {
  process.send?.(message);
}

/**
 * The primary's ticket secret state, asked for over IPC (a question the primary answers, so no
 * message can come before this process listens for it): not in the environment, which the
 * process keeps readable in /proc/PID/environ for its whole life.
 */
function askTicketState(timeoutMs = 5_000): Promise<string | undefined> {
  return new Promise((resolve) => {
    const done = (state: string | undefined): void => {
      clearTimeout(timer);
      process.off('message', onMessage);
      resolve(state);
    };
    const onMessage = (msg: PrimaryMessage): void => {
      if (msg?.type === 'ticket-state') done(msg.state);
    };
    const timer = setTimeout(() => done(undefined), timeoutMs);
    process.on('message', onMessage);
    send({ type: 'ticket-state?' });
  });
}

/**
 * The primary's side of prom-client's cluster protocol, asking only the workers that reported
 * `listening` (so have their answering handler installed) and settling without a worker that
 * exits or does not answer in time. AggregatorRegistry.clusterMetrics() asks every connected
 * worker and fails the whole scrape after 5 s if one is still starting or has just died.
 * (Never construct an AggregatorRegistry in the primary as well: its listener would throw on
 * these responses.)
 */
class WorkerMetrics {
  private nextId = 0;
  private readonly pending = new Map<number, { waiting: Set<number>; answers: Map<number, MetricList[]>; finish(): void }>();
  /**
   * Each worker's metrics (one list per registry) as of its last answer: what stands in for a
   * live worker that is late to answer, gauges included (its certificate expiry, say, must not
   * drop out of a scrape); of an exited one, the counters and histograms stay in the totals.
   */
  private readonly lastSeen = new Map<number, MetricList[]>();
  /**
   * What exited workers had counted as of their last answer, summed into one list: kept in the
   * totals, which would otherwise go back when a worker dies (Prometheus reads a counter reset).
   */
  private retired: MetricList[] = [];

  constructor(private readonly log: Logger) {
    cluster.on('message', (w: Worker, msg: { type?: string; requestId?: number; metrics?: MetricList[]; error?: string }) => {
      if (msg?.type === 'final-metrics' && Array.isArray(msg.metrics)) {
        this.lastSeen.set(w.id, msg.metrics); // retired when its channel closes, after this message
        return;
      }
      if (msg?.type !== METRICS_RESPONSE || typeof msg.requestId !== 'number') return;
      const req = this.pending.get(msg.requestId);
      if (req === undefined || !req.waiting.has(w.id)) return;
      if (msg.error !== undefined) this.log.warn({ worker: w.id, err: msg.error }, 'worker metrics failed; its last counts stand in');
      else {
        req.answers.set(w.id, msg.metrics ?? []);
        this.lastSeen.set(w.id, msg.metrics ?? []);
      }
      req.waiting.delete(w.id);
      if (req.waiting.size === 0) req.finish();
    });
  }

  /**
   * Prometheus text summed over `workerIds` and the exited workers ('' when there are none). A
   * worker that does not answer (it exits meanwhile, or is late) counts with its last answer
   * (gauges too); the exited ones as they stood when the request went out, so a worker that dies
   * during the scrape is counted once.
   */
  collect(workerIds: Iterable<number>): Promise<string> {
    const workers = [...workerIds].map((id) => cluster.workers?.[id]).filter((w): w is Worker => w !== undefined && w.isConnected());
    const retired = this.retired;
    const before = new Map(workers.map((w) => [w.id, this.lastSeen.get(w.id)]));
    if (workers.length === 0) return retired.length === 0 ? Promise.resolve('') : AggregatorRegistry.aggregate(retired).metrics();
    const requestId = this.nextId++;
    return new Promise((resolve, reject) => {
      const req = {
        waiting: new Set(workers.map((w) => w.id)),
        answers: new Map<number, MetricList[]>(),
        finish: () => {
          clearTimeout(timer);
          this.pending.delete(requestId);
          const lists: MetricList[] = [...retired];
          for (const [id, last] of before) lists.push(...(req.answers.get(id) ?? last ?? []));
          AggregatorRegistry.aggregate(lists).metrics().then(resolve, reject);
        },
      };
      const timer = setTimeout(() => {
        this.log.warn({ workers: [...req.waiting] }, 'worker did not answer the metrics request in time; its last counts stand in');
        req.finish();
      }, WORKER_METRICS_TIMEOUT_MS);
      this.pending.set(requestId, req);
      for (const w of workers) {
        w.send({ type: METRICS_REQUEST, requestId }, (err: Error | null) => {
          if (err) this.forget(w.id);
        });
      }
    });
  }

  /** A worker exited (or its channel failed): no request waits for it any more. */
  forget(workerId: number): void {
    for (const req of [...this.pending.values()]) {
      if (req.waiting.delete(workerId) && req.waiting.size === 0) req.finish();
    }
  }

  /**
   * A worker's channel closed (it exited): what it had counted stays in the totals. Its channel,
   * not its exit: the channel closes after every message the worker sent has arrived, its final
   * metrics included, while its 'exit' may come first.
   */
  retire(workerId: number): void {
    const last = this.lastSeen.get(workerId);
    this.lastSeen.delete(workerId);
    if (last !== undefined) this.retired = [summed([...this.retired, ...last.map(monotonic)])];
    this.forget(workerId);
  }
}

/** One registry's metrics as prom-client's JSON (getMetricsAsJSON()). */
type MetricList = object[];

/** A metric list without its gauges: what may still be summed once its worker is gone. */
function monotonic(list: MetricList): MetricList {
  return (list as { type?: string }[]).filter((m) => m.type === 'counter' || m.type === 'histogram');
}

/** A warning at start when the open-file limit cannot hold `clients`: a process's share of limits.max_clients. */
function warnIfFewFds(config: Config, clients: number, log: Logger): void {
  const limit = openFileLimit();
  const needed = fdsNeeded(clients);
  if (limit !== null && limit < needed) {
    log.warn(
      { max_fds: limit, max_clients: config.limits.max_clients, needed },
      'the open-file limit is below what limits.max_clients needs (two per client: its socket and its backend connection): raise it (ulimit -n, systemd LimitNOFILE) or lower max_clients',
    );
  }
}

/** Several metric lists summed into one (aggregate() wraps plain values, so get() is synchronous). */
function summed(lists: MetricList[]): MetricList {
  return AggregatorRegistry.aggregate(lists).getMetricsAsArray().map((m) => (m as unknown as { get(): object }).get());
}

async function runPrimary(config: Config, configPath: string, count: number, log: Logger): Promise<void> {
  warnIfExpired(loadTlsMaterial(config.tls), log); // files that do not load: one ConfigError here (exit 2), not one per worker
  // The workers' ticket secrets start from this one (each asks for it): every worker issues and
  // takes the same tickets.
  const tickets = ticketSecrets(config.tls.ticket_rotation_ms);
  tickets.keepStepping(); // so the primary holds no earlier period's secret either
  const cpus = usableCpus();
  if (count > cpus) log.warn({ workers: count, cpus }, 'more workers than CPUs: each one costs memory, none adds throughput');
  warnIfFewFds(config, clientsPerProcess(config, { slot: 0, of: count }), log); // the largest share; workers inherit the limit
  const workerMetrics = new WorkerMetrics(log);
  const own = new Registry();
  const restarts = new Counter({
    name: `${PREFIX}workers_restarted_total`,
    help: 'Worker processes that died and were replaced.',
    registers: [own],
  });
  restarts.inc(0);
  const state = { current: config, draining: false };
  probeBackend(state, backendUpGauge([own]));
  const listening = new Set<number>();
  /** Workers that were still starting when a SIGHUP came. */
  const reloadOwed = new Set<number>();
  /**
   * Each live worker's start time and place (its slot, which a replacement takes over). Also what
   * tells that every worker has exited: node:cluster drops a worker from cluster.workers only once
   * it has both exited and disconnected, in either order, so after its 'exit' it may still be there.
   */
  const started = new Map<number, { at: number; slot: number }>();
  /** Per slot, its workers that died in a row before they listened or within RESPAWN_STABLE_MS: the back-off. */
  const quickDeaths = new Map<number, number>();
  /** Workers in a row, any slot, that died before they listened, while none served. */
  let failedStarts = 0;
  let announced = false;
  /** Some worker has listened since the start: a later failure to start may pass (a crash loop backs off). */
  let everListened = false;
  let admin: Awaited<ReturnType<typeof startAdmin>> | null = null;
  /** Replacements for dead workers, waiting out the back-off. */
  const respawns = new Set<NodeJS.Timeout>();

  const fork = (slot: number): Worker => {
    const w = cluster.fork({
      [WORKER_CONFIG_ENV]: JSON.stringify(state.current),
      [WORKER_PLACE_ENV]: `${slot}/${count}`,
    });
    started.set(w.id, { at: Date.now(), slot });
    w.on('message', (msg: WorkerMessage) => {
      if (msg.type === 'ticket-state?') {
        const answer: PrimaryMessage = { type: 'ticket-state', state: tickets.handDown() };
        w.send(answer, () => undefined); // a worker gone meanwhile: nothing to do (without a callback, an 'error')
        return;
      }
      if (msg.type === 'listening') {
        listening.add(w.id);
        everListened = true;
        failedStarts = 0;
        // A SIGHUP that came while it started: it may have read the file before the change.
        if (reloadOwed.delete(w.id)) w.process.kill('SIGHUP');
        if (!announced && admin !== null) {
          announced = true;
          log.info(
            { port: msg.port, host: msg.host, admin_port: boundPort(admin), backend: backendOf(config), workers: count, version: packageVersion() },
            'listening',
          );
        }
      }
    });
    return w;
  };

  admin = await startAdmin(
    config.admin.host,
    config.admin.port,
    {
      metrics: async () => {
        const workers = await workerMetrics.collect(listening);
        return { contentType: own.contentType, body: `${workers}\n${await own.metrics()}` };
      },
      notReady: readiness(state, () => listening.size > 0),
    },
    log,
  );

  cluster.on('disconnect', (w) => workerMetrics.retire(w.id));
  cluster.on('exit', (w, code, signal) => {
    const listened = listening.delete(w.id);
    reloadOwed.delete(w.id);
    workerMetrics.forget(w.id);
    const { at, slot } = started.get(w.id) ?? { at: 0, slot: 0 };
    started.delete(w.id);
    if (state.draining) {
      if (started.size === 0) {
        log.info('all workers exited; shutdown complete');
        admin?.close();
        process.exit(0);
      }
      return;
    }
    if (!listened && !everListened) {
      // The proxy could not start (the worker's log says why: the port taken, the certificates
      // unreadable): replacing it would fail alike, forever, with /healthz still 200. Exit as a
      // single process does, for the supervisor to see; the other workers follow (their channel
      // to the primary closes).
      log.fatal({ worker: w.id, code, signal }, 'a worker could not start and no worker has listened; exiting');
      process.exit(1);
    }
    const lived = Date.now() - at;
    if (!listened && listening.size === 0 && ++failedStarts >= RESPAWN_FAILURES_MAX) {
      log.fatal({ worker: w.id, code, signal, failed_starts: failedStarts }, 'workers keep failing to start and none is serving; exiting');
      process.exit(1); // the workers still starting follow: their channel to the primary closes
    }
    restarts.inc();
    const deaths = !listened || lived < RESPAWN_STABLE_MS ? (quickDeaths.get(slot) ?? 0) + 1 : 0;
    quickDeaths.set(slot, deaths);
    // A worker that served and then died is replaced at once; a second quick death waits.
    const delay = deaths === 0 || (deaths === 1 && listened) ? 0 : Math.min(RESPAWN_BACKOFF_MS * 2 ** (deaths - 1), RESPAWN_BACKOFF_MAX_MS);
    log.error({ worker: w.id, code, signal, lived_ms: lived, restart_in_ms: delay }, 'worker died; starting a new one');
    const timer = setTimeout(() => {
      respawns.delete(timer);
      fork(slot);
    }, delay);
    respawns.add(timer);
  });

  let stops = 0;
  const forwardStop = (): void => {
    const msg: PrimaryMessage = { type: 'stop', now: stops++ > 0 };
    for (const w of Object.values(cluster.workers ?? {})) {
      if (w === undefined || !w.isConnected()) continue;
      // One still starting does not listen for the message yet: it holds the signal until its
      // handler is in place, and drains as soon as it is up. With a callback, a channel that has just
      // closed is an error passed to it, not thrown.
      if (listening.has(w.id)) w.send(msg, () => undefined);
      else w.process.kill('SIGTERM');
    }
  };
  const onSighup = (): void => {
    // Only a worker that reported listening has its SIGHUP handler: to one still starting the
    // signal would be fatal (its default action), so it gets the signal once it listens.
    for (const w of Object.values(cluster.workers ?? {})) {
      if (w === undefined) continue;
      if (listening.has(w.id)) w.process.kill('SIGHUP');
      else reloadOwed.add(w.id);
    }
    // The primary probes the backend for /readyz and backend_up, and hands its config to the
    // workers it starts: follow the file too. A bad file (or certificate) is logged and counted
    // by the workers; the primary keeps its config likewise.
    try {
      const next = loadConfigFile(configPath);
      warnIfExpired(loadTlsMaterial(next.tls), log); // what the workers check too: they keep their config when this throws
      // Replacement workers start with it, except what takes a restart (a new admin port, say,
      // is the primary's to bind, and `workers` decides whether a process is a worker at all).
      state.current = keepRestartOnly(state.current, next);
      log.level = next.log.level;
    } catch {
      // keep the running configuration
    }
  };
  process.on('SIGHUP', onSighup);
  if (takeEarlySighup()) onSighup(); // it came while we started
  const stop = (signal: NodeJS.Signals): void => {
    state.draining = true; // /readyz answers 503 from now on
    for (const timer of respawns) clearTimeout(timer); // a replacement forked now would never hear the signal
    respawns.clear();
    log.info({ signal }, 'shutting down: forwarding to workers');
    if (started.size === 0) {
      log.info('no workers running; shutdown complete');
      admin?.close();
      process.exit(0);
    }
    forwardStop();
  };
  process.on('SIGTERM', () => stop('SIGTERM'));
  process.on('SIGINT', () => stop('SIGINT'));
  for (const signal of takeEarlyStops()) stop(signal); // it came while we started: no worker is forked

  for (let slot = 0; slot < count; slot++) fork(slot);
}

function backendOf(config: Config): string {
  return `${config.backend.host}:${config.backend.port}`;
}
