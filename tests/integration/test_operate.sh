#!/usr/bin/env bash
# Operating ferry: backups and failed entities, from the CLI and from ferryd.
# `ferry backup DIR` writes a data directory of its own (same customers, same head) and
# refuses an existing DIR, a data directory with no data, and a data directory ferryd holds
# (pointing at POST /v1/backup, which does the same while ferryd runs, admin only, absolute
# new paths only). A restored backup syncs on with nothing to send. An entity the cloud
# refuses (413) is reported failed by ferryd's status; once the cloud takes it,
# POST .../retry-failed sends it and the cloud matches. A backup put back in place against a
# cloud that ignores Idempotency-Key creates nothing twice.
SYNC_LIB_ONLY=1 source "$(dirname "${BASH_SOURCE[0]}")/test_sync.sh"

export FERRY_ADMIN_TOKEN=operate-admin-$RANDOM
ADMIN=(-H "Authorization: Bearer $FERRY_ADMIN_TOKEN")
D="$T/data"
C="$T/ferry.yaml"
S="$T/state.json"
write_svc_config() { # BASE_URL
  write_config "$C" "$D" "$1"
  printf 'service:\n  listen: 127.0.0.1:0\n' >>"$C"
}
# api METHOD PATH [BODY]: HTTP status on stdout, body in $T/resp
api() {
  curl -s -o "$T/resp" -w '%{http_code}' -X "$1" "${ADMIN[@]}" ${3:+-d "$3"} "$URL$2"
}
# wait_status DESC JS_CONDITION: until ferryd's status of acme satisfies the condition on s
wait_status() {
  for _ in $(seq 150); do
    curl -s "${ADMIN[@]}" "$URL/v1/customers/acme/status" >"$T/st.json"
    if node -e "const s=JSON.parse(require('fs').readFileSync(process.argv[1]));process.exit(($2)?0:1)" \
      "$T/st.json" 2>/dev/null; then pass "$1"; return; fi
    sleep 0.2
  done
  fail "$1"
  sed 's/^/    /' "$T/st.json"
}

# --- the CLI ---------------------------------------------------------------------------------
start_cloud small --max-body 400 --state "$T/cloud-state.json"
write_svc_config "$CLOUD/{customer}"
tool gen "$S" 9 40 0 9 >"$T/r.ndjson" # row 9 gets a 600-byte Street: its address is too big
expect_status 2 "backup of a data directory with no data: exit 2" "$FERRY" --config "$C" backup "$T/b0"
check "...which is not created" test ! -e "$T/b0"
"$FERRY" --config "$C" ingest acme "$T/r.ndjson" >/dev/null
expect_status 1 "a sync with one refused entity exits 1" "$FERRY" --config "$C" sync acme
expect_status 0 "ferry backup DIR" "$FERRY" --config "$C" backup "$T/b1"
expect_status 0 "...a data directory of its own" "$FERRY" --data "$T/b1" status
check "...with the customer and its head" grep -q '^acme *41$' "$T/out"
expect_status 2 "backup into an existing directory: exit 2" "$FERRY" --config "$C" backup "$T/b1"
cp "$C" "$T/b1.yaml"
sed -i "s#^data: .*#data: $T/b1#" "$T/b1.yaml"
expect_status 1 "the backup's projection: the refused entity is still failed (exit 1)" \
  "$FERRY" --config "$T/b1.yaml" sync acme
check "...and nothing else is sent" contains "$T/out" "; 0 calls"

# --- ferryd ------------------------------------------------------------------------------------
start_bg "$FERRYD" --config "$C" >"$T/ferryd.out" 2>"$T/ferryd.err"
FD_PID=$BG_PID
URL=http://127.0.0.1:$(wait_port "$T/ferryd.out")
wait_status "ferryd reports the refused entity as failed" \
  's.failed === 1 && s.failed_entities[0].entity === "address" && s.failed_entities[0].status === 413'
expect_status 3 "ferry backup while ferryd runs: exit 3" "$FERRY" --config "$C" backup "$T/b2"
check "...pointing at POST /v1/backup" grep -q "POST $URL/v1/backup" "$T/err"
check "POST /v1/backup: 200" test "$(api POST /v1/backup "{\"dir\":\"$T/b2\"}")" = 200
check "...naming the directory" grep -q "\"dir\":\"$T/b2\"" "$T/resp"
expect_status 0 "...a data directory of its own" "$FERRY" --data "$T/b2" status
check "...with the customer and its head" grep -q '^acme *41$' "$T/out"
check "an existing directory: 400" test "$(api POST /v1/backup "{\"dir\":\"$T/b2\"}")" = 400
check "a relative path: 400" test "$(api POST /v1/backup '{"dir":"b3"}')" = 400
check "another body: 400" test "$(api POST /v1/backup '{"to":"/tmp/x"}')" = 400
check "without the admin token: 401" \
  test "$(curl -s -o /dev/null -w '%{http_code}' -X POST -d "{\"dir\":\"$T/b4\"}" "$URL/v1/backup")" = 401
check "...and nothing was written" test ! -e "$T/b3" -a ! -e "$T/b4"
check "GET /v1/backup: 405" test "$(api GET /v1/backup)" = 405

# The cloud now takes the big record; the run after a retry sends it.
stop_cloud
start_cloud big --max-body 100000 --state "$T/cloud-state.json"
write_svc_config "$CLOUD/{customer}"
kill -HUP "$FD_PID"
sleep 0.5
check "POST .../retry-failed: 200" test "$(api POST /v1/customers/acme/retry-failed)" = 200
check "...answering done retry-failed, retried 1" \
  grep -q '"done":"retry-failed".*"retried":1' "$T/resp"
wait_status "...then the entity is sent: nothing failed, nothing pending" \
  's.failed === 0 && s.pending === 0 && s.service.state === "idle"'
cloud_matches "the cloud matches, the retried entity included" "$S"
check "retry-failed with nothing failed: retried 0" \
  test "$(api POST /v1/customers/acme/retry-failed)" = 200 -a -n "$(grep '"retried":0' "$T/resp")"
check "retry-failed of a customer ferryd does not know: 404" \
  test "$(api POST /v1/customers/nobody/retry-failed)" = 404
check "retry-failed takes no body fields: 400" \
  test "$(api POST /v1/customers/acme/retry-failed '{"to_seq":1}')" = 400
kill -TERM "$FD_PID"
wait "$FD_PID"
check "ferryd stops cleanly (exit 0)" test $? -eq 0

# --- restoring a backup, against a cloud that ignores Idempotency-Key -------------------------
# The backup knows nothing of the records ferry makes after it. Restored, each create looks its
# record up by external key first, so nothing is created twice; a clean sync ends that.
stop_cloud
start_cloud noidem --no-idempotency
RD="$T/rdata" RC="$T/restore.yaml" RS="$T/restore-state.json"
write_config "$RC" "$RD" "$CLOUD/{customer}"
tool gen "$RS" 21 20 0 >"$T/before.ndjson"
"$FERRY" --config "$RC" ingest acme "$T/before.ndjson" >/dev/null
expect_status 0 "restore: a first sync" "$FERRY" --config "$RC" sync acme
expect_status 0 "restore: ferry backup" "$FERRY" --config "$RC" backup "$T/rb"
tool gen "$RS" 22 12 15 >"$T/after.ndjson" # new rows, edits and deletes after the backup
"$FERRY" --config "$RC" ingest acme "$T/after.ndjson" >/dev/null
expect_status 0 "restore: a sync after the backup" "$FERRY" --config "$RC" sync acme
cloud_matches "...brings the cloud up to date" "$RS"
expect_status 0 "the live data directory" "$FERRY" --config "$RC" status acme --json
check "...is not marked restored" contains "$T/out" '"restored":false'
rm -rf "$RD"
mv "$T/rb" "$RD"
expect_status 0 "the backup put in place of the data directory" "$FERRY" --config "$RC" status acme
check "...says it is restored" grep -q '^restored  *from a backup' "$T/out"
"$FERRY" --config "$RC" ingest acme "$T/after.ndjson" >/dev/null # what came since the backup
expect_status 0 "restored: a sync" "$FERRY" --config "$RC" sync acme
cloud_matches "...creates nothing twice: the cloud matches, no duplicate" "$RS"
check "...adopting the records made after the backup" grep -Eq 'adopted [1-9]' "$T/out"
expect_status 0 "after a clean sync" "$FERRY" --config "$RC" status acme --json
check "...creates post again without a lookup" contains "$T/out" '"restored":false'
finish
