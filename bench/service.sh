#!/usr/bin/env bash
# Builds ferryd and bench/service in Release and runs the service benchmark:
# POST -> cloud latency at a steady rate, then HTTP ingest throughput. Extra
# arguments go to bench_service (--customers N --rate N --seconds N --conns N
# --batch N --tseconds N --keep).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build=${FERRY_BUILD_DIR:-$root/build-bench}
cmake -S "$root" -B "$build" -DCMAKE_BUILD_TYPE=Release -DBUILD_TESTING=OFF >/dev/null
cmake --build "$build" -j"$(nproc)" --target bench_service ferryd >/dev/null
echo "$ $build/bench_service $build/ferryd $*"
"$build/bench_service" "$build/ferryd" "$@"
