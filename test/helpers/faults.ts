// Faults under load, shared by test/integration/faults-under-load.test.ts (short) and
// test/soak/soak.mjs (long): redis-benchmark --tls and Node TLS clients drive the proxy while the
// backend is killed (SIGKILL, its own pid) and restarted on the same port, and some clients reset
// their connections. Reports what the load saw and what the proxy counted.
import { spawn, type ChildProcess } from 'node:child_process';
import net from 'node:net';
import tls from 'node:tls';
import { freePort, killAndWait, makeTempDir, run, sleep, trackChild, waitExit } from './common.js';
import { metricSamples, startProxy, type Proxy } from './proxy.js';
import { REDIS_CLI, REDIS_SERVER } from './redis.js';
import { RssSampler, rssMiB } from './rss.js';

export const REDIS_BENCHMARK = process.env.REDIS_BENCHMARK_BIN ?? '/usr/bin/redis-benchmark';

// ---- a redis-server that can be killed and restarted on the same port ------------------------

export interface RestartableRedis {
  readonly port: number;
  readonly pid: number;
  /** SIGKILL to its own pid; resolves when it has exited. */
  kill9(): Promise<void>;
  /** Starts it again on the same port; resolves when it answers PING. */
  restart(): Promise<void>;
  stop(): Promise<void>;
}

export async function startRestartableRedis(): Promise<RestartableRedis> {
  const port = await freePort();
  const dir = makeTempDir('resp-tls-proxy-redis-');
  let child: ChildProcess | null = null;
  const args = ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--protected-mode', 'no',
    '--daemonize', 'no', '--dir', dir, '--logfile', ''];

  const launch = async (): Promise<void> => {
    for (let attempt = 0; ; attempt++) {
      const c = spawn(REDIS_SERVER, args, { stdio: ['ignore', 'ignore', 'pipe'] });
      trackChild(c);
      let err = '';
      c.stderr!.on('data', (d: Buffer) => { err += d.toString('utf8'); });
      const deadline = Date.now() + 10_000;
      let up = false;
      while (Date.now() < deadline && c.exitCode === null && c.signalCode === null) {
        const r = await run(REDIS_CLI, ['-h', '127.0.0.1', '-p', String(port), 'PING'], { timeoutMs: 2_000 });
        if (r.stdout.startsWith('PONG')) {
          up = true;
          break;
        }
        await sleep(25);
      }
      if (up) {
        child = c;
        return;
      }
      await killAndWait(c, 'SIGKILL');
      if (attempt >= 5) throw new Error(`redis-server did not come up on port ${port}: ${err}`);
      await sleep(200); // e.g. the port is still held for a moment
    }
  };
  await launch();

  return {
    port,
    get pid() {
      return child?.pid ?? -1;
    },
    kill9: async () => {
      if (child === null) return;
      const c = child;
      child = null;
      await killAndWait(c, 'SIGKILL');
    },
    restart: launch,
    stop: async () => {
      if (child === null) return;
      const c = child;
      child = null;
      await killAndWait(c, 'SIGTERM', 5_000);
    },
  };
}

// ---- load: redis-benchmark, restarted whenever it gives up -----------------------------------

export interface BenchmarkLoop {
  /** Stop starting new runs; wait (up to waitMs) for the current run to finish on its own, then kill it. */
  stop(waitMs?: number): Promise<void>;
  readonly stats: { runs: number; completed: number; failed: number; killed: number; errors: Record<string, number>; rps: number[] };
}

export function startBenchmarkLoop(port: number, args: string[]): BenchmarkLoop {
  const stats = { runs: 0, completed: 0, failed: 0, killed: 0, errors: {} as Record<string, number>, rps: [] as number[] };
  let stopping = false;
  let current: ChildProcess | null = null;
  const loop = (async () => {
    while (!stopping) {
      const c = spawn(REDIS_BENCHMARK, ['--tls', '--insecure', '-h', '127.0.0.1', '-p', String(port), '-q', ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
      trackChild(c);
      current = c;
      stats.runs++;
      let out = '';
      c.stdout!.on('data', (d: Buffer) => { out += d.toString('utf8'); });
      c.stderr!.on('data', (d: Buffer) => { out += d.toString('utf8'); });
      const e = await waitExit(c);
      current = null;
      if (e.code === 0) stats.completed++;
      else if (e.signal !== null) stats.killed++;
      else stats.failed++;
      for (const line of out.replace(/\r/g, '\n').split('\n')) {
        const m = /^([A-Z_]+): ([\d.]+) requests per second/.exec(line);
        if (m) stats.rps.push(Number(m[2]));
        const err = /^(Error[^:]*: .*|.*(?:ERR|Error).*)$/.exec(line.trim());
        if (err && !m) {
          const key = err[1]!.replace(/\d+/g, 'N').slice(0, 80);
          stats.errors[key] = (stats.errors[key] ?? 0) + 1;
        }
      }
      if (!stopping && e.code !== 0) await sleep(100);
    }
  })();
  return {
    stats,
    stop: async (waitMs = 20_000) => {
      stopping = true;
      const c = current as ChildProcess | null;
      if (c !== null) {
        const done = await Promise.race([waitExit(c).then(() => true), sleep(waitMs).then(() => false)]);
        if (!done) await killAndWait(c, 'SIGKILL');
      }
      await loop;
    },
  };
}

// ---- load: Node TLS clients that check every reply -------------------------------------------

export interface NodeLoadStats {
  connections: number;
  /** SET answered +OK, GET answered with exactly the value this connection set just before. */
  ok: number;
  /** -ERR backend connection lost / backend unavailable and other error replies, by text. */
  errors: Record<string, number>;
  /** A reply that is neither the expected one nor an error: must stay 0. */
  wrong: number;
  wrongSamples: string[];
  /** Connections we reset on purpose (RST). */
  resets: number;
  /** Connections that failed before or during the handshake (backend has nothing to do with it). */
  connectErrors: number;
}

interface Worker {
  raw: net.Socket | null;
  sock: tls.TLSSocket | null;
}

/**
 * `clients` connections, each sending pipelines of `depth` SET/GET pairs with keys of its own and
 * checking each reply; a connection that ends is replaced after 50 ms.
 */
export function startNodeLoad(port: number, clients: number, depth = 4) {
  const stats: NodeLoadStats = { connections: 0, ok: 0, errors: {}, wrong: 0, wrongSamples: [], resets: 0, connectErrors: 0 };
  let stopping = false;
  const workers: Worker[] = [];
  const runs: Promise<void>[] = [];

  const oneConnection = (w: Worker, id: number): Promise<void> => new Promise((resolve) => {
    const raw = net.connect({ host: '127.0.0.1', port });
    raw.on('error', () => {});
    const sock = tls.connect({ socket: raw, servername: 'localhost', rejectUnauthorized: false });
    w.raw = raw;
    w.sock = sock;
    stats.connections++;
    let connected = false;
    let buf = '';
    let expect: string[] = []; // expected replies, in order
    let seq = 0;
    const send = (): void => {
      if (stopping) {
        sock.end();
        return;
      }
      const parts: string[] = [];
      for (let i = 0; i < depth; i++) {
        const key = `load:${id}:${seq}`;
        const val = `v${seq}-${id}`;
        seq++;
        parts.push(`*3\r\n$3\r\nSET\r\n$${key.length}\r\n${key}\r\n$${val.length}\r\n${val}\r\n`);
        parts.push(`*2\r\n$3\r\nGET\r\n$${key.length}\r\n${key}\r\n`);
        expect.push('+OK', `$${val.length}\r\n${val}`);
      }
      sock.write(parts.join(''));
    };
    sock.setEncoding('latin1');
    sock.on('secureConnect', () => {
      connected = true;
      send();
    });
    sock.on('data', (d: string) => {
      buf += d;
      for (;;) {
        const nl = buf.indexOf('\r\n');
        if (nl < 0) break;
        let reply: string;
        if (buf[0] === '$' && buf[1] !== '-') {
          const len = Number(buf.slice(1, nl));
          if (buf.length < nl + 2 + len + 2) break;
          reply = buf.slice(0, nl + 2 + len);
          buf = buf.slice(nl + 2 + len + 2);
        } else {
          reply = buf.slice(0, nl);
          buf = buf.slice(nl + 2);
        }
        const want = expect.shift();
        if (reply.startsWith('-')) {
          const key = reply.replace(/\(.*\)/, '(…)').slice(0, 60);
          stats.errors[key] = (stats.errors[key] ?? 0) + 1;
        } else if (reply === want) {
          stats.ok++;
        } else {
          stats.wrong++;
          if (stats.wrongSamples.length < 5) stats.wrongSamples.push(`got ${JSON.stringify(reply)} want ${JSON.stringify(want)}`);
        }
      }
      if (expect.length === 0) send();
    });
    sock.on('error', () => {
      if (!connected) stats.connectErrors++;
    });
    sock.on('close', () => {
      w.raw = null;
      w.sock = null;
      resolve();
    });
  });

  for (let i = 0; i < clients; i++) {
    const w: Worker = { raw: null, sock: null };
    workers.push(w);
    runs.push((async () => {
      let n = 0;
      while (!stopping) {
        await oneConnection(w, i * 1_000_000 + n++ * 1_000);
        if (!stopping) await sleep(50);
      }
    })());
  }

  return {
    stats,
    /** Resets (TCP RST, no close_notify) `count` of the open connections. */
    reset(count: number): number {
      let done = 0;
      for (const w of workers) {
        if (done >= count) break;
        if (w.raw !== null && w.sock !== null && !w.raw.destroyed) {
          w.raw.resetAndDestroy();
          w.sock.destroy();
          stats.resets++;
          done++;
        }
      }
      return done;
    },
    async stop(): Promise<void> {
      stopping = true;
      const deadline = sleep(15_000);
      await Promise.race([Promise.all(runs), deadline]);
      for (const w of workers) w.sock?.destroy();
      await Promise.race([Promise.all(runs), sleep(2_000)]);
    },
  };
}

// ---- the scenario ----------------------------------------------------------------------------

export interface FaultsOptions {
  /** How many kill -9 / restart cycles of the backend. */
  cycles: number;
  /** Load before the first kill, between restarts and after the last one. */
  loadBetweenMs: number;
  /** How long the backend stays down each time. */
  downMs: number;
  /** Node clients reset in each cycle. */
  resetsPerCycle: number;
  nodeClients: number;
  /** redis-benchmark arguments after -h/-p/--tls (e.g. -c 20 -n 20000 -t set,get -P 4). */
  benchmarkArgs: string[];
  /** Quiet time before the after-RSS is read. */
  settleMs: number;
  log?: (line: string) => void;
}

export interface FaultsReport {
  rss: { baseline: number; peak: number; after: number };
  /** Abrupt closes from the proxy's log, by `reason/client_error` (client_error: the client socket's error). */
  abrupt: Record<string, number>;
  /** Abrupt closes not explained by the client: neither reason client_reset nor a reset/broken pipe from the client. */
  unexplainedAbrupt: Record<string, unknown>[];
  benchmark: BenchmarkLoop['stats'];
  node: NodeLoadStats;
  closes: { mode: string; reason: string; value: number }[];
  handshakeFailures: Record<string, number>;
  connectionsTotal: number;
  connectionsActiveAfter: number;
  /** A PING on a fresh connection after the load: the reply. */
  pingAfter: string;
  durationMs: number;
  proxy: Proxy;
}

/** Starts its own redis-server and proxy, runs the scenario, and leaves both running for the caller to inspect and stop. */
export async function runFaultsUnderLoad(opts: FaultsOptions, started: (p: { redis: RestartableRedis; proxy: Proxy }) => void): Promise<FaultsReport> {
  const log = opts.log ?? (() => {});
  const t0 = Date.now();
  const redis = await startRestartableRedis();
  const proxy = await startProxy({ backend: { host: '127.0.0.1', port: redis.port } });
  started({ redis, proxy });
  await sleep(1_000);
  const baseline = rssMiB(proxy.pid);
  const sampler = new RssSampler(proxy.pid, 100);
  log(`proxy pid ${proxy.pid} port ${proxy.port}, backend port ${redis.port}; baseline RSS ${baseline.toFixed(1)} MiB`);

  const bench = startBenchmarkLoop(proxy.port, opts.benchmarkArgs);
  const node = startNodeLoad(proxy.port, opts.nodeClients);
  try {
    for (let c = 1; c <= opts.cycles; c++) {
      await sleep(opts.loadBetweenMs / 2);
      const n = node.reset(opts.resetsPerCycle);
      log(`cycle ${c}: reset ${n} clients; RSS ${sampler.sample().toFixed(1)} MiB`);
      await sleep(opts.loadBetweenMs / 2);
      await redis.kill9();
      log(`cycle ${c}: backend killed (SIGKILL); benchmark runs ${bench.stats.runs}, node ok ${node.stats.ok}`);
      await sleep(opts.downMs);
      await redis.restart();
      log(`cycle ${c}: backend restarted, pid ${redis.pid}; RSS ${sampler.sample().toFixed(1)} MiB`);
    }
    await sleep(opts.loadBetweenMs);
  } finally {
    await node.stop();
    await bench.stop();
  }
  log(`load stopped; settling ${opts.settleMs} ms`);
  await sleep(opts.settleMs);
  sampler.stop();
  const after = rssMiB(proxy.pid);

  const pingAfter = await new Promise<string>((resolve) => {
    const s = tls.connect({ host: '127.0.0.1', port: proxy.port, servername: 'localhost', rejectUnauthorized: false });
    let got = '';
    const t = setTimeout(() => { s.destroy(); resolve(`(timeout) ${got}`); }, 10_000);
    s.on('secureConnect', () => s.write('*1\r\n$4\r\nPING\r\n'));
    s.setEncoding('latin1');
    s.on('data', (d: string) => {
      got += d;
      if (got.includes('\r\n')) {
        clearTimeout(t);
        s.end();
        resolve(got);
      }
    });
    s.on('error', (e) => { clearTimeout(t); resolve(`(error) ${e.message}`); });
  });
  await sleep(300);

  const text = await proxy.metrics();
  const closes = metricSamples(text, 'resp_tls_proxy_client_closes_total').filter((s) => s.value > 0)
    .map((s) => ({ mode: s.labels.mode ?? '', reason: s.labels.reason ?? '', value: s.value }));
  const handshakeFailures: Record<string, number> = {};
  for (const s of metricSamples(text, 'resp_tls_proxy_tls_handshake_failures_total')) if (s.value > 0) handshakeFailures[s.labels.reason ?? ''] = s.value;
  const single = (name: string): number => metricSamples(text, name)[0]?.value ?? 0;
  const abrupt: Record<string, number> = {};
  const unexplainedAbrupt: Record<string, unknown>[] = [];
  for (const rec of proxy.logs()) {
    if (rec.mode !== 'abrupt') continue;
    const key = `${String(rec.reason)}/${String(rec.client_error ?? '-')}`;
    abrupt[key] = (abrupt[key] ?? 0) + 1;
    if (!clientWentAway(rec)) unexplainedAbrupt.push(rec);
  }
  return {
    rss: { baseline, peak: sampler.peak, after },
    abrupt,
    unexplainedAbrupt,
    benchmark: bench.stats,
    node: node.stats,
    closes,
    handshakeFailures,
    connectionsTotal: single('resp_tls_proxy_connections_total'),
    connectionsActiveAfter: single('resp_tls_proxy_connections_active'),
    pingAfter,
    durationMs: Date.now() - t0,
    proxy,
  };
}

/**
 * An abrupt close the client caused: it reset the connection while it was open (client_reset), or
 * it vanished while the proxy was closing it in order — our close_notify met a reset or a broken
 * pipe (redis-benchmark exits on its first error reply and drops its other connections so), or
 * the kernel had already closed the connection on a reset when the proxy read the end of its
 * input (ENOTCONN: a client that closed, then reset when our replies reached it).
 */
export function clientWentAway(rec: Record<string, unknown>): boolean {
  return rec.reason === 'client_reset' || rec.client_error === 'ECONNRESET' || rec.client_error === 'EPIPE' || rec.client_error === 'ENOTCONN';
}

/** The figures, one per line. */
export function formatFaultsReport(r: FaultsReport): string {
  const b = r.benchmark;
  const rps = b.rps.length > 0 ? `${Math.round(b.rps.reduce((a, x) => a + x, 0) / b.rps.length)} req/s mean over ${b.rps.length} completed tests` : 'no completed test';
  return [
    `duration ${(r.durationMs / 1000).toFixed(1)} s`,
    `proxy RSS: baseline ${r.rss.baseline.toFixed(1)} MiB, peak ${r.rss.peak.toFixed(1)} MiB, after settling ${r.rss.after.toFixed(1)} MiB (${(r.rss.after - r.rss.baseline >= 0 ? '+' : '')}${(r.rss.after - r.rss.baseline).toFixed(1)} MiB)`,
    `redis-benchmark: ${b.runs} runs (${b.completed} completed, ${b.failed} gave up on an error, ${b.killed} killed); ${rps}; errors ${JSON.stringify(b.errors)}`,
    `node clients: ${r.node.connections} connections, ${r.node.ok} replies verified, ${r.node.wrong} wrong, ${r.node.resets} reset on purpose, ${r.node.connectErrors} connect errors; error replies ${JSON.stringify(r.node.errors)}`,
    `closes: ${r.closes.map((c) => `${c.reason}/${c.mode}=${c.value}`).join(', ')}`,
    `abrupt closes by reason/client socket error: ${JSON.stringify(r.abrupt)}; not caused by the client: ${r.unexplainedAbrupt.length}`,
    `handshake failures: ${JSON.stringify(r.handshakeFailures)}; connections total ${r.connectionsTotal}, active after ${r.connectionsActiveAfter}`,
    `PING after: ${JSON.stringify(r.pingAfter)}`,
  ].join('\n');
}
