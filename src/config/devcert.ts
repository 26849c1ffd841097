// A self-signed certificate for development, written where the config expects one, so that
// `npm start` works out of the box. Only when the config opts in (tls.self_signed_if_missing).
import { KeyObject, randomBytes, webcrypto } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdir, rename, writeFile } from 'node:fs/promises';
import path from 'node:path';
import type { Config } from './schema.js';

// @peculiar/x509 takes most of a second to load; only pay for it when a certificate is made.
async function loadX509(): Promise<typeof import('@peculiar/x509')> {
  const x509 = await import('@peculiar/x509');
  x509.cryptoProvider.set(webcrypto);
  return x509;
}

const ALGORITHM = { name: 'ECDSA', namedCurve: 'P-256', hash: 'SHA-256' } as const;
const DAY_MS = 24 * 60 * 60 * 1000;

export interface SelfSigned {
  certPem: string;
  keyPem: string;
}

/**
 * An ECDSA P-256 certificate for CN=localhost (SAN DNS:localhost, IP:127.0.0.1, IP:::1),
 * and its PKCS#8 private key, both PEM. Valid for a year from a minute ago unless told otherwise.
 */
export async function createSelfSignedCertificate(
  validity: { notBefore?: Date; notAfter?: Date } = {},
): Promise<SelfSigned> {
  const x509 = await loadX509();
  const keys = await webcrypto.subtle.generateKey(ALGORITHM, true, ['sign', 'verify']);
  const serial = randomBytes(16);
  serial[0] = serial[0]! & 0x7f; // a positive INTEGER
  const notBefore = validity.notBefore ?? new Date(Date.now() - 60_000);
  const cert = await x509.X509CertificateGenerator.createSelfSigned({
    serialNumber: serial.toString('hex'),
    name: 'CN=localhost',
    notBefore,
    notAfter: validity.notAfter ?? new Date(notBefore.getTime() + 365 * DAY_MS),
    signingAlgorithm: ALGORITHM,
    keys,
    extensions: [
      new x509.BasicConstraintsExtension(false, undefined, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature, true),
      new x509.ExtendedKeyUsageExtension([x509.ExtendedKeyUsage.serverAuth]),
      new x509.SubjectAlternativeNameExtension([
        { type: 'dns', value: 'localhost' },
        { type: 'ip', value: '127.0.0.1' },
        { type: 'ip', value: '::1' },
      ]),
      await x509.SubjectKeyIdentifierExtension.create(keys.publicKey),
    ],
  });
  const keyPem = KeyObject.from(keys.privateKey)
    .export({ type: 'pkcs8', format: 'pem' })
    .toString();
  return { certPem: cert.toString('pem'), keyPem };
}

// Write beside the target, then rename: a concurrent reader sees the old file or the whole new one.
async function writeAtomically(file: string, data: string, mode: number): Promise<void> {
  const tmp = `${file}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`;
  await writeFile(tmp, data, { mode, flag: 'wx' });
  await rename(tmp, file);
}

export interface WarnLogger {
  warn(obj: object, msg: string): void;
}

/**
 * `tls.self_signed_if_missing` is set and both the certificate and the key file are missing.
 * With one of them there (a mistyped path, a half-copied pair) nothing is generated: a new pair
 * would replace a real private key. The missing file is then reported as any missing file is.
 */
export function needsDevCertificate(tls: Config['tls']): boolean {
  return tls.self_signed_if_missing && !existsSync(tls.cert_file) && !existsSync(tls.key_file);
}

/**
 * When `tls.self_signed_if_missing` is set and the certificate and the key file are missing,
 * writes a fresh self-signed pair to both paths (key mode 0600) and logs a warning.
 * Returns true if it generated one. Expects a path-resolved config (see loadConfigFile).
 */
export async function ensureDevCertificate(config: Config, log?: WarnLogger): Promise<boolean> {
  if (!needsDevCertificate(config.tls)) return false;
  const { cert_file: certFile, key_file: keyFile } = config.tls;

  const { certPem, keyPem } = await createSelfSignedCertificate();
  await mkdir(path.dirname(keyFile), { recursive: true, mode: 0o700 });
  await mkdir(path.dirname(certFile), { recursive: true, mode: 0o700 });
  // Key first: a reader that finds the new certificate also finds its key.
  await writeAtomically(keyFile, keyPem, 0o600);
  await writeAtomically(certFile, certPem, 0o644);
  log?.warn(
    { cert_file: certFile, key_file: keyFile },
    `generated a self-signed development certificate at ${certFile}; do not use in production`,
  );
  return true;
}
