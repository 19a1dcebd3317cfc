#!/usr/bin/env bash
# ferry plan / rewind / resume / replay / explain through the real binary:
# the plan's order and content, a changed mapping refused until replay, a
# rewind that equals a fresh projection, and the unseen-table warning.
source "$(dirname "$0")/lib.sh"
cp "$FERRY_SOURCE_DIR/examples/mapping.yaml" "$T/mapping.yaml"
cat >"$T/ferry.yaml" <<YAML
mapping: mapping.yaml
data: ./data
cloud:
  base_url: "http://127.0.0.1:9"
YAML
F=("$FERRY" --config "$T/ferry.yaml")

expect_status 0 "ingest the example changes" "${F[@]}" ingest acme "$FERRY_SOURCE_DIR/examples/changes.ndjson"
expect_status 0 "plan" "${F[@]}" plan acme --json
check "plan creates 2 contacts and 2 addresses" grep -q '"summary":{"create":4,"patch":0,"delete":0,"wait":0}' "$T/out"
# contacts (rank 0) before addresses (rank 1), which reference them
check "contacts are created before the addresses that reference them" \
  awk -F'"entity":"' 'NR == 1 { n = split($0, parts, "\"entity\":\""); for (i = 2; i <= n; i++) { split(parts[i], e, "\""); seq = seq e[1] " " } }
    END { exit !(seq ~ /^contact contact address address $/) }' "$T/out"
check "an address body holds the reference marker until its contact exists" grep -q '"contact_id":{"$ref":"contact/42"}' "$T/out"
check "the plan names the causing events" grep -q '"entity":"contact","key":"42".*"seqs":\[3,4,5\]' "$T/out"
expect_status 0 "plan as text" "${F[@]}" plan acme
check "text plan has a summary line" contains "$T/out" "plan for acme: 4 create, 0 patch, 0 delete"
check "no progress output when not a terminal" test ! -s "$T/err"

# an unseen table: the mapping names Suburbs, ContactPhones, Contacts; all seen here
sed 's/lookup: Suburbs/lookup: Suburb/' "$T/mapping.yaml" >"$T/typo.yaml"
cat >"$T/typo-ferry.yaml" <<YAML
mapping: typo.yaml
data: ./data2
cloud: {base_url: "http://127.0.0.1:9"}
YAML
expect_status 0 "ingest for the typo mapping" "$FERRY" --config "$T/typo-ferry.yaml" ingest acme "$FERRY_SOURCE_DIR/examples/changes.ndjson"
expect_status 0 "plan with a table the log never mentioned" "$FERRY" --config "$T/typo-ferry.yaml" plan acme
check "plan warns about the unseen table" contains "$T/err" "warning: the mapping names table Suburb, which acme's log has never mentioned"

# a mapped field named like the external key field (ferry fills that in) is refused
sed 's/^      first_name: FirstName /      legacy_key: FirstName /' "$T/mapping.yaml" >"$T/clash.yaml"
cat >"$T/clash-ferry.yaml" <<YAML
mapping: clash.yaml
data: ./data3
cloud: {base_url: "http://127.0.0.1:9"}
YAML
expect_status 2 "plan with a field called like the external key field" "$FERRY" --config "$T/clash-ferry.yaml" plan acme
check "the refusal names the file, line and field" \
  contains "$T/err" "clash.yaml:13: entities.contact.fields.legacy_key: this name is the cloud's external key field"

# a changed mapping is refused until replay
cp "$T/mapping.yaml" "$T/mapping.orig"
sed -i 's/transform: \[trim, lower\]/transform: [trim, upper]/' "$T/mapping.yaml"
expect_status 2 "plan refuses a changed mapping" "${F[@]}" plan acme
check "the refusal says to run ferry replay" contains "$T/err" "run 'ferry replay acme'"
expect_status 0 "status still works with a changed mapping" "${F[@]}" status acme --json
check "status reports the changed mapping" contains "$T/out" '"mapping_changed":true'
expect_status 0 "replay with the new mapping" "${F[@]}" replay acme
expect_status 0 "plan after replay" "${F[@]}" plan acme --json
check "the new mapping's email is upper case" contains "$T/out" '"email":"ANN@X.COM"'
cp "$T/mapping.orig" "$T/mapping.yaml"
expect_status 0 "replay back to the original mapping" "${F[@]}" replay acme

# rewind equals a fresh projection of 1..N
head -n 5 "$FERRY_SOURCE_DIR/examples/changes.ndjson" >"$T/first5.ndjson"
expect_status 0 "plan before rewind" "${F[@]}" plan acme --json
cp "$T/out" "$T/plan.full"
expect_status 0 "rewind --hold to seq 5" "${F[@]}" rewind acme --to-seq 5 --hold
expect_status 0 "plan while held" "${F[@]}" plan acme --json
sed 's/"customer":"acme"/"customer":"X"/' "$T/out" >"$T/plan.rewound"
expect_status 0 "a fresh customer with events 1..5" "${F[@]}" ingest fresh "$T/first5.ndjson"
expect_status 0 "plan of the fresh customer" "${F[@]}" plan fresh --json
sed 's/"customer":"fresh"/"customer":"X"/' "$T/out" >"$T/plan.fresh"
check "rewind to 5 plans exactly what a fresh projection of 1..5 plans" cmp -s "$T/plan.rewound" "$T/plan.fresh"
expect_status 0 "status while held" "${F[@]}" status acme
check "status shows the hold" grep -q "projected seq   5  (held" "$T/out"
expect_status 0 "resume" "${F[@]}" resume acme
expect_status 0 "plan after resume" "${F[@]}" plan acme --json
check "after resume the plan is as before the rewind" cmp -s "$T/out" "$T/plan.full"
expect_status 0 "replay with an unchanged mapping" "${F[@]}" replay acme
expect_status 0 "plan after replay" "${F[@]}" plan acme --json
check "replay with an unchanged mapping leaves the plan as it was" cmp -s "$T/out" "$T/plan.full"
expect_status 2 "rewind past the head is refused" "${F[@]}" rewind acme --to-seq 999
expect_status 2 "rewind needs --to-seq" "${F[@]}" rewind acme

# explain
expect_status 0 "explain contact/42" "${F[@]}" explain acme contact/42 --json
check "explain lists the contact's rows with versions and seqs" grep -q '"key":"42","seq":3,"table":"Contacts","version":17' "$T/out"
check "explain lists the looked-up suburb" grep -q '"key":"7","seq":1,"table":"Suburbs","version":1' "$T/out"
expect_status 2 "explain an unknown entity" "${F[@]}" explain acme contact/999
expect_status 2 "plan needs --config" "$FERRY" --data "$T/data" plan acme
finish
