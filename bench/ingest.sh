#!/usr/bin/env bash
# Ingest benchmark, both ways the issue asks for, in one invocation:
#   1. through the library (bench_ingest: 1,000,000 changes of ~200-byte rows
#      in synced batches of 1000, next to db_bench fillbatch --sync=1
#      --batch_size=1000 run in the same invocation, as a ratio);
#   2. through `ferry ingest` of a 1,000,000-line NDJSON file (one atomic
#      batch: parse, validate, dedup, append, sync), timed end to end.
# Usage: bench/ingest.sh [BUILD_DIR]   (a Release build; default build-release)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
B=${1:-$root/build-release}
N=${N:-1000000}
[ -x "$B/bench_ingest" ] && [ -x "$B/ferry" ] || {
  echo "build first: cmake -S $root -B $B -DCMAKE_BUILD_TYPE=Release && cmake --build $B -j" >&2
  exit 2
}
work=$(mktemp -d /tmp/ferry-bench-ingest.XXXXXX)
trap 'rm -rf "$work"' EXIT

echo "== library ingest vs db_bench (same invocation)"
"$B/bench_ingest" -n "$N"

echo "== ferry ingest of a $N-line NDJSON file"
awk -v n="$N" 'BEGIN { for (i = 1; i <= n; i++)
  printf "{\"table\":\"Contacts\",\"key\":%d,\"op\":\"upsert\",\"version\":1,\"row\":{\"ContactID\":%d,\"FirstName\":\"Name%d\",\"Surname\":\"Surname%d\",\"Email\":\"person%d@example.com\",\"Street\":\"%d Long Street Name\",\"IsArchived\":false,\"Score\":%d.5}}\n", i, i, i, i, i, i, i }' >"$work/changes.ndjson"
bytes=$(stat -c %s "$work/changes.ndjson")
t0=$(date +%s.%N)
"$B/ferry" --data "$work/data" ingest acme "$work/changes.ndjson"
t1=$(date +%s.%N)
awk -v n="$N" -v t0="$t0" -v t1="$t1" -v b="$bytes" 'BEGIN {
  s = t1 - t0; printf "ferry ingest: %d changes in %.2f s = %.0f changes/s (%.0f MB/s of NDJSON)\n", n, s, n / s, b / s / 1e6 }'
