#!/usr/bin/env bash
# Integration test of ferry-cloudsim, the reference cloud API: starts the real binary on loopback
# (port 0) and drives every route, idempotency, auth, account isolation, the state file across a
# restart and each fault flag with curl. Every server is stopped with SIGTERM and must exit 0, so
# under AddressSanitizer a leak at shutdown fails the test too.
#
# Run by ctest with FERRY_BUILD_DIR set; needs only bash, curl and coreutils.
set -u

bin=${FERRY_BUILD_DIR:?FERRY_BUILD_DIR must point at the build directory}/ferry-cloudsim
[ -x "$bin" ] || { echo "FAIL: no binary at $bin"; exit 1; }
work=$(mktemp -d)
pids=()
passed=0

cleanup() {
  local p
  for p in "${pids[@]}"; do kill -KILL "$p" 2>/dev/null; done
  rm -rf "$work"
}
trap cleanup EXIT

fail() {
  echo "FAIL: $*" >&2
  echo "$passed passed, 1 failed"
  exit 1
}
ok() {
  passed=$((passed + 1))
  echo "ok $passed - $1"
}

# start NAME [options...]: runs a server, sets URL and PID.
start() {
  local name=$1 _
  shift
  "$bin" --listen 127.0.0.1:0 "$@" >"$work/$name.out" 2>"$work/$name.err" &
  PID=$!
  pids+=("$PID")
  for _ in $(seq 200); do
    grep -q '^listening on ' "$work/$name.out" 2>/dev/null && break
    kill -0 "$PID" 2>/dev/null || break
    sleep 0.05
  done
  local port
  port=$(sed -n 's/^listening on 127\.0\.0\.1:\([0-9][0-9]*\)$/\1/p' "$work/$name.out")
  [ -n "$port" ] || fail "$name did not start: $(cat "$work/$name.err")"
  URL=http://127.0.0.1:$port
}

# stop PID NAME [signal]: the server must exit 0 and leave no sanitizer report.
stop() {
  local pid=$1 name=$2 sig=${3:-TERM} rc
  kill -"$sig" "$pid"
  wait "$pid"
  rc=$?
  [ "$rc" -eq 0 ] || fail "$name exited $rc after SIG$sig: $(cat "$work/$name.err")"
  ! grep -q 'Sanitizer\|runtime error' "$work/$name.err" || fail "$name: $(cat "$work/$name.err")"
}

# call METHOD PATH BODY [curl args...]: sets STATUS, BODY, HEADERS and CURL_RC.
call() {
  local method=$1 path=$2 data=$3
  shift 3
  local args=(-s -X "$method" -o "$work/body" -D "$work/headers" -w '%{http_code}' "$@")
  [ -n "$data" ] && args+=(-H 'Content-Type: application/json' --data-binary "$data")
  rm -f "$work/body" "$work/headers"
  STATUS=$(curl "${args[@]}" "$URL$path")
  CURL_RC=$?
  BODY=$(cat "$work/body" 2>/dev/null)
  HEADERS=$(tr -d '\r' <"$work/headers" 2>/dev/null)
}

# expect DESCRIPTION STATUS [BODY]: checks the last call.
expect() {
  [ "$STATUS" = "$2" ] || fail "$1: status $STATUS, expected $2 (body: $BODY)"
  if [ $# -ge 3 ]; then [ "$BODY" = "$3" ] || fail "$1: body $BODY, expected $3"; fi
  ok "$1"
}

has_header() { printf '%s\n' "$HEADERS" | grep -qi "^$1\$"; }

# ---- records ------------------------------------------------------------------------------
start main
call POST /x/contacts '{"name":"Ann","legacy_key":"contact/1"}'
expect "create" 201 '{"name":"Ann","legacy_key":"contact/1","id":1}'
call POST /x/contacts '{"name":"Bob","legacy_key":"contact/2","age":42,"id":"ignored"}'
expect "create gives the next id, ignoring a client id" 201 \
  '{"name":"Bob","legacy_key":"contact/2","age":42,"id":2}'
call GET /x/contacts/1 ''
expect "get by id" 200 '{"name":"Ann","legacy_key":"contact/1","id":1}'
call GET '/x/contacts?legacy_key=contact%2F2' ''
expect "find by external key" 200 '[{"name":"Bob","legacy_key":"contact/2","age":42,"id":2}]'
call GET '/x/contacts?legacy_key=contact/9' ''
expect "find with no match" 200 '[]'
call GET '/x/contacts?age=42&name=Bob' ''
expect "find by a number rendered as text, two conditions" 200 \
  '[{"name":"Bob","legacy_key":"contact/2","age":42,"id":2}]'
call GET '/x/contacts?age=42&name=Ann' ''
expect "all conditions must hold" 200 '[]'
call GET /x/contacts ''
expect "list" 200 \
  '[{"name":"Ann","legacy_key":"contact/1","id":1},{"name":"Bob","legacy_key":"contact/2","age":42,"id":2}]'
call GET /x/contacts/ ''
expect "a trailing slash names the same collection" 200 \
  '[{"name":"Ann","legacy_key":"contact/1","id":1},{"name":"Bob","legacy_key":"contact/2","age":42,"id":2}]'
call PATCH /x/contacts/1 '{"name":"Anne","legacy_key":"contact/1b","id":99}'
expect "patch merges and keeps the id" 200 '{"name":"Anne","legacy_key":"contact/1b","id":1}'
call GET '/x/contacts?legacy_key=contact%2F1' ''
expect "index forgets the old value" 200 '[]'
call GET '/x/contacts?legacy_key=contact/1b' ''
expect "index knows the new value" 200 '[{"name":"Anne","legacy_key":"contact/1b","id":1}]'
call PUT /x/contacts/2 '{"name":"Bo"}'
expect "put replaces and keeps the id" 200 '{"name":"Bo","id":2}'
call GET '/x/contacts?legacy_key=contact/2' ''
expect "a replaced record leaves the index" 200 '[]'
call DELETE /x/contacts/2 ''
expect "delete" 200 '{}'
call GET /x/contacts/2 ''
expect "get after delete" 404
call DELETE /x/contacts/2 ''
expect "delete again" 404
call PATCH /x/contacts/77 '{"a":1}'
expect "patch a missing record" 404
call GET /x/contacts/999 ''
expect "get a missing record" 404
call POST /x/contacts '{"name":'
expect "malformed JSON" 400
call POST /x/contacts '[1,2]'
expect "a body that is not an object" 400
call GET /never/written ''
expect "an unknown collection is empty" 200 '[]'
call DELETE /toplevel ''
expect "delete on a top-level path" 405
call POST /x/contacts '{"n":3}'
expect "ids are not reused after a delete" 201 '{"n":3,"id":3}'

# ---- accounts ------------------------------------------------------------------------------
call POST /accounts/77/contacts '{"who":"77"}'
expect "account 77 gets id 1" 201 '{"who":"77","id":1}'
call POST /accounts/78/contacts '{"who":"78"}'
expect "account 78 gets its own id 1" 201 '{"who":"78","id":1}'
call GET /accounts/77/contacts ''
expect "accounts do not see each other" 200 '[{"who":"77","id":1}]'
call GET /accounts/78/contacts/1 ''
expect "record of account 78" 200 '{"who":"78","id":1}'

# ---- idempotency ---------------------------------------------------------------------------
call POST /x/deals '{"v":1}' -H 'Idempotency-Key: k-1'
expect "first idempotent create" 201 '{"v":1,"id":1}'
has_header 'Idempotent-Replayed: true' && fail "a first request is not a replay"
call POST /x/deals '{"v":1}' -H 'Idempotency-Key: k-1'
expect "replay gives the stored answer" 201 '{"v":1,"id":1}'
has_header 'Idempotent-Replayed: true' || fail "replay lacks Idempotent-Replayed: $HEADERS"
ok "replay carries Idempotent-Replayed: true"
call GET /x/deals ''
expect "a replay creates nothing" 200 '[{"v":1,"id":1}]'
call POST /x/deals '{"v":2}' -H 'Idempotency-Key: k-1'
expect "same key, different body" 422
call PATCH /x/deals/1 '{"v":1}' -H 'Idempotency-Key: k-1'
expect "same key, different method and path" 422
call POST /y/deals '{"v":1}' -H 'Idempotency-Key: k-1'
expect "keys are scoped by account" 201 '{"v":1,"id":1}'
call DELETE /x/deals/1 '' -H 'Idempotency-Key: d-1'
expect "idempotent delete" 200 '{}'
call DELETE /x/deals/1 '' -H 'Idempotency-Key: d-1'
expect "a replayed delete answers as the first did" 200 '{}'

# ---- statistics and reset ------------------------------------------------------------------
call POST /_reset ''
expect "reset" 200 '{}'
call GET /_dump ''
expect "dump after reset" 200 '{}'
call POST /s/items '{"a":1}'
call POST /s/items '{"a":2}'
call GET '/s/items?a=2' ''
call GET /s/items/9 ''
call GET /_stats ''
expect "stats answer" 200
case $BODY in
*'"requests":{"total":4,"by_method":{"GET":2,"POST":2},"by_status":{"200":1,"201":2,"404":1}}'*) ;;
*) fail "stats request counts: $BODY" ;;
esac
case $BODY in *'"records":{"total":2,"by_collection":{"/s/items":2}}'*) ;;
*) fail "stats record counts: $BODY" ;; esac
case $BODY in *'"accounts":{"/s":{"in_flight":0,"max_in_flight":1}}'*) ;;
*) fail "stats accounts: $BODY" ;; esac
ok "stats count requests by method and status, records by collection"
call GET /_dump ''
expect "dump" 200 '{"/s/items":[{"a":1,"id":1},{"a":2,"id":2}]}'
before=$(curl -s "$URL/_stats" | grep -o '"connections_accepted":[0-9]*' | cut -d: -f2)
curl -s -o /dev/null -o /dev/null "$URL/s/items/1" "$URL/s/items/2"
after=$(curl -s "$URL/_stats" | grep -o '"connections_accepted":[0-9]*' | cut -d: -f2)
[ $((after - before)) -eq 2 ] || fail "keep-alive: two calls in one curl took $((after - before - 1)) connections"
ok "keep-alive: two calls share one connection"
stop "$PID" main

# ---- options -------------------------------------------------------------------------------
start uuid --ids uuid --id-field uid
call POST /x/contacts '{"name":"U"}'
[ "$STATUS" = 201 ] || fail "uuid create: $STATUS $BODY"
uid=$(printf '%s' "$BODY" | sed -n 's/.*"uid":"\([0-9a-f-]*\)".*/\1/p')
[[ $uid =~ ^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$ ]] ||
  fail "not a v4 uuid in uid: $BODY"
ok "--ids uuid --id-field uid"
call GET "/x/contacts/$uid" ''
expect "get by uuid" 200 "{\"name\":\"U\",\"uid\":\"$uid\"}"
stop "$PID" uuid

start noidem --no-idempotency
call POST /x/c '{"v":1}' -H 'Idempotency-Key: k'
call POST /x/c '{"v":1}' -H 'Idempotency-Key: k'
expect "--no-idempotency creates again" 201 '{"v":1,"id":2}'
has_header 'Idempotent-Replayed: true' && fail "--no-idempotency replayed"
stop "$PID" noidem INT
ok "SIGINT exits cleanly"

export CLOUDSIM_TEST_TOKEN=s3cr3t-value
start auth --token-env CLOUDSIM_TEST_TOKEN --verbose
call POST /x/c '{"v":1}'
expect "no token" 401
has_header 'WWW-Authenticate: Bearer' || fail "401 without WWW-Authenticate"
call POST /x/c '{"v":1}' -H 'Authorization: Bearer wrong'
expect "wrong token" 401
call POST /x/c '{"v":1}' -H "Authorization: Bearer $CLOUDSIM_TEST_TOKEN"
expect "right token" 201 '{"v":1,"id":1}'
call GET /_stats ''
expect "admin routes need no token" 200
stop "$PID" auth
grep -q 'POST /x/c 201' "$work/auth.err" || fail "--verbose did not log: $(cat "$work/auth.err")"
! grep -q "$CLOUDSIM_TEST_TOKEN" "$work/auth.out" "$work/auth.err" || fail "the token was printed"
ok "--verbose logs requests and never the token"
unset CLOUDSIM_TEST_TOKEN
"$bin" --listen 127.0.0.1:0 --token-env CLOUDSIM_UNSET_VARIABLE >/dev/null 2>&1
[ $? -eq 2 ] || fail "an unset --token-env variable must be a usage error"
ok "unset token variable refused"

start small --max-body 64
call POST /x/c "{\"pad\":\"$(printf '%0200d' 0)\"}"
expect "a body over --max-body" 413
stop "$PID" small

for bad in "--bogus" "--fail-rate 2" "--fail-rate 0.6 --drop-rate 0.6" "--ids serial" "--latency-ms x"; do
  # shellcheck disable=SC2086
  "$bin" --listen 127.0.0.1:0 $bad >/dev/null 2>&1
  [ $? -eq 2 ] || fail "'$bad' must exit 2"
done
ok "bad options exit 2"

# ---- state file ----------------------------------------------------------------------------
state=$work/state.json
start state1 --state "$state"
call POST /a/1/c '{"v":"one"}'
call POST /a/1/c '{"v":"two","legacy_key":"c/2"}' -H 'Idempotency-Key: s-1'
expect "create before restart" 201 '{"v":"two","legacy_key":"c/2","id":2}'
stop "$PID" state1
[ -s "$state" ] || fail "no state file after SIGTERM"
compgen -G "$state.tmp.*" >/dev/null && fail "a temporary state file was left behind"
ok "state saved on SIGTERM"
start state2 --state "$state"
call GET /a/1/c ''
expect "records survive a restart" 200 '[{"v":"one","id":1},{"v":"two","legacy_key":"c/2","id":2}]'
call GET '/a/1/c?legacy_key=c/2' ''
expect "find works on loaded records" 200 '[{"v":"two","legacy_key":"c/2","id":2}]'
call POST /a/1/c '{"v":"two","legacy_key":"c/2"}' -H 'Idempotency-Key: s-1'
expect "idempotency keys survive a restart" 201 '{"v":"two","legacy_key":"c/2","id":2}'
call POST /a/1/c '{"v":"three"}'
expect "ids continue after a restart" 201 '{"v":"three","id":3}'
stop "$PID" state2
start periodic --state "$work/periodic.json" --save-every 1
call POST /p/c '{"v":1}'
for _ in $(seq 40); do [ -s "$work/periodic.json" ] && break; sleep 0.05; done
grep -q '"/p/c"' "$work/periodic.json" 2>/dev/null || fail "--save-every 1 saved nothing"
ok "--save-every saves while running"
stop "$PID" periodic
echo 'not json' >"$work/bad.json"
"$bin" --listen 127.0.0.1:0 --state "$work/bad.json" >/dev/null 2>&1
[ $? -eq 1 ] || fail "a corrupt state file must stop start-up"
ok "corrupt state refused"

# ---- faults --------------------------------------------------------------------------------
start fail --fail-rate 1
call POST /x/c '{"v":1}'
[ "$STATUS" = 500 ] || [ "$STATUS" = 503 ] || fail "--fail-rate 1 answered $STATUS"
ok "--fail-rate 1 answers 500/503"
call GET /_dump ''
expect "a failed request does nothing; admin routes never fail" 200 '{}'
stop "$PID" fail

start throttle --throttle-rate 1 --retry-after 7
call GET /x/c ''
expect "--throttle-rate 1" 429
has_header 'Retry-After: 7' || fail "no Retry-After: 7 in $HEADERS"
ok "--retry-after 7"
stop "$PID" throttle
start throttle0 --throttle-rate 1 --retry-after 0
call GET /x/c ''
has_header 'Retry-After: 0' || fail "no Retry-After: 0 in $HEADERS"
ok "--retry-after 0"
stop "$PID" throttle0

start drop --drop-rate 1 --latency-ms 50
call POST /x/c '{"v":1}'
[ "$CURL_RC" -ne 0 ] || fail "--drop-rate 1: curl got an answer ($STATUS)"
ok "--drop-rate 1 closes without an answer"
call GET /_dump ''
expect "a dropped request does nothing" 200 '{}'
stop "$PID" drop

start ctd --commit-then-drop-rate 1
call POST /x/c '{"v":1}' -H 'Idempotency-Key: ctd-1'
[ "$CURL_RC" -ne 0 ] || fail "--commit-then-drop-rate 1: curl got an answer ($STATUS)"
ok "--commit-then-drop-rate 1 closes without an answer"
call GET /_dump ''
expect "... but the record exists" 200 '{"/x/c":[{"v":1,"id":1}]}'
call GET /_stats ''
case $BODY in *'"committed_then_dropped":1'*) ;; *) fail "stats: $BODY" ;; esac
ok "stats count the commit-then-drop"
stop "$PID" ctd

# 1.5 s of latency leaves slow CI machines ample time to get all clients in at once.
start slow --latency-ms 1500
t0=$(date +%s%N)
call GET /x/c ''
t1=$(date +%s%N)
expect "--latency-ms answers" 200 '[]'
[ $(((t1 - t0) / 1000000)) -ge 1450 ] || fail "--latency-ms 1500 answered in $(((t1 - t0) / 1000000)) ms"
ok "--latency-ms delays the answer"
clients=()
for _ in 1 2 3; do
  curl -s -o /dev/null "$URL/acct/1/c" &
  clients+=($!)
done
curl -s -o /dev/null "$URL/acct/2/c" &
clients+=($!)
for _ in $(seq 50); do # until all four are in flight (1 s at most)
  call GET /_stats ''
  case $BODY in *'"/acct/1":{"in_flight":3,'*'"/acct/2":{"in_flight":1,'*) break ;; esac
  sleep 0.02
done
t0=$(date +%s%N)
call GET /_stats ''
t1=$(date +%s%N)
[ $(((t1 - t0) / 1000000)) -lt 1000 ] || fail "/_stats was delayed by --latency-ms"
# the maximum is what matters: on a loaded machine the clients may already be done
printf '%s' "$BODY" | grep -Eq '"/acct/1":\{"in_flight":[0-9]+,"max_in_flight":3\}' ||
  fail "in-flight per account: $BODY"
printf '%s' "$BODY" | grep -Eq '"/acct/2":\{"in_flight":[0-9]+,"max_in_flight":1\}' ||
  fail "in-flight per account: $BODY"
wait "${clients[@]}"
call GET /_stats ''
case $BODY in *'"/acct/1":{"in_flight":0,"max_in_flight":3}'*) ;;
*) fail "in-flight after the answers: $BODY" ;; esac
ok "latency does not block the loop; in-flight counted per account"
curl -s -m 0.3 -o /dev/null "$URL/acct/8/c"
sleep 1.5 # the answer falls due after its client has gone
call GET /_stats ''
case $BODY in *'"/acct/8":{"in_flight":0,"max_in_flight":1}'*) ;;
*) fail "an answer for a departed client: $BODY" ;; esac
ok "an answer held for a client that left is freed"
curl -s -m 5 -o /dev/null "$URL/acct/9/c" &
sleep 0.3
stop "$PID" slow # with an answer still held
ok "SIGTERM with a held answer exits cleanly"

seq_of() { # SEQ gets the statuses of 20 calls to a server started with the given options
  local _
  start seeded "$@"
  SEQ=""
  for _ in $(seq 20); do SEQ+=$(curl -s -o /dev/null -w '%{http_code}' "$URL/x/c")" "; done
  stop "$PID" seeded
}
seq_of --fail-rate 0.3 --throttle-rate 0.3 --seed 42
a=$SEQ
seq_of --fail-rate 0.3 --throttle-rate 0.3 --seed 42
b=$SEQ
[ "$a" = "$b" ] || fail "same seed, different faults: '$a' vs '$b'"
[[ $a == *200* && $a == *429* && ($a == *500* || $a == *503*) ]] || fail "fault mix: $a"
ok "--seed makes faults reproducible"

echo "$passed passed, 0 failed"
