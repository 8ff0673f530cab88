#!/usr/bin/env bash
# Side-by-side HTTP benchmark: Strata, nginx and HAProxy in front of the same two nginx backends.
# Each proxy runs one worker pinned to CPU 0; wrk, h2load, openssl and the backends run on CPU 1.
# Prints, per proxy: requests/s, p99 latency, non-2xx count, proxy CPU microseconds per request,
# and resident memory while holding 8,000 idle keep-alive client connections. Then HTTP/2 with
# h2load (-c 16 -m 32): in clear text with prior knowledge (h2c) and over TLS with ALPN h2, and
# the CPU of a full TLS handshake (openssl s_time -new), all to the same backends over HTTP/1.1.
#
# Two more rows show the floor: Strata's and HAProxy's L4 modes relaying the same traffic as
# bytes (each client connection tied to one backend connection, no HTTP work at all). They make
# the same four syscalls per request as the HTTP proxies, so their CPU per request is what
# moving the bytes costs on this machine before any HTTP is parsed.
#
# User time per request is also printed less each proxy's syscalls per request (counted with
# perf) times the user time this machine books per syscall (perf bench syscall basic): the
# kernel books time by tick, and a syscall's way back out lands in user time here. And once
# more by sampling (perf record -e cpu-clock at 2999 Hz, one run each): user-space time per
# request that no tick books.
#
# The machine is noisy: each proxy is measured ROUNDS times, interleaved (strata, nginx, haproxy,
# strata, ...), and the median round of each is printed, so drift hits all three alike.
#
# Usage: [STRATA=binary] bench/http.sh [seconds per run, default 10] [rounds, default 3]
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION=${1:-10}
ROUNDS=${2:-3}
IDLE=8000

need=()
for p in nginx:nginx-light haproxy:haproxy wrk:wrk python3:python3 h2load:nghttp2-client openssl:openssl perf:linux-perf; do
  command -v "${p%%:*}" >/dev/null || need+=("${p##*:}")
done
if ((${#need[@]})); then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi
# shellcheck source=bench/lib.sh
source bench/lib.sh

nginx_conf() { # name dir listen-port body-or-proxy
  local d=$2
  mkdir -p "$d"
  cat > "$d/nginx.conf" <<NGINX
daemon off; master_process off; worker_processes 1; worker_rlimit_nofile 20000;
pid $d/nginx.pid; error_log $d/error.log;
events { worker_connections 20000; }
http {
  access_log off; keepalive_timeout 120s; keepalive_requests 1000000;
  client_body_temp_path $d/b; proxy_temp_path $d/p; fastcgi_temp_path $d/f; uwsgi_temp_path $d/u; scgi_temp_path $d/s;
  $4
  server { listen 127.0.0.1:$3; $5 }
}
NGINX
}

# the two app servers: a short 200
B1=$(free_port); B2=$(free_port)
for b in $B1 $B2; do
  nginx_conf app "$work/app$b" "$b" "" 'location / { return 200 "ok\n"; }'
  taskset -c 1 nginx -c "$work/app$b/nginx.conf" -p "$work/app$b" & pids+=($!)
  wait_port "$b"
done

# the proxies
P_STRATA=$(free_port); P_NGINX=$(free_port); P_HAPROXY=$(free_port)
P_STRATA_L4=$(free_port); P_HAPROXY_L4=$(free_port)
P_NGINX_H2C=$(free_port); P_HAPROXY_H2C=$(free_port)
P_STRATA_TLS=$(free_port); P_NGINX_TLS=$(free_port); P_HAPROXY_TLS=$(free_port)
# one certificate for the three TLS listeners (P-256, as most sites serve)
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 -subj /CN=localhost \
  -addext subjectAltName=DNS:localhost,IP:127.0.0.1 -keyout "$work/key.pem" -out "$work/cert.pem" 2>/dev/null
cat "$work/cert.pem" "$work/key.pem" > "$work/haproxy.pem"
cat > "$work/strata.toml" <<TOML
workers = 1
[[http]]
name = "bench"
listen = "127.0.0.1:$P_STRATA"
backends = ["127.0.0.1:$B1", "127.0.0.1:$B2"]
header_timeout = "120s"
max_connections = 20000
passive = { failures = 0 }
[[http]]
name = "tls"
listen = "127.0.0.1:$P_STRATA_TLS"
backends = ["127.0.0.1:$B1", "127.0.0.1:$B2"]
header_timeout = "120s"
max_connections = 20000
passive = { failures = 0 }
tls = [{ cert = "$work/cert.pem", key = "$work/key.pem" }]
[[tcp]]
name = "floor"
listen = "127.0.0.1:$P_STRATA_L4"
backends = ["127.0.0.1:$B1", "127.0.0.1:$B2"]
max_connections = 20000
TOML
taskset -c 0 "$STRATA" run -c "$work/strata.toml" --log-level warn >/dev/null 2>"$work/strata.log" & pids+=($!); PID_STRATA=$!

NGINX_PASS='location / { proxy_pass http://app; proxy_http_version 1.1; proxy_set_header Connection ""; }'
nginx_conf proxy "$work/proxy" "$P_NGINX" \
  "upstream app { server 127.0.0.1:$B1; server 127.0.0.1:$B2; keepalive 512; }
  server { listen 127.0.0.1:$P_NGINX_H2C http2; $NGINX_PASS }
  server { listen 127.0.0.1:$P_NGINX_TLS ssl http2; ssl_certificate $work/cert.pem; ssl_certificate_key $work/key.pem; $NGINX_PASS }" \
  "$NGINX_PASS"
taskset -c 0 nginx -c "$work/proxy/nginx.conf" -p "$work/proxy" 2>"$work/nginx.log" & pids+=($!); PID_NGINX=$!

cat > "$work/haproxy.cfg" <<HAP
global
  nbthread 1
  maxconn 9500
defaults
  mode http
  timeout connect 2s
  timeout client 120s
  timeout server 60s
  timeout http-keep-alive 120s
  option http-keep-alive
frontend fe
  bind 127.0.0.1:$P_HAPROXY
  default_backend be
backend be
  balance roundrobin
  http-reuse always
  server s1 127.0.0.1:$B1
  server s2 127.0.0.1:$B2
frontend fe_h2c
  bind 127.0.0.1:$P_HAPROXY_H2C proto h2
  default_backend be
frontend fe_tls
  bind 127.0.0.1:$P_HAPROXY_TLS ssl crt $work/haproxy.pem alpn h2,http/1.1
  default_backend be
frontend floor
  mode tcp
  bind 127.0.0.1:$P_HAPROXY_L4
  default_backend floor
backend floor
  mode tcp
  balance roundrobin
  server s1 127.0.0.1:$B1
  server s2 127.0.0.1:$B2
HAP
taskset -c 0 haproxy -f "$work/haproxy.cfg" -db >/dev/null 2>"$work/haproxy.log" & pids+=($!); PID_HAPROXY=$!
for p in $P_STRATA $P_NGINX $P_HAPROXY $P_STRATA_L4 $P_HAPROXY_L4 $P_NGINX_H2C $P_HAPROXY_H2C $P_STRATA_TLS $P_NGINX_TLS $P_HAPROXY_TLS; do wait_port "$p"; done

cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
sys_ticks() { awk '{print $15}' "/proc/$1/stat"; }
tick=$(getconf CLK_TCK)

TARGETS=(strata nginx haproxy strata-l4 haproxy-l4)
port_of() { case $1 in strata) echo "$P_STRATA" ;; nginx) echo "$P_NGINX" ;; haproxy) echo "$P_HAPROXY" ;; strata-l4) echo "$P_STRATA_L4" ;; haproxy-l4) echo "$P_HAPROXY_L4" ;; esac; }
pid_of() { case $1 in strata | strata-l4) echo "$PID_STRATA" ;; nginx) echo "$PID_NGINX" ;; haproxy | haproxy-l4) echo "$PID_HAPROXY" ;; esac; }

# one wrk round against a proxy: "req/s p99_ms non2xx cpu_us/req sys_us/req"
measure() {
  local port pid out before after sys_before sys_after requests rps p99 non2xx
  port=$(port_of "$1"); pid=$(pid_of "$1")
  before=$(cpu_ticks "$pid"); sys_before=$(sys_ticks "$pid")
  out=$(taskset -c 1 wrk -t1 -c64 -d"${DURATION}s" --latency "http://127.0.0.1:$port/")
  after=$(cpu_ticks "$pid"); sys_after=$(sys_ticks "$pid")
  requests=$(awk '/requests in/ {print $1}' <<<"$out")
  rps=$(awk '/Requests\/sec/ {print $2}' <<<"$out")
  p99=$(awk '$1 == "99%" {v=$2; if (v ~ /us$/) {sub(/us/,"",v); v=v/1000} else if (v ~ /ms$/) {sub(/ms/,"",v)} else if (v ~ /s$/) {sub(/s/,"",v); v=v*1000}; print v}' <<<"$out")
  non2xx=$(awk '/Non-2xx/ {print $NF}' <<<"$out")
  if grep -q "Socket errors" <<<"$out"; then echo "  $1: $(grep 'Socket errors' <<<"$out")" >&2; fi
  awk -v rps="$rps" -v p99="$p99" -v bad="${non2xx:-0}" -v t=$((after - before)) -v st=$((sys_after - sys_before)) -v hz="$tick" -v n="$requests" \
    'BEGIN {printf "%s %s %s %.2f %.2f\n", rps, p99, bad, t / hz * 1e6 / n, st / hz * 1e6 / n}'
}

for target in "${TARGETS[@]}"; do
  taskset -c 1 wrk -t1 -c64 -d2s "http://127.0.0.1:$(port_of $target)/" >/dev/null # warm up pools
done
declare -A ROUND
for r in $(seq "$ROUNDS"); do
  for target in "${TARGETS[@]}"; do
    ROUND[$target]+="$(measure "$target")"$'\n'
  done
done

printf '%-10s %12s %9s %8s %12s %12s %12s %16s %14s\n' target req/s p99_ms non2xx cpu_us/req sys_us/req user_us/req rss_idle_MiB bytes/idle_conn
declare -A CPU USER
for target in "${TARGETS[@]}"; do
  # the median round by CPU per request
  read -r rps p99 non2xx cpu_us sys_us < <(sort -k4 -g <<<"${ROUND[$target]%$'\n'}" | awk -v n="$ROUNDS" 'NR == int((n + 1) / 2)')
  CPU[$target]=$cpu_us
  user_us=$(awk -v c="$cpu_us" -v s="$sys_us" 'BEGIN {printf "%.2f", c - s}')
  USER[$target]=$user_us
  if [[ $target == *-l4 ]]; then
    printf '%-10s %12s %9s %8s %12s %12s %12s %16s %14s\n' "$target" "$rps" "$p99" "$non2xx" "$cpu_us" "$sys_us" "$user_us" - -
    continue
  fi
  # memory: hold IDLE keep-alive clients; the slope (RSS with them minus RSS before, per
  # connection) is what each idle client costs, whatever the process started with
  before=$(rss_kib "$(pid_of "$target")")
  coproc HOLD { taskset -c 1 python3 bench/idle_clients.py 127.0.0.1 "$(port_of "$target")" "$IDLE"; }
  read -r _ _ <&"${HOLD[0]}"
  after=$(rss_kib "$(pid_of "$target")")
  rss=$(awk -v k="$after" 'BEGIN {printf "%.1f", k / 1024}')
  per_conn=$(( (after - before) * 1024 / IDLE ))
  exec {HOLD[1]}>&-; wait "$HOLD_PID" 2>/dev/null || true
  printf '%-10s %12s %9s %8s %12s %12s %12s %16s %14s\n' "$target" "$rps" "$p99" "$non2xx" "$cpu_us" "$sys_us" "$user_us" "$rss" "$per_conn"
done
echo "(median of $ROUNDS interleaved ${DURATION}s rounds; cpu from /proc/PID/stat utime+stime over the run / requests)"
awk -v s="${CPU[strata]}" -v h="${CPU[haproxy]}" -v n="${CPU[nginx]}" -v sf="${CPU[strata-l4]}" -v hf="${CPU[haproxy-l4]}" \
  -v su="${USER[strata]}" -v hu="${USER[haproxy]}" \
  'BEGIN {printf "ratio cpu_us/req: strata/haproxy %.2f (target <= 0.90), strata/nginx %.2f\n", s / h, s / n
         printf "ratio user_us/req: strata/haproxy %.2f (target <= 0.55)\n", su / hu
         printf "floor (L4 relays, no HTTP work) / haproxy: strata-l4 %.2f, haproxy-l4 %.2f\n", sf / h, hf / h}'
# the same, round by round (see paired in bench/lib.sh)
echo "each round strata/haproxy: $(paired cpu_us/req "$(figures '$4' "${ROUND[strata]}")" "$(figures '$4' "${ROUND[haproxy]}")");" \
  "$(paired user_us/req "$(figures '$4 - $5' "${ROUND[strata]}")" "$(figures '$4 - $5' "${ROUND[haproxy]}")")"

# User time includes the kernel's way out of every syscall here: the kernel books CPU time by
# timer tick, and a tick that falls while a syscall returns (interrupts off) is taken in user
# mode. A getppid loop, whose user-space work is a few instructions per call, shows most of its
# time as user. So each proxy's user time per request also holds its syscalls per request times
# that share, which dilutes the ratio of the user-space work. Count both, and take it out.
syscalls_per_req() { # target: syscalls per request over one wrk run
  local out
  out=$(perf stat -x, -e raw_syscalls:sys_enter -p "$(pid_of "$1")" -o "$work/syscalls-$1" -- \
    taskset -c 1 wrk -t1 -c64 -d"${DURATION}s" "http://127.0.0.1:$(port_of "$1")/")
  awk -F, -v n="$(awk '/requests in/ {print $1}' <<<"$out")" '/raw_syscalls/ {printf "%.2f", $1 / n}' "$work/syscalls-$1"
}
SYS_STRATA=$(syscalls_per_req strata); SYS_HAPROXY=$(syscalls_per_req haproxy)
CALLS=5000000
booked=$( { TIMEFORMAT=%U; time taskset -c 0 perf bench syscall basic -l "$CALLS" >/dev/null; } 2>&1 )
awk -v b="$booked" -v c="$CALLS" -v ss="$SYS_STRATA" -v sh="$SYS_HAPROXY" -v su="${USER[strata]}" -v hu="${USER[haproxy]}" -v d="$DURATION" \
  'BEGIN {k = b * 1e6 / c
         printf "syscalls/req (perf stat, one %ss run each): strata %.2f, haproxy %.2f; user time booked per syscall on CPU 0: %.3f us (perf bench syscall basic)\n", d, ss, sh, k
         printf "user_us/req less syscalls x booked (the user-space work): strata %.2f, haproxy %.2f, ratio %.2f\n", su - ss * k, hu - sh * k, (su - ss * k) / (hu - sh * k)}'

# User time by sampling, which no tick books: perf interrupts each proxy 2999 times a second
# of its CPU during one wrk run, and a sample counts as user space when it interrupted code
# outside the kernel. A sample due while a syscall returns lands on the instruction after it
# (in libc's syscall wrappers), so the artifact above shows here too, but as a few percent of
# the samples, not as a share of every syscall.
sampled_user() { # target: user-space microseconds per request, by sampling
  local out
  out=$(perf record -q -e cpu-clock -F 2999 -p "$(pid_of "$1")" -o "$work/perf-$1" -- \
    taskset -c 1 wrk -t1 -c64 -d"${DURATION}s" "http://127.0.0.1:$(port_of "$1")/" 2>/dev/null)
  perf report -i "$work/perf-$1" --stdio --sort dso 2>/dev/null | awk -v n="$(awk '/requests in/ {print $1}' <<<"$out")" '
    /Event count/ {ns = $NF}
    /^ +[0-9.]+%/ && !/\[kernel/ {sub(/%/, "", $1); user += $1}
    END {printf "%.2f", ns * user / 100 / 1000 / n}'
}
SAMPLED_STRATA=$(sampled_user strata); SAMPLED_HAPROXY=$(sampled_user haproxy)
awk -v s="$SAMPLED_STRATA" -v h="$SAMPLED_HAPROXY" -v d="$DURATION" \
  'BEGIN {printf "user_us/req by sampling (perf record -e cpu-clock, one %ss run each): strata %.2f, haproxy %.2f, ratio %.2f\n", d, s, h, s / h}'

# HTTP/2: h2load with 16 connections of 32 streams each, h2c and TLS; then full handshakes
PROXIES=(strata nginx haproxy)
h2_url() { # proxy h2c|tls
  case $1:$2 in
    strata:h2c) echo "http://127.0.0.1:$P_STRATA/" ;; nginx:h2c) echo "http://127.0.0.1:$P_NGINX_H2C/" ;;
    haproxy:h2c) echo "http://127.0.0.1:$P_HAPROXY_H2C/" ;; strata:tls) echo "https://127.0.0.1:$P_STRATA_TLS/" ;;
    nginx:tls) echo "https://127.0.0.1:$P_NGINX_TLS/" ;; haproxy:tls) echo "https://127.0.0.1:$P_HAPROXY_TLS/" ;;
  esac
}
tls_port() { case $1 in strata) echo "$P_STRATA_TLS" ;; nginx) echo "$P_NGINX_TLS" ;; haproxy) echo "$P_HAPROXY_TLS" ;; esac; }

# one h2load round: "req/s failed cpu_us/req user_us/req"
measure_h2() {
  local pid out before after sys_before sys_after done_n rps failed
  pid=$(pid_of "$1")
  before=$(cpu_ticks "$pid"); sys_before=$(sys_ticks "$pid")
  out=$(taskset -c 1 h2load -c16 -m32 -D "$DURATION" "$(h2_url "$1" "$2")" 2>&1)
  after=$(cpu_ticks "$pid"); sys_after=$(sys_ticks "$pid")
  rps=$(awk '/^finished in/ {print $4}' <<<"$out")
  done_n=$(awk '/^requests:/ {print $8}' <<<"$out")
  failed=$(awk '/^requests:/ {print $10 + $12}' <<<"$out")
  awk -v rps="$rps" -v bad="$failed" -v t=$((after - before)) -v st=$((sys_after - sys_before)) -v hz="$tick" -v n="${done_n:-1}" \
    'BEGIN {printf "%s %s %.2f %.2f\n", rps, bad, t / hz * 1e6 / n, (t - st) / hz * 1e6 / n}'
}

# one handshake round: "handshakes/s cpu_us/handshake"
measure_handshake() {
  local pid out before after n secs
  pid=$(pid_of "$1")
  before=$(cpu_ticks "$pid")
  out=$(taskset -c 1 openssl s_time -connect "127.0.0.1:$(tls_port "$1")" -new -time "$DURATION" 2>/dev/null)
  after=$(cpu_ticks "$pid")
  read -r n secs < <(awk '/connections in .* real seconds/ {print $1, $4; exit}' <<<"$out")
  awk -v n="${n:-0}" -v s="${secs:-1}" -v t=$((after - before)) -v hz="$tick" \
    'BEGIN {if (n == 0) {print "0 0"; exit}; printf "%.0f %.1f\n", n / s, t / hz * 1e6 / n}'
}

for target in "${PROXIES[@]}"; do
  for mode in h2c tls; do taskset -c 1 h2load -c16 -m32 -D 2 "$(h2_url "$target" "$mode")" >/dev/null 2>&1; done
done
declare -A H2
for r in $(seq "$ROUNDS"); do
  for mode in h2c tls; do
    for target in "${PROXIES[@]}"; do H2[$target:$mode]+="$(measure_h2 "$target" "$mode")"$'\n'; done
  done
  for target in "${PROXIES[@]}"; do H2[$target:hs]+="$(measure_handshake "$target")"$'\n'; done
done
echo
printf '%-10s %-5s %12s %8s %12s %12s\n' target proto req/s failed cpu_us/req user_us/req
declare -A H2CPU H2RPS
for mode in h2c tls; do
  for target in "${PROXIES[@]}"; do
    read -r rps failed cpu_us user_us < <(sort -k3 -g <<<"${H2[$target:$mode]%$'\n'}" | awk -v n="$ROUNDS" 'NR == int((n + 1) / 2)')
    H2CPU[$target:$mode]=$cpu_us
    H2RPS[$target:$mode]=$rps
    printf '%-10s %-5s %12s %8s %12s %12s\n' "$target" "$mode" "$rps" "$failed" "$cpu_us" "$user_us"
  done
done
echo "(h2load -c16 -m32, median of $ROUNDS interleaved ${DURATION}s rounds by cpu_us/req)"
printf '%-10s %14s %16s\n' target handshakes/s cpu_us/handshake
for target in "${PROXIES[@]}"; do
  read -r hps cpu_hs < <(sort -k2 -g <<<"${H2[$target:hs]%$'\n'}" | awk -v n="$ROUNDS" 'NR == int((n + 1) / 2)')
  printf '%-10s %14s %16s\n' "$target" "$hps" "$cpu_hs"
done
echo "(openssl s_time -new: full handshakes, median of $ROUNDS rounds)"
for mode in h2c tls; do
  awk -v s="${H2CPU[strata:$mode]}" -v h="${H2CPU[haproxy:$mode]}" -v sr="${H2RPS[strata:$mode]}" -v hr="${H2RPS[haproxy:$mode]}" -v m="$mode" \
    'BEGIN {printf "ratio %s: cpu_us/req strata/haproxy %.2f (target <= 0.80), req/s strata/haproxy %.2f (target >= 1)\n", m, s / h, sr / hr}'
done
for mode in h2c tls; do # round by round (see paired in bench/lib.sh)
  echo "each round strata/haproxy $mode: $(paired cpu_us/req "$(figures '$3' "${H2[strata:$mode]}")" "$(figures '$3' "${H2[haproxy:$mode]}")");" \
    "$(paired req/s "$(figures '$1' "${H2[strata:$mode]}")" "$(figures '$1' "${H2[haproxy:$mode]}")")"
done
