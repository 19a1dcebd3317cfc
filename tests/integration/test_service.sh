#!/usr/bin/env bash
# ferryd against ferry-cloudsim on loopback: POSTed changes reach the cloud
# (checked record by record); an idle service sends nothing and burns no CPU;
# status/history match the CLI, which keeps working read-only; bad requests
# (malformed NDJSON, wrong content type, oversize, missing/wrong/foreign
# token, a stalled client) append nothing and the service keeps serving;
# rewind/resume through the admin endpoints roll the cloud back and forth;
# 50 customers ingesting at once all converge and none ever runs twice at
# once; a pull-mode feed is followed and resumed from its cursor after a
# restart; SIGTERM in the middle of a large apply records every call in
# flight and a restart converges with no duplicate, as does kill -9; SIGHUP
# with a new mapping blocks runs until a replay.
SYNC_LIB_ONLY=1 source "$(dirname "${BASH_SOURCE[0]}")/test_sync.sh"

export FERRY_ADMIN_TOKEN=admin-secret-1 ACME_TOKEN=acme-secret-2 BETA_TOKEN=beta-secret-3
ADMIN=(-H "Authorization: Bearer $FERRY_ADMIN_TOKEN")
NDJSON=(-H "Content-Type: application/x-ndjson")

# --- helpers -------------------------------------------------------------------

# A feed server for pull mode: answers batch N+1 (a file) after cursor N, with
# X-Ferry-Cursor N+1; with nothing new it holds the poll (at most 1 s) and
# answers empty. It logs the cursor of every poll.
cat >"$T/feed.js" <<'JS'
const http = require('http'), fs = require('fs');
const [dir, log] = process.argv.slice(2);
const srv = http.createServer((req, res) => {
  const u = new URL(req.url, 'http://x');
  const cursor = u.searchParams.get('cursor') || '';
  fs.appendFileSync(log, JSON.stringify({ cursor, wait: u.searchParams.get('wait') }) + '\n');
  const n = cursor === '' ? 0 : parseInt(cursor, 10), file = `${dir}/${n + 1}.ndjson`;
  if (fs.existsSync(file)) {
    res.writeHead(200, { 'Content-Type': 'application/x-ndjson', 'X-Ferry-Cursor': String(n + 1) });
    res.end(fs.readFileSync(file));
    return;
  }
  const t = setTimeout(() => { res.writeHead(200, { 'X-Ferry-Cursor': String(n) }); res.end(); }, 1000);
  res.on('close', () => clearTimeout(t));
});
srv.listen(0, '127.0.0.1', () => console.log('listening on 127.0.0.1:' + srv.address().port));
JS

# start_ferryd NAME [ferryd options]: sets FD_PID, FD_PORT, URL
start_ferryd() {
  local name=$1
  shift
  start_bg "$FERRYD" --config "$C" --client-timeout-ms 2000 --feed-wait 1 "$@" \
    >"$T/$name.out" 2>"$T/$name.err"
  FD_PID=$BG_PID
  FD_PORT=$(wait_port "$T/$name.out")
  URL=http://127.0.0.1:$FD_PORT
}
# stop_ferryd: SIGTERM, and the exit status in FD_RC
stop_ferryd() { kill -TERM "$FD_PID"; wait "$FD_PID"; FD_RC=$?; }

# post CUSTOMER FILE [curl options...]: HTTP status on stdout, body in $T/resp
post() {
  local cust=$1 file=$2
  shift 2
  curl -s -o "$T/resp" -w '%{http_code}' --data-binary @"$file" "$@" "$URL/v1/customers/$cust/changes"
}
ingest() { post "$1" "$2" "${ADMIN[@]}" "${NDJSON[@]}"; }
api() { curl -s "${ADMIN[@]}" "$@"; }
status_field() { api "$URL/v1/customers/$1/status" >"$T/st.json"; tool get "$T/st.json" "$2"; }

# wait_cloud DESC STATE CUSTOMER [SECONDS] [CLOUD_URL]: passes once the cloud's
# records of CUSTOMER are exactly the expected ones
wait_cloud() {
  local desc=$1 state=$2 cust=$3 secs=${4:-30} url=${5:-$CLOUD}
  local end=$((SECONDS + secs))
  while :; do
    curl -s "$url/_dump" >"$T/dump.json"
    if tool check "$state" "$T/dump.json" "/$cust" >"$T/check.out" 2>&1; then pass "$desc"; return 0; fi
    if [ "$SECONDS" -ge "$end" ]; then fail "$desc"; sed 's/^/    /' "$T/check.out" | head -5; return 1; fi
    sleep 0.2
  done
}
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
metric() { api "$URL/metrics" | awk -v m="$1" '$1 == m {print $2}'; }

# --- setup: clouds, feed, configuration ----------------------------------------
start_cloud main
MAIN=$CLOUD
start_cloud slow --latency-ms 20
SLOW=$CLOUD
CLOUD=$MAIN

mkdir -p "$T/feed"
start_bg node "$T/feed.js" "$T/feed" "$T/feed.log" >"$T/feed.out" 2>"$T/feed.err"
FEED=http://127.0.0.1:$(wait_port "$T/feed.out")
S_PULL="$T/s-pull.json"
tool gen "$S_PULL" 31 40 0 >"$T/feed/1.ndjson"
tool gen "$S_PULL" 32 10 20 >"$T/feed/2.ndjson"

D="$T/data"
C="$T/ferryd.yaml"
write_svc_config() { # MAPPING_FILE
  cat >"$C" <<YAML
mapping: $1
data: $D
cloud:
  base_url: "$MAIN/{customer}"
  concurrency: 8
  timeout_ms: 5000
  max_attempts: 30
service:
  listen: 127.0.0.1:0
  max_batch_bytes: 1048576
customers:
  acme:
    ingest_token_env: ACME_TOKEN
  beta:
    ingest_token_env: BETA_TOKEN
  big:
    base_url: "$SLOW/{customer}"
  pull:
    feed_url: "$FEED/changes?customer=pull"
  down:
    base_url: "http://127.0.0.1:1/{customer}"
YAML
}
write_svc_config "$MAPPING"

# --- start-up --------------------------------------------------------------------
expect_status 2 "refuses to start without an admin token" env -u FERRY_ADMIN_TOKEN "$FERRYD" --config "$C"
check "...naming the variable and --insecure" grep -q 'FERRY_ADMIN_TOKEN.*--insecure' "$T/err"
start_ferryd d1
check "prints 'listening on' with the real port" test -n "$FD_PORT"
check "writes DATA/ferryd.json with pid and address" \
  grep -q "{\"pid\":$FD_PID,\"listen\":\"127.0.0.1:$FD_PORT\"}" "$D/ferryd.json"
check "GET /healthz: 200 without a token" test "$(curl -s -o /dev/null -w '%{http_code}' "$URL/healthz")" = 200
check "GET /metrics needs the admin token" test "$(curl -s -o /dev/null -w '%{http_code}' "$URL/metrics")" = 401

# --- push ingest reaches the cloud --------------------------------------------------
S_ACME="$T/s-acme.json"
tool gen "$S_ACME" 1 300 0 >"$T/a1.ndjson"
check "POST 300 changes with the customer's ingest token: 200" \
  test "$(post acme "$T/a1.ndjson" -H "Authorization: Bearer $ACME_TOKEN" "${NDJSON[@]}")" = 200
check "...answering appended 300, head_seq 300" grep -q '"appended":300,"duplicates":0,"head_seq":300' "$T/resp"
check "re-sending the batch appends nothing" test "$(ingest acme "$T/a1.ndjson")" = 200
check "...all 300 are duplicates" grep -q '"appended":0,"duplicates":300,"head_seq":300' "$T/resp"
wait_cloud "the cloud gets the 600 records the changes map to" "$S_ACME" acme
tool gen "$S_ACME" 2 20 150 >"$T/a2.ndjson"
check "POST creates, updates and deletes" test "$(ingest acme "$T/a2.ndjson")" = 200
wait_cloud "the cloud follows (patches, deletes)" "$S_ACME" acme

# --- the CLI beside the service --------------------------------------------------------
expect_status 0 "ferry status works while ferryd runs" "$FERRY" --config "$C" status acme --json
api "$URL/v1/customers/acme/status" >"$T/st.json"
for f in head_seq projected_seq pending failed; do
  check "GET status $f matches ferry status --json" \
    test "$(tool get "$T/out" $f)" = "$(tool get "$T/st.json" $f)"
done
check "status has the service's state" test "$(tool get "$T/st.json" service.state)" = idle
"$FERRY" --config "$C" history acme --json >"$T/h-cli.ndjson" 2>/dev/null
api "$URL/v1/customers/acme/history" >"$T/h-api.ndjson"
check "GET history has as many records as ferry history --json ($(wc -l <"$T/h-cli.ndjson"))" \
  test "$(wc -l <"$T/h-api.ndjson")" -eq "$(wc -l <"$T/h-cli.ndjson")"
check "GET history?entity= filters" \
  test "$(api "$URL/v1/customers/acme/history?entity=contact/7" | grep -c '"key":"7"')" -ge 1
expect_status 3 "a mutating CLI command exits 3 while ferryd runs" "$FERRY" --config "$C" ingest acme "$T/a1.ndjson"
check "...saying it is ferryd and where it listens" grep -q "is ferryd, listening on 127.0.0.1:$FD_PORT" "$T/err"

# --- idle costs nothing ---------------------------------------------------------------
before=$(stat "$MAIN" requests.total)
t0=$(cpu_ticks "$FD_PID")
sleep 3
t1=$(cpu_ticks "$FD_PID")
check "3 s idle: the cloud sees no request" test "$(stat "$MAIN" requests.total)" -eq "$before"
check "3 s idle: ferryd used $((t1 - t0)) CPU ticks (at most 2)" test $((t1 - t0)) -le 2

# --- bad requests append nothing ----------------------------------------------------------
head0=$(status_field acme head_seq)
printf '%s\n' "$(head -1 "$T/a1.ndjson")" '{"table":"Contacts","key":1,"op":"upsert"' >"$T/bad.ndjson"
check "malformed NDJSON: 400" test "$(ingest acme "$T/bad.ndjson")" = 400
check "...listing the line" grep -q '"line":2' "$T/resp"
check "wrong content type: 415" \
  test "$(post acme "$T/a1.ndjson" "${ADMIN[@]}" -H 'Content-Type: text/plain')" = 415
tool gen "$T/s-huge.json" 7 6000 0 >"$T/huge.ndjson" # ~1.4 MB, over max_batch_bytes
code=$(ingest acme "$T/huge.ndjson")
check "over max_batch_bytes: 413 ($code)" test "$code" = 413
check "no token: 401" test "$(post acme "$T/a1.ndjson" "${NDJSON[@]}")" = 401
check "a wrong token: 401" test "$(post acme "$T/a1.ndjson" "${NDJSON[@]}" -H 'Authorization: Bearer nope')" = 401
check "another customer's ingest token: 403" \
  test "$(post acme "$T/a1.ndjson" "${NDJSON[@]}" -H "Authorization: Bearer $BETA_TOKEN")" = 403
check "an ingest token on an admin route: 403" test "$(curl -s -o /dev/null -w '%{http_code}' \
  -H "Authorization: Bearer $ACME_TOKEN" "$URL/v1/customers/acme/status")" = 403
check "headers over 64 KiB: 400" test "$(curl -s -o /dev/null -w '%{http_code}' "${ADMIN[@]}" \
  -H "X-Big: $(head -c 100000 /dev/zero | tr '\0' a)" "$URL/v1/customers/acme/status")" = 400
exec 3<>"/dev/tcp/127.0.0.1/$FD_PORT"
printf 'POST /v1/customers/acme/changes HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n{"tab' >&3
t0=$SECONDS
timeout 10 cat <&3 >/dev/null
check "a stalled client is disconnected (after $((SECONDS - t0)) s; timeout 2 s)" test $((SECONDS - t0)) -le 5
exec 3<&-
check "none of them appended anything" test "$(status_field acme head_seq)" = "$head0"
check "the service still serves" test "$(curl -s -o /dev/null -w '%{http_code}' "$URL/healthz")" = 200

# --- rewind and resume through the admin endpoints -------------------------------------------
check "POST rewind {to_seq: 0, hold: true}: 200" test "$(curl -s -o "$T/resp" -w '%{http_code}' "${ADMIN[@]}" \
  -d '{"to_seq":0,"hold":true}' "$URL/v1/customers/acme/rewind")" = 200
echo '{"rows":{}}' >"$T/s-empty.json"
wait_cloud "the held rewind rolls the cloud back to nothing" "$T/s-empty.json" acme
check "rewind with an unknown field: 400" test "$(curl -s -o /dev/null -w '%{http_code}' "${ADMIN[@]}" \
  -d '{"to_seq":0,"hodl":true}' "$URL/v1/customers/acme/rewind")" = 400
check "POST resume: 200" test "$(curl -s -o /dev/null -w '%{http_code}' "${ADMIN[@]}" -X POST \
  "$URL/v1/customers/acme/resume")" = 200
wait_cloud "resume brings the cloud back" "$S_ACME" acme

# --- 50 customers at once (and one whose cloud is down) ------------------------------------------
tool gen "$T/s-down.json" 5 5 0 >"$T/down.ndjson"
check "POST for a customer whose cloud is down: 200" test "$(ingest down "$T/down.ndjson")" = 200
for i in $(seq 50); do # the batches first: node takes a while to start
  tool gen "$T/s-c$i.json" "$i" 20 0 >"$T/c$i-1.ndjson"
  tool gen "$T/s-c$i.json" $((i + 100)) 5 15 >"$T/c$i-2.ndjson"
done
pids=()
for i in $(seq 50); do
  (ingest "c$i" "$T/c$i-1.ndjson" >"$T/c$i-1.code"; ingest "c$i" "$T/c$i-2.ndjson" >"$T/c$i-2.code") &
  pids+=($!)
done
wait "${pids[@]}"
ok=0
for i in $(seq 50); do [ "$(cat "$T/c$i-1.code")$(cat "$T/c$i-2.code")" = 200200 ] && ok=$((ok + 1)); done
check "50 customers x 2 concurrent POSTs: all 200 ($ok of 50)" test "$ok" -eq 50
conv=0
end=$((SECONDS + 60))
for i in $(seq 50); do
  while :; do
    curl -s "$MAIN/_dump" >"$T/dump.json"
    if tool check "$T/s-c$i.json" "$T/dump.json" "/c$i" >/dev/null 2>&1; then conv=$((conv + 1)); break; fi
    [ "$SECONDS" -ge "$end" ] && break
    sleep 0.2
  done
done
check "all 50 customers converged ($conv of 50)" test "$conv" -eq 50
check "ferry_customer_concurrent_runs_max is 1" test "$(metric ferry_customer_concurrent_runs_max)" = 1
check "...while the customer whose cloud is down still has its entities pending" \
  test "$(status_field down pending)" -gt 0 -a "$(status_field down service.state)" != idle
curl -s "$MAIN/_stats" >"$T/stats.json"
maxin=$(node -e 'const s=JSON.parse(require("fs").readFileSync(process.argv[1]));console.log(Math.max(...Object.values(s.accounts).map(a=>a.max_in_flight)))' "$T/stats.json")
check "the cloud never saw more than concurrency (8) calls of one customer at once ($maxin)" test "$maxin" -le 8

# --- pull mode -----------------------------------------------------------------------------------
wait_cloud "the feed's two batches reach the cloud" "$S_PULL" pull
tool gen "$S_PULL" 33 5 10 >"$T/feed/3.ndjson.tmp" && mv "$T/feed/3.ndjson.tmp" "$T/feed/3.ndjson"
wait_cloud "a third batch appearing later is picked up" "$S_PULL" pull
check "the feed was asked with wait=1" grep -q '"wait":"1"' "$T/feed.log"
check "status shows the feed's cursor" test "$(status_field pull service.feed.cursor)" = 3

# --- SIGTERM in the middle of a large apply -------------------------------------------------------
S_BIG="$T/s-big.json"
tool gen "$S_BIG" 41 800 0 >"$T/big1.ndjson"
check "POST 800 rows for a customer on a slow cloud (20 ms a call)" test "$(ingest big "$T/big1.ndjson")" = 200
for _ in $(seq 100); do [ "$(stat "$SLOW" records.total)" -ge 200 ] && break; sleep 0.1; done
t0=$SECONDS
stop_ferryd
check "SIGTERM mid-apply: exit 0 (after $((SECONDS - t0)) s)" test "$FD_RC" -eq 0
check "...with ferryd.json removed" test ! -e "$D/ferryd.json"
check "...logging the stop" grep -q '"msg":"stopping' "$T/d1.err"
recs=$(stat "$SLOW" records.total)
check "...part of the apply was done ($recs of 1600 records)" test "$recs" -gt 0 -a "$recs" -lt 1600
"$FERRY" --config "$C" history big --json >"$T/h-big.ndjson" 2>/dev/null
check "every call the cloud answered was recorded ($(wc -l <"$T/h-big.ndjson") recorded, $(stat "$SLOW" requests.total) requests)" \
  test "$(wc -l <"$T/h-big.ndjson")" -eq "$(stat "$SLOW" requests.total)"
check "the log has no error lines" test "$(grep '"level":"error"' "$T/d1.err" | grep -vc '"customer":"down"')" -eq 0
polls=$(wc -l <"$T/feed.log")
start_ferryd d2
check "restarted" test -n "$FD_PORT"
wait_cloud "after the restart the cloud converges, no duplicate" "$S_BIG" big 60 "$SLOW"
for _ in $(seq 50); do [ "$(wc -l <"$T/feed.log")" -gt "$polls" ] && break; sleep 0.1; done
check "the feed resumed from its cursor (3), not from the start" \
  grep -q '"cursor":"3"' <(sed -n "$((polls + 1))p" "$T/feed.log")

# --- kill -9 likewise -----------------------------------------------------------------------------
tool gen "$S_BIG" 42 300 400 >"$T/big2.ndjson"
check "POST more changes for big" test "$(ingest big "$T/big2.ndjson")" = 200
r0=$(stat "$SLOW" requests.total)
for _ in $(seq 100); do [ "$(stat "$SLOW" requests.total)" -ge $((r0 + 100)) ] && break; sleep 0.1; done
kill -9 "$FD_PID"
wait "$FD_PID" 2>/dev/null
start_ferryd d3
check "restarted after kill -9" test -n "$FD_PORT"
wait_cloud "after kill -9 the cloud converges, no duplicate" "$S_BIG" big 60 "$SLOW"
wait_cloud "the others are untouched" "$S_ACME" acme 5

# --- SIGHUP with a new mapping -------------------------------------------------------------------
sed 's/      first_name: FirstName/      first_name: FirstName\n      surname: Surname/' "$MAPPING" >"$T/mapping2.yaml"
write_svc_config "$T/mapping2.yaml"
kill -HUP "$FD_PID"
for _ in $(seq 50); do grep -q 'configuration reloaded' "$T/d3.err" && break; sleep 0.1; done
check "SIGHUP reloads; the log says the mapping changed" grep -q 'the mapping changed' "$T/d3.err"
check "status reports mapping_changed" test "$(status_field acme mapping_changed)" = true
before=$(stat "$MAIN" requests.total)
tool gen "$S_ACME" 3 0 5 >"$T/a3.ndjson"
check "ingest still works" test "$(ingest acme "$T/a3.ndjson")" = 200
sleep 1
check "...but the customer does not run: the cloud sees nothing" test "$(stat "$MAIN" requests.total)" -eq "$before"
check "...and status says it is blocked" test "$(status_field acme service.state)" = blocked
check "POST replay: 200" test "$(curl -s -o /dev/null -w '%{http_code}' "${ADMIN[@]}" -X POST "$URL/v1/customers/acme/replay")" = 200
for _ in $(seq 100); do
  curl -s "$MAIN/_dump" >"$T/dump.json"
  n=$(node -e 'const d=JSON.parse(require("fs").readFileSync(process.argv[1]));console.log((d["/acme/contacts"]||[]).filter(r=>"surname" in r).length)' "$T/dump.json")
  [ "$n" -gt 0 ] && [ "$(status_field acme pending)" = 0 ] && break
  sleep 0.2
done
check "after the replay every contact gets the new field ($n)" test "$n" -gt 0 -a "$(status_field acme pending)" = 0

stop_ferryd
check "a clean stop at the end: exit 0" test "$FD_RC" -eq 0
check "no error lines in the logs (but the unreachable cloud's)" \
  test "$(cat "$T"/d2.err "$T"/d3.err | grep '"level":"error"' | grep -vc '"customer":"down"')" -eq 0
check "no sanitizer report in any ferryd log" test "$(cat "$T"/d?.err | grep -c -E 'runtime error|Sanitizer')" -eq 0
check "every ferryd log line is a JSON object" \
  node -e 'for (const l of require("fs").readFileSync(0, "utf8").split("\n")) if (l) JSON.parse(l)' < <(cat "$T"/d?.err)
finish
