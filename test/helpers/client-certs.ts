// Leaf certificates with chosen subject and subjectAltNames, signed by a test CA (openssl), for
// mTLS allow-list and SNI tests.
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { OPENSSL } from './certs.js';
import { makeTempDir, run } from './common.js';

export interface Leaf {
  certFile: string;
  keyFile: string;
}

let seq = 0;

async function openssl(cwd: string, ...args: string[]): Promise<void> {
  const r = await run(OPENSSL, args, { cwd, timeoutMs: 30_000 });
  if (r.code !== 0) throw new Error(`openssl ${args.join(' ')} failed (${r.code}): ${r.stderr}${r.stdout}`);
}

/**
 * An EC P-256 leaf signed by caFile/caKeyFile. `san` is an openssl subjectAltName value
 * (e.g. 'DNS:a.example, URI:spiffe://x/y') or null; `usage` picks the extendedKeyUsage.
 */
export async function makeLeafCert(ca: { caFile: string; caKeyFile: string }, cn: string, san: string | null, usage: 'clientAuth' | 'serverAuth'): Promise<Leaf> {
  const dir = makeTempDir('resp-tls-proxy-leaf-');
  const name = `leaf${++seq}`;
  const ext = ['basicConstraints=CA:FALSE', 'keyUsage=critical,digitalSignature', `extendedKeyUsage=${usage}`];
  if (san !== null) ext.push(`subjectAltName=${san}`);
  writeFileSync(path.join(dir, `${name}.ext`), `${ext.join('\n')}\n`);
  await openssl(dir, 'genpkey', '-algorithm', 'EC', '-pkeyopt', 'ec_paramgen_curve:P-256', '-out', `${name}.key`);
  await openssl(dir, 'req', '-new', '-key', `${name}.key`, '-subj', `/CN=${cn}`, '-out', `${name}.csr`);
  await openssl(dir, 'x509', '-req', '-in', `${name}.csr`, '-CA', ca.caFile, '-CAkey', ca.caKeyFile, '-CAcreateserial',
    '-CAserial', path.join(dir, `${name}.srl`), '-days', '30', '-sha256', '-extfile', `${name}.ext`, '-out', `${name}.crt`);
  return { certFile: path.join(dir, `${name}.crt`), keyFile: path.join(dir, `${name}.key`) };
}
