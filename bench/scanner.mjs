#!/usr/bin/env node
// Micro-benchmark of the request scanner alone (dist/resp/scanner.js): MB/s and commands/s on
// realistic request streams, fed in 16 KiB chunks (what a TLS socket delivers) and 64 KiB chunks.
// One core, no sockets. Medians of several timed runs after a warm-up.
//
//   node bench/scanner.mjs [--quick] [--runs N] [--streams get,set_16k] [--chunks 16384,65536]
//                          [--module path/to/scanner.js] [--no-save]
//   npm run bench -- --scanner [same options]
//   node --cpu-prof --cpu-prof-dir=bench/results/tmp bench/scanner.mjs --streams set_16k   (profile)
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';

import { updateDocs } from './lib/docs.mjs';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const ROOT = path.resolve(HERE, '..');

const { values: opts } = parseArgs({
  options: {
    quick: { type: 'boolean', default: false },
    runs: { type: 'string' },
    streams: { type: 'string' },
    chunks: { type: 'string' },
    module: { type: 'string' },
    'min-ms': { type: 'string' },
    'no-save': { type: 'boolean', default: false },
    'update-docs': { type: 'boolean', default: false },
    help: { type: 'boolean', short: 'h', default: false },
  },
});
if (opts.help) {
  console.log(`usage: node bench/scanner.mjs [--quick] [--runs N] [--streams LIST] [--chunks 16384,65536] [--module FILE] [--min-ms MS] [--no-save] [--update-docs]
streams: ${'get, set, set_1k, set_16k, mset_1000'}`);
  process.exit(0);
}

const QUICK = opts.quick;
const RUNS = Number(opts.runs ?? (QUICK ? 3 : 7));
const MIN_MS = Number(opts['min-ms'] ?? (QUICK ? 100 : 300)); // each timed run lasts at least this long
const CHUNKS = (opts.chunks ?? '16384,65536').split(',').map(Number);
const modulePath = path.resolve(opts.module ?? path.join(ROOT, 'dist', 'resp', 'scanner.js'));
if (!fs.existsSync(modulePath)) {
  console.error(`scanner bench: ${path.relative(ROOT, modulePath)} not found — run \`npm run build\` first`);
  process.exit(2);
}
const mod = await import(pathToFileURL(modulePath).href);
const RequestScanner = mod.RequestScanner;
if (typeof RequestScanner !== 'function') {
  console.error(`scanner bench: ${modulePath} exports no RequestScanner class`);
  process.exit(2);
}
// The contract's defaults (docs: DESIGN.md "limits").
const LIMITS = { maxMultibulkLen: 1048576, maxBulkLen: 536870912, maxInlineLen: 65536 };

// ---------------------------------------------------------------------------------------------
// Streams: each is one contiguous buffer of about TARGET bytes of back-to-back commands.
const TARGET = 4 * 1024 * 1024;

function bulk(s) {
  const b = Buffer.isBuffer(s) ? s : Buffer.from(s);
  return Buffer.concat([Buffer.from(`$${b.length}\r\n`), b, Buffer.from('\r\n')]);
}
function command(...args) {
  elementsPer = args.length;
  return Buffer.concat([Buffer.from(`*${args.length}\r\n`), ...args.map(bulk)]);
}
const key = (i) => `key:${String(i % 1000000).padStart(6, '0')}`;

let elementsPer = 0;
function build(makeCmd, target = TARGET) {
  const parts = [];
  let bytes = 0;
  let n = 0;
  while (bytes < target) {
    const c = makeCmd(n);
    parts.push(c);
    bytes += c.length;
    n++;
  }
  return { buf: Buffer.concat(parts, bytes), commands: n, elements: elementsPer * n };
}

const STREAMS = [
  { id: 'get', label: 'GET key (small)', make: () => build((i) => command('GET', key(i))) },
  { id: 'set', label: 'SET key 3-byte value', make: () => build((i) => command('SET', key(i), 'xxx')) },
  { id: 'set_1k', label: 'SET key 1 KiB value', make: () => build((i) => command('SET', key(i), Buffer.alloc(1024, 0x61 + (i % 26)))) },
  { id: 'set_16k', label: 'SET key 16 KiB value', make: () => build((i) => command('SET', key(i), Buffer.alloc(16384, 0x61 + (i % 26)))) },
  {
    id: 'mset_1000',
    label: 'MSET 1,000 keys (2,001 elements)',
    make: () =>
      build((i) => {
        const args = ['MSET'];
        for (let k = 0; k < 1000; k++) args.push(key(i * 1000 + k), `v${k}`);
        return command(...args);
      }),
  },
];
let streams = STREAMS;
if (opts.streams) {
  const want = opts.streams.split(',');
  for (const w of want) if (!STREAMS.some((s) => s.id === w)) throw new Error(`unknown stream ${w}`);
  streams = STREAMS.filter((s) => want.includes(s.id));
}

function chunked(buf, size) {
  const out = [];
  for (let o = 0; o < buf.length; o += size) out.push(buf.subarray(o, Math.min(o + size, buf.length)));
  return out;
}

/** One pass: a fresh scanner (one connection) fed the whole stream; returns forwarded bytes. */
function pass(chunks, expected) {
  const s = new RequestScanner(LIMITS);
  const out = [];
  let forwarded = 0;
  for (let i = 0; i < chunks.length; i++) {
    s.feed(chunks[i], out);
    for (let j = 0; j < out.length; j++) forwarded += out[j].length;
    out.length = 0;
  }
  if (s.error) throw new Error(`scanner reported an error: ${JSON.stringify(s.error)}`);
  if (s.commands !== expected) throw new Error(`scanner counted ${s.commands} commands, expected ${expected}`);
  return forwarded;
}

function median(xs) {
  const v = [...xs].sort((a, b) => a - b);
  const m = v.length >> 1;
  return v.length % 2 ? v[m] : (v[m - 1] + v[m]) / 2;
}

const rows = [];
for (const st of streams) {
  const { buf, commands, elements } = st.make();
  for (const size of CHUNKS) {
    const chunks = chunked(buf, size);
    // warm-up (and correctness check: every byte must be forwarded)
    const fw = pass(chunks, commands);
    if (fw !== buf.length) throw new Error(`${st.id}: forwarded ${fw} bytes of ${buf.length}`);
    const warmEnd = performance.now() + MIN_MS;
    while (performance.now() < warmEnd) pass(chunks, commands);
    const mbps = [];
    const cps = [];
    for (let r = 0; r < RUNS; r++) {
      let passes = 0;
      const t0 = performance.now();
      let t1;
      do {
        pass(chunks, commands);
        passes++;
        t1 = performance.now();
      } while (t1 - t0 < MIN_MS);
      const secs = (t1 - t0) / 1000;
      mbps.push((buf.length * passes) / secs / 1e6);
      cps.push((commands * passes) / secs);
    }
    const row = {
      stream: st.id,
      label: st.label,
      chunk: size,
      bytes_per_command: buf.length / commands,
      mb_per_s: median(mbps),
      commands_per_s: median(cps),
      elements_per_s: (median(cps) * elements) / commands,
      spread_pct: ((Math.max(...mbps) - Math.min(...mbps)) / 2 / median(mbps)) * 100,
      runs: mbps.length,
    };
    rows.push(row);
    console.error(`${st.id.padEnd(10)} ${String(size).padStart(6)} B chunks  ${fmtMB(row.mb_per_s).padStart(11)}  ${fmtCps(row.commands_per_s).padStart(12)}`);
  }
}

function fmtMB(x) {
  return x >= 1000 ? `${(x / 1000).toFixed(2)} GB/s` : `${x.toFixed(0)} MB/s`;
}
function fmtCps(x) {
  if (x >= 1e6) return `${(x / 1e6).toFixed(2)}M cmd/s`;
  if (x >= 1e3) return `${(x / 1e3).toFixed(1)}k cmd/s`;
  return `${x.toFixed(0)} cmd/s`;
}

const cpu = /model name\s*:\s*(.*)/.exec(fs.readFileSync('/proc/cpuinfo', 'utf8'))?.[1] ?? os.cpus()[0]?.model;
import { spawnSync } from 'node:child_process';
const git = spawnSync('git', ['-C', ROOT, 'rev-parse', '--short', 'HEAD'], { encoding: 'utf8' }).stdout.trim() || 'unknown';
const dirty = spawnSync('git', ['-C', ROOT, 'status', '--porcelain', '--', 'src'], { encoding: 'utf8' }).stdout.trim() ? '+dirty src' : '';
const meta = {
  git: git + dirty,
  date: new Date().toISOString().replace(/\.\d+Z$/, 'Z'),
  node: process.version,
  cpu,
  module: path.relative(ROOT, modulePath),
  runs: RUNS,
  min_ms_per_run: MIN_MS,
  stream_bytes: TARGET,
  quick: QUICK,
};
const L = [];
L.push(`# Request scanner micro-benchmark${QUICK ? ' (quick)' : ''}`);
L.push('');
L.push(
  `${meta.date} · git ${meta.git} · node ${meta.node} · ${cpu} · one core · median of ${RUNS} runs of ≥ ${MIN_MS} ms after warm-up · ` +
    `a fresh scanner per ~4 MiB stream, fed as chunk views · MB = 10^6 bytes`,
);
L.push('');
L.push('| stream | bytes/command | chunk | MB/s | commands/s | elements/s | ± |');
L.push('|---|---:|---:|---:|---:|---:|---:|');
for (const r of rows) {
  L.push(
    `| ${r.label} | ${r.bytes_per_command.toFixed(0)} | ${r.chunk / 1024} KiB | ${fmtMB(r.mb_per_s)} | ${fmtCps(r.commands_per_s)} | ${fmtCps(r.elements_per_s).replace(' cmd', '')} | ${r.spread_pct.toFixed(0)}% |`,
  );
}
L.push('');
const md = L.join('\n');
console.log(md);
if (!opts['no-save'] && !opts.module && !opts.streams && !opts.chunks) {
  fs.mkdirSync(path.join(HERE, 'results'), { recursive: true });
  fs.writeFileSync(path.join(HERE, 'results', 'scanner-latest.md'), md);
  fs.writeFileSync(path.join(HERE, 'results', 'scanner-latest.json'), JSON.stringify({ meta, rows }, null, 2) + '\n');
  console.error('scanner bench: wrote bench/results/scanner-latest.{md,json}');
}
if (opts['update-docs']) console.error(`scanner bench: updated ${path.relative(ROOT, updateDocs(ROOT, 'scanner-results', md))}`);
