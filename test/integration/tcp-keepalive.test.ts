// limits.tcp_keepalive_ms: both of the proxy's sockets for a client (the client's and the
// backend's) run the kernel's keepalive timer, so a peer that vanished without FIN or RST is
// found; 0 turns it off. Read from /proc/net/tcp, where an idle socket with keepalive shows
// timer 2 and the time left until the first probe.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { after, describe, test } from 'node:test';
import { logTail, useStack, type Stack } from '../helpers/fixture.js';
import { encodeCommand } from '../helpers/resp.js';
import { openTls, type TlsConn } from '../helpers/tls-conn.js';

interface TcpEntry {
  localPort: number;
  remotePort: number;
  /** 0 none, 1 retransmit, 2 keepalive, 3 TIME_WAIT, 4 zero-window probe. */
  timer: number;
  /** Clock ticks (USER_HZ, 100 a second) until the timer fires. */
  when: number;
}

/** Established IPv4 TCP sockets of the machine. */
function established(): TcpEntry[] {
  return readFileSync('/proc/net/tcp', 'latin1')
    .split('\n')
    .slice(1)
    .map((line) => line.trim().split(/\s+/))
    .filter((f) => f.length > 5 && f[3] === '01')
    .map((f) => {
      const [timer, when] = f[5]!.split(':');
      return { localPort: parseInt(f[1]!.split(':')[1]!, 16), remotePort: parseInt(f[2]!.split(':')[1]!, 16), timer: parseInt(timer!, 16), when: parseInt(when!, 16) };
    });
}

/** The proxy's two sockets for the one client `conn`: towards the client and towards redis-server. */
function proxySockets(stack: Stack, conn: TlsConn): { client: TcpEntry; backend: TcpEntry[] } {
  const all = established();
  const client = all.find((e) => e.localPort === stack.proxy.port && e.remotePort === conn.socket.localPort);
  assert.ok(client, `no socket of the proxy towards client port ${conn.socket.localPort}`);
  return { client, backend: all.filter((e) => e.remotePort === stack.redis.port) };
}

describe('limits.tcp_keepalive_ms: 7000', { timeout: 60_000 }, () => {
  const stack = useStack({ proxy: () => ({ limits: { tcp_keepalive_ms: 7_000 } }) });
  const conns: TlsConn[] = [];
  after(() => {
    for (const c of conns) c.close();
  });

  test('the client socket and the backend socket both wait to probe after at most 7 s of quiet', { timeout: 30_000 }, async () => {
    const conn = await openTls(stack.proxy.port);
    conns.push(conn);
    const [pong] = await conn.request(encodeCommand(['PING']));
    assert.equal(pong!.toString('latin1'), '+PONG\r\n');
    // Until the PONG is acknowledged the client socket shows its retransmit timer, and the
    // primary's backend_up probe (every 5 s) may hold a second connection for a moment: look
    // again for up to 3 s before judging.
    const deadline = Date.now() + 3_000;
    let seen = proxySockets(stack, conn);
    while (Date.now() < deadline && !(seen.client.timer === 2 && seen.backend.length === 1 && seen.backend[0]!.timer === 2)) {
      await new Promise((r) => setTimeout(r, 50));
      seen = proxySockets(stack, conn);
    }
    const { client, backend } = seen;
    assert.equal(client.timer, 2, `client side: ${JSON.stringify(client)}\n${logTail(stack.proxy)}`);
    assert.ok(client.when > 0 && client.when <= 700, `client side probes in ${client.when} ticks`);
    // The test's own redis-cli calls are over by now: one connection to redis-server, the proxy's.
    assert.equal(backend.length, 1, JSON.stringify(backend));
    assert.equal(backend[0]!.timer, 2, `backend side: ${JSON.stringify(backend[0])}`);
    assert.ok(backend[0]!.when > 0 && backend[0]!.when <= 700, `backend side probes in ${backend[0]!.when} ticks`);
  });
});

describe('limits.tcp_keepalive_ms: 0', { timeout: 60_000 }, () => {
  const stack = useStack({ proxy: () => ({ limits: { tcp_keepalive_ms: 0 } }) });
  const conns: TlsConn[] = [];
  after(() => {
    for (const c of conns) c.close();
  });

  test('neither socket has a keepalive timer', { timeout: 30_000 }, async () => {
    const conn = await openTls(stack.proxy.port);
    conns.push(conn);
    await conn.request(encodeCommand(['PING']));
    const { client, backend } = proxySockets(stack, conn);
    assert.equal(client.timer, 0, JSON.stringify(client));
    assert.equal(backend.length, 1, JSON.stringify(backend));
    assert.equal(backend[0]!.timer, 0, JSON.stringify(backend[0]));
  });
});
