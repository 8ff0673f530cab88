#!/usr/bin/env bash
# Side-by-side cache benchmark: redis-benchmark -c50 (SET and GET, -P1 and -P16) against one
# redis-server directly, twemproxy (nutcracker) over two redis-servers, and Strata over the same
# two. Each proxy runs one thread pinned to CPU 0; redis-benchmark and the redis-servers run on
# CPU 1. A floor row: Strata's [[tcp]] relaying the same load to one redis, bytes only.
#
# Prints, per target and test: operations/s, p99 latency, the proxy's CPU microseconds per
# operation (utime+stime from /proc/PID/stat over the run / operations), the commands the
# redis-servers found per read (INFO stats: the bigger a proxy's batches, the less CPU the
# redis-servers, which share CPU 1 with redis-benchmark, spend per operation), and per proxy
# the resident memory per idle client connection (slope over 8,000 idle clients).
#
# The machine is noisy: each target is measured ROUNDS times, interleaved, and the median
# round (by CPU per operation) is printed, so drift hits all alike.
#
# Usage: [STRATA=binary] bench/cache.sh [requests per -P1 run, default 200000] [rounds, default 3]
set -euo pipefail
cd "$(dirname "$0")/.."
N1=${1:-200000}
ROUNDS=${2:-3}
N16=$((N1 * 8))
IDLE=8000

need=()
for p in redis-server:redis-server redis-benchmark:redis-tools nutcracker:nutcracker python3:python3; do
  command -v "${p%%:*}" >/dev/null || need+=("${p##*:}")
done
if ((${#need[@]})); then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi
# shellcheck source=bench/lib.sh
source bench/lib.sh

R1=$(free_port); R2=$(free_port)
for r in $R1 $R2; do
  taskset -c 1 redis-server --port "$r" --bind 127.0.0.1 --save "" --appendonly no \
    --logfile "$work/redis$r.log" --dir "$work" & pids+=($!)
  wait_port "$r"
done

P_STRATA=$(free_port); P_TWEM=$(free_port); P_FLOOR=$(free_port)
cat > "$work/strata.toml" <<TOML
workers = 1
[[cache]]
name = "bench"
listen = "127.0.0.1:$P_STRATA"
servers = ["127.0.0.1:$R1:1", "127.0.0.1:$R2:1"]
max_connections = 20000
[[tcp]]
name = "floor"
listen = "127.0.0.1:$P_FLOOR"
backends = ["127.0.0.1:$R1"]
max_connections = 20000
TOML
taskset -c 0 "$STRATA" run -c "$work/strata.toml" --log-level warn >/dev/null 2>"$work/strata.log" & pids+=($!); PID_STRATA=$!

cat > "$work/nutcracker.yml" <<YML
bench:
  listen: 127.0.0.1:$P_TWEM
  hash: fnv1a_64
  distribution: ketama
  redis: true
  auto_eject_hosts: false
  servers:
   - 127.0.0.1:$R1:1
   - 127.0.0.1:$R2:1
YML
taskset -c 0 nutcracker -c "$work/nutcracker.yml" -s "$(free_port)" -a 127.0.0.1 -o "$work/nutcracker.log" & pids+=($!); PID_TWEM=$!
for p in $P_STRATA $P_TWEM $P_FLOOR; do wait_port "$p"; done

# commands and reads the redis-servers have processed so far ("commands reads"): over a run,
# their ratio is how many commands a redis-server found per read, which is what a proxy's
# batching buys it
batches() {
  local c=0 r=0 stats
  for port in $R1 $R2; do
    stats=$(redis-cli -h 127.0.0.1 -p "$port" info stats | tr -d '\r')
    c=$((c + $(awk -F: '$1 == "total_commands_processed" {print $2}' <<<"$stats")))
    r=$((r + $(awk -F: '$1 == "total_reads_processed" {print $2}' <<<"$stats")))
  done
  echo "$c $r"
}
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
user_ticks() { awk '{print $14}' "/proc/$1/stat"; }
tick=$(getconf CLK_TCK)

TARGETS=(redis twemproxy strata strata-tcp)
port_of() { case $1 in redis) echo "$R1" ;; twemproxy) echo "$P_TWEM" ;; strata) echo "$P_STRATA" ;; strata-tcp) echo "$P_FLOOR" ;; esac; }
pid_of() { case $1 in redis) echo "" ;; twemproxy) echo "$PID_TWEM" ;; strata | strata-tcp) echo "$PID_STRATA" ;; esac; }

# one redis-benchmark run: "ops/s p99_ms cpu_us/op user_us/op" (cpu "-" for redis direct)
measure() { # target test pipeline
  local port pid n out before after ubefore uafter rps p99
  port=$(port_of "$1"); pid=$(pid_of "$1")
  n=$N1; [[ $3 == 16 ]] && n=$N16
  [[ -n $pid ]] && before=$(cpu_ticks "$pid") && ubefore=$(user_ticks "$pid")
  read -r c0 r0 < <(batches)
  out=$(taskset -c 1 redis-benchmark -h 127.0.0.1 -p "$port" -c 50 -n "$n" -r 100000 -P "$3" -t "$2" --csv 2>/dev/null | tail -n 1)
  [[ -n $pid ]] && after=$(cpu_ticks "$pid") && uafter=$(user_ticks "$pid")
  read -r c1 r1 < <(batches)
  per_read=$(awk -v c=$((c1 - c0)) -v r=$((r1 - r0)) 'BEGIN {printf "%.2f", c / r}')
  rps=$(awk -F'","' '{print $2}' <<<"$out")
  p99=$(awk -F'","' '{print $7}' <<<"$out")
  if [[ -n $pid ]]; then
    awk -v rps="$rps" -v p99="$p99" -v t=$((after - before)) -v u=$((uafter - ubefore)) -v hz="$tick" -v n="$n" \
      -v b="$per_read" 'BEGIN {printf "%s %s %.3f %.3f %s\n", rps, p99, t / hz * 1e6 / n, u / hz * 1e6 / n, b}'
  else
    echo "$rps $p99 - - $per_read"
  fi
}

# memory first, on the fresh processes (after the load runs, what the allocator kept from them
# moves the slope by a few hundred bytes either way): hold IDLE idle clients on each proxy; the
# slope is what one idle client costs
IDLE_TABLE=$(printf '%-11s %16s %16s\n' target rss_idle_MiB bytes/idle_conn)
for target in twemproxy strata; do
  pid=$(pid_of "$target")
  before=$(rss_kib "$pid")
  coproc HOLD { PROTO=redis taskset -c 1 python3 bench/idle_clients.py 127.0.0.1 "$(port_of "$target")" "$IDLE" 64; }
  read -r _ _ <&"${HOLD[0]}"
  after=$(rss_kib "$pid")
  IDLE_TABLE+=$'\n'$(printf '%-11s %16s %16s' "$target" "$(awk -v k="$after" 'BEGIN {printf "%.1f", k / 1024}')" $(((after - before) * 1024 / IDLE)))
  exec {HOLD[1]}>&-; wait "$HOLD_PID" 2>/dev/null || true
done


TESTS=("set 1" "get 1" "set 16" "get 16")
for target in "${TARGETS[@]}"; do # warm up: connections made, keys present for GET
  taskset -c 1 redis-benchmark -h 127.0.0.1 -p "$(port_of "$target")" -c 50 -n 100000 -r 100000 -t set -q >/dev/null
done
declare -A ROUND
for r in $(seq "$ROUNDS"); do
  for t in "${TESTS[@]}"; do
    for target in "${TARGETS[@]}"; do
      # shellcheck disable=SC2086
      ROUND["$target $t"]+="$(measure "$target" $t)"$'\n'
    done
  done
done

printf '%-11s %-8s %12s %9s %12s %12s %14s\n' target test ops/s p99_ms cpu_us/op user_us/op redis_cmds/read
declare -A CPU OPS
for t in "${TESTS[@]}"; do
  for target in "${TARGETS[@]}"; do
    # the median round by CPU per operation (by ops/s for redis itself)
    if [[ $target == redis ]]; then key=1; else key=3; fi
    read -r rps p99 cpu user per_read < <(grep -v '^$' <<<"${ROUND["$target $t"]}" | sort -g -k"$key" | awk -v m=$(((ROUNDS + 1) / 2)) 'NR == m')
    CPU["$target $t"]=$cpu; OPS["$target $t"]=$rps
    printf '%-11s %-8s %12s %9s %12s %12s %14s\n' "$target" "${t/ /\/P}" "$rps" "$p99" "$cpu" "$user" "$per_read"
  done
done
echo "(median of $ROUNDS interleaved rounds; -P1 runs $N1 requests, -P16 runs $N16; 50 clients, 100,000 random keys, 3-byte values)"
for t in "${TESTS[@]}"; do
  awk -v s="${CPU["strata $t"]}" -v w="${CPU["twemproxy $t"]}" -v so="${OPS["strata $t"]}" -v wo="${OPS["twemproxy $t"]}" -v t="${t/ /\/P}" \
    -v target="$([[ $t == *16 ]] && echo 0.6 || echo 0.9)" \
    'BEGIN {printf "ratio %-7s cpu_us/op strata/twemproxy %.2f (target <= %s), ops/s strata/twemproxy %.2f (target >= 1)\n", t, s / w, target, so / wo}'
done
# the same, round by round (see paired in bench/lib.sh)
for t in "${TESTS[@]}"; do
  echo "each round strata/twemproxy ${t/ /\/P}: $(paired cpu_us/op "$(figures '$3' "${ROUND["strata $t"]}")" "$(figures '$3' "${ROUND["twemproxy $t"]}")");" \
    "$(paired ops/s "$(figures '$1' "${ROUND["strata $t"]}")" "$(figures '$1' "${ROUND["twemproxy $t"]}")")"
done

echo "$IDLE_TABLE"

# a ring change: a full two-server pool gets a third server by SIGHUP; every key is read once
# right after, with read-through (the default) and without
RC=()
for _ in 1 2 3 4 5 6; do
  r=$(free_port)
  taskset -c 1 redis-server --port "$r" --bind 127.0.0.1 --save "" --appendonly no \
    --logfile "$work/redis$r.log" --dir "$work" & pids+=($!)
  wait_port "$r"; RC+=("$r")
done
P_WITH=$(free_port); P_WITHOUT=$(free_port); P_ADMIN=$(free_port)
ring() { # servers per pool
  local with="" without=""
  for i in $(seq 0 $(($1 - 1))); do
    with+="\"127.0.0.1:${RC[$i]}:1\", "; without+="\"127.0.0.1:${RC[$((i + 3))]}:1\", "
  done
  cat > "$work/ring.toml" <<TOML
[admin]
listen = "127.0.0.1:$P_ADMIN"
[[cache]]
name = "with"
listen = "127.0.0.1:$P_WITH"
servers = [${with%, }]
[[cache]]
name = "without"
listen = "127.0.0.1:$P_WITHOUT"
read_through = "0s"
servers = [${without%, }]
TOML
}
ring 2
taskset -c 0 "$STRATA" run -c "$work/ring.toml" --log-level warn >/dev/null 2>"$work/ring.log" & pids+=($!); PID_RING=$!
for p in $P_WITH $P_WITHOUT $P_ADMIN; do wait_port "$p"; done
KEYS=50000
python3 bench/hit_ratio.py "$P_WITH" fill $KEYS
python3 bench/hit_ratio.py "$P_WITHOUT" fill $KEYS
ring 3
kill -HUP "$PID_RING"
# the reload is in once /status lists the third server
for _ in $(seq 200); do
  [[ $(curl -s "http://127.0.0.1:$P_ADMIN/status" | grep -o '"ring_share"' | wc -l) -ge 6 ]] && break
  sleep 0.05
done
echo "hit ratio right after adding a third server to a full two-server pool ($KEYS keys):" \
  "with read-through $(python3 bench/hit_ratio.py "$P_WITH" read $KEYS)," \
  "without $(python3 bench/hit_ratio.py "$P_WITHOUT" read $KEYS)"
