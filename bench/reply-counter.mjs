#!/usr/bin/env node
// Micro-benchmark of reply counting alone (dist/resp/reply-counter.js): what the session pays per
// byte the backend sends, so that it can answer each unanswered command when the backend dies.
// One core, no sockets: a fresh ReplyCounter per run is fed a ~4 MiB reply stream in 16 KiB
// chunks (a TCP read's usual size) and 64 KiB chunks. Medians of several timed runs after a warm-up;
// every run checks the count.
//
//   node bench/reply-counter.mjs [--runs N] [--min-ms MS] [--streams bar,value_16k] [--chunks 16384,65536]
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const { values: opts } = parseArgs({
  options: {
    runs: { type: 'string', default: '7' },
    'min-ms': { type: 'string', default: '300' },
    streams: { type: 'string' },
    chunks: { type: 'string', default: '16384,65536' },
    help: { type: 'boolean', short: 'h', default: false },
  },
});
const modulePath = path.join(ROOT, 'dist', 'resp', 'reply-counter.js');
if (opts.help) {
  console.log('usage: node bench/reply-counter.mjs [--runs N] [--min-ms MS] [--streams LIST] [--chunks 16384,65536]');
  process.exit(0);
}
if (!fs.existsSync(modulePath)) {
  console.error('reply-counter bench: dist/resp/reply-counter.js not found — run `npm run build` first');
  process.exit(2);
}
const { ReplyCounter } = await import(pathToFileURL(modulePath).href);

const TARGET = 4 * 1024 * 1024;
/** Repeats one reply to about TARGET bytes; returns the stream and how many replies it holds. */
function stream(one) {
  const b = Buffer.from(one, 'latin1');
  const n = Math.ceil(TARGET / b.length);
  return { buf: Buffer.concat(Array.from({ length: n }, () => b)), replies: n };
}
const v16k = 'v'.repeat(16384);
const STREAMS = {
  bar: ['GET replies: $3 bar', stream('$3\r\nbar\r\n')],
  ok: ['SET replies: +OK', stream('+OK\r\n')],
  int: ['INCR replies: :N', stream(':1234567\r\n')],
  value_1k: ['1 KiB values', stream(`$1024\r\n${'v'.repeat(1024)}\r\n`)],
  value_16k: ['16 KiB values', stream(`$16384\r\n${v16k}\r\n`)],
  mget_10: ['MGET of 10: array of 10 × $3', stream(`*10\r\n${'$3\r\nbar\r\n'.repeat(10)}`)],
  resp3_map: ['RESP3 map of 4 with a push between', stream('%4\r\n+a\r\n:1\r\n+b\r\n:2\r\n+c\r\n#t\r\n+d\r\n_\r\n>2\r\n+pubsub\r\n+x\r\n')],
};
const pick = opts.streams ? opts.streams.split(',') : Object.keys(STREAMS);
const CHUNKS = opts.chunks.split(',').map(Number);
const RUNS = Number(opts.runs);
const MIN_MS = Number(opts['min-ms']);

function once(buf, chunk, expected) {
  const c = new ReplyCounter();
  for (let i = 0; i < buf.length; i += chunk) c.feed(buf.subarray(i, i + chunk));
  if (c.replies !== expected || c.broken) throw new Error(`counted ${c.replies} (broken=${c.broken}), expected ${expected}`);
}

function measure(buf, chunk, expected) {
  for (let i = 0; i < 5; i++) once(buf, chunk, expected); // warm-up
  const rates = [];
  for (let r = 0; r < RUNS; r++) {
    let n = 0;
    const t0 = process.hrtime.bigint();
    let elapsed = 0;
    do {
      once(buf, chunk, expected);
      n++;
      elapsed = Number(process.hrtime.bigint() - t0) / 1e6;
    } while (elapsed < MIN_MS);
    rates.push((n * buf.length) / (elapsed / 1000));
  }
  rates.sort((a, b) => a - b);
  return rates[Math.floor(rates.length / 2)];
}

console.log(`ReplyCounter (${path.relative(ROOT, modulePath)}), Node ${process.version}, median of ${RUNS} runs ≥ ${MIN_MS} ms, ~4 MiB streams`);
console.log('| stream | chunk | MB/s | replies/s | ns/reply |');
console.log('|---|---:|---:|---:|---:|');
for (const name of pick) {
  const entry = STREAMS[name];
  if (!entry) throw new Error(`unknown stream ${name}; known: ${Object.keys(STREAMS).join(', ')}`);
  const [label, { buf, replies }] = entry;
  for (const chunk of CHUNKS) {
    const bps = measure(buf, chunk, replies);
    const perReply = buf.length / replies;
    const rps = bps / perReply;
    console.log(`| ${name} (${label}) | ${chunk / 1024} KiB | ${(bps / 1e6).toFixed(0)} | ${(rps / 1e6).toFixed(1)} M | ${(1e9 / rps).toFixed(0)} |`);
  }
}
