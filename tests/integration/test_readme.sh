#!/usr/bin/env bash
# README.md cannot drift from the code: a block marked <!-- file: PATH --> is that file, byte
# for byte; a block marked <!-- excerpt: PATH --> is a run of the file's lines; every command
# and option that `ferry --help` and `ferry COMMAND --help`, `ferryd --help` and
# `ferry-gen --help` list is in it; every endpoint its tables name is one ferryd routes; every
# file it links to exists; its two commands are scripts that exist and the one CI runs; the
# performance section holds a table from bench/run.sh. (test_demo.sh checks that its demo
# transcript's commands are ones the demo runs.)
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
README="$FERRY_SOURCE_DIR/README.md"
GEN="$FERRY_BUILD_DIR/ferry-gen"

# block MARKER_REGEX N: the content of the fenced block after the Nth line matching the marker
block() {
  awk -v re="$1" -v want="$2" '$0 ~ re { n++; if (n == want) on = 1; next }
    on == 1 && /^```/ { on = 2; next }
    on == 2 && /^```/ { exit }
    on == 2 { print }' "$README"
}

# --- marked blocks ---------------------------------------------------------------------------
k=0
while read -r path; do
  k=$((k + 1))
  block '^<!-- file: ' "$k" >"$T/block"
  check "README block of $path is the file" cmp -s "$T/block" "$FERRY_SOURCE_DIR/$path"
done < <(sed -n 's/^<!-- file: \(.*\) -->$/\1/p' "$README")
check "README shows the sample's files whole (2 or more)" test "$k" -ge 2

k=0
while read -r path; do
  k=$((k + 1))
  block '^<!-- excerpt: ' "$k" >"$T/block"
  check "README excerpt $k is a run of lines of $path" \
    node -e 'const fs = require("fs"), [b, f] = process.argv.slice(1).map((p) => fs.readFileSync(p, "utf8"));
             process.exit(b && ("\n" + f).includes("\n" + b) ? 0 : 1)' "$T/block" "$FERRY_SOURCE_DIR/$path"
done < <(sed -n 's/^<!-- excerpt: \(.*\) -->$/\1/p' "$README")
check "README has excerpts" test "$k" -ge 1

# --- commands and options --------------------------------------------------------------------
"$FERRY" --help >"$T/help" 2>&1
cmds=$(awk '/^Commands:/ { on = 1; next } on && /^  [a-z]/ { print $1 } on && /^$/ { exit }' "$T/help")
check "ferry --help lists commands" test "$(wc -w <<<"$cmds")" -ge 10
for cmd in $cmds; do
  check "README documents ferry $cmd" grep -q "\`ferry $cmd" "$README"
  "$FERRY" "$cmd" --help >"$T/chelp" 2>&1
  for opt in $(grep -o -- '^  --[a-z-]*' "$T/chelp"); do
    check "...and its option $opt" grep -q -- "$opt" "$README"
  done
done
"$FERRYD" --help >"$T/dhelp" 2>&1
for opt in $(grep -o -- '^  --[a-z-]*' "$T/dhelp"); do
  check "README documents ferryd $opt" grep -q -- "\`$opt" "$README"
done
"$GEN" --help >"$T/ghelp" 2>&1
for opt in $(grep -o -- '^  --[a-z-]*' "$T/ghelp"); do
  check "README documents ferry-gen $opt" grep -q -- "\`$opt" "$README"
done

# --- endpoints ----------------------------------------------------------------------------------
# Each endpoint in README's tables, asked of a running ferryd: any answer but "no such route".
sed -nE 's/^\| `(GET|POST) (\/[^` ?\[]*).*/\1 \2/p' "$README" |
  sed -E 's#/C/#/acme/#' | sort -u >"$T/endpoints"
# "…/replay, …/retry-failed" style rows name more than one
grep -oE '`…/[a-z-]+`' "$README" | tr -d '`' | sed 's#…/#POST /v1/customers/acme/#' >>"$T/endpoints"
check "README names ferryd's endpoints (10 or more)" test "$(sort -u "$T/endpoints" | wc -l)" -ge 10
printf 'mapping: %s\ndata: %s\ncloud:\n  base_url: "http://127.0.0.1:9/x"\nservice:\n  listen: 127.0.0.1:0\n' \
  "$FERRY_SOURCE_DIR/examples/mapping.yaml" "$T/data" >"$T/ferryd.yaml"
start_bg "$FERRYD" --config "$T/ferryd.yaml" --insecure >"$T/fd.out" 2>"$T/fd.err"
port=$(wait_port "$T/fd.out")
while read -r method path; do
  if [ "$method" = POST ]; then
    curl -s -o "$T/resp" -H 'Content-Type: application/x-ndjson' --data-binary '' "http://127.0.0.1:$port$path"
  else
    curl -s -o "$T/resp" "http://127.0.0.1:$port$path"
  fi
  check "ferryd routes $method $path" test -z "$(grep 'no such route' "$T/resp")"
done < <(sort -u "$T/endpoints")

# --- links, the two commands, the benchmark table ------------------------------------------------
while read -r link; do
  check "README links to $link, which exists" test -e "$FERRY_SOURCE_DIR/${link%%#*}"
done < <(grep -oE '\]\([^)#]+(#[^)]*)?\)' "$README" | sed -E 's/^\]\(//; s/\)$//' | grep -v '^https\?:' | sort -u)
check "the first command is scripts/demo.sh" test -x "$FERRY_SOURCE_DIR/scripts/demo.sh"
check "the second is scripts/test.sh, which CI runs" grep -q 'scripts/test.sh' "$FERRY_SOURCE_DIR/.ci/run"
check "both are in README's two commands" \
  test "$(block '^## Two commands' 1 | grep -c '^scripts/\(demo\|test\)\.sh ')" -eq 2
check "the performance section holds bench/run.sh's table" \
  test "$(awk '/^<!-- bench-table -->/ { getline; print; exit }' "$README" | cut -c1-10)" = "| figure |"
finish
