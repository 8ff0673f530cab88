#!/usr/bin/env python3
"""Opens N keep-alive connections to HOST:PORT, sends one GET on each, reads the answer, and
holds them idle; prints 'ready N' when all are open, then waits for stdin to close."""
import selectors, socket, sys

host, port, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
req = b"GET / HTTP/1.1\r\nHost: bench\r\n\r\n"
socks, sel = [], selectors.DefaultSelector()
for _ in range(n):
    s = socket.create_connection((host, port))
    s.sendall(req)
    socks.append(s)
    sel.register(s, selectors.EVENT_READ)
pending = set(socks)
while pending:
    for key, _ in sel.select(timeout=30):
        s = key.fileobj
        data = s.recv(65536)
        if b"\r\n\r\n" in data or not data:
            sel.unregister(s)
            pending.discard(s)
    if not sel.get_map():
        break
print(f"ready {len(socks)}", flush=True)
sys.stdin.read()
