// Shared plumbing for the test helpers: repository root, free ports, temp dirs,
// running a child process to completion with a time bound, and a registry of the
// processes this test process started so none outlives it.
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

/** The repository root: the nearest folder above this file whose package.json is ours. */
export const repoRoot: string = findRepoRoot(path.dirname(fileURLToPath(import.meta.url)));

function findRepoRoot(start: string): string {
  let dir = start;
  for (;;) {
    const pkg = path.join(dir, 'package.json');
    if (existsSync(pkg)) {
      try {
        if ((JSON.parse(readFileSync(pkg, 'utf8')) as { name?: string }).name === 'resp-tls-proxy') return dir;
      } catch {
        // not ours; keep walking up
      }
    }
    const parent = path.dirname(dir);
    if (parent === dir) throw new Error(`cannot find the resp-tls-proxy repository above ${start}`);
    dir = parent;
  }
}

// Ports freePort has handed out in this process: a port it picked is free only until its caller
// binds it, and a second pick in between must not return it (CI once gave redis the admin port
// picked for a proxy not started yet).
const handedOut = new Set<number>();

/**
 * The ports the kernel hands out itself (listen(0), a connect's source port): freePort picks
 * below them, so no process of the run binding port 0 can take a port picked and not yet bound.
 */
function ephemeralLow(): number {
  try {
    return Number(readFileSync('/proc/sys/net/ipv4/ip_local_port_range', 'utf8').trim().split(/\s+/)[0]) || 0;
  } catch {
    return 0;
  }
}
const PICK_FROM = 10_000;

/**
 * A port that is free now and that this process has not handed out before: below the kernel's
 * ephemeral range when there is room (checked by binding it), else one the kernel offers for
 * port 0. Nothing else of the test run binds explicit ports (test files run one at a time).
 */
export async function freePort(): Promise<number> {
  const low = ephemeralLow();
  for (let attempt = 0; attempt < 200; attempt++) {
    const wanted = low - PICK_FROM >= 2_000 ? PICK_FROM + Math.floor(Math.random() * (low - PICK_FROM)) : 0;
    if (wanted !== 0 && handedOut.has(wanted)) continue;
    const port = await bindAndRelease(wanted).catch((e: NodeJS.ErrnoException) => {
      if (e.code === 'EADDRINUSE' || e.code === 'EACCES') return null;
      throw e;
    });
    if (port === null || handedOut.has(port)) continue;
    handedOut.add(port);
    return port;
  }
  throw new Error('freePort: no free port found in 200 tries');
}

/** Binds 127.0.0.1:port (0: the kernel picks), then closes: the port bound. */
function bindAndRelease(port: number): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.unref();
    srv.on('error', reject);
    srv.listen(port, '127.0.0.1', () => {
      const addr = srv.address();
      if (addr === null || typeof addr === 'string') {
        srv.close();
        reject(new Error('no port from listen'));
        return;
      }
      const bound = addr.port;
      srv.close(() => resolve(bound));
    });
  });
}

const tempDirs: string[] = [];

/** A fresh temp dir, removed when this process exits. */
export function makeTempDir(prefix = 'resp-tls-proxy-test-'): string {
  const dir = mkdtempSync(path.join(os.tmpdir(), prefix));
  tempDirs.push(dir);
  return dir;
}

// Children this process started and that may still run. On exit, they are killed by
// their own pid (never by name).
const liveChildren = new Set<ChildProcess>();

export function trackChild(child: ChildProcess): void {
  liveChildren.add(child);
  child.once('exit', () => liveChildren.delete(child));
}

process.once('exit', () => {
  for (const child of liveChildren) {
    if (child.exitCode === null && child.signalCode === null && child.pid !== undefined) {
      try {
        process.kill(child.pid, 'SIGKILL');
      } catch {
        // already gone
      }
    }
  }
  for (const dir of tempDirs) {
    try {
      rmSync(dir, { recursive: true, force: true });
    } catch {
      // best effort
    }
  }
});

export interface ExitInfo {
  code: number | null;
  signal: NodeJS.Signals | null;
}

/** Resolves when the child exits (immediately if it already has). */
export function waitExit(child: ChildProcess): Promise<ExitInfo> {
  if (child.exitCode !== null || child.signalCode !== null) {
    return Promise.resolve({ code: child.exitCode, signal: child.signalCode });
  }
  return new Promise((resolve) => {
    child.once('exit', (code, signal) => resolve({ code, signal }));
  });
}

/** Sends `signal` to the child's own pid, waits up to `timeoutMs`, then SIGKILLs it. */
export async function killAndWait(child: ChildProcess, signal: NodeJS.Signals = 'SIGTERM', timeoutMs = 10_000): Promise<ExitInfo> {
  const exited = waitExit(child);
  if (child.exitCode !== null || child.signalCode !== null) return exited;
  try {
    if (child.pid !== undefined) process.kill(child.pid, signal);
  } catch {
    // already gone
  }
  let timer: NodeJS.Timeout | undefined;
  const timedOut = new Promise<'timeout'>((resolve) => {
    timer = setTimeout(() => resolve('timeout'), timeoutMs);
  });
  const first = await Promise.race([exited, timedOut]);
  clearTimeout(timer);
  if (first === 'timeout') {
    try {
      if (child.pid !== undefined) process.kill(child.pid, 'SIGKILL');
    } catch {
      // already gone
    }
    return exited;
  }
  return first;
}

export interface RunResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
  stdoutBuf: Buffer;
  timedOut: boolean;
}

/** Runs a command to completion (no shell), bounded by `timeoutMs` (then SIGKILL). */
export function run(cmd: string, args: string[], opts: { timeoutMs?: number; input?: Buffer | string; cwd?: string } = {}): Promise<RunResult> {
  const timeoutMs = opts.timeoutMs ?? 30_000;
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { stdio: ['pipe', 'pipe', 'pipe'], cwd: opts.cwd ?? repoRoot });
    trackChild(child);
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    let timedOut = false;
    child.stdout.on('data', (d: Buffer) => out.push(d));
    child.stderr.on('data', (d: Buffer) => err.push(d));
    child.on('error', reject);
    const timer = setTimeout(() => {
      timedOut = true;
      if (child.pid !== undefined) {
        try {
          process.kill(child.pid, 'SIGKILL');
        } catch {
          // gone
        }
      }
    }, timeoutMs);
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      const stdoutBuf = Buffer.concat(out);
      resolve({ code, signal, stdout: stdoutBuf.toString('utf8'), stderr: Buffer.concat(err).toString('utf8'), stdoutBuf, timedOut });
    });
    child.stdin.on('error', () => {
      // the child may exit without reading its input
    });
    if (opts.input !== undefined) child.stdin.end(opts.input);
    else child.stdin.end();
  });
}

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** Polls `fn` until it returns a truthy value or `timeoutMs` passes (then throws with `what`). */
export async function waitFor<T>(what: string, fn: () => Promise<T | undefined | null | false> | T | undefined | null | false, timeoutMs = 5_000, intervalMs = 25): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let lastErr: unknown;
  for (;;) {
    try {
      const v = await fn();
      if (v) return v;
    } catch (e) {
      lastErr = e;
    }
    if (Date.now() > deadline) {
      throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${lastErr ? `: ${String(lastErr)}` : ''}`);
    }
    await sleep(intervalMs);
  }
}
