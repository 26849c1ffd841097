// Test certificates made with /usr/bin/openssl (EC P-256):
//   a test CA; a server certificate (CN localhost, SAN DNS:localhost, IP:127.0.0.1) signed by it;
//   a client certificate signed by the same CA (mTLS); a client certificate signed by another CA.
import { existsSync, mkdirSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { makeTempDir, run } from './common.js';

export const OPENSSL = process.env.OPENSSL_BIN ?? '/usr/bin/openssl';

export interface TestCerts {
  dir: string;
  /** The test CA that signed the server and the good client certificate. */
  caFile: string;
  caKeyFile: string;
  /** Server certificate for CN=localhost, SAN DNS:localhost, IP:127.0.0.1. */
  certFile: string;
  keyFile: string;
  /** Client certificate (CN=test-client, clientAuth) signed by caFile. */
  clientCertFile: string;
  clientKeyFile: string;
  /** A second, unrelated CA, and a client certificate it signed (CN=rogue-client). */
  otherCaFile: string;
  otherCaKeyFile: string;
  otherClientCertFile: string;
  otherClientKeyFile: string;
}

const NAMES = {
  caFile: 'ca.crt',
  caKeyFile: 'ca.key',
  certFile: 'server.crt',
  keyFile: 'server.key',
  clientCertFile: 'client.crt',
  clientKeyFile: 'client.key',
  otherCaFile: 'other-ca.crt',
  otherCaKeyFile: 'other-ca.key',
  otherClientCertFile: 'other-client.crt',
  otherClientKeyFile: 'other-client.key',
} as const;

function filesIn(dir: string): TestCerts {
  const out: Record<string, string> = { dir };
  for (const [k, v] of Object.entries(NAMES)) out[k] = path.join(dir, v);
  return out as unknown as TestCerts;
}

async function openssl(cwd: string, ...args: string[]): Promise<void> {
  const r = await run(OPENSSL, args, { cwd, timeoutMs: 30_000 });
  if (r.code !== 0) throw new Error(`openssl ${args.join(' ')} failed (${r.code}): ${r.stderr}${r.stdout}`);
}

async function makeCa(cwd: string, key: string, crt: string, cn: string): Promise<void> {
  await openssl(cwd, 'genpkey', '-algorithm', 'EC', '-pkeyopt', 'ec_paramgen_curve:P-256', '-out', key);
  await openssl(cwd, 'req', '-x509', '-new', '-key', key, '-sha256', '-days', '3650', '-subj', `/CN=${cn}`,
    '-addext', 'basicConstraints=critical,CA:TRUE',
    '-addext', 'keyUsage=critical,keyCertSign,cRLSign',
    '-out', crt);
}

async function makeLeaf(cwd: string, caCrt: string, caKey: string, key: string, crt: string, cn: string, ext: string): Promise<void> {
  const csr = `${crt}.csr`;
  const extFile = `${crt}.ext`;
  writeFileSync(path.join(cwd, extFile), ext);
  await openssl(cwd, 'genpkey', '-algorithm', 'EC', '-pkeyopt', 'ec_paramgen_curve:P-256', '-out', key);
  await openssl(cwd, 'req', '-new', '-key', key, '-subj', `/CN=${cn}`, '-out', csr);
  await openssl(cwd, 'x509', '-req', '-in', csr, '-CA', caCrt, '-CAkey', caKey, '-CAcreateserial',
    '-days', '3650', '-sha256', '-extfile', extFile, '-out', crt);
}

/**
 * Creates the certificate set in `dir` (reusing it when every file is already there).
 * Files are made in a sibling temp folder and renamed into place, so a half-made set is never used.
 */
export async function makeCerts(dir: string): Promise<TestCerts> {
  const files = filesIn(dir);
  if (Object.values(NAMES).every((n) => existsSync(path.join(dir, n)))) return files;
  const work = `${dir}.tmp-${process.pid}-${Date.now()}`;
  mkdirSync(work, { recursive: true });
  try {
    await makeCa(work, NAMES.caKeyFile, NAMES.caFile, 'resp-tls-proxy test CA');
    await makeCa(work, NAMES.otherCaKeyFile, NAMES.otherCaFile, 'resp-tls-proxy other CA');
    await makeLeaf(work, NAMES.caFile, NAMES.caKeyFile, NAMES.keyFile, NAMES.certFile, 'localhost',
      'basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\nsubjectAltName=DNS:localhost,IP:127.0.0.1\n');
    await makeLeaf(work, NAMES.caFile, NAMES.caKeyFile, NAMES.clientKeyFile, NAMES.clientCertFile, 'test-client',
      'basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=clientAuth\n');
    await makeLeaf(work, NAMES.otherCaFile, NAMES.otherCaKeyFile, NAMES.otherClientKeyFile, NAMES.otherClientCertFile, 'rogue-client',
      'basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=clientAuth\n');
    mkdirSync(dir, { recursive: true });
    for (const n of Object.values(NAMES)) renameSync(path.join(work, n), path.join(dir, n));
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
  return files;
}

let shared: Promise<TestCerts> | undefined;

/** One certificate set per test process, in a temp dir removed at exit. */
export function sharedCerts(): Promise<TestCerts> {
  shared ??= makeCerts(path.join(makeTempDir('resp-tls-proxy-certs-'), 'certs'));
  return shared;
}
