# Shared by the bench scripts (sourced, not run): the Strata binary to measure, a scratch
# directory and the processes to stop when the script ends, free ports, waiting for a port,
# and a process's resident memory.
#
# STRATA=/path/to/strata measures another build (an older one, to compare) instead of this
# tree's, which is built otherwise.
if [[ -z ${STRATA:-} ]]; then cargo build --release -q -p strata; STRATA=$PWD/target/release/strata; fi
ulimit -n 20000
work=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_port() { for _ in $(seq 200); do (exec 3<>/dev/tcp/127.0.0.1/"$1") 2>/dev/null && return 0; sleep 0.05; done; echo "port $1 never opened; logs:" >&2; tail -n 5 "$work"/*.log >&2 2>/dev/null; exit 1; }
rss_kib() { awk '/^VmRSS/ {print $2}' "/proc/$1/status"; }
