// limits.max_clients: with the limit reached, the next client gets exactly Redis's text
// `-ERR max number of clients reached` and an orderly close (close_notify, FIN), and nothing it
// sent reaches the backend; the clients already connected keep working, and once one leaves a
// new client is served. A client turned away holds no place while it is closed.
import assert from 'node:assert/strict';
import net from 'node:net';
import tls from 'node:tls';
import { describe, test } from 'node:test';
import { sleep, waitFor } from '../helpers/common.js';
import { logTail, useStack } from '../helpers/fixture.js';
import { metricValue, startProxy, waitForMetric } from '../helpers/proxy.js';
import { encodeCommand } from '../helpers/resp.js';
import { describe as showResult, strictClient } from '../helpers/strict-client.js';

const CLOSES = 'resp_tls_proxy_client_closes_total';
const FAILURES = 'resp_tls_proxy_tls_handshake_failures_total';
const MAX_CLIENTS_REPLY = '-ERR max number of clients reached\r\n';

/** A long-lived TLS client: one command at a time, one reply line each. */
class Held {
  private buf = '';
  private waiter: ((line: string) => void) | null = null;
  ended = false;

  private constructor(readonly sock: tls.TLSSocket) {
    sock.setEncoding('latin1');
    sock.on('data', (d: string) => {
      this.buf += d;
      this.flush();
    });
    sock.on('end', () => { this.ended = true; });
    sock.on('error', () => { this.ended = true; });
  }

  /** allowHalfOpen: the proxy's FIN does not end our side; we stay connected until close(). */
  static open(port: number, allowHalfOpen = false): Promise<Held> {
    return new Promise((resolve, reject) => {
      const sock = tls.connect({ host: '127.0.0.1', port, servername: 'localhost', rejectUnauthorized: false });
      sock.allowHalfOpen = allowHalfOpen;
      sock.once('secureConnect', () => resolve(new Held(sock)));
      sock.once('error', reject);
    });
  }

  private flush(): void {
    const i = this.buf.indexOf('\r\n');
    if (i < 0 || this.waiter === null) return;
    const line = this.buf.slice(0, i);
    this.buf = this.buf.slice(i + 2);
    const w = this.waiter;
    this.waiter = null;
    w(line);
  }

  /** Sends one command and resolves its first reply line (rejects after timeoutMs). */
  command(args: string[], timeoutMs = 10_000): Promise<string> {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`no reply to ${args.join(' ')} within ${timeoutMs} ms (ended=${this.ended})`)), timeoutMs);
      this.waiter = (line) => {
        clearTimeout(timer);
        resolve(line);
      };
      this.sock.write(encodeCommand(args));
      this.flush();
    });
  }

  close(): Promise<void> {
    return new Promise((resolve) => {
      this.sock.once('close', () => resolve());
      this.sock.end();
      setTimeout(() => this.sock.destroy(), 5_000).unref();
    });
  }
}

describe('limits.max_clients: 3', { timeout: 120_000 }, () => {
  const stack = useStack({ proxy: () => ({ limits: { max_clients: 3 } }) });
  const held: Held[] = [];

  test('three clients connect and work', { timeout: 30_000 }, async () => {
    for (let i = 0; i < 3; i++) held.push(await Held.open(stack.proxy.port));
    for (const [i, h] of held.entries()) assert.equal(await h.command(['SET', `mc:${i}`, 'v']), '+OK');
    const text = await stack.proxy.metrics();
    assert.equal(metricValue(text, 'resp_tls_proxy_connections_active'), 3, text);
  });

  test('the fourth gets exactly the max-clients error, then close_notify; its command never reaches the backend', { timeout: 30_000 }, async () => {
    const r = await strictClient({
      port: stack.proxy.port,
      payload: encodeCommand(['SET', 'mc:fourth', 'x']),
      caFile: stack.certs.caFile,
    });
    const why = `${showResult(r)}\n${logTail(stack.proxy)}`;
    assert.equal(r.reply.toString('latin1'), MAX_CLIENTS_REPLY, why);
    assert.equal(r.close, 'close_notify', why);
    assert.equal(r.tcpEnd, 'fin', why);
    assert.equal(r.writeError, null, why);
    assert.equal(await stack.redis.cli('EXISTS', 'mc:fourth'), '0');
  });

  test('a fourth client that sends nothing is refused the same way', { timeout: 30_000 }, async () => {
    const r = await strictClient({ port: stack.proxy.port, payload: Buffer.alloc(0), caFile: stack.certs.caFile });
    const why = `${showResult(r)}\n${logTail(stack.proxy)}`;
    assert.equal(r.reply.toString('latin1'), MAX_CLIENTS_REPLY, why);
    assert.equal(r.close, 'close_notify', why);
  });

  test('the three are untouched and still work', { timeout: 30_000 }, async () => {
    for (const h of held) assert.equal(await h.command(['PING']), '+PONG');
  });

  test('after one of them leaves, a new client is served', { timeout: 30_000 }, async () => {
    await held.shift()!.close();
    // the refused clients and the one that left must all be gone before the slot is free
    await waitForMetric(stack.proxy, 'resp_tls_proxy_connections_active', {}, (v) => v === 2, 10_000);
    const r = await strictClient({ port: stack.proxy.port, payload: encodeCommand(['GET', 'mc:1']), caFile: stack.certs.caFile, afterWrite: 'close_notify' });
    const why = `${showResult(r)}\n${logTail(stack.proxy)}`;
    assert.equal(r.reply.toString('latin1'), '$1\r\nv\r\n', why);
    assert.equal(r.close, 'close_notify', why);
  });

  test('a turned-away client that stays connected holds no place: the next one after a leave is served', { timeout: 30_000 }, async () => {
    held.push(await Held.open(stack.proxy.port));
    assert.equal(await held[2]!.command(['PING']), '+PONG');
    // Reads its error, then neither closes nor sends anything: the proxy drains it for
    // close.drain_timeout_ms (5 s) before it lets go.
    const refused = await Held.open(stack.proxy.port, true);
    assert.equal(await refused.command(['PING']), MAX_CLIENTS_REPLY.trimEnd());
    await held.shift()!.close();
    await waitForMetric(stack.proxy, 'resp_tls_proxy_connections_active', {}, (v) => v === 3, 10_000); // two held and the refused one
    const next = await Held.open(stack.proxy.port);
    const why = () => logTail(stack.proxy);
    assert.equal(await next.command(['GET', 'mc:1']), '$1', why());
    await Promise.all([next.close(), refused.close()]);
  });

  test('/metrics: three graceful max_clients closes, none abrupt', { timeout: 15_000 }, async () => {
    for (const h of held.splice(0)) await h.close();
    await waitFor('every connection closed', async () => metricValue(await stack.proxy.metrics(), 'resp_tls_proxy_connections_active') === 0, 10_000);
    const text = await stack.proxy.metrics();
    assert.equal(metricValue(text, CLOSES, { mode: 'graceful', reason: 'max_clients' }), 3, text);
    assert.equal(metricValue(text, CLOSES, { mode: 'abrupt', reason: 'max_clients' }), 0, text);
    assert.equal(metricValue(text, CLOSES, { mode: 'graceful', reason: 'client_closed' }), 6, text);
  });
});

for (const workers of [1, 2]) {
  describe(`the socket cap: 2 × the max_clients share + 100 sockets per process, handshaking ones included (workers: ${workers})`, { timeout: 60_000 }, () => {
    // Each process's share of max_clients is 1.
    const stack = useStack({ proxy: () => ({ workers, limits: { max_clients: workers }, tls: { handshake_timeout_ms: 60_000 } }) });

    test('connections past it are closed at once, before TLS, and counted as reason="socket_limit"; once they leave, clients are served', { timeout: 45_000 }, async (t) => {
      const CAP = (2 * 1 + 100) * workers;
      const OVER = 10;
      const raw: net.Socket[] = [];
      let closed = 0;
      t.after(() => raw.forEach((s) => s.destroy()));
      // Plain TCP connections that never start a handshake, one after another.
      const connect = () => new Promise<net.Socket>((resolve, reject) => {
        const s = net.connect({ host: '127.0.0.1', port: stack.proxy.port }, () => resolve(s));
        s.on('error', reject);
        s.on('close', () => closed++);
        s.resume();
      });
      for (let i = 0; i < CAP + OVER; i++) raw.push(await connect().then((s) => (s.on('error', () => undefined), s)));
      // node:cluster hands connections out in turn but not strictly alternately: a worker may
      // reach its cap before the other, so at least OVER are closed (exactly OVER in one process).
      await waitFor(`${OVER} connections closed`, () => closed >= OVER, 5_000);
      await sleep(1_000); // any more closes would have come by now
      const dropped = metricValue(await waitForMetric(stack.proxy, FAILURES, { reason: 'socket_limit' }, (v) => v >= closed, 10_000), FAILURES, { reason: 'socket_limit' });
      assert.equal(dropped, closed, `${closed} connections closed, ${dropped} counted\n${logTail(stack.proxy)}`);
      if (workers === 1) assert.equal(closed, OVER);

      for (const s of raw.splice(0)) s.destroy();
      // The proxy has seen them go once every one is counted (each worker counts its own).
      await waitForMetric(stack.proxy, FAILURES, { reason: 'reset' }, (v) => v >= CAP + OVER - dropped, 15_000);
      const client = await Held.open(stack.proxy.port);
      t.after(() => client.close());
      assert.equal(await client.command(['PING']), '+PONG', logTail(stack.proxy));
      const m = await stack.proxy.metrics();
      assert.equal(metricValue(m, FAILURES, { reason: 'socket_limit' }), dropped, 'counted once');
      assert.equal(metricValue(m, FAILURES, { reason: 'reset' }), CAP + OVER - dropped, 'the others, which left without a handshake');
    });
  });
}

describe('an open-file limit below what limits.max_clients needs', { timeout: 60_000 }, () => {
  // Each client takes two file descriptors (its socket, its backend connection): past the limit,
  // accepts and backend connects fail long before max_clients turns anyone away. A warning at
  // start says so, once, with workers too (they inherit the limit).
  const FEW_FDS = 'the open-file limit is below what limits.max_clients needs (two per client: its socket and its backend connection): raise it (ulimit -n, systemd LimitNOFILE) or lower max_clients';

  for (const workers of [1, 2]) {
    test(`workers: ${workers}: ulimit -n 300 with max_clients 1000 warns at start; with max_clients 100 it does not`, async () => {
      const low = await startProxy({ workers, limits: { max_clients: 1000 } }, { openFileLimit: 300 });
      try {
        await waitFor('the warning', () => low.logs().some((r) => r.msg === FEW_FDS), 5_000).catch(() => undefined);
        const warnings = low.logs().filter((r) => r.msg === FEW_FDS);
        assert.equal(warnings.length, 1, JSON.stringify(low.logs()));
        assert.equal(warnings[0]!.level, 40);
        assert.equal(warnings[0]!.max_fds, 300);
        assert.equal(warnings[0]!.needed, 2000 / workers);
      } finally {
        await low.stop();
      }
      const enough = await startProxy({ workers, limits: { max_clients: 100 } }, { openFileLimit: 300 });
      try {
        await sleep(300);
        assert.deepEqual(enough.logs().filter((r) => r.msg === FEW_FDS), []);
      } finally {
        await enough.stop();
      }
    });
  }
});
