"""Hostile HTTP/2 clients, for crates/strata/tests/e2e/h2_abuse.rs (Python's h2, from PyPI).

  h2_abuse.py HOST PORT SCENARIO [SECONDS]

Each scenario abuses one connection for at most SECONDS (default 5) and prints one line:
what happened to the connection ("closed ...", "goaway CODE ...", "open ...") and counts.
Frames are written raw where h2 itself would refuse to write them.
"""

import socket
import struct
import sys
import time

import h2.config
import h2.connection
import h2.events
import h2.settings

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"


def frame(kind, flags, stream, payload=b""):
    return struct.pack(">I", len(payload))[1:] + bytes([kind, flags]) + struct.pack(">I", stream) + payload


def settings_frame(pairs=()):
    return frame(4, 0, 0, b"".join(struct.pack(">HI", k, v) for k, v in pairs))


class Peer:
    """A raw connection that reads what the server sends, frame by frame."""

    def __init__(self, host, port, settings=()):
        self.sock = socket.create_connection((host, port))
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = b""
        self.goaway = None
        self.closed = False
        self.resets = {}
        self.sock.sendall(PREFACE + settings_frame(settings))

    def send(self, data, timeout=2.0):
        """False when the server no longer takes bytes (closed, or not reading for `timeout`)."""
        self.sock.settimeout(timeout)
        try:
            self.sock.sendall(data)
            return True
        except (BrokenPipeError, ConnectionResetError):
            self.closed = True
            return False
        except socket.timeout:
            return False

    def pump(self, wait=0.0):
        """Reads what has arrived (waiting up to `wait`); returns the frames read."""
        frames = []
        self.sock.settimeout(wait if wait > 0 else 0.000001)
        try:
            while True:
                chunk = self.sock.recv(1 << 16)
                if not chunk:
                    self.closed = True
                    break
                self.buf += chunk
                self.sock.settimeout(0.000001)
        except (socket.timeout, BlockingIOError):
            pass
        except ConnectionResetError:
            self.closed = True
        at = 0
        while len(self.buf) - at >= 9:
            length = int.from_bytes(self.buf[at : at + 3], "big")
            if len(self.buf) - at < 9 + length:
                break
            kind, flags = self.buf[at + 3], self.buf[at + 4]
            stream = int.from_bytes(self.buf[at + 5 : at + 9], "big") & 0x7FFFFFFF
            payload = self.buf[at + 9 : at + 9 + length]
            at += 9 + length
            if kind == 7:
                self.goaway = int.from_bytes(payload[4:8], "big")
            if kind == 3:
                code = int.from_bytes(payload[:4], "big")
                self.resets[code] = self.resets.get(code, 0) + 1
            frames.append((kind, flags, stream, payload))
        self.buf = self.buf[at:]
        return frames

    def outcome(self):
        if self.goaway is not None:
            return f"goaway {self.goaway}"
        return "closed" if self.closed else "open"


def header_frames(stream, block, flags=0x1):
    """A header block as HEADERS and CONTINUATION frames of at most 16 KiB (END_HEADERS on the
    last), with `flags` (END_STREAM by default) on the HEADERS frame."""
    pieces = [block[i : i + 16384] for i in range(0, len(block), 16384)] or [b""]
    out = b""
    for n, piece in enumerate(pieces):
        last = 0x4 if n == len(pieces) - 1 else 0
        out += frame(1, flags | last, stream, piece) if n == 0 else frame(9, last, stream, piece)
    return out


def request_headers(encoder, path="/", extra=()):
    return encoder.encode(
        [(":method", "GET"), (":scheme", "http"), (":authority", "abuse.test"), (":path", path)]
        + list(extra)
    )


def rapid_reset(p, seconds):
    import hpack

    enc = hpack.Encoder()
    stream, sent = 1, 0
    stop = time.time() + seconds
    while time.time() < stop and not p.closed and p.goaway is None:
        batch = b""
        for _ in range(100):
            batch += frame(1, 0x5, stream, request_headers(enc, "/slow/50"))  # END_STREAM|END_HEADERS
            batch += frame(3, 0, stream, struct.pack(">I", 8))  # RST_STREAM CANCEL
            stream += 2
            sent += 1
        if not p.send(batch):
            break
        p.pump()
    p.pump(1.0)
    return f"{p.outcome()} streams={sent}"


def continuation(p, seconds):
    import hpack

    enc = hpack.Encoder()
    first = request_headers(enc)
    sent = 0
    ok = p.send(frame(1, 0x1, 1, first))  # END_STREAM, no END_HEADERS
    block = enc.encode([("x-filler", "a" * 1000)])
    stop = time.time() + seconds
    while ok and time.time() < stop and not p.closed and p.goaway is None:
        ok = p.send(frame(9, 0, 1, block * 8))
        sent += 1
        p.pump()
    p.pump(1.0)
    return f"{p.outcome()} frames={sent}"


def flood(p, seconds, make):
    sent = 0
    stop = time.time() + seconds
    limited = False
    while time.time() < stop and not p.closed and p.goaway is None:
        # never reads: the server's answers pile up unless it stops reading
        if not p.send(b"".join(make(i) for i in range(sent, sent + 500)), timeout=0.5):
            limited = not p.closed
            break
        sent += 500
    return f"{p.outcome()} frames={sent} limited={limited}"


def zero_window(p, seconds):
    import hpack

    enc = hpack.Encoder()
    # SETTINGS_INITIAL_WINDOW_SIZE = 0: no DATA may be sent on any stream
    p.send(settings_frame([(4, 0)]))
    for i in range(32):
        p.send(frame(1, 0x5, 1 + 2 * i, request_headers(enc, "/big")))
    stop = time.time() + seconds
    while time.time() < stop and not p.closed and p.goaway is None:
        p.pump(0.2)
        # acknowledge settings so the server applies them, but never open a window
    return f"{p.outcome()} resets={p.resets}"


def too_many_streams(p, seconds):
    import hpack

    enc = hpack.Encoder()
    p.pump(0.5)
    n = 1000
    batch = b"".join(frame(1, 0x5, 1 + 2 * i, request_headers(enc, "/slow/2000")) for i in range(n))
    p.send(batch)
    stop = time.time() + min(seconds, 2)
    while time.time() < stop and not p.closed:
        p.pump(0.2)
    refused = p.resets.get(7, 0)  # REFUSED_STREAM
    return f"{p.outcome()} refused={refused} of={n}"


def hpack_bomb(p, seconds):
    import hpack

    # one large header inserted in the dynamic table, then referenced many times: each
    # reference is one byte on the wire and 4 KB once decoded
    enc = hpack.Encoder()
    big = ("x-bomb", "b" * 4000)
    block = enc.encode([(":method", "GET"), (":scheme", "http"), (":authority", "a"), (":path", "/"), big])
    idx = None
    # the big header is entry 62 in the dynamic table after the first block
    block2 = enc.encode([(":method", "GET"), (":scheme", "http"), (":authority", "a"), (":path", "/")]) + bytes([0x80 | 62]) * 4000
    p.send(frame(1, 0x5, 1, block))
    p.send(frame(1, 0x5, 3, block2))
    stop = time.time() + seconds
    dec = hpack.Decoder()
    status = None
    while time.time() < stop and not p.closed and p.goaway is None and 3 not in p.resets:
        for kind, flags, stream, payload in p.pump(0.2):
            if kind == 1:
                if flags & 0x20:  # PRIORITY
                    payload = payload[5:]
                fields = dict(dec.decode(payload))
                if stream == 3:
                    status = fields.get(":status")
        if status is not None:
            break
    return f"{p.outcome()} resets={p.resets} status={status}"


def big_headers(p, seconds):
    import hpack

    # one request whose header block is over the listener's limit (max_header_size), then an
    # ordinary one on the same connection
    enc = hpack.Encoder()
    p.send(header_frames(1, request_headers(enc, "/", [("x-big", "b" * 40000)])))
    p.send(frame(1, 0x5, 3, request_headers(enc, "/")))
    dec = hpack.Decoder()
    statuses = {}
    stop = time.time() + seconds
    while time.time() < stop and not p.closed and len(statuses) + len(p.resets) < 2:
        for kind, flags, stream, payload in p.pump(0.2):
            if kind == 1:
                if flags & 0x20:  # PRIORITY
                    payload = payload[5:]
                statuses[stream] = dict(dec.decode(payload)).get(":status")
    return f"{p.outcome()} statuses={sorted(statuses.items())} resets={p.resets}"


if __name__ == "__main__":
    host, port, scenario = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    seconds = float(sys.argv[4]) if len(sys.argv) > 4 else 5.0
    p = Peer(host, port)
    if scenario == "rapid_reset":
        out = rapid_reset(p, seconds)
    elif scenario == "continuation":
        out = continuation(p, seconds)
    elif scenario == "settings_flood":
        out = flood(p, seconds, lambda i: settings_frame([(3, 100 + i % 10)]))
    elif scenario == "ping_flood":
        out = flood(p, seconds, lambda i: frame(6, 0, 0, struct.pack(">Q", i)))
    elif scenario == "zero_window":
        out = zero_window(p, seconds)
    elif scenario == "too_many_streams":
        out = too_many_streams(p, seconds)
    elif scenario == "big_headers":
        out = big_headers(p, seconds)
    elif scenario == "hpack_bomb":
        out = hpack_bomb(p, seconds)
    else:
        raise SystemExit("unknown scenario " + scenario)
    print(out, flush=True)
