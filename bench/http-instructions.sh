#!/usr/bin/env bash
# Repeatable cost of Strata's HTTP/1 path: user-space instructions per proxied request, counted
# by valgrind's callgrind (not wall time, so a noisy machine does not move it). Strata runs
# under callgrind in front of one nginx; a Python client sends N, then 3N keep-alive GETs on
# one connection in two runs, and the difference / 2N cancels start-up and shutdown. HAProxy
# (when installed; bench/http.sh installs it) is counted the same way, for the ratio.
#
# One connection at a time parks the runtime twice per request, which a loaded proxy does not:
# when wrk is installed, each proxy is also counted under wrk -t1 -c64 for 10 s (the load of
# bench/http.sh), less a run that served nothing, per request served.
#
# HTTP/2: when h2load is installed (bench/http.sh installs it), each proxy is also counted under
# h2load -c16 -m32 (h2c, prior knowledge) for a fixed number of requests, less a run that served
# nothing: the HTTP/2 counterpart, per request.
#
# What instructions leave out: under wrk, each proxy is run once more with callgrind's cache
# and branch simulation, and the first-level cache misses and mispredicted branches per request
# are printed (simulated, so as repeatable as the instructions).
#
# Usage: [STRATA=binary] [PROFILE=file] [H2_PROFILE=file] bench/http-instructions.sh [N, default 1000]
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-1000}
for p in nginx:nginx-light valgrind:valgrind python3:python3; do
  command -v "${p%%:*}" >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${p##*:}" >/dev/null; }
done
# shellcheck source=bench/lib.sh
source bench/lib.sh
APP=$(free_port); PROXY=$(free_port)
cat > "$work/app.conf" <<NGINX
daemon off; master_process off; worker_processes 1; pid $work/app.pid; error_log $work/error.log;
events { worker_connections 1024; }
http { access_log off; keepalive_requests 1000000;
  client_body_temp_path $work/b; proxy_temp_path $work/p; fastcgi_temp_path $work/f; uwsgi_temp_path $work/u; scgi_temp_path $work/s;
  server { listen 127.0.0.1:$APP; location / { return 200 "ok\n"; } } }
NGINX
cat > "$work/strata.toml" <<TOML
workers = 1
[[http]]
name = "bench"
listen = "127.0.0.1:$PROXY"
backends = ["127.0.0.1:$APP"]
passive = { failures = 0 }
TOML
cat > "$work/client.py" <<'PY'
import http.client, sys
c = http.client.HTTPConnection("127.0.0.1", int(sys.argv[1]))
for _ in range(int(sys.argv[2])):
    c.request("GET", "/", headers={"Host": "bench"})
    r = c.getresponse(); r.read()
    assert r.status == 200, r.status
PY
nginx -c "$work/app.conf" -p "$work" & pids+=($!)
HAP=$(free_port); HAP_H2=$(free_port)
cat > "$work/haproxy.cfg" <<HAPCFG
global
  nbthread 1
defaults
  mode http
  timeout connect 2s
  timeout client 60s
  timeout server 60s
  option http-keep-alive
frontend fe
  bind 127.0.0.1:$HAP
  default_backend be
frontend fe_h2c
  bind 127.0.0.1:$HAP_H2 proto h2
  default_backend be
backend be
  http-reuse always
  server s1 127.0.0.1:$APP
HAPCFG
# measure NAME REQUESTS: total instructions of a proxy's whole run that served REQUESTS
measure() {
  local port
  case $1 in
    strata) port=$PROXY; set -- "$2" "$STRATA" run -c "$work/strata.toml" --log-level error ;;
    haproxy) port=$HAP; set -- "$2" haproxy -f "$work/haproxy.cfg" -db ;;
  esac
  local n=$1; shift
  # shellcheck disable=SC2086 # VG_SIM holds several options
  valgrind --tool=callgrind ${VG_SIM:-} --callgrind-out-file="$work/cg.out" "$@" >/dev/null 2>"$work/cg.err" &
  local vg=$!
  for _ in $(seq 150); do (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break; sleep 0.2; done
  if [[ $n == wrk ]]; then
    # the requests served go to stderr, the instructions to stdout
    wrk -t1 -c64 -d10s "http://127.0.0.1:$port/" | awk '/requests in/ {print $1}' >&2
  elif [[ $n == h2load ]]; then
    [[ $port == "$HAP" ]] && port=$HAP_H2
    h2load -c16 -m32 -n 20000 "http://127.0.0.1:$port/" | awk '/^requests:/ {print $8}' >&2
  else
    python3 "$work/client.py" "$port" "$n"
  fi
  kill -TERM "$vg"; wait "$vg" || true
  if [[ -n ${VG_SIM:-} ]]; then
    # every event: "name=count ..."
    awk '/^events:/ {for (i = 2; i <= NF; i++) ev[i] = $i} /^(summary|totals):/ {for (i = 2; i <= NF; i++) printf "%s=%s ", ev[i], $i; print ""; exit}' "$work/cg.out"
  else
    awk '/^(summary|totals):/ {print $2; exit}' "$work/cg.out"
  fi
}
# loaded NAME [wrk|h2load]: instructions per request under that load, less start-up and
# shutdown
loaded() {
  local idle busy n
  idle=$(measure "$1" 0)
  busy=$(measure "$1" "${2:-wrk}" 2>"$work/served")
  n=$(cat "$work/served")
  echo $(((busy - idle) / n))
}
a=$(measure strata "$N"); b=$(measure strata $((3 * N)))
# PROFILE=file keeps the callgrind profile of Strata's larger run (for callgrind_annotate)
if [[ -n ${PROFILE:-} ]]; then cp "$work/cg.out" "$PROFILE"; fi
s_per=$(((b - a) / (2 * N)))
echo "strata instructions/request: $s_per  ($N requests: $a, $((3 * N)): $b)"
if command -v haproxy >/dev/null; then
  a=$(measure haproxy "$N"); b=$(measure haproxy $((3 * N)))
  h_per=$(((b - a) / (2 * N)))
  echo "haproxy instructions/request: $h_per  ($N requests: $a, $((3 * N)): $b)"
  awk -v s="$s_per" -v h="$h_per" 'BEGIN {printf "ratio strata/haproxy: %.2f (user-space instructions; the user CPU target is 0.55)\n", s / h}'
fi
if command -v wrk >/dev/null && command -v haproxy >/dev/null; then
  s_load=$(loaded strata); h_load=$(loaded haproxy)
  echo "under wrk -c64: strata $s_load, haproxy $h_load instructions/request"
  awk -v s="$s_load" -v h="$h_load" 'BEGIN {printf "ratio strata/haproxy under load: %.2f\n", s / h}'
  # what instructions leave out: the same load with callgrind's cache and branch simulation
  # (first-level caches missed, mispredicted branches), per request
  for p in strata haproxy; do
    idle=$(VG_SIM="--cache-sim=yes --branch-sim=yes" measure "$p" 0)
    busy=$(VG_SIM="--cache-sim=yes --branch-sim=yes" measure "$p" wrk 2>"$work/served")
    awk -v idle="$idle" -v busy="$busy" -v n="$(cat "$work/served")" -v p="$p" 'BEGIN {
      split(idle, a, " "); for (i in a) {split(a[i], kv, "="); before[kv[1]] = kv[2]}
      split(busy, b, " "); for (i in b) {split(b[i], kv, "="); after[kv[1]] = kv[2]}
      per = "I1mr D1mr D1mw Bcm Bim"; split(per, names, " ")
      printf "under wrk -c64, %s per request:", p
      for (i = 1; i <= 5; i++) printf " %s %.0f", names[i], (after[names[i]] - before[names[i]]) / n
      print ""}'
  done
  echo "(I1mr/D1mr/D1mw: first-level instruction/data read/data write misses; Bcm/Bim: mispredicted conditional/indirect branches)"
fi
if command -v h2load >/dev/null && command -v haproxy >/dev/null; then
  s_h2=$(loaded strata h2load)
  if [[ -n ${H2_PROFILE:-} ]]; then cp "$work/cg.out" "$H2_PROFILE"; fi
  h_h2=$(loaded haproxy h2load)
  echo "HTTP/2 under h2load -c16 -m32: strata $s_h2, haproxy $h_h2 instructions/request"
  awk -v s="$s_h2" -v h="$h_h2" 'BEGIN {printf "ratio strata/haproxy over HTTP/2: %.2f\n", s / h}'
fi
