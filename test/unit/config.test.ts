import assert from 'node:assert/strict';
import { X509Certificate, createPrivateKey } from 'node:crypto';
import { mkdir, mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import tls from 'node:tls';
import { after, before, describe, it } from 'node:test';
import { createSelfSignedCertificate, ensureDevCertificate } from '../../src/config/devcert.js';
import { ConfigError, checkConfigFile, loadConfigFile, parseConfigText } from '../../src/config/load.js';
import { cgroupCpuQuota, usableCpus } from '../../src/config/cpus.js';
import { clientsPerProcess, configSchema, keepRestartOnly, renderConfigJsonSchema, restartOnlyChanges, workerCount, type Config } from '../../src/config/schema.js';

const repoRoot = new URL('../../../', import.meta.url);

let dir: string;
before(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), 'resp-tls-proxy-config-'));
});
after(async () => {
  await rm(dir, { recursive: true, force: true });
});

async function writeTmp(name: string, text: string): Promise<string> {
  const file = path.join(dir, name);
  await writeFile(file, text);
  return file;
}

/** A certificate and key written under the temp dir; returns the paths. */
async function writePair(prefix: string, validity?: { notBefore?: Date; notAfter?: Date }) {
  const { certPem, keyPem } = await createSelfSignedCertificate(validity);
  return { cert: await writeTmp(`${prefix}.crt`, certPem), key: await writeTmp(`${prefix}.key`, keyPem) };
}

const MINIMAL = 'tls:\n  cert_file: tls.crt\n  key_file: tls.key\n';

describe('parseConfigText', () => {
  it('applies every default when only the tls files are given', () => {
    const { config, problems } = parseConfigText(MINIMAL, 'proxy.yaml');
    assert.deepEqual(problems, []);
    assert.deepEqual(config, {
      listen: { host: '127.0.0.1', port: 6380 },
      tls: {
        cert_file: 'tls.crt',
        key_file: 'tls.key',
        ca_file: null,
        min_version: 'TLSv1.2',
        handshake_timeout_ms: 10000,
        max_handshakes: 256,
        poll_interval_ms: 60000,
        ticket_rotation_ms: 3600000,
        self_signed_if_missing: false,
        allow: null,
        sni: [],
      },
      backend: { host: '127.0.0.1', port: 6379, connect_timeout_ms: 3000 },
      limits: {
        max_multibulk_len: 1048576,
        max_bulk_len: 536870912,
        max_inline_len: 65536,
        max_clients: 10000,
        idle_timeout_ms: 0,
        idle_timeout_pubsub: false,
        tcp_keepalive_ms: 300000,
        tls_overhead_bytes: 131072,
      },
      close: { drain_timeout_ms: 5000, drain_max_bytes: 67108864 },
      shutdown: { grace_ms: 10000 },
      workers: 1,
      admin: { host: '127.0.0.1', port: 9180 },
      log: { level: 'info' },
    });
  });

  it('keeps the values of a complete, valid file', () => {
    const text = [
      'listen: { host: 0.0.0.0, port: 0 }',
      'tls:',
      '  cert_file: /etc/proxy/tls.crt',
      '  key_file: /etc/proxy/tls.key',
      '  ca_file: /etc/proxy/ca.crt',
      '  min_version: TLSv1.3',
      '  handshake_timeout_ms: 2000',
      'backend: { host: redis.internal, port: 6379, connect_timeout_ms: 500 }',
      'limits: { max_multibulk_len: 1024, max_bulk_len: 1048576, max_inline_len: 4096, max_clients: 10, idle_timeout_ms: 60000 }',
      'close: { drain_timeout_ms: 100, drain_max_bytes: 1024 }',
      'shutdown: { grace_ms: 1 }',
      'workers: 0',
      'admin: { host: 127.0.0.1, port: 0 }',
      'log: { level: silent }',
    ].join('\n');
    const { config, problems } = parseConfigText(text, 'proxy.yaml');
    assert.deepEqual(problems, []);
    assert.equal(config?.listen.port, 0);
    assert.equal(config?.tls.ca_file, '/etc/proxy/ca.crt');
    assert.equal(config?.tls.min_version, 'TLSv1.3');
    assert.equal(config?.limits.idle_timeout_ms, 60000);
    assert.equal(config?.workers, 0);
    assert.equal(config?.log.level, 'silent');
  });

  it('reports every problem, each with its file, line and dotted key', () => {
    const text = [
      'tls:', //                        1
      '  cert_file: tls.crt', //        2
      'limits:', //                     3
      '  max_bulk_len: -5', //          4
      '  max_bulk_lne: 10', //          5
      '  key_file: tls.key', //         6 (wrong section: unknown here, and missing from tls)
      'listen: { port: 70000 }', //     7
      'workers: 1.5', //                8
      'log: { level: loud }', //        9
    ].join('\n');
    const { config, problems } = parseConfigText(text, 'proxy.yaml');
    assert.equal(config, null);
    assert.deepEqual(problems, [
      'proxy.yaml:1: tls.key_file: is required',
      'proxy.yaml:4: limits.max_bulk_len: must be a positive integer',
      'proxy.yaml:5: limits.max_bulk_lne: unknown key',
      'proxy.yaml:6: limits.key_file: unknown key',
      'proxy.yaml:7: listen.port: must be an integer from 0 to 65535',
      'proxy.yaml:8: workers: must be an integer from 0 (one per CPU) to 1024',
      'proxy.yaml:9: log.level: must be one of fatal, error, warn, info, debug, trace, silent',
    ]);
  });

  it('names the allowed TLS versions, and rejects non-integers and a negative idle timeout', () => {
    const text = `${MINIMAL}  min_version: TLSv1.1\nlimits:\n  idle_timeout_ms: -1\n  max_clients: many\n`;
    assert.deepEqual(parseConfigText(text, 'p.yaml').problems, [
      'p.yaml:4: tls.min_version: must be one of TLSv1.2, TLSv1.3',
      'p.yaml:6: limits.idle_timeout_ms: must be an integer from 0 to 2147483647 (ms, about 24.8 days)',
      'p.yaml:7: limits.max_clients: must be a positive integer',
    ]);
  });

  it('rejects a time past what a timer can wait (it would fire after 1 ms) and a backend port 0', () => {
    const text = `${MINIMAL}backend: { port: 0, connect_timeout_ms: 4294967296 }\nclose: { drain_timeout_ms: 2147483648 }\nshutdown: { grace_ms: 2147483647 }\n`;
    assert.deepEqual(parseConfigText(text, 'p.yaml').problems, [
      'p.yaml:4: backend.port: must be an integer from 1 to 65535',
      'p.yaml:4: backend.connect_timeout_ms: must be an integer from 1 to 2147483647 (ms, about 24.8 days)',
      'p.yaml:5: close.drain_timeout_ms: must be an integer from 1 to 2147483647 (ms, about 24.8 days)',
    ]);
  });

  /** One key's accepted values (the YAML text, the value parsed) and rejected ones (each with `problem` alone). */
  const assertKey = (yaml: (v: string) => string, get: (c: Config) => unknown, accepted: Array<[string, unknown]>, problem: string, rejected: string[]): void => {
    for (const [text, value] of accepted) assert.equal(get(parseConfigText(yaml(text), 'p.yaml').config!), value, text);
    for (const text of rejected) assert.deepEqual(parseConfigText(yaml(text), 'p.yaml').problems, [problem], text);
  };

  it('takes TCP keepalive off (0) or from 1 s: below, probes would start at once', () => {
    assertKey((v) => `${MINIMAL}limits: { tcp_keepalive_ms: ${v} }\n`, (c) => c.limits.tcp_keepalive_ms, [['0', 0], ['1000', 1000]],
      'p.yaml:4: limits.tcp_keepalive_ms: must be 0 (off) or an integer from 1000 to 2147483647 (ms)', ['999', '-1', '2147483648']);
  });

  it('rotates ticket keys no more often than once a second', () => {
    assertKey((v) => `${MINIMAL}  ticket_rotation_ms: ${v}\n`, (c) => c.tls.ticket_rotation_ms, [['1000', 1000], ['86400000', 86400000]],
      'p.yaml:4: tls.ticket_rotation_ms: must be an integer from 1000 to 2147483647 (ms)', ['999', '0']);
  });

  it('takes the TLS overhead limit off (0) or as bytes', () => {
    assertKey((v) => `${MINIMAL}limits: { tls_overhead_bytes: ${v} }\n`, (c) => c.limits.tls_overhead_bytes, [['0', 0], ['1048576', 1048576]],
      'p.yaml:4: limits.tls_overhead_bytes: must be 0 (no limit) or a positive integer (bytes)', ['-1', '1.5', '"128k"']);
  });

  it('rejects an allow list that names no identity: it would refuse every client', () => {
    const allow = (v: string) => parseConfigText(`${MINIMAL}  ca_file: ca.crt\n  allow: ${v}\n`, 'p.yaml').problems;
    const problem = ['p.yaml:5: tls.allow: names no identity, so no client would be served: list at least one cn, dns_san or uri_san, or leave allow null to serve every client the CA signed'];
    assert.deepEqual(allow('{}'), problem);
    assert.deepEqual(allow('{ cn: [], uri_san: [] }'), problem);
    assert.deepEqual(allow('{ uri_san: ["spiffe://prod/app"] }'), []);
    assert.deepEqual(allow('null'), []);
  });

  it('rejects an admin port that clashes with the listener, unless they bind different addresses', () => {
    const clash = (listen: string, admin: string) => parseConfigText(`${MINIMAL}listen: ${listen}\nadmin: ${admin}\n`, 'p.yaml').problems;
    const problem = ['p.yaml:5: admin.port: must differ from listen.port on the same address'];
    assert.deepEqual(clash('{ port: 7000 }', '{ port: 7000 }'), problem);
    assert.deepEqual(clash('{ host: 0.0.0.0, port: 7000 }', '{ host: 127.0.0.2, port: 7000 }'), problem);
    assert.deepEqual(clash('{ port: 7000 }', '{ host: 127.0.0.2, port: 7000 }'), []);
    assert.deepEqual(clash('{ port: 0 }', '{ port: 0 }'), []); // each gets its own free port
  });

  it('rejects an admin port on localhost that clashes with a listener on a loopback address, and 100,000 workers', () => {
    const problems = (extra: string) => parseConfigText(`${MINIMAL}${extra}`, 'p.yaml').problems;
    assert.deepEqual(problems('listen: { host: 127.0.0.1, port: 7000 }\nadmin: { host: localhost, port: 7000 }\n'), ['p.yaml:5: admin.port: must differ from listen.port on the same address']);
    assert.deepEqual(problems('listen: { host: "::1", port: 7000 }\nadmin: { host: 127.0.0.1, port: 7000 }\n'), []); // two sockets
    assert.deepEqual(problems('listen: { host: LOCALHOST, port: 7000 }\nadmin: { host: localhost, port: 7000 }\n'), ['p.yaml:5: admin.port: must differ from listen.port on the same address']);
    assert.deepEqual(problems('workers: 100000\n'), ['p.yaml:4: workers: must be an integer from 0 (one per CPU) to 1024']);
    assert.deepEqual(problems('workers: 1024\n'), []);
  });

  it('rejects a tls.sni servername that is no DNS name, and one served twice', () => {
    const sni = (names: string[]) =>
      parseConfigText(`${MINIMAL}  sni:\n${names.map((n) => `    - { servername: ${JSON.stringify(n)}, cert_file: a.crt, key_file: a.key }\n`).join('')}`, 'p.yaml').problems;
    assert.deepEqual(sni(['redis.example.com', '*.cache.example.com', 'localhost', 'a-1.b2.test', 'redis_cache', 'Other.Example.COM']), []);
    const notDns = 'must be a host name ("redis.example.com"), or "*." and one (a wildcard for one label)';
    assert.deepEqual(sni(['bad name with spaces', '', '*.', 'a..b', '-a.test', 'redis.*.test', `${'x'.repeat(64)}.test`, 'trailing.dot.']), [
      `p.yaml:5: tls.sni.0.servername: ${notDns}`,
      `p.yaml:6: tls.sni.1.servername: ${notDns}`,
      `p.yaml:7: tls.sni.2.servername: ${notDns}`,
      `p.yaml:8: tls.sni.3.servername: ${notDns}`,
      `p.yaml:9: tls.sni.4.servername: ${notDns}`,
      `p.yaml:10: tls.sni.5.servername: ${notDns}`,
      `p.yaml:11: tls.sni.6.servername: ${notDns}`,
      `p.yaml:12: tls.sni.7.servername: ${notDns}`,
    ]);
    assert.deepEqual(sni(['a.test', 'b.test', 'A.Test']), ['p.yaml:7: tls.sni.2.servername: servername "A.Test" is already served by tls.sni.0']);
  });

  it('reports an unknown top-level key and a section that is not a mapping', () => {
    const text = `${MINIMAL}listn: {}\nadmin: 9180\n`;
    assert.deepEqual(parseConfigText(text, 'p.yaml').problems, [
      'p.yaml:4: listn: unknown key',
      'p.yaml:5: admin: must be a mapping',
    ]);
  });

  it('reports a YAML syntax error with its line', () => {
    const { config, problems } = parseConfigText(`${MINIMAL}limits:\n  max_bulk_len: [1, 2\n`, 'p.yaml');
    assert.equal(config, null);
    assert.equal(problems.length, 1);
    assert.match(problems[0]!, /^p\.yaml:\d+: YAML syntax error: /);
    assert.match(problems[0]!, /^p\.yaml:(5|6):/);
  });

  it('reports duplicate keys', () => {
    const { problems } = parseConfigText(`${MINIMAL}workers: 1\nworkers: 2\n`, 'p.yaml');
    assert.deepEqual(problems, ['p.yaml:5: YAML syntax error: map keys must be unique']);
  });

  it('reports a missing tls.cert_file at the line of tls, and a missing tls at line 1', () => {
    assert.deepEqual(parseConfigText('workers: 1\ntls:\n  key_file: k\n', 'p.yaml').problems, [
      'p.yaml:2: tls.cert_file: is required',
    ]);
    assert.deepEqual(parseConfigText('workers: 1\n', 'p.yaml').problems, ['p.yaml:1: tls: is required']);
    assert.deepEqual(parseConfigText('', 'p.yaml').problems, ['p.yaml:1: tls: is required']);
  });

  it('treats an empty tls.cert_file as a problem', () => {
    assert.deepEqual(parseConfigText('tls:\n  key_file: k\n  cert_file:\n', 'p.yaml').problems, [
      'p.yaml:3: tls.cert_file: must be a string',
    ]);
  });
});

describe('config/default.yaml and config/schema.json', () => {
  it('default.yaml is valid, points the editor at the schema and spells out the schema defaults', async () => {
    const text = await readFile(new URL('config/default.yaml', repoRoot), 'utf8');
    assert.equal(text.split('\n')[0], '# yaml-language-server: $schema=./schema.json');
    const { config, problems } = parseConfigText(text, 'default.yaml');
    assert.deepEqual(problems, []);
    const expected = configSchema.parse({
      tls: { cert_file: 'dev/tls.crt', key_file: 'dev/tls.key', self_signed_if_missing: true },
    });
    assert.deepEqual(config, expected);
  });

  it('the committed schema.json is what the zod schema generates (npm run schema)', async () => {
    const committed = await readFile(new URL('config/schema.json', repoRoot), 'utf8');
    assert.equal(committed, renderConfigJsonSchema());
  });

  it('schema.json requires only tls.cert_file and tls.key_file and forbids unknown keys', () => {
    const schema = JSON.parse(renderConfigJsonSchema()) as {
      required: string[];
      additionalProperties: boolean;
      properties: Record<string, { required?: string[]; additionalProperties?: boolean }>;
    };
    assert.deepEqual(schema.required, ['tls']);
    assert.equal(schema.additionalProperties, false);
    assert.deepEqual(schema.properties.tls?.required, ['cert_file', 'key_file']);
    for (const [name, section] of Object.entries(schema.properties)) {
      if (name === 'tls') continue;
      assert.equal(section.required, undefined, name);
    }
  });
});

describe('loadConfigFile', () => {
  it('resolves tls paths against the folder of the config file', async () => {
    const file = await writeTmp('relative.yaml', `${MINIMAL}  ca_file: ../ca/ca.crt\n`);
    const config = loadConfigFile(file);
    assert.equal(config.tls.cert_file, path.join(dir, 'tls.crt'));
    assert.equal(config.tls.key_file, path.join(dir, 'tls.key'));
    assert.equal(config.tls.ca_file, path.join(path.dirname(dir), 'ca', 'ca.crt'));
  });

  it('keeps absolute paths as they are', async () => {
    const file = await writeTmp('absolute.yaml', 'tls: { cert_file: /etc/a.crt, key_file: /etc/a.key }\n');
    const config = loadConfigFile(file);
    assert.equal(config.tls.cert_file, '/etc/a.crt');
    assert.equal(config.tls.ca_file, null);
  });

  it('throws ConfigError (ERR_CONFIG) listing every problem, labelled with the path as given', async () => {
    const file = await writeTmp('bad.yaml', `${MINIMAL}limits:\n  max_bulk_len: 0\nbogus: 1\n`);
    assert.throws(
      () => loadConfigFile(file),
      (err: unknown) => {
        assert.ok(err instanceof ConfigError);
        assert.equal(err.code, 'ERR_CONFIG');
        assert.deepEqual(err.problems, [
          `${file}:5: limits.max_bulk_len: must be a positive integer`,
          `${file}:6: bogus: unknown key`,
        ]);
        return true;
      },
    );
  });

  it('throws ConfigError for a file it cannot read', () => {
    const file = path.join(dir, 'nope.yaml');
    assert.throws(() => loadConfigFile(file), (err: unknown) => {
      assert.ok(err instanceof ConfigError);
      assert.match(err.problems[0]!, /nope\.yaml: cannot read the configuration file: ENOENT/);
      return true;
    });
  });
});

describe('checkConfigFile', () => {
  it('passes a valid file with a matching certificate and key', async () => {
    await writePair('good');
    const file = await writeTmp('good.yaml', 'tls:\n  cert_file: good.crt\n  key_file: good.key\n');
    assert.deepEqual(await checkConfigFile(file), []);
  });

  it('names tls.key_file, at its line, when the key does not match the certificate', async () => {
    const a = await writePair('pair-a');
    const b = await writePair('pair-b');
    const file = await writeTmp('mismatch.yaml', `workers: 1\ntls:\n  cert_file: ${a.cert}\n  key_file: ${b.key}\n`);
    assert.deepEqual(await checkConfigFile(file), [
      `${file}:4: tls.key_file: ${b.key} does not match the certificate in tls.cert_file`,
    ]);
  });

  it('reports unreadable and unparsable files at the line of their key', async () => {
    const garbage = await writeTmp('garbage.pem', 'not a pem\n');
    const file = await writeTmp(
      'unreadable.yaml',
      `tls:\n  cert_file: missing.crt\n  key_file: ${garbage}\n  ca_file: ${garbage}\n`,
    );
    const problems = await checkConfigFile(file);
    assert.equal(problems.length, 3);
    assert.match(problems[0]!, new RegExp(`^${file}:2: tls\\.cert_file: cannot read .*missing\\.crt: ENOENT`));
    assert.match(problems[1]!, new RegExp(`^${file}:3: tls\\.key_file: .*garbage\\.pem is not a valid PEM private key`));
    assert.equal(problems[2], `${file}:4: tls.ca_file: ${garbage} holds no PEM certificate`);
  });

  it('reports an expired certificate', async () => {
    const old = await writePair('expired', {
      notBefore: new Date(Date.now() - 10 * 86_400_000),
      notAfter: new Date(Date.now() - 86_400_000),
    });
    const file = await writeTmp('expired.yaml', `tls:\n  cert_file: ${old.cert}\n  key_file: ${old.key}\n`);
    const problems = await checkConfigFile(file);
    assert.equal(problems.length, 1);
    assert.match(problems[0]!, new RegExp(`^${file}:2: tls\\.cert_file: certificate expired on `));
  });

  it('reports an expired or not yet valid tls.sni certificate, an unreadable or mismatched tls.sni key, each at its entry', async () => {
    const good = await writePair('sni-main');
    const expired = await writePair('sni-expired', { notBefore: new Date(Date.now() - 10 * 86_400_000), notAfter: new Date(Date.now() - 86_400_000) });
    const future = await writePair('sni-future', { notBefore: new Date(Date.now() + 86_400_000), notAfter: new Date(Date.now() + 10 * 86_400_000) });
    const file = await writeTmp('sni-expired.yaml', [
      'tls:',
      `  cert_file: ${good.cert}`,
      `  key_file: ${good.key}`,
      '  sni:',
      `    - { servername: a.test, cert_file: ${good.cert}, key_file: ${good.key} }`,
      '    - servername: b.test',
      `      cert_file: ${expired.cert}`,
      `      key_file: ${expired.key}`,
      `    - { servername: c.test, cert_file: ${future.cert}, key_file: ${future.key} }`,
      `    - { servername: d.test, cert_file: ${good.cert}, key_file: ${path.join(dir, 'absent.key')} }`,
      `    - { servername: e.test, cert_file: ${good.cert}, key_file: ${expired.key} }`,
      '',
    ].join('\n'));
    const problems = await checkConfigFile(file);
    assert.equal(problems.length, 4, problems.join('\n'));
    // Every problem in one pass, each at its entry.
    assert.match(problems[2]!, new RegExp(`^${file}:10: tls\\.sni\\.3\\.key_file: cannot read .*absent\\.key: ENOENT`));
    assert.equal(problems[3], `${file}:11: tls.sni.4.key_file: ${expired.key} does not match the certificate in tls.sni.4.cert_file`);
    assert.match(problems[0]!, new RegExp(`^${file}:7: tls\\.sni\\.1\\.cert_file: certificate expired on `));
    assert.match(problems[1]!, new RegExp(`^${file}:9: tls\\.sni\\.2\\.cert_file: certificate is not valid before `));
  });

  it('accepts a valid CA file', async () => {
    const server = await writePair('ca-server');
    const ca = await writePair('ca-ca');
    const file = await writeTmp('ca.yaml', `tls:\n  cert_file: ${server.cert}\n  key_file: ${server.key}\n  ca_file: ${ca.cert}\n`);
    assert.deepEqual(await checkConfigFile(file), []);
  });

  it('does not count missing files as a problem when self_signed_if_missing is set', async () => {
    const file = await writeTmp('selfsigned.yaml', 'tls:\n  cert_file: none/x.crt\n  key_file: none/x.key\n  self_signed_if_missing: true\n');
    assert.deepEqual(await checkConfigFile(file), []);
  });

  it('returns the schema problems first, without touching the certificate files', async () => {
    const file = await writeTmp('schema-bad.yaml', 'tls:\n  cert_file: missing.crt\n  key_file: missing.key\nworkers: -1\n');
    assert.deepEqual(await checkConfigFile(file), [`${file}:4: workers: must be an integer from 0 (one per CPU) to 1024`]);
  });
});

describe('ensureDevCertificate', () => {
  it('writes a matching self-signed pair that TLS accepts and a client can verify', async () => {
    const file = await writeTmp('dev.yaml', 'tls:\n  cert_file: dev/tls.crt\n  key_file: dev/tls.key\n  self_signed_if_missing: true\n');
    const config = loadConfigFile(file);
    const warnings: string[] = [];
    const generated = await ensureDevCertificate(config, { warn: (_obj, msg) => void warnings.push(msg) });
    assert.equal(generated, true);
    assert.equal(warnings.length, 1);
    assert.match(warnings[0]!, /generated a self-signed development certificate at .*dev\/tls\.crt; do not use in production/);

    const certPem = await readFile(config.tls.cert_file);
    const keyPem = await readFile(config.tls.key_file);
    assert.equal((await stat(config.tls.key_file)).mode & 0o777, 0o600);
    assert.match(keyPem.toString(), /^-----BEGIN PRIVATE KEY-----/);
    const cert = new X509Certificate(certPem);
    assert.ok(cert.checkPrivateKey(createPrivateKey(keyPem)));
    assert.equal(cert.subject, 'CN=localhost');
    assert.match(cert.subjectAltName ?? '', /DNS:localhost/);
    assert.match(cert.subjectAltName ?? '', /IP Address:127\.0\.0\.1/);
    const days = (Date.parse(cert.validTo) - Date.parse(cert.validFrom)) / 86_400_000;
    assert.ok(days >= 364 && days <= 366, `valid for ${days} days`);
    assert.deepEqual(await checkConfigFile(file), []);

    // A real handshake, the client verifying the certificate by name and by IP.
    const server = tls.createServer({ cert: certPem, key: keyPem }, (socket) => socket.end('hi'));
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const { port } = server.address() as AddressInfo;
    try {
      for (const servername of ['localhost', undefined]) {
        const reply = await new Promise<string>((resolve, reject) => {
          const socket = tls.connect({ host: '127.0.0.1', port, ca: certPem, servername }, () => {
            let data = '';
            socket.setEncoding('utf8');
            socket.on('data', (chunk: string) => (data += chunk));
            socket.on('end', () => resolve(data));
          });
          socket.on('error', reject);
        });
        assert.equal(reply, 'hi');
      }
    } finally {
      await new Promise((resolve) => server.close(resolve));
    }

    // Second call: both files exist, nothing to do.
    assert.equal(await ensureDevCertificate(config), false);
    assert.deepEqual(await readFile(config.tls.cert_file), certPem);
  });

  it('leaves an existing key alone when only the certificate is missing (and the reverse), and reports the missing file', async () => {
    for (const present of ['key', 'cert'] as const) {
      const file = await writeTmp(`half-${present}.yaml`, `tls:\n  cert_file: half-${present}/tls.crt\n  key_file: half-${present}/tls.key\n  self_signed_if_missing: true\n`);
      const config = loadConfigFile(file);
      const there = present === 'key' ? config.tls.key_file : config.tls.cert_file;
      const missing = present === 'key' ? config.tls.cert_file : config.tls.key_file;
      await mkdir(path.dirname(there), { recursive: true });
      await writeFile(there, 'the real one\n');
      assert.equal(await ensureDevCertificate(config), false, `generated over an existing ${present}`);
      assert.equal(await readFile(there, 'utf8'), 'the real one\n');
      await assert.rejects(stat(missing), { code: 'ENOENT' });
      const problems = await checkConfigFile(file);
      assert.ok(problems.some((p) => p.includes(missing)), `--check does not name ${missing}: ${problems.join('; ')}`);
    }
  });

  it('does nothing unless self_signed_if_missing is set', async () => {
    const file = await writeTmp('nodev.yaml', 'tls:\n  cert_file: nodev/tls.crt\n  key_file: nodev/tls.key\n');
    const config = loadConfigFile(file);
    assert.equal(await ensureDevCertificate(config), false);
    await assert.rejects(stat(config.tls.cert_file), { code: 'ENOENT' });
  });
});

describe('clientsPerProcess: the workers split limits.max_clients', () => {
  it('into shares that add up to exactly the limit, differing by one at most', () => {
    for (const max of [1, 2, 3, 7, 10, 10000, 10001]) {
      for (const workers of [1, 2, 3, 4, 16]) {
        const config = configSchema.parse({ tls: { cert_file: 'c', key_file: 'k' }, limits: { max_clients: max } });
        const shares = Array.from({ length: workers }, (_, slot) => clientsPerProcess(config, { slot, of: workers }));
        assert.equal(shares.reduce((a, b) => a + b, 0), max, `${max} over ${workers}: ${shares.join(' ')}`);
        assert.ok(Math.max(...shares) - Math.min(...shares) <= 1, `${max} over ${workers}: ${shares.join(' ')}`);
      }
    }
  });
});

describe('workerCount', () => {
  it('is workers, one per CPU for 0, and never more than max_clients (a worker without a share would refuse everyone)', () => {
    const config = (workers: number, max: number) => configSchema.parse({ tls: { cert_file: 'c', key_file: 'k' }, workers, limits: { max_clients: max } });
    assert.equal(workerCount(config(4, 100)), 4);
    assert.equal(workerCount(config(0, 10_000)), usableCpus());
    assert.equal(workerCount(config(8, 3)), 3);
    assert.equal(workerCount(config(0, 1)), 1);
  });
});

describe('usable CPUs: the cgroup CPU quota counts (Node 20 does not apply it to availableParallelism)', () => {
  /** A /proc/self/cgroup and a /sys/fs/cgroup laid out under the temp dir. */
  async function layout(name: string, membership: string, files: Record<string, string>) {
    const root = path.join(dir, name);
    for (const [rel, text] of Object.entries(files)) {
      await mkdir(path.dirname(path.join(root, 'sys', rel)), { recursive: true });
      await writeFile(path.join(root, 'sys', rel), text);
    }
    await mkdir(path.join(root, 'sys'), { recursive: true });
    await writeFile(path.join(root, 'cgroup'), membership);
    return { procSelfCgroup: path.join(root, 'cgroup'), cgroupRoot: path.join(root, 'sys') };
  }

  it('reads cgroup v2 cpu.max, the tightest of the folder and those above it', async () => {
    const v2 = await layout('v2', '0::/kubepods/pod1/c1\n', {
      'cpu.max': 'max 100000\n',
      'kubepods/pod1/cpu.max': '150000 100000\n',
      'kubepods/pod1/c1/cpu.max': 'max 100000\n',
    });
    assert.equal(cgroupCpuQuota(v2), 1.5);
    const inner = await layout('v2-inner', '0::/a/b\n', { 'a/cpu.max': '400000 100000\n', 'a/b/cpu.max': '50000 100000\n' });
    assert.equal(cgroupCpuQuota(inner), 0.5);
    assert.equal(usableCpus(inner), 1, 'half a CPU still runs one worker');
    const none = await layout('v2-none', '0::/\n', { 'cpu.max': 'max 100000\n' });
    assert.equal(cgroupCpuQuota(none), null);
    assert.equal(usableCpus(none), os.availableParallelism());
  });

  it('reads cgroup v1 cpu.cfs_quota_us / cpu.cfs_period_us (-1: no quota), also when the container sees its own cgroup at the root', async () => {
    const v1 = await layout('v1', '4:memory:/docker/abc\n3:cpu,cpuacct:/docker/abc\n1:name=systemd:/docker/abc\n', {
      'cpu,cpuacct/cpu.cfs_quota_us': '-1\n',
      'cpu,cpuacct/cpu.cfs_period_us': '100000\n',
      'cpu,cpuacct/docker/abc/cpu.cfs_quota_us': '200000\n',
      'cpu,cpuacct/docker/abc/cpu.cfs_period_us': '100000\n',
    });
    assert.equal(cgroupCpuQuota(v1), 2);
    // Without a cgroup namespace the path names the host's folder, which the container does not
    // have; its own cgroup is mounted at the root.
    const mounted = await layout('v1-mounted', '3:cpu,cpuacct:/docker/abc\n', {
      'cpu,cpuacct/cpu.cfs_quota_us': '100000\n',
      'cpu,cpuacct/cpu.cfs_period_us': '100000\n',
    });
    assert.equal(cgroupCpuQuota(mounted), 1);
    assert.equal(usableCpus(mounted), 1);
    const unlimited = await layout('v1-none', '3:cpu,cpuacct:/\n', { 'cpu,cpuacct/cpu.cfs_quota_us': '-1\n', 'cpu,cpuacct/cpu.cfs_period_us': '100000\n' });
    assert.equal(cgroupCpuQuota(unlimited), null);
  });

  it('answers null when the files are not there (not Linux, no cgroup mounted)', () => {
    assert.equal(cgroupCpuQuota({ procSelfCgroup: path.join(dir, 'nothing'), cgroupRoot: path.join(dir, 'nothing-either') }), null);
  });
});

describe('restart-only keys', () => {
  const running = configSchema.parse({ tls: { cert_file: '/c.pem', key_file: '/k.pem' }, backend: { host: 'a', port: 6379 } });
  const next = configSchema.parse({
    tls: { cert_file: '/c2.pem', key_file: '/k2.pem', handshake_timeout_ms: 2000, ticket_rotation_ms: 60000 },
    backend: { host: 'b', port: 6380 },
    listen: { port: 7000 },
    admin: { port: 9999 },
    workers: 4,
    limits: { max_clients: 5 },
    log: { level: 'warn' },
  });

  it('restartOnlyChanges names listen, admin, workers, tls.handshake_timeout_ms and tls.ticket_rotation_ms when they change', () => {
    assert.deepEqual(restartOnlyChanges(running, next), ['listen', 'admin', 'workers', 'tls.handshake_timeout_ms', 'tls.ticket_rotation_ms']);
    assert.deepEqual(restartOnlyChanges(running, running), []);
  });

  it('keepRestartOnly takes exactly those from the running config and everything else from the new one', () => {
    const adopted = keepRestartOnly(running, next);
    assert.deepEqual(restartOnlyChanges(running, adopted), []);
    assert.deepEqual(adopted, { ...next, listen: running.listen, admin: running.admin, workers: running.workers, tls: { ...next.tls, handshake_timeout_ms: running.tls.handshake_timeout_ms, ticket_rotation_ms: running.tls.ticket_rotation_ms } });
    assert.equal(adopted.backend.host, 'b');
    assert.equal(adopted.limits.max_clients, 5);
    assert.equal(adopted.tls.cert_file, '/c2.pem');
  });
});
