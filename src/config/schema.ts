// The one definition of the configuration file. Types come from z.infer, config/schema.json is
// generated from it (scripts/gen-schema.mjs), and config/default.yaml spells out its defaults.
// Keys are snake_case, exactly as written in YAML. Every object is strict: an unknown key is an
// error, never silently ignored.
import * as z from 'zod';
import { usableCpus } from './cpus.js';

/**
 * A host name of letters, digits, hyphens and underscores (Compose service names have them, and
 * clients send them) in labels of 1 to 63, or "*." and one: what tls.sni matches a client's
 * server name against. No trailing dot: SNI never carries one (RFC 6066). Spelled without the
 * `i` flag so that config/schema.json's pattern accepts the same names.
 */
const SERVERNAME = /^(\*\.)?([A-Za-z0-9_]([A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?)(\.[A-Za-z0-9_]([A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?)*$/;

/** More processes than this is a typo (each costs tens of MB), not a plan: `workers: 0` follows the machine. */
const MAX_WORKERS = 1024;

// Node's timers hold at most 2^31 - 1 ms; a longer delay fires after 1 ms instead.
export const MAX_MS = 2147483647;

/** An integer from min to max (no upper bound when max is null), one message for every problem. */
const intIn = (min: number, max: number | null, error: string) => {
  const atLeast = z.int({ error }).min(min, { error });
  return max === null ? atLeast : atLeast.max(max, { error });
};
const positiveInt = () => intIn(1, null, 'must be a positive integer');
// 0 is allowed: the OS picks a free port (tests rely on it).
const port = () => intIn(0, 65535, 'must be an integer from 0 to 65535');
// Where a connection goes: 0 is no port there.
const backendPort = () => intIn(1, 65535, 'must be an integer from 1 to 65535');
const durationMs = () => intIn(1, MAX_MS, `must be an integer from 1 to ${MAX_MS} (ms, about 24.8 days)`);
const durationMsOr0 = () => intIn(0, MAX_MS, `must be an integer from 0 to ${MAX_MS} (ms, about 24.8 days)`);
const KEEPALIVE_ERROR = `must be 0 (off) or an integer from 1000 to ${MAX_MS} (ms)`;
const host = () => z.string().min(1, { error: 'must not be empty' });
const filePath = () => z.string().min(1, { error: 'must not be empty' });
const oneOf = <const T extends readonly [string, ...string[]]>(values: T) =>
  z.enum(values, { error: `must be one of ${values.join(', ')}` });

export const TLS_VERSIONS = ['TLSv1.2', 'TLSv1.3'] as const;
export const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const;

// `.prefault({})` (not `.default({})`) so an omitted section is parsed as `{}` and gets the
// defaults of its keys, and so the section stays optional in the generated JSON Schema.
export const configSchema = z
  .strictObject({
    listen: z
      .strictObject({
        host: host().default('127.0.0.1').describe('Address the TLS listener binds to.'),
        port: port().default(6380).describe('TCP port of the TLS listener (0 = any free port).'),
      })
      .prefault({})
      .describe('Where clients connect (TLS).'),

    tls: z
      .strictObject({
        cert_file: filePath().describe(
          "PEM certificate (chain) served to clients. Relative paths resolve against the config file's folder.",
        ),
        key_file: filePath().describe(
          "PEM private key of cert_file. Relative paths resolve against the config file's folder.",
        ),
        ca_file: filePath()
          .nullable()
          .default(null)
          .describe('When set, clients must present a certificate signed by this CA (mutual TLS).'),
        min_version: oneOf(TLS_VERSIONS).default('TLSv1.2').describe('Lowest TLS version accepted.'),
        handshake_timeout_ms: durationMs()
          .default(10000)
          .describe('Close a client that has not finished the TLS handshake within this time.'),
        max_handshakes: intIn(1, 65536, 'must be an integer from 1 to 65536')
          .default(256)
          .describe(
            'TLS handshakes run at once per process; later connections wait their turn (within handshake_timeout_ms) with their bytes in the kernel. Bounds the memory OpenSSL sets aside for handshakes in progress (up to 128 KiB each, as a ClientHello declares).',
          ),
        poll_interval_ms: durationMsOr0()
          .default(60000)
          .describe(
            'Besides watching their folders, read the certificate files this often and reload them when their content changed: covers what a folder watch cannot see (a swapped symlink above the folder, network filesystems without inotify); 0 = the folder watch only.',
          ),
        ticket_rotation_ms: intIn(1000, MAX_MS, `must be an integer from 1000 to ${MAX_MS} (ms)`)
          .default(3600000)
          .describe(
            'Change the session ticket key this often (on the monotonic clock, every worker at once), forgetting the one before: tickets issued under it no longer resume, and a later copy of the process memory cannot open tickets recorded earlier. Restart to change.',
          ),
        self_signed_if_missing: z
          .boolean()
          .default(false)
          .describe(
            'When both cert_file and key_file are missing, generate a self-signed development certificate there (with one of them present, nothing is generated and the missing one is reported). Never in production.',
          ),
        allow: z
          .strictObject({
            cn: z.array(z.string().min(1)).default([]).describe('Allowed client certificate subject common names.'),
            dns_san: z.array(z.string().min(1)).default([]).describe('Allowed client certificate DNS subject alternative names.'),
            uri_san: z.array(z.string().min(1)).default([]).describe('Allowed client certificate URI subject alternative names (e.g. SPIFFE IDs).'),
          })
          .nullable()
          .default(null)
          .describe('With ca_file: only clients whose certificate matches one of these identities are served.'),
        sni: z
          .array(
            z.strictObject({
              servername: z
                .string()
                .regex(SERVERNAME, { error: 'must be a host name ("redis.example.com"), or "*." and one (a wildcard for one label)' })
                .describe('TLS server name (SNI) this entry serves; "*.example.com" matches one label.'),
              cert_file: filePath().describe('PEM certificate served for this name.'),
              key_file: filePath().describe('PEM private key of cert_file.'),
              backend: z
                .strictObject({
                  host: host().describe('Backend host for clients that asked for this name.'),
                  port: backendPort().describe('Backend port for clients that asked for this name.'),
                })
                .nullable()
                .default(null)
                .describe('Where clients that asked for this name are forwarded; null = the main backend.'),
            }),
          )
          .default([])
          .superRefine((entries, ctx) => {
            const seen = new Map<string, number>();
            entries.forEach((e, i) => {
              const name = e.servername.toLowerCase(); // server names compare without case
              const first = seen.get(name);
              if (first === undefined) seen.set(name, i);
              else ctx.addIssue({ code: 'custom', message: `servername "${e.servername}" is already served by tls.sni.${first}`, path: [i, 'servername'] });
            });
          })
          .describe('More certificates, chosen by the client\'s SNI server name; each may front its own datastore.'),
      })
      .refine((t) => t.allow === null || t.ca_file !== null, { error: 'allow needs ca_file (client certificates)', path: ['allow'] })
      .refine((t) => t.allow === null || t.allow.cn.length + t.allow.dns_san.length + t.allow.uri_san.length > 0, {
        error: 'names no identity, so no client would be served: list at least one cn, dns_san or uri_san, or leave allow null to serve every client the CA signed',
        path: ['allow'],
      })
      .describe('TLS towards clients. cert_file and key_file are required.'),

    backend: z
      .strictObject({
        host: host().default('127.0.0.1').describe('Redis/Valkey/Dragonfly/KeyDB host.'),
        port: backendPort().default(6379).describe('Backend TCP port (plaintext).'),
        connect_timeout_ms: durationMs().default(3000).describe('Give up connecting to the backend after this time.'),
      })
      .prefault({})
      .describe('The one backend every client connection is forwarded to (1:1).'),

    limits: z
      .strictObject({
        max_multibulk_len: positiveInt()
          .default(1048576)
          .describe('Most elements in one request array; inline commands count their arguments too.'),
        max_bulk_len: positiveInt().default(536870912).describe('Most bytes in one bulk string (proto-max-bulk-len).'),
        max_inline_len: positiveInt().default(65536).describe('Most bytes in one inline command line.'),
        max_clients: positiveInt().default(10000).describe('Most concurrent client connections; with more than one worker, each takes an equal share (together exactly this many).'),
        idle_timeout_ms: durationMsOr0().default(0).describe('Close a client idle this long; 0 = never.'),
        tcp_keepalive_ms: intIn(0, MAX_MS, KEEPALIVE_ERROR)
          .refine((v) => !(v > 0 && v < 1000), { error: KEEPALIVE_ERROR })
          .default(300000)
          .describe(
            'TCP keepalive on client and backend connections: probes start after this long without traffic (whole seconds), so a peer that vanished without FIN or RST is found and its connection closed; 0 = off. Redis\'s tcp-keepalive.',
          ),
        tls_overhead_bytes: intIn(0, null, 'must be 0 (no limit) or a positive integer (bytes)')
          .default(131072)
          .describe(
            'TLS overhead a client may send within 500 ms beyond 16 bytes per byte of data (record headers and tags, records with no data such as KeyUpdate): past it the connection is torn down as a flood (tls_flood). Clients send far less; raise it only for one that pads small records. 0 = no limit.',
          ),
        idle_timeout_pubsub: z
          .boolean()
          .default(false)
          .describe('Apply idle_timeout_ms to clients in SUBSCRIBE/MONITOR mode too (by default they are exempt; a connection that has subscribed stays exempt after it unsubscribes).'),
      })
      .prefault({})
      .describe('Protocol limits enforced before a command reaches the backend.'),

    close: z
      .strictObject({
        drain_timeout_ms: durationMs().default(5000).describe('How long to keep draining a closing client, and how long each wait of a close goes on without progress; at shutdown, closes still under way 4 × this after the grace are cut.'),
        drain_max_bytes: positiveInt().default(67108864).describe('Stop draining after discarding this many bytes.'),
      })
      .prefault({})
      .describe('The orderly close of a client connection.'),

    shutdown: z
      .strictObject({
        grace_ms: durationMs()
          .default(10000)
          .describe('On SIGTERM/SIGINT, let clients finish for this long before closing them.'),
      })
      .prefault({})
      .describe('Graceful shutdown.'),

    workers: intIn(0, MAX_WORKERS, `must be an integer from 0 (one per CPU) to ${MAX_WORKERS}`).default(1).describe('Accepting processes; 0 = one per CPU (within the cgroup CPU quota).'),

    admin: z
      .strictObject({
        host: host().default('127.0.0.1').describe('Address of the admin HTTP server.'),
        port: port().default(9180).describe('Port of the admin HTTP server (/metrics, /healthz, /readyz).'),
      })
      .prefault({})
      .describe('Admin HTTP server.'),

    log: z
      .strictObject({
        level: oneOf(LOG_LEVELS).default('info').describe('Log level.'),
      })
      .prefault({})
      .describe('Logging.'),
  })
  .refine((c) => c.admin.port === 0 || c.admin.port !== c.listen.port || !sameAddress(c.admin.host, c.listen.host), {
    error: 'must differ from listen.port on the same address',
    path: ['admin', 'port'],
  })
  .meta({
    title: 'resp-tls-proxy configuration',
    description: 'Configuration file of resp-tls-proxy, a TLS-terminating reverse proxy for the Redis protocol.',
  });

/** Whether two listen hosts can clash: the same, either one every address, or localhost and a loopback address it may resolve to. */
function sameAddress(a: string, b: string): boolean {
  const any = (h: string) => h === '0.0.0.0' || h === '::' || h === '[::]';
  const loopback = (h: string) => h === 'localhost' || h === '127.0.0.1' || h === '::1' || h === '[::1]';
  [a, b] = [a.toLowerCase(), b.toLowerCase()];
  return a === b || any(a) || any(b) || ((a === 'localhost' || b === 'localhost') && loopback(a) && loopback(b));
}

/** What the YAML file may contain (every default optional). */
export type ConfigInput = z.input<typeof configSchema>;
/** The validated configuration, every default applied. */
export type Config = z.infer<typeof configSchema>;

/** The JSON Schema of the file as written (input side: keys with defaults are optional). */
export function configJsonSchema(): Record<string, unknown> {
  return z.toJSONSchema(configSchema, { io: 'input', target: 'draft-7' }) as Record<string, unknown>;
}

/** Exactly the text of config/schema.json. */
export function renderConfigJsonSchema(): string {
  return `${JSON.stringify(configJsonSchema(), null, 2)}\n`;
}

/**
 * How many processes accept connections: `workers`, with 0 meaning one per usable CPU (the cgroup
 * CPU quota counts: see cpus.ts), and no more than
 * limits.max_clients (a worker without a share of it would turn every client away).
 */
export function workerCount(config: Config): number {
  return Math.min(workersAsked(config), config.limits.max_clients);
}

/** The workers the config asks for: `workers`, or one per usable CPU for 0. */
export function workersAsked(config: Config): number {
  return config.workers === 0 ? usableCpus() : config.workers;
}

/** An accepting process's place: `slot` from 0 to `of` - 1, among `of` processes (0 of 1 alone). */
export interface WorkerPlace {
  slot: number;
  of: number;
}

/**
 * One accepting process's share of limits.max_clients: the workers split it evenly (node:cluster
 * hands out connections round-robin), the first `max % of` slots one more, so together they hold
 * exactly the limit.
 */
export function clientsPerProcess(config: Config, { slot, of }: WorkerPlace): number {
  const max = config.limits.max_clients;
  return Math.floor(max / of) + (slot < max % of ? 1 : 0);
}

/** What a reload cannot apply to a running process: these keys take effect on restart. */
const RESTART_ONLY: ReadonlyArray<readonly [string, (c: Config) => unknown]> = [
  ['listen', (c) => c.listen],
  ['admin', (c) => c.admin],
  ['workers', (c) => c.workers],
  ['tls.handshake_timeout_ms', (c) => c.tls.handshake_timeout_ms], // tls.Server takes it once, when created
  ['tls.ticket_rotation_ms', (c) => c.tls.ticket_rotation_ms], // every process steps its ticket secret on it
];

/** `next` with the restart-only keys of `running`: the config a running process can adopt. */
export function keepRestartOnly(running: Config, next: Config): Config {
  return {
    ...next,
    listen: running.listen,
    admin: running.admin,
    workers: running.workers,
    tls: { ...next.tls, handshake_timeout_ms: running.tls.handshake_timeout_ms, ticket_rotation_ms: running.tls.ticket_rotation_ms },
  };
}

/** The restart-only keys whose value differs between two configs. */
export function restartOnlyChanges(prev: Config, next: Config): string[] {
  return RESTART_ONLY.filter(([, get]) => JSON.stringify(get(prev)) !== JSON.stringify(get(next))).map(([key]) => key);
}
