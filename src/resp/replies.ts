// Every error reply the proxy itself writes, byte for byte as Redis writes it.
// The scanner only records *which* violation it saw; this module turns that into text.

/** Which limit a protocol violation hit; the `limit` label of resp_tls_proxy_protocol_errors_total. */
export type LimitLabel = 'max_multibulk_len' | 'max_bulk_len' | 'max_inline_len' | 'syntax';

/** Stable codes for protocol violations: tests and logs key on these, never on the text. */
export type ViolationCode =
  | 'invalid_multibulk_length'
  | 'invalid_bulk_length'
  | 'expected_dollar'
  | 'bulk_not_crlf'
  | 'too_big_inline'
  | 'unbalanced_quotes';

export interface ProtocolViolation {
  readonly code: ViolationCode;
  readonly limit: LimitLabel;
  /** The complete error reply, `-ERR ...\r\n`, as raw bytes. */
  readonly reply: Buffer;
}

function errorReply(text: string): Buffer {
  // latin1: a byte quoted by "expected '$', got 'X'" must go out as that one raw byte, as Redis sends it.
  return Buffer.from(`-ERR ${text}\r\n`, 'latin1');
}

const FIXED: Record<Exclude<ViolationCode, 'expected_dollar'>, Buffer> = {
  invalid_multibulk_length: errorReply('Protocol error: invalid multibulk length'),
  invalid_bulk_length: errorReply('Protocol error: invalid bulk length'),
  // Redis does not check the two bytes after a bulk body; we do (see README, "Deliberate divergences").
  bulk_not_crlf: errorReply('Protocol error: bulk data not followed by CRLF'),
  too_big_inline: errorReply('Protocol error: too big inline request'),
  unbalanced_quotes: errorReply('Protocol error: unbalanced quotes in request'),
};

export function violation(code: Exclude<ViolationCode, 'expected_dollar'>, limit: LimitLabel): ProtocolViolation {
  return { code, limit, reply: FIXED[code] };
}

/**
 * Redis formats this one with `%c` and then maps CR and LF to spaces; a NUL ends the C string
 * early, so the reply is cut right after the opening quote.
 */
export function expectedDollar(got: number): ProtocolViolation {
  let reply: Buffer;
  if (got === 0) reply = Buffer.from("-ERR Protocol error: expected '$', got '\r\n", 'latin1');
  else {
    const shown = got === 13 || got === 10 ? ' ' : String.fromCharCode(got);
    reply = errorReply(`Protocol error: expected '$', got '${shown}'`);
  }
  return { code: 'expected_dollar', limit: 'syntax', reply };
}

/** Replies the proxy writes about the backend and about capacity. */
export const MAX_CLIENTS_REPLY = errorReply('max number of clients reached');

export function backendUnavailableReply(cause: string): Buffer {
  return errorReply(`backend unavailable (${sanitize(cause)})`);
}

export const BACKEND_LOST_REPLY = errorReply('backend connection lost');

/** Keep a cause printable and on one line, so it cannot break the reply framing. */
function sanitize(text: string): string {
  return text.replace(/[^\x20-\x7e]/g, ' ').slice(0, 200);
}
