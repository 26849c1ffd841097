// The process around the proxy: a SIGHUP in its first milliseconds neither kills it nor is lost,
// a SIGTERM then stops it in order (exit 0), and it still exits on SIGTERM when whoever read its stdout has gone (EPIPE on every log line).
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { describe, test } from 'node:test';
import YAML from 'yaml';
import { sharedCerts } from '../helpers/certs.js';
import { makeTempDir, repoRoot, sleep, trackChild, waitExit, waitFor } from '../helpers/common.js';
import { PROXY_CLI } from '../helpers/proxy.js';

/** Starts the CLI on ports the OS picks, stdout piped to us; `lines` collects what it logged. */
async function spawnProxy(extra: Record<string, unknown> = {}): Promise<{ child: ChildProcess; lines: string[]; stderr: () => string }> {
  const certs = await sharedCerts();
  const dir = makeTempDir('resp-tls-proxy-lifecycle-');
  const configFile = path.join(dir, 'proxy.yaml');
  const config = {
    listen: { host: '127.0.0.1', port: 0 },
    admin: { host: '127.0.0.1', port: 0 },
    tls: { cert_file: certs.certFile, key_file: certs.keyFile },
    backend: { host: '127.0.0.1', port: 1 },
    shutdown: { grace_ms: 500 },
    ...extra,
  };
  writeFileSync(configFile, YAML.stringify(config));
  const child = spawn(process.execPath, [PROXY_CLI, '--config', configFile], { cwd: repoRoot, stdio: ['ignore', 'pipe', 'pipe'] });
  trackChild(child);
  const lines: string[] = [];
  let rest = '';
  child.stdout!.setEncoding('utf8');
  child.stdout!.on('data', (d: string) => {
    rest += d;
    let i: number;
    while ((i = rest.indexOf('\n')) >= 0) {
      lines.push(rest.slice(0, i));
      rest = rest.slice(i + 1);
    }
  });
  let stderr = '';
  child.stderr!.setEncoding('utf8');
  child.stderr!.on('data', (d: string) => { stderr += d; });
  return { child, lines, stderr: () => stderr };
}

function waitLine(lines: string[], msg: string, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  return new Promise((resolve, reject) => {
    const look = (): void => {
      if (lines.some((l) => l.includes(`"msg":"${msg}"`))) return resolve();
      if (Date.now() > deadline) return reject(new Error(`no "${msg}" line within ${timeoutMs} ms:\n${lines.join('\n')}`));
      setTimeout(look, 20);
    };
    look();
  });
}

/** Exit status, or 'still running' after timeoutMs (the child is then killed). */
async function exitWithin(child: ChildProcess, timeoutMs: number): Promise<string> {
  const timer = sleep(timeoutMs).then(() => 'still running');
  const result = await Promise.race([waitExit(child).then((e) => `code ${e.code} signal ${e.signal}`), timer]);
  if (result === 'still running') child.kill('SIGKILL');
  return result;
}

describe('process lifecycle', { timeout: 120_000 }, () => {
  test('SIGHUPs from the first milliseconds on: the process lives, and reloads once it is up', { timeout: 30_000 }, async () => {
    const { child, lines, stderr } = await spawnProxy();
    // Node's own start (~140 ms here) runs before any of our code: from the moment the process
    // catches SIGHUP (bit 0 of SigCgt), every one must be survived, and none lost.
    await waitFor('SIGHUP caught', () => (BigInt(`0x${/SigCgt:\s*([0-9a-f]+)/.exec(readFileSync(`/proc/${child.pid}/status`, 'latin1'))?.[1] ?? '0'}`) & 1n) === 1n, 10_000, 2);
    let sent = 0;
    const timer = setInterval(() => {
      if (child.exitCode === null && child.signalCode === null) {
        child.kill('SIGHUP');
        sent++;
      }
    }, 25);
    try {
      await waitLine(lines, 'listening', 15_000);
    } catch (err) {
      throw new Error(`${(err as Error).message}\nexit: ${child.exitCode} ${child.signalCode}; SIGHUPs sent: ${sent}\nstderr: ${stderr()}`);
    } finally {
      clearInterval(timer);
    }
    assert.ok(sent >= 2, `only ${sent} SIGHUPs went out before it listened`); // ~350 ms of loading here
    await waitLine(lines, 'configuration reloaded', 5_000); // the one that came while it started
    child.kill('SIGTERM');
    assert.equal(await exitWithin(child, 10_000), 'code 0 signal null', lines.join('\n'));
  });

  for (const workers of [1, 2]) {
    test(`SIGTERM in the first milliseconds (workers: ${workers}): held until the stop handler is in place, then an orderly exit 0, not death by signal`, { timeout: 30_000 }, async () => {
      const { child, lines, stderr } = await spawnProxy({ workers });
      // Node catches SIGTERM from its own start (to restore the terminal, then die by the signal),
      // so SigCgt cannot tell when the proxy holds it; the proxy installs its SIGHUP hold after its
      // SIGTERM hold, long before it listens, and Node does not catch SIGHUP itself: bit 0.
      await waitFor('SIGHUP caught', () => (BigInt(`0x${/SigCgt:\s*([0-9a-f]+)/.exec(readFileSync(`/proc/${child.pid}/status`, 'latin1'))?.[1] ?? '0'}`) & 1n) === 1n, 10_000, 2);
      assert.ok(!lines.some((l) => l.includes('"msg":"listening"')), 'it listened already: the test came too late');
      child.kill('SIGTERM');
      assert.equal(await exitWithin(child, 15_000), 'code 0 signal null', `${lines.join('\n')}\n${stderr()}`);
      assert.ok(lines.some((l) => l.includes('"signal":"SIGTERM"') && l.includes('shutting down')), lines.join('\n'));
      assert.ok(lines.some((l) => l.includes('shutdown complete')), lines.join('\n'));
    });
  }

  test('stdout closed by its reader (EPIPE), then SIGTERM → exits 0', { timeout: 30_000 }, async () => {
    const { child, lines } = await spawnProxy();
    await waitLine(lines, 'listening', 15_000);
    child.stdout!.destroy(); // like `resp-tls-proxy … | head -1` once head has its line
    await sleep(100);
    child.kill('SIGTERM');
    // With pino's asynchronous stdout, the flush at exit retried EPIPE for ever.
    assert.equal(await exitWithin(child, 10_000), 'code 0 signal null');
  });
});
