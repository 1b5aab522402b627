#!/usr/bin/env bash
# Leased quotas on a hot key (issue 12): one key (rlsload -keys 1) on the
# memory backend, on Redis, and on Redis with rate_limit.lease, in one
# invocation. For each Redis run it prints the Redis script calls per
# decision: EVALSHA+EVAL calls (INFO commandstats) over the run, warm-up
# included, divided by the measured decisions (the rounds' req/s x
# duration), so the figure errs high. And each run's throughput against the
# memory run's.
# Usage: bash bench/lease.sh [DURATION] [ROUNDS] [CONCURRENCY]   (defaults 10s, 3, 64)
set -euo pipefail
cd "$(dirname "$0")/.."
dur="${1:-10s}"; rounds="${2:-3}"; conc="${3:-64}"
go build -o bin/extauthz ./cmd/extauthz
go build -o bin/rlsload ./cmd/rlsload

tmp=$(mktemp -d)
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
trap 'redis-cli -p "$port" shutdown nosave >/dev/null 2>&1 || true; rm -rf "$tmp"' EXIT
redis-server --port "$port" --bind 127.0.0.1 --save "" --appendonly no --daemonize yes --logfile "$tmp/redis.log" --dir "$tmp"
until redis-cli -p "$port" ping >/dev/null 2>&1; do sleep 0.1; done

# lease_config NAME BACKEND LEASE: the bench rules (limits that admit every
# request) on BACKEND (memory or redis), with LEASE added to each rule.
lease_config() {
  {
    if [ "$2" = redis ]; then
      echo "backends:"
      echo "  - type: redis"
      echo "    url: redis://127.0.0.1:$port/0"
      echo "breaker: {call_timeout: 1s}"
      echo "health_check: {timeout: 1s}"
    fi
    echo "domains:"
    echo "  - domain: bench"
    echo "    descriptors:"
    echo "      - key: remote_address"
    echo "        rate_limit: {unit: minute, requests_per_unit: 1000000000$3}"
  } > "$tmp/$1.yaml"
  echo "$tmp/$1.yaml"
}

script_calls() {
  redis-cli -p "$port" info commandstats | tr -d '\r' |
    python3 -c 'import sys, re; print(sum(int(m.group(1)) for m in re.finditer(r"^cmdstat_eval(?:sha)?:calls=(\d+)", sys.stdin.read(), re.M)))'
}

# run NAME BACKEND LEASE: one rlsload run of the server on one key; prints
# its table, and for Redis the script calls per decision.
declare -A rps
run() {
  local cfg before after
  cfg=$(lease_config "$1" "$2" "$3")
  echo; echo "### $1: $2${3:+ with lease}, one key, concurrency $conc"
  before=$(script_calls)
  bin/rlsload -server-bin bin/extauthz -targets server -keys 1 -concurrency "$conc" -duration "$dur" -rounds "$rounds" -config "$cfg" \
    > "$tmp/$1.out" 2> "$tmp/$1.err"
  after=$(script_calls)
  cat "$tmp/$1.out"
  rps[$1]=$(awk '$1 == "server" { print $3 }' "$tmp/$1.out")
  if [ "$2" = redis ]; then
    python3 - "$tmp/$1.err" "$dur" "$before" "$after" <<'EOF'
import re, sys
err, dur, before, after = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
secs = float(re.fullmatch(r"([\d.]+)s", dur).group(1)) if dur.endswith("s") and not dur.endswith("ms") else None
rates = [float(m.group(1)) for m in re.finditer(r"round \d+:\s+([\d.]+) req/s", open(err).read())]
if secs is None or not rates:
    print("redis calls per decision: unknown (give DURATION in seconds, e.g. 10s)")
else:
    decisions = sum(rates) * secs
    print(f"redis script calls: {after - before} for about {decisions:.0f} decisions = {(after - before) / decisions:.4f} per decision (warm-up calls included)")
EOF
  fi
}

run memory memory ""
run redis redis ""
run redis-lease redis ", lease: {fraction: 0.1}"
echo
for r in redis redis-lease; do
  python3 -c "print(f'$r: {${rps[$r]}:.0f} req/s = {${rps[$r]}/${rps[memory]}:.2f} x memory ({${rps[memory]}:.0f} req/s)')"
done
