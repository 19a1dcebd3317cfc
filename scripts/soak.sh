#!/usr/bin/env bash
# The long kill -9 soak of `ferry sync` (the normal suite runs 50 kills):
# kills `ferry sync` at random moments against a cloud that ignores
# idempotency keys and sometimes commits without answering, then checks the
# cloud holds exactly the expected records, no duplicate, no orphan.
#   scripts/soak.sh [KILLS] [SECONDS] [SEED]     (defaults 2000, 3600, 42)
# Needs a build: cmake -S . -B build-release -DCMAKE_BUILD_TYPE=Release && cmake --build build-release -j
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
export FERRY_BUILD_DIR=${FERRY_BUILD_DIR:-$root/build-release}
export FERRY_SOURCE_DIR=$root
export FERRY_CRASH_KILLS=${1:-2000} FERRY_CRASH_SECONDS=${2:-3600} FERRY_CRASH_SEED=${3:-42}
exec bash "$root/tests/integration/test_sync_crash.sh"
