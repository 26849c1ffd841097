import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { fdsNeeded, openFileLimit } from '../../src/config/fds.js';

const LIMITS = `Limit                     Soft Limit           Hard Limit           Units
Max processes             96364                96364                processes
Max open files            1024                 524288               files
Max locked memory         8388608              8388608              bytes
`;

describe('the open-file limit against limits.max_clients', () => {
  it('reads the soft limit of /proc/self/limits', () => {
    assert.equal(openFileLimit(LIMITS), 1024);
    assert.equal(openFileLimit(LIMITS.replace('1024                 524288', 'unlimited            unlimited')), null);
    assert.equal(openFileLimit(null), null);
    assert.equal(openFileLimit('garbage'), null);
  });

  it("reads this process's limit on Linux", { skip: process.platform !== 'linux' }, () => {
    const limit = openFileLimit();
    assert.ok(limit !== null && limit > 0, String(limit));
  });

  it('two per client: the socket and its backend connection', () => {
    assert.equal(fdsNeeded(10_000), 20_000);
  });
});
