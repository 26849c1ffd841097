import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, before, describe, it } from 'node:test';
import { formatCloseTable, metricsUrl, parseCloseCounts } from '../../src/admin/stats.js';
import { createSelfSignedCertificate } from '../../src/config/devcert.js';

const CLI = fileURLToPath(new URL('../../src/cli.js', import.meta.url));
const repoRoot = new URL('../../../', import.meta.url);

interface Result {
  code: number | null;
  stdout: string;
  stderr: string;
}

// Asynchronous on purpose: the stats tests serve /metrics from this very process.
function cli(args: string[], env: NodeJS.ProcessEnv = {}): Promise<Result> {
  const childEnv = { ...process.env, ...env };
  if (!('RESP_TLS_PROXY_CONFIG' in env)) delete childEnv.RESP_TLS_PROXY_CONFIG;
  return new Promise((resolve) => {
    execFile(process.execPath, [CLI, ...args], { env: childEnv, timeout: 20_000 }, (err, stdout, stderr) => {
      const code = err ? (typeof err.code === 'number' ? err.code : null) : 0;
      resolve({ code, stdout, stderr });
    });
  });
}

let dir: string;
let goodConfig: string;
let mismatchConfig: string;

before(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), 'resp-tls-proxy-cli-'));
  const a = await createSelfSignedCertificate();
  const b = await createSelfSignedCertificate();
  await writeFile(path.join(dir, 'a.crt'), a.certPem);
  await writeFile(path.join(dir, 'a.key'), a.keyPem);
  await writeFile(path.join(dir, 'b.key'), b.keyPem);
  goodConfig = path.join(dir, 'good.yaml');
  await writeFile(goodConfig, 'tls:\n  cert_file: a.crt\n  key_file: a.key\n');
  mismatchConfig = path.join(dir, 'mismatch.yaml');
  await writeFile(mismatchConfig, 'tls:\n  cert_file: a.crt\n  key_file: b.key\n');
});
after(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe('resp-tls-proxy --check', () => {
  it('prints "config ok" and exits 0 for a valid file', async () => {
    const r = await cli(['--check', '--config', goodConfig]);
    assert.equal(r.stdout, 'config ok\n');
    assert.equal(r.stderr, '');
    assert.equal(r.code, 0);
  });

  it('takes the file from RESP_TLS_PROXY_CONFIG', async () => {
    const r = await cli(['--check'], { RESP_TLS_PROXY_CONFIG: goodConfig });
    assert.equal(r.stdout, 'config ok\n');
    assert.equal(r.code, 0);
  });

  it('exits 2 naming tls.key_file when key and certificate do not match', async () => {
    const r = await cli(['--check', '--config', mismatchConfig]);
    assert.equal(r.code, 2);
    assert.equal(r.stdout, '');
    assert.match(r.stderr, new RegExp(`^${mismatchConfig}:3: tls\\.key_file: .*does not match the certificate`));
  });

  it('checks every tls.sni certificate and key as the proxy loads them: a matching pair passes, a mismatched or missing one exits 2 naming the entry', async () => {
    const sni = (cert: string, key: string) => `tls:\n  cert_file: a.crt\n  key_file: a.key\n  sni:\n    - { servername: b.test, cert_file: ${cert}, key_file: ${key} }\n`;
    const good = path.join(dir, 'sni-good.yaml');
    await writeFile(good, sni('a.crt', 'a.key'));
    assert.deepEqual(await cli(['--check', '--config', good]), { code: 0, stdout: 'config ok\n', stderr: '' });

    const mismatched = path.join(dir, 'sni-mismatch.yaml');
    await writeFile(mismatched, sni('a.crt', 'b.key'));
    const r = await cli(['--check', '--config', mismatched]);
    assert.equal(r.code, 2);
    assert.match(r.stderr, /^.*sni-mismatch\.yaml:5: tls\.sni\.0\.key_file: .*b\.key does not match the certificate in tls\.sni\.0\.cert_file\n$/);

    const missing = path.join(dir, 'sni-missing.yaml');
    await writeFile(missing, sni('a.crt', 'nowhere.key'));
    const m = await cli(['--check', '--config', missing]);
    assert.equal(m.code, 2);
    assert.match(m.stderr, /nowhere\.key/);
  });

  it('exits 2 naming listen.host and admin.host when they do not resolve (the backend host is not looked up)', async () => {
    const file = path.join(dir, 'hosts.yaml');
    await writeFile(file, 'tls:\n  cert_file: a.crt\n  key_file: a.key\nlisten:\n  host: not a host\nadmin:\n  host: 256.1.1.1\nbackend:\n  host: nowhere.invalid\n');
    const r = await cli(['--check', '--config', file]);
    assert.equal(r.code, 2, r.stderr);
    assert.equal(r.stdout, '');
    assert.match(r.stderr, new RegExp(`^${file}:5: listen\\.host: does not resolve: \\S+\n${file}:7: admin\\.host: does not resolve: \\S+\n$`));
  });

  it('exits 2 with one line per schema problem, labelled with the path as given', async () => {
    await writeFile(path.join(dir, 'bad.yaml'), 'tls:\n  cert_file: a.crt\n  key_file: a.key\nlimits:\n  max_bulk_len: -1\n  max_bulk_lne: 3\n');
    const r = await new Promise<Result>((resolve) => {
      execFile(process.execPath, [CLI, '--check', '--config', 'bad.yaml'], { cwd: dir }, (err, stdout, stderr) =>
        resolve({ code: err ? (err.code as number) : 0, stdout, stderr }),
      );
    });
    assert.equal(r.code, 2);
    assert.equal(
      r.stderr,
      'bad.yaml:5: limits.max_bulk_len: must be a positive integer\nbad.yaml:6: limits.max_bulk_lne: unknown key\n',
    );
  });

  it('validates config/default.yaml', async () => {
    const r = await cli(['--check', '--config', fileURLToPath(new URL('config/default.yaml', repoRoot))]);
    assert.equal(r.stdout, 'config ok\n');
    assert.equal(r.code, 0);
  });
});

describe('resp-tls-proxy arguments', () => {
  it('--version prints the package version', async () => {
    const pkg = JSON.parse(await readFile(new URL('package.json', repoRoot), 'utf8')) as { version: string };
    const r = await cli(['--version']);
    assert.equal(r.stdout, `${pkg.version}\n`);
    assert.equal(r.code, 0);
  });

  it('--help prints usage to stdout and exits 0', async () => {
    const r = await cli(['--help']);
    assert.match(r.stdout, /^Usage:/);
    assert.match(r.stdout, /--check/);
    assert.equal(r.code, 0);
  });

  it('exits 2 with usage when no config is given', async () => {
    const r = await cli([]);
    assert.equal(r.code, 2);
    assert.match(r.stderr, /no configuration file/);
    assert.match(r.stderr, /Usage:/);
  });

  it('exits 2 with usage on an unknown flag', async () => {
    const r = await cli(['--config', goodConfig, '--frobnicate']);
    assert.equal(r.code, 2);
    assert.match(r.stderr, /--frobnicate/);
    assert.match(r.stderr, /Usage:/);
  });

  it('exits 2 with usage on an unknown command', async () => {
    const r = await cli(['statz']);
    assert.equal(r.code, 2);
    assert.match(r.stderr, /unknown command: statz/);
  });

  it('exits 2 listing the problems when the config does not load (normal mode)', async () => {
    const bad = path.join(dir, 'run-bad.yaml');
    await writeFile(bad, 'tls:\n  cert_file: a.crt\nworkers: -2\n');
    const r = await cli(['--config', bad]);
    assert.equal(r.code, 2);
    assert.equal(r.stderr, `${bad}:1: tls.key_file: is required\n${bad}:3: workers: must be an integer from 0 (one per CPU) to 1024\n`);
  });

  it('exits 2 naming the keys and files when the certificate files do not load at start (normal mode), as --check does', async () => {
    const ports = 'listen: { host: 127.0.0.1, port: 0 }\nadmin: { host: 127.0.0.1, port: 0 }\n';
    const mismatched = path.join(dir, 'run-mismatch.yaml');
    await writeFile(mismatched, `${ports}tls:\n  cert_file: a.crt\n  key_file: b.key\n`);
    const noCa = path.join(dir, 'run-no-ca.yaml');
    await writeFile(noCa, `${ports}tls:\n  cert_file: a.crt\n  key_file: a.key\n  ca_file: good.yaml\n`);
    const missing = path.join(dir, 'run-missing.yaml');
    await writeFile(missing, `${ports}tls:\n  cert_file: none.crt\n  key_file: a.key\n`);
    // With workers, the primary loads them before it forks: one line, exit 2 (not each worker's, then 1).
    const workers = path.join(dir, 'run-mismatch-workers.yaml');
    await writeFile(workers, `${ports}workers: 2\ntls:\n  cert_file: a.crt\n  key_file: b.key\n`);
    const [m, c, n, w] = await Promise.all([cli(['--config', mismatched]), cli(['--config', noCa]), cli(['--config', missing]), cli(['--config', workers])]);
    assert.equal(m.code, 2, m.stderr);
    assert.match(m.stderr, /^tls\.cert_file, tls\.key_file \(.*a\.crt, .*b\.key\): .*key values mismatch\n$/);
    assert.equal(w.code, 2, w.stderr);
    assert.equal(w.stderr, m.stderr);
    // OpenSSL takes a CA file without a certificate in silence; then no client certificate verifies.
    assert.equal(c.code, 2, c.stderr);
    assert.match(c.stderr, /^tls\.ca_file: .*good\.yaml holds no PEM certificate\n$/);
    assert.equal(n.code, 2, n.stderr);
    assert.match(n.stderr, /^tls\.cert_file: cannot read .*none\.crt \(ENOENT\)\n$/);
  });

  it('exits 2 when the config file does not exist', async () => {
    const r = await cli(['--config', path.join(dir, 'absent.yaml')]);
    assert.equal(r.code, 2);
    assert.match(r.stderr, /absent\.yaml: cannot read the configuration file: ENOENT/);
  });
});

const METRICS = `# HELP resp_tls_proxy_client_closes_total Client connections closed, by how and why.
# TYPE resp_tls_proxy_client_closes_total counter
resp_tls_proxy_client_closes_total{mode="graceful",reason="client_closed"} 12
resp_tls_proxy_client_closes_total{reason="protocol_error",mode="graceful"} 3
resp_tls_proxy_client_closes_total{mode="abrupt",reason="client_reset"} 2
resp_tls_proxy_client_closes_total{mode="abrupt",reason="shutdown"} 1
resp_tls_proxy_client_closes_total{mode="graceful",reason="shutdown"} 4
# HELP resp_tls_proxy_connections_total Connections accepted.
# TYPE resp_tls_proxy_connections_total counter
resp_tls_proxy_connections_total 22
`;

describe('stats', () => {
  it('parses close counts by reason and mode, whatever the label order', () => {
    const counts = parseCloseCounts(METRICS);
    assert.ok(counts);
    assert.deepEqual(counts.get('client_closed'), { graceful: 12, abrupt: 0 });
    assert.deepEqual(counts.get('protocol_error'), { graceful: 3, abrupt: 0 });
    assert.deepEqual(counts.get('shutdown'), { graceful: 4, abrupt: 1 });
    assert.equal(counts.has('connections_total'), false);
    assert.equal(parseCloseCounts('# nothing here\nup 1\n'), null);
  });

  it('formats every reason of the contract plus totals', () => {
    const table = formatCloseTable(parseCloseCounts(METRICS)!);
    const lines = table.trimEnd().split('\n');
    assert.match(lines[0]!, /^reason\s+graceful\s+abrupt$/);
    assert.match(table, /^client_closed\s+12\s+0$/m);
    assert.match(table, /^backend_unavailable\s+0\s+0$/m);
    assert.match(table, /^shutdown\s+4\s+1$/m);
    assert.match(lines.at(-1)!, /^total\s+19\s+3$/);
  });

  it('derives the /metrics URL from the admin URL', () => {
    assert.equal(metricsUrl('http://127.0.0.1:9180').href, 'http://127.0.0.1:9180/metrics');
    assert.equal(metricsUrl('http://127.0.0.1:9180/').href, 'http://127.0.0.1:9180/metrics');
    assert.equal(metricsUrl('http://h:1/metrics').href, 'http://h:1/metrics');
    assert.throws(() => metricsUrl('ftp://h/'));
  });

  it('prints the table from a running admin endpoint', async () => {
    const requests: string[] = [];
    const server = http.createServer((req, res) => {
      requests.push(req.url ?? '');
      if (req.url !== '/metrics') {
        res.writeHead(404).end();
        return;
      }
      res.writeHead(200, { 'content-type': 'text/plain; version=0.0.4' }).end(METRICS);
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    try {
      const { port } = server.address() as AddressInfo;
      const r = await cli(['stats', '--admin', `http://127.0.0.1:${port}`]);
      assert.equal(r.code, 0, r.stderr);
      assert.deepEqual(requests, ['/metrics']);
      assert.match(r.stdout, /^client_reset\s+0\s+2$/m);
      assert.match(r.stdout, /^total\s+19\s+3$/m);
    } finally {
      await new Promise((resolve) => server.close(resolve));
    }
  });

  it('exits 1 when the endpoint is not a resp-tls-proxy admin endpoint', async () => {
    const server = http.createServer((_req, res) => res.writeHead(404).end('not found'));
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    try {
      const { port } = server.address() as AddressInfo;
      const r = await cli(['stats', '--admin', `http://127.0.0.1:${port}`]);
      assert.equal(r.code, 1);
      assert.match(r.stderr, /answered HTTP 404/);
    } finally {
      await new Promise((resolve) => server.close(resolve));
    }
  });

  it('exits 1 with a clear message when the admin endpoint cannot be reached', async () => {
    // A port that was just free: bind, note it, close.
    const probe = http.createServer();
    await new Promise<void>((resolve) => probe.listen(0, '127.0.0.1', resolve));
    const { port } = probe.address() as AddressInfo;
    await new Promise((resolve) => probe.close(resolve));
    const r = await cli(['stats', '--admin', `http://127.0.0.1:${port}`]);
    assert.equal(r.code, 1);
    assert.match(r.stderr, new RegExp(`cannot reach the admin endpoint http://127\\.0\\.0\\.1:${port}/metrics: .*ECONNREFUSED`));
  });

  it('exits 2 on an admin URL that is not http(s)', async () => {
    const r = await cli(['stats', '--admin', 'not a url']);
    assert.equal(r.code, 2);
    assert.match(r.stderr, /--admin: not an http\(s\) URL/);
  });
});
