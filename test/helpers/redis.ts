// A real redis-server on a free port, for one test file. No mocks of the backend.
import { spawn } from 'node:child_process';
import { freePort, killAndWait, makeTempDir, run, trackChild, waitExit, type ExitInfo } from './common.js';

export const REDIS_SERVER = process.env.REDIS_SERVER_BIN ?? '/usr/bin/redis-server';
export const REDIS_CLI = process.env.REDIS_CLI_BIN ?? '/usr/bin/redis-cli';

export interface RedisServer {
  port: number;
  pid: number;
  /** The password given with `password`, if any; cli() authenticates with it. */
  password: string | undefined;
  /** Kills this redis-server by its own pid (SIGTERM, then SIGKILL after 5 s) and waits for exit. */
  stop(): Promise<ExitInfo>;
  /** Runs `redis-cli -p PORT ...args` directly against the backend; resolves stdout (trailing newline removed). Rejects on a non-zero exit. */
  cli(...args: string[]): Promise<string>;
  /** Server log so far (useful in failure messages). */
  log(): string;
}

export interface StartRedisOptions {
  /** Extra redis-server arguments, e.g. ['--maxmemory', '10mb']. */
  args?: string[];
  /** Shorthand for `--requirepass PASSWORD`; cli() then authenticates with it. */
  password?: string;
  /** How long to wait for PING (default 10 s). */
  startTimeoutMs?: number;
}

/**
 * Spawns `redis-server` bound to 127.0.0.1 on a free port with persistence off, and waits until
 * it answers PING (PONG, or NOAUTH when a password is set). Retries on a port race.
 */
export async function startRedis(opts: StartRedisOptions = {}): Promise<RedisServer> {
  let lastErr: unknown;
  for (let attempt = 0; attempt < 5; attempt++) {
    try {
      return await startOnce(opts);
    } catch (e) {
      lastErr = e;
      if (!String(e).includes('Address already in use')) break;
    }
  }
  throw lastErr;
}

async function startOnce(opts: StartRedisOptions): Promise<RedisServer> {
  const port = await freePort();
  const dir = makeTempDir('resp-tls-proxy-redis-');
  const extra = [...(opts.args ?? [])];
  // A password given in args (--requirepass X) also lets cli() authenticate.
  let password = opts.password;
  const i = extra.indexOf('--requirepass');
  if (password === undefined && i >= 0) password = extra[i + 1];
  if (opts.password !== undefined) extra.push('--requirepass', opts.password);
  const args = [
    '--port', String(port),
    '--bind', '127.0.0.1',
    '--save', '',
    '--appendonly', 'no',
    '--protected-mode', 'no',
    '--daemonize', 'no',
    '--dir', dir,
    '--logfile', '',
    ...extra,
  ];
  const child = spawn(REDIS_SERVER, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  trackChild(child);
  let log = '';
  child.stdout.on('data', (d: Buffer) => { log += d.toString('utf8'); });
  child.stderr.on('data', (d: Buffer) => { log += d.toString('utf8'); });
  const spawnError = new Promise<never>((_, reject) => child.once('error', reject));
  spawnError.catch(() => {});
  if (child.pid === undefined) await spawnError;
  const pid = child.pid as number;
  const exited = waitExit(child);

  const authArgs = password !== undefined ? ['-a', password, '--no-auth-warning'] : [];
  const cli = async (...cmd: string[]): Promise<string> => {
    const r = await run(REDIS_CLI, ['-h', '127.0.0.1', '-p', String(port), ...authArgs, ...cmd], { timeoutMs: 30_000 });
    if (r.code !== 0) throw new Error(`redis-cli ${cmd.join(' ').slice(0, 200)} exited ${r.code}: ${r.stderr}${r.stdout}`);
    return r.stdout.replace(/\n$/, '');
  };

  const deadline = Date.now() + (opts.startTimeoutMs ?? 10_000);
  for (;;) {
    if (child.exitCode !== null || child.signalCode !== null) {
      throw new Error(`redis-server on port ${port} exited (${child.exitCode ?? child.signalCode}) before answering PING:\n${log}`);
    }
    const r = await run(REDIS_CLI, ['-h', '127.0.0.1', '-p', String(port), 'PING'], { timeoutMs: 2_000 });
    if (r.stdout.startsWith('PONG') || r.stdout.startsWith('NOAUTH')) break;
    if (Date.now() > deadline) {
      await killAndWait(child, 'SIGKILL');
      throw new Error(`redis-server on port ${port} did not answer PING within the deadline:\n${log}\n${r.stdout}${r.stderr}`);
    }
    await new Promise((resolve) => setTimeout(resolve, 20));
  }

  return {
    port,
    pid,
    password,
    stop: async () => {
      const info = await killAndWait(child, 'SIGTERM', 5_000);
      await exited;
      return info;
    },
    cli,
    log: () => log,
  };
}
