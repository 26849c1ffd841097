// `resp-tls-proxy stats`: how a running proxy has been closing its clients, read from its admin
// /metrics endpoint (resp_tls_proxy_client_closes_total{mode, reason}).
import { request } from 'undici';
import { CLIENT_CLOSES_METRIC as CLOSES_METRIC, CLOSE_REASONS } from '../proxy/close-reason.js';

export interface CloseCounts {
  graceful: number;
  abrupt: number;
}

export class AdminUnreachableError extends Error {
  readonly code = 'ERR_ADMIN_UNREACHABLE';

  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'AdminUnreachableError';
  }
}

/** `http://h:p`, `http://h:p/` or `http://h:p/metrics` → the /metrics URL. Throws on a bad URL. */
export function metricsUrl(admin: string): URL {
  const url = new URL(admin);
  if (url.protocol !== 'http:' && url.protocol !== 'https:') throw new TypeError(`not an http(s) URL: ${admin}`);
  if (!url.pathname.endsWith('/metrics')) url.pathname = `${url.pathname.replace(/\/+$/, '')}/metrics`;
  return url;
}

const SAMPLE = /^(\w+)(?:\{((?:[^"}]|"(?:[^"\\]|\\.)*")*)\})?\s+(\S+)/;
const LABEL = /(\w+)\s*=\s*"((?:[^"\\]|\\.)*)"/g;

function unescapeLabel(value: string): string {
  return value.replace(/\\(.)/g, (_, c: string) => (c === 'n' ? '\n' : c));
}

/**
 * Close counts by reason from Prometheus text exposition, or null when the text does not
 * mention the metric at all (not a resp-tls-proxy endpoint). Samples of one reason and mode
 * are summed (there is one per worker if a proxy ever exposes them unaggregated).
 */
export function parseCloseCounts(text: string): Map<string, CloseCounts> | null {
  if (!text.includes(CLOSES_METRIC)) return null;
  const counts = new Map<string, CloseCounts>();
  for (const line of text.split('\n')) {
    const m = SAMPLE.exec(line);
    if (!m || m[1] !== CLOSES_METRIC) continue;
    const labels = new Map<string, string>();
    for (const [, name, value] of (m[2] ?? '').matchAll(LABEL)) labels.set(name!, unescapeLabel(value!));
    const mode = labels.get('mode');
    const reason = labels.get('reason') ?? '(none)';
    const value = Number(m[3]);
    if ((mode !== 'graceful' && mode !== 'abrupt') || !Number.isFinite(value)) continue;
    const entry = counts.get(reason) ?? { graceful: 0, abrupt: 0 };
    entry[mode] += value;
    counts.set(reason, entry);
  }
  return counts;
}

/** A plain-text table: reason | graceful | abrupt, every contract reason, then a total row. */
export function formatCloseTable(counts: Map<string, CloseCounts>): string {
  const extra = [...counts.keys()].filter((r) => !(CLOSE_REASONS as readonly string[]).includes(r)).sort();
  const rows: Array<[string, number, number]> = [...CLOSE_REASONS, ...extra].map((reason) => {
    const c = counts.get(reason) ?? { graceful: 0, abrupt: 0 };
    return [reason, c.graceful, c.abrupt];
  });
  const total = rows.reduce<[string, number, number]>((t, [, g, a]) => [t[0], t[1] + g, t[2] + a], ['total', 0, 0]);
  const cells = [['reason', 'graceful', 'abrupt'], ...[...rows, total].map(([r, g, a]) => [r, String(g), String(a)])];
  const widths = [0, 1, 2].map((i) => Math.max(...cells.map((row) => row[i]!.length)));
  const render = (row: string[]) =>
    `${row[0]!.padEnd(widths[0]!)}  ${row[1]!.padStart(widths[1]!)}  ${row[2]!.padStart(widths[2]!)}`;
  const rule = `${'-'.repeat(widths[0]!)}  ${'-'.repeat(widths[1]!)}  ${'-'.repeat(widths[2]!)}`;
  const body = cells.map(render);
  return [body[0], rule, ...body.slice(1, -1), rule, body[body.length - 1]].join('\n') + '\n';
}

/** Fetches /metrics from the admin endpoint; throws AdminUnreachableError when it cannot. */
export async function fetchCloseCounts(admin: string, timeoutMs = 5000): Promise<Map<string, CloseCounts>> {
  const url = metricsUrl(admin);
  let text: string;
  try {
    const res = await request(url, { method: 'GET', headersTimeout: timeoutMs, bodyTimeout: timeoutMs });
    text = await res.body.text();
    if (res.statusCode !== 200) throw new AdminUnreachableError(`${url.href} answered HTTP ${res.statusCode}`);
  } catch (err) {
    if (err instanceof AdminUnreachableError) throw err;
    const e = err as NodeJS.ErrnoException;
    throw new AdminUnreachableError(`cannot reach the admin endpoint ${url.href}: ${e.message || e.code}`, { cause: err });
  }
  const counts = parseCloseCounts(text);
  if (counts === null) {
    throw new AdminUnreachableError(`${url.href} does not expose ${CLOSES_METRIC}; is it a resp-tls-proxy admin endpoint?`);
  }
  return counts;
}
