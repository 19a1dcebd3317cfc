#!/usr/bin/env bash
# The ferry demo. Installs what is missing, builds (Release), and walks a legacy
# property-management customer (examples/property-management/) into a cloud account: the
# reference cloud (ferry-cloudsim) and the service (ferryd) on free loopback ports, the first
# sync with progress, waves of day-to-day changes with the cloud calls each one cost, the audit
# trail and explanation of one contact, a rewind that rolls the cloud back and a resume that
# rolls it forward, a mapping fix replayed to only the entities it changes, and a summary.
# Everything it starts is stopped at the end, on success or failure.
#
#   scripts/demo.sh            ~74,500 legacy rows, 5 waves of ~1,000 changes
#   scripts/demo.sh --smoke    a customer 50 times smaller (the test suite runs this)
#
# Environment: FERRY_BUILD_DIR=DIR runs the binaries already built in DIR (no install, no
# build); FERRY_DEMO_DIR=DIR works in DIR (new or empty) and keeps it (default: a temporary
# directory, removed at the end unless the demo fails).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
example=$root/examples/property-management
customer=acme
featured=42  # the contact whose story is followed (tools/gen/customer.h GEN_FEATURED_CONTACT)
waves=5
gen_size="--scale 1"
case "${1:-}" in
  "") ;;
  --smoke) gen_size="--scale 0.02" ;;
  *) echo "usage: scripts/demo.sh [--smoke]" >&2; exit 2 ;;
esac

if [ -t 1 ]; then B1=$'\033[1m' DIM=$'\033[2m' R0=$'\033[0m'; else B1= DIM= R0=; fi
section() { printf '\n%s== %s%s\n' "$B1" "$*" "$R0"; }
say() { printf '%s\n' "$*" | fold -s -w 100; }
# show COMMAND: prints it as typed (variables the caller left unexpanded stay so), runs it
show() { printf '%s$ %s%s\n' "$DIM" "$1" "$R0"; eval "$1"; }
die() { echo "demo: $*" >&2; exit 1; }
ms() { date +%s%3N; }
secs() { awk -v ms="$1" 'BEGIN { printf "%.1f s", ms / 1000 }'; }

# --- build -------------------------------------------------------------------------------------
t_start=$(ms)
if [ -n "${FERRY_BUILD_DIR:-}" ]; then
  bin=$(cd "$FERRY_BUILD_DIR" && pwd)
else
  section "install what is missing, build ferry (Release)"
  bash "$root/scripts/deps.sh"
  bin=$root/build-demo
  cmake -S "$root" -B "$bin" -DCMAKE_BUILD_TYPE=Release -DBUILD_TESTING=OFF >/dev/null
  cmake --build "$bin" -j"$(nproc)" --target ferry_cli ferryd ferry-cloudsim ferry-gen >/dev/null
  echo "built in $(secs $(($(ms) - t_start))): $bin/{ferry,ferryd,ferry-cloudsim,ferry-gen}"
fi
for b in ferry ferryd ferry-cloudsim ferry-gen; do [ -x "$bin/$b" ] || die "no $bin/$b"; done
export PATH=$bin:$PATH

# --- the work directory, and stopping everything at the end ---------------------------------------
keep=0
if [ -n "${FERRY_DEMO_DIR:-}" ]; then
  [ -z "$(ls -A "$FERRY_DEMO_DIR" 2>/dev/null)" ] || die "FERRY_DEMO_DIR $FERRY_DEMO_DIR is not empty"
  mkdir -p "$FERRY_DEMO_DIR"
  work=$(cd "$FERRY_DEMO_DIR" && pwd)
  keep=1
else
  work=$(mktemp -d /tmp/ferry-demo.XXXXXX)
fi
pids=()
stop_all() {
  local rc=$?
  for p in "${pids[@]+"${pids[@]}"}"; do kill -TERM "$p" 2>/dev/null || true; done
  for p in "${pids[@]+"${pids[@]}"}"; do
    for _ in $(seq 50); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$p" 2>/dev/null || true
    wait "$p" 2>/dev/null || true
  done
  if [ "$rc" -ne 0 ]; then
    echo "demo: FAILED (exit $rc); its files are in $work (ferryd.log, cloudsim.log)" >&2
    [ -f "$work/ferryd.log" ] && tail -n 5 "$work/ferryd.log" >&2
  elif [ "$keep" -eq 0 ]; then
    rm -rf "$work"
  fi
  exit "$rc"
}
trap stop_all EXIT
trap 'exit 130' INT TERM
cd "$work"

# wait_port FILE: the port of the "listening on 127.0.0.1:PORT" line a server prints
wait_port() {
  local port=
  for _ in $(seq 100); do
    port=$(sed -n 's/^listening on 127\.0\.0\.1:\([0-9]*\)$/\1/p' "$1" 2>/dev/null)
    [ -n "$port" ] && { echo "$port"; return; }
    sleep 0.05
  done
  die "no 'listening on' line in $1"
}
# num JSON KEY: the first integer value of "KEY" in a one-line JSON text (0 when absent)
num() { local v; v=$(grep -o "\"$2\":[0-9]*" <<<"$1" | head -n 1 | cut -d: -f2); echo "${v:-0}"; }
status() { curl -sS -H "$AUTH" "$FERRYD/v1/customers/$customer/status"; }
stats() { curl -sS "$CLOUD/_stats"; }
# calls_mark / calls_since: the cloud's requests by method, and how many came since the mark
calls_mark() { local s; s=$(stats); for m in POST PATCH DELETE GET; do eval "mark_$m=$(num "$s" $m)"; done; }
calls_since() {
  local s; s=$(stats)
  d_POST=$(($(num "$s" POST) - mark_POST)) d_PATCH=$(($(num "$s" PATCH) - mark_PATCH))
  d_DELETE=$(($(num "$s" DELETE) - mark_DELETE)) d_GET=$(($(num "$s" GET) - mark_GET))
  d_ALL=$((d_POST + d_PATCH + d_DELETE + d_GET))
  sum_POST=$((sum_POST + d_POST)) sum_PATCH=$((sum_PATCH + d_PATCH))
  sum_DELETE=$((sum_DELETE + d_DELETE)) sum_GET=$((sum_GET + d_GET))
  calls="$d_ALL calls: $d_POST creates, $d_PATCH patches, $d_DELETE deletes"
  [ "$d_GET" -eq 0 ] || calls+=", $d_GET finds"
}
sum_POST=0 sum_PATCH=0 sum_DELETE=0 sum_GET=0
# collections: "contacts 389, addresses 374, ..." from the cloud's record counts
collections() { grep -o '"by_collection":{[^}]*}' <<<"$(stats)" | tr -d '{}"' | sed 's/by_collection://; s#/accounts/[^/]*/##g; s/:/ /g; s/,/, /g'; }
records() { sed -n 's/.*"records":{"total":\([0-9]*\).*/\1/p' <<<"$(stats)"; }
# wait_synced [progress]: until the customer is idle, projected to its head (or its hold) and
# nothing is pending; with "progress", a line a second on the way
wait_synced() {
  local s head proj pend t0 next deadline
  t0=$(ms) next=$((t0 + 1000)) deadline=$((SECONDS + 600))
  while :; do
    s=$(status)
    head=$(num "$s" head_seq) proj=$(num "$s" projected_seq) pend=$(num "$s" pending)
    grep -q '"held":true' <<<"$s" && head=$(num "$s" hold_seq)
    if [ "$proj" -eq "$head" ] && [ "$pend" -eq 0 ] && grep -q '"state":"idle"' <<<"$s"; then
      return
    fi
    grep -q '"failed":0,' <<<"$s" || die "entities failed: $s"
    grep -q '"run_failures":0,' <<<"$s" || die "a run failed (ferryd.log says why): $s"
    [ "$SECONDS" -lt "$deadline" ] || die "not in sync after 10 minutes: $s"
    if [ "${1:-}" = progress ] && [ "$(ms)" -ge "$next" ]; then
      printf '  %5s  folded %s of %s events, %s entities pending, %s records in the cloud\n' \
        "$(secs $(($(ms) - t0)))" "$proj" "$head" "$pend" "$(records)"
      next=$((next + 1000))
    fi
    sleep 0.1
  done
}
# synced COMMAND [progress]: shows and runs COMMAND, then waits until the customer is in sync;
# leaves the time it took in step_ms and the cloud calls it caused in d_* and $calls
synced() {
  local t0
  t0=$(ms)
  calls_mark
  show "$1"
  wait_synced "${2:-}"
  calls_since
  step_ms=$(($(ms) - t0))
}
# one_line_objects: pretty JSON with each innermost object or array (nothing nested in it) on
# one line
one_line_objects() {
  awk 'function flush() { for (i = 1; i <= n; i++) print b[i]; n = 0 }
    /[[{]$/ { flush(); b[++n] = $0; next }
    n && /^ *[]}],?$/ { s = b[1]; for (i = 2; i <= n + 1; i++) { t = i <= n ? b[i] : $0; sub(/^ +/, "", t); s = s " " t }
                        print s; n = 0; next }
    n { b[++n] = $0; next }
    { print }
    END { flush() }'
}

# --- the sample ----------------------------------------------------------------------------------
section "a legacy property-management customer (examples/property-management/)"
say "Contacts with their phone rows, properties in suburbs with owners, tenancies of a property \
by a tenant. mapping.yaml turns them into four cloud entities: a contact (its phones collected \
into one array, its suburb looked up), an address split off the contact, a property (suburb \
looked up, owner referenced), a tenancy (property and tenant referenced). Archived rows are \
not migrated."
cp "$example/mapping.yaml" "$example/ferry.yaml" .
show "ferry-gen initial $gen_size > initial.ndjson"
for k in $(seq "$waves"); do ferry-gen changes --wave "$k" $gen_size >"wave-$k.ndjson" 2>"wave-$k.txt"; done
echo "(and ferry-gen changes --wave K $gen_size > wave-K.ndjson for K = 1..$waves: the changes of $waves days)"

section "start the reference cloud and ferryd on free loopback ports"
show "ferry-cloudsim --listen 127.0.0.1:0 --state cloud.json > cloudsim.out 2> cloudsim.log &"
pids+=($!)
CLOUD=http://127.0.0.1:$(wait_port cloudsim.out)
# ferry.yaml as shipped names fixed addresses; this run points it at the servers it started
sed -i "s#http://127.0.0.1:3000#$CLOUD#; s#listen: 127.0.0.1:8470#listen: 127.0.0.1:0#" ferry.yaml
grep -q "$CLOUD" ferry.yaml && grep -q 'listen: 127.0.0.1:0' ferry.yaml ||
  die "examples/property-management/ferry.yaml no longer has the addresses this script replaces"
show 'export FERRY_ADMIN_TOKEN=$(head -c 16 /dev/urandom | od -An -tx1 | tr -d " \n")'
show 'AUTH="Authorization: Bearer $FERRY_ADMIN_TOKEN"'
show "ferryd --config ferry.yaml > ferryd.out 2> ferryd.log &"
pids+=($!)
ferryd_pid=$!
FERRYD=http://127.0.0.1:$(wait_port ferryd.out)
echo "cloud at $CLOUD, ferryd at $FERRYD (ferry.yaml: base_url $CLOUD/accounts/{customer})"

section "the first sync: POST the customer's rows; ferryd appends them durably, folds, applies"
synced "curl -sS -H \"\$AUTH\" -H 'Content-Type: application/x-ndjson' --data-binary @initial.ndjson $FERRYD/v1/customers/$customer/changes" progress
snapshot_seq=$(num "$(status)" head_seq)
t_first=$step_ms first_calls=$d_ALL
echo "in sync after $(secs "$t_first"): $calls"
echo "cloud records: $(collections)"

# --- waves -----------------------------------------------------------------------------------------
wave_ms=0 wave_calls=0 wave_lines=0
for k in $(seq "$waves"); do
  section "wave $k of $waves: a day of changes in the legacy product"
  sed 's/^ferry-gen: //' "wave-$k.txt"
  synced "curl -sS -H \"\$AUTH\" -H 'Content-Type: application/x-ndjson' --data-binary @wave-$k.ndjson $FERRYD/v1/customers/$customer/changes"
  wave_ms=$((wave_ms + step_ms)) wave_calls=$((wave_calls + d_ALL))
  wave_lines=$((wave_lines + $(wc -l <"wave-$k.ndjson")))
  echo "in sync after $(secs "$step_ms"): $calls"
done
say "Each call is one the cloud needs. Duplicates are dropped by id and late versions ignored \
as stale; a change to a column no entity maps sends nothing; several changes to one entity \
become one call with only the fields that differ. One change can need several calls: a suburb \
rename patches every contact, address and property in the suburb, a phone moved patches two \
contacts, a new contact is a contact and an address."

# --- the audit trail ---------------------------------------------------------------------------------
section "contact/$featured: every call ferry made for it, and the legacy changes behind each"
say "Read-only commands of the CLI work beside the running service."
show "ferry --config ferry.yaml history $customer --entity contact/$featured"
suburb=$(grep -m 1 '"table":"Suburbs"' wave-3.ndjson | sed 's/.*"key":\([0-9]*\).*/\1/')
show "ferry --config ferry.yaml history $customer --row Suburbs/$suburb > rename.txt"
show "head -n 4 rename.txt"
echo "... $(wc -l <rename.txt) calls in all, caused by one change: the rename of suburb $suburb in wave 3"
section "why contact/$featured looks the way it does: explain"
printf '%s$ %s%s\n' "$DIM" "ferry --config ferry.yaml explain $customer contact/$featured" "$R0"
ferry --config ferry.yaml explain "$customer" "contact/$featured" | one_line_objects

# --- rewind and resume -------------------------------------------------------------------------------
section "rewind to seq $snapshot_seq (the snapshot, before the waves) and hold there"
say "The projection is rebuilt as of that seq; the cloud is rolled back to it with the fewest calls."
show "curl -sS -w '\\n' '$CLOUD/accounts/$customer/contacts?legacy_key=contact/$featured'"
synced "curl -sS -H \"\$AUTH\" -d '{\"to_seq\":$snapshot_seq,\"hold\":true}' $FERRYD/v1/customers/$customer/rewind"
t_rewind=$step_ms rewind_calls=$d_ALL
echo "the cloud is back at seq $snapshot_seq after $(secs "$t_rewind"): $calls"
show "curl -sS -w '\\n' '$CLOUD/accounts/$customer/contacts?legacy_key=contact/$featured'"

section "resume: the hold is lifted and the cloud rolls forward to the head again"
synced "curl -sS -H \"\$AUTH\" -X POST $FERRYD/v1/customers/$customer/resume"
t_resume=$step_ms resume_calls=$d_ALL
echo "back at the head after $(secs "$t_resume"): $calls"
show "curl -sS -w '\\n' '$CLOUD/accounts/$customer/contacts?legacy_key=contact/$featured'"

# --- a mapping fix and replay ----------------------------------------------------------------------
section "a mapping fix: an empty e-mail address should be null in the cloud, not \"\""
empty=$(curl -sS "$CLOUD/accounts/$customer/contacts?email=" | grep -o '"legacy_key"' | wc -l)
echo "the cloud has $empty contacts with \"email\": \"\""
cp mapping.yaml mapping-before.yaml
sed -i 's/email: {column: Email, transform: \[trim, lower\]}/email: {column: Email, transform: [trim, lower, null_if_empty]}/' mapping.yaml
cmp -s mapping.yaml mapping-before.yaml && die "examples/property-management/mapping.yaml no longer has the e-mail field this script edits"
show "diff -u mapping-before.yaml mapping.yaml || true"
say "SIGHUP reloads the configuration. A customer whose projection was built with another \
mapping is not synced until it is replayed, so an edit never rewrites a cloud account by itself."
show "kill -HUP $ferryd_pid"
for _ in $(seq 100); do grep -q '"mapping_changed":true' <<<"$(status)" && break; sleep 0.1; done
show "curl -sS -H \"\$AUTH\" $FERRYD/v1/customers/$customer/status | grep -o '\"mapping_changed\":[a-z]*'"
synced "curl -sS -H \"\$AUTH\" -X POST $FERRYD/v1/customers/$customer/replay"
t_replay=$step_ms replay_calls=$d_ALL
echo "replayed the whole log with the new mapping in $(secs "$t_replay"): $calls"
[ "$d_PATCH" -eq "$empty" ] && [ "$d_ALL" -eq "$empty" ] ||
  die "the replay should patch exactly the $empty contacts with an empty e-mail"
echo "exactly the $empty contacts whose e-mail was empty: nothing else was touched"

# --- summary -----------------------------------------------------------------------------------------
section "summary"
show "ferry --config ferry.yaml status $customer"
dups=$(curl -sS "$CLOUD/_dump" | grep -o '"legacy_key":"[^"]*"' | sort | uniq -d | wc -l)
[ "$dups" -eq 0 ] || die "$dups legacy entities have more than one cloud record"
printf '%-26s %s\n' "legacy rows" "$(wc -l <initial.ndjson) in the snapshot, then $waves waves, $wave_lines lines"
printf '%-26s %s\n' "cloud records" "$(records) ($(collections)); each legacy entity exactly once"
printf '%-26s %s\n' "first sync" "$first_calls calls in $(secs "$t_first")"
printf '%-26s %s\n' "$waves waves" "$wave_calls calls in $(secs "$wave_ms") (from POST to in sync)"
printf '%-26s %s\n' "rewind, resume" "$rewind_calls and $resume_calls calls in $(secs "$t_rewind") and $(secs "$t_resume")"
printf '%-26s %s\n' "mapping fix + replay" "$replay_calls calls in $(secs "$t_replay")"
printf '%-26s %s\n' "ferry's cloud calls" "$((sum_POST + sum_PATCH + sum_DELETE + sum_GET)): $sum_POST creates, $sum_PATCH patches, $sum_DELETE deletes, $sum_GET finds"

section "stop everything"
show "kill -TERM $ferryd_pid && wait $ferryd_pid"
show "kill -TERM ${pids[0]} && wait ${pids[0]}"
pids=()
echo "demo done in $(secs $(($(ms) - t_start)))$([ "$keep" -eq 1 ] && echo "; its files are in $work")"
