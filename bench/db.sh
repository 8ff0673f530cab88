#!/usr/bin/env bash
# Side-by-side PostgreSQL pooler benchmark: pgbench straight to PostgreSQL, through PgBouncer
# (transaction pooling) and through Strata (transaction pooling), in one run.
#
# PostgreSQL and pgbench run on CPU 1; each proxy runs on CPU 0 (PgBouncer is one thread;
# Strata is given one worker). Both proxies pool POOL (default 20) server connections and log clients in with
# SCRAM-SHA-256. Prints, per target and workload: transactions/s, average latency and the
# proxy's CPU microseconds per transaction (user + system, from /proc/PID/stat) and how busy
# CPU 1 (pgbench and PostgreSQL) was over the round (/proc/stat: where it is near 100, the
# round's tps is CPU 1's cost per transaction, whatever the proxy). Rounds are
# interleaved (direct, pgbouncer, strata, direct, ...), each starts from a CHECKPOINT, and the
# median round is printed (every round's tps under the ratios).
# "strata" runs with the defaults: queries that only read share server connections when the
# pool is full or while trials find more answered that way (read_pipeline_trials).
# "strata, reads never share" is Strata with read_pipeline = 1: each query on a connection of
# its own, as PgBouncer does them.
# "strata, busy_poll = 50us" is Strata with its thread polling for 50 µs after each wake before
# it may sleep (CPU 1 then rarely has to wake CPU 0; the proxy pays in its own CPU).
#
# Then pgbench -S through Strata with a streaming replica beside the primary (made with
# pg_basebackup, running on CPU 0 with Strata: this machine has two cores), Strata finding the
# roles itself and sending the reads (classified by PostgreSQL's parser) to the replica, or to
# the primary while it has fewer connections taken (primary_reads, the default), against Strata
# with the primary alone, and with reads on the replica only (primary_reads = false), in the
# same rounds.
#
# Then memory per idle client: each proxy, started fresh with trust logins, holds 1,000 and then
# 8,000 idle logged-in clients that have each run one query (bench/idle_pg.py: an application's
# pooled connection between transactions); the slope of its resident memory between the two, in
# bytes per client. Then the same with clients that log in over TLS (both proxies offer it, with
# one self-signed certificate: PgBouncer's client_tls_sslmode = allow, Strata's `tls`), after
# the clients in clear, on the same processes.
#
# PROTOCOL=extended (or prepared) runs pgbench in that query protocol (default: simple); with
# prepared, a PgBouncer older than 1.21 (which keeps no prepared statements in transaction
# mode) is left out, and Strata is set against itself with reads never sharing.
#
# TLS=1: every client of the pgbench rows on TLS (sslmode=require), to PostgreSQL direct (ssl=on)
# and to both proxies, which require it. SERVER_TLS=1: both proxies connect to PostgreSQL (ssl=on)
# on TLS (PgBouncer's server_tls_sslmode and Strata's server_tls_mode = require); without it both
# connect in clear (disable). The idle rows are the same either way.
#
# WORKLOADS picks the parts (default "select tpcb replica idle"; ONLY_IDLE=1 is "idle"): e.g.
# WORKLOADS=tpcb with more and longer rounds, for TPC-B's swinging rounds alone.
#
# Usage: [STRATA=binary] [TLS=1] [SERVER_TLS=1] [WORKLOADS=...] [ONLY_IDLE=1] [POOL=20] [SCALE=10] [PROTOCOL=simple] bench/db.sh [seconds per run, default 10] [rounds, default 3] [clients, default 32]
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION=${1:-10}
ROUNDS=${2:-3}
CLIENTS=${3:-32}
POOL=${POOL:-20}
SCALE=${SCALE:-10}
WORKLOADS=${WORKLOADS:-select tpcb replica idle}
[[ ${ONLY_IDLE:-} == 1 ]] && WORKLOADS=idle
wants() { [[ " $WORKLOADS " == *" $1 "* ]]; }

need=()
command -v pgbouncer >/dev/null || need+=(pgbouncer)
compgen -G "/usr/lib/postgresql/*/bin/pgbench" >/dev/null || need+=(postgresql postgresql-contrib)
if ((${#need[@]})); then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi
# shellcheck source=bench/lib.sh
source bench/lib.sh

PGBIN=$(ls -d /usr/lib/postgresql/*/bin | sort | tail -1)
chown postgres "$work"
as_pg() { runuser -u postgres -- "$@"; }
# runuser does not pass on the TERM the cleanup sends: the servers are stopped by their data
# directories, before that (and however the script ends: `bench/db.sh | head` too)
stop_postgres() {
  for d in "$work/data" "$work/replica"; do
    if [[ -f $d/postmaster.pid ]]; then
      as_pg "$PGBIN/pg_ctl" -D "$d" stop -m immediate -w >/dev/null 2>&1 || true
    fi
  done
}
trap 'stop_postgres; cleanup' EXIT
PGPORT=$(free_port)
PBPORT=$(free_port)
STPORT=$(free_port)
export PGPASSWORD=bench-secret
# one self-signed certificate for whatever offers TLS (the idle rows; everything with TLS=1)
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 -subj /CN=localhost \
  -keyout "$work/tls.key" -out "$work/tls.crt" 2>/dev/null
chown postgres "$work/tls.key" "$work/tls.crt"
chmod 600 "$work/tls.key"
pg_tls=()
if [[ ${TLS:-} == 1 || ${SERVER_TLS:-} == 1 ]]; then
  pg_tls=(-c ssl=on -c "ssl_cert_file=$work/tls.crt" -c "ssl_key_file=$work/tls.key")
fi
server_tls=$([[ ${SERVER_TLS:-} == 1 ]] && echo require || echo disable)
if [[ ${TLS:-} == 1 ]]; then
  export PGSSLMODE=require
else
  # both proxies offer TLS (for the idle rows): clients in clear unless TLS=1
  export PGSSLMODE=disable
fi

echo "$PGPASSWORD" > "$work/pw" && chown postgres "$work/pw"
as_pg "$PGBIN/initdb" -D "$work/data" -U postgres --auth=scram-sha-256 --pwfile="$work/pw" >/dev/null
echo "host replication postgres 127.0.0.1/32 scram-sha-256" >> "$work/data/pg_hba.conf"
as_pg taskset -c 1 "$PGBIN/postgres" -D "$work/data" -p "$PGPORT" -k "$work" \
  -c listen_addresses=127.0.0.1 -c max_connections=200 -c synchronous_commit=off \
  -c shared_buffers=256MB "${pg_tls[@]}" >"$work/pg.log" 2>&1 &
pids+=($!)
for _ in $(seq 200); do "$PGBIN/pg_isready" -q -h 127.0.0.1 -p "$PGPORT" && break; sleep 0.05; done
psql() { "$PGBIN/psql" -X -q -h 127.0.0.1 -U postgres "$@"; }
psql -p "$PGPORT" -c "create database bench" >/dev/null
"$PGBIN/pgbench" -q -i -s "$SCALE" -h 127.0.0.1 -p "$PGPORT" -U postgres bench >/dev/null 2>&1

# PgBouncer: transaction pooling, POOL server connections, SCRAM to clients
cat > "$work/userlist.txt" <<U
"postgres" "$PGPASSWORD"
U
cat > "$work/pgbouncer.ini" <<P
[databases]
bench = host=127.0.0.1 port=$PGPORT dbname=bench
[pgbouncer]
listen_addr = 127.0.0.1
listen_port = $PBPORT
unix_socket_dir =
auth_type = scram-sha-256
auth_file = $work/userlist.txt
pool_mode = transaction
default_pool_size = $POOL
max_client_conn = 10000
logfile = $work/pgbouncer.log
pidfile = $work/pgbouncer.pid
client_tls_key_file = $work/tls.key
client_tls_cert_file = $work/tls.crt
client_tls_sslmode = $([[ ${TLS:-} == 1 ]] && echo require || echo allow)
server_tls_sslmode = $server_tls
P
chown postgres "$work/pgbouncer.ini" "$work/userlist.txt"
taskset -c 0 pgbouncer -u postgres "$work/pgbouncer.ini" >/dev/null 2>&1 &
pids+=($!)

cat > "$work/base.toml" <<S
workers = 1
[[database]]
name = "bench"
listen = "127.0.0.1:$STPORT"
servers = ["127.0.0.1:$PGPORT"]
pool_mode = "transaction"
pool_size = $POOL
tls = [{ cert = "$work/tls.crt", key = "$work/tls.key" }]
tls_mode = "$([[ ${TLS:-} == 1 ]] && echo require || echo allow)"
server_tls_mode = "$server_tls"
[[database.users]]
name = "postgres"
password = "$PGPASSWORD"
S
# variant NAME PORT [sed -e EDIT]...: Strata on CPU 0 with base.toml listening on PORT, edited;
# its pid in $started
variant() {
  local name=$1 port=$2
  shift 2
  sed -e "s/^listen = .*/listen = \"127.0.0.1:$port\"/" "$@" "$work/base.toml" >"$work/$name.toml"
  taskset -c 0 "$STRATA" run -c "$work/$name.toml" >"$work/$name.log" 2>&1 &
  pids+=($!)
  started=$!
}
variant strata "$STPORT"
st_pid=$started
SHPORT=$(free_port)
variant strata-shared "$SHPORT" -e "s/^pool_size = .*/&\nread_pipeline = 1/"
sh_pid=$started
BPPORT=$(free_port)
variant strata-busy "$BPPORT" -e 's/^workers = 1$/&\nbusy_poll = "50us"/'
bp_pid=$started
grep -q busy_poll "$work/strata-busy.toml"
wait_port "$BPPORT"
wait_port "$PBPORT"
wait_port "$STPORT"
wait_port "$SHPORT"
# PgBouncer before 1.21 keeps no prepared statements in transaction mode: a client's
# statement is on one server connection only, and pgbench -M prepared fails through it
pb_runs=1 pb_why=
pb_version=$(pgbouncer --version | awk '/PgBouncer/ {print $2; exit}')
if [[ ${PROTOCOL:-} == prepared ]] && [[ $(printf '%s\n1.21\n' "$pb_version" | sort -V | head -1) != 1.21 ]]; then
  pb_runs= pb_why="PgBouncer $pb_version keeps no prepared statements in transaction mode (1.21 does)"
  echo "$pb_why: its rows are left out" >&2
fi
# measure pgbouncer itself, by its pidfile
pb_pid=$(cat "$work/pgbouncer.pid")
pids+=("$pb_pid")

cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
HZ=$(getconf CLK_TCK)

# CPU 1's busy and total ticks so far ("busy total"; /proc/stat: all but idle and iowait)
cpu1_ticks() { awk '$1 == "cpu1" {t = 0; for (i = 2; i <= NF; i++) t += $i; print t - $5 - $6, t}' /proc/stat; }

run() { # target port pid(or 0) workload -> "tps latency_ms cpu_us_per_txn cpu1_busy_percent"
  local port=$2 pid=$3 mode=$4 args=()
  [[ $mode == select ]] && args=(-S)
  [[ -n ${PROTOCOL:-} ]] && args+=(-M "$PROTOCOL")
  # every round starts from a checkpoint: one falling inside a round (and the full-page
  # writes after it) would cost that round alone
  psql -p "$PGPORT" -c checkpoint bench >/dev/null
  local before=0 busy0 total0 busy1 total1
  [[ $pid != 0 ]] && before=$(cpu_ticks "$pid")
  read -r busy0 total0 < <(cpu1_ticks)
  local out
  out=$(taskset -c 1 "$PGBIN/pgbench" "${args[@]}" -c "$CLIENTS" -j 2 -T "$DURATION" -h 127.0.0.1 -p "$port" -U postgres bench 2>&1)
  local after=0
  [[ $pid != 0 ]] && after=$(cpu_ticks "$pid")
  read -r busy1 total1 < <(cpu1_ticks)
  local tps lat txns
  tps=$(awk '/^tps/ {print $3; exit}' <<<"$out")
  lat=$(awk '/latency average/ {print $4; exit}' <<<"$out")
  txns=$(awk -F': ' '/actually processed/ {split($2, a, "/"); print a[1]; exit}' <<<"$out")
  if [[ -z $tps || -z $txns ]]; then echo "pgbench failed against port $port: $out" >&2; exit 1; fi
  local cpu="-"
  [[ $pid != 0 ]] && cpu=$(python3 -c "print(f'{($after - $before) / $HZ * 1e6 / $txns:.1f}')")
  echo "$tps $lat $cpu $(((busy1 - busy0) * 100 / (total1 - total0)))"
}

median() { sort -n -k1 | awk '{a[NR]=$0} END {print a[int((NR+1)/2)]}'; }

printf "| workload | target | tps (median of %s) | avg latency (ms) | proxy CPU µs / transaction | CPU 1 busy %% |\n|---|---|---|---|---|---|\n" "$ROUNDS"
modes=()
for mode in select tpcb; do wants $mode && modes+=($mode); done
SPREAD=""
PAIRED=""
for mode in "${modes[@]}"; do
  declare -A results=()
  for _ in $(seq "$ROUNDS"); do
    results[direct]+="$(run direct "$PGPORT" 0 $mode)"$'\n'
    [[ -n $pb_runs ]] && results[pgbouncer]+="$(run pgbouncer "$PBPORT" "$pb_pid" $mode)"$'\n'
    results[strata]+="$(run strata "$STPORT" "$st_pid" $mode)"$'\n'
    results[shared]+="$(run shared "$SHPORT" "$sh_pid" $mode)"$'\n'
    results[busy]+="$(run busy "$BPPORT" "$bp_pid" $mode)"$'\n'
  done
  for target in direct pgbouncer strata shared busy; do
    [[ -z ${results[$target]:-} ]] && continue
    read -r tps lat cpu busy <<<"$(printf "%s" "${results[$target]}" | median)"
    label=$([[ $mode == select ]] && echo "pgbench -S" || echo "pgbench (TPC-B-like)")
    case $target in
      shared) name="strata, reads never share" ;;
      busy) name="strata, busy_poll = 50us" ;;
      *) name=$target ;;
    esac
    printf "| %s | %s | %s | %s | %s | %s |\n" "$label" "$name" "$tps" "$lat" "$cpu" "$busy"
    declare "tps_${mode}_${target}=$tps"
    SPREAD+="  $label, $name: $(printf "%s" "${results[$target]}" | awk '{printf "%.0f ", $1}')"$'\n'

  done
  # each round's own ratio, and their median (see paired in bench/lib.sh)
  if [[ $mode == select && -n ${results[pgbouncer]:-} ]]; then
    PAIRED+="each round -S strata/pgbouncer: $(paired tps "$(figures '$1' "${results[strata]}")" "$(figures '$1' "${results[pgbouncer]}")")"$'\n'
  elif [[ $mode == tpcb ]]; then
    PAIRED+="each round TPC-B strata/direct: $(paired tps "$(figures '$1' "${results[strata]}")" "$(figures '$1' "${results[direct]}")")"$'\n'
    PAIRED+="each round TPC-B busy_poll/direct: $(paired tps "$(figures '$1' "${results[busy]}")" "$(figures '$1' "${results[direct]}")")"$'\n'
  fi
  unset results
done
ratio() { python3 -c "print(f'{$1 / $2:.2f}')"; }
if ((${#modes[@]})); then
  echo
  if ! wants select; then
    :
  elif [[ -n $pb_runs ]]; then
    echo "ratio -S tps strata/pgbouncer $(ratio "$tps_select_strata" "$tps_select_pgbouncer"), reads never share/pgbouncer $(ratio "$tps_select_shared" "$tps_select_pgbouncer"), busy_poll/pgbouncer $(ratio "$tps_select_busy" "$tps_select_pgbouncer") (target >= 1.2)"
  else
    echo "ratio -S tps strata/reads never share $(ratio "$tps_select_strata" "$tps_select_shared") (no PgBouncer rows: $pb_why)"
  fi
  wants tpcb && echo "ratio TPC-B tps strata/direct $(ratio "$tps_tpcb_strata" "$tps_tpcb_direct"), busy_poll/direct $(ratio "$tps_tpcb_busy" "$tps_tpcb_direct") (target >= 0.95)"
  # TPC-B at this scale waits on row locks (ten branch rows): its rounds swing more than the
  # others', so every round is shown
  echo "tps per round, in run order:"
  printf "%s" "$SPREAD"
  printf "%s" "$PAIRED"
fi

# pgbench -S with a replica: Strata over the primary and a streaming replica
if wants replica; then
  RPORT=$(free_port); ST2PORT=$(free_port)
  as_pg env PGPASSWORD="$PGPASSWORD" "$PGBIN/pg_basebackup" -h 127.0.0.1 -p "$PGPORT" -U postgres \
    -D "$work/replica" -R -X stream -c fast >/dev/null 2>&1
  as_pg taskset -c 0 "$PGBIN/postgres" -D "$work/replica" -p "$RPORT" -k "$work" \
    -c listen_addresses=127.0.0.1 -c max_connections=200 -c shared_buffers=256MB "${pg_tls[@]}" >"$work/replica.log" 2>&1 &
  pids+=($!)
  for _ in $(seq 200); do "$PGBIN/pg_isready" -q -h 127.0.0.1 -p "$RPORT" && break; sleep 0.05; done
  pair=(-e "s/^servers = .*/servers = [\"127.0.0.1:$PGPORT\", \"127.0.0.1:$RPORT\"]\ncheck_user = \"postgres\"/")
  variant strata2 "$ST2PORT" "${pair[@]}"
  st2_pid=$started
  ST3PORT=$(free_port)
  variant strata3 "$ST3PORT" "${pair[@]}" -e "s/^pool_size = .*/&\nprimary_reads = false/"
  st3_pid=$started
  # the replica takes reads once a check has found it and its lag
  for port in "$ST2PORT" "$ST3PORT"; do
    wait_port "$port"
    for _ in $(seq 100); do
      "$PGBIN/psql" -X -qAt -h 127.0.0.1 -p "$port" -U postgres -c "select pg_is_in_recovery()" bench 2>/dev/null | grep -q t && break
      sleep 0.1
    done
  done
  declare -A results=()
  for _ in $(seq "$ROUNDS"); do
    results[primary]+="$(run strata "$STPORT" "$st_pid" select)"$'\n'
    results[replica]+="$(run strata "$ST2PORT" "$st2_pid" select)"$'\n'
    results[only]+="$(run strata "$ST3PORT" "$st3_pid" select)"$'\n'
  done
  printf "\n| workload | target | tps (median of %s) | avg latency (ms) | proxy CPU µs / transaction |\n|---|---|---|---|---|\n" "$ROUNDS"
  read -r tps lat cpu _ <<<"$(printf "%s" "${results[primary]}" | median)"
  printf "| pgbench -S | strata, primary alone | %s | %s | %s |\n" "$tps" "$lat" "$cpu"
  read -r alone _ _ <<<"$(printf "%s" "${results[primary]}" | median)"
  read -r tps lat cpu _ <<<"$(printf "%s" "${results[replica]}" | median)"
  printf "| pgbench -S | strata, primary and replica | %s | %s | %s |\n" "$tps" "$lat" "$cpu"
  both=$tps
  read -r tps lat cpu _ <<<"$(printf "%s" "${results[only]}" | median)"
  printf "| pgbench -S | strata, primary and replica, reads on the replica only | %s | %s | %s |\n" "$tps" "$lat" "$cpu"
  echo "ratio -S tps with the replica / primary alone $(ratio "$both" "$alone") (target > 1), reads on the replica only $(ratio "$tps" "$alone")"
  kill "$st2_pid" "$st3_pid" 2>/dev/null || true
fi

wants idle || exit 0
# Memory per idle client: fresh proxies with trust logins, RSS at 1,000 and 8,000 idle clients
kill "$pb_pid" "$st_pid" "$sh_pid" "$bp_pid" 2>/dev/null || true
for _ in $(seq 100); do kill -0 "$pb_pid" 2>/dev/null || kill -0 "$st_pid" 2>/dev/null || kill -0 "$bp_pid" 2>/dev/null || break; sleep 0.1; done
rm -f "$work/pgbouncer.pid"
sed -i 's/^auth_type = scram-sha-256/auth_type = trust/; s/^listen_port = .*/listen_port = '"$PBPORT"'/' "$work/pgbouncer.ini"
# both offer TLS to the clients that ask for it (the rows with TLS): PgBouncer's
# client_tls_sslmode = allow, Strata's tls (in clear too)
sed -i 's/^client_tls_sslmode = .*/client_tls_sslmode = allow/' "$work/pgbouncer.ini"
taskset -c 0 pgbouncer -u postgres "$work/pgbouncer.ini" >/dev/null 2>&1 &
pids+=($!)
variant strata-idle "$STPORT" -e "s/^pool_size = .*/&\nauth_type = \"trust\"/" -e 's/^tls_mode = .*/tls_mode = "allow"/'
st_pid=$started
wait_port "$PBPORT"
wait_port "$STPORT"
pb_pid=$(cat "$work/pgbouncer.pid")
hold() { # port count [tls] -> holds count idle clients until the next release
  rm -f "$work/stop" "$work/ready"
  python3 bench/idle_pg.py 127.0.0.1 "$1" postgres bench "$2" "$work/stop" ${3:+"$3"} > "$work/ready" &
  holder=$!
  for _ in $(seq 600); do grep -q ready "$work/ready" 2>/dev/null && return 0; sleep 0.1; done
  echo "idle clients never all logged in" >&2; exit 1
}
release() { touch "$work/stop"; wait "$holder" 2>/dev/null || true; }
idle_slope() { # port pid high [tls] -> bytes per idle client between 1,000 and high
  local low high
  hold "$1" 1000 ${4:+"$4"}
  low=$(rss_kib "$2")
  release
  hold "$1" "$3" ${4:+"$4"}
  high=$(rss_kib "$2")
  release
  python3 -c "print(round(($high - $low) * 1024 / ($3 - 1000)))"
}
printf "\n| proxy | bytes per idle client (RSS slope, 1,000 to 8,000; on TLS 1,000 to 5,000) |\n|---|---|\n"
printf "| pgbouncer | %s |\n" "$(idle_slope "$PBPORT" "$pb_pid" 8000)"
printf "| strata | %s |\n" "$(idle_slope "$STPORT" "$st_pid" 8000)"
# (a TLS client takes Strata three descriptors, its socket and a socket pair's two ends:
# 5,000 stay inside a limit of 20,000)
printf "| pgbouncer, clients on TLS | %s |\n" "$(idle_slope "$PBPORT" "$pb_pid" 5000 tls)"
printf "| strata, clients on TLS | %s |\n" "$(idle_slope "$STPORT" "$st_pid" 5000 tls)"
