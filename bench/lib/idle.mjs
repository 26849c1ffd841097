// Memory held per idle TLS connection: shared by bench/run.mjs (the idle_rss shape) and
// bench/tls-floor.mjs.
import { spawn } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

import { isAlive, sleep, stopChild, track, treeRssKiB } from './procs.mjs';

const IDLE_CONNS_JS = path.join(path.dirname(fileURLToPath(import.meta.url)), '..', 'idle-conns.mjs');

/** The RSS of pid and its descendants, in KiB, once two reads 250 ms apart agree (or maxMs passed). */
export async function stableTreeRss(pid, { maxMs = 3000 } = {}) {
  let prev = treeRssKiB(pid);
  const deadline = Date.now() + maxMs;
  while (Date.now() < deadline) {
    await sleep(250);
    const cur = treeRssKiB(pid);
    if (Math.abs(cur - prev) <= Math.max(64, prev * 0.005)) return cur;
    prev = cur;
  }
  return prev;
}

/**
 * Reads the target's steady RSS, opens n idle TLS connections to 127.0.0.1:port from a separate
 * node process (bench/idle-conns.mjs: handshake + PING each), reads the steady RSS again, then
 * closes them. Returns { before, after, ready }: ready is the helper's READY record ({ ok, failed,
 * ms, protocol, cipher, error }), or null with `error` set when the helper failed.
 */
export async function idleRssDelta({ pid, port, caFile, n }) {
  const before = await stableTreeRss(pid);
  const helper = spawn(process.execPath, [IDLE_CONNS_JS, '--port', String(port), '--ca', caFile, '--n', String(n)], {
    stdio: ['pipe', 'pipe', 'pipe'],
  });
  track(helper, 'idle-conns');
  let out = '';
  let errOut = '';
  helper.stderr.on('data', (d) => (errOut += d));
  const ready = await new Promise((resolve) => {
    const timer = setTimeout(() => resolve(null), 90_000);
    helper.stdout.on('data', (d) => {
      out += d;
      const m = /READY (\{.*\})\n/.exec(out);
      if (m) {
        clearTimeout(timer);
        resolve(JSON.parse(m[1]));
      }
    });
    helper.on('exit', () => {
      clearTimeout(timer);
      resolve(null);
    });
  });
  const after = ready ? await stableTreeRss(pid) : null;
  helper.stdin.end();
  await Promise.race([new Promise((r) => helper.once('exit', r)), sleep(5000)]);
  if (isAlive(helper)) await stopChild(helper);
  return { before, after, ready, ...(ready ? {} : { error: `idle-conns helper failed: ${errOut.trim().slice(0, 300)}` }) };
}
