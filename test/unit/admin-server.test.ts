// The admin HTTP server outlives its own errors: an 'error' after listen() (an accept failing with
// EMFILE) is logged. With no listener, Node throws it and the process ends with every session.
// It bounds the connections it holds and closes idle ones, so silent connections cannot take the
// file descriptors every TLS client needs.
import assert from 'node:assert/strict';
import net from 'node:net';
import { describe, it } from 'node:test';
import { boundPort, startAdmin } from '../../src/admin/server.js';
import type { Logger } from '../../src/observability/logger.js';

/** Resolves once ok() holds, or after ms (the assertion that follows then says what is wrong). */
async function until(ok: () => boolean, ms: number): Promise<void> {
  const deadline = Date.now() + ms;
  while (!ok() && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
}

describe('admin server', () => {
  it('logs an error emitted after listen() instead of throwing it', async () => {
    const logged: unknown[] = [];
    const log = { error: (obj: unknown, msg: string) => void logged.push([obj, msg]) } as unknown as Logger;
    const handlers = { metrics: async () => ({ contentType: 'text/plain', body: '' }), notReady: async () => null };
    const server = await startAdmin('127.0.0.1', 0, handlers, log);
    try {
      server.emit('error', Object.assign(new Error('accept EMFILE'), { code: 'EMFILE' }));
      assert.deepEqual(logged, [[{ err: 'accept EMFILE' }, 'admin server error']]);
      assert.equal(server.listening, true);
    } finally {
      server.close();
    }
  });

  it('holds at most maxConnections, closing the oldest idle one for a new one, and closes idle ones', async () => {
    const log = { error: () => undefined } as unknown as Logger;
    const handlers = { metrics: async () => ({ contentType: 'text/plain', body: '' }), notReady: async () => null };
    const server = await startAdmin('127.0.0.1', 0, handlers, log, { maxConnections: 5, idleMs: 3000 });
    const sockets: net.Socket[] = [];
    try {
      const closedAt: Array<[number, number]> = [];
      const t0 = performance.now();
      for (let i = 0; i < 8; i++) {
        const s = net.connect({ host: '127.0.0.1', port: boundPort(server) });
        s.on('error', () => undefined);
        s.on('close', () => closedAt.push([i, performance.now() - t0]));
        sockets.push(s);
        await new Promise((r) => s.once('connect', r));
        await new Promise((r) => setTimeout(r, 20));
      }
      await until(() => closedAt.length >= 3, 5_000);
      const held = await new Promise<number>((resolve, reject) => server.getConnections((err, n) => (err ? reject(err) : resolve(n))));
      assert.equal(held, 5, 'at most maxConnections held');
      assert.deepEqual(closedAt.map(([i]) => i).sort(), [0, 1, 2], 'the oldest silent ones made room');
      // Silent ones holding every place do not keep a probe out.
      const res = await fetch(`http://127.0.0.1:${boundPort(server)}/healthz`);
      assert.equal(res.status, 200);
      await res.text();
      await until(() => closedAt.length >= 8, 10_000);
      assert.ok(closedAt.length >= 8, `silent connections are closed once idle: ${JSON.stringify(closedAt)}`);
      assert.ok(closedAt[7]![1] >= 3000, `not before idleMs: ${JSON.stringify(closedAt)}`);
    } finally {
      for (const s of sockets) s.destroy();
      server.close();
    }
  });

  it('/metrics requests during a collection share it; a later one collects anew', async () => {
    const log = { error: () => undefined } as unknown as Logger;
    let calls = 0;
    // The first collection lasts until all five requests have arrived (not a fixed time a
    // loaded machine could outlast).
    let requests = 0;
    let allIn = (): void => undefined;
    const fiveIn = new Promise<void>((r) => { allIn = r; });
    const handlers = {
      metrics: async () => {
        calls++;
        if (calls === 1) await fiveIn;
        return { contentType: 'text/plain', body: `collection ${calls}\n` };
      },
      notReady: async () => null,
    };
    const server = await startAdmin('127.0.0.1', 0, handlers, log);
    server.on('request', () => {
      if (++requests === 5) setTimeout(allIn, 20); // after the fifth request's own handler ran
    });
    try {
      const get = async (): Promise<string> => (await fetch(`http://127.0.0.1:${boundPort(server)}/metrics`)).text();
      const bodies = await Promise.all([get(), get(), get(), get(), get()]);
      assert.equal(calls, 1, 'five concurrent scrapes, one collection');
      assert.deepEqual(bodies, Array(5).fill('collection 1\n'));
      assert.equal(await get(), 'collection 2\n');
    } finally {
      server.close();
    }
  });
});
