#!/usr/bin/env bash
# bench/http_writes.sh: durable registrations/s and lookups/s over latticed's
# HTTP API, one daemon with a data directory (fsync on), the daemon pinned
# to CPU 0 and the load (bench/http_load.cpp) to CPU 1.
#
#   bench/http_writes.sh [SECONDS]          # default 5 s per workload
#   LATTICED_BASELINE=/path/to/old/latticed bench/http_writes.sh
#
# Prints one JSON object per line: {"binary", "workload", "connections",
# "requests", "errors", "per_second", "p50_ms", "p99_ms", ...}; with a
# baseline, each workload runs against both binaries in the same run.
set -euo pipefail
cd "$(dirname "$0")/.."
SECONDS_PER=${1:-5}
LATTICED=${LATTICED:-build/apps/latticed}
LOAD=${LATTICE_HTTP_LOAD:-build/bench/lattice_http_load}
BINARIES=("$LATTICED")
[[ -n "${LATTICED_BASELINE:-}" ]] && BINARIES=("$LATTICED_BASELINE" "$LATTICED")

pid=""
dir=""
cleanup() {
  [[ -n "$pid" ]] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null || true
  [[ -n "$dir" ]] && rm -rf "$dir"
}
trap cleanup EXIT

start_daemon() {  # $1: binary; sets pid, http
  dir=$(mktemp -d /tmp/lattice-bench-XXXXXX)
  taskset -c 0 "$1" --gossip 127.0.0.1:0 --http 127.0.0.1:0 --data-dir "$dir" --log-level warn \
    > "$dir/out" 2> "$dir/log" &
  pid=$!
  for _ in $(seq 100); do
    grep -q "latticed ready" "$dir/out" 2>/dev/null && break
    sleep 0.1
  done
  http=$(sed -n 's/.*http=\([^ ]*\).*/\1/p' "$dir/out")
  [[ -n "$http" ]] || { echo "latticed did not start: $(cat "$dir/log")" >&2; exit 1; }
}

stop_daemon() {
  kill "$pid" && wait "$pid" 2>/dev/null || true
  pid=""
  rm -rf "$dir"
  dir=""
}

label() {  # $1: binary, $2: JSON from http_load -> JSON with the binary
  python3 -c 'import json,sys; d=json.loads(sys.argv[2]); d["binary"]=sys.argv[1]; print(json.dumps(d))' "$1" "$2"
}

for binary in "${BINARIES[@]}"; do
  start_daemon "$binary"
  # Something to look up: a service of a few instances.
  taskset -c 1 "$LOAD" --target "$http" --workload register --connections 1 --seconds 0.01 --warmup 0 \
    --first 9000000 --service /bench/lookup > /dev/null
  label "$binary" "$(taskset -c 1 "$LOAD" --target "$http" --workload register --connections 1 --seconds "$SECONDS_PER")"
  label "$binary" "$(taskset -c 1 "$LOAD" --target "$http" --workload register --connections 64 --seconds "$SECONDS_PER" --first 1000000)"
  label "$binary" "$(taskset -c 1 "$LOAD" --target "$http" --workload lookup --connections 32 --seconds "$SECONDS_PER")"
  # Lookups while 64 writers keep the replica thread busy with commits.
  taskset -c 1 "$LOAD" --target "$http" --workload register --connections 64 --seconds "$((SECONDS_PER + 2))" \
    --warmup 0 --first 2000000 > /dev/null &
  writers=$!
  reads=$(taskset -c 1 "$LOAD" --target "$http" --workload lookup --connections 32 --seconds "$SECONDS_PER")
  wait "$writers" || true
  label "$binary" "$(python3 -c 'import json,sys; d=json.loads(sys.argv[1]); d["workload"]="lookup during 64 writers"; print(json.dumps(d))' "$reads")"
  stop_daemon
done
