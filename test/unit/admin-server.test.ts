// The admin HTTP server outlives its own errors: an 'error' after listen() (an accept failing with
// EMFILE) is logged. With no listener, Node throws it and the process ends with every session.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { startAdmin } from '../../src/admin/server.js';
import type { Logger } from '../../src/observability/logger.js';

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
});
