// TLS records that carry next to no data, from test/helpers/tiny_records.py (which makes them in
// memory and sends them in batches, so the proxy takes them as fast as it can).
//  - 1-byte records cost the proxy a decryption and a call into JavaScript per byte, in reads
//    that hold up every other client (here one such client held another's PING 3.5 s). Their
//    overhead (22 bytes a record under TLS 1.3) passes limits.tls_overhead_bytes (128 KiB) plus
//    16 bytes per data byte within a window of 500 ms: the proxy tears the connection down, counted
//    {reason="tls_flood", mode="abrupt"}, and the value never reaches Redis.
//  - 3-byte records (what a client writing each RESP token as a record of its own averages) are
//    not taken for one, however fast they come: the SET completes.
import assert from 'node:assert/strict';
import path from 'node:path';
import { describe, test } from 'node:test';
import { repoRoot, run, sleep } from '../helpers/common.js';
import { proxyBehindDoor } from '../helpers/full-accept-queue.js';
import { rssMiB } from '../helpers/rss.js';
import { logTail, useStack, type Stack } from '../helpers/fixture.js';
import { closeRecords, metricValue, waitForMetric } from '../helpers/proxy.js';
import { PYTHON } from '../helpers/strict-client.js';

const CLOSES = 'resp_tls_proxy_client_closes_total';
const SENDER = path.join(repoRoot, 'test', 'helpers', 'tiny_records.py');

interface SendReport {
  handshake: boolean;
  records: number;
  sent: number;
  closed: boolean;
  error?: string;
  elapsed_ms?: number;
  reply?: string;
}

async function sendInRecords(port: number, key: string, record: number, size: number, deadlineMs: number, lead = 0): Promise<SendReport> {
  const args = ['-S', SENDER, '--port', String(port), '--key', key, '--record', String(record), '--size', String(size), '--deadline-ms', String(deadlineMs), '--lead', String(lead)];
  const r = await run(PYTHON, args, { timeoutMs: deadlineMs + 30_000 });
  try {
    return JSON.parse(r.stdout) as SendReport;
  } catch {
    throw new Error(`tiny_records.py gave no report (exit ${r.code}): ${r.stdout}${r.stderr}`);
  }
}

/** A SET of `size` bytes in `record`-byte records, as fast as they come: served in full, no tls_flood. */
async function assertServed(stack: Stack, key: string, record: number, size: number): Promise<void> {
  const r = await sendInRecords(stack.proxy.port, key, record, size, 45_000);
  const why = `${JSON.stringify(r)}\n${logTail(stack.proxy)}`;
  assert.equal(r.closed, false, why);
  assert.equal(r.records, Math.ceil(size / record), why);
  assert.equal(Buffer.from(r.reply ?? '', 'base64').toString('latin1'), '+OK\r\n', why);
  assert.equal(await stack.redis.cli('STRLEN', key), String(size));
  const text = await stack.proxy.metrics();
  for (const mode of ['graceful', 'abrupt']) assert.equal(metricValue(text, CLOSES, { reason: 'tls_flood', mode }), 0, mode);
}

describe('TLS records that carry next to no data', { timeout: 120_000 }, () => {
  const stack = useStack();

  test('3-byte records as fast as they come are served', async () => {
    await assertServed(stack, 'tiny:3', 3, 600_000);
  });

  test('1-byte records as fast as they come are a flood: the connection is torn down', async () => {
    // Without the limit all 2,000,000 go through (~30 s here) and the SET completes.
    const r = await sendInRecords(stack.proxy.port, 'tiny:1', 1, 2_000_000, 60_000);
    const why = `${JSON.stringify(r)}\n${logTail(stack.proxy)}`;
    assert.equal(r.handshake, true, why);
    assert.equal(r.closed, true, why);
    assert.ok(r.records < 2_000_000, why);

    const text = await waitForMetric(stack.proxy, CLOSES, { reason: 'tls_flood', mode: 'abrupt' });
    assert.equal(metricValue(text, CLOSES, { reason: 'tls_flood', mode: 'abrupt' }), 1, logTail(stack.proxy));
    const rec = closeRecords(stack.proxy.logs()).find((l) => l.reason === 'tls_flood');
    assert.ok(rec, logTail(stack.proxy));
    assert.equal(rec.level, 40); // warn
    assert.ok(typeof rec.tls_data === 'number' && rec.tls_data > 0, `tls_data ${String(rec.tls_data)}`);
    assert.ok(typeof rec.tls_overhead === 'number' && rec.tls_overhead > 128 * 1024 + 16 * rec.tls_data, `tls_overhead ${String(rec.tls_overhead)}`);
    assert.equal(await stack.redis.cli('EXISTS', 'tiny:1'), '0');
  });
});

describe('limits.tls_overhead_bytes: 0 takes the limit off', { timeout: 120_000 }, () => {
  // The escape hatch for a client that pads small records: the same 1-byte records are served.
  const stack = useStack({ proxy: () => ({ limits: { tls_overhead_bytes: 0 } }) });

  test('1-byte records as fast as they come are served', async () => {
    await assertServed(stack, 'tiny:off', 1, 300_000);
  });
});

describe('2-byte records to a connection the proxy holds back', { timeout: 120_000 }, () => {
  // The backend connect hangs (a full accept queue), so each client is paused once 1 MiB waits
  // for it. Pausing a stream stops its 'data' events, not its reads: Node read ahead up to the
  // high-water mark in bytes, one Buffer per TLS record, so 2-byte records (under the tls_flood
  // limit) made each paused connection hold 8,000 (Node 20) to 33,000 (Node 26) of them. Measured
  // here, 4 clients: RSS +7.7 MiB a client on Node 20 and +11.9 on Node 26, against +1.2 and +1.8
  // with 64-byte records. The proxy now holds a paused client's mark at 1 byte, so only the
  // records of the read under way are kept: +3.8 and +3.9 MiB a client.
  const CLIENTS = 4;

  test(`${CLIENTS} clients, each 1 MiB in full records then 260 KB in 2-byte records: the proxy's RSS grows by less than 6 MiB a client`, { timeout: 90_000 }, async (t) => {
    const { proxy } = await proxyBehindDoor(t, { connectMs: 60_000, drainMs: 5_000 });
    await sleep(500);
    const before = rssMiB(proxy.pid);
    const sends = Array.from({ length: CLIENTS }, (_, i) => sendInRecords(proxy.port, `held:${i}`, 2, 1_300_000, 6_000, 1_040_000));
    const reports = await Promise.all(sends);
    const grown = rssMiB(proxy.pid) - before;
    const why = `${JSON.stringify(reports)}\nRSS +${grown.toFixed(1)} MiB\n${logTail(proxy)}`;
    t.diagnostic(`proxy RSS +${grown.toFixed(1)} MiB for ${CLIENTS} clients (${(grown / CLIENTS).toFixed(2)} MiB each)`);
    // The premise: every client got its records out (the proxy holds them back, the kernel takes them).
    for (const r of reports) assert.ok(r.handshake && r.records > 100_000 && !r.closed, why);
    assert.ok(grown / CLIENTS < 6, why);
  });
});
