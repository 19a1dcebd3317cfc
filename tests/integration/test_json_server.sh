#!/usr/bin/env bash
# ferry sync against json-server 0.17 (npm), a cloud ferry did not write: it
# ignores Idempotency-Key, makes integer ids, and closes idle keep-alive
# connections after 5 s. The cloud must converge to the expected records,
# with no duplicate, also when `ferry sync` is killed mid-run (then only the
# lookup by external key stands between a retried create and a second record).
#
# json-server is installed once into $FERRY_BUILD_DIR/npm; without npm (or the
# registry) the test is skipped, saying so.
SYNC_LIB_ONLY=1 source "$(dirname "${BASH_SOURCE[0]}")/test_sync.sh"

NPM_DIR="$FERRY_BUILD_DIR/npm"
JSON_SERVER="$NPM_DIR/node_modules/.bin/json-server"
if [ ! -x "$JSON_SERVER" ]; then
  if ! command -v npm >/dev/null ||
    ! npm install --prefix "$NPM_DIR" json-server@0.17 --no-audit --no-fund --silent \
      >"$T/npm.log" 2>&1; then
    echo "skipped: npm unavailable (could not install json-server@0.17)"
    sed 's/^/    /' "$T/npm.log" 2>/dev/null | tail -3
    exit 0
  fi
fi

port=$(node -e 'const s=require("net").createServer().listen(0,"127.0.0.1",()=>{console.log(s.address().port);s.close()})')
echo '{"contacts": [], "addresses": []}' >"$T/db.json"
start_bg "$JSON_SERVER" --host 127.0.0.1 --port "$port" --quiet "$T/db.json" >"$T/js.out" 2>&1
JS=http://127.0.0.1:$port
for _ in $(seq 100); do curl -sf "$JS/db" >/dev/null && break; sleep 0.1; done

# json_matches DESC STATE: json-server's /db, keyed like cloudsim's /_dump
json_matches() {
  curl -s "$JS/db" | node -e 'const d=JSON.parse(require("fs").readFileSync(0));const o={};for(const k in d)o["/"+k]=d[k];console.log(JSON.stringify(o))' >"$T/dump.json"
  if tool check "$2" "$T/dump.json" "" >"$T/check.out"; then pass "$1"; else
    fail "$1"; sed 's/^/    /' "$T/check.out"; fi
}

D="$T/data"
C="$T/ferry.yaml"
S="$T/state.json"
write_config "$C" "$D" "$JS"
tool gen "$S" 3 150 0 >"$T/b.ndjson"
expect_status 0 "ingest 150 rows" "$FERRY" --config "$C" ingest acme "$T/b.ndjson"
expect_status 0 "first sync to json-server" "$FERRY" --config "$C" sync acme
check "300 created in 300 calls" contains "$T/out" "created 300, patched 0, deleted 0, failed 0; 300 calls"
json_matches "json-server holds the 300 expected records" "$S"

tool gen "$S" 4 10 150 >"$T/c.ndjson"
"$FERRY" --config "$C" ingest acme "$T/c.ndjson" >/dev/null
expect_status 0 "sync creates, patches and deletes" "$FERRY" --config "$C" sync acme
json_matches "json-server converged after changes" "$S"

# kill -9 mid-run: creates in doubt must be found, not posted again
RANDOM=7
kills=0
for round in $(seq 12); do
  tool gen "$S" $((round + 10)) 15 20 >"$T/k.ndjson"
  "$FERRY" --config "$C" ingest acme "$T/k.ndjson" >/dev/null
  "$FERRY" --config "$C" sync acme >/dev/null 2>&1 &
  pid=$!
  sleep "0.$(printf '%03d' $((RANDOM % 150)))"
  kill -9 "$pid" 2>/dev/null && kills=$((kills + 1))
  wait "$pid" 2>/dev/null
done
echo "# killed $kills of 12 syncs"
expect_status 0 "a final sync completes" "$FERRY" --config "$C" sync acme
json_matches "after $kills kills: converged, no duplicate, no orphan" "$S"
finish
