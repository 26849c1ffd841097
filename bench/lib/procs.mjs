// Process bookkeeping for the benchmark: every process the benchmark starts is
// registered here and stopped by PID (never by name) on normal exit, on error
// and on Ctrl-C.
import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';

const live = new Map(); // pid -> { child, name }
let stopping = false; // set on Ctrl-C: nothing new may be started after it

export function isStopping() {
  return stopping;
}

/** Spawn a long-running process whose output goes to logFile. */
export function spawnTracked(name, cmd, args, { logFile, env, cwd } = {}) {
  if (stopping) throw new Error('stopping: not starting anything new');
  const fd = fs.openSync(logFile, 'a');
  let child;
  try {
    child = spawn(cmd, args, { stdio: ['ignore', fd, fd], env: env ?? process.env, cwd });
  } finally {
    fs.closeSync(fd);
  }
  const entry = { child, name, exited: false, code: null, signal: null };
  if (child.pid) live.set(child.pid, entry);
  child.on('exit', (code, signal) => {
    entry.exited = true;
    entry.code = code;
    entry.signal = signal;
    live.delete(child.pid);
  });
  child.on('error', (err) => {
    entry.exited = true;
    entry.error = err;
    if (child.pid) live.delete(child.pid);
  });
  child.entry = entry;
  return child;
}

/** Register a short-lived child started elsewhere (e.g. redis-benchmark) so Ctrl-C stops it too. */
export function track(child, name) {
  if (stopping && child.pid) {
    killQuiet(child.pid, 'SIGKILL');
    return child;
  }
  if (!child.pid) return child;
  live.set(child.pid, { child, name });
  child.on('exit', () => live.delete(child.pid));
  return child;
}

export function isAlive(child) {
  return !!child && child.exitCode === null && child.signalCode === null && !child.entry?.exited;
}

/** PIDs of all descendants of pid (children, grandchildren, ...), read from /proc. */
export function descendants(pid) {
  const parentOf = new Map();
  let entries;
  try {
    entries = fs.readdirSync('/proc');
  } catch {
    return [];
  }
  for (const e of entries) {
    if (!/^\d+$/.test(e)) continue;
    try {
      const stat = fs.readFileSync(`/proc/${e}/stat`, 'utf8');
      // field 4 (ppid) comes after the ")" that closes the command name
      const rest = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      parentOf.set(Number(e), Number(rest[1]));
    } catch {
      /* process went away */
    }
  }
  const out = [];
  const queue = [pid];
  while (queue.length) {
    const p = queue.shift();
    for (const [child, parent] of parentOf) {
      if (parent === p) {
        out.push(child);
        queue.push(child);
      }
    }
  }
  return out;
}

/** VmRSS of one PID in KiB, or null if it is gone. */
export function rssKiB(pid) {
  try {
    const m = /VmRSS:\s+(\d+)\s+kB/.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) : 0;
  } catch {
    return null;
  }
}

let clockTicks = null;
/** Clock ticks per second of /proc/<pid>/stat's CPU times (getconf CLK_TCK; 100 on Linux). */
export function clkTck() {
  if (clockTicks === null) {
    const r = spawnSync('getconf', ['CLK_TCK'], { encoding: 'utf8' });
    clockTicks = Number(r.stdout?.trim()) || 100;
  }
  return clockTicks;
}

/** User plus system CPU time of one PID in clock ticks, or 0 if it is gone. */
function cpuTicks(pid) {
  try {
    // Fields after the parenthesised command name; utime and stime are the 14th and 15th fields.
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return Number(f[11]) + Number(f[12]);
  } catch {
    return 0;
  }
}

/** CPU time (user + system) used so far by pid and its descendants, in microseconds. */
export function treeCpuUs(pid) {
  let ticks = 0;
  for (const p of [pid, ...descendants(pid)]) ticks += cpuTicks(p);
  return (ticks * 1e6) / clkTck();
}

/** Sum of VmRSS over pid and all its descendants, in KiB. */
export function treeRssKiB(pid) {
  let sum = 0;
  for (const p of [pid, ...descendants(pid)]) sum += rssKiB(p) ?? 0;
  return sum;
}

function killQuiet(pid, sig) {
  try {
    process.kill(pid, sig);
    return true;
  } catch {
    return false;
  }
}

/** Stop one child (and the descendants it had when we started stopping it): SIGTERM, then SIGKILL. */
export async function stopChild(child, { graceMs = 3000 } = {}) {
  if (!child?.pid) return;
  const kids = descendants(child.pid);
  if (isAlive(child)) {
    const exited = new Promise((resolve) => child.once('exit', resolve));
    killQuiet(child.pid, 'SIGTERM');
    const t = await Promise.race([exited.then(() => 'exit'), sleep(graceMs).then(() => 'timeout')]);
    if (t === 'timeout') {
      killQuiet(child.pid, 'SIGKILL');
      await Promise.race([exited, sleep(1000)]);
    }
  }
  for (const k of kids) killQuiet(k, 'SIGKILL'); // no-op for those that already exited
  live.delete(child.pid);
}

export async function stopAll() {
  const entries = [...live.values()];
  await Promise.all(entries.map((e) => stopChild(e.child)));
}

/** Synchronous last resort for process 'exit'. */
export function killAllSync() {
  for (const [pid] of live) {
    for (const k of descendants(pid)) killQuiet(k, 'SIGKILL');
    killQuiet(pid, 'SIGKILL');
  }
  live.clear();
}

let handlersInstalled = false;
export function installExitHandlers(onSignal) {
  if (handlersInstalled) return;
  handlersInstalled = true;
  process.on('exit', killAllSync);
  for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP']) {
    process.on(sig, async () => {
      if (stopping) return;
      stopping = true;
      process.stderr.write(`\n${sig}: stopping everything the benchmark started...\n`);
      try {
        await onSignal?.();
      } catch {
        /* ignore */
      }
      await stopAll();
      process.exit(sig === 'SIGINT' ? 130 : 143);
    });
  }
}

export function sleep(ms) {
  return new Promise((r) => setTimeout(r, ms));
}

/** Run a command to completion with a time limit; returns { code, stdout, stderr, timedOut }. */
export function run(cmd, args, { timeoutMs = 60000, input, env } = {}) {
  return new Promise((resolve) => {
    let child;
    try {
      child = spawn(cmd, args, { stdio: ['pipe', 'pipe', 'pipe'], env: env ?? process.env });
    } catch (err) {
      resolve({ code: -1, stdout: '', stderr: String(err), timedOut: false });
      return;
    }
    track(child, cmd);
    let stdout = '';
    let stderr = '';
    let timedOut = false;
    child.stdout.on('data', (d) => (stdout += d));
    child.stderr.on('data', (d) => (stderr += d));
    const timer = setTimeout(() => {
      timedOut = true;
      killQuiet(child.pid, 'SIGKILL');
    }, timeoutMs);
    child.on('error', (err) => {
      clearTimeout(timer);
      resolve({ code: -1, stdout, stderr: stderr + String(err), timedOut });
    });
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      resolve({ code: code ?? (signal ? -1 : 0), signal, stdout, stderr, timedOut });
    });
    if (input != null) child.stdin.end(input);
    else child.stdin.end();
  });
}

export function which(cmd) {
  const r = spawnSync('sh', ['-c', `command -v ${cmd}`], { encoding: 'utf8' });
  return r.status === 0 ? r.stdout.trim() : null;
}

export function tail(file, lines = 15) {
  try {
    const t = fs.readFileSync(file, 'utf8').trimEnd().split('\n');
    return t.slice(-lines).join('\n');
  } catch {
    return '';
  }
}
