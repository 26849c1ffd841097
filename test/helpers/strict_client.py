#!/usr/bin/env python3
"""Strict TLS client: the test oracle for an orderly TLS close.

Node's TLS client does not report a missing close_notify; this one does. It drives an
ssl.SSLObject over a MemoryBIO pair on a non-blocking socket, so it WRITES the whole payload
(which may be many MB) while it also READS, and a server that replies and closes early cannot
deadlock it. After the payload is written it keeps reading until the TLS stream ends:

  close = "close_notify"      the server sent a TLS close_notify alert (SSL read returned b'')
        | "ragged_eof"        TCP EOF without close_notify (SSLEOFError)
        | "reset"             ECONNRESET before the TLS stream ended
        | "timeout"           nothing happened for --read-timeout-ms (or --deadline-ms passed)
        | "handshake_failed"  the TLS handshake did not complete
        | "ssl_error"         any other TLS error while reading (e.g. a fatal alert)

Once the stream ended it records how TCP ended too (tcp_end = "fin" | "reset" | "timeout"),
after answering a close_notify with its own (a polite bidirectional shutdown).

Usage: strict_client.py --port N --payload FILE [--cafile CA] [--tls-version 1.2|1.3]
           [--chunk-size N --chunk-delay-ms MS] [--after-write read|close_notify|fin] ...
Prints one JSON object on stdout; reply bytes are base64.
Only the standard library is used.
"""
import argparse
import base64
import json
import select
import socket
import ssl
import sys
import time


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--host', default='127.0.0.1')
    ap.add_argument('--port', type=int, required=True)
    ap.add_argument('--payload', required=True, help='file whose bytes are sent as application data')
    ap.add_argument('--cafile', help='verify the server against this CA (otherwise no verification)')
    ap.add_argument('--certfile', help='client certificate (mTLS)')
    ap.add_argument('--keyfile', help='client key (mTLS)')
    ap.add_argument('--server-name', default='localhost')
    ap.add_argument('--tls-version', choices=['1.2', '1.3'])
    ap.add_argument('--read-timeout-ms', type=int, default=10000,
                    help='give up when neither direction made progress for this long')
    ap.add_argument('--deadline-ms', type=int, default=120000, help='overall bound')
    ap.add_argument('--chunk-size', type=int, default=0,
                    help='write the payload in TLS records of at most this many bytes ...')
    ap.add_argument('--chunk-delay-ms', type=float, default=0,
                    help='... each flushed to the socket and followed by this pause')
    ap.add_argument('--after-write', choices=['read', 'close_notify', 'fin'], default='read',
                    help='after the payload: just read; send close_notify; or shut TCP write side (no close_notify)')
    ap.add_argument('--initial-delay-ms', type=float, default=0,
                    help='after the handshake, wait this long (still reading) before writing')
    ap.add_argument('--read-rate', type=int, default=0,
                    help='after the handshake, read at most this many bytes a second (0: as fast as they come)')
    ap.add_argument('--rcvbuf', type=int, default=0,
                    help='SO_RCVBUF for the socket, set before it connects (0: the kernel\'s autotuning)')
    ap.add_argument('--pause-at', type=int, default=0,
                    help='once this many payload bytes are on the wire, pause writing ...')
    ap.add_argument('--pause-ms', type=float, default=0,
                    help='... this long (still reading), then write the rest')
    ap.add_argument('--fin-timeout-ms', type=int, default=2000,
                    help='after the TLS stream ended, how long to wait for the TCP FIN')
    a = ap.parse_args()

    with open(a.payload, 'rb') as f:
        payload = memoryview(f.read())

    res = {
        'wrote': 0, 'writeError': None, 'reply': '', 'close': None, 'error': None,
        'tcpEnd': None, 'tlsVersion': None, 'elapsedMs': 0,
    }
    t0 = time.monotonic()
    try:
        run(a, payload, res, t0)
    except Exception as e:  # report, never a traceback instead of JSON
        if res['close'] is None:
            res['close'] = 'ssl_error'
        res['error'] = (res['error'] or '') + 'client exception: %s: %s' % (type(e).__name__, e)
    res['elapsedMs'] = int((time.monotonic() - t0) * 1000)
    res['reply'] = base64.b64encode(bytes(res['reply_buf'])).decode('ascii') if 'reply_buf' in res else ''
    res.pop('reply_buf', None)
    sys.stdout.write(json.dumps(res))
    sys.stdout.flush()


def make_context(a):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    # Some Python builds (e.g. CPython 3.11.0-3.11.2, Debian's 3.11.2) set SSL_OP_IGNORE_UNEXPECTED_EOF
    # by default: OpenSSL then reports a TCP EOF without close_notify as a clean close, which would
    # blind this oracle. Clear it, and refuse to run if it cannot be cleared.
    if hasattr(ssl, 'OP_IGNORE_UNEXPECTED_EOF'):
        ctx.options &= ~ssl.OP_IGNORE_UNEXPECTED_EOF
        if ctx.options & ssl.OP_IGNORE_UNEXPECTED_EOF:
            raise RuntimeError('cannot clear SSL_OP_IGNORE_UNEXPECTED_EOF')
    if a.cafile:
        ctx.load_verify_locations(a.cafile)
        ctx.check_hostname = True
        ctx.verify_mode = ssl.CERT_REQUIRED
    else:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    if a.certfile:
        ctx.load_cert_chain(a.certfile, a.keyfile)
    if a.tls_version == '1.2':
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    elif a.tls_version == '1.3':
        ctx.minimum_version = ssl.TLSVersion.TLSv1_3
        ctx.maximum_version = ssl.TLSVersion.TLSv1_3
    return ctx


def run(a, payload, res, t0):
    reply = bytearray()
    res['reply_buf'] = reply
    deadline = t0 + a.deadline_ms / 1000.0
    idle = a.read_timeout_ms / 1000.0

    if a.rcvbuf > 0:
        # set before connect(): a fixed receive buffer (no autotuning), so the server's replies
        # back up in its own buffers instead of ours
        family, kind, proto, _, addr = socket.getaddrinfo(a.host, a.port, type=socket.SOCK_STREAM)[0]
        sock = socket.socket(family, kind, proto)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, a.rcvbuf)
        sock.settimeout(10)
        sock.connect(addr)
    else:
        sock = socket.create_connection((a.host, a.port), timeout=10)
    sock.setblocking(False)
    incoming = ssl.MemoryBIO()
    outgoing = ssl.MemoryBIO()
    obj = make_context(a).wrap_bio(incoming, outgoing, server_side=False, server_hostname=a.server_name)

    pending = bytearray()      # ciphertext not yet accepted by the socket
    st = {'raw_eof': False, 'raw_reset': False, 'last_progress': time.monotonic()}

    def flush_out():
        pending.extend(outgoing.read())

    def send_some():
        """Sends pending ciphertext without blocking. Raises OSError on a socket error."""
        if not pending:
            return
        try:
            n = sock.send(pending)
        except (BlockingIOError, InterruptedError):
            return
        if n > 0:
            del pending[:n]
            st['last_progress'] = time.monotonic()

    def recv_some():
        """Reads from the socket without blocking into the incoming BIO; notes EOF / reset."""
        if st['raw_eof'] or st['raw_reset']:
            return False
        n = 262144
        if a.read_rate > 0 and 'rate_from' in st:
            n = min(n, rate_allowance())
            if n <= 0:
                return False
        try:
            data = sock.recv(n)
        except (BlockingIOError, InterruptedError):
            return False
        except ConnectionResetError:
            st['raw_reset'] = True
            return True
        if not data:
            st['raw_eof'] = True
            incoming.write_eof()
            return True
        st['last_progress'] = time.monotonic()
        st['rate_read'] = st.get('rate_read', 0) + len(data)
        incoming.write(data)
        return True

    def rate_allowance():
        """Bytes --read-rate lets us read now."""
        return int((time.monotonic() - st['rate_from']) * a.read_rate) - st.get('rate_read', 0)

    # ---- handshake (the payload is not sent until it completes) ----
    while True:
        try:
            obj.do_handshake()
            flush_out()
            break
        except ssl.SSLWantReadError:
            flush_out()
        except (ssl.SSLError, OSError) as e:
            flush_out()
            res['close'] = 'handshake_failed'
            res['error'] = '%s: %s' % (type(e).__name__, e)
            try:
                while pending:
                    send_some()
            except OSError:
                pass
            sock.close()
            return
        now = time.monotonic()
        if now > deadline or now - st['last_progress'] > idle:
            res['close'] = 'timeout'
            res['error'] = 'handshake timed out'
            sock.close()
            return
        try:
            send_some()
        except OSError as e:
            res['close'] = 'handshake_failed'
            res['error'] = 'send during handshake: %s: %s' % (type(e).__name__, e)
            sock.close()
            return
        if st['raw_reset']:
            res['close'] = 'handshake_failed'
            res['error'] = 'connection reset during handshake'
            sock.close()
            return
        if st['raw_eof'] and not pending:
            # the BIO has EOF: the next do_handshake raises
            continue
        r, w, _ = select.select([sock], [sock] if pending else [], [], 0.05)
        if r:
            recv_some()
    res['tlsVersion'] = obj.version()
    if a.read_rate > 0:
        st['rate_from'] = time.monotonic()
        st['rate_read'] = 0

    # ---- write the payload while reading ----
    total = len(payload)
    off = 0               # payload bytes handed to SSL
    write_done = total == 0
    after_write_sent = False
    next_write_at = time.monotonic() + a.initial_delay_ms / 1000.0 if a.initial_delay_ms > 0 else 0.0
    chunk = a.chunk_size if a.chunk_size > 0 else 65536
    delay = a.chunk_delay_ms / 1000.0
    answered_close_notify = False

    def pump_reads():
        """Decrypts whatever the BIO holds into reply; sets res['close'] when the stream ends."""
        if res['close'] is not None:
            return
        try:
            while True:
                d = obj.read(65536)
                if not d:
                    res['close'] = 'close_notify'
                    break
                reply.extend(d)
                st['last_progress'] = time.monotonic()
        except ssl.SSLWantReadError:
            pass
        except ssl.SSLZeroReturnError:
            res['close'] = 'close_notify'
        except ssl.SSLError as e:
            # SSLEOFError; or, on Pythons that do not map it, OpenSSL 3's UNEXPECTED_EOF_WHILE_READING
            if isinstance(e, ssl.SSLEOFError) or getattr(e, 'reason', None) == 'UNEXPECTED_EOF_WHILE_READING':
                res['close'] = 'ragged_eof'
            else:
                res['close'] = 'ssl_error'
            res['error'] = '%s: %s' % (type(e).__name__, e)
        flush_out()
        if res['close'] is None and st['raw_reset']:
            res['close'] = 'reset'
            res['error'] = 'ConnectionResetError while reading'
        if res['close'] is None and st['raw_eof']:
            # the BIO saw EOF and SSL did not report the end: treat as a ragged EOF
            res['close'] = 'ragged_eof'
            res['error'] = (res['error'] or '') + 'EOF without close_notify'

    # application data (or session tickets) may have arrived with the handshake
    pump_reads()

    tls_ended_at = None
    while True:
        now = time.monotonic()
        if now > deadline:
            if res['close'] is None:
                res['close'] = 'timeout'
                res['error'] = 'deadline of %d ms passed' % a.deadline_ms
            break

        writing = res['writeError'] is None and not write_done
        # hand more plaintext to SSL when the ciphertext backlog is small
        if writing and not pending and now >= next_write_at:
            n = min(chunk, total - off)
            if a.pause_at > off:
                n = min(n, a.pause_at - off)
            try:
                k = obj.write(payload[off:off + n])
                off += k
            except ssl.SSLWantReadError:
                pass
            except ssl.SSLError as e:
                res['writeError'] = 'ssl write: %s: %s' % (type(e).__name__, e)
            flush_out()
            if a.chunk_size > 0:
                next_write_at = float('inf')   # set once this chunk is on the wire
        if pending and res['writeError'] is None:
            try:
                send_some()
            except OSError as e:
                res['writeError'] = '%s: %s' % (type(e).__name__, e)
                pending.clear()
                if isinstance(e, ConnectionResetError):
                    st['raw_reset'] = True
        if res['writeError'] is None and not pending:
            res['wrote'] = off
            if next_write_at == float('inf'):
                next_write_at = time.monotonic() + delay
            if a.pause_at > 0 and off == a.pause_at and not st.get('paused'):
                st['paused'] = True
                next_write_at = time.monotonic() + a.pause_ms / 1000.0
            if off == total and not write_done:
                write_done = True
        if write_done and not after_write_sent and res['writeError'] is None and not pending:
            after_write_sent = True
            if a.after_write == 'close_notify':
                try:
                    obj.unwrap()
                except ssl.SSLWantReadError:
                    pass
                except ssl.SSLError as e:
                    res['error'] = (res['error'] or '') + 'unwrap: %s; ' % e
                flush_out()
                answered_close_notify = True
            elif a.after_write == 'fin':
                try:
                    sock.shutdown(socket.SHUT_WR)
                except OSError as e:
                    res['writeError'] = 'shutdown(SHUT_WR): %s' % e

        # The TLS stream has ended: answer a close_notify once the payload is out, then wait for TCP's end.
        write_finished = write_done or res['writeError'] is not None
        if res['close'] is not None and write_finished:
            if tls_ended_at is None:
                tls_ended_at = now
            if res['close'] == 'close_notify' and not answered_close_notify and res['writeError'] is None:
                answered_close_notify = True
                try:
                    obj.unwrap()
                except (ssl.SSLError, ValueError):
                    pass
                flush_out()
            if pending and res['writeError'] is None:
                try:
                    send_some()
                except OSError:
                    pending.clear()
            if st['raw_reset']:
                res['tcpEnd'] = 'reset'
                break
            if st['raw_eof']:
                res['tcpEnd'] = 'fin'
                break
            if now - tls_ended_at > a.fin_timeout_ms / 1000.0:
                res['tcpEnd'] = 'timeout'
                break

        if res['close'] is None and now - st['last_progress'] > idle:
            res['close'] = 'timeout'
            res['error'] = 'no progress for %d ms' % a.read_timeout_ms
            if not write_finished:
                res['writeError'] = 'write stalled: %d of %d bytes written' % (off, total)
            break
        if res['close'] is not None and not write_finished and now - st['last_progress'] > idle:
            res['writeError'] = 'write stalled after the TLS stream ended: %d of %d bytes written' % (off, total)
            continue

        rl = [] if (st['raw_eof'] or st['raw_reset'] or (a.read_rate > 0 and rate_allowance() <= 0)) else [sock]
        wl = [sock] if (pending and res['writeError'] is None) else []
        timeout = 0.05
        if writing and not pending and next_write_at > now and next_write_at != float('inf'):
            timeout = min(timeout, next_write_at - now)
        if writing and not pending and next_write_at <= now:
            timeout = 0
        if not rl and not wl:
            time.sleep(timeout)
            if res['close'] is None:
                pump_reads()
            continue
        try:
            r, w, _ = select.select(rl, wl, [], max(timeout, 0))
        except (OSError, ValueError):
            r = []
        if r:
            # read everything that is ready now
            for _ in range(64):
                if not recv_some():
                    break
                if st['raw_eof'] or st['raw_reset']:
                    break
            if res['close'] is None:
                pump_reads()
            elif st['raw_reset'] and res['tcpEnd'] is None:
                res['tcpEnd'] = 'reset'

    try:
        sock.close()
    except OSError:
        pass


if __name__ == '__main__':
    main()
