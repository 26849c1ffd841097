#!/usr/bin/env node
// Helper for bench/run.mjs: opens N TLS connections to 127.0.0.1:PORT, each completes its
// handshake, sends PING and reads +PONG, then stays open and idle. Prints one JSON line
// ("READY {...}") when all are up (or the attempt failed), then holds them until stdin closes
// or a line arrives on stdin, and exits. Bounded: gives up after --timeout-ms.
//
//   node bench/idle-conns.mjs --port 12345 --ca cert.pem [--n 1000] [--concurrency 64]
import fs from 'node:fs';
import tls from 'node:tls';

const args = Object.fromEntries(
  process.argv.slice(2).reduce((acc, a, i, all) => {
    if (a.startsWith('--')) acc.push([a.slice(2), all[i + 1]]);
    return acc;
  }, []),
);
const port = Number(args.port);
const n = Number(args.n ?? 1000);
const concurrency = Number(args.concurrency ?? 64);
const timeoutMs = Number(args['timeout-ms'] ?? 60000);
const ca = fs.readFileSync(args.ca);
const PING = Buffer.from('*1\r\n$4\r\nPING\r\n');

const sockets = [];
let failed = 0;
let firstError = null;
let protocol = null;
let cipher = null;

function openOne() {
  return new Promise((resolve) => {
    let done = false;
    let buf = '';
    const sock = tls.connect({ host: '127.0.0.1', port, ca, servername: 'localhost' }, () => {
      if (!protocol) {
        protocol = sock.getProtocol();
        cipher = sock.getCipher()?.standardName ?? sock.getCipher()?.name;
      }
      sock.write(PING);
    });
    const finish = (ok, err) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      if (ok) {
        sock.removeAllListeners('data');
        sock.on('data', () => {}); // keep draining; nothing expected
        sockets.push(sock);
      } else {
        failed++;
        firstError ??= err ?? 'no +PONG';
        sock.destroy();
      }
      resolve();
    };
    sock.setEncoding('latin1');
    sock.on('data', (d) => {
      buf += d;
      if (buf.includes('+PONG\r\n')) finish(true);
    });
    sock.on('error', (e) => finish(false, e.code ?? e.message));
    sock.on('close', () => {
      if (!done) finish(false, 'closed before +PONG');
    });
    const timer = setTimeout(() => finish(false, 'timeout'), 15000);
  });
}

const started = Date.now();
const overall = setTimeout(() => {
  process.stdout.write(`READY ${JSON.stringify({ ok: sockets.length, failed: n - sockets.length, error: 'overall timeout' })}\n`);
  process.exit(2);
}, timeoutMs);

let next = 0;
async function worker() {
  while (next < n) {
    next++;
    await openOne();
  }
}
await Promise.all(Array.from({ length: Math.min(concurrency, n) }, worker));
clearTimeout(overall);
process.stdout.write(
  `READY ${JSON.stringify({ ok: sockets.length, failed, error: firstError, ms: Date.now() - started, protocol, cipher })}\n`,
);

// Hold until told to go (a line on stdin, or stdin closing), but never longer than timeoutMs.
const holdLimit = setTimeout(() => process.exit(3), timeoutMs);
const release = () => {
  clearTimeout(holdLimit);
  for (const s of sockets) s.destroy();
  process.exit(0);
};
process.stdin.on('data', release);
process.stdin.on('end', release);
process.stdin.resume();
