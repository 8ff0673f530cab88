"""Real gRPC (grpcio) on both sides of Strata, for crates/strata/tests/e2e/grpc.rs.

  grpc_peer.py server NAME        serves on 127.0.0.1, prints its port, runs until stdin closes
  grpc_peer.py client HOST:PORT SCENARIO [ARGS]
                                  runs a scenario through the proxy, prints one result line

Messages are raw bytes (no protobuf stubs): what the tests check is the framing, the streaming
and the statuses, which grpcio does for real either way. The server also answers the standard
health check, grpc.health.v1.Health/Check, with SERVING or NOT_SERVING (see Control/SetServing).
"""

import sys
import threading
import time
from concurrent import futures

import grpc

ident = lambda b: b


def serve(name):
    serving = {"on": True}
    tag = name.encode()

    def unary(req, ctx):
        ctx.set_trailing_metadata((("x-served-by", name),))
        return tag + b":" + req

    def server_stream(req, ctx):
        n = int(req or b"3")
        for i in range(n):
            yield tag + b":" + str(i).encode()

    def client_stream(it, ctx):
        return tag + b":" + b"".join(it)

    def bidi(it, ctx):
        for m in it:
            yield tag + b":" + m

    def fail(req, ctx):
        ctx.set_trailing_metadata((("x-why", "asked-to-fail"),))
        ctx.abort(grpc.StatusCode.FAILED_PRECONDITION, "failing as asked by " + name)

    def slow(req, ctx):
        time.sleep(float(req or b"1"))
        return tag

    def set_serving(req, ctx):
        serving["on"] = req == b"1"
        return b""

    def health(req, ctx):
        # HealthCheckResponse { status = 1 (SERVING) | 2 (NOT_SERVING) }
        return b"\x08\x01" if serving["on"] else b"\x08\x02"

    u = lambda f: grpc.unary_unary_rpc_method_handler(f, ident, ident)
    handlers = {
        "Unary": u(unary),
        "ServerStream": grpc.unary_stream_rpc_method_handler(server_stream, ident, ident),
        "ClientStream": grpc.stream_unary_rpc_method_handler(client_stream, ident, ident),
        "Bidi": grpc.stream_stream_rpc_method_handler(bidi, ident, ident),
        "Fail": u(fail),
        "Slow": u(slow),
        "SetServing": u(set_serving),
    }
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=16))
    server.add_generic_rpc_handlers(
        (
            grpc.method_handlers_generic_handler("test.Echo", handlers),
            grpc.method_handlers_generic_handler("grpc.health.v1.Health", {"Check": u(health)}),
        )
    )
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    print(port, flush=True)
    sys.stdin.read()
    server.stop(grace=None)


def client(target, scenario, args):
    channel = grpc.insecure_channel(target)
    m = lambda kind, method: getattr(channel, kind)(
        "/test.Echo/" + method, request_serializer=ident, response_deserializer=ident
    )
    unary = m("unary_unary", "Unary")
    if scenario == "all":
        reply, call = unary.with_call(b"hello", timeout=10)
        trailers = dict(call.trailing_metadata())
        assert reply.endswith(b":hello"), reply
        assert "x-served-by" in trailers, trailers
        streamed = list(m("unary_stream", "ServerStream")(b"5", timeout=10))
        assert len(streamed) == 5 and streamed[-1].endswith(b":4"), streamed
        joined = m("stream_unary", "ClientStream")(iter([b"a", b"b", b"c"]), timeout=10)
        assert joined.endswith(b":abc"), joined
        echoed = list(m("stream_stream", "Bidi")(iter([b"x", b"y"]), timeout=10))
        assert [e.split(b":")[1] for e in echoed] == [b"x", b"y"], echoed
        # a bidirectional stream where each message waits for the answer to the previous one
        q = []
        ev = threading.Event()

        def gen():
            for word in (b"one", b"two", b"three"):
                yield word
                ev.wait(5)
                ev.clear()

        for r in m("stream_stream", "Bidi")(gen(), timeout=10):
            q.append(r)
            ev.set()
        assert len(q) == 3, q
        try:
            m("unary_unary", "Fail")(b"", timeout=10)
            raise AssertionError("Fail did not fail")
        except grpc.RpcError as e:
            assert e.code() == grpc.StatusCode.FAILED_PRECONDITION, e.code()
            assert "asked by" in e.details(), e.details()
            assert dict(e.trailing_metadata()).get("x-why") == "asked-to-fail"
        big = b"z" * 300_000
        reply = unary(big, timeout=10)
        assert reply.endswith(big), len(reply)
        print("ok", trailers["x-served-by"])
    elif scenario == "status":
        # one call; prints its status code name and details
        try:
            unary(b"x", timeout=10)
            print("OK")
        except grpc.RpcError as e:
            print(e.code().name, e.details())
    elif scenario == "serving":
        # Control: SetServing(args[0]) on whichever backend answers
        m("unary_unary", "SetServing")(args[0].encode(), timeout=10)
        print("ok")
    elif scenario == "load":
        # calls one after another for args[0] seconds from args[1] threads, counting failures
        seconds, threads = float(args[0]), int(args[1])
        stop = time.time() + seconds
        counts = {"ok": 0, "failed": 0}
        errors = []
        lock = threading.Lock()

        def run():
            while time.time() < stop:
                try:
                    unary(b"ping", timeout=10)
                    with lock:
                        counts["ok"] += 1
                except grpc.RpcError as e:
                    with lock:
                        counts["failed"] += 1
                        errors.append(f"{e.code().name} {e.details()}")

        ts = [threading.Thread(target=run) for _ in range(threads)]
        for t in ts:
            t.start()
        # tell the test that calls are flowing
        print("started", flush=True)
        for t in ts:
            t.join()
        print(counts["ok"], counts["failed"], "|".join(errors[:5]))
    else:
        raise SystemExit("unknown scenario " + scenario)


if __name__ == "__main__":
    if sys.argv[1] == "server":
        serve(sys.argv[2])
    else:
        client(sys.argv[2], sys.argv[3], sys.argv[4:])
