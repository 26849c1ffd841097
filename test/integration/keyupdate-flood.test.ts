// TLS 1.3 KeyUpdate messages, from a client driving libssl itself (test/helpers/keyupdate_flood.py).
//  - A client that sends 1,000 requests and reads is served as usual: its PING gets +PONG.
//  - A client reading 1 MB replies at 2 MB/s is not taken for a flood: what waits for it in TLS
//    is our writes, not TLS's own output.
//  - A client that sends requests without end and reads nothing makes OpenSSL queue one KeyUpdate
//    answer per request, which Node keeps without a limit (1 MB/s and more, for as long as the
//    client goes on). Once TLS's own output for the connection passes TLS_OWN_OUTPUT_MAX (64 KiB)
//    the proxy tears it down: counted {reason="output_buffer_limit", mode="abrupt"}, logged at
//    warn. Sent at 6,000 a second, under the overhead limit below, so it is this limit that ends it.
//  - A client that sends them as fast as it can (update_not_requested: nothing is answered, so
//    nothing queues) costs the proxy a key derivation each, in reads that hold up every other
//    client, and it went on for as long as the client liked. Past limits.tls_overhead_bytes
//    (128 KiB) of TLS overhead in a window of 500 ms (beyond 16 bytes per data byte) the proxy
//    tears it down:
//    counted {reason="tls_flood", mode="abrupt"}, logged at warn with tls_overhead and tls_data.
//    The proxy serves other clients before and after.
import assert from 'node:assert/strict';
import path from 'node:path';
import { describe, test } from 'node:test';
import { repoRoot, run } from '../helpers/common.js';
import { logTail, useStack, type Stack } from '../helpers/fixture.js';
import { closeRecords, metricValue, waitForMetric, type LogRecord } from '../helpers/proxy.js';
import { encodeCommand } from '../helpers/resp.js';
import { PYTHON, describe as showResult, strictClient } from '../helpers/strict-client.js';
import { tlsRequest, untilText } from '../helpers/tls-request.js';

const CLOSES = 'resp_tls_proxy_client_closes_total';
const FLOOD = path.join(repoRoot, 'test', 'helpers', 'keyupdate_flood.py');

interface FloodReport {
  handshake: boolean;
  version?: string;
  sent: number;
  closed: boolean;
  error?: string;
  elapsed_ms?: number;
  reply?: string;
}

async function keyUpdates(port: number, args: string[], deadlineMs: number): Promise<FloodReport> {
  const r = await run(PYTHON, ['-S', FLOOD, '--port', String(port), '--deadline-ms', String(deadlineMs), ...args], { timeoutMs: deadlineMs + 30_000 });
  try {
    return JSON.parse(r.stdout) as FloodReport;
  } catch {
    throw new Error(`keyupdate_flood.py gave no report (exit ${r.code}): ${r.stdout}${r.stderr}`);
  }
}

/**
 * Runs the flood (args: keyupdate_flood.py's, with --count) until the proxy ends it, and checks
 * that it was torn down for `reason`: the client saw the close before its count ran out, counted
 * abrupt once, logged at warn. Returns the close record.
 */
async function tornDown(stack: Stack, args: string[], deadlineMs: number, reason: string): Promise<LogRecord> {
  const count = Number(args[args.indexOf('--count') + 1]);
  const r = await keyUpdates(stack.proxy.port, args, deadlineMs);
  assert.equal(r.handshake, true, JSON.stringify(r));
  assert.equal(r.closed, true, `not closed: ${JSON.stringify(r)}\n${logTail(stack.proxy)}`);
  assert.ok(r.sent < count, JSON.stringify(r));
  const text = await waitForMetric(stack.proxy, CLOSES, { reason, mode: 'abrupt' });
  assert.equal(metricValue(text, CLOSES, { reason, mode: 'abrupt' }), 1, logTail(stack.proxy));
  assert.equal(metricValue(text, CLOSES, { reason, mode: 'graceful' }), 0);
  const rec = closeRecords(stack.proxy.logs()).find((l) => l.reason === reason);
  assert.ok(rec, logTail(stack.proxy));
  assert.equal(rec.mode, 'abrupt');
  assert.equal(rec.level, 40); // warn
  return rec;
}

async function ping(port: number): Promise<string> {
  const r = await tlsRequest({ port, payload: encodeCommand(['PING']), until: untilText('+PONG\r\n'), timeoutMs: 10_000 });
  return r.data.toString('latin1');
}

describe('TLS 1.3 KeyUpdate requests', { timeout: 180_000 }, () => {
  const stack = useStack();

  test('a client that sends 1,000 and reads is served', async () => {
    const r = await keyUpdates(stack.proxy.port, ['--count', '1000', '--then', 'read'], 30_000);
    assert.equal(r.handshake, true, JSON.stringify(r));
    assert.equal(r.version, 'TLSv1.3');
    assert.equal(r.sent, 1000, JSON.stringify(r));
    assert.equal(r.closed, false, JSON.stringify(r));
    assert.equal(Buffer.from(r.reply ?? '', 'base64').toString('latin1'), '+PONG\r\n');
    const text = await stack.proxy.metrics();
    for (const reason of ['output_buffer_limit', 'tls_flood']) for (const mode of ['graceful', 'abrupt']) assert.equal(metricValue(text, CLOSES, { reason, mode }), 0, `${reason} ${mode}`);
  });

  test('a client reading 1 MB replies slowly is not taken for one (its replies are not TLS\'s own output)', { timeout: 60_000 }, async () => {
    // 8 MB at 2 MB/s: replies wait in the proxy's TLS layer, written but not yet taken by the
    // kernel, for seconds, and the check looks at them every 500 ms.
    await stack.redis.cli('SETRANGE', 'ku:big', String(1_000_000 - 1), 'v');
    const payload = Buffer.concat(Array.from({ length: 8 }, () => encodeCommand(['GET', 'ku:big'])));
    const r = await strictClient({ port: stack.proxy.port, payload, caFile: stack.certs.caFile, readRate: 2_000_000, rcvbuf: 64 * 1024, readTimeoutMs: 20_000, afterWrite: 'close_notify' });
    const why = `${showResult(r)}\n${logTail(stack.proxy)}`;
    assert.equal(r.reply.length, 8 * (`$1000000\r\n`.length + 1_000_000 + 2), why);
    assert.equal(r.close, 'close_notify', why);
    assert.ok(r.elapsedMs > 2_000, `read in ${r.elapsedMs} ms: too fast to have been looked at\n${why}`);
    const text = await stack.proxy.metrics();
    for (const reason of ['output_buffer_limit', 'tls_flood']) for (const mode of ['graceful', 'abrupt']) assert.equal(metricValue(text, CLOSES, { reason, mode }), 0, `${reason} ${mode}`);
  });

  test('a client that sends them without end and reads nothing is closed once the answers TLS queues pass the limit', { timeout: 120_000 }, async () => {
    assert.equal(await ping(stack.proxy.port), '+PONG\r\n');
    // 450,000 answers (~12 MB) is far past what the kernel's buffers and the limit hold together
    // (here the limit was reached after ~114,000, in 16 s); without the limit the proxy holds
    // them all, and the client is not closed. At 6,000 a second (162 KB/s of overhead) it stays
    // under the overhead limit (256 KiB/s).
    const rec = await tornDown(stack, ['--count', '450000', '--rate', '6000', '--rcvbuf', '4096'], 75_000, 'output_buffer_limit');
    assert.ok(typeof rec.tls_output === 'number' && rec.tls_output > 64 * 1024, `tls_output ${String(rec.tls_output)}`);

    assert.equal(await ping(stack.proxy.port), '+PONG\r\n');
  });

  test('a client that sends them as fast as it can is closed for its TLS overhead', { timeout: 60_000 }, async () => {
    assert.equal(await ping(stack.proxy.port), '+PONG\r\n');
    // Without the limit this goes on to the deadline (~40,000 a second here, nothing answered).
    const rec = await tornDown(stack, ['--count', '3000000', '--kind', 'not_requested'], 30_000, 'tls_flood');
    assert.ok(typeof rec.tls_overhead === 'number' && rec.tls_overhead > 128 * 1024, `tls_overhead ${String(rec.tls_overhead)}`);
    assert.equal(rec.tls_data, 0);

    assert.equal(await ping(stack.proxy.port), '+PONG\r\n');
  });
});
