#!/usr/bin/env bash
# redis-server instructions per call of each redisstore script (and of the
# alternatives BENCHMARKS.md compares them with), counted with valgrind's
# callgrind: independent of the machine's load, unlike CPU time.
# Usage: bash bench/redis-cost.sh [CALLS]   (default 3000; needs valgrind)
# Each line starts a redis-server under callgrind, warms it up with 300
# calls, counts the instructions of CALLS serial calls (one round trip
# each: the event loop and socket I/O included) and divides; the "merged"
# lines make the calls from 32 concurrent callers through the store's
# pipeline, which sends each batch's calls as one script call.
set -euo pipefail
cd "$(dirname "$0")/.."
calls="${1:-3000}"
command -v valgrind >/dev/null || { echo "bench/redis-cost.sh needs valgrind (apt-get install valgrind)" >&2; exit 1; }
go build -o bin/rlsload ./cmd/rlsload

cost() { # NAME rlsload-take-args...
  local name=$1; shift
  local d port vpid f total
  d=$(mktemp -d)
  port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
  valgrind --tool=callgrind --callgrind-out-file="$d/cg.out" redis-server --port "$port" --bind 127.0.0.1 --save "" --appendonly no --dir "$d" >/dev/null 2>&1 &
  vpid=$!
  until redis-cli -p "$port" ping >/dev/null 2>&1; do sleep 0.3; done
  bin/rlsload take -redis-addr "127.0.0.1:$port" -n 300 "$@"
  callgrind_control -z "$vpid" >/dev/null 2>&1
  bin/rlsload take -redis-addr "127.0.0.1:$port" -n "$calls" "$@"
  callgrind_control -d "$vpid" >/dev/null 2>&1
  redis-cli -p "$port" shutdown nosave >/dev/null 2>&1 || true
  wait "$vpid" || true
  f=$(ls "$d"/cg.out.* | sort | head -1)
  total=$(grep -E '^(summary|totals):' "$f" | head -1 | awk '{print $2}')
  printf '%-44s %7d instructions per call\n' "$name" $((total / calls))
  rm -rf "$d"
}

cost "PING (a round trip's floor)" -raw ping
cost "INCRBY + PEXPIRE NX, one pipeline" -raw incr
for alg in fixed_window sliding_window token_bucket; do
  cost "$alg: take.lua (general)" -algorithm "$alg" -general
  cost "$alg: one-request script" -algorithm "$alg"
  cost "$alg: the same, 32 callers (merged)" -algorithm "$alg" -callers 32
done
