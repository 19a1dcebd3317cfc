#!/usr/bin/env bash
# ferry-gen: usage errors exit 2; the same options give the same bytes and another seed other
# bytes; the sizes asked for are the rows written; a wave holds what the demo promises (edits,
# phones moved between contacts, a suburb rename, archives, deletes, new rows, duplicates that
# are byte-identical re-sends, late deliveries of an older version) and otherwise unique ids
# and increasing versions per row; and `ferry ingest` accepts all of it, counting the
# duplicates.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
GEN="$FERRY_BUILD_DIR/ferry-gen"

expect_status 0 "--help" "$GEN" --help
check "...lists the size options" grep -q -- '--contacts N' "$T/out"
expect_status 2 "no command" "$GEN"
expect_status 2 "changes without --wave" "$GEN" changes
expect_status 2 "--wave with initial" "$GEN" initial --wave 2
expect_status 2 "--scale 0" "$GEN" initial --scale 0
expect_status 2 "an unknown option" "$GEN" initial --rows 5
expect_status 2 "a count that is not a number" "$GEN" initial --contacts 12x

SMALL=(--contacts 300 --phones 500 --properties 90 --tenancies 60 --suburbs 12 --changes 200)
"$GEN" initial "${SMALL[@]}" >"$T/a.ndjson" 2>"$T/a.err"
"$GEN" initial "${SMALL[@]}" --quiet >"$T/b.ndjson" 2>"$T/b.err"
"$GEN" initial "${SMALL[@]}" --seed 2 >"$T/c.ndjson" 2>/dev/null
check "initial: one line per row asked for" test "$(wc -l <"$T/a.ndjson")" -eq 962
check "...and a summary on stderr" grep -q '300 contacts, 500 phones, 90 properties' "$T/a.err"
check "...none with --quiet" test ! -s "$T/b.err"
check "the same options give the same bytes" cmp -s "$T/a.ndjson" "$T/b.ndjson"
check "another seed gives other bytes" test "$(cmp -s "$T/a.ndjson" "$T/c.ndjson"; echo $?)" -eq 1
check "--scale multiplies the default sizes" \
  test "$("$GEN" initial --scale 0.01 --quiet | wc -l)" -eq $((200 + 400 + 80 + 60 + 5))
"$GEN" initial --contacts 0 --phones 0 --properties 3 --tenancies 2 --suburbs 1 >"$T/z.ndjson" 2>/dev/null
check "sizes of 0 are 0 rows, not the default" test "$(wc -l <"$T/z.ndjson")" -eq 6
expect_status 0 "a wave of a customer without contacts" \
  "$GEN" changes --wave 2 --contacts 0 --phones 0 --properties 3 --tenancies 2 --suburbs 1
for k in 1 2 3 4 5 6; do "$GEN" changes --wave "$k" "${SMALL[@]}" >"$T/w$k.ndjson" 2>"$T/w$k.err"; done
"$GEN" changes --wave 4 "${SMALL[@]}" 2>/dev/null >"$T/w4again.ndjson"
check "a wave is the same when written again" cmp -s "$T/w4.ndjson" "$T/w4again.ndjson"
check "...and says what it holds on stderr" grep -q 'moved to another contact' "$T/w4.err"

cat >"$T/waves.js" <<'JS'
// waves.js SNAPSHOT WAVE...: checks the changes in order; prints a summary or the problems.
const fs = require('fs');
const byId = new Map(), version = {}, row = {}, seen = {};
const count = { dup: 0, late: 0, moved: 0, renamed: 0, archived: 0, deleted: 0, created: 0 };
const problems = [];
for (const [i, f] of process.argv.slice(2).entries()) {
  for (const line of fs.readFileSync(f, 'utf8').split('\n')) {
    if (!line) continue;
    const c = JSON.parse(line), rk = `${c.table}/${c.key}`;
    if (byId.has(c.id)) {
      if (byId.get(c.id) !== line) problems.push(`id ${c.id} reused for another change`);
      count.dup++;
      continue;
    }
    byId.set(c.id, line);
    if (!(c.version >= 1)) problems.push(`${c.id}: version ${c.version}`);
    if (version[rk] !== undefined && c.version <= version[rk]) {
      if (seen[rk + '@' + c.version]) problems.push(`${c.id}: version ${c.version} of ${rk} twice`);
      count.late++;
    } else {
      const old = row[rk];
      if (!old && c.op === 'upsert' && version[rk] === undefined && i > 0) count.created++;
      if (old && c.table === 'ContactPhones' && c.row && c.row.ContactID !== old.ContactID) count.moved++;
      if (old && c.table === 'Suburbs' && c.row.Name !== old.Name) count.renamed++;
      if (old && c.row && c.row.IsArchived === true && old.IsArchived === false) count.archived++;
      if (c.op === 'delete') count.deleted++;
      version[rk] = c.version;
      row[rk] = c.row || null;
    }
    seen[rk + '@' + c.version] = true;
  }
}
for (const [k, n] of Object.entries(count)) if (!n) problems.push(`no ${k} changes`);
if (problems.length) { console.log(problems.slice(0, 10).join('\n')); process.exit(1); }
console.log(JSON.stringify(count));
JS
node "$T/waves.js" "$T/a.ndjson" "$T"/w[1-6].ndjson >"$T/waves.out" 2>&1
rc=$?
check "the waves: unique ids and rising versions, save deliberate duplicates and late versions; every kind of change" \
  test "$rc" -eq 0
sed 's/^/    /' "$T/waves.out"

cat "$T/a.ndjson" "$T"/w[1-6].ndjson >"$T/all.ndjson"
unique=$(sed 's/.*"id":"\([^"]*\)".*/\1/' "$T/all.ndjson" | sort -u | wc -l)
expect_status 0 "ferry ingest accepts the initial rows and six waves" \
  "$FERRY" --data "$T/data" ingest acme "$T/all.ndjson"
check "...appending each id once and counting the rest as duplicates" \
  grep -q "^appended $unique, duplicates $(($(wc -l <"$T/all.ndjson") - unique)), rejected 0" "$T/out"
finish
