"""Opens idle PostgreSQL client connections to a pooler and holds them: each sends a
protocol 3.0 startup packet (trust authentication), reads to its ReadyForQuery, runs one
query (an application's pooled connection has run some: what a pooler keeps of that counts
too), and stays.

Usage: python3 bench/idle_pg.py HOST PORT USER DATABASE COUNT STOPFILE [tls]
Prints "ready" once COUNT connections are logged in, then holds them until STOPFILE exists.
With "tls", each asks for TLS first (an SSLRequest, then the handshake; the certificate is not
checked) and logs in over it.
"""

import asyncio
import os
import ssl
import struct
import sys


def startup(user: str, database: str) -> bytes:
    body = struct.pack("!I", 196608)
    for k, v in (("user", user), ("database", database)):
        body += k.encode() + b"\0" + v.encode() + b"\0"
    body += b"\0"
    return struct.pack("!I", len(body) + 4) + body


QUERY = b"SELECT 1\0"


async def ready(reader):
    """Reads messages up to ReadyForQuery."""
    while True:
        head = await reader.readexactly(5)
        body = await reader.readexactly(struct.unpack("!I", head[1:])[0] - 4)
        if head[:1] == b"E":
            raise RuntimeError(body)
        if head[:1] == b"Z":
            return


async def one(host, port, packet, held, tls):
    reader, writer = await asyncio.open_connection(host, port)
    if tls is not None:
        writer.write(struct.pack("!II", 8, 80877103))
        await writer.drain()
        if await reader.readexactly(1) != b"S":
            raise RuntimeError("TLS refused")
        await writer.start_tls(tls)
    writer.write(packet)
    await writer.drain()
    await ready(reader)
    writer.write(b"Q" + struct.pack("!I", len(QUERY) + 4) + QUERY)
    await writer.drain()
    await ready(reader)
    held.append(writer)


async def main():
    host, port, user, database, count, stop = sys.argv[1:7]
    tls = None
    if sys.argv[7:8] == ["tls"]:
        tls = ssl.create_default_context()
        tls.check_hostname = False
        tls.verify_mode = ssl.CERT_NONE
    packet = startup(user, database)
    held = []
    sem = asyncio.Semaphore(200)

    async def limited():
        async with sem:
            await one(host, int(port), packet, held, tls)

    await asyncio.gather(*(limited() for _ in range(int(count))))
    print("ready", flush=True)
    while not os.path.exists(stop):
        await asyncio.sleep(0.1)


asyncio.run(main())
