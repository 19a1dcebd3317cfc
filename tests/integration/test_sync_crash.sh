#!/usr/bin/env bash
# kill -9 of `ferry sync` at random moments, over and over, against a cloud
# that ignores Idempotency-Key and sometimes commits without answering; then
# one sync to the end: the cloud must hold exactly the expected records, with
# no duplicate and no orphan. Latency widens the windows between a request
# leaving and its outcome being recorded, where a crash does the most harm.
#
# FERRY_CRASH_KILLS (default 50), FERRY_CRASH_SECONDS (default 100) and
# FERRY_CRASH_SEED (the kill timing, default 42) make
# it a longer soak: FERRY_CRASH_KILLS=2000 FERRY_CRASH_SECONDS=3600 bash ...
SYNC_LIB_ONLY=1 source "$(dirname "${BASH_SOURCE[0]}")/test_sync.sh"

want_kills=${FERRY_CRASH_KILLS:-50}
budget=${FERRY_CRASH_SECONDS:-100}

start_cloud crash --no-idempotency --latency-ms 40 --commit-then-drop-rate 0.05 \
  --fail-rate 0.05 --seed 5
D="$T/data"
C="$T/ferry.yaml"
S="$T/state.json"
write_config "$C" "$D" "$CLOUD/{customer}"
tool gen "$S" 1 300 0 >"$T/b.ndjson"
expect_status 0 "ingest 300 rows" "$FERRY" --config "$C" ingest acme "$T/b.ndjson"

kills=0 finished=0 round=0
RANDOM=${FERRY_CRASH_SEED:-42}
start=$SECONDS
while [ "$kills" -lt "$want_kills" ] && [ $((SECONDS - start)) -lt "$budget" ]; do
  round=$((round + 1))
  if [ $((round % 2)) -eq 0 ]; then # more work: new rows, changes, deletes
    tool gen "$S" $((round + 100)) 5 25 >"$T/more.ndjson"
    "$FERRY" --config "$C" ingest acme "$T/more.ndjson" >/dev/null 2>"$T/ingest.err" ||
      { fail "ingest in round $round"; cat "$T/ingest.err"; }
  fi
  "$FERRY" --config "$C" sync acme >/dev/null 2>"$T/sync.err" &
  pid=$!
  sleep "0.$(printf '%03d' $((RANDOM % 400)))"
  if kill -9 "$pid" 2>/dev/null; then kills=$((kills + 1)); else finished=$((finished + 1)); fi
  wait "$pid" 2>/dev/null
done
echo "# $round rounds in $((SECONDS - start)) s: $kills killed, $finished finished first"
check "ferry sync was killed at least $want_kills times" test "$kills" -ge "$want_kills"

expect_status 0 "a final sync completes" "$FERRY" --config "$C" sync acme
cloud_matches "after $kills kills: the cloud is as expected, no duplicate, no orphan" "$S"
expect_status 0 "status" "$FERRY" --config "$C" status acme
check "nothing pending or failed" grep -q 'pending *0 ' "$T/out"
finish
