#!/usr/bin/env bash
# Memory per idle client connection, Strata beside HAProxy, for both of Strata's listener
# kinds: [[http]] (keep-alive HTTP/1.1 clients) and [[tcp]] (relayed connections, two sockets
# each). Each proxy is a fresh process with one worker; the number is the slope: resident
# memory while holding N idle clients (each sent one request and read the answer), minus before,
# per client.
#
# Usage: [STRATA=binary] bench/idle.sh [clients, default 8000]
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-8000}
W=${WINDOW:-0}
for p in nginx haproxy python3; do command -v "$p" >/dev/null || { echo "needs $p (bench/http.sh installs it)" >&2; exit 1; }; done
# shellcheck source=bench/lib.sh
source bench/lib.sh

B=$(free_port)
mkdir -p "$work/app"
cat > "$work/app/nginx.conf" <<NGINX
daemon off; master_process off; worker_processes 1; worker_rlimit_nofile 40000;
pid $work/app/nginx.pid; error_log $work/app/error.log;
events { worker_connections 40000; }
http { access_log off; keepalive_timeout 300s; client_body_temp_path $work/app/b; proxy_temp_path $work/app/p;
  fastcgi_temp_path $work/app/f; uwsgi_temp_path $work/app/u; scgi_temp_path $work/app/s;
  server { listen 127.0.0.1:$B; location / { return 200 "ok\n"; } } }
NGINX
taskset -c 1 nginx -c "$work/app/nginx.conf" -p "$work/app" & pids+=($!)
wait_port "$B"

# slope: label pid port
slope() {
  local before after
  before=$(rss_kib "$2")
  coproc HOLD { taskset -c 1 python3 bench/idle_clients.py 127.0.0.1 "$3" "$N" "$W"; }
  read -r _ _ <&"${HOLD[0]}"
  after=$(rss_kib "$2")
  exec {HOLD[1]}>&-; wait "$HOLD_PID" 2>/dev/null || true
  printf '%-14s %10s %12s\n' "$1" "$(awk -v k="$after" 'BEGIN {printf "%.1f", k / 1024}')" $(( (after - before) * 1024 / N ))
}

printf '%-14s %10s %12s\n' target rss_MiB bytes/conn
for mode in http tcp; do
  P=$(free_port)
  printf 'workers = 1\n[[%s]]\nname = "idle"\nlisten = "127.0.0.1:%s"\nbackends = ["127.0.0.1:%s"]\nmax_connections = 20000\n%s' \
    "$mode" "$P" "$B" "$([[ $mode == http ]] && echo 'header_timeout = "300s"')" > "$work/strata-$mode.toml"
  taskset -c 0 "$STRATA" run -c "$work/strata-$mode.toml" --log-level warn >/dev/null 2>&1 & pid=$!; pids+=($pid)
  wait_port "$P"
  slope "strata-$mode" "$pid" "$P"
  kill "$pid"
  P=$(free_port)
  cat > "$work/haproxy-$mode.cfg" <<HAP
global
  nbthread 1
  maxconn 9000
defaults
  mode $mode
  timeout connect 2s
  timeout client 300s
  timeout server 300s
  timeout http-keep-alive 300s
frontend fe
  bind 127.0.0.1:$P
  default_backend be
backend be
  server s1 127.0.0.1:$B
HAP
  taskset -c 0 haproxy -f "$work/haproxy-$mode.cfg" -db >/dev/null 2>"$work/haproxy-$mode.log" & pid=$!; pids+=($pid)
  wait_port "$P"
  slope "haproxy-$mode" "$pid" "$P"
  kill "$pid"
done
