#!/usr/bin/env python3
"""TLS clients that close with a FIN and a reset back to back.

Each of --clients connections completes a TLS handshake (no certificate check), waits --wait-ms,
then, without a close_notify, shuts its TCP write side (FIN) and closes with SO_LINGER 0 (RST)
in two system calls in a row: both usually reach the server before it reads the end of the
input, which it then reads as EOF on a connection the kernel has already closed. The clients
run in parallel threads.

Prints one JSON object: {"clients": N, "done": connections that got that far, "errors": [..]}.
Only the standard library is used.
"""
import argparse
import json
import socket
import ssl
import struct
import threading
import time


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--port', type=int, required=True)
    ap.add_argument('--clients', type=int, default=40)
    ap.add_argument('--wait-ms', type=int, default=300)
    args = ap.parse_args()
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    done = []
    errors = []

    def one():
        try:
            tls = ctx.wrap_socket(socket.create_connection(('127.0.0.1', args.port), timeout=10), server_hostname='localhost')
            time.sleep(args.wait_ms / 1000)
            raw = socket.socket(fileno=tls.detach())  # the TCP socket: no close_notify
            raw.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack('ii', 1, 0))
            raw.shutdown(socket.SHUT_WR)
            raw.close()
            done.append(1)
        except Exception as e:  # reported, not raised: the caller decides
            errors.append(repr(e))

    threads = [threading.Thread(target=one) for _ in range(args.clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    print(json.dumps({'clients': args.clients, 'done': len(done), 'errors': errors[:5]}))


if __name__ == '__main__':
    main()
