// workers: 2 — two node:cluster workers share the listener; the primary's /metrics sums them;
// a worker killed with SIGKILL is replaced (workers_restarted_total) while the other keeps
// serving; SIGTERM to the primary drains the workers and exits 0.
import assert from 'node:assert/strict';
import { copyFileSync, readFileSync, readdirSync, renameSync, writeFileSync } from 'node:fs';
import net, { type AddressInfo } from 'node:net';
import path from 'node:path';
import { describe, test, type TestContext } from 'node:test';
import { request } from 'undici';
import YAML from 'yaml';
import { sharedCerts } from '../helpers/certs.js';
import { freePort, makeTempDir, run, sleep, waitFor } from '../helpers/common.js';
import { logTail } from '../helpers/fixture.js';
import { PROXY_CLI, closeRecords, metricValue, startProxy, waitForMetric, type Proxy } from '../helpers/proxy.js';
import { startRedis } from '../helpers/redis.js';
import { encodeCommand } from '../helpers/resp.js';
import { openTls, type TlsConn } from '../helpers/tls-conn.js';

/** Pids of the live (not zombie) children of `ppid`, from /proc. */
function childrenOf(ppid: number): number[] {
  const out: number[] = [];
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    let stat: string;
    try {
      stat = readFileSync(`/proc/${name}/stat`, 'utf8');
    } catch {
      continue; // gone meanwhile
    }
    // pid (comm) state ppid …; comm may hold spaces and parentheses
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    if (Number(fields[1]) === ppid && fields[0] !== 'Z') out.push(Number(name));
  }
  return out.sort((a, b) => a - b);
}

function alive(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2)[0] !== 'Z';
  } catch {
    return false;
  }
}

/** SIGTERM to the proxy, then SIGKILL to any of `workers` still alive (SIGKILL on the primary would orphan them). */
async function stopThenKill(proxy: Proxy, workers: Iterable<number>): Promise<void> {
  await proxy.stop('SIGTERM', 15_000);
  for (const pid of workers) {
    if (alive(pid)) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        // gone
      }
    }
  }
}

/** The processes that logged `msg` (a reload's outcome) so far. */
function reloadedBy(proxy: Proxy, msg: string): Set<number> {
  return new Set(proxy.logs().filter((r) => r.msg === msg).map((r) => r.pid as number));
}

/** One connection: PING, then an orderly close from our side. */
async function pingOnce(proxy: Proxy, ca: Buffer): Promise<void> {
  const c = await openTls(proxy.port, { ca, timeoutMs: 15_000 });
  try {
    const [r] = await c.request(encodeCommand(['PING']), 1, 15_000);
    assert.equal(r!.toString('latin1'), '+PONG\r\n');
    await c.end();
  } finally {
    c.close();
  }
}

/** GET /metrics: status and how long it took. */
async function scrape(proxy: Proxy): Promise<{ status: number; ms: number; body: string }> {
  const t0 = Date.now();
  const res = await request(`http://127.0.0.1:${proxy.adminPort}/metrics`, { headersTimeout: 15_000, bodyTimeout: 15_000 });
  const body = await res.body.text();
  return { status: res.statusCode, ms: Date.now() - t0, body };
}

/** A scrape must answer 200 promptly even while a worker starts or has just died. */
const SCRAPE_MAX_MS = 3_000;

/**
 * A redis-server and a proxy with `config` (workers…) in front of it, both stopped after the
 * test, with the clients in `held` closed first. `workers()` lists the live workers and remembers
 * every one seen, to SIGKILL any still alive at the end.
 */
async function workersStack(t: TestContext, config: Record<string, unknown>) {
  const redis = await startRedis();
  t.after(() => redis.stop());
  const proxy = await startProxy({ backend: { host: '127.0.0.1', port: redis.port }, ...config }, { startTimeoutMs: 45_000 });
  const seen = new Set<number>();
  const held: TlsConn[] = [];
  t.after(async () => {
    for (const c of held) c.close();
    await stopThenKill(proxy, seen);
  });
  const workers = (): number[] => {
    const w = childrenOf(proxy.pid);
    for (const pid of w) seen.add(pid);
    return w;
  };
  const ca = readFileSync(proxy.certs.caFile);
  /** Each of `pids` has served a connection: it listens, its signal handlers are installed. */
  const serving = (pids: number[]): Promise<boolean> =>
    waitFor('the workers serving', async () => {
      await pingOnce(proxy, ca);
      return pids.every((pid) => closeRecords(proxy.logs()).some((r) => r.pid === pid));
    }, 30_000, 50);
  /** `n` more clients, each answered +PONG, held open (handed out to the workers in turn). */
  const openPinged = async (n: number): Promise<void> => {
    for (let i = 0; i < n; i++) {
      const c = await openTls(proxy.port, { ca, timeoutMs: 15_000 });
      held.push(c);
      assert.equal((await c.request(encodeCommand(['PING']), 1, 15_000))[0]!.toString('latin1'), '+PONG\r\n');
    }
  };
  return { redis, proxy, seen, held, workers, ca, serving, openPinged };
}

describe('workers: 2', { timeout: 180_000 }, () => {
  test('two workers serve and /metrics sums them; a killed worker is replaced; SIGTERM exits 0', { timeout: 150_000 }, async (t) => {
    const redis = await startRedis();
    t.after(() => redis.stop());
    const proxy = await startProxy({ backend: { host: '127.0.0.1', port: redis.port }, workers: 2, shutdown: { grace_ms: 1000 } }, { startTimeoutMs: 45_000 });
    t.after(() => stopThenKill(proxy, childrenOf(proxy.pid)));
    const ca = readFileSync(proxy.certs.caFile);
    // The first worker is listening; the second may still be starting.
    const early = await scrape(proxy);
    assert.equal(early.status, 200, `/metrics while a worker starts: ${early.body}`);
    assert.ok(early.ms < SCRAPE_MAX_MS, `/metrics took ${early.ms} ms while a worker started`);

    const first = await waitFor('two worker processes', () => {
      const w = childrenOf(proxy.pid);
      return w.length === 2 ? w : null;
    }, 45_000, 100);

    // 20 connections, 5 at a time.
    const t0 = Date.now();
    for (let i = 0; i < 20; i += 5) await Promise.all([0, 1, 2, 3, 4].map(() => pingOnce(proxy, ca)));
    const pingMs = Date.now() - t0;
    // /metrics answers once every worker has its metrics handler (the second may still be starting).
    const m1 = await waitFor('/metrics summing 20 connections', async () => {
      const text = await proxy.metrics();
      return metricValue(text, 'resp_tls_proxy_connections_total') >= 20 ? text : null;
    }, 30_000, 200);
    assert.equal(metricValue(m1, 'resp_tls_proxy_connections_total'), 20, logTail(proxy));
    assert.equal(metricValue(m1, 'resp_tls_proxy_commands_total'), 20);
    assert.equal(metricValue(m1, 'resp_tls_proxy_workers_restarted_total'), 0);
    const records = await waitFor('20 close records', () => {
      const found = closeRecords(proxy.logs());
      return found.length >= 20 ? found : null;
    }, 5_000);
    const servedBy = new Set(records.map((r) => r.pid as number));
    for (const pid of servedBy) assert.ok(first.includes(pid), `close record from pid ${pid}, not a worker (${first.join(', ')})`);

    // The backend moves (file changed now, SIGHUP below, while the replacement worker starts).
    const redis2 = await startRedis();
    t.after(() => redis2.stop());
    const cfg = YAML.parse(readFileSync(proxy.configFile, 'utf8')) as { backend: { port: number } };
    cfg.backend.port = redis2.port;
    writeFileSync(proxy.configFile, YAML.stringify(cfg));

    // Kill one worker outright: the other keeps serving while the primary starts a replacement.
    const victim = first[0]!;
    const survivor = first[1]!;
    const killedAt = Date.now();
    process.kill(victim, 'SIGKILL');
    const during = await scrape(proxy);
    assert.equal(during.status, 200, `/metrics right after a worker died: ${during.body}`);
    assert.ok(during.ms < SCRAPE_MAX_MS, `/metrics took ${during.ms} ms right after a worker died`);
    await waitFor('the killed worker gone', () => !alive(victim), 10_000);
    for (let i = 0; i < 5; i++) await pingOnce(proxy, ca);
    const servedMs = Date.now() - killedAt;

    // SIGHUP the moment the replacement process exists (it is still starting): it must not die of
    // it, and it must still apply the reload once it listens.
    const replacement = await waitFor('a replacement worker process', () => childrenOf(proxy.pid).find((pid) => pid !== victim && pid !== survivor), 45_000, 10);
    const replacementSeenMs = Date.now() - killedAt;
    process.kill(proxy.pid, 'SIGHUP');
    await waitFor('both workers reloaded', () => reloadedBy(proxy, 'configuration reloaded').size >= 2, 30_000, 100).catch((e: Error) => {
      throw new Error(`${e.message}\n${logTail(proxy, 10)}`);
    });
    // One SIGHUP is one reload in /metrics, however many workers it reloaded.
    assert.equal(metricValue(await proxy.metrics(), 'resp_tls_proxy_reloads_total', { result: 'success' }), 1, logTail(proxy));
    const replacedMs = Date.now() - killedAt;
    assert.deepEqual(childrenOf(proxy.pid), [survivor, replacement].sort((a, b) => a - b));
    const m2 = await proxy.metrics();
    assert.equal(metricValue(m2, 'resp_tls_proxy_workers_restarted_total'), 1, logTail(proxy));
    assert.equal(metricValue(m2, 'resp_tls_proxy_reloads_total', { result: 'error' }), 0, logTail(proxy));
    const deaths = proxy.logs().filter((r) => r.msg === 'worker died; starting a new one');
    assert.deepEqual(deaths.map((r) => r.signal), ['SIGKILL'], logTail(proxy));

    // The old backend goes away: both workers and the primary's readiness probe use the new one.
    await redis.stop();
    for (let i = 0; i < 6; i++) {
      const c = await openTls(proxy.port, { ca, timeoutMs: 15_000 });
      try {
        assert.equal((await c.request(encodeCommand(['INCR', 'served'])))[0]!.toString('latin1'), `:${i + 1}\r\n`, logTail(proxy));
        await c.end();
      } finally {
        c.close();
      }
    }
    assert.equal(await redis2.cli('GET', 'served'), '6');
    const ready = await request(`http://127.0.0.1:${proxy.adminPort}/readyz`, { headersTimeout: 5_000, bodyTimeout: 5_000 });
    const readyBody = await ready.body.text();
    assert.equal(ready.statusCode, 200, `readyz after the backend moved: ${readyBody}`);
    const second = [survivor, replacement];

    // SIGTERM to the primary: workers drain, everything exits 0.
    const stopAt = Date.now();
    const exit = await proxy.stop('SIGTERM', 30_000);
    if (proxy.proc.stdout && !proxy.proc.stdout.destroyed) await new Promise((resolve) => proxy.proc.stdout!.once('close', resolve));
    const stopMs = Date.now() - stopAt;
    assert.deepEqual(exit, { code: 0, signal: null }, logTail(proxy));
    await waitFor('the workers gone', () => second.every((pid) => !alive(pid)), 10_000);
    assert.ok(proxy.logs().some((r) => r.msg === 'all workers exited; shutdown complete'), logTail(proxy));
    await sleep(0);
    t.diagnostic(`/metrics ${early.ms} ms while the second worker started, ${during.ms} ms right after the SIGKILL; workers ${first.join(',')}; 20 PINGs in ${pingMs} ms (closes logged by ${servedBy.size} worker(s)); connections_total ${metricValue(m1, 'resp_tls_proxy_connections_total')}; after SIGKILL of ${victim}: 5 PINGs served within ${servedMs} ms, replacement ${replacement} seen ${replacementSeenMs} ms after the kill, SIGHUP then, both reloaded ${replacedMs} ms after the kill; SIGTERM → exit 0 in ${stopMs} ms`);
  });
});

describe('workers: 2 — one max_clients, the running config for replacements, no respawn after SIGTERM', { timeout: 180_000 }, () => {
  test('max_clients 3 holds across both workers (2 + 1, not 2 + 2); a worker replaced after a broken file was refused runs the last good config; a respawn due when SIGTERM comes is cancelled and the proxy exits 0', { timeout: 150_000 }, async (t) => {
    // A fixed admin port, as in production: a worker must never try to bind it.
    const { proxy, seen, held, workers, ca, serving } = await workersStack(t, {
      workers: 2,
      limits: { max_clients: 3 },
      shutdown: { grace_ms: 3000 },
      admin: { host: '127.0.0.1', port: await freePort() },
    });
    const hold = async (): Promise<string> => {
      const c = await openTls(proxy.port, { ca, timeoutMs: 15_000 });
      held.push(c);
      return (await c.request(encodeCommand(['PING']), 1, 15_000))[0]!.toString('latin1');
    };
    /** waitForMetric, failing when the value never gets there. */
    const expectMetric = async (name: string, labels: Record<string, string>, ok: (v: number) => boolean): Promise<void> => {
      const text = await waitForMetric(proxy, name, labels, ok, 15_000);
      assert.ok(ok(metricValue(text, name, labels)), `${name} ${JSON.stringify(labels)} = ${metricValue(text, name, labels)}\n${logTail(proxy)}`);
    };
    const noneOpen = (): Promise<void> => expectMetric('resp_tls_proxy_connections_active', {}, (v) => v === 0);
    const first = await waitFor('two worker processes', () => (workers().length === 2 ? workers() : null), 45_000, 100);
    const served = (pid: number): boolean => closeRecords(proxy.logs()).some((r) => r.pid === pid);
    await serving(first);
    await noneOpen();

    // max_clients 3 over two workers: two and one (each used to take 3 / 2 rounded up: 4 in
    // all). Four clients held open, handed out in turn: one is turned away.
    const answers = [await hold(), await hold(), await hold(), await hold()];
    for (const c of held.splice(0)) c.close();
    assert.equal(answers.filter((a) => a === '+PONG\r\n').length, 3, `${answers.join(' | ')}\n${logTail(proxy)}`);
    assert.deepEqual(answers.filter((a) => a !== '+PONG\r\n'), ['-ERR max number of clients reached\r\n']);

    // A good file (room for the clients below, and a restart-only change: one worker), then a
    // broken one: both workers take the first and refuse the second. A worker killed now is
    // replaced by one that runs the config the others run, restart-only keys as started (it used
    // to read the broken file and never listen; given workers: 1 it would run as a single
    // process and die binding the primary's admin port, again and again).
    const cfg = YAML.parse(readFileSync(proxy.configFile, 'utf8')) as { limits: Record<string, number>; workers: number };
    cfg.limits.max_clients = 100;
    cfg.workers = 1;
    writeFileSync(proxy.configFile, YAML.stringify(cfg));
    process.kill(proxy.pid, 'SIGHUP');
    await waitFor('both workers reloaded', () => reloadedBy(proxy, 'configuration reloaded').size >= 2, 15_000, 50);
    await expectMetric('resp_tls_proxy_reloads_total', { result: 'success' }, (v) => v === 1);
    writeFileSync(proxy.configFile, `${YAML.stringify(cfg)}\nnot_a_key: 1\n`);
    process.kill(proxy.pid, 'SIGHUP');
    await waitFor('both workers refused', () => reloadedBy(proxy, 'reload failed; keeping the running configuration').size >= 2, 15_000, 50);
    await expectMetric('resp_tls_proxy_reloads_total', { result: 'error' }, (v) => v === 1);
    // What the dead worker counted stays in the totals (they used to drop by its share, which
    // Prometheus reads as a counter reset).
    const countedBefore = metricValue(await proxy.metrics(), 'resp_tls_proxy_connections_total');
    process.kill(first[0]!, 'SIGKILL');
    const replacement = await waitFor('a replacement worker', () => workers().find((pid) => !first.includes(pid)), 30_000, 20);
    let pingsSinceKill = 0;
    await waitFor('the replacement serving', async () => {
      pingsSinceKill++;
      await pingOnce(proxy, ca);
      return served(replacement);
    }, 30_000, 50);
    await noneOpen();
    const afterKill = await proxy.metrics();
    assert.equal(metricValue(afterKill, 'resp_tls_proxy_workers_restarted_total'), 1, logTail(proxy));
    const countedAfter = metricValue(afterKill, 'resp_tls_proxy_connections_total');
    assert.equal(countedAfter, countedBefore + pingsSinceKill, `connections_total ${countedBefore} before the kill, then ${pingsSinceKill} PINGs: ${countedAfter}`);

    // A respawn due when SIGTERM comes. Clients held on both workers (connections go round-robin;
    // checked below by the drain time); the survivor dies (replaced at once) and its replacement
    // dies young (the next one waits 2 s); SIGTERM comes within the first second, and the clients on
    // the replacement keep it draining for grace_ms (3 s). The respawn must not happen: a worker
    // forked after the SIGTERM never hears it, and the proxy never exits.
    assert.deepEqual([await hold(), await hold(), await hold(), await hold()], Array(4).fill('+PONG\r\n'), logTail(proxy));
    process.kill(first[1]!, 'SIGKILL');
    const young = await waitFor('the survivor\'s replacement', () => workers().find((pid) => pid !== replacement && !first.includes(pid)), 30_000, 5);
    process.kill(young, 'SIGKILL');
    const deaths = await waitFor('three worker deaths logged', () => {
      const d = proxy.logs().filter((r) => r.msg === 'worker died; starting a new one');
      return d.length === 3 ? d : null;
    }, 5_000, 5);
    const sampler = setInterval(workers, 10);
    const stopAt = Date.now();
    const exit = await proxy.stop('SIGTERM', 20_000).finally(() => clearInterval(sampler));
    const drainMs = Date.now() - stopAt;
    assert.deepEqual(exit, { code: 0, signal: null }, logTail(proxy));
    // The premises: SIGTERM inside the back-off, and the replacement still draining when it ran out.
    const sinceDeathMs = stopAt - Date.parse(String(deaths[2]!.time));
    const backoffMs = Number(deaths[2]!.restart_in_ms);
    assert.ok(backoffMs > 0 && sinceDeathMs < backoffMs, `SIGTERM came ${sinceDeathMs} ms after the young worker's death: outside its ${backoffMs} ms back-off`);
    assert.ok(drainMs > 2000, `exit ${drainMs} ms after SIGTERM: no client held the replacement draining`);
    await waitFor('every worker gone', () => [...seen].every((pid) => !alive(pid)), 10_000);
    assert.deepEqual([...seen].sort((x, y) => x - y), [...first, replacement, young].sort((x, y) => x - y), 'no worker was started after SIGTERM');
  });
});

/**
 * A port held by another listener (closed after the test), and the proxy run to its exit on a
 * config with `config(port)` plus the test certificates.
 */
async function runWithPortTaken(t: TestContext, config: (taken: number) => Record<string, unknown>): Promise<{ taken: number; r: Awaited<ReturnType<typeof run>> }> {
  const blocker = net.createServer();
  await new Promise<void>((resolve) => blocker.listen({ host: '127.0.0.1', port: 0 }, resolve));
  t.after(() => blocker.close());
  const taken = (blocker.address() as AddressInfo).port;
  const certs = await sharedCerts();
  const file = path.join(makeTempDir(), 'proxy.yaml');
  writeFileSync(file, YAML.stringify({ ...config(taken), tls: { cert_file: certs.certFile, key_file: certs.keyFile } }));
  return { taken, r: await run(process.execPath, [PROXY_CLI, '--config', file], { timeoutMs: 30_000 }) };
}

describe('workers: 2 that cannot listen', { timeout: 60_000 }, () => {
  test('the listen port is taken: the primary exits 1 with a fatal line instead of replacing workers forever', { timeout: 40_000 }, async (t) => {
    const { r } = await runWithPortTaken(t, (port) => ({ listen: { host: '127.0.0.1', port }, admin: { host: '127.0.0.1', port: 0 }, workers: 2 }));
    const out = `${r.stdout}\n${r.stderr}`;
    assert.equal(r.timedOut, false, `still running after 30 s (replacing workers?)\n${out.slice(-2000)}`);
    assert.equal(r.code, 1, out.slice(-2000));
    assert.match(out, /EADDRINUSE/);
    assert.match(out, /a worker could not start and no worker has listened; exiting/);
  });
});

describe('workers: 3 with max_clients: 2', { timeout: 60_000 }, () => {
  test('runs 2 workers (each takes at least one client) and says so at start', { timeout: 40_000 }, async (t) => {
    const proxy = await startProxy({ workers: 3, limits: { max_clients: 2 } });
    t.after(() => proxy.stop());
    const listening = await waitFor('the listening record', () => proxy.logs().find((r) => r.msg === 'listening') ?? null, 20_000);
    assert.equal(listening.workers, 2, logTail(proxy));
    const warned = proxy.logs().filter((r) => r.msg === 'fewer workers than configured: no more than limits.max_clients');
    assert.equal(warned.length, 1, logTail(proxy));
    assert.deepEqual([warned[0]!.level, warned[0]!.workers, warned[0]!.running, warned[0]!.max_clients], [40, 3, 2, 2], logTail(proxy));
  });
});

describe('a port that cannot be taken, one process', { timeout: 60_000 }, () => {
  for (const what of ['listen', 'admin'] as const) {
    test(`the ${what} port is in use → exit 1 with one line naming it, no stack trace`, { timeout: 40_000 }, async (t) => {
      const { taken, r } = await runWithPortTaken(t, (port) => ({
        listen: { host: '127.0.0.1', port: what === 'listen' ? port : 0 },
        admin: { host: '127.0.0.1', port: what === 'admin' ? port : 0 },
      }));
      const out = `${r.stdout}\n${r.stderr}`;
      assert.equal(r.code, 1, out);
      assert.equal(r.stderr, `resp-tls-proxy: cannot listen on ${what} 127.0.0.1:${taken}: listen EADDRINUSE: address already in use 127.0.0.1:${taken}\n`, out);
    });
  }
});

describe('workers: 2, reloaded to max_clients: 1', { timeout: 90_000 }, () => {
  test('a worker started after the reload is still a worker: it does not run as a single process and die on the admin port, again and again', { timeout: 80_000 }, async (t) => {
    const { proxy, workers } = await workersStack(t, { workers: 2, limits: { max_clients: 10 }, admin: { host: '127.0.0.1', port: await freePort() } });
    const first = await waitFor('two worker processes', () => (workers().length === 2 ? workers() : null), 45_000, 100);
    // workers stays 2 (restart-only), and max_clients 1 leaves room for one process: a worker
    // that decided from the config what to be computed 1 and ran as a single process.
    const cfg = YAML.parse(readFileSync(proxy.configFile, 'utf8')) as { limits: Record<string, number> };
    cfg.limits.max_clients = 1;
    writeFileSync(proxy.configFile, YAML.stringify(cfg));
    process.kill(proxy.pid, 'SIGHUP');
    await waitFor('both workers reloaded', () => reloadedBy(proxy, 'configuration reloaded').size >= 2, 15_000, 50);
    process.kill(first[0]!, 'SIGKILL');
    const replacement = await waitFor('a replacement worker', () => workers().find((pid) => !first.includes(pid)), 30_000, 20);
    await sleep(4_000); // a crash loop dies and is replaced about once a second
    const m = await proxy.metrics();
    assert.equal(metricValue(m, 'resp_tls_proxy_workers_restarted_total'), 1, logTail(proxy));
    assert.ok(alive(replacement), `the replacement ${replacement} died\n${logTail(proxy)}`);
  });
});

describe('workers: 2, SIGTERM to the whole process group', { timeout: 90_000 }, () => {
  test('each worker hearing SIGTERM itself and from the primary is one stop, not two: the grace period holds', { timeout: 80_000 }, async (t) => {
    const { redis, proxy, held, workers, ca, serving } = await workersStack(t, { workers: 2, shutdown: { grace_ms: 3000 } });
    const pids = await waitFor('two worker processes', () => (workers().length === 2 ? workers() : null), 45_000, 100);
    await serving(pids); // a worker still starting holds SIGTERM until it listens, then drains at once
    // Clients blocked in BLPOP on both workers (connections are handed out in turn).
    for (let i = 0; i < 4; i++) {
      const c = await openTls(proxy.port, { ca, timeoutMs: 15_000 });
      held.push(c);
      c.socket.write(encodeCommand(['BLPOP', `group:${i}`, '0']));
    }
    await waitFor('four clients blocked', async () => (await redis.cli('INFO', 'clients')).includes('blocked_clients:4'), 15_000, 50);
    // What `kill -- -PGID` does (the test runner shares the proxy's group, so one by one): each
    // worker has its own SIGTERM in hand by the time the primary's stop reaches it. (Sent the
    // other way round, or together, the two signals could merge into one pending signal.)
    const stopAt = Date.now();
    for (const pid of pids) process.kill(pid, 'SIGTERM');
    await waitFor('both workers draining', () => proxy.logs().filter((r) => r.msg === 'shutting down: not accepting, letting clients finish').length === 2, 5_000, 10);
    process.kill(proxy.pid, 'SIGTERM');
    await sleep(1_500);
    assert.deepEqual(held.map((c) => c.isEnded), [false, false, false, false], `clients closed before grace_ms\n${logTail(proxy)}`);
    assert.ok(!proxy.logs().some((r) => r.msg === 'second signal: closing every connection now'), logTail(proxy));
    const exit = await proxy.stop('SIGTERM', 20_000);
    assert.deepEqual(exit, { code: 0, signal: null }, logTail(proxy));
    assert.ok(Date.now() - stopAt >= 2_500, `exited ${Date.now() - stopAt} ms after SIGTERM, before grace_ms`);
  });
});

describe('workers: 2, a worker that has drained', { timeout: 90_000 }, () => {
  test('what it counted after the last scrape (its shutdown closes) reaches /metrics while the other still drains', { timeout: 80_000 }, async (t) => {
    const { redis, proxy, held, workers, serving, openPinged } = await workersStack(t, { workers: 2, shutdown: { grace_ms: 1000 }, close: { drain_timeout_ms: 8000 } });
    const pids = await waitFor('two worker processes', () => (workers().length === 2 ? workers() : null), 45_000, 100);
    await serving(pids);
    // Four clients handed out in turn: the 1st and 3rd on one worker block in BLPOP, which keeps
    // it draining up to drain_timeout_ms after grace_ms; the other worker holds two idle clients,
    // closes them in order when grace_ms is over, and exits.
    await openPinged(4);
    await proxy.metrics(); // the last scrape before the stop: no shutdown close counted yet
    held[0]!.socket.write(encodeCommand(['BLPOP', 'drained:0', '0']));
    held[2]!.socket.write(encodeCommand(['BLPOP', 'drained:2', '0']));
    await waitFor('two clients blocked', async () => (await redis.cli('INFO', 'clients')).includes('blocked_clients:2'), 15_000, 50);
    process.kill(proxy.pid, 'SIGTERM');
    const done = await waitFor('a worker done', () => proxy.logs().find((r) => r.msg === 'shutdown complete'), 15_000, 20);
    const closedThere = closeRecords(proxy.logs()).filter((r) => r.pid === done.pid && r.reason === 'shutdown' && r.mode === 'graceful').length;
    assert.equal(closedThere, 2, `the idle clients' worker closed ${closedThere} at shutdown (connections not handed out in turn?)\n${logTail(proxy)}`);
    const text = await waitForMetric(proxy, 'resp_tls_proxy_client_closes_total', { mode: 'graceful', reason: 'shutdown' }, (v) => v >= 2, 3_000).catch((err: Error) => err.message);
    assert.equal(metricValue(text, 'resp_tls_proxy_client_closes_total', { mode: 'graceful', reason: 'shutdown' }), 2, `${text.slice(0, 3000)}\n${logTail(proxy)}`);
    assert.ok(alive(proxy.pid), 'the primary was still serving /metrics');
  });
});

describe('workers: 2 whose replacements cannot start', { timeout: 90_000 }, () => {
  test('replacements back off (0, 2 s, 4 s) and after five failed starts with none serving the primary exits 1', { timeout: 80_000 }, async (t) => {
    const certs = await sharedCerts();
    const dir = makeTempDir();
    const cert = path.join(dir, 'tls.crt');
    const key = path.join(dir, 'tls.key');
    copyFileSync(certs.certFile, cert);
    copyFileSync(certs.keyFile, key);
    const { proxy, workers, serving } = await workersStack(t, { workers: 2, tls: { cert_file: cert, key_file: key, poll_interval_ms: 0 } });
    const pids = await waitFor('two worker processes', () => (workers().length === 2 ? workers() : null), 45_000, 100);
    await serving(pids);
    renameSync(key, `${key}.away`); // what a replacement needs to start is gone
    const killedAt = Date.now();
    for (const pid of pids) process.kill(pid, 'SIGKILL');
    const exit = await Promise.race([proxy.exited, sleep(40_000).then(() => 'still running')]);
    const tookMs = Date.now() - killedAt;
    assert.deepEqual(exit, { code: 1, signal: null }, `${JSON.stringify(exit)}\n${logTail(proxy)}`);
    const delays = proxy.logs().filter((r) => r.msg === 'worker died; starting a new one').map((r) => r.restart_in_ms as number);
    // Each slot: its served worker replaced at once, then the failures 2 s and 4 s apart; the
    // fifth failure in a row ends it (it used to go on at 1 s intervals for ever, /healthz 200).
    assert.deepEqual(delays.sort((a, b) => a - b), [0, 0, 2000, 2000, 4000, 4000], logTail(proxy));
    assert.ok(proxy.logs().some((r) => r.msg === 'workers keep failing to start and none is serving; exiting' && r.failed_starts === 5), logTail(proxy));
    assert.ok(tookMs >= 6_000, `exited ${tookMs} ms after the kills: no back-off`);
    await waitFor('every worker gone', () => workers().length === 0, 10_000);
  });
});

describe('workers: 2 that do not answer a scrape in time', { timeout: 90_000 }, () => {
  test('their last answer stands in, gauges included: connections_active and the certificate expiry stay in /metrics', { timeout: 80_000 }, async (t) => {
    const { proxy, workers, serving, openPinged } = await workersStack(t, { workers: 2 });
    const pids = await waitFor('two worker processes', () => (workers().length === 2 ? workers() : null), 45_000, 100);
    await serving(pids);
    await openPinged(2);
    const expiry = 'resp_tls_proxy_tls_cert_expiry_timestamp_seconds';
    const answered = await waitForMetric(proxy, 'resp_tls_proxy_connections_active', {}, (v) => v === 2, 10_000);
    const expires = metricValue(answered, expiry);
    assert.ok(expires > Date.now() / 1000, `${expiry} ${expires}`);
    for (const pid of pids) process.kill(pid, 'SIGSTOP'); // neither answers the next scrape
    try {
      const late = await proxy.metrics();
      assert.equal(metricValue(late, 'resp_tls_proxy_connections_active'), 2, late.slice(0, 2000));
      assert.equal(metricValue(late, expiry), expires, late.slice(0, 2000));
    } finally {
      for (const pid of pids) process.kill(pid, 'SIGCONT');
    }
  });
});
