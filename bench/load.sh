#!/usr/bin/env bash
# Loopback load tests behind BENCHMARKS.md. Each section runs rlsload against
# the no-op server (the ceiling) and extauthz in the same invocation.
# Usage: bash bench/load.sh [DURATION] [ROUNDS] [SECTIONS]   (defaults 10s, 3, all)
# The server runs with traffic insight on (its default). SECTIONS "insight"
# runs only the insight on/off comparison (memory backend, c=64); "pg" only
# memory, Redis and PostgreSQL at c=64,16 (the PostgreSQL comparison);
# "redis" only the Redis rows against the memory backend (each algorithm,
# 1 000 and 100 000 keys, c=64,16; a few minutes with `bash bench/load.sh
# 3s 1 redis`); "all" runs everything, PostgreSQL included.
# Every Redis row prints redis-server's CPU time, read/write system calls
# and commands (those its scripts run included) per decision, from
# /proc/<redis pid> and INFO over the measured time (rlsload -redis-addr),
# and every extauthz row the server process's CPU time and system calls.
# BASELINE_BIN=path/to/extauthz adds that build (e.g. main's) to every Redis
# row as target "baseline", on the same config, alternating with this one:
# an A/B of two builds in one run.
set -euo pipefail
cd "$(dirname "$0")/.."
dur="${1:-10s}"; rounds="${2:-3}"; sections="${3:-all}"
go build -o bin/extauthz ./cmd/extauthz
go build -o bin/rlsload ./cmd/rlsload

tmp=$(mktemp -d); trap 'redis-cli -p "$port" shutdown nosave >/dev/null 2>&1 || true; rm -rf "$tmp"' EXIT
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
redis-server --port "$port" --bind 127.0.0.1 --save "" --appendonly no --daemonize yes --logfile "$tmp/redis.log" --dir "$tmp"
until redis-cli -p "$port" ping >/dev/null 2>&1; do sleep 0.1; done
url="redis://127.0.0.1:$port/0"

# bench.yaml with a Redis backend; the rest as rlsload embeds it.
redis_config() { # $1: extra redis settings, $2: name, $3: default_algorithm (optional)
  {
    [ -n "${3:-}" ] && echo "default_algorithm: $3"
    echo "backends:"
    echo "  - type: redis"
    echo "    url: $url"
    echo "    timeouts: {read: 1s, write: 1s}" # a loaded machine must not trip the 100ms socket timeouts
    [ -n "$1" ] && echo "    $1"
    echo "breaker: {call_timeout: 1s}"
    echo "health_check: {timeout: 1s}"
    sed -n '/^domains:/,$p' cmd/rlsload/bench.yaml
  } > "$tmp/redis-$2.yaml"
  echo "$tmp/redis-$2.yaml"
}

run() { echo; echo "### $*"; bin/rlsload -server-bin bin/extauthz -duration "$dur" -rounds "$rounds" "$@"; }
# redis_run NAME EXTRA ALGORITHM rlsload-args...: the server on Redis
# beside the memory backend with the same algorithm, in one invocation.
redis_run() {
  local cfg; cfg=$(redis_config "$2" "$1" "$3"); local alg=$3; shift 3
  if [ -n "${BASELINE_BIN:-}" ]; then
    run -api rls -targets memory,baseline,server -baseline-bin "$BASELINE_BIN" -algorithm "$alg" -config "$cfg" -redis-addr "127.0.0.1:$port" "$@"
  else
    run -api rls -targets memory,server -algorithm "$alg" -config "$cfg" -redis-addr "127.0.0.1:$port" "$@"
  fi
}
redis_section() {
  for alg in fixed_window sliding_window token_bucket; do
    redis_run "$alg-1k" '' "$alg" -concurrency 64,16
    redis_run "$alg-100k" '' "$alg" -concurrency 64,16 -keys 100000
  done
}
if [ "$sections" = redis ]; then
  redis_section
  echo; echo "### Redis INFO commandstats after the Redis runs"
  redis-cli -p "$port" info commandstats | grep -E 'cmdstat_' | tr -d '\r'
  exit 0
fi

# The embedded bench.yaml with traffic insight off.
insight_off_config() {
  { cat cmd/rlsload/bench.yaml; echo "insight: {disabled: true}"; } > "$tmp/insight-off.yaml"
  echo "$tmp/insight-off.yaml"
}

# Insight's cost: the same server, on and off, in one invocation.
insight_comparison() { # on and off alternate run by run, so drift hits both alike
  off=$(insight_off_config)
  for api in rls authz; do
    for i in $(seq "$rounds"); do
      run -api "$api" -concurrency 64 -targets server -rounds 1
      run -api "$api" -concurrency 64 -targets server -rounds 1 -config "$off"
    done
  done
}
if [ "${3:-}" = insight ]; then insight_comparison; exit 0; fi

# PostgreSQL from the installed server binaries (as the postgres user when
# root), fsync on, synchronous_commit off (PG_SYNC=on to keep it on: each
# take() then waits for its WAL flush; off loses at most ~0.6 s of counts
# on a database crash, never corrupts them), track_functions=pl so that
# pg_stat_user_functions counts take() calls.
pg_start() {
  pgbin=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)
  pgport=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
  pgdir="$tmp/pg"; mkdir -p "$pgdir"
  as=(); if [ "$(id -u)" = 0 ]; then chown postgres "$pgdir" "$tmp"; chmod 755 "$tmp"; as=(runuser -u postgres --); fi
  "${as[@]}" "$pgbin/initdb" -D "$pgdir/data" -U postgres -A trust >/dev/null
  "${as[@]}" "$pgbin/pg_ctl" -D "$pgdir/data" -l "$pgdir/log" -w -o "-p $pgport -k $pgdir -c listen_addresses=127.0.0.1 -c max_connections=200 -c track_functions=pl -c synchronous_commit=${PG_SYNC:-off}" start >/dev/null
  dsn="postgres://postgres@127.0.0.1:$pgport/postgres?sslmode=disable"
  pgpid=$(head -1 "$pgdir/data/postmaster.pid")
}
pg_stop() { [ -n "${pgbin:-}" ] && "${as[@]}" "$pgbin/pg_ctl" -D "$pgdir/data" -m fast stop >/dev/null 2>&1 || true; }
pg_config() { # $1: name
  {
    echo "backends:"
    echo "  - type: postgres"
    echo "    dsn: \"$dsn\""
    echo "    call_timeout: 1s"
    echo "    statement_timeout: 1s"
    echo "    max_conns: 16"
    echo "breaker: {call_timeout: 1s}"
    echo "health_check: {timeout: 1s}"
    sed -n '/^domains:/,$p' cmd/rlsload/bench.yaml
  } > "$tmp/pg-$1.yaml"
  echo "$tmp/pg-$1.yaml"
}
# pg_cpu_ticks: user+system clock ticks of the postmaster, of its children
# that exited (reaped: its cutime+cstime) and of those still running.
pg_cpu_ticks() {
  local t p
  t=$(awk '{print $14 + $15 + $16 + $17}' "/proc/$pgpid/stat")
  for p in $(pgrep -P "$pgpid"); do
    [ -r "/proc/$p/stat" ] && t=$((t + $(awk '{print $14 + $15}' "/proc/$p/stat")))
  done
  echo "$t"
}
pg_calls() { psql_ -tAc "select coalesce(sum(calls),0) from pg_stat_user_functions where funcname in ('take', 'take_one')"; }
psql_() { "$pgbin/psql" -h 127.0.0.1 -p "$pgport" -U postgres -d postgres "$@"; }
pg_run() { # rlsload args; prints PostgreSQL CPU per take() call
  local cfg; cfg=$(pg_config "$1"); shift
  bin/extauthz migrate --config "$cfg"
  local t0 c0 t1 c1
  t0=$(pg_cpu_ticks); c0=$(pg_calls)
  run -api rls -targets server -config "$cfg" "$@"
  t1=$(pg_cpu_ticks); c1=$(pg_calls)
  python3 -c "import os; hz=os.sysconf('SC_CLK_TCK'); d=$c1-$c0; print(f'postgres CPU: {($t1-$t0)/hz:.2f}s for {d} take() calls = {($t1-$t0)/hz/max(d,1)*1e6:.1f} us per decision (all postgres processes, warm-up included)')"
}
trap 'pg_stop; redis-cli -p "$port" shutdown nosave >/dev/null 2>&1 || true; rm -rf "$tmp"' EXIT

if [ "$sections" = pg ]; then
  pg_start
  run -api rls -concurrency 64,16
  run -api rls -concurrency 64,16 -targets server -config "$(redis_config '' default)"
  pg_run default -concurrency 64,16
  exit 0
fi

run -api rls -concurrency 64,16
run -api authz -concurrency 64
run -api rls -concurrency 64,16 -keys 1
run -api rls -concurrency 64,16 -keys 100000
redis_section
redis_run hot '' fixed_window -concurrency 64,16 -keys 1
redis_run plain 'auto_pipeline: false' fixed_window -concurrency 64
insight_comparison
echo; echo "### Redis INFO commandstats after the Redis runs"
redis-cli -p "$port" info commandstats | grep -E 'cmdstat_' | tr -d '\r'
pg_start
pg_run default -concurrency 64,16
pg_run hot -concurrency 64,16 -keys 1

# Leased quotas on a hot key against memory and Redis (bench/lease.sh, on its own redis-server).
bash bench/lease.sh "$dur" "$rounds"
