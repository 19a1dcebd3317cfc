#!/usr/bin/env bash
# The ferry demo: installs what is missing, builds, starts the bundled
# reference cloud (ferry-cloudsim) on a free loopback port, and walks a
# customer through ingest, plan, sync, an incremental change, the audit
# trail, explain, and a rewind that rolls the cloud back and forward again.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
bash scripts/deps.sh
cmake -S . -B build-release -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build-release -j"$(nproc)" --target ferry_cli ferry-cloudsim >/dev/null
B="$root/build-release"

work=$(mktemp -d /tmp/ferry-demo.XXXXXX)
cleanup() { [ -n "${cs_pid:-}" ] && kill "$cs_pid" 2>/dev/null; wait 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT
"$B/ferry-cloudsim" --listen 127.0.0.1:0 >"$work/cloudsim.out" 2>&1 &
cs_pid=$!
for _ in $(seq 50); do grep -q listening "$work/cloudsim.out" && break; sleep 0.1; done
port=$(sed -n 's/.*127\.0\.0\.1:\([0-9]*\).*/\1/p' "$work/cloudsim.out")
cloud="http://127.0.0.1:$port"
cp examples/mapping.yaml "$work/"
cat >"$work/ferry.yaml" <<YAML
mapping: mapping.yaml
data: ./data
cloud:
  base_url: "$cloud"
YAML
ferry() { "$B/ferry" --config "$work/ferry.yaml" "$@"; }
step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
dump() { curl -s "$cloud/_dump" | sed 's/},{/},\n  {/g'; echo; }

step "ingest the legacy changes (examples/changes.ndjson) for customer acme"
ferry ingest acme examples/changes.ndjson
step "ingest them again: nothing is appended twice"
ferry ingest acme examples/changes.ndjson
step "the event log as stored"
ferry log acme --limit 3
step "plan: the calls a sync would make (contacts first: addresses point at them)"
ferry plan acme
step "sync to the reference cloud at $cloud"
ferry sync acme
dump
step "Ann changes her email and gets a new phone; Cy is un-archived"
cat >"$work/more.ndjson" <<'NDJSON'
{"table":"Contacts","key":42,"op":"upsert","version":18,"row":{"ContactID":42,"FirstName":"Ann","Surname":"Lee","Email":"ann.lee@example.com","IsArchived":false,"SuburbID":7,"Street":"1 King St"}}
{"table":"ContactPhones","key":[42,3],"op":"upsert","version":1,"row":{"ContactID":42,"Number":"02 9555 0000","PhoneType":"work","Position":3}}
{"table":"Contacts","key":44,"op":"upsert","version":10,"row":{"ContactID":44,"FirstName":"Cy","Surname":"Old","Email":"cy@example.com","IsArchived":false,"SuburbID":7,"Street":"3 Queen St"}}
NDJSON
ferry ingest acme "$work/more.ndjson"
ferry plan acme
ferry sync acme
step "the audit trail for contact/42: every call, its result, the fields and the events behind it"
ferry history acme --entity contact/42
step "why does the cloud say this? explain contact/42"
ferry explain acme contact/42
step "roll the cloud back to seq 7 (before the last changes), holding there"
ferry rewind acme --to-seq 7 --hold
ferry sync acme
dump
step "resume: the cloud catches up again"
ferry resume acme
ferry sync acme
ferry status acme
step "a sync with nothing new makes no calls"
ferry sync acme
echo
echo "demo done (data and cloud were in $work, now removed)"
