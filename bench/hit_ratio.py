#!/usr/bin/env python3
"""Writes N keys through a Redis proxy (fill), or reads them all back once and prints the share
found (read): the hit ratio. Usage: hit_ratio.py PORT fill|read N"""
import socket, sys

port, phase, n = int(sys.argv[1]), sys.argv[2], int(sys.argv[3])
s = socket.create_connection(("127.0.0.1", port))
f = s.makefile("rb")


def command(*args):
    out = b"*%d\r\n" % len(args)
    for a in args:
        a = a if isinstance(a, bytes) else str(a).encode()
        out += b"$%d\r\n%s\r\n" % (len(a), a)
    return out


def reply():
    line = f.readline()
    if line[:1] == b"$" and int(line[1:]) >= 0:
        f.read(int(line[1:]) + 2)
    return line


hits = 0
for start in range(0, n, 1000):
    keys = range(start, min(n, start + 1000))
    if phase == "fill":
        s.sendall(b"".join(command("SET", f"key:{k}", f"value:{k}") for k in keys))
    else:
        s.sendall(b"".join(command("GET", f"key:{k}") for k in keys))
    for _ in keys:
        r = reply()
        if phase == "read" and r[:1] == b"$" and not r.startswith(b"$-1"):
            hits += 1
        elif phase == "fill" and not r.startswith(b"+OK"):
            sys.exit(f"SET failed: {r!r}")
if phase == "read":
    print(f"{hits / n:.3f}")
