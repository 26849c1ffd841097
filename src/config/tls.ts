// The TLS material a config names: certificates and keys read, checked and made into secure
// contexts. One mechanism for start-up, reloads, the certificate watch and `--check`.
import { X509Certificate, createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import tls from 'node:tls';
import { ConfigError } from './error.js';
import type { Config } from './schema.js';

/** Certificates and keys read from the files a config names. */
export interface TlsMaterial {
  options: tls.SecureContextOptions;
  /** SNI entries, most specific first: exact names before wildcards. */
  sni: SniEntry[];
  /** notAfter of the serving certificate that expires first, Unix seconds. */
  expiresAt: number;
  /** SHA-256 of every file read (tlsFingerprint), to tell a real change on disk from a touch. */
  fingerprint: string;
  /** Digest of what decides who may resume a session, for the ticket keys (TicketSecrets.keys). */
  ticketBase: Buffer;
}

/**
 * Said at start and after a reload when a certificate served has expired (--check rejects it;
 * the proxy serves it, and clients that verify it refuse the handshake).
 */
export function warnIfExpired(material: TlsMaterial, log: { warn(obj: object, msg: string): void }, now = Date.now()): void {
  if (material.expiresAt * 1000 < now) {
    log.warn({ cert_expired: new Date(material.expiresAt * 1000).toISOString() }, 'a certificate served has expired: clients that verify it refuse the handshake');
  }
}

export interface SniEntry {
  servername: string;
  context: tls.SecureContext;
  backend: { host: string; port: number } | null;
}

/**
 * Cipher suites offered. TLS 1.2: ECDHE key exchange (forward secrecy) with AEAD ciphers only —
 * Mozilla's "intermediate" profile without DHE; Node's default would also take CBC/SHA-1 suites
 * and static-RSA key exchange. TLS 1.3: all three standard suites, named because a list without
 * TLS 1.3 names would disable TLS 1.3.
 */
export const CIPHERS = [
  'TLS_AES_128_GCM_SHA256',
  'TLS_AES_256_GCM_SHA384',
  'TLS_CHACHA20_POLY1305_SHA256',
  'ECDHE-ECDSA-AES128-GCM-SHA256',
  'ECDHE-RSA-AES128-GCM-SHA256',
  'ECDHE-ECDSA-AES256-GCM-SHA384',
  'ECDHE-RSA-AES256-GCM-SHA384',
  'ECDHE-ECDSA-CHACHA20-POLY1305',
  'ECDHE-RSA-CHACHA20-POLY1305',
].join(':');

/** Every certificate, key and CA file the tls section names (SNI entries included), with its key. */
function namedTlsFiles(cfg: Config['tls']): Array<[what: string, file: string]> {
  return [
    ['tls.cert_file', cfg.cert_file],
    ['tls.key_file', cfg.key_file],
    ...(cfg.ca_file !== null ? [['tls.ca_file', cfg.ca_file] as [string, string]] : []),
    ...cfg.sni.flatMap((e, i): Array<[string, string]> => [
      [`tls.sni[${i}] (${e.servername}) cert_file`, e.cert_file],
      [`tls.sni[${i}] (${e.servername}) key_file`, e.key_file],
    ]),
  ];
}

/** Every certificate, key and CA file the tls section names (SNI entries included). */
export function tlsFiles(cfg: Config['tls']): string[] {
  return namedTlsFiles(cfg).map(([, file]) => file);
}

type ReadFile = (file: string) => Buffer;

/** Options shared by every certificate: protocol floor, ciphers, the client CA. */
export function baseOptions(cfg: Config['tls'], read: ReadFile = readFileSync): tls.SecureContextOptions {
  return { minVersion: cfg.min_version, ciphers: CIPHERS, ...(cfg.ca_file !== null ? { ca: read(cfg.ca_file) } : {}) };
}

/** Reads one certificate and its key; throws when either is unreadable or they do not match. */
export function readCertPair(
  base: tls.SecureContextOptions,
  certFile: string,
  keyFile: string,
  read: ReadFile = readFileSync,
): { options: tls.SecureContextOptions; notAfter: number } {
  const cert = read(certFile);
  const options = { ...base, cert, key: read(keyFile) };
  tls.createSecureContext(options); // throws when the key does not match the certificate
  return { options, notAfter: Date.parse(new X509Certificate(cert).validTo) / 1000 };
}

/** The bytes of every file tlsFiles() names, by path. */
export type TlsFileBytes = Map<string, Buffer>;

/** Each file tlsFiles() names, read once. Throws a ConfigError naming one that is unreadable. */
function readTlsFiles(cfg: Config['tls']): TlsFileBytes {
  return new Map(namedTlsFiles(cfg).map(([what, file]) => [file, named(what, () => readFileSync(file))]));
}

/**
 * readTlsFiles() off the event loop (libuv's thread pool): a certificate watch that reads the
 * files again and again must not stall every client when a network filesystem hangs.
 */
export async function readTlsFilesAsync(cfg: Config['tls']): Promise<TlsFileBytes> {
  const files: TlsFileBytes = new Map();
  // One after another: a hung mount then holds one thread of the pool, not all four (DNS
  // lookups for backend connections queue there too).
  for (const [what, file] of namedTlsFiles(cfg)) {
    try {
      files.set(file, await readFile(file));
    } catch (err) {
      throw namedError(what, err);
    }
  }
  return files;
}

/** `what` failed: a ConfigError that names it, with the cause (an unreadable file, OpenSSL's words). */
function named<T>(what: string, f: () => T): T {
  try {
    return f();
  } catch (err) {
    throw namedError(what, err);
  }
}

function namedError(what: string, err: unknown): ConfigError {
  const e = err as NodeJS.ErrnoException;
  return new ConfigError([`${what}: ${e.code !== undefined && e.path !== undefined ? `cannot read ${e.path} (${e.code})` : e.message}`]);
}

/**
 * What the TLS files hold, as one SHA-256 of their bytes: equal to the fingerprint of the material
 * loadTlsMaterial() makes from the same bytes. A digest, so no copy of a private key outlives the
 * load.
 */
export function tlsFingerprint(files: TlsFileBytes): string {
  const h = createHash('sha256');
  for (const [file, bytes] of files) h.update(`${file}\0${bytes.length}\0`).update(bytes);
  return h.digest('hex');
}

/** Throws a ConfigError naming the key and file at fault. `files`: bytes already read (else read now). */
export function loadTlsMaterial(cfg: Config['tls'], files: TlsFileBytes = readTlsFiles(cfg)): TlsMaterial {
  const read = (f: string): Buffer => files.get(f)!;
  const base = baseOptions(cfg, read);
  if (cfg.ca_file !== null && !/-----BEGIN (TRUSTED )?CERTIFICATE-----/.test(read(cfg.ca_file).toString('latin1'))) {
    // OpenSSL takes it without a word, and then no client certificate verifies.
    throw new ConfigError([`tls.ca_file: ${cfg.ca_file} holds no PEM certificate`]);
  }
  const main = named(`tls.cert_file, tls.key_file (${cfg.cert_file}, ${cfg.key_file})`, () => readCertPair(base, cfg.cert_file, cfg.key_file, read));
  const pairs = cfg.sni.map((e, i) => ({ entry: e, pair: named(`tls.sni[${i}] (${e.servername})`, () => readCertPair(base, e.cert_file, e.key_file, read)) }));
  const sni = pairs
    .map(({ entry, pair }) => ({ servername: entry.servername.toLowerCase(), context: tls.createSecureContext(pair.options), backend: entry.backend }))
    .sort((a, b) => Number(a.servername.startsWith('*.')) - Number(b.servername.startsWith('*.')));
  return {
    // sessionTimeout: how long a session (ticket) may be resumed. Without it OpenSSL's default,
    // 7200 s, applies, whatever Node's docs say.
    options: { ...main.options, sessionTimeout: SESSION_TIMEOUT_S },
    ticketBase: ticketBase(cfg, read),
    sni,
    expiresAt: Math.min(main.notAfter, ...pairs.map((p) => p.pair.notAfter)),
    fingerprint: tlsFingerprint(files),
  };
}

/** Seconds a TLS session may be resumed after the full handshake that made it. */
export const SESSION_TIMEOUT_S = 300;

/**
 * What decides who may resume a session, as one digest: the server keys, the client CA and whether
 * client certificates are asked for. The ticket keys are derived from it (tickets.ts), so a
 * reload that keeps those files keeps the tickets, and a reload that changes the CA or turns
 * client certificates on ends them: a session resumed from before could not prove a client
 * certificate the new settings ask for.
 */
function ticketBase(cfg: Config['tls'], read: ReadFile): Buffer {
  const h = createHash('sha256');
  const parts: Array<[string, string]> = [['key', cfg.key_file], ...cfg.sni.map((e): [string, string] => ['sni key', e.key_file])];
  if (cfg.ca_file !== null) parts.push(['client ca', cfg.ca_file]);
  for (const [what, file] of parts) {
    const bytes = read(file);
    h.update(`${what}\0${bytes.length}\0`).update(bytes);
  }
  return h.digest();
}
