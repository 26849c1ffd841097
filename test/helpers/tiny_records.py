#!/usr/bin/env python3
"""TLS client that sends a SET's value in records of --record bytes each, as fast as it can.

The records are made with Python's ssl.SSLObject over memory buffers (each write() is a record of
its own) and sent in batches of --batch records, so that the client, not a system call per
record, sets the pace: the server gets records as fast as it can take them. After the handshake
this sends the header of `SET <key> <value of --size bytes>`, then the value (its first --lead
bytes in 16 KiB records), then reads the reply. It stops early when the server closes the connection, or at --deadline-ms.

Prints one JSON object: {"handshake": bool, "version", "records": N, "sent": bytes of the value,
"closed": bool, "error", "elapsed_ms", "reply" (base64)}.
Only the standard library is used.
"""
import argparse
import base64
import json
import socket
import ssl
import sys
import time


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--port', type=int, required=True)
    ap.add_argument('--record', type=int, default=1, help='bytes of the value per TLS record')
    ap.add_argument('--size', type=int, required=True, help='bytes of the value')
    ap.add_argument('--batch', type=int, default=2048, help='records per socket write')
    ap.add_argument('--key', default='tiny')
    ap.add_argument('--deadline-ms', type=int, default=60000)
    ap.add_argument('--lead', type=int, default=0, help='bytes of the value sent first in 16 KiB records')
    a = ap.parse_args()

    report = {'handshake': False, 'records': 0, 'sent': 0, 'closed': False}
    started = time.monotonic()
    deadline = started + a.deadline_ms / 1000
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    sock = socket.create_connection(('127.0.0.1', a.port))
    sock.settimeout(max(1, a.deadline_ms / 1000))
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls = ctx.wrap_bio(incoming, outgoing)

    def flush():
        data = outgoing.read()
        if data:
            sock.sendall(data)

    def fill():
        data = sock.recv(65536)
        if not data:
            raise ConnectionError('EOF from the server')
        incoming.write(data)

    try:
        while True:
            try:
                tls.do_handshake()
                break
            except ssl.SSLWantReadError:
                flush()
                fill()
        flush()
        report['handshake'] = True
        report['version'] = tls.version()
        key = a.key.encode()
        tls.write(b'*3\r\n$3\r\nSET\r\n$%d\r\n%s\r\n$%d\r\n' % (len(key), key, a.size))
        while report['sent'] < min(a.lead, a.size):
            n = min(16384, a.lead - report['sent'])
            tls.write(b'x' * n)
            report['records'] += 1
            report['sent'] += n
        flush()
        piece = b'x' * a.record
        while report['sent'] < a.size:
            if time.monotonic() > deadline:
                report['error'] = 'deadline'
                break
            for _ in range(a.batch):
                n = min(a.record, a.size - report['sent'])
                if n == 0:
                    break
                tls.write(piece[:n])
                report['records'] += 1
                report['sent'] += n
            flush()
        else:
            tls.write(b'\r\n')
            flush()
            while True:
                try:
                    reply = tls.read(64)
                    break
                except ssl.SSLWantReadError:
                    fill()
            report['reply'] = base64.b64encode(reply).decode()
    except (ConnectionError, ssl.SSLError) as e:
        report['closed'] = True
        report['error'] = '%s: %s' % (type(e).__name__, e)
    except socket.timeout:
        report['error'] = 'timeout'
    report['elapsed_ms'] = round((time.monotonic() - started) * 1000)
    print(json.dumps(report))
    sys.stdout.flush()


if __name__ == '__main__':
    main()
