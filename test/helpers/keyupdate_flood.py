#!/usr/bin/env python3
"""TLS 1.3 client that sends KeyUpdate messages, through libssl itself (ctypes).

Python's ssl module has no KeyUpdate call, so this drives the system's libssl directly. After the
handshake it sends --count KeyUpdate messages: update_requested (--kind requested, the default),
each of which obliges the server to answer with a KeyUpdate of its own, or update_not_requested
(--kind not_requested), which the server answers with nothing. --rate caps them per second. Then:

  --then read   sends PING and reads the reply (a client that keeps up: the server must go on
                serving it)
  --then none   reads nothing (a client that never reads: the server's answers pile up)

It stops early when the server closes the connection, or at --deadline-ms. The socket's receive
buffer can be made small (--rcvbuf) so the kernel takes up little of what the server sends.

Prints one JSON object: {"handshake": bool, "version", "sent": N, "closed": bool, "error",
"elapsed_ms", "reply" (base64, with --then read)}.
Only the standard library and libssl are used.
"""
import argparse
import base64
import ctypes
import ctypes.util
import json
import socket
import struct
import sys
import time

SSL_CTRL_SET_MIN_PROTO_VERSION = 123
TLS1_3_VERSION = 0x0304
SSL_KEY_UPDATE_NOT_REQUESTED = 0
SSL_KEY_UPDATE_REQUESTED = 1
SSL_ERROR_WANT_READ = 2
SSL_ERROR_WANT_WRITE = 3


def load_libssl():
    name = ctypes.util.find_library('ssl') or 'libssl.so.3'
    lib = ctypes.CDLL(name)
    lib.TLS_client_method.restype = ctypes.c_void_p
    lib.SSL_CTX_new.restype = ctypes.c_void_p
    lib.SSL_CTX_new.argtypes = [ctypes.c_void_p]
    lib.SSL_CTX_ctrl.restype = ctypes.c_long
    lib.SSL_CTX_ctrl.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_long, ctypes.c_void_p]
    lib.SSL_new.restype = ctypes.c_void_p
    lib.SSL_new.argtypes = [ctypes.c_void_p]
    lib.SSL_set_fd.argtypes = [ctypes.c_void_p, ctypes.c_int]
    lib.SSL_connect.argtypes = [ctypes.c_void_p]
    lib.SSL_key_update.argtypes = [ctypes.c_void_p, ctypes.c_int]
    lib.SSL_do_handshake.argtypes = [ctypes.c_void_p]
    lib.SSL_write.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_int]
    lib.SSL_read.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_int]
    lib.SSL_get_error.argtypes = [ctypes.c_void_p, ctypes.c_int]
    lib.SSL_get_version.restype = ctypes.c_char_p
    lib.SSL_get_version.argtypes = [ctypes.c_void_p]
    return lib


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--port', type=int, required=True)
    ap.add_argument('--count', type=int, required=True)
    ap.add_argument('--kind', choices=['requested', 'not_requested'], default='requested')
    ap.add_argument('--rate', type=int, default=0, help='KeyUpdates a second at most (0: no cap)')
    ap.add_argument('--then', choices=['read', 'none'], default='none')
    ap.add_argument('--rcvbuf', type=int, default=0)
    ap.add_argument('--deadline-ms', type=int, default=60000)
    a = ap.parse_args()

    lib = load_libssl()
    report = {'handshake': False, 'sent': 0, 'closed': False}
    started = time.monotonic()
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    if a.rcvbuf:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, a.rcvbuf)
    # libssl does the I/O on the descriptor, so it stays blocking (settimeout would make it
    # non-blocking); a write or read that waits longer than the deadline fails instead.
    wait = struct.pack('ll', max(1, a.deadline_ms // 1000), 0)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, wait)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, wait)
    sock.connect(('127.0.0.1', a.port))
    ctx = lib.SSL_CTX_new(lib.TLS_client_method())  # verifies nothing by default
    lib.SSL_CTX_ctrl(ctx, SSL_CTRL_SET_MIN_PROTO_VERSION, TLS1_3_VERSION, None)
    ssl = lib.SSL_new(ctx)
    lib.SSL_set_fd(ssl, sock.fileno())
    r = lib.SSL_connect(ssl)
    if r != 1:
        report['error'] = 'handshake: SSL_get_error %d' % lib.SSL_get_error(ssl, r)
        print(json.dumps(report))
        return
    report['handshake'] = True
    report['version'] = lib.SSL_get_version(ssl).decode()

    deadline = started + a.deadline_ms / 1000
    kind = SSL_KEY_UPDATE_REQUESTED if a.kind == 'requested' else SSL_KEY_UPDATE_NOT_REQUESTED
    flood_from = time.monotonic()
    for _ in range(a.count):
        if a.rate and report['sent'] % 64 == 0:
            ahead = flood_from + report['sent'] / a.rate - time.monotonic()
            if ahead > 0:
                time.sleep(ahead)
        if lib.SSL_key_update(ssl, kind) != 1:
            report['error'] = 'SSL_key_update failed'
            break
        r = lib.SSL_do_handshake(ssl)  # sends it now
        if r != 1:
            e = lib.SSL_get_error(ssl, r)
            report['closed'] = e != SSL_ERROR_WANT_WRITE  # WANT_WRITE: the send timed out
            report['error'] = 'write: SSL_get_error %d' % e
            break
        report['sent'] += 1
        if report['sent'] % 256 == 0 and time.monotonic() > deadline:
            report['error'] = 'deadline'
            break

    if a.then == 'read' and not report['closed']:
        ping = b'*1\r\n$4\r\nPING\r\n'
        if lib.SSL_write(ssl, ping, len(ping)) != len(ping):
            report['error'] = 'PING not written'
        else:
            buf = ctypes.create_string_buffer(64)
            n = lib.SSL_read(ssl, buf, 64)
            if n > 0:
                report['reply'] = base64.b64encode(buf.raw[:n]).decode()
            else:
                e = lib.SSL_get_error(ssl, n)
                report['closed'] = e != SSL_ERROR_WANT_READ  # WANT_READ: the read timed out
                report['error'] = 'read: SSL_get_error %d' % e

    report['elapsed_ms'] = round((time.monotonic() - started) * 1000)
    print(json.dumps(report))
    sys.stdout.flush()


if __name__ == '__main__':
    main()
