#!/usr/bin/env bash
# ferry ingest / log / status through the real binary on temp data dirs:
# idempotency, atomic batches, precise errors, crash safety, protoc-decodable
# events, the single-writer lock.
source "$(dirname "$0")/lib.sh"
D="$T/data"
F=("$FERRY" --data "$D")

# --- idempotent re-ingest ---------------------------------------------------
gen_changes a 1 500 >"$T/a.ndjson"
expect_status 0 "first ingest" "${F[@]}" ingest acme "$T/a.ndjson"
check "first ingest reports 500 appended, head 500" contains "$T/out" "appended 500, duplicates 0, rejected 0, head seq 500"
expect_status 0 "re-ingest of the same batch" "${F[@]}" ingest acme "$T/a.ndjson"
check "re-ingest appends nothing, all duplicates" contains "$T/out" "appended 0, duplicates 500, rejected 0, head seq 500"
expect_status 0 "ingest from stdin" "${F[@]}" ingest acme - < <(gen_changes a 490 510)
check "stdin batch: 10 new, 11 duplicates" contains "$T/out" "appended 10, duplicates 11, rejected 0, head seq 510"

# --- one invalid line in 10,000 --------------------------------------------
gen_changes big 1 10000 | awk 'NR == 7321 { sub(/"version":1/, "\"version\":0") } { print }' >"$T/bad.ndjson"
expect_status 2 "one bad line in 10,000 exits 2" "${F[@]}" ingest acme "$T/bad.ndjson"
check "the error names line 7321 and the field" contains "$T/err" "bad.ndjson:7321: version"
expect_status 0 "status after rejected batch" "${F[@]}" status acme
check "head seq unchanged by the rejected batch" grep -Eq "^head seq +510$" "$T/out"

# --- --skip-invalid -----------------------------------------------------------
expect_status 0 "--skip-invalid appends the valid ones" "${F[@]}" ingest acme "$T/bad.ndjson" --skip-invalid "$T/rejects.ndjson"
check "skip-invalid: 9,999 appended, 1 rejected" contains "$T/out" "appended 9999, duplicates 0, rejected 1, head seq 10509"
check "rejects file has the line, reason and input" \
  grep -q '"line":7321,"field":"version".*"input":"{\\"table' "$T/rejects.ndjson"

# --- each kind of bad input -------------------------------------------------
bad() { # description, line, expected text in the message
  printf '%s\n' "$2" >"$T/one.ndjson"
  expect_status 2 "rejects $1" "${F[@]}" ingest acme "$T/one.ndjson"
  check "message for $1 names line and problem" contains "$T/err" "$3"
}
bad "malformed JSON" '{"table":"T","key":1,' "one.ndjson:1:"
bad "an unknown field" '{"table":"T","key":1,"op":"upsert","version":1,"row":{},"colour":1}' "colour"
bad "a wrong type" '{"table":"T","key":1,"op":"upsert","version":"7","row":{}}' "version"
bad "a nested value" '{"table":"T","key":1,"op":"upsert","version":1,"row":{"A":{"b":1}}}' "row.A"
bad "a missing row on upsert" '{"table":"T","key":1,"op":"upsert","version":1}' "row"
bad "version 0" '{"table":"T","key":1,"op":"upsert","version":0,"row":{}}' "version"
bad "a negative version" '{"table":"T","key":1,"op":"delete","version":-3}' "version"
bad "a customer mismatch" '{"table":"T","key":1,"op":"delete","version":3,"customer":"other"}' "customer"
bad "an oversize key" "{\"table\":\"T\",\"key\":\"$(head -c 1100 /dev/zero | tr '\0' k)\",\"op\":\"delete\",\"version\":3}" "key"
bad "an oversize table name" "{\"table\":\"$(head -c 200 /dev/zero | tr '\0' t)\",\"key\":1,\"op\":\"delete\",\"version\":3}" "table"
printf '{"table":"T","key":"\xff\xfe","op":"delete","version":3}\n' >"$T/one.ndjson"
expect_status 2 "rejects invalid UTF-8" "${F[@]}" ingest acme "$T/one.ndjson"
check "message for invalid UTF-8 names line 1" contains "$T/err" "one.ndjson:1:"
expect_status 2 "rejects an unknown --format" "${F[@]}" ingest acme "$T/one.ndjson" --format xml
expect_status 2 "rejects an invalid customer id" "${F[@]}" ingest 'no/such' "$T/one.ndjson"
expect_status 1 "a missing file is a runtime failure" "${F[@]}" ingest acme "$T/missing.ndjson"
expect_status 0 "status after all the rejects" "${F[@]}" status acme
check "head seq unchanged by every rejected batch" grep -Eq "^head seq +10509$" "$T/out"

# --- log ---------------------------------------------------------------------
expect_status 0 "log with --from-seq and --limit" "${F[@]}" log acme --from-seq 2 --limit 2
check "log prints two events" test "$(wc -l <"$T/out")" -eq 2
check "log prints the stored fields" grep -q '^{"seq":2,"table":"Contacts","key":"2","op":"upsert","version":1,"id":"a-2","row":{"ContactID":2,.*"Score":2.5},"ingested_at":"20' "$T/out"
expect_status 0 "customers" "${F[@]}" customers --json
check "customers lists acme with its head" contains "$T/out" '{"customer":"acme","head_seq":10509}'

# --- events decode with stock protoc ------------------------------------------
ldb --db="$D/db" --column_family=events scan --hex --max_keys=1 2>/dev/null |
  awk '{ print substr($3, 3) }' | perl -ne 'chomp; print pack("H*", $_)' >"$T/ev.bin"
protoc --decode=ferry.v1.Event -I "$FERRY_SOURCE_DIR/proto" ferry/v1/event.proto <"$T/ev.bin" >"$T/ev.txt" 2>&1
check "stored event decodes with protoc --decode" grep -q 'table: "Contacts"' "$T/ev.txt"
check "decoded event has seq 1" grep -q '^seq: 1$' "$T/ev.txt"

# --- a second writer ------------------------------------------------------------
mkfifo "$T/fifo"
start_bg "${F[@]}" ingest acme "$T/fifo"
holder=$BG_PID
for _ in $(seq 50); do [ -s "$D/ferry.lock" ] && break; sleep 0.1; done
sleep 0.3
expect_status 3 "a second writer exits 3" "${F[@]}" ingest acme "$T/a.ndjson"
check "the error says in use by pid N" contains "$T/err" "in use by pid $holder"
expect_status 0 "read-only log works while a writer holds the dir" "${F[@]}" log acme --limit 1
exec 3>"$T/fifo"; exec 3>&-
wait "$holder"

# --- kill -9 during and right after ingests ------------------------------------------
K="$T/crash"
rounds=25
for r in $(seq 1 $rounds); do
  gen_changes "r$r" 1 20000 >"$T/batch.ndjson"
  "$FERRY" --data "$K" ingest acme "$T/batch.ndjson" >"$T/ack.$r" 2>/dev/null &
  pid=$!
  sleep "0.$((RANDOM % 40))"
  kill -9 "$pid" 2>/dev/null
  wait "$pid" 2>/dev/null
done
"$FERRY" --data "$K" log acme >"$T/crashlog" || fail "log after crashes"
check "no gap in seqs after kill -9" awk -F'"seq":' '{ split($2, a, ","); if (a[1] != NR) exit 1 }' "$T/crashlog"
acked_ok=1; partial=0
for r in $(seq 1 $rounds); do
  n=$(grep -c "\"id\":\"r$r-" "$T/crashlog")
  if [ "$n" -ne 0 ] && [ "$n" -ne 20000 ]; then partial=1; fi
  if grep -q appended "$T/ack.$r" && [ "$n" -ne 20000 ]; then acked_ok=0; fi
done
check "every acknowledged batch is whole after kill -9" test $acked_ok -eq 1
check "no batch is half there after kill -9" test $partial -eq 0
echo "# crash rounds: $(grep -l appended "$T"/ack.* | wc -l) of $rounds acknowledged"
expect_status 0 "ingest after the crashes works" "$FERRY" --data "$K" ingest acme "$T/a.ndjson"

finish
