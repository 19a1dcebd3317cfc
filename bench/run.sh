#!/usr/bin/env bash
# Runs every benchmark — ingest (bench/ingest.sh), projector (bench_projector), apply
# (bench/apply.sh), service (bench/service.sh) — in one Release build, one after the other,
# and writes one markdown table of their figures next to the machine limits measured in the
# same run (RocksDB's db_bench for durable appends, wrk against ferry-cloudsim for HTTP), so a
# figure says how much of this machine ferry gets, not how fast the machine is.
#
#   bench/run.sh [--quick] [--out FILE]
#
# --quick: smaller sizes and shorter runs (under a minute), for a sanity check; the figures
# are noisier and the projector stops at 100,000 entities. Default: the full sizes (about three
# minutes on a 2-core machine). The table goes to stdout and to FILE (default
# bench/results.md), the benchmarks' own output to FILE's name with .log. Build directory:
# $FERRY_BUILD_DIR, default build-rel. Run it on an otherwise idle machine: the load average
# at the start is printed with the table.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
quick=0
out=$root/bench/results.md
while [ $# -gt 0 ]; do
  case "$1" in
    --quick) quick=1 ;;
    --out) out=$2; shift ;;
    --out=*) out=${1#--out=} ;;
    -h|--help) sed -n '2,16p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "usage: bench/run.sh [--quick] [--out FILE]" >&2; exit 2 ;;
  esac
  shift
done
log=${out%.md}.log
build=${FERRY_BUILD_DIR:-$root/build-rel}
for tool in wrk db_bench; do
  command -v "$tool" >/dev/null || { echo "bench/run.sh: needs $tool (scripts/deps.sh installs it)" >&2; exit 1; }
done

if [ "$quick" -eq 1 ]; then
  ingest_n=100000 sizes=10000,100000 entities=10000 wrk_s=2 svc=(--seconds 3 --tseconds 3)
else
  ingest_n=1000000 sizes=10000,100000,1000000 entities=50000 wrk_s=5 svc=()
fi

echo "building $build (Release)" >&2
cmake -S "$root" -B "$build" -DCMAKE_BUILD_TYPE=Release -DBUILD_TESTING=OFF >/dev/null
cmake --build "$build" -j"$(nproc)" >/dev/null
export FERRY_BUILD_DIR=$build

load=$(cut -d' ' -f1-3 /proc/loadavg)
: >"$log"
# bench NAME COMMAND...: runs one benchmark, its output to the terminal (stderr) and the log
# Each starts on a settled disk: the one before deletes gigabytes of table files, and their
# writeback and discards (the root file system is mounted with online discard here) went on
# into the next benchmark and slowed its reads (the projector's one-change times at 1M: 0.25 /
# 0.36 ms right after the ingest benchmark, 0.21 / 0.28 ms alone).
bench() {
  local name=$1; shift
  sync; sleep 5
  echo "== $name: $*" | tee -a "$log" >&2
  local t0=$SECONDS
  "$@" 2>&1 | tee "$work/$name.out" | tee -a "$log" >&2
  echo "($((SECONDS - t0)) s)" | tee -a "$log" >&2
}
work=$(mktemp -d /tmp/ferry-bench-run.XXXXXX)
trap 'rm -rf "$work"' EXIT
bench ingest env N="$ingest_n" bash "$root/bench/ingest.sh" "$build"
bench projector bash -c "cd '$root' && '$build/bench_projector' --sizes $sizes"
bench apply bash "$root/bench/apply.sh" --entities "$entities" --wrk-seconds "$wrk_s"
bench service bash "$root/bench/service.sh" "${svc[@]+"${svc[@]}"}"

# --- the table -------------------------------------------------------------------------------------
# field FILE REGEX: the first capture group of the first line matching (sed -E), or "?"
field() { local v; v=$(sed -nE "s|$2|\1|p" "$work/$1.out" | head -n 1); echo "${v:-?}"; }
# ratio A B: A / B with two decimals ("?" when one is missing)
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (a == "?" || b == "?" || b == 0) print "?"; else printf "%.2f", a / b }'; }
# n NUMBER: with thousands separators
n() { awk -v x="$1" 'BEGIN { if (x !~ /^[0-9]+$/) { print x; exit } s = ""; while (length(x) > 3) { s = "," substr(x, length(x) - 2) s; x = substr(x, 1, length(x) - 3) } print x s }'; }
# met VALUE OP GOAL: yes / no / ? for a figure against its goal
met() {
  awk -v v="$1" -v op="$2" -v g="$3" 'BEGIN {
    if (v == "?") { print "?"; exit }
    if (op == ">=") ok = (v + 0 >= g + 0); else if (op == "<=") ok = (v + 0 <= g + 0); else if (op == "<") ok = (v + 0 < g + 0); else ok = (v + 0 == g + 0)
    print ok ? "yes" : "**no**" }'
}

lib=$(field ingest 'median of [0-9]+: ferry ([0-9]+) changes/s.*')
dbb=$(field ingest 'median of [0-9]+: .*db_bench ([0-9]+) ops/s.*')
cli=$(field ingest '^ferry ingest: .* = ([0-9]+) changes/s.*')
cli_n=$(field ingest '^ferry ingest: ([0-9]+) changes.*')
proj_line() { grep -E "^ *$1 entities" "$work/projector.out" | head -n 1; }
proj() { # SIZE REGEX
  local v; v=$(proj_line "$1" | sed -nE "s|$2|\1|p"); echo "${v:-?}"; }
large=${sizes##*,}
fold=$(proj "$large" '.*fold +([0-9]+) events/s.*')
c_all=$(for s in ${sizes//,/ }; do proj "$s" '.*one contact change +([0-9.]+) ms.*'; done | paste -sd/ | sed 's#/# / #g')
p_all=$(for s in ${sizes//,/ }; do proj "$s" '.*one phone change +([0-9.]+) ms.*'; done | paste -sd/ | sed 's#/# / #g')
rss=$(proj "$large" '.*peak RSS +([0-9]+) MiB.*')
calls=$(field apply '^apply .*: ([0-9]+) calls/s.*')
wrk_rps=$(field apply '^wrk GET one record +([0-9]+) requests/s.*')
wrk_post=$(field apply '^wrk POST creates +([0-9]+) requests/s.*')
sim_us=$(field apply '^cloudsim.s CPU .* ([0-9]+) us per call.*')
cpe=$(field apply '^calls per entity +([0-9.]+).*')
conns=$(field apply '^connections .*: ([0-9.]+) per 1,000 calls.*')
d50=$(field service '.*POST -> 200 \(durable\) +p50 +([0-9.]+) ms.*')
d99=$(field service '.*POST -> 200 \(durable\) +p50 .* p99 +([0-9.]+) ms.*')
c50=$(field service '.*POST -> create at the cloud +p50 +([0-9.]+) ms.*')
c99=$(field service '.*POST -> create at the cloud +p50 .* p99 +([0-9.]+) ms.*')
http=$(field service '.*\(0 failed\): ([0-9]+) changes/s.*')
[ "$http" != "?" ] || http=$(field service '.*failed\): ([0-9]+) changes/s.*')
rate=$(field service '^latency: ([0-9]+) changes/s.*')
conns_svc=$(field service '^ingest: ([0-9]+) connections.*')

ratio_lib=$(ratio "$lib" "$dbb")
ratio_apply=$(ratio "$calls" "$wrk_rps")
ratio_post=$(ratio "$calls" "$wrk_post")
# growth "A / B / C": the cost at the largest customer over the cost at the smallest
# (issue 3: "single-change cost at 1M entities within 1.5x of that at 10k")
spread() { tr '/' '\n' <<<"$1" | awk '$1 == "?" { bad = 1 } { v = $1 + 0; if (NR == 1) first = v; last = v }
  END { if (bad || first <= 0) print "?"; else printf "%.2f", last / first }'; }
growth_c=$(spread "$c_all")
growth_p=$(spread "$p_all")
ratio_http=$(ratio "$http" "$lib")
sz() { awk -v s="$1" 'BEGIN { if (s >= 1000000) print s / 1000000 "M"; else print s / 1000 "k" }'; }
sizes_txt=$(for s in ${sizes//,/ }; do sz "$s"; done | paste -sd/ | sed 's#/# / #g')

{
  echo "# ferry benchmarks"
  echo
  echo "$(date -u +%Y-%m-%dT%H:%MZ), commit $(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo '?'),"\
       "$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//'), $(nproc) cores,"\
       "$(awk '/MemTotal/ { printf "%.0f GiB", $2 / 1048576 }' /proc/meminfo) RAM, load average at start $load."
  echo "Mode: $([ "$quick" -eq 1 ] && echo 'quick (bench/run.sh --quick)' || echo 'full (bench/run.sh)'); the benchmarks' output is in $(basename "$log")."
  echo
  echo "| figure | value | machine limit, same run | ratio | goal | met |"
  echo "|---|---|---|---|---|---|"
  echo "| ingest, library: durable appends in batches of 1,000 | $(n "$lib") changes/s | db_bench fillbatch sync=1: $(n "$dbb") ops/s | $ratio_lib | ≥ 0.50 of db_bench | $(met "$ratio_lib" '>=' 0.5) |"
  echo "| \`ferry ingest\` of a $(n "$cli_n")-line NDJSON file, end to end | $(n "$cli") changes/s | | | ≥ 300,000 changes/s | $(met "$cli" '>=' 300000) |"
  echo "| projector: initial fold, $(sz "$large") entities | $(n "$fold") events/s | | | ≥ 200,000 events/s | $(met "$fold" '>=' 200000) |"
  echo "| projector: fold + plan one contact change, $sizes_txt entities (median ms) | $c_all | | $growth_c (largest size ÷ smallest) | flat | $(met "$growth_c" '<=' 1.5) |"
  echo "| projector: fold + plan one phone change, $sizes_txt entities (median ms) | $p_all | | $growth_p (largest size ÷ smallest) | flat | $(met "$growth_p" '<=' 1.5) |"
  echo "| projector: peak RSS, $(sz "$large") entities | $rss MiB | | | < 256 MiB | $(met "$rss" '<' 256) |"
  echo "| apply: initial migration of $(n "$entities") entities to ferry-cloudsim | $(n "$calls") calls/s | wrk GET of one record: $(n "$wrk_rps") requests/s | $ratio_apply | ≥ 0.50 of wrk | $(met "$ratio_apply" '>=' 0.5) |"
  echo "| apply: the same, next to wrk POSTing creates of the same shape (the server's limit for this work; cloudsim spent $sim_us µs per call) | $(n "$calls") calls/s | wrk POST: $(n "$wrk_post") requests/s | $ratio_post | | |"
  echo "| apply: cloud requests per entity | $cpe | | | 1 | $(met "$cpe" '==' 1) |"
  echo "| apply: new connections per 1,000 calls | $conns | | | ≤ 1 | $(met "$conns" '<=' 1) |"
  echo "| service: POST → 200 (durable), $(n "$rate") changes/s, one per POST | p50 $d50 ms, p99 $d99 ms | | | | |"
  echo "| service: POST → create at the cloud, same load | p50 $c50 ms, p99 $c99 ms | | | | |"
  echo "| service: HTTP ingest, $conns_svc connections, batches of 100 | $(n "$http") changes/s | library ingest above: $(n "$lib") changes/s | $ratio_http | | |"
  echo
  echo "Reproduce: \`bench/run.sh$([ "$quick" -eq 1 ] && echo ' --quick')\`; one figure alone: \`N=$ingest_n bench/ingest.sh build-rel\`,"\
       "\`build-rel/bench_projector --sizes $sizes\`, \`bench/apply.sh --entities $entities\`, \`bench/service.sh${svc[*]+ ${svc[*]}}\`."
  echo "\"flat\": the figure at the largest customer is at most 1.5 times that at the smallest."
} >"$out"
cat "$out"
