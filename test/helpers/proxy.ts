// Starts the real proxy (`node dist/cli.js --config FILE`) with a YAML config in a temp dir.
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { request } from 'undici';
import YAML from 'yaml';
import { sharedCerts, type TestCerts } from './certs.js';
import { killAndWait, makeTempDir, repoRoot, trackChild, waitExit, type ExitInfo } from './common.js';

/** The proxy's entry point; $RESP_TLS_PROXY_CLI overrides it (e.g. to run the tests against another build). */
export const PROXY_CLI = process.env.RESP_TLS_PROXY_CLI ?? path.join(repoRoot, 'dist', 'cli.js');

export type LogRecord = Record<string, unknown>;

export interface Proxy {
  /** TLS port (from the `listening` log line). */
  port: number;
  /** Admin HTTP port (from the `listening` log line). */
  adminPort: number;
  pid: number;
  proc: ChildProcess;
  /** The config file that was written. */
  configFile: string;
  /** The shared test certificate set (the proxy serves its server certificate unless `tls.cert_file` was given). */
  certs: TestCerts;
  /** Sends SIGTERM (or `signal`) to the proxy's own pid and waits for exit (SIGKILL after `timeoutMs`, default 15 s). */
  stop(signal?: NodeJS.Signals, timeoutMs?: number): Promise<ExitInfo>;
  /** Every JSON log line so far, parsed (lines that are not JSON appear as `{ raw }`). */
  logs(): LogRecord[];
  stderr(): string;
  exited: Promise<ExitInfo>;
  /** GET /metrics on the admin port; resolves the Prometheus text. */
  metrics(): Promise<string>;
}

type Config = Record<string, unknown>;

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/**
 * Writes `config` as YAML and starts the proxy. `listen` and `admin` default to 127.0.0.1 port 0,
 * `tls.cert_file`/`key_file` default to the shared test server certificate, `shutdown.grace_ms` to 1000 (so stop() is quick).
 * Resolves once the proxy logs `"msg":"listening"` with numeric `port` and `admin_port`;
 * rejects with the captured output if it exits first or 10 s pass.
 */
export async function startProxy(config: Config = {}, opts: { startTimeoutMs?: number; env?: NodeJS.ProcessEnv; openFileLimit?: number } = {}): Promise<Proxy> {
  if (!existsSync(PROXY_CLI)) throw new Error(`${PROXY_CLI} does not exist: run \`npx tsc -p tsconfig.json\` first`);
  const certs = await sharedCerts();
  const cfg: Config = { ...config };
  cfg.listen = { host: '127.0.0.1', port: 0, ...(isObject(config.listen) ? config.listen : {}) };
  cfg.admin = { host: '127.0.0.1', port: 0, ...(isObject(config.admin) ? config.admin : {}) };
  cfg.tls = { cert_file: certs.certFile, key_file: certs.keyFile, ...(isObject(config.tls) ? config.tls : {}) };
  cfg.shutdown = { grace_ms: 1000, ...(isObject(config.shutdown) ? config.shutdown : {}) };

  const dir = makeTempDir('resp-tls-proxy-config-');
  const configFile = path.join(dir, 'proxy.yaml');
  writeFileSync(configFile, YAML.stringify(cfg));

  // openFileLimit: through a shell's ulimit -n (soft and hard), which the proxy inherits.
  const argv = [process.execPath, PROXY_CLI, '--config', configFile];
  const [command, ...args] = opts.openFileLimit === undefined ? argv : ['/bin/sh', '-c', `ulimit -n ${opts.openFileLimit} && exec "$@"`, 'sh', ...argv];
  const child = spawn(command!, args, {
    cwd: repoRoot,
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, ...(opts.env ?? {}) },
  });
  trackChild(child);
  const exited = waitExit(child);
  const records: LogRecord[] = [];
  let stdoutRest = '';
  let stderr = '';
  let onLine: ((r: LogRecord) => void) | undefined;
  child.stdout.setEncoding('utf8');
  child.stdout.on('data', (d: string) => {
    stdoutRest += d;
    let i: number;
    while ((i = stdoutRest.indexOf('\n')) >= 0) {
      const line = stdoutRest.slice(0, i);
      stdoutRest = stdoutRest.slice(i + 1);
      if (line.trim() === '') continue;
      let rec: LogRecord;
      try {
        const v: unknown = JSON.parse(line);
        rec = isObject(v) ? v : { raw: line };
      } catch {
        rec = { raw: line };
      }
      records.push(rec);
      onLine?.(rec);
    }
  });
  child.stderr.setEncoding('utf8');
  child.stderr.on('data', (d: string) => { stderr += d; });

  const dump = (): string => `config:\n${YAML.stringify(cfg)}\nstdout:\n${records.map((r) => JSON.stringify(r)).join('\n')}${stdoutRest}\nstderr:\n${stderr}`;
  const startTimeoutMs = opts.startTimeoutMs ?? 10_000;
  const ports = await new Promise<{ port: number; adminPort: number }>((resolve, reject) => {
    let timer: NodeJS.Timeout | undefined;
    const check = (r: LogRecord): boolean => {
      if (r.msg === 'listening' && typeof r.port === 'number' && typeof r.admin_port === 'number') {
        clearTimeout(timer);
        onLine = undefined;
        resolve({ port: r.port, adminPort: r.admin_port });
        return true;
      }
      return false;
    };
    if (records.some(check)) return;
    onLine = check;
    timer = setTimeout(() => {
      onLine = undefined;
      void killAndWait(child, 'SIGKILL').then(() => reject(new Error(`proxy did not log "listening" within ${startTimeoutMs} ms\n${dump()}`)));
    }, startTimeoutMs);
    void exited.then((e) => {
      clearTimeout(timer);
      // give the pipes a moment to deliver the last output
      setTimeout(() => reject(new Error(`proxy exited (code ${e.code}, signal ${e.signal}) before listening\n${dump()}`)), 50);
    });
  });

  return {
    port: ports.port,
    adminPort: ports.adminPort,
    pid: child.pid as number,
    proc: child,
    configFile,
    certs,
    stop: (signal: NodeJS.Signals = 'SIGTERM', timeoutMs = 15_000) => killAndWait(child, signal, timeoutMs),
    logs: () => records.slice(),
    stderr: () => stderr,
    exited,
    metrics: async () => {
      const res = await request(`http://127.0.0.1:${ports.adminPort}/metrics`, { headersTimeout: 5_000, bodyTimeout: 5_000 });
      const text = await res.body.text();
      if (res.statusCode !== 200) throw new Error(`/metrics answered ${res.statusCode}: ${text}`);
      return text;
    },
  };
}

export interface MetricSample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

/** Parses Prometheus text exposition into samples (comments skipped). */
export function parseMetrics(text: string): MetricSample[] {
  const out: MetricSample[] = [];
  for (const raw of text.split('\n')) {
    const line = raw.trim();
    if (line === '' || line.startsWith('#')) continue;
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})?\s+(\S+)(\s+\S+)?$/.exec(line);
    if (!m) continue;
    const labels: Record<string, string> = {};
    const body = m[3] ?? '';
    const re = /([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"\s*,?\s*/g;
    let lm: RegExpExecArray | null;
    while ((lm = re.exec(body)) !== null) {
      labels[lm[1] as string] = (lm[2] as string).replace(/\\n/g, '\n').replace(/\\"/g, '"').replace(/\\\\/g, '\\');
    }
    const v = m[4] as string;
    const value = v === '+Inf' ? Infinity : v === '-Inf' ? -Infinity : Number(v);
    out.push({ name: m[1] as string, labels, value });
  }
  return out;
}

/** Every sample named `name` whose labels include all of `labels`. */
export function metricSamples(text: string, name: string, labels: Record<string, string> = {}): MetricSample[] {
  return parseMetrics(text).filter((s) => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v));
}

/**
 * The value of the sample named `name` whose label set is exactly `labels`; 0 when absent
 * (a counter that was never incremented may be absent or 0 — both mean "none").
 */
export function metricValue(text: string, name: string, labels: Record<string, string> = {}): number {
  const want = Object.keys(labels).length;
  const s = parseMetrics(text).find((x) => x.name === name && Object.keys(x.labels).length === want
    && Object.entries(labels).every(([k, v]) => x.labels[k] === v));
  return s?.value ?? 0;
}

/** Log records of closed connections (anything carrying a `reason` and a `mode`). */
export function closeRecords(logs: LogRecord[]): LogRecord[] {
  return logs.filter((r) => typeof r.reason === 'string' && typeof r.mode === 'string');
}

/** Polls /metrics until the sample `name{labels}` satisfies `ok` (default: ≥ 1); resolves the last text. */
export async function waitForMetric(proxy: Proxy, name: string, labels: Record<string, string>, ok: (v: number) => boolean = (v) => v >= 1, timeoutMs = 5_000): Promise<string> {
  const deadline = Date.now() + timeoutMs;
  let text = '';
  for (;;) {
    text = await proxy.metrics();
    if (ok(metricValue(text, name, labels))) return text;
    if (Date.now() > deadline) return text;
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}
