// Reading the configuration file: YAML → schema → `Config`, every problem reported as
// `FILE:LINE: dotted.key: problem` (all of them, in line order), so an operator can fix the file
// in one pass. `checkConfigFile` adds what only the file system can tell: are the certificate
// and key readable, do they parse, do they belong together.
import { X509Certificate, createPrivateKey, type KeyObject } from 'node:crypto';
import { lookup } from 'node:dns/promises';
import { readFileSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { LineCounter, isMap, isNode, isScalar, isSeq, parseDocument, type Document } from 'yaml';
import type * as z from 'zod';
import { configSchema, type Config } from './schema.js';
import { needsDevCertificate } from './devcert.js';
import { ConfigError } from './error.js';
import { loadTlsMaterial } from './tls.js';

export { ConfigError };

type KeyPath = readonly PropertyKey[];

interface Problem {
  line: number;
  text: string;
}

interface Analysis {
  config: Config | null;
  problems: Problem[];
  /** Line of the key at `keyPath`, or of its closest ancestor present in the file. */
  lineOf(keyPath: KeyPath): number;
}

// Messages for the issues the schema leaves generic. Messages set in the schema itself win.
function issueMessage(issue: z.core.$ZodRawIssue): string | undefined {
  if (issue.code !== 'invalid_type') return undefined;
  if (issue.input === undefined) return 'is required';
  switch (issue.expected) {
    case 'object':
      return 'must be a mapping';
    case 'string':
      return 'must be a string';
    case 'boolean':
      return 'must be true or false';
    default:
      return `must be a ${issue.expected}`;
  }
}

function dotted(keyPath: KeyPath): string {
  return keyPath.length === 0 ? '(top level)' : keyPath.map(String).join('.');
}

function yamlMessage(code: string, message: string): string {
  if (code === 'MULTIPLE_DOCS') return 'the file must hold a single YAML document';
  return message.charAt(0).toLowerCase() + message.slice(1);
}

/** `FILE:LINE: dotted.key: problem` (no key part when keyPath is null). */
function problemAt(file: string, line: number, keyPath: KeyPath | null, problem: string): Problem {
  return { line, text: `${file}:${line}: ${keyPath ? `${dotted(keyPath)}: ` : ''}${problem}` };
}

function analyze(text: string, file: string): Analysis {
  const lineCounter = new LineCounter();
  const doc: Document = parseDocument(text, { lineCounter, prettyErrors: false });
  const lineAt = (offset: number): number => lineCounter.linePos(offset).line;

  const lineOf = (keyPath: KeyPath): number => {
    let node: unknown = doc.contents;
    let line = 1;
    for (const key of keyPath) {
      if (isSeq(node) && typeof key === 'number') {
        const item: unknown = node.items[key];
        if (!isNode(item)) break;
        if (item.range) line = lineAt(item.range[0]);
        node = item;
        continue;
      }
      if (!isMap(node)) break;
      const pair = node.items.find((p) => isScalar(p.key) && String(p.key.value) === String(key));
      if (!pair) break;
      if (isScalar(pair.key) && pair.key.range) line = lineAt(pair.key.range[0]);
      node = pair.value;
    }
    return line;
  };

  const problems: Problem[] = [];
  const add = (line: number, keyPath: KeyPath | null, problem: string): void => void problems.push(problemAt(file, line, keyPath, problem));

  if (doc.errors.length > 0) {
    for (const err of doc.errors) add(lineAt(err.pos[0]), null, `YAML syntax error: ${yamlMessage(err.code, err.message)}`);
    return { config: null, problems, lineOf };
  }

  let data: unknown;
  try {
    data = doc.toJS({ maxAliasCount: 100 });
  } catch (err) {
    add(1, null, `YAML error: ${(err as Error).message}`);
    return { config: null, problems, lineOf };
  }

  // An empty file is an empty mapping (which then lacks the required tls section).
  const result = configSchema.safeParse(data ?? {}, { error: issueMessage });
  if (result.success) return { config: result.data, problems, lineOf };

  for (const issue of result.error.issues) {
    if (issue.code === 'unrecognized_keys') {
      for (const key of issue.keys) {
        const keyPath = [...issue.path, key];
        add(lineOf(keyPath), keyPath, 'unknown key');
      }
    } else {
      add(lineOf(issue.path), issue.path, issue.message);
    }
  }
  problems.sort((a, b) => a.line - b.line);
  return { config: null, problems, lineOf };
}

/**
 * Validates configuration text. `file` only labels the problems (`FILE:LINE: key: problem`);
 * relative paths in the result are left as written.
 */
export function parseConfigText(text: string, file: string): { config: Config | null; problems: string[] } {
  const { config, problems } = analyze(text, file);
  return { config, problems: problems.map((p) => p.text) };
}

/** Resolves the tls file paths against the folder of the config file. */
export function resolveConfigPaths(config: Config, configFile: string): Config {
  const dir = path.dirname(path.resolve(configFile));
  const tls = config.tls;
  return {
    ...config,
    tls: {
      ...tls,
      cert_file: path.resolve(dir, tls.cert_file),
      key_file: path.resolve(dir, tls.key_file),
      ca_file: tls.ca_file === null ? null : path.resolve(dir, tls.ca_file),
      sni: tls.sni.map((e) => ({ ...e, cert_file: path.resolve(dir, e.cert_file), key_file: path.resolve(dir, e.key_file) })),
    },
  };
}

function errnoText(err: unknown): string {
  const e = err as NodeJS.ErrnoException;
  if (typeof e?.code === 'string' && typeof e.message === 'string') {
    // "ENOENT: no such file or directory, open '/x'" → "ENOENT: no such file or directory"
    const comma = e.message.indexOf(', ');
    return comma > 0 && e.message.startsWith(e.code) ? e.message.slice(0, comma) : e.message;
  }
  return String((err as Error)?.message ?? err);
}

/**
 * Reads and validates the configuration file; tls paths come back absolute.
 * Throws `ConfigError` (code `ERR_CONFIG`) listing every problem.
 */
export function loadConfigFile(file: string): Config {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    throw new ConfigError([`${file}: cannot read the configuration file: ${errnoText(err)}`]);
  }
  const { config, problems } = parseConfigText(text, file);
  if (config === null) throw new ConfigError(problems);
  return resolveConfigPaths(config, file);
}

/** Where under `tls` a problem is: a key (`['cert_file']`, `['sni', 1, 'key_file']`), or the section itself (`[]`). */
type TlsKey = readonly (string | number)[];

const PEM_CERT = /-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g;

function parseCertificates(pem: string): X509Certificate[] {
  return (pem.match(PEM_CERT) ?? []).map((block) => new X509Certificate(block));
}

async function readTlsFile(file: string, report: (problem: string) => void): Promise<Buffer | null> {
  try {
    return await readFile(file);
  } catch (err) {
    report(`cannot read ${file}: ${errnoText(err)}`);
    return null;
  }
}

/** A served certificate must be valid now: the proxy would serve it, and verifying clients refuse it. */
function datesProblem(cert: X509Certificate, now: number, report: (problem: string) => void): void {
  const from = Date.parse(cert.validFrom);
  const to = Date.parse(cert.validTo);
  if (to < now) report(`certificate expired on ${new Date(to).toISOString()}`);
  else if (from > now) report(`certificate is not valid before ${new Date(from).toISOString()}`);
}

/** Every problem of one certificate and its key: unreadable, not PEM, encrypted, mismatched, not valid now. */
async function pairProblems(
  certFile: string,
  keyFile: string,
  certKey: string,
  certProblem: (problem: string) => void,
  keyProblem: (problem: string) => void,
  now: number,
): Promise<void> {
  let cert: X509Certificate | null = null;
  let key: KeyObject | null = null;
  const certPem = await readTlsFile(certFile, certProblem);
  if (certPem) {
    try {
      const chain = parseCertificates(certPem.toString('utf8'));
      if (chain.length === 0) certProblem(`${certFile} holds no PEM certificate`);
      cert = chain[0] ?? null;
    } catch (err) {
      certProblem(`${certFile} is not a valid PEM certificate: ${(err as Error).message}`);
    }
    if (cert) datesProblem(cert, now, certProblem);
  }
  const keyPem = await readTlsFile(keyFile, keyProblem);
  if (keyPem) {
    try {
      key = createPrivateKey(keyPem);
    } catch (err) {
      const e = err as NodeJS.ErrnoException;
      keyProblem(
        e.code === 'ERR_MISSING_PASSPHRASE'
          ? `${keyFile} is encrypted; passphrase-protected keys are not supported`
          : `${keyFile} is not a valid PEM private key: ${e.message}`,
      );
    }
  }
  if (cert && key && !cert.checkPrivateKey(key)) keyProblem(`${keyFile} does not match the certificate in ${certKey}`);
}

/** Problems with the certificate, key and CA files of an already valid (path-resolved) config. */
async function tlsFileProblems(tls: Config['tls'], now = Date.now()): Promise<Array<{ key: TlsKey; problem: string }>> {
  const out: Array<{ key: TlsKey; problem: string }> = [];
  const reporter = (key: TlsKey) => (problem: string) => void out.push({ key, problem });

  const willGenerate = needsDevCertificate(tls);
  if (!willGenerate) await pairProblems(tls.cert_file, tls.key_file, 'tls.cert_file', reporter(['cert_file']), reporter(['key_file']), now);

  if (tls.ca_file !== null) {
    const caProblem = reporter(['ca_file']);
    const caPem = await readTlsFile(tls.ca_file, caProblem);
    if (caPem) {
      try {
        if (parseCertificates(caPem.toString('utf8')).length === 0) caProblem(`${tls.ca_file} holds no PEM certificate`);
      } catch (err) {
        caProblem(`${tls.ca_file} is not a valid PEM certificate: ${(err as Error).message}`);
      }
    }
  }

  for (const [i, entry] of tls.sni.entries()) {
    await pairProblems(entry.cert_file, entry.key_file, `tls.sni.${i}.cert_file`, reporter(['sni', i, 'cert_file']), reporter(['sni', i, 'key_file']), now);
  }

  // Last word to the loading the proxy itself does (OpenSSL included), for anything the checks
  // above let through. (Not when the development pair is still to be generated: there is nothing
  // to load yet.)
  if (out.length === 0 && !willGenerate) {
    try {
      loadTlsMaterial(tls);
    } catch (err) {
      if (!(err instanceof ConfigError)) throw err;
      for (const problem of err.problems) out.push({ key: [], problem });
    }
  }
  return out;
}

/**
 * How a worker gets the config its primary runs (validated, as of the last SIGHUP), as JSON: a
 * worker that re-read the file would pick up an edit not applied yet, or fail on a broken one.
 */
export const WORKER_CONFIG_ENV = 'RESP_TLS_PROXY_WORKER_CONFIG';

/**
 * Everything `--check` reports: schema problems, then (if the schema is satisfied) unreadable,
 * unparsable or mismatched certificate/key/CA files. Empty list = config ok.
 * With `tls.self_signed_if_missing`, missing certificate/key files are not a problem.
 */
export async function checkConfigFile(file: string): Promise<string[]> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (err) {
    return [`${file}: cannot read the configuration file: ${errnoText(err)}`];
  }
  const analysis = analyze(text, file);
  if (analysis.config === null) return analysis.problems.map((p) => p.text);

  const config = resolveConfigPaths(analysis.config, file);
  const problems: Problem[] = [];
  for (const { key, problem } of await tlsFileProblems(config.tls)) {
    const keyPath = ['tls', ...key];
    problems.push(problemAt(file, analysis.lineOf(keyPath), keyPath, problem));
  }
  // The addresses the proxy binds must resolve here (not the backend's: it may come up later).
  for (const key of ['listen', 'admin'] as const) {
    const problem = await hostProblem(config[key].host);
    if (problem !== null) problems.push(problemAt(file, analysis.lineOf([key, 'host']), [key, 'host'], problem));
  }
  problems.sort((a, b) => a.line - b.line);
  return problems.map((p) => p.text);
}

/** A host name or address to bind that does not resolve: what the lookup said; null when it resolves. */
async function hostProblem(host: string): Promise<string | null> {
  try {
    await lookup(host);
    return null;
  } catch (err) {
    return `does not resolve: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`;
  }
}
