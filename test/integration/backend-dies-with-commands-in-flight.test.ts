// When the backend goes away with commands in flight — killed (SIGKILL), shut down from another
// connection, or closing after QUIT — the client gets every reply the backend sent, then exactly
// one `-ERR backend connection lost` per forwarded command the backend did not answer, then
// close_notify: answered + lost == sent, so a client fails exactly the commands that did not
// complete. In SUBSCRIBE or MONITOR mode replies cannot be counted per command, and none are
// invented.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import net from 'node:net';
import tls from 'node:tls';
import { describe, test } from 'node:test';
import { sleep, waitFor } from '../helpers/common.js';
import { logTail, useStack, type Stack } from '../helpers/fixture.js';
import { metricSamples, metricValue, waitForMetric } from '../helpers/proxy.js';
import { encodeCommand, encodePipeline, show, splitReplies } from '../helpers/resp.js';
import { describe as showResult, strictClient, type StrictClientResult } from '../helpers/strict-client.js';

const LOST = '-ERR backend connection lost\r\n';
const CLOSES = 'resp_tls_proxy_client_closes_total';
const COMMANDS = 'resp_tls_proxy_commands_total';

const repeat = (s: string, n: number): string => s.repeat(n);

/** Is a client of the backend (CLIENT LIST run directly) at `cmd`, with every `extra` field (e.g. 'sub=2')? */
async function backendClientAt(stack: Stack, cmd: string, ...extra: string[]): Promise<boolean> {
  const list = await stack.redis.cli('CLIENT', 'LIST');
  return list.split('\n').some((l) => l.includes(` cmd=${cmd} `) && extra.every((e) => l.includes(` ${e} `)));
}

/** Waits until the proxy has counted `n` more forwarded commands than `base`. */
async function waitForwarded(stack: Stack, base: number, n: number): Promise<void> {
  const text = await waitForMetric(stack.proxy, COMMANDS, {}, (v) => v >= base + n, 10_000);
  assert.ok(metricValue(text, COMMANDS) >= base + n, `the proxy forwarded ${metricValue(text, COMMANDS) - base} of ${n} commands`);
}

/**
 * The reply is `answered` replies (a prefix of `possible`), then LOST for every other command,
 * then close_notify; answered + lost == sent.
 */
function assertAccounted(stack: Stack, r: StrictClientResult, sent: number, possible: string[], payloadLength: number): { answered: number; lost: number } {
  const why = `${showResult(r)}\n${logTail(stack.proxy)}`;
  assert.equal(r.close, 'close_notify', why);
  assert.equal(r.writeError, null, why);
  assert.equal(r.wrote, payloadLength, why);
  const { replies, rest } = splitReplies(r.reply);
  assert.equal(rest.length, 0, `incomplete reply at the end: ${show(rest)}\n${why}`);
  const texts = replies.map((b) => b.toString('latin1'));
  const firstLost = texts.indexOf(LOST);
  const answered = firstLost === -1 ? texts.length : firstLost;
  assert.deepEqual(texts.slice(0, answered), possible.slice(0, answered), `the answered replies are not the backend's\n${why}`);
  assert.ok(texts.slice(answered).every((t) => t === LOST), `a reply after the first LOST is not LOST\n${why}`);
  const lost = texts.length - answered;
  assert.equal(answered + lost, sent, `answered ${answered} + lost ${lost} != sent ${sent}\n${why}`);
  return { answered, lost };
}

async function assertClosesGraceful(stack: Stack, n: number, reason: 'backend_closed' | 'client_closed' = 'backend_closed'): Promise<void> {
  const text = await waitForMetric(stack.proxy, CLOSES, { mode: 'graceful', reason }, (v) => v >= n);
  assert.equal(metricValue(text, CLOSES, { mode: 'graceful', reason }), n, text);
  assert.deepEqual(metricSamples(text, CLOSES, { mode: 'abrupt' }).filter((s) => s.value > 0), [], text);
}

describe('SIGKILL while BLPOP blocks a pipeline of 1000 PINGs', { timeout: 90_000 }, () => {
  const stack = useStack();
  const N = 1000;

  test('SET and GET are answered; BLPOP and every PING get one LOST each; then close_notify', { timeout: 60_000 }, async () => {
    const base = metricValue(await stack.proxy.metrics(), COMMANDS);
    const cmds: string[][] = [['SET', 'k', 'v'], ['GET', 'k'], ['BLPOP', 'empty-list', '0']];
    for (let i = 0; i < N; i++) cmds.push(['PING']);
    const payload = encodePipeline(cmds);
    const client = strictClient({ port: stack.proxy.port, payload, caFile: stack.certs.caFile, readTimeoutMs: 20_000 });
    await waitFor('BLPOP to block on the backend', () => backendClientAt(stack, 'blpop'), 15_000);
    await waitForwarded(stack, base, cmds.length);
    process.kill(stack.redis.pid, 'SIGKILL');
    const r = await client;
    assert.equal(r.reply.toString('latin1'), `+OK\r\n$1\r\nv\r\n${repeat(LOST, N + 1)}`, `${showResult(r)}\n${logTail(stack.proxy)}`);
    const { answered, lost } = assertAccounted(stack, r, cmds.length, ['+OK\r\n', '$1\r\nv\r\n'], payload.length);
    assert.deepEqual({ answered, lost }, { answered: 2, lost: N + 1 });
  });

  test('/metrics: one graceful backend_closed, nothing abrupt; the proxy still accepts connections', { timeout: 20_000 }, async () => {
    await assertClosesGraceful(stack, 1);
    // The backend is gone for good: a new client learns why, in order.
    const r = await strictClient({ port: stack.proxy.port, payload: Buffer.from('PING\r\n'), caFile: stack.certs.caFile });
    assert.match(r.reply.toString('latin1'), /^-ERR backend unavailable \([^\r\n]*ECONNREFUSED\)\r\n$/, showResult(r));
    assert.equal(r.close, 'close_notify', showResult(r));
  });
});

describe('SIGKILL during DEBUG SLEEP', { timeout: 90_000 }, () => {
  const stack = useStack({ redis: { args: ['--enable-debug-command', 'yes'] } });
  const N = 50;

  test('whatever the backend had not written when it died is LOST, one per command', { timeout: 60_000 }, async () => {
    const base = metricValue(await stack.proxy.metrics(), COMMANDS);
    const cmds: string[][] = [['PING'], ['DEBUG', 'SLEEP', '30']];
    for (let i = 0; i < N; i++) cmds.push(['ECHO', `e${i}`]);
    const payload = encodePipeline(cmds);
    const client = strictClient({ port: stack.proxy.port, payload, caFile: stack.certs.caFile, readTimeoutMs: 20_000 });
    await waitForwarded(stack, base, cmds.length);
    // Redis answers nothing while it sleeps; give it a moment to read the pipeline and start.
    await sleep(300);
    process.kill(stack.redis.pid, 'SIGKILL');
    const r = await client;
    // +PONG is written only if Redis read PING before DEBUG SLEEP in an earlier event; usually it is lost too.
    const { answered, lost } = assertAccounted(stack, r, cmds.length, ['+PONG\r\n'], payload.length);
    assert.ok(answered <= 1 && lost >= N + 1, `answered ${answered}, lost ${lost}`);
  });

  test('/metrics: graceful backend_closed, nothing abrupt', { timeout: 20_000 }, async () => {
    await assertClosesGraceful(stack, 1);
  });
});

describe('SHUTDOWN NOSAVE from another connection while a pipeline waits behind BLPOP', { timeout: 90_000 }, () => {
  const stack = useStack();
  const N = 100;

  test('SET is answered; BLPOP and the PINGs get one LOST each; then close_notify', { timeout: 60_000 }, async () => {
    const base = metricValue(await stack.proxy.metrics(), COMMANDS);
    const cmds: string[][] = [['SET', 'k', 'v'], ['BLPOP', 'empty-list', '0']];
    for (let i = 0; i < N; i++) cmds.push(['PING']);
    const payload = encodePipeline(cmds);
    const client = strictClient({ port: stack.proxy.port, payload, caFile: stack.certs.caFile, readTimeoutMs: 20_000 });
    await waitFor('BLPOP to block on the backend', () => backendClientAt(stack, 'blpop'), 15_000);
    await waitForwarded(stack, base, cmds.length);
    // SHUTDOWN answers nothing on success: the connection just closes.
    await new Promise<void>((resolve) => {
      const s = net.connect({ host: '127.0.0.1', port: stack.redis.port });
      s.on('error', () => resolve());
      s.on('close', () => resolve());
      s.on('connect', () => s.end(encodeCommand(['SHUTDOWN', 'NOSAVE'])));
    });
    const r = await client;
    assert.equal(r.reply.toString('latin1'), `+OK\r\n${repeat(LOST, N + 1)}`, `${showResult(r)}\n${logTail(stack.proxy)}`);
    assertAccounted(stack, r, cmds.length, ['+OK\r\n'], payload.length);
  });

  test('/metrics: graceful backend_closed, nothing abrupt', { timeout: 20_000 }, async () => {
    await assertClosesGraceful(stack, 1);
  });
});

describe('SUBSCRIBE and MONITOR: no LOST replies are invented', { timeout: 90_000 }, () => {
  // Each test kills its own backend, so each gets its own stack.
  describe('SUBSCRIBE', () => {
    const stack = useStack();
    test('SUBSCRIBE ch1 ch2, PING, then SIGKILL → the confirmations and the pong, then close_notify, nothing else', { timeout: 60_000 }, async () => {
      const payload = encodePipeline([['SUBSCRIBE', 'ch1', 'ch2'], ['PING']]);
      const client = strictClient({ port: stack.proxy.port, payload, caFile: stack.certs.caFile, readTimeoutMs: 20_000 });
      await waitFor('the PING in subscribe mode', () => backendClientAt(stack, 'ping', 'sub=2'), 15_000);
      process.kill(stack.redis.pid, 'SIGKILL');
      const r = await client;
      const why = `${showResult(r)}\n${logTail(stack.proxy)}`;
      assert.equal(r.reply.toString('latin1'),
        '*3\r\n$9\r\nsubscribe\r\n$3\r\nch1\r\n:1\r\n*3\r\n$9\r\nsubscribe\r\n$3\r\nch2\r\n:2\r\n*2\r\n$4\r\npong\r\n$0\r\n\r\n', why);
      assert.equal(r.close, 'close_notify', why);
    });
    test('/metrics: graceful backend_closed, nothing abrupt', { timeout: 20_000 }, async () => {
      await assertClosesGraceful(stack, 1);
    });
  });

  describe('MONITOR', () => {
    const stack = useStack();
    test('MONITOR, then SIGKILL → +OK and the monitor feed, then close_notify, no LOST', { timeout: 60_000 }, async () => {
      const payload = encodeCommand(['MONITOR']);
      const client = strictClient({ port: stack.proxy.port, payload, caFile: stack.certs.caFile, readTimeoutMs: 20_000 });
      await waitFor('the MONITOR client', () => backendClientAt(stack, 'monitor'), 15_000);
      await stack.redis.cli('SET', 'seen-by-monitor', '1');
      process.kill(stack.redis.pid, 'SIGKILL');
      const r = await client;
      const why = `${showResult(r)}\n${logTail(stack.proxy)}`;
      const text = r.reply.toString('latin1');
      assert.ok(text.startsWith('+OK\r\n'), why);
      assert.match(text, /"SET" "seen-by-monitor" "1"/, why);
      assert.ok(!text.includes('backend connection lost'), why);
      assert.equal(r.close, 'close_notify', why);
    });
    test('/metrics: graceful backend_closed, nothing abrupt', { timeout: 20_000 }, async () => {
      await assertClosesGraceful(stack, 1);
    });
  });
});

describe('QUIT with more commands pipelined after it', { timeout: 90_000 }, () => {
  const stack = useStack();
  // Redis replies +OK to QUIT and reads nothing after it: what follows gets no reply, not even an
  // error, and never runs. The proxy forwards nothing after a QUIT and scans nothing either.

  test('QUIT, PING ×5 → +OK only, as from Redis, then close_notify', { timeout: 30_000 }, async () => {
    const payload = encodePipeline([['QUIT'], ['PING'], ['PING'], ['PING'], ['PING'], ['PING']]);
    const r = await strictClient({ port: stack.proxy.port, payload, caFile: stack.certs.caFile });
    assert.equal(r.reply.toString('latin1'), '+OK\r\n', `${showResult(r)}\n${logTail(stack.proxy)}`);
    assertAccounted(stack, r, 1, ['+OK\r\n'], payload.length);
  });

  test('SET, QUIT, SET, GET (inline) → +OK +OK; the SET after QUIT never ran', { timeout: 30_000 }, async () => {
    const payload = Buffer.from('SET before-quit 1\r\nQUIT\r\nSET after-quit 1\r\nGET before-quit\r\n');
    const r = await strictClient({ port: stack.proxy.port, payload, caFile: stack.certs.caFile });
    assert.equal(r.reply.toString('latin1'), '+OK\r\n+OK\r\n', `${showResult(r)}\n${logTail(stack.proxy)}`);
    assertAccounted(stack, r, 2, ['+OK\r\n', '+OK\r\n'], payload.length);
    assert.equal(await stack.redis.cli('GET', 'before-quit'), '1');
    assert.equal(await stack.redis.cli('EXISTS', 'after-quit'), '0');
  });

  test('QUIT then a malformed header → +OK only, no protocol error (Redis never reads it)', { timeout: 30_000 }, async () => {
    const payload = Buffer.concat([encodePipeline([['PING'], ['QUIT']]), Buffer.from('*x\r\n'), Buffer.alloc(256 * 1024, 'y')]);
    const r = await strictClient({ port: stack.proxy.port, payload, caFile: stack.certs.caFile });
    assert.equal(r.reply.toString('latin1'), '+PONG\r\n+OK\r\n', `${showResult(r)}\n${logTail(stack.proxy)}`);
    assertAccounted(stack, r, 2, ['+PONG\r\n', '+OK\r\n'], payload.length);
  });

  test('/metrics: graceful client_closed ×3 (the backend closed after each QUIT), nothing abrupt, no protocol error', { timeout: 20_000 }, async () => {
    await assertClosesGraceful(stack, 3, 'client_closed');
    const text = await stack.proxy.metrics();
    assert.deepEqual(metricSamples(text, 'resp_tls_proxy_protocol_errors_total').filter((s) => s.value > 0), [], text);
  });
});

const HUGE = 32 * 1024 * 1024;

/**
 * Stores a 32 MiB value as `huge`, sends `payload` (which GETs it) through the proxy without
 * reading, kills the proxy's backend connection while Redis is still writing the reply, then
 * reads everything the proxy sends until its close. Returns what was read.
 */
async function cutMidReply(stack: Stack, payload: Buffer): Promise<Buffer> {
  // SET the value directly, in one request (redis-cli cannot take 32 MiB as an argument).
  await new Promise<void>((resolve, reject) => {
    const s = net.connect({ host: '127.0.0.1', port: stack.redis.port });
    s.on('error', reject);
    s.on('data', (d: Buffer) => {
      if (d.toString('latin1').startsWith('+OK')) {
        s.end();
        resolve();
      } else reject(new Error(`SET answered ${show(d)}`));
    });
    s.on('connect', () => s.write(encodeCommand(['SET', 'huge', Buffer.alloc(HUGE, 'v')])));
  });
  const opts = { host: '127.0.0.1', port: stack.proxy.port, servername: 'localhost', ca: readFileSync(stack.certs.caFile), allowHalfOpen: true };
  const sock = tls.connect(opts);
  const chunks: Buffer[] = [];
  const ended = new Promise<void>((resolve, reject) => {
    const t = setTimeout(() => reject(new Error('no end within 30 s')), 30_000);
    sock.on('close', () => clearTimeout(t));
    sock.on('end', () => {
      clearTimeout(t);
      resolve();
    });
    sock.on('error', (e) => {
      clearTimeout(t);
      reject(e);
    });
  });
  sock.on('data', (d: Buffer) => chunks.push(d));
  await new Promise<void>((resolve) => sock.once('secureConnect', resolve));
  sock.pause(); // do not read: the reply backs up into Redis's output buffer
  sock.write(payload);
  // The proxy's backend connection, blocked writing the reply (omem > 0 in CLIENT LIST).
  const id = await waitFor('the proxy\'s backend connection in CLIENT LIST', async () => {
    const list = await stack.redis.cli('CLIENT', 'LIST');
    // GET and the PINGs ran; their replies wait in the output buffer (omem).
    const line = list.split('\n').find((l) => / cmd=(get|ping) /.test(l) && / omem=[1-9]/.test(l));
    return line === undefined ? undefined : /^id=(\d+)/.exec(line)?.[1];
  }, 15_000).catch(async (e: unknown) => {
    sock.destroy();
    throw new Error(`${String(e)}\n${await stack.redis.cli('CLIENT', 'LIST')}`);
  });
  assert.equal(await stack.redis.cli('CLIENT', 'KILL', 'ID', id), '1');
  sock.resume();
  await ended;
  sock.end();
  return Buffer.concat(chunks);
}

/** The reply is the header of the 32 MiB value and less than all of it, and nothing but the value's bytes. */
function assertCutValueOnly(reply: Buffer, why: string): void {
  const header = `$${HUGE}\r\n`;
  assert.equal(reply.subarray(0, header.length).toString('latin1'), header, why);
  const body = reply.subarray(header.length);
  assert.ok(body.length < HUGE, `the reply was not cut (${body.length} bytes of ${HUGE})\n${why}`);
  const foreign = body.findIndex((b) => b !== 0x76);
  assert.equal(foreign, -1, `bytes other than the value follow the cut-off reply at offset ${foreign}: ${show(body.subarray(foreign, foreign + 200))}\n${why}`);
}

describe('the backend dies in the middle of a reply', { timeout: 90_000 }, () => {
  // A 32 MiB value: the proxy relays it to a client that does not read, so most of it still
  // waits in Redis's output buffer when the proxy's backend connection is killed. Whatever the
  // proxy then writes after the cut-off reply would be read by the client as part of the value
  // (a parser that trusts the declared length returns "…vvv-ERR backend conn" as the value when
  // the cut is close to the end), so nothing may follow it but close_notify.
  const stack = useStack();

  test('GET of 32 MiB then PING ×3, backend connection killed mid-reply → the cut-off value and nothing else, then the close', { timeout: 60_000 }, async () => {
    const reply = await cutMidReply(stack, encodePipeline([['GET', 'huge'], ['PING'], ['PING'], ['PING']]));
    assertCutValueOnly(reply, `${reply.length} bytes: ${show(reply, 300)}\n${logTail(stack.proxy)}`);
  });

  test('/metrics: graceful backend_closed, nothing abrupt', { timeout: 20_000 }, async () => {
    await assertClosesGraceful(stack, 1);
  });
});

describe('CLIENT REPLY OFF: replies no longer one per command, so none are invented or waited for', { timeout: 90_000 }, () => {
  const stack = useStack();

  test('CLIENT REPLY OFF, SET ×2, then the client closes → close_notify at once (not after drain_timeout_ms), no LOST; the SETs ran', { timeout: 30_000 }, async () => {
    const payload = Buffer.from('CLIENT REPLY OFF\r\nSET reply-off-a 1\r\nSET reply-off-b 2\r\n');
    const r = await strictClient({ port: stack.proxy.port, payload, caFile: stack.certs.caFile, afterWrite: 'close_notify', initialDelayMs: 0 });
    const why = `${showResult(r)}\n${logTail(stack.proxy)}`;
    assert.equal(r.reply.toString('latin1'), '', why);
    assert.equal(r.close, 'close_notify', why);
    // The proxy used to wait close.drain_timeout_ms (5 s) for three replies that never come.
    assert.ok(r.elapsedMs < 3_000, `took ${r.elapsedMs} ms\n${why}`);
    assert.equal(await stack.redis.cli('MGET', 'reply-off-a', 'reply-off-b'), '1\n2');
  });

  test('CLIENT REPLY SKIP, then SIGKILL with a BLPOP in flight → the replies sent, no LOST, close_notify', { timeout: 30_000 }, async () => {
    const payload = encodePipeline([['CLIENT', 'REPLY', 'SKIP'], ['SET', 'skip', '1'], ['GET', 'skip'], ['BLPOP', 'empty-list', '0']]);
    const client = strictClient({ port: stack.proxy.port, payload, caFile: stack.certs.caFile, readTimeoutMs: 20_000 });
    await waitFor('BLPOP to block on the backend', () => backendClientAt(stack, 'blpop'), 15_000);
    process.kill(stack.redis.pid, 'SIGKILL');
    const r = await client;
    const why = `${showResult(r)}\n${logTail(stack.proxy)}`;
    assert.equal(r.reply.toString('latin1'), '$1\r\n1\r\n', why);
    assert.equal(r.close, 'close_notify', why);
  });
});

describe('UNSUBSCRIBE: its replies are not one per command, so none are invented or waited for', { timeout: 60_000 }, () => {
  const stack = useStack();

  test('RESP3: HELLO 3, UNSUBSCRIBE (answered by a push, not a reply), PING, then the client closes → +PONG, close_notify at once, no LOST', { timeout: 30_000 }, async () => {
    const payload = encodePipeline([['HELLO', '3'], ['UNSUBSCRIBE'], ['PING']]);
    const r = await strictClient({ port: stack.proxy.port, payload, caFile: stack.certs.caFile, afterWrite: 'close_notify', initialDelayMs: 0 });
    const why = `${showResult(r)}\n${logTail(stack.proxy)}`;
    const reply = r.reply.toString('latin1');
    assert.ok(reply.includes('>3\r\n$11\r\nunsubscribe\r\n_\r\n:0\r\n'), why);
    assert.ok(reply.endsWith('+PONG\r\n'), why);
    assert.ok(!reply.includes('backend connection lost'), why);
    assert.equal(r.close, 'close_notify', why);
    // Counted as a command owed a reply, the UNSUBSCRIBE kept the proxy waiting close.drain_timeout_ms (5 s).
    assert.ok(r.elapsedMs < 3_000, `took ${r.elapsedMs} ms\n${why}`);
  });

  test('a refused HELLO 3 (wrong password) leaves RESP2: a bare UNSUBSCRIBE is one reply, still counted; SIGKILL with a BLPOP in flight → LOST for it', { timeout: 30_000 }, async () => {
    // As clients do: HELLO first, the rest once it is answered (pipelined behind it, the
    // UNSUBSCRIBE would be taken as RESP3, the safe guess, and stop the count).
    const hello = encodeCommand(['HELLO', '3', 'AUTH', 'nobody', 'wrong']);
    const payload = Buffer.concat([hello, encodePipeline([['UNSUBSCRIBE'], ['BLPOP', 'empty-list', '0']])]);
    const client = strictClient({ port: stack.proxy.port, payload, caFile: stack.certs.caFile, readTimeoutMs: 20_000, chunkSize: hello.length, chunkDelayMs: 300 });
    await waitFor('BLPOP to block on the backend', () => backendClientAt(stack, 'blpop'), 15_000);
    process.kill(stack.redis.pid, 'SIGKILL');
    const r = await client;
    const why = `${showResult(r)}\n${logTail(stack.proxy)}`;
    const { replies, rest } = splitReplies(r.reply);
    assert.equal(rest.length, 0, why);
    const texts = replies.map((b) => b.toString('latin1'));
    assert.equal(texts.length, 3, why);
    assert.match(texts[0]!, /^-WRONGPASS /, why);
    assert.equal(texts[1], '*3\r\n$11\r\nunsubscribe\r\n$-1\r\n:0\r\n', why);
    assert.equal(texts[2], LOST, why);
    assert.equal(r.close, 'close_notify', why);
  });
});

describe('the LOST replies for a huge unanswered pipeline are bounded', { timeout: 90_000 }, () => {
  const stack = useStack();

  test('600,000 PINGs read by a paused backend that then dies → at most 1 MiB of LOST replies, then close_notify; the proxy stays up', { timeout: 60_000 }, async () => {
    const n = 600_000;
    const base = metricValue(await stack.proxy.metrics(), COMMANDS);
    // A paused Redis still reads its clients' input, it only stops running it: every PING reaches it unanswered.
    await stack.redis.cli('CLIENT', 'PAUSE', '30000', 'ALL');
    const payload = Buffer.from(repeat(encodeCommand(['PING']).toString('latin1'), n), 'latin1');
    const client = strictClient({ port: stack.proxy.port, payload, caFile: stack.certs.caFile, readTimeoutMs: 20_000 });
    await waitForwarded(stack, base, n);
    process.kill(stack.redis.pid, 'SIGKILL');
    const r = await client;
    const why = `${showResult(r)}\n${logTail(stack.proxy)}`;
    assert.equal(r.close, 'close_notify', why);
    const { replies, rest } = splitReplies(r.reply);
    assert.equal(rest.length, 0, why);
    assert.ok(replies.every((b) => b.toString('latin1') === LOST), why);
    // One LOST per command used to be 18 MB here, and grows with the pipeline without bound.
    assert.equal(replies.length, Math.floor((1024 * 1024) / LOST.length), why);
    assert.equal(stack.proxy.proc.exitCode, null, 'the proxy runs on');
  });
});

describe('a protocol error pipelined after a reply the backend then cuts off', { timeout: 90_000 }, () => {
  const stack = useStack();

  test('GET of 32 MiB, PING, then a bad header; backend connection killed mid-reply → the cut-off value and nothing else: no error text inside the value', { timeout: 60_000 }, async () => {
    const payload = Buffer.concat([encodePipeline([['GET', 'huge'], ['PING']]), Buffer.from('*1\r\n$x\r\n')]);
    const reply = await cutMidReply(stack, payload);
    assertCutValueOnly(reply, `${reply.length} bytes: ${show(reply, 300)}\n${logTail(stack.proxy)}`);
    const text = await waitForMetric(stack.proxy, CLOSES, { mode: 'graceful', reason: 'protocol_error' }, (v) => v >= 1);
    assert.equal(metricValue(text, CLOSES, { mode: 'graceful', reason: 'protocol_error' }), 1, text);
  });
});
