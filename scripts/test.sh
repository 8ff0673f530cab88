#!/usr/bin/env bash
# Installs what the test suite needs on a fresh Debian machine, then runs the whole suite.
set -euo pipefail
cd "$(dirname "$0")/.."

# Debian packages the end-to-end tests start for real: nginx as a backend; redis-server,
# memcached and nutcracker (twemproxy) for the cache layer; iproute2 (to make hosts from network
# namespaces) and keepalived (a VRRP peer) for the entry layer; PostgreSQL (server, psql,
# pgbench) for the database layer; etcd (server and etcdctl) for config from etcd; headless
# Chromium for the dashboard; promtool (from prometheus) and systemd-analyze for what deploy/
# ships; haproxy, whose configs `strata import haproxy` translates (its fixtures are checked with
# `haproxy -c`, and a test runs one next to its translation).
need=()
command -v nginx >/dev/null || need+=(nginx-light)
command -v redis-server >/dev/null || need+=(redis-server)
command -v redis-cli >/dev/null || need+=(redis-tools)
command -v nutcracker >/dev/null || need+=(nutcracker)
command -v memcached >/dev/null || need+=(memcached)
command -v curl >/dev/null || need+=(curl)
command -v ip >/dev/null || need+=(iproute2)
command -v keepalived >/dev/null || need+=(keepalived)
compgen -G "/usr/lib/postgresql/*/bin/pgbench" >/dev/null || need+=(postgresql postgresql-contrib)
command -v chromium >/dev/null || need+=(chromium)
command -v promtool >/dev/null || need+=(prometheus)
command -v etcd >/dev/null || need+=(etcd-server)
command -v etcdctl >/dev/null || need+=(etcd-client)
command -v systemd-analyze >/dev/null || need+=(systemd)
command -v haproxy >/dev/null || [[ -x /usr/sbin/haproxy ]] || need+=(haproxy)
if ((${#need[@]})); then
  SUDO=""
  [[ $(id -u) -ne 0 ]] && SUDO="sudo"
  echo "installing: ${need[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

# From PyPI: redis-py (5 or later: it sends CLIENT SETINFO on connect) for the cache layer's
# real-client test; grpcio (client and server) for gRPC through the HTTP layer; h2 for the
# hostile HTTP/2 clients; psycopg 3 (with its bundled libpq) for the database layer's real-driver
# test; websocket-client to drive Chromium over the DevTools protocol; jsonschema and PyYAML for
# deploy/'s Grafana dashboard and Kubernetes manifests
if ! target/py/bin/python -c 'import redis, grpc, h2, psycopg, websocket, jsonschema, yaml, sys; sys.exit(int(redis.__version__.split(".")[0]) < 5)' 2>/dev/null; then
  python3 -m venv target/py
  target/py/bin/pip install -q "redis>=5" "grpcio>=1.60" "h2>=4" "psycopg[binary]>=3.1" "websocket-client>=1.6" "jsonschema>=4" "pyyaml>=6"
fi

if ! cargo nextest --version >/dev/null 2>&1; then
  cargo install --locked cargo-nextest
fi
cargo build --workspace --all-targets
cargo nextest run --workspace --no-fail-fast "$@"
