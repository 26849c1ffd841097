#!/usr/bin/env python3
"""A TCP door in front of TARGET_HOST:TARGET_PORT that lets connections in late.

It listens with an accept queue of one and fills it with a connection of its own, so the kernel
drops every other SYN: a connect() to it hangs (the SYN is sent again after about 1 s, 3 s …).
When a line arrives on stdin it starts accepting, and forwards every connection other than its
own to the target, both ways, half-closes included. It prints its port on the first line of
stdout. Runs until killed.
"""
import socket
import sys
import threading


def pump(src, dst):
    try:
        while True:
            data = src.recv(65536)
            if not data:
                break
            dst.sendall(data)
        dst.shutdown(socket.SHUT_WR)
    except OSError:
        for s in (src, dst):
            try:
                s.close()
            except OSError:
                pass


def main():
    target = (sys.argv[1], int(sys.argv[2]))
    door = socket.socket()
    door.bind(('127.0.0.1', 0))
    door.listen(0)
    own = []
    for _ in range(2):  # the first fills the queue; the second's SYN is dropped like everyone's
        s = socket.socket()
        s.setblocking(False)
        try:
            s.connect(door.getsockname())
        except BlockingIOError:
            pass
        own.append(s)
    own_ports = {s.getsockname()[1] for s in own}
    print(door.getsockname()[1], flush=True)
    sys.stdin.readline()
    while True:
        conn, peer = door.accept()
        if peer[1] in own_ports:
            continue  # kept open: closing it is of no use
        upstream = socket.create_connection(target)
        threading.Thread(target=pump, args=(conn, upstream), daemon=True).start()
        threading.Thread(target=pump, args=(upstream, conn), daemon=True).start()


if __name__ == '__main__':
    main()
