#!/usr/bin/env bash
# Client-observed outage when a virtual IP moves: keepalived and Strata side by side, on hosts
# made of network namespaces (a bridge, two gateways "a" and "b", a client). Needs root.
#
# Each gateway serves HTTP on every address (the same small Python server for both, so the
# VRRP side is all that differs); the client GETs http://VIP:8080/ every 5 ms, each on a new
# connection with a 20 ms timeout, and the outage is the longest gap between two answered
# probes around the event. Gateway a has priority 200 and holds the address; b has 100.
#
# Events, each at 1 s and 100 ms advert intervals:
#   cut   a's cable is pulled (its switch port goes down): b takes over after
#         Master_Down_Interval (3 intervals + b's Skew_Time)
#   term  a is stopped with SIGTERM (a planned failover): a sends a priority-0 advert and b
#         takes over after its Skew_Time (61 ms at 100 ms adverts for priority 100)
#
# ROUNDS rounds per row, keepalived and Strata interleaved; the median round is printed.
#
# Usage: [STRATA=binary] bench/vrrp.sh [rounds, default 5]
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${1:-5}

need=()
for p in keepalived:keepalived ip:iproute2 python3:python3; do
  command -v "${p%%:*}" >/dev/null || need+=("${p##*:}")
done
if ((${#need[@]})); then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi
# shellcheck source=bench/lib.sh
source bench/lib.sh

P=vb$$
VIP=10.78.0.100
lab_up() {
  ip netns add ${P}sw
  ip -n ${P}sw link add br0 type bridge
  ip -n ${P}sw link set br0 up
  local i=1
  for h in a b c; do
    ip netns add ${P}$h
    ip link add name eth0 netns ${P}$h type veth peer name port$h netns ${P}sw
    ip -n ${P}$h addr add 10.78.0.$i/24 dev eth0
    ip -n ${P}$h link set lo up
    ip -n ${P}$h link set eth0 up
    ip -n ${P}sw link set port$h master br0
    ip -n ${P}sw link set port$h up
    i=$((i + 1))
  done
}
lab_down() {
  for h in a b c sw; do ip netns pids ${P}$h 2>/dev/null | xargs -r kill -9 2>/dev/null || true; done
  for h in a b c sw; do ip netns delete ${P}$h 2>/dev/null || true; done
}
trap 'lab_down; cleanup' EXIT

cat > "$work/serve.py" <<'PY'
import http.server, socketserver, sys
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = sys.argv[1].encode()
        self.send_response(200); self.send_header("Content-Length", str(len(body))); self.end_headers()
        self.wfile.write(body)
    def log_message(self, *a): pass
class S(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True; allow_reuse_address = True
S(("0.0.0.0", 8080), H).serve_forever()
PY
# Probes until told to stop (a file appears), then prints the longest gap between answered
# probes, in ms, after the first answer.
cat > "$work/probe.py" <<'PY'
import os, socket, sys, time
vip, stop = sys.argv[1], sys.argv[2]
last = None; gap = 0.0; tick = time.monotonic()
while not os.path.exists(stop):
    t = time.monotonic()
    try:
        s = socket.create_connection((vip, 8080), timeout=0.02)
        s.settimeout(0.02)
        s.sendall(b"GET / HTTP/1.0\r\n\r\n")
        if s.recv(64).startswith(b"HTTP/1"):
            now = time.monotonic()
            if last is not None: gap = max(gap, now - last)
            last = now
        s.close()
    except OSError:
        pass
    tick += 0.005
    time.sleep(max(0, tick - time.monotonic()))
print(f"{gap * 1000:.0f}")
PY

start_gateway() { # impl host priority interval-seconds
  local impl=$1 h=$2 prio=$3 int=$4 d=$work/$1-$2
  mkdir -p "$d"
  ip netns exec ${P}$h python3 "$work/serve.py" "$h" >/dev/null 2>&1 &
  pids+=($!)
  if [[ $impl == keepalived ]]; then
    cat > "$d/k.conf" <<K
global_defs { vrrp_version 3
  router_id $h }
vrrp_instance front { state BACKUP
  interface eth0
  virtual_router_id 51
  priority $prio
  advert_int $int
  virtual_ipaddress { $VIP/24 } }
K
    ip netns exec ${P}$h keepalived --dont-fork --vrrp -f "$d/k.conf" -p "$d/k.pid" -r "$d/v.pid" -c "$d/c.pid" >"$d/log" 2>&1 &
  else
    local ms
    ms=$(python3 -c "print(int(round($int * 1000)))")
    cat > "$d/s.toml" <<S
[[vip]]
name = "front"
interface = "eth0"
vrid = 51
priority = $prio
advert_interval = "${ms}ms"
addresses = ["$VIP/24"]
S
    ip netns exec ${P}$h "$STRATA" run -c "$d/s.toml" >"$d/log" 2>&1 &
  fi
  pids+=($!)
  echo $! > "$d/pid"
}

holds() { ip -n ${P}$1 -4 -o addr show dev eth0 | grep -q " $VIP/"; }
wait_for() { for _ in $(seq 600); do "$@" && return 0; sleep 0.02; done; echo "timed out: $*" >&2; return 1; }

round() { # impl event interval -> outage ms
  local impl=$1 event=$2 int=$3
  lab_up
  start_gateway "$impl" a 200 "$int"
  wait_for holds a
  start_gateway "$impl" b 100 "$int"
  sleep $(python3 -c "print(max(1.0, 4 * $int))") # b has heard a
  rm -f "$work/stop"
  ip netns exec ${P}c python3 "$work/probe.py" $VIP "$work/stop" > "$work/outage" &
  local probe=$!
  sleep 1
  case $event in
    cut) ip -n ${P}sw link set porta down ;;
    term) kill -TERM "$(cat "$work/$impl-a/pid")" ;;
  esac
  wait_for holds b
  sleep $(python3 -c "print(max(1.0, 2 * $int))")
  touch "$work/stop"
  wait $probe
  cat "$work/outage"
  lab_down
  rm -rf "$work/$impl-a" "$work/$impl-b"
}

median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

printf "| event | advert interval | keepalived outage (ms, median of %s) | Strata outage (ms) | Strata / keepalived |\n|---|---|---|---|---|\n" "$ROUNDS"
for row in "cut 1" "cut 0.1" "term 0.1" "term 1"; do
  set -- $row
  k=(); s=()
  for _ in $(seq "$ROUNDS"); do
    k+=("$(round keepalived "$1" "$2")")
    s+=("$(round strata "$1" "$2")")
  done
  km=$(printf "%s\n" "${k[@]}" | median)
  sm=$(printf "%s\n" "${s[@]}" | median)
  printf "| %s | %s s | %s (%s) | %s (%s) | %s |\n" "$1" "$2" "$km" "${k[*]}" "$sm" "${s[*]}" \
    "$(python3 -c "print(f'{$sm / max($km, 1):.2f}')")"
done
