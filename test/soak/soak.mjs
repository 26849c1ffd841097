#!/usr/bin/env node
// Faults under load, the long version of test/integration/faults-under-load.test.ts:
// redis-benchmark --tls and Node TLS clients drive the proxy while the backend is killed with
// SIGKILL and restarted on the same port, cycle after cycle, and some clients reset. At the end
// it prints the figures and exits 0 when
//   - every abrupt close was caused by the client (a reset, or a client that vanished mid-close),
//   - no reply was wrong (a GET always returned what its connection had just SET, or an error),
//   - a new connection is served and none is left open,
//   - the proxy's RSS settled within SOAK_RSS_SLACK_MIB (default 50) of its baseline;
// 1 otherwise. Bounded: about SOAK_CYCLES × (SOAK_LOAD_MS + SOAK_DOWN_MS) + SOAK_SETTLE_MS.
//
// Needs the build and the compiled test helpers:
//   npx tsc -p tsconfig.json && npx tsc -p tsconfig.test.json && node test/soak/soak.mjs
// Environment: SOAK_CYCLES (10), SOAK_LOAD_MS (8000), SOAK_DOWN_MS (2000), SOAK_RESETS (4),
// SOAK_NODE_CLIENTS (8), SOAK_BENCH_ARGS ("-c 20 -n 50000 -t set,get -P 4"), SOAK_SETTLE_MS (15000),
// SOAK_RSS_SLACK_MIB (50).
import { existsSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const helpers = path.join(root, 'dist-test', 'test', 'helpers', 'faults.js');
if (!existsSync(helpers) || !existsSync(path.join(root, 'dist', 'cli.js'))) {
  console.error('soak: build first: npx tsc -p tsconfig.json && npx tsc -p tsconfig.test.json');
  process.exit(2);
}
const { runFaultsUnderLoad, formatFaultsReport } = await import(helpers);

const num = (name, dflt) => {
  const v = process.env[name];
  if (v === undefined || v === '') return dflt;
  const n = Number(v);
  if (!Number.isFinite(n) || n < 0) {
    console.error(`soak: ${name} must be a non-negative number`);
    process.exit(2);
  }
  return n;
};
const opts = {
  cycles: num('SOAK_CYCLES', 10),
  loadBetweenMs: num('SOAK_LOAD_MS', 8000),
  downMs: num('SOAK_DOWN_MS', 2000),
  resetsPerCycle: num('SOAK_RESETS', 4),
  nodeClients: num('SOAK_NODE_CLIENTS', 8),
  benchmarkArgs: (process.env.SOAK_BENCH_ARGS ?? '-c 20 -n 50000 -t set,get -P 4').split(/\s+/).filter(Boolean),
  settleMs: num('SOAK_SETTLE_MS', 15000),
  log: (line) => console.log(`[${new Date().toISOString().slice(11, 19)}] ${line}`),
};
const slack = num('SOAK_RSS_SLACK_MIB', 50);

let started = null;
let failures = [];
let report = null;
try {
  console.log(`soak: ${opts.cycles} cycles, ${opts.loadBetweenMs} ms load between kills, backend down ${opts.downMs} ms, ${opts.resetsPerCycle} resets per cycle, ${opts.nodeClients} Node clients, redis-benchmark ${opts.benchmarkArgs.join(' ')}`);
  report = await runFaultsUnderLoad(opts, (p) => { started = p; });
  console.log(formatFaultsReport(report));
  if (report.unexplainedAbrupt.length > 0) {
    failures.push(`${report.unexplainedAbrupt.length} abrupt closes not caused by the client`);
    for (const r of report.unexplainedAbrupt.slice(0, 10)) console.log(`  ${JSON.stringify(r)}`);
  }
  if (report.node.wrong > 0) failures.push(`${report.node.wrong} wrong replies: ${report.node.wrongSamples.join('; ')}`);
  if (report.pingAfter !== '+PONG\r\n') failures.push(`PING after the load answered ${JSON.stringify(report.pingAfter)}`);
  if (report.connectionsActiveAfter !== 0) failures.push(`${report.connectionsActiveAfter} connections still open`);
  if (report.rss.after - report.rss.baseline > slack) failures.push(`RSS settled ${(report.rss.after - report.rss.baseline).toFixed(1)} MiB above baseline (allowed ${slack})`);
  if (report.proxy.proc.exitCode !== null) failures.push('the proxy exited');
} catch (e) {
  failures.push(`soak broke: ${e?.stack ?? e}`);
} finally {
  await Promise.allSettled([started?.proxy.stop(), started?.redis.stop()]);
}
if (failures.length > 0) {
  console.log(`soak: FAIL\n  ${failures.join('\n  ')}`);
  process.exit(1);
}
console.log('soak: ok');
process.exit(0);
