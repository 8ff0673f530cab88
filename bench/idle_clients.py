#!/usr/bin/env python3
"""Opens N keep-alive connections to HOST:PORT, sends one GET on each, reads the answer, and
holds them idle; prints 'ready N' when all are open, then waits for stdin to close.
With PROTO=redis in the environment each connection sends a RESP PING instead of the GET.

WINDOW (optional, default 0 = all at once) is how many connections may wait for their answer
at a time: 0 opens all N in one burst (the proxy holds many requests in flight at once, and
their transient memory shows in its peak), a small window opens them the way idle clients
accumulate in practice (the slope is then what an idle connection itself costs)."""
import os, selectors, socket, sys

host, port, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
window = int(sys.argv[4]) if len(sys.argv) > 4 else 0
redis = os.environ.get("PROTO") == "redis"
req = b"*1\r\n$4\r\nPING\r\n" if redis else b"GET / HTTP/1.1\r\nHost: bench\r\n\r\n"
end = b"\r\n" if redis else b"\r\n\r\n"
socks, sel = [], selectors.DefaultSelector()
waiting = 0


def read_answers(block):
    global waiting
    events = sel.select(timeout=30 if block else 0)
    if block and not events:
        sys.exit("no answer within 30 s")
    for key, _ in events:
        s = key.fileobj
        data = s.recv(65536)
        if end in data or not data:
            sel.unregister(s)
            waiting -= 1


for _ in range(n):
    while window and waiting >= window:
        read_answers(True)
    s = socket.create_connection((host, port))
    s.sendall(req)
    socks.append(s)
    sel.register(s, selectors.EVENT_READ)
    waiting += 1
while waiting:
    read_answers(True)
print(f"ready {len(socks)}", flush=True)
sys.stdin.read()
