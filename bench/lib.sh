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
# paired NAME A B: A and B hold one figure per line, round by round, each of B's measured next
# to A's; prints "NAME a1/b1 a2/b2 ... (median m)". The ratio of two medians takes each from
# its own round, and the machine's speed drifts between rounds; each round's own ratio does
# not, and user time, booked by timer tick (250 a second here), moves a few percent either way
# by chance in one round, which a median of several rounds' ratios evens out.
paired() {
  paste <(grep -v '^$' <<<"$2") <(grep -v '^$' <<<"$3") | awk -v name="$1" '
    { r[NR] = $1 / $2; line = line sprintf(" %.2f", r[NR]) }
    END {
      if (NR == 0) { printf "%s -", name; exit }
      for (i = 2; i <= NR; i++) { x = r[i]; for (j = i - 1; j >= 1 && r[j] > x; j--) r[j + 1] = r[j]; r[j + 1] = x }
      printf "%s%s (median %.2f)", name, line, NR % 2 ? r[(NR + 1) / 2] : (r[NR / 2] + r[NR / 2 + 1]) / 2 }'
}
# figures EXPR TEXT: the awk expression EXPR ('$4', '$4 - $5') of each line of TEXT, for paired
figures() { awk "NF {printf \"%.6g\\n\", $1}" <<<"$2"; }
