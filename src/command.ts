// Command line: argument parsing, --check, stats, exit codes (cli.ts loads it). Everything else
// lives in main.ts.
//
// Exit status: 0 ok; 1 runtime failure (proxy crashed, admin endpoint unreachable);
// 2 usage error or configuration problems. Problems and usage errors go to stderr, one per line.
import cluster from 'node:cluster';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { ensureDevCertificate } from './config/devcert.js';
import { releaseEarlyStops } from './early-signals.js';
import { ListenError } from './config/error.js';
import { ConfigError, WORKER_CONFIG_ENV, checkConfigFile, loadConfigFile } from './config/load.js';
import { configSchema, type Config } from './config/schema.js';
import { createLogger } from './observability/logger.js';
import { packageVersion } from './version.js';

const CONFIG_ENV = 'RESP_TLS_PROXY_CONFIG';
const ADMIN_DEFAULTS = configSchema.shape.admin.parse(undefined);
const DEFAULT_ADMIN = `http://${ADMIN_DEFAULTS.host}:${ADMIN_DEFAULTS.port}`;

const USAGE = `Usage:
  resp-tls-proxy --config FILE            run the proxy (FILE may come from $${CONFIG_ENV})
  resp-tls-proxy --config FILE --check    validate the config and its certificate files, then exit
  resp-tls-proxy stats [--admin URL]      client closes by reason and mode, from a running
                                          proxy's admin /metrics (default ${DEFAULT_ADMIN})
  resp-tls-proxy --version | --help

Exit status: 0 ok, 1 runtime failure, 2 usage error or configuration problems.
`;

class UsageError extends Error {
  readonly code = 'ERR_USAGE';
}

function printProblems(problems: readonly string[]): void {
  process.stderr.write(problems.map((p) => `${p}\n`).join(''));
}

async function stats(admin: string): Promise<number> {
  const { AdminUnreachableError, fetchCloseCounts, formatCloseTable, metricsUrl } = await import('./admin/stats.js');
  try {
    metricsUrl(admin);
  } catch {
    throw new UsageError(`--admin: not an http(s) URL: ${admin}`);
  }
  try {
    process.stdout.write(formatCloseTable(await fetchCloseCounts(admin)));
    return 0;
  } catch (err) {
    if (!(err instanceof AdminUnreachableError)) throw err;
    process.stderr.write(`resp-tls-proxy stats: ${err.message}\n`);
    return 1;
  }
}

async function run(configFile: string): Promise<number> {
  let config: Config;
  const inherited = cluster.isWorker ? process.env[WORKER_CONFIG_ENV] : undefined;
  try {
    config = inherited !== undefined ? (JSON.parse(inherited) as Config) : loadConfigFile(configFile);
  } catch (err) {
    if (!(err instanceof ConfigError)) throw err;
    printProblems(err.problems);
    return 2;
  }
  // A logger only if there is something to say; main.ts makes its own.
  await ensureDevCertificate(config, { warn: (obj, msg) => createLogger(config.log.level).warn(obj, msg) });
  // Loaded only here, so --check, --version and stats do not pay for the whole proxy.
  const { runProxy } = await import('./main.js');
  await runProxy(config, path.resolve(configFile));
  return 0;
}

async function main(argv: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args: argv,
    options: {
      config: { type: 'string', short: 'c' },
      check: { type: 'boolean' },
      admin: { type: 'string' },
      version: { type: 'boolean', short: 'v' },
      help: { type: 'boolean', short: 'h' },
    },
    allowPositionals: true,
    strict: true,
  });

  // Only the proxy shuts down in order: any other command stops on SIGTERM/SIGINT as by default.
  if (values.help || values.version || values.check || positionals.length > 0) releaseEarlyStops();

  if (values.help) {
    process.stdout.write(USAGE);
    return 0;
  }
  if (values.version) {
    process.stdout.write(`${packageVersion()}\n`);
    return 0;
  }

  const [command, ...rest] = positionals;
  if (command === 'stats') {
    if (rest.length > 0) throw new UsageError(`unexpected argument: ${rest[0]}`);
    if (values.config !== undefined || values.check) throw new UsageError('stats takes only --admin');
    return stats(values.admin ?? DEFAULT_ADMIN);
  }
  if (command !== undefined) throw new UsageError(`unknown command: ${command}`);
  if (values.admin !== undefined) throw new UsageError('--admin belongs to the stats command');

  const configFile = values.config ?? process.env[CONFIG_ENV];
  if (!configFile) throw new UsageError(`no configuration file: pass --config FILE or set ${CONFIG_ENV}`);

  if (values.check) {
    const problems = await checkConfigFile(configFile);
    if (problems.length > 0) {
      printProblems(problems);
      return 2;
    }
    process.stdout.write('config ok\n');
    return 0;
  }
  return run(configFile);
}

try {
  process.exitCode = await main(process.argv.slice(2));
  // A worker that could not start: its IPC channel to the primary would keep it alive, idle.
  if (cluster.isWorker && process.exitCode !== 0) process.exit();
} catch (err) {
  const code = (err as NodeJS.ErrnoException).code;
  if (err instanceof UsageError || (typeof code === 'string' && code.startsWith('ERR_PARSE_ARGS_'))) {
    process.stderr.write(`resp-tls-proxy: ${(err as Error).message}\n\n${USAGE}`);
    process.exitCode = 2;
  } else if (err instanceof ListenError) {
    process.stderr.write(`resp-tls-proxy: ${err.message}\n`);
    process.exit(1); // as below: whatever did start must not keep the process alive
  } else if (err instanceof ConfigError) {
    // A certificate, key or CA file that does not load (2 = configuration problems, as --check).
    printProblems(err.problems);
    process.exit(2);
  } else {
    process.stderr.write(`resp-tls-proxy: fatal: ${(err as Error)?.stack ?? String(err)}\n`);
    process.exit(1); // not just exitCode: a listener that did start (TLS up, admin port taken) must not keep the process alive
  }
}
