// TypeScript wrapper around strict_client.py, the oracle for an orderly TLS close.
import { existsSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { makeTempDir, repoRoot, run } from './common.js';

export const STRICT_CLIENT_PY = path.join(repoRoot, 'test', 'helpers', 'strict_client.py');

/**
 * The interpreter: $STRICT_CLIENT_PYTHON, else the system /usr/bin/python3, else python3 on PATH.
 * (A version-manager shim such as pyenv's costs seconds per start on a loaded machine.)
 */
export const PYTHON = process.env.STRICT_CLIENT_PYTHON ?? (existsSync('/usr/bin/python3') ? '/usr/bin/python3' : 'python3');

export type StrictClose = 'close_notify' | 'ragged_eof' | 'reset' | 'timeout' | 'handshake_failed' | 'ssl_error';

export interface StrictClientOptions {
  port: number;
  host?: string;
  /** Application data to send (may be many MB). */
  payload: Buffer;
  /** Verify the server against this CA (hostname `serverName`, default localhost); otherwise no verification. */
  caFile?: string;
  /** Client certificate and key, for mTLS. */
  certFile?: string;
  keyFile?: string;
  serverName?: string;
  tlsVersion?: '1.2' | '1.3';
  /** Give up when neither direction made progress for this long (default 10 s) → close 'timeout'. */
  readTimeoutMs?: number;
  /** Overall bound for the client (default 120 s). */
  deadlineMs?: number;
  /** Write in TLS records of at most this many bytes, each flushed and followed by `chunkDelayMs`. */
  chunkSize?: number;
  chunkDelayMs?: number;
  /** After the handshake, wait this long (still reading) before the first write. */
  initialDelayMs?: number;
  /** After writing the payload: keep reading ('read', default), send close_notify, or shut TCP's write side without close_notify ('fin'). */
  afterWrite?: 'read' | 'close_notify' | 'fin';
  /** After the TLS stream ended, how long to wait for TCP's FIN (default 2 s). */
  finTimeoutMs?: number;
  /** After the handshake, read at most this many bytes a second (a slow but steady reader). */
  readRate?: number;
  /** SO_RCVBUF of the client socket, set before it connects (no autotuning). */
  rcvbuf?: number;
  /** Once this many payload bytes are on the wire, pause writing for `pauseMs` (still reading), then write the rest. */
  pauseAt?: number;
  pauseMs?: number;
}

export interface StrictClientResult {
  /** Payload bytes written to the socket (equals payload.length when the whole write succeeded). */
  wrote: number;
  /** Why writing stopped early (EPIPE, ECONNRESET, stalled…), or null. */
  writeError: string | null;
  /** Every application-data byte received before the TLS stream ended. */
  reply: Buffer;
  /** How the TLS stream ended. */
  close: StrictClose;
  /** Detail for anything but a clean close. */
  error?: string;
  /** How TCP ended after the TLS stream ended: 'fin', 'reset', or 'timeout' (no FIN within finTimeoutMs). */
  tcpEnd: 'fin' | 'reset' | 'timeout' | null;
  /** Negotiated protocol, e.g. 'TLSv1.3'. */
  tlsVersion: string | null;
  elapsedMs: number;
}

/** Runs the strict client once; resolves its report. Rejects only if the client itself broke. */
export async function strictClient(opts: StrictClientOptions): Promise<StrictClientResult> {
  const dir = makeTempDir('resp-tls-proxy-payload-');
  const payloadFile = path.join(dir, 'payload.bin');
  writeFileSync(payloadFile, opts.payload);
  // -S: no site import (stdlib only, faster start)
  const args = ['-S', STRICT_CLIENT_PY, '--host', opts.host ?? '127.0.0.1', '--port', String(opts.port), '--payload', payloadFile];
  if (opts.caFile !== undefined) args.push('--cafile', opts.caFile);
  if (opts.certFile !== undefined) args.push('--certfile', opts.certFile);
  if (opts.keyFile !== undefined) args.push('--keyfile', opts.keyFile);
  if (opts.serverName !== undefined) args.push('--server-name', opts.serverName);
  if (opts.tlsVersion !== undefined) args.push('--tls-version', opts.tlsVersion);
  if (opts.readTimeoutMs !== undefined) args.push('--read-timeout-ms', String(opts.readTimeoutMs));
  const deadlineMs = opts.deadlineMs ?? 120_000;
  args.push('--deadline-ms', String(deadlineMs));
  if (opts.chunkSize !== undefined) args.push('--chunk-size', String(opts.chunkSize));
  if (opts.chunkDelayMs !== undefined) args.push('--chunk-delay-ms', String(opts.chunkDelayMs));
  if (opts.initialDelayMs !== undefined) args.push('--initial-delay-ms', String(opts.initialDelayMs));
  if (opts.afterWrite !== undefined) args.push('--after-write', opts.afterWrite);
  if (opts.finTimeoutMs !== undefined) args.push('--fin-timeout-ms', String(opts.finTimeoutMs));
  if (opts.readRate !== undefined) args.push('--read-rate', String(opts.readRate));
  if (opts.rcvbuf !== undefined) args.push('--rcvbuf', String(opts.rcvbuf));
  if (opts.pauseAt !== undefined) args.push('--pause-at', String(opts.pauseAt), '--pause-ms', String(opts.pauseMs ?? 0));

  const r = await run(PYTHON, args, { timeoutMs: deadlineMs + 15_000 });
  let parsed: {
    wrote: number; writeError: string | null; reply: string; close: StrictClose | null; error: string | null;
    tcpEnd: 'fin' | 'reset' | 'timeout' | null; tlsVersion: string | null; elapsedMs: number;
  };
  try {
    parsed = JSON.parse(r.stdout);
  } catch {
    throw new Error(`strict client produced no report (exit ${r.code ?? r.signal}${r.timedOut ? ', killed after timeout' : ''}):\n${r.stderr}\n${r.stdout}`);
  }
  if (parsed.close === null) throw new Error(`strict client did not classify the close: ${r.stdout}\n${r.stderr}`);
  const result: StrictClientResult = {
    wrote: parsed.wrote,
    writeError: parsed.writeError,
    reply: Buffer.from(parsed.reply, 'base64'),
    close: parsed.close,
    tcpEnd: parsed.tcpEnd,
    tlsVersion: parsed.tlsVersion,
    elapsedMs: parsed.elapsedMs,
  };
  if (parsed.error) result.error = parsed.error;
  return result;
}

/** A compact description of a result for assertion messages (reply shown head and tail). */
export function describe(r: StrictClientResult): string {
  const rep = r.reply.length <= 400
    ? JSON.stringify(r.reply.toString('latin1'))
    : `${JSON.stringify(r.reply.subarray(0, 200).toString('latin1'))} … ${JSON.stringify(r.reply.subarray(-200).toString('latin1'))} (${r.reply.length} bytes)`;
  return `close=${r.close} tcpEnd=${r.tcpEnd} wrote=${r.wrote} writeError=${r.writeError} error=${r.error ?? ''} tls=${r.tlsVersion} ${r.elapsedMs}ms reply=${rep}`;
}
