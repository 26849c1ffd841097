// The real `redis-cli --tls` against the proxy.
import { run, type RunResult } from './common.js';
import { REDIS_CLI } from './redis.js';

/**
 * Runs `redis-cli --tls --cacert CA -h 127.0.0.1 -p PORT ...args` (or `--insecure` when caFile is null).
 * Output is not a TTY, so replies print raw (an error as `ERR …`, no `(error)` prefix).
 */
export function redisCliTls(port: number, caFile: string | null, ...args: string[]): Promise<RunResult> {
  const tlsArgs = caFile === null ? ['--tls', '--insecure'] : ['--tls', '--cacert', caFile];
  return run(REDIS_CLI, [...tlsArgs, '--sni', 'localhost', '-h', '127.0.0.1', '-p', String(port), ...args], { timeoutMs: 30_000 });
}

/** Same, with the request fed on stdin (`redis-cli … < file`), e.g. a pipeline with `--pipe`. */
export function redisCliTlsStdin(port: number, caFile: string | null, input: Buffer | string, ...args: string[]): Promise<RunResult> {
  const tlsArgs = caFile === null ? ['--tls', '--insecure'] : ['--tls', '--cacert', caFile];
  return run(REDIS_CLI, [...tlsArgs, '--sni', 'localhost', '-h', '127.0.0.1', '-p', String(port), ...args], { timeoutMs: 30_000, input });
}
