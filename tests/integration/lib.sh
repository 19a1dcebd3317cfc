# Shared helpers for the integration tests (sourced). Each test runs the real
# binaries from $FERRY_BUILD_DIR in a fresh temp dir that is removed on exit,
# and prints "N passed, M failed" at the end.
set -uo pipefail

: "${FERRY_BUILD_DIR:?set FERRY_BUILD_DIR to the build directory}"
: "${FERRY_SOURCE_DIR:=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}"
FERRY="$FERRY_BUILD_DIR/ferry"
CLOUDSIM="$FERRY_BUILD_DIR/ferry-cloudsim"
FERRYD="$FERRY_BUILD_DIR/ferryd"
T=$(mktemp -d /tmp/ferry-it.XXXXXX)
PASSED=0
FAILED=0
BG_PIDS=()

cleanup() {
  for p in "${BG_PIDS[@]+"${BG_PIDS[@]}"}"; do kill -9 "$p" 2>/dev/null; done
  wait 2>/dev/null
  if [ -n "${FERRY_TEST_KEEP:-}" ]; then echo "# kept $T"; else rm -rf "$T"; fi
}
trap cleanup EXIT

pass() { PASSED=$((PASSED + 1)); echo "ok - $*"; }
fail() { FAILED=$((FAILED + 1)); echo "FAIL - $*"; }
# check DESCRIPTION COMMAND...: passes when the command succeeds
check() { local d=$1; shift; if "$@"; then pass "$d"; else fail "$d"; fi; }
finish() {
  echo "$PASSED passed, $FAILED failed"
  [ "$FAILED" -eq 0 ]
  exit $?
}

# expect_status CODE DESCRIPTION COMMAND...: runs COMMAND (stdout/stderr to $T/out, $T/err)
expect_status() {
  local want=$1 d=$2; shift 2
  "$@" >"$T/out" 2>"$T/err"
  local got=$?
  if [ "$got" -eq "$want" ]; then pass "$d"; else
    fail "$d (exit $got, wanted $want)"; sed 's/^/    /' "$T/err" | head -5
  fi
}

# contains FILE TEXT: the file contains the fixed string
contains() { grep -qF -- "$2" "$1"; }

# gen_changes PREFIX FROM TO [TABLE]: NDJSON upserts with ids PREFIX-i, ~200-byte rows
gen_changes() {
  awk -v p="$1" -v from="$2" -v to="$3" -v t="${4:-Contacts}" 'BEGIN {
    for (i = from; i <= to; i++)
      printf "{\"table\":\"%s\",\"key\":%d,\"op\":\"upsert\",\"version\":1,\"id\":\"%s-%d\",\"row\":{\"ContactID\":%d,\"FirstName\":\"Name%d\",\"Surname\":\"Surname%d\",\"Email\":\"person%d@example.com\",\"Street\":\"%d Long Street Name\",\"IsArchived\":false,\"Score\":%d.5}}\n", t, i, p, i, i, i, i, i, i, i
  }'
}

# wait_port FILE: the port of the "listening on 127.0.0.1:PORT" line a server prints there
# (ferry-cloudsim, ferryd); empty after 10 s without one
wait_port() {
  local port=""
  for _ in $(seq 200); do
    port=$(sed -n 's/^listening on 127\.0\.0\.1:\([0-9]*\)$/\1/p' "$1" 2>/dev/null)
    [ -n "$port" ] && break
    sleep 0.05
  done
  echo "$port"
}

# start_bg COMMAND...: runs in the background, remembered for cleanup; sets BG_PID
start_bg() { "$@" & BG_PID=$!; BG_PIDS+=("$BG_PID"); }
