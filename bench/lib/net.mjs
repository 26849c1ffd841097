// Loopback-only network helpers for the benchmark.
import net from 'node:net';
import tls from 'node:tls';

/** n distinct free TCP ports on 127.0.0.1 (held open together so they differ, then released). */
export async function freePorts(n) {
  const servers = [];
  try {
    for (let i = 0; i < n; i++) {
      const s = net.createServer();
      await new Promise((resolve, reject) => {
        s.once('error', reject);
        s.listen(0, '127.0.0.1', resolve);
      });
      servers.push(s);
    }
    return servers.map((s) => s.address().port);
  } finally {
    await Promise.all(servers.map((s) => new Promise((r) => s.close(r))));
  }
}

const PING = Buffer.from('*1\r\n$4\r\nPING\r\n');

/** One TLS connection: handshake, PING, expect +PONG. Resolves true/false, never throws. */
export function tlsPing(port, ca, timeoutMs = 2000) {
  return new Promise((resolve) => {
    let done = false;
    let buf = '';
    const finish = (ok) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      sock.destroy();
      resolve(ok);
    };
    const sock = tls.connect({ host: '127.0.0.1', port, ca, servername: 'localhost' }, () => sock.write(PING));
    sock.setEncoding('latin1');
    sock.on('data', (d) => {
      buf += d;
      if (buf.includes('+PONG\r\n')) finish(true);
      else if (buf.length > 1024) finish(false);
    });
    sock.on('error', () => finish(false));
    sock.on('close', () => finish(false));
    const timer = setTimeout(() => finish(false), timeoutMs);
  });
}

/** Poll tlsPing until it succeeds, the deadline passes, or isDead() says the server exited. */
export async function waitTlsReady(port, ca, { timeoutMs = 15000, isDead = () => false } = {}) {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (isDead()) return false;
    if (await tlsPing(port, ca, 1500)) return true;
    await new Promise((r) => setTimeout(r, 150));
  }
  return false;
}

/** Wait until a plaintext port answers PING with +PONG. */
export async function waitPlainReady(port, { timeoutMs = 10000, isDead = () => false } = {}) {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (isDead()) return false;
    try {
      const r = await plainCommands(port, [['PING']], 1000);
      if (r.startsWith('+PONG')) return true;
    } catch {
      /* not yet */
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  return false;
}

export function encodeCommand(args) {
  const parts = [Buffer.from(`*${args.length}\r\n`)];
  for (const a of args) {
    const b = Buffer.isBuffer(a) ? a : Buffer.from(String(a));
    parts.push(Buffer.from(`$${b.length}\r\n`), b, Buffer.from('\r\n'));
  }
  return Buffer.concat(parts);
}

/**
 * Send commands over plaintext to redis, pipelined; resolve with the raw reply text once the
 * expected number of top-level replies has arrived. Only handles simple, integer, error and
 * bulk replies (enough for SET/EXISTS/STRLEN/PING/DBSIZE/INFO).
 */
export function plainCommands(port, commands, timeoutMs = 30000) {
  return new Promise((resolve, reject) => {
    const sock = net.connect({ host: '127.0.0.1', port });
    const chunks = [];
    let total = 0;
    const timer = setTimeout(() => {
      sock.destroy();
      reject(new Error(`redis at ${port}: timeout`));
    }, timeoutMs);
    sock.on('connect', () => {
      const bufs = commands.map(encodeCommand);
      sock.end(Buffer.concat(bufs));
    });
    sock.on('data', (d) => {
      chunks.push(d);
      total += d.length;
      const all = Buffer.concat(chunks, total);
      if (countReplies(all) >= commands.length) {
        clearTimeout(timer);
        sock.destroy();
        resolve(all.toString('latin1'));
      }
    });
    sock.on('error', (e) => {
      clearTimeout(timer);
      reject(e);
    });
    sock.on('close', () => {
      clearTimeout(timer);
      reject(new Error(`redis at ${port}: closed early`));
    });
  });
}

function countReplies(buf) {
  let i = 0;
  let n = 0;
  while (i < buf.length) {
    const eol = buf.indexOf('\r\n', i);
    if (eol < 0) return n;
    const type = buf[i];
    if (type === 0x24 /* $ */) {
      const len = Number(buf.toString('latin1', i + 1, eol));
      if (len < 0) i = eol + 2;
      else {
        if (eol + 2 + len + 2 > buf.length) return n;
        i = eol + 2 + len + 2;
      }
    } else {
      i = eol + 2;
    }
    n++;
  }
  return n;
}

/** openssl arguments for the run's certificate: ECDSA P-256, self-signed, for localhost and 127.0.0.1. */
export function certArgs(keyFile, certFile) {
  return ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-keyout', keyFile, '-out', certFile,
    '-days', '2', '-subj', '/CN=localhost', '-addext', 'subjectAltName=DNS:localhost,IP:127.0.0.1'];
}
