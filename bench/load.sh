#!/usr/bin/env bash
# Loopback load tests behind BENCHMARKS.md. Each section runs rlsload against
# the no-op server (the ceiling) and extauthz in the same invocation.
# Usage: bash bench/load.sh [DURATION] [ROUNDS] [insight]   (defaults 10s, 3)
# The server runs with traffic insight on (its default); "insight" as third
# argument runs only the insight on/off comparison (memory backend, c=64).
set -euo pipefail
cd "$(dirname "$0")/.."
dur="${1:-10s}"; rounds="${2:-3}"
go build -o bin/extauthz ./cmd/extauthz
go build -o bin/rlsload ./cmd/rlsload

tmp=$(mktemp -d); trap 'redis-cli -p "$port" shutdown nosave >/dev/null 2>&1 || true; rm -rf "$tmp"' EXIT
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
redis-server --port "$port" --bind 127.0.0.1 --save "" --appendonly no --daemonize yes --logfile "$tmp/redis.log" --dir "$tmp"
until redis-cli -p "$port" ping >/dev/null 2>&1; do sleep 0.1; done
url="redis://127.0.0.1:$port/0"

# bench.yaml with a Redis backend; the rest as rlsload embeds it.
redis_config() { # $1: extra redis settings
  {
    echo "backends:"
    echo "  - type: redis"
    echo "    url: $url"
    [ -n "$1" ] && echo "    $1"
    echo "breaker: {call_timeout: 1s}"
    echo "health_check: {timeout: 1s}"
    sed -n '/^domains:/,$p' cmd/rlsload/bench.yaml
  } > "$tmp/redis-$2.yaml"
  echo "$tmp/redis-$2.yaml"
}

run() { echo; echo "### $*"; bin/rlsload -server-bin bin/extauthz -duration "$dur" -rounds "$rounds" "$@"; }

# The embedded bench.yaml with traffic insight off.
insight_off_config() {
  { cat cmd/rlsload/bench.yaml; echo "insight: {disabled: true}"; } > "$tmp/insight-off.yaml"
  echo "$tmp/insight-off.yaml"
}

# Insight's cost: the same server, on and off, in one invocation.
insight_comparison() {
  off=$(insight_off_config)
  for api in rls authz; do
    run -api "$api" -concurrency 64 -targets server
    run -api "$api" -concurrency 64 -targets server -config "$off"
  done
}
if [ "${3:-}" = insight ]; then insight_comparison; exit 0; fi

run -api rls -concurrency 64,16
run -api authz -concurrency 64
run -api rls -concurrency 64,16 -keys 1
run -api rls -concurrency 64,16 -keys 100000
run -api rls -concurrency 64,16 -targets server -config "$(redis_config '' default)"
run -api rls -concurrency 64,16 -targets server -keys 1 -config "$(redis_config '' hot)"
run -api rls -concurrency 64,16 -targets server -keys 100000 -config "$(redis_config '' 100k)"
run -api rls -concurrency 64 -targets server -config "$(redis_config 'auto_pipeline: false' plain)"
insight_comparison
echo; echo "### Redis INFO commandstats after the Redis runs"
redis-cli -p "$port" info commandstats | grep -E 'cmdstat_' | tr -d '\r'
