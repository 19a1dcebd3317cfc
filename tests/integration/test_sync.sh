#!/usr/bin/env bash
# ferry sync against ferry-cloudsim on loopback: the cloud converges to the
# state the legacy rows map to (compared record by record through /_dump),
# with no duplicate and no orphan record; an unrelated legacy change sends
# nothing; one changed column is one PATCH of that field; 30% mixed faults
# (including commits whose answer is lost), with and without a cloud that
# honours Idempotency-Key, still converge; an entity the cloud refuses is
# reported and does not hold up the others.
#
# Other scripts reuse the helpers: SYNC_LIB_ONLY=1 source test_sync.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

# --- helpers -------------------------------------------------------------------

# A seeded generator of legacy changes that also keeps the rows' final state,
# and a checker that derives the expected cloud from that state (the mapping
# below, evaluated by hand) and compares it with a /_dump of the cloud.
cat >"$T/sync_tool.js" <<'JS'
const fs = require('fs');
const [cmd, ...args] = process.argv.slice(2);
const load = (f, d) => (fs.existsSync(f) ? JSON.parse(fs.readFileSync(f, 'utf8')) : d);
function rng(seed) {
  let s = (seed * 2654435761) >>> 0 || 1;
  return () => { s ^= s << 13; s >>>= 0; s ^= s >>> 17; s ^= s << 5; s >>>= 0; return s / 4294967296; };
}
if (cmd === 'gen') { // gen STATE SEED NEW CHANGES [LONGKEY]
  const [file, seed, nNew, nChanges, longKey] = args;
  const st = load(file, { rows: {}, versions: {}, next: 1 });
  const r = rng(+seed), out = [];
  const pick = (a) => a[Math.floor(r() * a.length)];
  const emit = (k, row) => {
    const v = (st.versions[k] || 0) + 1;
    st.versions[k] = v;
    st.rows[k] = row;
    out.push(JSON.stringify(row ? { table: 'Contacts', key: +k, op: 'upsert', version: v, row }
                                : { table: 'Contacts', key: +k, op: 'delete', version: v }));
  };
  const fresh = (k) => ({ ContactID: +k, FirstName: 'Name' + k, Surname: 'Sur' + k,
    Email: ' Person' + k + '@Example.COM ', Street: k + ' Long Street', IsArchived: false, Score: 1 });
  for (let i = 0; i < +nNew; i++) emit(String(st.next), fresh(st.next++));
  const keys = Object.keys(st.rows);
  for (let i = 0; i < +nChanges && keys.length; i++) {
    const k = pick(keys), old = st.rows[k], x = r();
    if (!old) { emit(k, fresh(k)); continue; }
    const row = Object.assign({}, old);
    if (x < 0.3) row.Email = ' Changed' + Math.floor(r() * 1e6) + '@X.ORG';
    else if (x < 0.45) row.FirstName = 'First' + Math.floor(r() * 1e6);
    else if (x < 0.55) row.IsArchived = !row.IsArchived;
    else if (x < 0.65) row.Street = row.Street === null ? k + ' New Road' : null;
    else if (x < 0.8) { emit(k, null); continue; }
    else row.Score = row.Score + 1; // a column no entity maps: no cloud call
    emit(k, row);
  }
  if (longKey && st.rows[longKey]) {
    const row = Object.assign({}, st.rows[longKey]);
    row.Street = 'x'.repeat(600);
    emit(longKey, row);
  }
  fs.writeFileSync(file, JSON.stringify(st));
  if (out.length) console.log(out.join('\n'));
} else if (cmd === 'check') { // check STATE DUMP PREFIX: exit 0 when the cloud is as expected
  const [file, dumpFile, prefix] = args;
  const st = load(file, { rows: {} }), dump = JSON.parse(fs.readFileSync(dumpFile, 'utf8'));
  const idOf = {}, problems = [];
  const byKey = (coll) => {
    const m = {};
    for (const rec of dump[prefix + coll] || []) {
      const k = rec.legacy_key;
      if (m[k]) problems.push(`duplicate ${k}: ids ${m[k].id} and ${rec.id}`);
      else m[k] = rec;
    }
    return m;
  };
  const contacts = byKey('/contacts'), addresses = byKey('/addresses');
  for (const [k, rec] of Object.entries(contacts)) idOf[k] = rec.id;
  const want = { '/contacts': {}, '/addresses': {} };
  for (const [k, row] of Object.entries(st.rows)) {
    if (!row) continue;
    if (row.IsArchived !== true)
      want['/contacts']['contact/' + k] = { first_name: row.FirstName,
        email: row.Email === null ? null : row.Email.trim().toLowerCase(),
        display_name: row.FirstName + ' ' + row.Surname, legacy_key: 'contact/' + k };
    if (row.Street !== null)
      want['/addresses']['address/' + k] = { street: row.Street, legacy_key: 'address/' + k,
        contact_id: row.IsArchived !== true ? ['ref', 'contact/' + k] : null };
  }
  for (const [coll, got] of [['/contacts', contacts], ['/addresses', addresses]]) {
    for (const k of Object.keys(got)) if (!want[coll][k]) problems.push(`orphan ${k} (id ${got[k].id})`);
    for (const [k, w] of Object.entries(want[coll])) {
      const g = got[k];
      if (!g) { problems.push(`missing ${k}`); continue; }
      for (const [f, v] of Object.entries(w)) {
        const exp = Array.isArray(v) ? idOf[v[1]] : v;
        if (JSON.stringify(g[f]) !== JSON.stringify(exp))
          problems.push(`${k}.${f} is ${JSON.stringify(g[f])}, expected ${JSON.stringify(exp)}`);
      }
      for (const f of Object.keys(g)) if (!(f in w) && f !== 'id') problems.push(`${k} has extra field ${f}`);
    }
  }
  const n = Object.keys(want['/contacts']).length + Object.keys(want['/addresses']).length;
  if (problems.length) { console.log(problems.slice(0, 10).join('\n')); process.exit(1); }
  console.log(`cloud matches: ${n} records`);
} else if (cmd === 'get') { // get FILE PATH.TO.FIELD
  let v = JSON.parse(fs.readFileSync(args[0], 'utf8'));
  for (const p of args[1].split('.')) v = v == null ? undefined : v[p];
  console.log(v === undefined ? '' : typeof v === 'object' ? JSON.stringify(v) : v);
}
JS
tool() { node "$T/sync_tool.js" "$@"; }

MAPPING="$T/mapping.yaml"
cat >"$MAPPING" <<'YAML'
version: 1
entities:
  contact:
    endpoint: /contacts
    source: Contacts
    filter: {column: IsArchived, not_equals: true}
    fields:
      first_name: FirstName
      email: {column: Email, transform: [trim, lower]}
      display_name: {template: "{FirstName} {Surname}"}
  address:
    endpoint: /addresses
    source: Contacts
    filter: {column: Street, is_null: false}
    fields:
      street: Street
      contact_id: {ref: contact, key: "{_key}"}
YAML

# start_cloud NAME [cloudsim options...]: sets CLOUD (its URL) and CLOUD_PID
start_cloud() {
  local name=$1 port=""
  shift
  start_bg "$CLOUDSIM" --listen 127.0.0.1:0 "$@" >"$T/$name.out" 2>"$T/$name.err"
  CLOUD_PID=$BG_PID
  for _ in $(seq 100); do
    port=$(sed -n 's/^listening on 127\.0\.0\.1:\([0-9]*\)$/\1/p' "$T/$name.out")
    [ -n "$port" ] && break
    sleep 0.05
  done
  CLOUD=http://127.0.0.1:$port
}
stop_cloud() { kill -TERM "$CLOUD_PID" 2>/dev/null; wait "$CLOUD_PID" 2>/dev/null; }

# write_config FILE DATA_DIR BASE_URL [MAX_ATTEMPTS]
write_config() {
  { printf 'mapping: %s\ndata: %s\ncloud:\n  base_url: "%s"\n' "$MAPPING" "$2" "$3"
    printf '  concurrency: 8\n  timeout_ms: 5000\n  max_attempts: %s\n' "${4:-30}"; } >"$1"
}

# cloud_matches DESC STATE [URL] [PREFIX]: the cloud's records are exactly the expected ones
cloud_matches() {
  local url=${3:-$CLOUD} prefix=${4:-/acme}
  curl -s "$url/_dump" >"$T/dump.json"
  if tool check "$2" "$T/dump.json" "$prefix" >"$T/check.out"; then pass "$1"; else
    fail "$1"; sed 's/^/    /' "$T/check.out"; fi
}

# stat URL FIELD: a number from /_stats
stat() { curl -s "$1/_stats" >"$T/stats.json"; tool get "$T/stats.json" "$2"; }

[ -n "${SYNC_LIB_ONLY:-}" ] && return 0

# --- a first sync, then nothing to do ------------------------------------------
start_cloud plain
D="$T/d1"
C="$T/c1.yaml"
write_config "$C" "$D" "$CLOUD/{customer}"
S1="$T/s1.json"
tool gen "$S1" 1 300 0 >"$T/b1.ndjson"
expect_status 0 "ingest 300 rows" "$FERRY" --config "$C" ingest acme "$T/b1.ndjson"
conns=$(stat "$CLOUD" connections_accepted)
expect_status 0 "first sync" "$FERRY" --config "$C" sync acme
conns=$(($(stat "$CLOUD" connections_accepted) - conns - 1)) # less this stat's own
check "summary: 600 created in 600 calls" contains "$T/out" "created 600, patched 0, deleted 0, failed 0; 600 calls"
cloud_matches "the cloud holds the 600 expected records" "$S1"
check "one request per entity" test "$(stat "$CLOUD" requests.total)" -eq 600
check "connections reused: $conns opened for 600 calls (at most concurrency 8)" test "$conns" -le 8

before=$(stat "$CLOUD" requests.total)
expect_status 0 "a second sync with nothing new" "$FERRY" --config "$C" sync acme
check "it sends nothing" test "$(stat "$CLOUD" requests.total)" -eq "$before"

printf '%s\n' '{"table":"Unmapped","key":1,"op":"upsert","version":1,"row":{"A":1}}' \
  '{"table":"Contacts","key":5,"op":"upsert","version":2,"row":{"ContactID":5,"FirstName":"Name5","Surname":"Sur5","Email":" Person5@Example.COM ","Street":"5 Long Street","IsArchived":false,"Score":99}}' \
  >"$T/unrelated.ndjson"
node -e 'const fs=require("fs"),f=process.argv[1],s=JSON.parse(fs.readFileSync(f));s.versions["5"]=2;s.rows["5"].Score=99;fs.writeFileSync(f,JSON.stringify(s))' "$S1"
expect_status 0 "ingest unrelated changes (unmapped table, unmapped column)" "$FERRY" --config "$C" ingest acme "$T/unrelated.ndjson"
expect_status 0 "sync after unrelated changes" "$FERRY" --config "$C" sync acme
check "unrelated changes send zero calls" test "$(stat "$CLOUD" requests.total)" -eq "$before"

# --- one changed column: one PATCH of that field ------------------------------
node -e 'const fs=require("fs"),f=process.argv[1],s=JSON.parse(fs.readFileSync(f));s.versions["7"]=2;s.rows["7"].Email="NEW7@Example.COM";fs.writeFileSync(f,JSON.stringify(s));const r=s.rows["7"];console.log(JSON.stringify({table:"Contacts",key:7,op:"upsert",version:2,row:r}))' "$S1" >"$T/one.ndjson"
expect_status 0 "ingest one changed Email" "$FERRY" --config "$C" ingest acme "$T/one.ndjson"
expect_status 0 "sync one change" "$FERRY" --config "$C" sync acme --verbose
check "exactly one call, a PATCH" test "$(stat "$CLOUD" requests.total)" -eq $((before + 1))
check "...by method PATCH" test "$(stat "$CLOUD" requests.by_method.PATCH)" -eq 1
check "summary says patched 1" contains "$T/out" "created 0, patched 1, deleted 0, failed 0; 1 calls"
"$FERRY" --config "$C" history acme --entity contact/7 --json >"$T/h.json" 2>/dev/null
check "the PATCH changed exactly the email field" grep -q '"method":"PATCH".*"fields":\["email"\]' "$T/h.json"
cloud_matches "the cloud has the new email" "$S1"

# --- a cloud named by host name: curl resolves it (its resolver's sockets come and go
# beside the connections' ones, and descriptor numbers get reused) ----------------
stop_cloud_after=$CLOUD_PID
start_cloud byname
port=${CLOUD##*:}
write_config "$T/cn.yaml" "$T/dn" "http://localhost:$port/{customer}"
SN="$T/sn.json"
tool gen "$SN" 11 200 0 >"$T/bn.ndjson"
expect_status 0 "ingest for the cloud named localhost" "$FERRY" --config "$T/cn.yaml" ingest acme "$T/bn.ndjson"
expect_status 0 "sync to http://localhost:PORT" "$FERRY" --config "$T/cn.yaml" sync acme
cloud_matches "the cloud reached by host name holds the expected records" "$SN"
stop_cloud
CLOUD_PID=$stop_cloud_after
CLOUD=$(sed -n 's/^listening on \(.*\)$/http:\/\/\1/p' "$T/plain.out")

# --- many changes: creates, patches, deletes in reference order -------------------
tool gen "$S1" 2 50 400 >"$T/b2.ndjson"
expect_status 0 "ingest 50 new rows and 400 changes" "$FERRY" --config "$C" ingest acme "$T/b2.ndjson"
expect_status 0 "sync the changes" "$FERRY" --config "$C" sync acme
cloud_matches "the cloud converged after creates, patches, deletes" "$S1"

# a record deleted behind ferry's back: its PATCH gets 404, then it is created again
node -e 'const fs=require("fs"),f=process.argv[1],s=JSON.parse(fs.readFileSync(f));
  const k=Object.keys(s.rows).find(k=>s.rows[k]&&!s.rows[k].IsArchived);
  s.versions[k]++;s.rows[k].Email="Gone"+k+"@x.org";fs.writeFileSync(f,JSON.stringify(s));
  console.log(k);console.error(JSON.stringify({table:"Contacts",key:+k,op:"upsert",version:s.versions[k],row:s.rows[k]}))' \
  "$S1" >"$T/gone.key" 2>"$T/gone.ndjson"
gk=$(cat "$T/gone.key")
curl -s "$CLOUD/_dump" >"$T/dump.json"
gid=$(node -e 'const d=JSON.parse(require("fs").readFileSync(process.argv[1]));console.log(d["/acme/contacts"].find(r=>r.legacy_key==="contact/"+process.argv[2]).id)' "$T/dump.json" "$gk")
curl -s -X DELETE "$CLOUD/acme/contacts/$gid" >/dev/null
"$FERRY" --config "$C" ingest acme "$T/gone.ndjson" >/dev/null
expect_status 0 "sync a change to a record someone deleted" "$FERRY" --config "$C" sync acme --verbose
check "its PATCH found it gone" grep -q "^PATCH .* 404 contact/$gk gone" "$T/out"
check "...and it was created again" grep -q "^POST .* 201 contact/$gk created" "$T/out"
cloud_matches "the cloud converged, the deleted record re-created" "$S1"
stop_cloud

# --- 30% mixed faults, with and without idempotency --------------------------------
faults=(--fail-rate 0.1 --throttle-rate 0.05 --retry-after 0 --drop-rate 0.05 --commit-then-drop-rate 0.1)
for mode in idempotent no-idempotency; do
  extra=(); [ "$mode" = no-idempotency ] && extra=(--no-idempotency)
  start_cloud "faulty-$mode" "${faults[@]}" "${extra[@]}" --seed 11
  D="$T/d-$mode"
  C="$T/c-$mode.yaml"
  S="$T/s-$mode.json"
  write_config "$C" "$D" "$CLOUD/{customer}"
  for round in 1 2 3; do
    if [ "$round" = 1 ]; then tool gen "$S" 5 300 0; else tool gen "$S" $((round + 20)) 30 300; fi >"$T/f.ndjson"
    "$FERRY" --config "$C" ingest acme "$T/f.ndjson" >/dev/null
    expect_status 0 "$mode round $round: sync through 30% faults" "$FERRY" --config "$C" sync acme
    cloud_matches "$mode round $round: converged, no duplicate, no orphan" "$S"
  done
  check "$mode: faults did happen" test "$(stat "$CLOUD" faults.committed_then_dropped)" -gt 0
  stop_cloud
done

# --- a refused entity is reported and holds up nothing else ------------------------
start_cloud small --max-body 400 --state "$T/small-state.json"
D="$T/d-refused"
C="$T/c-refused.yaml"
S="$T/s-refused.json"
write_config "$C" "$D" "$CLOUD/{customer}"
tool gen "$S" 9 40 0 9 >"$T/r.ndjson" # row 9 gets a 600-byte Street: its address is too big
"$FERRY" --config "$C" ingest acme "$T/r.ndjson" >/dev/null
expect_status 1 "a sync with one refused entity exits 1" "$FERRY" --config "$C" sync acme
check "the refusal names the entity and status 413" grep -q 'address/9 failed: HTTP 413' "$T/err"
check "the other 79 were created" contains "$T/out" "created 79, patched 0, deleted 0, failed 1"
expect_status 0 "status" "$FERRY" --config "$C" status acme
check "status shows 1 failed entity" grep -q 'failed *1 ' "$T/out"
expect_status 1 "a sync without changes leaves it failed (exit 1)" "$FERRY" --config "$C" sync acme
check "...and sends nothing for it" contains "$T/out" "; 0 calls"
stop_cloud
start_cloud small2 --max-body 100000 --state "$T/small-state.json" # the cloud now takes it
write_config "$C" "$D" "$CLOUD/{customer}"
expect_status 0 "sync --retry-failed creates it" "$FERRY" --config "$C" sync acme --retry-failed
check "retry-failed says 1 retried" contains "$T/out" "retrying 1 failed entities"
cloud_matches "the cloud now matches, the retried entity included" "$S"
stop_cloud

# --- SIGTERM stops gracefully; a bearer token ----------------------------------------
export SYNC_TEST_TOKEN=tok-$RANDOM-secret
start_cloud slow --latency-ms 100 --token-env SYNC_TEST_TOKEN
D="$T/d-term"
C="$T/c-term.yaml"
S="$T/s-term.json"
write_config "$C" "$D" "$CLOUD/{customer}"
printf '  token_env: SYNC_TEST_TOKEN\n' >>"$C"
tool gen "$S" 12 200 0 >"$T/t.ndjson"
"$FERRY" --config "$C" ingest acme "$T/t.ndjson" >/dev/null
"$FERRY" --config "$C" sync acme >"$T/term.out" 2>"$T/term.err" &
pid=$!
sleep 1
kill -TERM "$pid"
wait "$pid"
rc=$?
check "SIGTERM: exit 1 once calls in flight are recorded" test "$rc" -eq 1
check "...saying it stopped with entities pending" grep -q 'stopped; [0-9]* entities still pending' "$T/term.err"
expect_status 0 "the next sync finishes the job (with the token)" "$FERRY" --config "$C" sync acme
cloud_matches "after a graceful stop the cloud converges" "$S"
check "the token appears in no output" bash -c "! grep -rqF '$SYNC_TEST_TOKEN' '$T/term.out' '$T/term.err' '$T/out' '$T/err'"
unset SYNC_TEST_TOKEN
expect_status 2 "a token variable that is not set is a usage error" "$FERRY" --config "$C" sync acme
check "...naming the variable" contains "$T/err" "SYNC_TEST_TOKEN is not set"
stop_cloud

# --- an unreachable cloud ----------------------------------------------------------
D="$T/d-down"
C="$T/c-down.yaml"
write_config "$C" "$D" "http://127.0.0.1:1/{customer}" 2
tool gen "$T/s-down.json" 1 5 0 >"$T/down.ndjson"
"$FERRY" --config "$C" ingest acme "$T/down.ndjson" >/dev/null
expect_status 1 "an unreachable cloud exits 1" "$FERRY" --config "$C" sync acme
check "...saying the cloud is unavailable" contains "$T/err" "cloud unavailable"

finish
