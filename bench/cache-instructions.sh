#!/usr/bin/env bash
# Repeatable cost of the cache layer: user-space instructions per operation, counted by
# valgrind's callgrind (not wall time, so a noisy machine does not move it), for Strata and for
# twemproxy over the same two redis-servers. Each proxy runs under callgrind; redis-benchmark
# (-c 50, SET, random keys) warms it up, the counters are zeroed, N operations run, and the
# counters are dumped: instructions / N.
#
# Usage: [STRATA=binary] [PIPE=16] [PROFILE=file] bench/cache-instructions.sh [N, default 20000]
# (PROFILE keeps Strata's callgrind profile of the N operations, for callgrind_annotate.)
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-20000}
PIPE=${PIPE:-1}
for p in redis-server:redis-server redis-benchmark:redis-tools nutcracker:nutcracker valgrind:valgrind; do
  command -v "${p%%:*}" >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${p##*:}" >/dev/null; }
done
# shellcheck source=bench/lib.sh
source bench/lib.sh

R1=$(free_port); R2=$(free_port)
for r in $R1 $R2; do
  redis-server --port "$r" --bind 127.0.0.1 --save "" --appendonly no --logfile "$work/redis$r.log" --dir "$work" & pids+=($!)
  wait_port "$r"
done
P_STRATA=$(free_port); P_TWEM=$(free_port)
cat > "$work/strata.toml" <<TOML
workers = 1
[[cache]]
name = "bench"
listen = "127.0.0.1:$P_STRATA"
servers = ["127.0.0.1:$R1:1", "127.0.0.1:$R2:1"]
TOML
cat > "$work/nutcracker.yml" <<YML
bench:
  listen: 127.0.0.1:$P_TWEM
  hash: fnv1a_64
  distribution: ketama
  redis: true
  servers:
   - 127.0.0.1:$R1:1
   - 127.0.0.1:$R2:1
YML

# instructions per operation of the program under callgrind listening on PORT
count() { # name port command...
  local name=$1 port=$2 pid
  shift 2
  valgrind --tool=callgrind --callgrind-out-file="$work/$name.out" "$@" >/dev/null 2>"$work/$name.log" & pids+=($!); pid=$!
  wait_port "$port"
  redis-benchmark -p "$port" -c 50 -n 2000 -r 100000 -t set -q >/dev/null 2>&1
  callgrind_control -z "$pid" >/dev/null 2>&1
  redis-benchmark -p "$port" -c 50 -n "$N" -r 100000 -P "$PIPE" -t set -q >/dev/null 2>&1
  callgrind_control -d "$pid" >/dev/null 2>&1
  kill "$pid"; wait "$pid" 2>/dev/null || true
  # the dump after the zeroing holds the N operations
  callgrind_annotate "$(ls -t "$work/$name.out".* | head -n 1)" 2>/dev/null |
    awk -v n="$N" '/PROGRAM TOTALS/ {gsub(",", "", $1); printf "%.0f\n", $1 / n}'
}
S=$(count strata "$P_STRATA" "$STRATA" run -c "$work/strata.toml" --log-level warn)
if [[ -n ${PROFILE:-} ]]; then cp "$(ls -t "$work/strata.out".* | head -n 1)" "$PROFILE"; fi
T=$(count twemproxy "$P_TWEM" nutcracker -c "$work/nutcracker.yml" -s "$(free_port)" -o "$work/nutcracker.log")
echo "instructions per SET at -P$PIPE (callgrind, $N operations, 50 clients): strata $S, twemproxy $T"
awk -v s="$S" -v t="$T" 'BEGIN {printf "ratio strata/twemproxy %.2f\n", s / t}'
