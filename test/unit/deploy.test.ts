// The deploy files (Dockerfile, deploy/**, the README Deploy section) agree with each other and with
// config/default.yaml: ports, paths, probes, timeouts, the entry command, metric names.
// Nothing here needs Docker, a cluster or Prometheus: every file is parsed and cross-checked.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, readdirSync, statSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseAllDocuments, parse as parseYaml } from 'yaml';
import client from 'prom-client';
import { CLOSE_REASONS } from '../../src/proxy/close-reason.js';

// Compiled to dist-test/test/unit/deploy.test.js: the repository is three folders up.
const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..');
const read = (rel: string): string => readFileSync(path.join(ROOT, rel), 'utf8');

// ---------------------------------------------------------------------------------------------
// The metrics the proxy exports (DESIGN.md + issue "Ship"), without the prefix. To be replaced by
// a check against the real registry once src/observability/metrics.ts lands.
type MetricType = 'counter' | 'gauge' | 'histogram';
interface MetricSpec {
  type: MetricType;
  /** label name -> allowed values (null: any value) */
  labels?: Record<string, readonly string[] | null>;
}
const PREFIX = 'resp_tls_proxy_';
const PROXY_METRICS: Record<string, MetricSpec> = {
  client_closes_total: { type: 'counter', labels: { mode: ['graceful', 'abrupt'], reason: CLOSE_REASONS } },
  protocol_errors_total: {
    type: 'counter',
    labels: { limit: ['max_multibulk_len', 'max_bulk_len', 'max_inline_len', 'syntax'] },
  },
  connections_active: { type: 'gauge' },
  connections_total: { type: 'counter' },
  tls_handshake_failures_total: { type: 'counter', labels: { reason: null } },
  tls_handshake_duration_seconds: { type: 'histogram' },
  tls_handshakes_resumed_total: { type: 'counter' },
  backend_connect_duration_seconds: { type: 'histogram' },
  commands_total: { type: 'counter' },
  bytes_total: { type: 'counter', labels: { direction: ['to_backend', 'to_client'] } },
  tls_cert_expiry_timestamp_seconds: { type: 'gauge' },
  reloads_total: { type: 'counter', labels: { result: ['success', 'error'] } },
  draining: { type: 'gauge' },
  build_info: { type: 'gauge', labels: { version: null } },
  connection_duration_seconds: { type: 'histogram' },
  workers_restarted_total: { type: 'counter' },
  backend_up: { type: 'gauge' },
};
/** Labels Prometheus attaches to every scraped series (static config, ServiceMonitor). */
const TARGET_LABELS = new Set(['job', 'instance', 'namespace', 'pod', 'service', 'container', 'endpoint']);

/** Every metric name the proxy exports: the list above plus prom-client's default metrics. */
async function knownMetrics(): Promise<Map<string, MetricSpec>> {
  const known = new Map<string, MetricSpec>();
  for (const [name, spec] of Object.entries(PROXY_METRICS)) known.set(PREFIX + name, spec);
  const registry = new client.Registry();
  client.collectDefaultMetrics({ register: registry, prefix: PREFIX });
  for (const m of await registry.getMetricsAsJSON()) {
    const type = String(m.type);
    if (type === 'counter' || type === 'gauge' || type === 'histogram') {
      known.set(m.name, { type, labels: Object.fromEntries((m.values[0] ? Object.keys(m.values[0].labels) : []).map((l) => [l, null])) });
    }
  }
  return known;
}

// ---------------------------------------------------------------------------------------------
// helpers

type Json = null | boolean | number | string | Json[] | { [k: string]: Json };
type Obj = Record<string, any>;

function filesUnder(rel: string): string[] {
  const out: string[] = [];
  const walk = (dir: string): void => {
    for (const e of readdirSync(path.join(ROOT, dir), { withFileTypes: true })) {
      const child = path.posix.join(dir, e.name);
      if (e.isDirectory()) walk(child);
      else out.push(child);
    }
  };
  walk(rel);
  return out.sort();
}

/** All documents of a YAML file, failing on any parse error or warning. */
function yamlDocs(rel: string): Obj[] {
  const docs = parseAllDocuments(read(rel));
  if (!Array.isArray(docs)) throw new Error(`${rel}: empty YAML stream`);
  const out: Obj[] = [];
  for (const doc of docs) {
    assert.deepEqual(
      doc.errors.map((e) => e.message),
      [],
      `${rel}: YAML errors`,
    );
    assert.deepEqual(
      doc.warnings.map((e) => e.message),
      [],
      `${rel}: YAML warnings`,
    );
    const value = doc.toJS() as Obj | null;
    if (value !== null) out.push(value);
  }
  return out;
}

function k8sObjects(): Map<string, Obj[]> {
  const byFile = new Map<string, Obj[]>();
  for (const rel of filesUnder('deploy/kubernetes').filter((f) => /\.ya?ml$/.test(f))) {
    byFile.set(path.posix.basename(rel), yamlDocs(rel));
  }
  return byFile;
}

function only(objs: Obj[], kind: string, where = ''): Obj {
  const found = objs.filter((o) => o.kind === kind);
  assert.equal(found.length, 1, `exactly one ${kind} ${where}`);
  return found[0]!;
}

/** Dotted paths of every key (inner ones too) → the value there. */
function flatten(value: unknown, prefix = '', out = new Map<string, unknown>()): Map<string, unknown> {
  if (value !== null && typeof value === 'object' && !Array.isArray(value)) {
    for (const [k, v] of Object.entries(value)) {
      const p = prefix === '' ? k : `${prefix}.${k}`;
      out.set(p, v);
      flatten(v, p, out);
    }
  }
  return out;
}

function typeName(v: unknown): string {
  return v === null ? 'null' : Array.isArray(v) ? 'array' : typeof v;
}

const DEFAULTS: Obj = parseYaml(read('config/default.yaml')) as Obj;
const DEFAULT_KEYS = flatten(DEFAULTS);

/** Every key exists in config/default.yaml, with a value of the same type. */
function assertKeysKnown(config: Obj, where: string): void {
  assert.ok(config !== null && typeof config === 'object', `${where}: config is a mapping`);
  for (const [key, value] of flatten(config)) {
    assert.ok(DEFAULT_KEYS.has(key), `${where}: key ${key} is not in config/default.yaml`);
    const def = DEFAULT_KEYS.get(key);
    if (def !== null && value !== null) {
      assert.equal(typeName(value), typeName(def), `${where}: ${key} has the type of its default`);
    }
  }
}

/** A config as the proxy sees it: config/default.yaml overlaid with the file's keys. */
function effective(config: Obj): Obj {
  const merge = (base: Obj, over: Obj): Obj => {
    const out: Obj = { ...base };
    for (const [k, v] of Object.entries(over)) {
      out[k] =
        v !== null && typeof v === 'object' && base[k] !== null && typeof base[k] === 'object' ? merge(base[k], v) : v;
    }
    return out;
  };
  return merge(DEFAULTS, config);
}

/** Resolves a tls path the way the proxy does: relative to the config file's folder. */
function resolveFrom(configFile: string, p: string): string {
  return path.posix.resolve(path.posix.dirname(configFile), p);
}

const listenPort = (): number => DEFAULTS.listen.port as number;
const adminPort = (): number => DEFAULTS.admin.port as number;
/** How long a stop must be allowed to take: grace for clients + the drain of the last ones. */
// The longest an orderly shutdown takes without progress: the grace time, then a close's four
// drain_timeout_ms waits (backend replies, backend close, client flush, drain).
// + three second looks at the kernel (whether a client reads: waiting for the backend's replies,
// for its close, for the client's flush), up to 1 s each: session.ts LOOK_AGAIN_MS
const stopBudgetMs = (c: Obj): number => (c.shutdown.grace_ms as number) + 4 * (c.close.drain_timeout_ms as number) + 3 * Math.min(1000, c.close.drain_timeout_ms as number);

// ---------------------------------------------------------------------------------------------
// Dockerfile

interface Instruction {
  cmd: string;
  args: string;
  line: number;
}

function dockerfileInstructions(text: string): Instruction[] {
  const out: Instruction[] = [];
  const lines = text.split('\n');
  let buf = '';
  let start = 0;
  for (let i = 0; i < lines.length; i++) {
    const raw = lines[i]!;
    if (buf === '' && /^\s*(#|$)/.test(raw)) continue; // comment or blank between instructions
    if (buf !== '' && /^\s*#/.test(raw)) continue; // comment inside a continuation
    if (buf === '') start = i + 1;
    if (/\\\s*$/.test(raw)) {
      buf += raw.replace(/\\\s*$/, ' ');
      continue;
    }
    buf += raw;
    const m = /^\s*([A-Za-z]+)\s+([\s\S]*)$/.exec(buf);
    assert.ok(m, `Dockerfile:${start}: cannot parse ${JSON.stringify(buf)}`);
    out.push({ cmd: m[1]!.toUpperCase(), args: m[2]!.trim(), line: start });
    buf = '';
  }
  assert.equal(buf, '', 'Dockerfile ends inside a line continuation');
  return out;
}

/** The exec (JSON) form of CMD / ENTRYPOINT / HEALTHCHECK CMD. */
function execForm(args: string, what: string): string[] {
  const parsed: unknown = JSON.parse(args);
  assert.ok(Array.isArray(parsed) && parsed.every((a) => typeof a === 'string'), `${what} uses the exec (JSON) form`);
  return parsed as string[];
}

function dockerfile(): { all: Instruction[]; stages: Instruction[][] } {
  const all = dockerfileInstructions(read('Dockerfile'));
  const stages: Instruction[][] = [];
  for (const ins of all) {
    if (ins.cmd === 'FROM') stages.push([]);
    if (stages.length > 0) stages[stages.length - 1]!.push(ins);
  }
  return { all, stages };
}

/** Docker's .dockerignore semantics, enough for plain patterns: last match wins, parents count. */
function dockerignored(patterns: string[], file: string): boolean {
  const toRegex = (p: string): RegExp =>
    new RegExp(
      '^' +
        p
          .replace(/^\/+|\/+$/g, '')
          .split(/(\*\*\/?|\*|\?)/)
          .map((part) => {
            if (part === '**/') return '(?:.*/)?';
            if (part === '**') return '.*';
            if (part === '*') return '[^/]*';
            if (part === '?') return '[^/]';
            return part.replace(/[.+^${}()|[\]\\]/g, '\\$&');
          })
          .join('') +
        '$',
    );
  const parts = file.split('/');
  const candidates = parts.map((_, i) => parts.slice(0, i + 1).join('/'));
  let excluded = false;
  for (const raw of patterns) {
    const negate = raw.startsWith('!');
    const re = toRegex(negate ? raw.slice(1) : raw);
    if (candidates.some((c) => re.test(c))) excluded = !negate;
  }
  return excluded;
}

// ---------------------------------------------------------------------------------------------
// the README Deploy section

/** The README's "## Deploy" section, up to the next top-level section. */
const DOCS = ((): string => {
  const readme = read('README.md');
  const start = readme.indexOf('\n## Deploy\n');
  assert.ok(start >= 0, 'README.md has a "## Deploy" section');
  const end = readme.indexOf('\n## ', start + 1);
  return readme.slice(start, end < 0 ? undefined : end);
})();

/** Fenced code blocks: [info string, body]. */
function codeBlocks(md: string): Array<{ lang: string; body: string; index: number }> {
  const out: Array<{ lang: string; body: string; index: number }> = [];
  const re = /^([ \t]*)```([^\n]*)\n([\s\S]*?)^\1```[ \t]*$/gm;
  for (let m = re.exec(md); m !== null; m = re.exec(md)) {
    const indent = m[1]!;
    const body = m[3]!
      .split('\n')
      .map((l) => (l.startsWith(indent) ? l.slice(indent.length) : l))
      .join('\n');
    out.push({ lang: m[2]!.trim(), body, index: m.index });
  }
  return out;
}

/** The documented entry command: the first code block after the words "entry command". */
function documentedEntryCommand(): string {
  const at = DOCS.search(/entry command/i);
  assert.ok(at >= 0, 'the README Deploy section names the image\'s entry command');
  const block = codeBlocks(DOCS).find((b) => b.index > at);
  assert.ok(block, 'a code block follows "entry command" in the README Deploy section');
  return block.body.trim().replace(/\s+/g, ' ');
}

/** The shell command in the README Deploy section that starts with `docker run`, continuations joined. */
function documentedDockerRun(): string {
  for (const b of codeBlocks(DOCS)) {
    const joined = b.body.replace(/\\\n\s*/g, ' ');
    const line = joined.split('\n').find((l) => l.trim().startsWith('docker run'));
    if (line) return line.trim().replace(/\s+/g, ' ');
  }
  assert.fail('the README Deploy section has a `docker run` command');
}

// ---------------------------------------------------------------------------------------------
// PromQL: metric names and label matchers in an expression

interface Selector {
  metric: string;
  matchers: Array<{ label: string; op: string; value: string }>;
}

function selectors(expr: string): Selector[] {
  const out: Selector[] = [];
  const re = /\b(resp_tls_proxy_[a-zA-Z0-9_]+)\b(\s*\{([^}]*)\})?/g;
  for (let m = re.exec(expr); m !== null; m = re.exec(expr)) {
    const matchers: Selector['matchers'] = [];
    const mre = /([a-zA-Z_][a-zA-Z0-9_]*)\s*(=~|!~|!=|=)\s*"((?:[^"\\]|\\.)*)"/g;
    for (let x = mre.exec(m[3] ?? ''); x !== null; x = mre.exec(m[3] ?? '')) {
      matchers.push({ label: x[1]!, op: x[2]!, value: x[3]! });
    }
    out.push({ metric: m[1]!, matchers });
  }
  return out;
}

function checkExpr(expr: string, where: string, known: Map<string, MetricSpec>): string[] {
  const used: string[] = [];
  for (const sel of selectors(expr)) {
    let name = sel.metric;
    let spec = known.get(name);
    let extraLabels: string[] = [];
    if (!spec) {
      // a histogram's series: NAME_bucket{le}, NAME_sum, NAME_count
      const h = /^(.*)_(bucket|sum|count)$/.exec(name);
      const base = h ? known.get(h[1]!) : undefined;
      if (h && base && base.type === 'histogram') {
        name = h[1]!;
        spec = base;
        if (h[2] === 'bucket') extraLabels = ['le'];
      }
    }
    assert.ok(spec, `${where}: ${sel.metric} is not a metric the proxy exports`);
    used.push(name);
    for (const { label, op, value } of sel.matchers) {
      const allowed = spec.labels?.[label];
      const isMetricLabel = spec.labels !== undefined && label in spec.labels;
      assert.ok(
        isMetricLabel || TARGET_LABELS.has(label) || extraLabels.includes(label),
        `${where}: ${sel.metric} has no label ${label}`,
      );
      if (op === '=' && allowed) {
        assert.ok(allowed.includes(value), `${where}: ${sel.metric}{${label}="${value}"}: not one of ${allowed.join(', ')}`);
      }
    }
  }
  return used;
}

function collectStrings(value: Json, key: string, out: string[] = []): string[] {
  if (Array.isArray(value)) for (const v of value) collectStrings(v, key, out);
  else if (value !== null && typeof value === 'object') {
    for (const [k, v] of Object.entries(value)) {
      if (k === key && typeof v === 'string') out.push(v);
      else collectStrings(v, key, out);
    }
  }
  return out;
}

// =============================================================================================
// tests

test('every YAML file under deploy/ parses without errors or warnings', () => {
  const files = filesUnder('deploy').filter((f) => /\.ya?ml$/.test(f));
  assert.ok(files.length >= 15, `found the deploy YAML files (${files.length})`);
  for (const rel of files) {
    const docs = yamlDocs(rel);
    assert.ok(docs.length > 0, `${rel} holds at least one document`);
  }
});

test('the Grafana dashboard is valid JSON with panels and unique ids', () => {
  for (const rel of filesUnder('deploy/grafana').filter((f) => f.endsWith('.json'))) {
    const dash = JSON.parse(read(rel)) as Obj;
    assert.equal(typeof dash.title, 'string', `${rel}: title`);
    assert.ok(Array.isArray(dash.panels) && dash.panels.length > 0, `${rel}: panels`);
    const ids = (dash.panels as Obj[]).map((p) => p.id);
    assert.equal(new Set(ids).size, ids.length, `${rel}: panel ids are unique`);
  }
});

test('config/default.yaml has the ports the deploy files are built for', () => {
  assert.equal(listenPort(), 6380);
  assert.equal(adminPort(), 9180);
});

test('Kubernetes: Deployment ports, probes, args and termination agree with the config', () => {
  const objs = k8sObjects();
  const deployment = only(objs.get('deployment.yaml')!, 'Deployment');
  const configMap = only(objs.get('configmap.yaml')!, 'ConfigMap');
  const pod = deployment.spec.template.spec as Obj;
  const container = (pod.containers as Obj[]).find((c) => /resp-tls-proxy/.test(c.image));
  assert.ok(container, 'a resp-tls-proxy container');

  const ports = new Map((container.ports as Obj[]).map((p) => [p.name as string, p.containerPort as number]));
  assert.equal(ports.get('redis-tls'), listenPort(), 'port redis-tls = listen.port');
  assert.equal(ports.get('admin'), adminPort(), 'port admin = admin.port');

  const config = parseYaml(configMap.data['config.yaml']) as Obj;
  assertKeysKnown(config, 'configmap.yaml config.yaml');
  const eff = effective(config);
  assert.equal(eff.listen.port, listenPort(), 'configmap listen.port');
  assert.equal(eff.admin.port, adminPort(), 'configmap admin.port');
  assert.equal(eff.listen.host, '0.0.0.0', 'configmap listen.host binds every interface');
  assert.equal(eff.admin.host, '0.0.0.0', 'configmap admin.host binds every interface');
  assert.equal(eff.tls.self_signed_if_missing, false, 'no self-signed certificate in production');

  for (const [probe, p] of [
    ['readinessProbe', '/readyz'],
    ['livenessProbe', '/healthz'],
  ] as const) {
    assert.equal(container[probe]?.httpGet?.path, p, `${probe} path`);
    const port = container[probe].httpGet.port;
    assert.ok(port === 'admin' || port === adminPort(), `${probe} on the admin port`);
  }

  // The pod must outlive preStop + grace + drain, or clients are killed without close_notify.
  const preStop = container.lifecycle?.preStop?.exec?.command as string[] | undefined;
  const preStopMs = preStop && preStop[0] === 'sleep' ? Number(preStop[1]) * 1000 : 0;
  const tgps = pod.terminationGracePeriodSeconds as number;
  assert.ok(tgps * 1000 > eff.shutdown.grace_ms, 'terminationGracePeriodSeconds > shutdown.grace_ms');
  assert.ok(tgps * 1000 > preStopMs + stopBudgetMs(eff), 'terminationGracePeriodSeconds > preStop + grace + 4 × drain');

  // Security context: non-root 1000, read-only root, nothing to escalate.
  const sc = { ...pod.securityContext, ...container.securityContext } as Obj;
  assert.equal(sc.runAsNonRoot, true);
  assert.equal(sc.runAsUser, 1000);
  assert.equal(container.securityContext.readOnlyRootFilesystem, true);
  assert.equal(container.securityContext.allowPrivilegeEscalation, false);
  assert.deepEqual(container.securityContext.capabilities?.drop, ['ALL']);
  assert.equal(sc.seccompProfile?.type, 'RuntimeDefault');
  assert.ok(container.resources?.requests?.cpu && container.resources?.limits?.memory, 'resources');
});

/** Checks one proxy workload (Deployment or StatefulSet) against its ConfigMap and Secret. */
function checkWorkloadPaths(file: string, workload: Obj, objs: Obj[]): void {
  const pod = workload.spec.template.spec as Obj;
  const container = (pod.containers as Obj[]).find((c) => /resp-tls-proxy/.test(c.image));
  assert.ok(container, `${file}: a resp-tls-proxy container`);

  // args: the image's CMD with only the config path changed
  const { stages } = dockerfile();
  const cmd = execForm(stages[stages.length - 1]!.filter((i) => i.cmd === 'CMD').pop()!.args, 'CMD');
  const args = container.args as string[];
  assert.deepEqual(args.slice(0, -1), cmd.slice(0, -1), `${file}: args are the image CMD with another config path`);
  const configFile = args[args.length - 1]!;

  const volumes = new Map((pod.volumes as Obj[]).map((v) => [v.name as string, v]));
  const mounts = container.volumeMounts as Obj[];
  const mountOf = (pred: (v: Obj) => boolean): Obj | undefined =>
    mounts.find((m) => {
      const v = volumes.get(m.name);
      return v !== undefined && pred(v);
    });

  // The config file is the config.yaml key of a ConfigMap mounted as a folder (no subPath).
  const cmMount = mountOf((v) => v.configMap !== undefined);
  assert.ok(cmMount, `${file}: a ConfigMap is mounted`);
  assert.equal(cmMount.subPath, undefined, `${file}: no subPath (it would never see ConfigMap updates)`);
  assert.equal(configFile, path.posix.join(cmMount.mountPath, 'config.yaml'), `${file}: --config names the mounted file`);
  const cmName = volumes.get(cmMount.name)!.configMap.name as string;
  const cm = objs.find((o) => o.kind === 'ConfigMap' && o.metadata.name === cmName);
  assert.ok(cm, `${file}: ConfigMap ${cmName} is defined`);
  const config = parseYaml(cm.data['config.yaml']) as Obj;
  assertKeysKnown(config, `ConfigMap ${cmName}`);
  const eff = effective(config);
  assert.equal(eff.listen.host, '0.0.0.0', `${cmName}: listen.host`);
  assert.equal(eff.admin.host, '0.0.0.0', `${cmName}: admin.host`);

  // Every TLS file resolves into the mounted Secret, under a key a kubernetes.io/tls Secret has.
  const secretMount = mountOf((v) => v.secret !== undefined);
  assert.ok(secretMount, `${file}: a Secret is mounted`);
  assert.equal(secretMount.mountPath, '/etc/resp-tls-proxy/tls', `${file}: Secret at the documented path`);
  for (const key of ['cert_file', 'key_file', 'ca_file'] as const) {
    const p = eff.tls[key] as string | null;
    if (p === null) continue;
    const abs = resolveFrom(configFile, p);
    assert.equal(path.posix.dirname(abs), secretMount.mountPath, `${cmName}: tls.${key} ${p} is in the Secret mount`);
    assert.ok(['tls.crt', 'tls.key', 'ca.crt'].includes(path.posix.basename(abs)), `${cmName}: tls.${key} is a Secret key`);
  }
  // …and that Secret is the one a cert-manager Certificate in the same files writes.
  const secretName = volumes.get(secretMount.name)!.secret.secretName as string;
  assert.ok(
    objs.some((o) => o.kind === 'Certificate' && o.spec.secretName === secretName),
    `${file}: Secret ${secretName} comes from a Certificate`,
  );
}

test('Kubernetes: config path, ConfigMap and Secret mounts line up (Deployment and sidecar)', () => {
  const objs = k8sObjects();
  const all = [...objs.values()].flat();
  const deployment = only(objs.get('deployment.yaml')!, 'Deployment');
  checkWorkloadPaths('deployment.yaml', deployment, all);

  // The Deployment's Secret is the one cert-manager writes.
  const cert = only(objs.get('certificate.yaml')!, 'Certificate');
  const secretVolume = (deployment.spec.template.spec.volumes as Obj[]).find((v) => v.secret);
  assert.equal(secretVolume?.secret.secretName, cert.spec.secretName);
  assert.equal(cert.spec.secretName, 'resp-tls-proxy-tls');

  const sidecarObjs = objs.get('sidecar-example.yaml')!;
  const sts = only(sidecarObjs, 'StatefulSet', 'in sidecar-example.yaml');
  checkWorkloadPaths('sidecar-example.yaml', sts, sidecarObjs);
  const sidecarCm = sidecarObjs.find((o) => o.kind === 'ConfigMap')!;
  const sidecarConfig = effective(parseYaml(sidecarCm.data['config.yaml']) as Obj);
  assert.equal(sidecarConfig.backend.host, '127.0.0.1', 'sidecar: backend on the pod\'s loopback');
  const stsPod = sts.spec.template.spec as Obj;
  const proxy = (stsPod.containers as Obj[]).find((c) => /resp-tls-proxy/.test(c.image))!;
  assert.equal(proxy.readinessProbe.httpGet.path, '/readyz');
  assert.equal(proxy.livenessProbe.httpGet.path, '/healthz');
  const preStop = proxy.lifecycle?.preStop?.exec?.command as string[] | undefined;
  const preStopMs = preStop && preStop[0] === 'sleep' ? Number(preStop[1]) * 1000 : 0;
  assert.ok(stsPod.terminationGracePeriodSeconds * 1000 > preStopMs + stopBudgetMs(sidecarConfig), 'sidecar: grace period');
  const sidecarSecret = (stsPod.volumes as Obj[]).find((v) => v.secret)!.secret.secretName;
  assert.equal(only(sidecarObjs, 'Certificate', 'in sidecar-example.yaml').spec.secretName, sidecarSecret);
});

test('Kubernetes: Service, PDB, HPA, ServiceMonitor and kustomization point at the Deployment', () => {
  const objs = k8sObjects();
  const deployment = only(objs.get('deployment.yaml')!, 'Deployment');
  const podLabels = deployment.spec.template.metadata.labels as Record<string, string>;
  const selects = (sel: Record<string, string>, what: string): void => {
    for (const [k, v] of Object.entries(sel)) assert.equal(podLabels[k], v, `${what} selects the pods (${k})`);
  };
  selects(deployment.spec.selector.matchLabels, 'Deployment');

  const service = only(objs.get('service.yaml')!, 'Service');
  selects(service.spec.selector, 'Service');
  const containerPorts = new Set(
    (deployment.spec.template.spec.containers as Obj[]).flatMap((c) => (c.ports as Obj[]).map((p) => p.name)),
  );
  for (const p of service.spec.ports as Obj[]) assert.ok(containerPorts.has(p.targetPort), `Service targetPort ${p.targetPort}`);
  const servicePorts = new Map((service.spec.ports as Obj[]).map((p) => [p.name as string, p.port as number]));
  assert.equal(servicePorts.get('redis-tls'), listenPort());
  assert.equal(servicePorts.get('admin'), adminPort());

  const pdb = only(objs.get('pdb.yaml')!, 'PodDisruptionBudget');
  assert.equal(pdb.apiVersion, 'policy/v1');
  selects(pdb.spec.selector.matchLabels, 'PodDisruptionBudget');

  const hpa = only(objs.get('hpa.yaml')!, 'HorizontalPodAutoscaler');
  assert.equal(hpa.apiVersion, 'autoscaling/v2');
  assert.equal(hpa.spec.scaleTargetRef.kind, 'Deployment');
  assert.equal(hpa.spec.scaleTargetRef.name, deployment.metadata.name);
  assert.ok((hpa.spec.metrics as Obj[]).some((m) => m.resource?.name === 'cpu'), 'HPA scales on CPU');

  const sm = only(objs.get('servicemonitor.yaml')!, 'ServiceMonitor');
  assert.equal(sm.apiVersion, 'monitoring.coreos.com/v1');
  for (const [k, v] of Object.entries(sm.spec.selector.matchLabels as Record<string, string>)) {
    assert.equal(service.metadata.labels[k], v, `ServiceMonitor selects the Service (${k})`);
  }
  assert.equal(sm.spec.endpoints[0].port, 'admin');
  assert.equal(sm.spec.endpoints[0].path, '/metrics');

  const kustomization = only(objs.get('kustomization.yaml')!, 'Kustomization');
  const resources = kustomization.resources as string[];
  for (const r of resources) assert.ok(objs.has(r), `kustomization resource ${r} exists`);
  assert.ok(!resources.includes('sidecar-example.yaml'), 'the sidecar example stays out of the kustomization');
  const expected = [...objs.keys()].filter((f) => f !== 'kustomization.yaml' && f !== 'sidecar-example.yaml');
  assert.deepEqual([...resources].sort(), expected.sort(), 'the kustomization lists every manifest');
});

test('alerts and dashboard use only metrics and label values the proxy exports', async () => {
  const known = await knownMetrics();
  const objs = k8sObjects();
  const rule = only(objs.get('prometheusrule.yaml')!, 'PrometheusRule');
  assert.equal(rule.apiVersion, 'monitoring.coreos.com/v1');
  const rules = (rule.spec.groups as Obj[]).flatMap((g) => g.rules as Obj[]);
  const used = new Set<string>();
  for (const r of rules) for (const m of checkExpr(r.expr, `alert ${r.alert}`, known)) used.add(m);
  const exprs = rules.map((r) => String(r.expr).replace(/\s+/g, ' '));
  const has = (re: RegExp, what: string): void => assert.ok(exprs.some((e) => re.test(e)), `an alert on ${what}`);
  has(/rate\(resp_tls_proxy_client_closes_total\{mode="abrupt"\}\[5m\]\)/, 'the abrupt-close rate');
  has(/resp_tls_proxy_tls_cert_expiry_timestamp_seconds\)? - time\(\) < 14 \* 86400/, 'certificates expiring within 14 days');
  has(/rate\(resp_tls_proxy_client_closes_total\{reason="backend_unavailable"\}\[5m\]\)\) > 0/, 'an unavailable backend');
  has(/resp_tls_proxy_process_open_fds \/ resp_tls_proxy_process_max_fds\) > 0\.8/, 'file descriptors running out');

  // deploy/compose/rules.yml is the same rule set for plain Prometheus.
  const composeRules = yamlDocs('deploy/compose/rules.yml')[0]!;
  assert.deepEqual(composeRules.groups, rule.spec.groups, 'deploy/compose/rules.yml = prometheusrule.yaml spec.groups');

  for (const rel of filesUnder('deploy/grafana').filter((f) => f.endsWith('.json'))) {
    const dash = JSON.parse(read(rel)) as Json;
    const queries = [
      ...collectStrings(dash, 'expr'),
      ...collectStrings(dash, 'query').filter((q) => q.includes(PREFIX)),
      ...collectStrings(dash, 'definition'),
    ];
    assert.ok(queries.length > 0, `${rel}: has queries`);
    for (const q of queries) for (const m of checkExpr(q, rel, known)) used.add(m);
    const text = queries.join('\n');
    for (const metric of [
      'client_closes_total',
      'protocol_errors_total',
      'connections_active',
      'connections_total',
      'tls_handshake_duration_seconds',
      'backend_connect_duration_seconds',
      'bytes_total',
      'commands_total',
      'tls_cert_expiry_timestamp_seconds',
    ]) {
      assert.ok(text.includes(PREFIX + metric), `${rel} shows ${metric}`);
    }
    assert.match(text, /sum by \(mode, reason\)/, `${rel}: closes by mode and reason`);
    assert.match(text, /sum by \(limit\)/, `${rel}: protocol errors by limit`);
    assert.match(text, /histogram_quantile\(0\.99, [^\n]*tls_handshake_duration_seconds_bucket/, `${rel}: handshake p99`);
    assert.match(text, /histogram_quantile\(0\.5, [^\n]*tls_handshake_duration_seconds_bucket/, `${rel}: handshake p50`);
  }
  assert.ok(used.size >= 10, 'the checks saw the metrics');
});

test('Dockerfile: multi-stage, non-root, ports, health check, tini, entry command documented', () => {
  const { all, stages } = dockerfile();
  const from = all.filter((i) => i.cmd === 'FROM');
  assert.ok(from.length >= 2, 'multi-stage: at least two FROM');
  for (const f of from) assert.match(f.args, /^node:\d+-\S*slim\b/, `Dockerfile:${f.line}: a slim Node base`);
  const runtime = stages[stages.length - 1]!;
  const build = stages[0]!;
  const runs = (stage: Instruction[]): string => stage.filter((i) => i.cmd === 'RUN').map((i) => i.args).join('\n');
  assert.match(runs(build), /npm ci\b/, 'build stage installs with npm ci');
  assert.match(runs(build), /npm run build\b/, 'build stage compiles');
  assert.match(runs(runtime), /npm ci [^\n]*--omit=dev/, 'runtime stage has production dependencies only');
  assert.match(runs(runtime), /apt-get install -y --no-install-recommends tini/, 'runtime stage installs tini');
  assert.ok(
    runtime.some((i) => i.cmd === 'COPY' && /--from=\S+/.test(i.args) && /\bdist\b/.test(i.args)),
    'runtime stage copies dist/ from the build stage',
  );
  assert.ok(runtime.some((i) => i.cmd === 'ENV' && /NODE_ENV=production/.test(i.args)), 'NODE_ENV=production');
  assert.ok(runtime.some((i) => i.cmd === 'WORKDIR' && i.args === '/app'), 'WORKDIR /app');

  const user = runtime.filter((i) => i.cmd === 'USER').pop();
  assert.ok(user, 'runtime stage sets USER');
  const [uid] = user.args.split(':');
  assert.ok(uid !== 'root' && uid !== '0' && uid !== '', `USER ${user.args} is not root`);

  const exposed = runtime
    .filter((i) => i.cmd === 'EXPOSE')
    .flatMap((i) => i.args.split(/\s+/))
    .map((p) => Number(p.replace(/\/tcp$/, '')));
  assert.deepEqual(exposed.sort((a, b) => a - b), [listenPort(), adminPort()].sort((a, b) => a - b), 'EXPOSE 6380 9180');

  const health = runtime.filter((i) => i.cmd === 'HEALTHCHECK').pop();
  assert.ok(health, 'HEALTHCHECK');
  const hc = /\bCMD\s+(\[.*\])\s*$/.exec(health.args);
  assert.ok(hc, 'HEALTHCHECK CMD in exec form');
  const hcCmd = execForm(hc[1]!, 'HEALTHCHECK CMD');
  assert.equal(hcCmd[0], 'node', 'health check uses node (no curl in the slim image)');
  assert.ok(hcCmd.join(' ').includes(`http://127.0.0.1:${adminPort()}/healthz`), 'health check asks /healthz on the admin port');

  assert.equal(runtime.filter((i) => i.cmd === 'STOPSIGNAL').pop()?.args, 'SIGTERM');
  const entrypoint = execForm(runtime.filter((i) => i.cmd === 'ENTRYPOINT').pop()!.args, 'ENTRYPOINT');
  assert.deepEqual(entrypoint, ['/usr/bin/tini', '--'], 'ENTRYPOINT is tini');
  const cmd = execForm(runtime.filter((i) => i.cmd === 'CMD').pop()!.args, 'CMD');
  assert.deepEqual(cmd, ['node', 'dist/cli.js', '--config', '/etc/resp-tls-proxy/config.yaml']);

  assert.equal(documentedEntryCommand(), [...entrypoint, ...cmd].join(' '), 'the README Deploy section documents the entry command');
});

test('.dockerignore keeps build output, secrets and .git out but lets the build inputs in', () => {
  const patterns = read('.dockerignore')
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l !== '' && !l.startsWith('#'));
  // Everything the Dockerfile COPYs from the context must be in it.
  const { all } = dockerfile();
  const copied = all
    .filter((i) => i.cmd === 'COPY' && !/--from=/.test(i.args))
    .flatMap((i) => i.args.split(/\s+/).filter((a) => !a.startsWith('--')).slice(0, -1));
  assert.ok(copied.length >= 3, 'COPY sources found');
  for (const src of copied) {
    // a folder is in the context when a file inside it is
    const probe = statSync(path.join(ROOT, src)).isDirectory() ? `${src.replace(/\/$/, '')}/main.ts` : src;
    assert.equal(dockerignored(patterns, probe), false, `${probe} is in the build context`);
  }
  for (const f of [
    'node_modules/yaml/package.json',
    'dist/cli.js',
    'dist-test/test/unit/deploy.test.js',
    '.git/HEAD',
    'config/dev/tls.key',
    'bench/results/run.json',
    'deploy/compose/tls/tls.key',
  ]) {
    assert.equal(dockerignored(patterns, f), true, `${f} stays out of the build context`);
  }
});

test('the README Deploy section: docker run mounts the documented paths read-only and waits for the drain', () => {
  const run = documentedDockerRun();
  assert.match(run, /--read-only\b/, 'docker run --read-only');
  assert.match(run, /-v \S+:\/etc\/resp-tls-proxy\/config\.yaml:ro\b/, 'config mounted at /etc/resp-tls-proxy/config.yaml');
  assert.match(run, /-v \S+:\/etc\/resp-tls-proxy\/tls:ro\b/, 'certificates mounted at /etc/resp-tls-proxy/tls');
  assert.match(run, new RegExp(`-p (\\S+:)?${listenPort()}:${listenPort()}\\b`), 'publishes the TLS port');
  const stop = /--stop-timeout (\d+)/.exec(run);
  assert.ok(stop, 'docker run --stop-timeout (Docker kills after 10 s by default)');
  assert.ok(Number(stop[1]) * 1000 > stopBudgetMs(DEFAULTS), '--stop-timeout > shutdown.grace_ms + 4 × close.drain_timeout_ms');

  // Every YAML example in the docs parses and uses only real keys.
  const yamlBlocks = codeBlocks(DOCS).filter((b) => b.lang === 'yaml');
  assert.ok(yamlBlocks.length > 0, 'the README Deploy section shows a container config');
  for (const b of yamlBlocks) {
    const config = parseYaml(b.body) as Obj;
    assertKeysKnown(config, 'the README Deploy section yaml example');
    assert.equal(effective(config).listen.host, '0.0.0.0', 'docs example: listen.host in a container');
    assert.equal(effective(config).admin.host, '0.0.0.0', 'docs example: admin.host in a container');
  }
  for (const heading of ['## Deploy', '### Container image', '### Kubernetes', '### Docker Compose', '### Grafana', '### systemd']) {
    assert.ok(DOCS.includes(`\n${heading}`) || DOCS.startsWith(heading), `the README Deploy section has "${heading}"`);
  }
});

test('compose: proxy config, mounts, Prometheus target and stop timeout agree with the config', () => {
  const compose = yamlDocs('deploy/compose/compose.yaml')[0]!;
  const proxy = compose.services.proxy as Obj;
  assert.equal(path.posix.normalize(path.posix.join('deploy/compose', proxy.build.context)), '.', 'built from the repository root');
  assert.equal(proxy.build.dockerfile, 'Dockerfile');
  assert.equal(proxy.read_only, true, 'read-only root filesystem');
  assert.equal(compose.services.redis.image, 'redis:7');
  assert.ok(compose.services.dragonfly?.profiles?.includes('dragonfly'), 'Dragonfly behind the `dragonfly` profile');
  assert.match(compose.services.dragonfly.image, /^docker\.dragonflydb\.io\/dragonflydb\/dragonfly\b/);

  // The mounts give the container /etc/resp-tls-proxy/config.yaml and /etc/resp-tls-proxy/tls/.
  const mounts = (proxy.volumes as string[]).map((v) => {
    const [src, dst] = v.split(':');
    return { src: path.posix.normalize(path.posix.join('deploy/compose', src!)), dst: dst! };
  });
  const hostPathOf = (containerPath: string): string | undefined => {
    for (const m of mounts) {
      if (containerPath === m.dst || containerPath.startsWith(m.dst + '/')) {
        return path.posix.join(m.src, path.posix.relative(m.dst, containerPath));
      }
    }
    return undefined;
  };
  const configFile = '/etc/resp-tls-proxy/config.yaml';
  const hostConfig = hostPathOf(configFile);
  assert.equal(hostConfig, 'deploy/compose/config.yaml', 'compose mounts deploy/compose/config.yaml at the documented path');
  const config = yamlDocs(hostConfig)[0]!;
  assertKeysKnown(config, hostConfig);
  const eff = effective(config);
  assert.equal(eff.listen.host, '0.0.0.0');
  assert.equal(eff.admin.host, '0.0.0.0');
  assert.equal(eff.backend.host, 'redis', 'backend is the redis service');
  assert.ok(compose.services[eff.backend.host], 'backend.host is a compose service');
  for (const key of ['cert_file', 'key_file'] as const) {
    const abs = resolveFrom(configFile, eff.tls[key]);
    assert.equal(path.posix.dirname(abs), '/etc/resp-tls-proxy/tls', `tls.${key} under /etc/resp-tls-proxy/tls`);
    assert.equal(path.posix.dirname(hostPathOf(abs) ?? ''), 'deploy/compose/tls', `tls.${key} comes from deploy/compose/tls`);
  }
  const published = (proxy.ports as string[]).map((p) => p.split(':').map(Number));
  assert.ok(published.some(([, c]) => c === eff.listen.port), 'publishes listen.port');
  assert.ok(published.some(([, c]) => c === eff.admin.port), 'publishes admin.port');
  const grace = /^(\d+)s$/.exec(proxy.stop_grace_period);
  assert.ok(grace && Number(grace[1]) * 1000 > stopBudgetMs(eff), 'stop_grace_period > grace + 4 × drain');

  const prom = yamlDocs('deploy/compose/prometheus.yml')[0]!;
  const job = (prom.scrape_configs as Obj[]).find((j) => j.job_name === 'resp-tls-proxy');
  assert.ok(job, 'a resp-tls-proxy scrape job');
  assert.deepEqual(job.static_configs[0].targets, [`proxy:${eff.admin.port}`]);
  assert.equal(job.metrics_path ?? '/metrics', '/metrics');
});

test('systemd unit: reload with SIGHUP, hardened, stops after the drain', () => {
  const unit = read('deploy/systemd/resp-tls-proxy.service');
  const settings = new Map<string, string[]>();
  for (const line of unit.split('\n')) {
    const m = /^([A-Za-z]+)=(.*)$/.exec(line.trim());
    if (m) settings.set(m[1]!, [...(settings.get(m[1]!) ?? []), m[2]!]);
  }
  const one = (k: string): string | undefined => settings.get(k)?.at(-1);
  assert.match(one('ExecReload') ?? '', /kill -HUP \$MAINPID/);
  assert.equal(one('NoNewPrivileges'), 'yes');
  assert.equal(one('ProtectSystem'), 'strict');
  assert.equal(one('ProtectHome'), 'yes');
  assert.equal(one('PrivateTmp'), 'yes');
  assert.equal(one('CapabilityBoundingSet'), '');
  assert.equal(one('KillSignal'), 'SIGTERM');
  assert.equal(one('MemoryDenyWriteExecute'), 'no', 'V8 needs W+X memory');
  assert.ok(one('User') || one('DynamicUser') === 'yes', 'runs unprivileged');
  assert.ok(Number(one('TimeoutStopSec')) * 1000 > stopBudgetMs(DEFAULTS), 'TimeoutStopSec > grace + 4 × drain');
  // Same config path as the container image.
  const exec = one('ExecStart') ?? '';
  const { stages } = dockerfile();
  const cmd = execForm(stages[stages.length - 1]!.filter((i) => i.cmd === 'CMD').pop()!.args, 'CMD');
  assert.equal(exec, `/usr/bin/resp-tls-proxy --config ${cmd[cmd.length - 1]}`);
});
