#!/usr/bin/env bash
# scripts/demo.sh --smoke against the binaries of this build: it exits 0, stops everything it
# started (ferryd removes its ferryd.json only on a clean stop; the cloud saves its state file
# only on SIGTERM), its mapping-fix replay patches exactly the contacts with an empty e-mail,
# and the cloud it leaves holds exactly what examples/property-management/mapping.yaml (with
# the demo's fix) makes of the legacy rows it sent: every record, every field, every reference,
# no duplicate, no orphan. The expected cloud is computed here, independently of ferry, from
# the NDJSON files (latest version of each row wins, duplicates by id and stale versions are
# ignored). Finally, every command README.md shows from the demo's transcript is one the demo
# ran (numbers aside), so the README cannot drift from what works.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

W="$T/demo"
FERRY_DEMO_DIR="$W" bash "$FERRY_SOURCE_DIR/scripts/demo.sh" --smoke >"$T/demo.out" 2>&1
rc=$?
check "scripts/demo.sh --smoke exits 0" test "$rc" -eq 0
[ "$rc" -eq 0 ] || tail -n 30 "$T/demo.out" | sed 's/^/    /'
check "...it stopped ferryd cleanly (ferryd.json removed)" test ! -e "$W/ferry-data/ferryd.json"
check "...it stopped the cloud with SIGTERM (state saved)" test -s "$W/cloud.json"
check "...the replay patched exactly the contacts with an empty e-mail" \
  grep -q 'exactly the [1-9][0-9]* contacts whose e-mail was empty' "$T/demo.out"
check "...five waves were sent" test "$(grep -c '^in sync after' "$T/demo.out")" -ge 6

cat >"$T/oracle.js" <<'JS'
// oracle.js DEMO_DIR: compares DEMO_DIR/cloud.json with the cloud the demo's legacy rows
// should map to; prints the problems (at most 20) and exits 1 if there are any.
const fs = require('fs');
const dir = process.argv[2];
const files = ['initial.ndjson'];
for (let k = 1; fs.existsSync(`${dir}/wave-${k}.ndjson`); k++) files.push(`wave-${k}.ndjson`);

// Fold the changes as SPEC §1 says: a seen id is a duplicate; a version not above the row's
// is stale; a delete leaves a tombstone with its version.
const seen = new Set(), rows = {}, versions = {};
let changes = 0, duplicates = 0, stale = 0;
for (const f of files) {
  for (const line of fs.readFileSync(`${dir}/${f}`, 'utf8').split('\n')) {
    if (!line) continue;
    const c = JSON.parse(line), id = c.id, rk = c.table + '\u0000' + String(c.key);
    changes++;
    if (seen.has(id)) { duplicates++; continue; }
    seen.add(id);
    if (versions[rk] !== undefined && c.version <= versions[rk]) { stale++; continue; }
    versions[rk] = c.version;
    (rows[c.table] = rows[c.table] || {})[String(c.key)] = c.op === 'delete' ? null : c.row;
  }
}
const live = (t) => Object.entries(rows[t] || {}).filter(([, r]) => r !== null);

// SPEC §2's rendering and transforms, as far as the sample mapping uses them.
const col = (r, c) => (r[c] === undefined ? null : r[c]);
const text = (v) => (v === null ? '' : typeof v === 'string' ? v : String(v));
const trim = (v) => (typeof v === 'string' ? v.replace(/^[ \t\n\v\f\r]+|[ \t\n\v\f\r]+$/g, '') : v);
const lower = (v) => (typeof v === 'string' ? v.replace(/[A-Z]/g, (c) => c.toLowerCase()) : v);
const upper = (v) => (typeof v === 'string' ? v.replace(/[a-z]/g, (c) => c.toUpperCase()) : v);
const nullIfEmpty = (v) => (v === '' ? null : v);
const digits = (v) => (v === null ? null : text(v).replace(/[^0-9]/g, ''));
const toNumber = (v, int) => {
  if (v === null) return null;
  const n = typeof v === 'number' ? v : /^\s*-?[0-9]+(\.[0-9]+)?\s*$/.test(v) ? Number(v) : null;
  return n === null ? null : int ? Math.trunc(n) : n;
};
const lookup = (t, key, c) => {
  if (key === null) return null;
  const r = (rows[t] || {})[text(key)];
  return r ? col(r, c) : null;
};
const bytewise = (a, b) => Buffer.compare(Buffer.from(a), Buffer.from(b));

// The cloud the mapping asks for: entity -> key -> fields (refs as ['ref', entity, key]).
const want = { contact: {}, address: {}, property: {}, tenancy: {} };
const ref = (e, key) => ['ref', e, key];
for (const [k, r] of live('Contacts')) {
  if (col(r, 'IsArchived') === true) continue;
  const phones = live('ContactPhones').filter(([, p]) => text(col(p, 'ContactID')) === k);
  phones.sort(([ka, a], [kb, b]) => {
    const x = col(a, 'Position'), y = col(b, 'Position');
    if (x !== y) return x === null ? -1 : y === null ? 1 : x - y;
    return bytewise(ka, kb);
  });
  want.contact[k] = {
    first_name: trim(col(r, 'FirstName')), last_name: trim(col(r, 'Surname')),
    display_name: trim(text(col(r, 'FirstName')) + ' ' + text(col(r, 'Surname'))),
    email: nullIfEmpty(lower(trim(col(r, 'Email')))), kind: lower(col(r, 'ContactType')),
    suburb: lookup('Suburbs', col(r, 'SuburbID'), 'Name'),
    phones: phones.map(([, p]) => ({ number: digits(col(p, 'Number')), type: lower(col(p, 'PhoneType')) })),
    source: 'legacy-pm',
  };
  if (col(r, 'Street') !== null || col(r, 'SuburbID') !== null)
    want.address[k] = {
      street: trim(col(r, 'Street')), suburb: lookup('Suburbs', col(r, 'SuburbID'), 'Name'),
      postcode: lookup('Suburbs', col(r, 'SuburbID'), 'Postcode'),
      state: lookup('Suburbs', col(r, 'SuburbID'), 'State'), contact_id: ref('contact', k),
    };
}
for (const [k, r] of live('Properties')) {
  if (col(r, 'IsArchived') === true || ['Lost', 'Withdrawn'].includes(col(r, 'Status'))) continue;
  want.property[k] = {
    address: text(col(r, 'StreetNo')) + ' ' + text(col(r, 'StreetName')),
    suburb: lookup('Suburbs', col(r, 'SuburbID'), 'Name'), type: upper(col(r, 'PropertyType')),
    bedrooms: toNumber(col(r, 'Bedrooms'), true), owner_id: ref('contact', text(col(r, 'OwnerContactID'))),
  };
}
for (const [k, r] of live('Tenancies')) {
  if (col(r, 'IsArchived') === true || col(r, 'Status') === 'Draft') continue;
  want.tenancy[k] = {
    reference: text(col(r, 'TenancyID')), property_id: ref('property', text(col(r, 'PropertyID'))),
    tenant_id: ref('contact', text(col(r, 'TenantContactID'))), start_date: col(r, 'StartDate'),
    end_date: nullIfEmpty(col(r, 'EndDate')), weekly_rent: toNumber(col(r, 'WeeklyRent'), false),
    status: lower(col(r, 'Status')),
  };
}

// What the cloud has, by legacy_key; then every expected record, field by field.
const state = JSON.parse(fs.readFileSync(`${dir}/cloud.json`, 'utf8')).collections;
const endpoints = { contact: 'contacts', address: 'addresses', property: 'properties', tenancy: 'tenancies' };
const problems = [], have = {};
let records = 0;
for (const [path, coll] of Object.entries(state)) {
  const e = Object.keys(endpoints).find((x) => path.endsWith('/' + endpoints[x]));
  if (!e || !path.startsWith('/accounts/acme/')) { problems.push(`unexpected collection ${path}`); continue; }
  for (const rec of coll.records) {
    records++;
    const lk = rec.legacy_key || '', key = lk.slice(e.length + 1);
    if (!lk.startsWith(e + '/')) problems.push(`${path}: record ${rec.id} has legacy_key ${lk}`);
    else if (have[lk]) problems.push(`duplicate ${lk}: ids ${have[lk].id} and ${rec.id}`);
    else if (!want[e][key]) problems.push(`orphan ${lk} (id ${rec.id})`);
    else have[lk] = rec;
  }
}
const same = (a, b) => JSON.stringify(a) === JSON.stringify(b);
let expected = 0;
for (const [e, byKey] of Object.entries(want)) {
  for (const [k, fields] of Object.entries(byKey)) {
    expected++;
    const rec = have[`${e}/${k}`];
    if (!rec) { problems.push(`missing ${e}/${k}`); continue; }
    for (const [f, v] of Object.entries(fields)) {
      let exp = v;
      if (Array.isArray(v) && v[0] === 'ref') {
        const target = have[`${v[1]}/${v[2]}`];
        exp = want[v[1]][v[2]] && target ? target.id : null;
      }
      if (!same(rec[f], exp)) problems.push(`${e}/${k}.${f} is ${JSON.stringify(rec[f])}, expected ${JSON.stringify(exp)}`);
    }
    for (const f of Object.keys(rec))
      if (!(f in fields) && f !== 'id' && f !== 'legacy_key') problems.push(`${e}/${k} has an extra field ${f}`);
  }
}
if (!expected) problems.push('the legacy rows map to no entity at all');
if (!duplicates || !stale) problems.push(`the changes hold ${duplicates} duplicates and ${stale} stale versions; the demo should show both`);
if (problems.length) { console.log(problems.slice(0, 20).join('\n')); process.exit(1); }
console.log(`${changes} changes (${duplicates} duplicates, ${stale} stale): the cloud holds exactly the ${expected} expected records`);
JS
node "$T/oracle.js" "$W" >"$T/oracle.out" 2>&1
rc=$?
check "the cloud holds exactly what the mapping makes of the legacy rows" test "$rc" -eq 0
sed 's/^/    /' "$T/oracle.out"

# README.md: the commands of its demo transcript (the "$ " lines of the block after the
# marker) are commands the demo ran; numbers (ports, seqs, sizes, pids) may differ.
norm() { sed -E 's/[0-9]+(\.[0-9]+)*/N/g'; }
awk '/<!-- demo-transcript -->/ { on = 1; next } on && /^```/ { n++; if (n == 2) on = 0; next }
     on && n == 1 && /^\$ / { print }' "$FERRY_SOURCE_DIR/README.md" | norm >"$T/readme.cmds"
grep '^\$ ' "$T/demo.out" | norm | sort -u >"$T/demo.cmds"
check "README.md shows a demo transcript with commands" test "$(wc -l <"$T/readme.cmds")" -ge 10
missing=$(sort -u "$T/readme.cmds" | comm -23 - "$T/demo.cmds")
check "...every one of them is a command the demo ran" test -z "$missing"
[ -z "$missing" ] || sed 's/^/    not run: /' <<<"$missing"
finish
