"""redis-py (5 or later, which sends CLIENT SETINFO on connect) against a Strata cache pool:
pipelines, MGET/MSET, DEL over several servers, hash tags, a transaction with WATCH, and
publish/subscribe. Prints 'ok' at the end; any failure raises."""
import sys
import time

import redis

host, port = sys.argv[1], int(sys.argv[2])
r = redis.Redis(host=host, port=port, socket_timeout=10)
assert r.ping()
assert int(redis.__version__.split(".")[0]) >= 5, redis.__version__

r.set("a", "1")
assert r.get("a") == b"1"
values = {f"k{i}": str(i) for i in range(200)}
assert r.mset(values)
assert r.mget(list(values)) == [v.encode() for v in values.values()]
assert r.exists(*values) == 200
assert r.delete(*list(values)[:50]) == 50

p = r.pipeline(transaction=False)
for i in range(100):
    p.incr(f"n{i}")
assert p.execute() == [1] * 100

# a transaction on keys that share a hash tag
p = r.pipeline(transaction=True)
p.set("{user1}.name", "ada")
p.incr("{user1}.visits")
p.get("{user1}.name")
assert p.execute() == [True, 1, b"ada"]

# optimistic locking with WATCH
r.set("{user2}.balance", 10)
with r.pipeline() as p:
    p.watch("{user2}.balance")
    balance = int(p.get("{user2}.balance"))
    p.multi()
    p.set("{user2}.balance", balance + 5)
    assert p.execute() == [True]
assert r.get("{user2}.balance") == b"15"

# publish/subscribe
ps = r.pubsub()
ps.subscribe("events")
ps.psubscribe("news.*")
subscribed = []
deadline = time.time() + 10
while len(subscribed) < 2 and time.time() < deadline:
    m = ps.get_message(timeout=1)
    if m and m["type"] in ("subscribe", "psubscribe"):
        subscribed.append(m)
assert [m["data"] for m in subscribed] == [1, 2], subscribed
assert r.publish("events", "hello") == 1
assert r.publish("news.today", "extra") == 1
got = []
while len(got) < 2 and time.time() < deadline:
    m = ps.get_message(timeout=1)
    if m and m["type"] in ("message", "pmessage"):
        got.append((m["type"], m["channel"], m["data"]))
# two channels may live on two servers: their messages come in either order
assert sorted(got) == [("message", b"events", b"hello"), ("pmessage", b"news.today", b"extra")], got
ps.close()

print("ok")
