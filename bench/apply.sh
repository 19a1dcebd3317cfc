#!/usr/bin/env bash
# Builds and runs bench/apply: the initial migration of 50,000 entities to a
# fresh ferry-cloudsim, next to wrk against the same server. Extra arguments
# go to bench_apply (--entities N --concurrency C --wrk-seconds S).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build=${FERRY_BUILD_DIR:-$root/build-bench}
command -v wrk >/dev/null || { echo "bench/apply.sh: needs wrk (scripts/deps.sh installs it)"; exit 1; }
cmake -S "$root" -B "$build" -DCMAKE_BUILD_TYPE=Release -DBUILD_TESTING=OFF >/dev/null
cmake --build "$build" -j"$(nproc)" --target bench_apply ferry-cloudsim >/dev/null
echo "$ $build/bench_apply $*"
"$build/bench_apply" "$@"
