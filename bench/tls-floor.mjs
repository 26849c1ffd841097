#!/usr/bin/env node
// What an idle TLS connection costs Node.js itself: the memory floor under resp-tls-proxy's
// "RSS per idle TLS connection". Starts a bare node:tls server (it answers +PONG to anything,
// no backend, no session) and resp-tls-proxy side by side under the same node binary, opens the
// same idle connections to each with bench/idle-conns.mjs, and prints the RSS per connection.
//
//   node bench/tls-floor.mjs [--node PATH] [--n 1000]       (npm run bench -- --tls-floor ...)
//
// The proxy forwards to a redis-server started here (its memory is not counted). Everything
// listens on 127.0.0.1; every process started here is stopped by PID when done.
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

import { certArgs, freePorts, tlsPing, waitPlainReady, waitTlsReady } from './lib/net.mjs';
import { idleRssDelta } from './lib/idle.mjs';
import { installExitHandlers, isAlive, spawnTracked, stopAll, stopChild, which } from './lib/procs.mjs';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const ROOT = path.resolve(HERE, '..');

if (process.argv[2] === '--serve') {
  // The bare server: node:tls with the certificate, nothing else.
  const tls = await import('node:tls');
  const [, , , port, cert, key] = process.argv;
  const server = tls.createServer({ cert: fs.readFileSync(cert), key: fs.readFileSync(key), noDelay: true }, (socket) => {
    socket.on('data', () => socket.write('+PONG\r\n'));
    socket.on('error', () => socket.destroy());
  });
  server.listen(Number(port), '127.0.0.1');
} else {
  const opts = parseArgs({ options: { node: { type: 'string' }, n: { type: 'string', default: '1000' } } }).values;
  const nodeBin = opts.node ?? process.execPath;
  const n = Number(opts.n);
  installExitHandlers();
  const work = fs.mkdtempSync(path.join(os.tmpdir(), 'tls-floor-'));
  const cert = path.join(work, 'cert.pem');
  const key = path.join(work, 'key.pem');
  const gen = spawnSync('openssl', certArgs(key, cert), { encoding: 'utf8' });
  if (gen.status !== 0) throw new Error(`openssl failed: ${gen.stderr}`);
  const ca = fs.readFileSync(cert);
  const version = spawnSync(nodeBin, ['--version'], { encoding: 'utf8' }).stdout.trim();

  const [redisPort] = await freePorts(1);
  const redisBin = which('redis-server');
  if (!redisBin) throw new Error('redis-server not found (apt-get install -y redis-server)');
  const redis = spawnTracked('redis-server', redisBin, ['--port', String(redisPort), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--maxclients', '10000'],
    { logFile: path.join(work, 'redis.log') });
  if (!(await waitPlainReady(redisPort, { isDead: () => !isAlive(redis) }))) throw new Error('redis-server did not start');

  const measure = async (label, args) => {
    const [port, adminPort] = await freePorts(2);
    const child = spawnTracked(label, nodeBin, args(port, adminPort), { cwd: ROOT, logFile: path.join(work, `${label.replace(/\W/g, '-')}.log`) });
    try {
      if (!(await waitTlsReady(port, ca, { timeoutMs: 20_000, isDead: () => !isAlive(child) }))) throw new Error(`${label} did not start`);
      for (let i = 0; i < 20; i++) await tlsPing(port, ca); // first-use initialisation is not per-connection cost
      const { before, after, ready, error } = await idleRssDelta({ pid: child.pid, port, caFile: cert, n });
      if (!ready?.ok) throw new Error(`${label}: ${error ?? `no idle connection opened (${ready?.error})`}`);
      return { label, kib: (after - before) / ready.ok, connections: ready.ok };
    } finally {
      await stopChild(child);
    }
  };

  const rows = [];
  rows.push(await measure('node:tls server', (port) => [fileURLToPath(import.meta.url), '--serve', String(port), cert, key]));
  const cfg = path.join(work, 'proxy.yaml');
  rows.push(
    await measure('resp-tls-proxy', (port, adminPort) => {
      fs.writeFileSync(cfg, [`listen: { host: 127.0.0.1, port: ${port} }`, `tls: { cert_file: ${JSON.stringify(cert)}, key_file: ${JSON.stringify(key)} }`,
        `backend: { host: 127.0.0.1, port: ${redisPort} }`, `admin: { host: 127.0.0.1, port: ${adminPort} }`, 'log: { level: error }'].join('\n') + '\n');
      return [path.join(ROOT, 'dist', 'cli.js'), '--config', cfg];
    }),
  );
  await stopAll();
  fs.rmSync(work, { recursive: true, force: true });
  console.log(`RSS per idle TLS connection, node ${version}, ${n} connections (handshake + PING each):`);
  for (const r of rows) console.log(`  ${r.label.padEnd(16)} ${r.kib.toFixed(1)} KiB`);
}
