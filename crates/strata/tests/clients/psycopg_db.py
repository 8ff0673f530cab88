"""psycopg 3 (with its bundled libpq) against a Strata database listener in transaction mode,
over a primary and a streaming replica, with one server connection per server: statements
prepared by the driver (named, extended protocol) read on the replica and write on the
primary, a READ ONLY transaction, read-your-writes, statements re-prepared after another
client dropped them from the shared connection, pipeline mode, COPY both ways, a server-side
cursor, a rolled-back transaction, an error the session survives, and a cancel. Prints 'ok'
at the end; any failure raises."""
import sys
import threading

import psycopg

host, port = sys.argv[1], int(sys.argv[2])
dsn = f"host={host} port={port} user=app password=secret dbname=app connect_timeout=10"

# prepare_threshold=0: psycopg prepares every statement (Parse with a name, then Bind)
a = psycopg.connect(dsn, autocommit=True, prepare_threshold=0)
b = psycopg.connect(dsn, autocommit=True, prepare_threshold=None)


def where(conn, sql="select pg_is_in_recovery()", params=None):
    return conn.execute(sql, params).fetchone()


# reads, prepared: the replica (the second and third run only Bind the named statement)
for _ in range(3):
    assert where(a) == (True,), "a prepared read did not run on the replica"
assert where(a, "select pg_is_in_recovery(), %s::int + 1", (41,)) == (True, 42)
# unprepared, with parameters (an unnamed statement): the replica too
assert where(b, "select pg_is_in_recovery(), %s::text", ("x",)) == (True, "x")

# a transaction that says READ ONLY: the replica
a.read_only = True
with a.transaction():
    assert where(a) == (True,)
    assert where(a, "select count(*) from items") == (0,)
a.read_only = False

# a write: the primary; right after it, reads stay there (read-your-writes)
a.execute("insert into items values (%s, %s)", (1, "one"))
assert where(a, "select pg_is_in_recovery(), count(*) from items") == (False, 1)

# another client drops every prepared statement from the shared primary connection: the
# driver's named insert is prepared again where it is missing
b.execute("deallocate all")
a.execute("insert into items values (%s, %s)", (2, "two"))
assert where(a, "select count(*) from items") == (2,)

# pipeline mode: many statements in flight at once
with a.pipeline():
    for i in range(3, 53):
        a.execute("insert into items values (%s, %s)", (i, f"n{i}"))
assert where(a, "select count(*) from items") == (52,)

# COPY both ways
with a.cursor() as cur:
    with cur.copy("copy items (id, name) from stdin") as copy:
        for i in range(100, 1100):
            copy.write_row((i, f"c{i}"))
    rows = []
    with cur.copy("copy (select id, name from items where id >= 100 order by id) to stdout") as copy:
        for row in copy.rows():
            rows.append(row)
assert len(rows) == 1000 and rows[0] == ("100", "c100") and rows[-1] == ("1099", "c1099"), rows[:3]

# a server-side cursor inside a transaction, fetched in pieces
with a.transaction():
    with a.cursor(name="walk") as cur:
        cur.itersize = 100
        cur.execute("select id from items order by id")
        assert sum(1 for _ in cur) == 1052

# a transaction rolled back leaves nothing
try:
    with a.transaction():
        a.execute("insert into items values (%s, 'gone')", (5000,))
        raise RuntimeError("roll back")
except RuntimeError:
    pass
assert where(a, "select count(*) from items where id = 5000") == (0,)

# an error, and the session goes on
try:
    a.execute("select 1 / 0")
    raise AssertionError("no error")
except psycopg.errors.DivisionByZero:
    pass
assert where(a, "select 1") == (1,)

# a cancel reaches the query on whichever server runs it
timer = threading.Timer(0.5, a.cancel_safe)
timer.start()
try:
    a.execute("select pg_sleep(30)")
    raise AssertionError("not cancelled")
except psycopg.errors.QueryCanceled:
    pass
timer.join()
assert where(a, "select 2") == (2,)

a.close()
b.close()
print("ok")
